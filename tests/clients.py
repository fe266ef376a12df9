"""Run one scenario through either client, so a test can be parametrised over both.

`run_stream("sync", ...)` and `run_stream("async", ...)` do the same thing with
`BackendApiClient` and `AsyncBackendApiClient`: open a client, iterate
``client.create(...)``, note when each event reached the caller, keep the
exception that ended the stream, and close everything. Tests compare the
returned `Result`; they never need to know which client produced it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional

from backendapi import BackendApiClient, RawResponse, Timeout

KINDS = ("sync", "async")

MESSAGES = [{"role": "user", "content": "Hello"}]

# Short enough that a client which waits where it should not fails the test
# instead of hanging the suite; long enough for the servers' 3 s pauses.
TEST_TIMEOUT = Timeout(connect=5.0, read=10.0)


@dataclass
class Received:
    """One event and the `time.monotonic()` at which the caller got it."""

    event: RawResponse
    at: float


@dataclass
class Result:
    """What a caller saw of one stream."""

    started: float
    """`time.monotonic()` just before ``create()``."""
    received: List[Received] = field(default_factory=list)
    error: Optional[Exception] = None
    """The exception the stream raised, or None when it ended normally."""
    client: Any = None
    stream: Any = None
    on_enter: Any = None
    """What the `on_enter` hook returned."""
    after_stream: Any = None
    """What the `after_stream` hook returned."""

    @property
    def events(self) -> List[Dict[str, Any]]:
        """The events as plain dicts, in order."""
        return [item.event.get_dict() for item in self.received]

    def first_event_delay(self) -> float:
        """Seconds from just before ``create()`` until the first event reached the caller."""
        return self.received[0].at - self.started


def run_stream(
    kind: str,
    url: str,
    model: str = "test-model",
    messages: Any = None,
    *,
    client_options: Optional[Mapping[str, Any]] = None,
    use_with: bool = False,
    stop_after: Optional[int] = None,
    on_event: Optional[Callable[[RawResponse], None]] = None,
    on_enter: Optional[Callable[[], Any]] = None,
    after_stream: Optional[Callable[[], Any]] = None,
    **create_kwargs: Any,
) -> Result:
    """Stream one conversation turn through the `kind` client and report what happened.

    * `client_options`: keyword arguments of the client (the default timeout is
      `TEST_TIMEOUT`).
    * `use_with`: read the stream inside ``with``/``async with client.create(...)``;
      `on_enter` is then called right after entering, before the first event.
    * `stop_after`: stop after this many events; without `use_with` the loop is
      left with ``break`` and the stream closed with ``close()``/``aclose()``.
    * `on_event`: called with each event as it arrives.
    * `after_stream`: called once the stream is finished or closed, while the
      client is still open; for the async client it runs in a worker thread, so
      it may block (e.g. wait on a `threading.Event`) without stalling the loop.

    Any other keyword argument goes to ``create()``.
    """
    options: Dict[str, Any] = {"timeout": TEST_TIMEOUT, **(client_options or {})}
    call = dict(model=model, messages=MESSAGES if messages is None else messages, **create_kwargs)
    hooks = _Hooks(use_with, stop_after, on_event, on_enter)
    if kind == "sync":
        return _run_sync(url, options, call, hooks, after_stream)
    if kind == "async":
        return asyncio.run(_run_async(url, options, call, hooks, after_stream))
    raise ValueError(f"unknown client kind {kind!r}")


@dataclass
class _Hooks:
    use_with: bool
    stop_after: Optional[int]
    on_event: Optional[Callable[[RawResponse], None]]
    on_enter: Optional[Callable[[], Any]]

    def take(self, result: Result, event: RawResponse) -> bool:
        """Record an event; True when the caller wants no more."""
        result.received.append(Received(event, time.monotonic()))
        if self.on_event is not None:
            self.on_event(event)
        return self.stop_after is not None and len(result.received) >= self.stop_after


def _run_sync(
    url: str,
    options: Dict[str, Any],
    call: Dict[str, Any],
    hooks: _Hooks,
    after_stream: Optional[Callable[[], Any]],
) -> Result:
    result = Result(started=0.0)
    with BackendApiClient(url, **options) as client:
        result.client = client
        try:
            result.started = time.monotonic()
            stream = result.stream = client.create(**call)
            if hooks.use_with:
                with stream:
                    if hooks.on_enter is not None:
                        result.on_enter = hooks.on_enter()
                    for event in stream:
                        if hooks.take(result, event):
                            break
            else:
                for event in stream:
                    if hooks.take(result, event):
                        break
                stream.close()
        except Exception as exc:
            result.error = exc
        if after_stream is not None:
            result.after_stream = after_stream()
    return result


async def _run_async(
    url: str,
    options: Dict[str, Any],
    call: Dict[str, Any],
    hooks: _Hooks,
    after_stream: Optional[Callable[[], Any]],
) -> Result:
    from backendapi import AsyncBackendApiClient

    result = Result(started=0.0)
    async with AsyncBackendApiClient(url, **options) as client:
        result.client = client
        try:
            result.started = time.monotonic()
            stream = result.stream = client.create(**call)
            if hooks.use_with:
                async with stream:
                    if hooks.on_enter is not None:
                        result.on_enter = hooks.on_enter()
                    async for event in stream:
                        if hooks.take(result, event):
                            break
            else:
                async for event in stream:
                    if hooks.take(result, event):
                        break
                await stream.aclose()
        except Exception as exc:
            result.error = exc
        if after_stream is not None:
            loop = asyncio.get_running_loop()
            result.after_stream = await loop.run_in_executor(None, after_stream)
    return result
