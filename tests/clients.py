"""Run one scenario through either client, so a test can be parametrised over both.

`run_stream("sync", ...)` and `run_stream("async", ...)` do the same thing with
`BackendApiClient` and `AsyncBackendApiClient`: open a client, iterate
``client.create(...)``, note when each event reached the caller, keep the
exception that ended the stream, and close everything. Tests compare the
returned `Result`; they never need to know which client produced it.

`run_turns` does the same for several streams, one after the other, on one
client; `call` calls any other method of a client, the same way for both.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from urllib3.exceptions import InsecureRequestWarning

from backendapi import BackendApiClient, BackendApiError, RawResponse, Timeout

KINDS = ("sync", "async")

MESSAGES = [{"role": "user", "content": "Hello"}]

# Short enough that a client which waits where it should not fails the test
# instead of hanging the suite; long enough for the servers' 3 s pauses.
TEST_TIMEOUT = Timeout(connect=5.0, read=10.0)


def client_class(kind: str) -> Any:
    """`BackendApiClient` for "sync", `AsyncBackendApiClient` for "async"."""
    if kind == "sync":
        return BackendApiClient
    if kind == "async":
        from backendapi import AsyncBackendApiClient

        return AsyncBackendApiClient
    raise ValueError(f"unknown client kind {kind!r}")


def insecure_warnings(seen: List[warnings.WarningMessage]) -> List[str]:
    """The messages of the urllib3 `InsecureRequestWarning`s among the warnings ``seen``."""
    return [str(w.message) for w in seen if issubclass(w.category, InsecureRequestWarning)]


async def in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking call (waiting on a server's events) without stalling the loop."""
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


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
    ended: float = 0.0
    """`time.monotonic()` once the client was closed, just before `run_stream` returned."""
    received: List[Received] = field(default_factory=list)
    error: Optional[Exception] = None
    """The exception the stream raised, or None when it ended normally."""
    client: Any = None
    stream: Any = None
    entered: Any = None
    """What ``with``/``async with`` gave for the stream (`use_with`)."""
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

    def elapsed(self) -> float:
        """Seconds from just before ``create()`` until the client was closed."""
        return self.ended - self.started


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
        result = _run_sync(url, options, call, hooks, after_stream)
    elif kind == "async":
        result = asyncio.run(_run_async(url, options, call, hooks, after_stream))
    else:
        raise ValueError(f"unknown client kind {kind!r}")
    result.ended = time.monotonic()
    return result


def run_stream_with(kind: str, url: str, **client_options: Any) -> Result:
    """`run_stream` with the client's keyword arguments given as keyword arguments."""
    return run_stream(kind, url, client_options=client_options)


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
                with stream as result.entered:
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
                async with stream as result.entered:
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


@dataclass
class Turn:
    """What one stream of `run_turns` gave."""

    events: List[Dict[str, Any]]
    error: Optional[BackendApiError] = None
    """The SDK error that ended the stream, or None when it ended normally."""


def run_turns(
    kind: str,
    url: str,
    before_each: Sequence[Callable[[], Any]],
    *,
    client_options: Optional[Mapping[str, Any]] = None,
    use_with: bool = False,
    new_loop_each_turn: bool = False,
    **create_kwargs: Any,
) -> List[Turn]:
    """Read one stream to its end per item of `before_each`, calling that item first, all on
    one `kind` client; what each stream gave.

    * `client_options`: keyword arguments of the client (the default timeout is
      `TEST_TIMEOUT`).
    * `use_with`: read each stream inside ``with``/``async with client.create(...)``.
    * `new_loop_each_turn`: the async client runs each turn in an ``asyncio.run`` of its
      own (and is closed in one more), as a script asking one question per run does.

    Any other keyword argument goes to ``create()``.
    """
    options: Dict[str, Any] = {"timeout": TEST_TIMEOUT, **(client_options or {})}
    call_args = dict(model="m", messages=MESSAGES, **create_kwargs)
    turns: List[Turn] = []
    if kind == "sync":
        with BackendApiClient(url, **options) as client:
            for prepare in before_each:
                prepare()
                try:
                    stream = client.create(**call_args)
                    if use_with:
                        with stream:
                            events = [event.get_dict() for event in stream]
                    else:
                        events = [event.get_dict() for event in stream]
                    turns.append(Turn(events))
                except BackendApiError as exc:
                    turns.append(Turn([], exc))
        return turns

    from backendapi import AsyncBackendApiClient

    async def turn(client: AsyncBackendApiClient) -> None:
        try:
            stream = client.create(**call_args)
            if use_with:
                async with stream:
                    events = [event.get_dict() async for event in stream]
            else:
                events = [event.get_dict() async for event in stream]
            turns.append(Turn(events))
        except BackendApiError as exc:
            turns.append(Turn([], exc))

    if new_loop_each_turn:
        client = AsyncBackendApiClient(url, **options)
        for prepare in before_each:
            prepare()
            asyncio.run(turn(client))
        asyncio.run(client.aclose())
        return turns

    async def main() -> None:
        async with AsyncBackendApiClient(url, **options) as client:
            for prepare in before_each:
                prepare()
                await turn(client)

    asyncio.run(main())
    return turns


def call(kind: str, url: Optional[str], method: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``client.<method>(*args, **kwargs)`` on a fresh `kind` client; streams are read.

    `url` None leaves the client's base URL to the environment. Keyword arguments
    starting with ``client_`` go to the client's constructor instead (by default
    ``timeout=TEST_TIMEOUT, max_retries=0``).
    """
    options: Dict[str, Any] = {"timeout": TEST_TIMEOUT, "max_retries": 0}
    for name in [name for name in kwargs if name.startswith("client_")]:
        options[name[len("client_") :]] = kwargs.pop(name)
    if kind == "sync":
        with BackendApiClient(url, **options) as client:
            result = getattr(client, method)(*args, **kwargs)
            return list(result) if method == "create" else result

    async def main() -> Any:
        from backendapi import AsyncBackendApiClient

        async with AsyncBackendApiClient(url, **options) as client:
            result = getattr(client, method)(*args, **kwargs)
            if method == "create":
                return [event async for event in result]
            return await result

    return asyncio.run(main())
