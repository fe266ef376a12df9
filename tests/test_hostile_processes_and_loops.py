"""Hostile conditions around the clients: a fork, several event loops, a read that never ends.

* A process that forks after using a client: parent and child each get their own answers,
  over connections of their own; the child leaves the parent's pooled connection alone
  (`ConnectionTellingServer` names the connection in each answer, and says whether a
  connection was ended).
* One `AsyncBackendApiClient` used from two threads, each in an ``asyncio.run`` of its own:
  no call waits past its own timeouts.
* A body whose next bytes make aiohttp's reader wait for ever (a chunk-size line that is not
  hex, in a packet after the events): the SDK's own deadline ends the read.

Nothing sleeps to synchronise: servers wait on `threading.Event`s the test sets once the
client holds what it must, and a call that might hang runs in a thread joined with a bound.
``docs/reliability.md`` lists what each case gives the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

import pytest
from clients import MESSAGES, run_stream
from loopback import LoopbackListener, TLSSetup, read_request
from scripted import FINISH, FIRST, SECOND, WAIT, chunk, sse

from backendapi import (
    APIConnectionError,
    APITimeoutError,
    AsyncBackendApiClient,
    BackendApiClient,
    BackendApiError,
    Timeout,
)
from backendapi.testing import BackendApiTestServer, Reply, Wait

pytestmark = pytest.mark.usefixtures("clean_network_env")

T = TypeVar("T")

STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)

HANG_BOUND = 20.0
"""Seconds a call that must end within a few seconds may take before the test calls it hung."""


def finished_within(seconds: float, function: Callable[[], T]) -> T:
    """``function()``, run in a daemon thread; fails the test if it has not returned after
    ``seconds`` (the thread is then left behind, so that a hang fails instead of hanging)."""
    return run_in_thread(function, seconds)()


# --- fork(): the child opens its own connections, the parent keeps its pool -------------------


@dataclass
class SeenConnection:
    """What `ConnectionTellingServer` saw on one connection."""

    number: int
    asked: List[str] = field(default_factory=list)
    """The last message's content of each request, in order."""
    ended: bool = False
    """The client ended the connection (a FIN, or a TLS close_notify)."""


class ConnectionTellingServer(LoopbackListener):
    """A keep-alive HTTP server whose answers name the connection they came over.

    Each request is answered with one content event, ``"<content> on connection <n>"``
    (``content``: the request's last message; ``n``: the connection's number, from 1),
    then a finish event, in a chunked body; the connection is kept for the next request.
    With a ``context``, it speaks TLS, so that a client closing a connection properly sends
    a close_notify it sees.
    """

    def __init__(self, context: Optional[ssl.SSLContext] = None) -> None:
        self._context = context
        self._seen: List[SeenConnection] = []
        super().__init__("test-connection-telling-server")
        if context is not None:
            self.url = self.url.replace("http://", "https://", 1)

    @property
    def seen(self) -> List[SeenConnection]:
        """Each connection so far, in the order they were made (copies)."""
        with self._lock:
            return [SeenConnection(c.number, list(c.asked), c.ended) for c in self._seen]

    def handle(self, conn: socket.socket) -> None:
        if self._context is not None:
            try:
                conn = self._context.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                conn.close()
                return
        super().handle(conn)

    def serve(self, conn: socket.socket) -> None:
        with self._lock:
            seen = SeenConnection(len(self._seen) + 1)
            self._seen.append(seen)
        with conn, contextlib.suppress(OSError, ValueError), conn.makefile("rb") as reader:
            while True:
                first, body = read_request(reader)
                if not first or body is None:
                    break
                content = json.loads(body)["messages"][-1]["content"]
                with self._lock:
                    seen.asked.append(content)
                event = {"type": "content", "content": f"{content} on connection {seen.number}"}
                conn.sendall(STREAM_HEAD + chunk(sse(event)) + chunk(sse(FINISH)) + b"0\r\n\r\n")
        with self._lock:
            seen.ended = True


@pytest.fixture(params=["http", "https"])
def telling_server(request: pytest.FixtureRequest, tls: TLSSetup) -> Iterator[Any]:
    """A `ConnectionTellingServer`, plain or over TLS, and the client options to reach it."""
    context = tls.server_context if request.param == "https" else None
    with contextlib.closing(ConnectionTellingServer(context)) as server:
        yield server, {"ssl": str(tls.ca_path)} if context is not None else {}


class Asker:
    """One client of either kind, kept across calls (the async one on a loop that lives as
    long as it does, so its pooled connection outlives each call), asking one question per
    call and returning the answer's text."""

    def __init__(self, kind: str, url: str, options: Dict[str, Any]) -> None:
        self.kind = kind
        options = {"timeout": Timeout(connect=5, read=5), "max_retries": 0, **options}
        if kind == "sync":
            self.client: Any = BackendApiClient(url, **options)
            self.loop: Optional[asyncio.AbstractEventLoop] = None
        else:
            self.client = AsyncBackendApiClient(url, **options)
            self.loop = asyncio.new_event_loop()

    def ask(self, question: str) -> str:
        """The answer's text, in this process's way of running the client."""
        messages = [{"role": "user", "content": question}]
        if self.kind == "sync":
            return str(self.client.complete("m", messages).text)
        assert self.loop is not None
        return str(self.loop.run_until_complete(self.client.complete("m", messages)).text)

    def ask_in_new_loop(self, question: str) -> str:
        """The async client's answer from an ``asyncio.run`` of its own (what a forked
        worker does); the blocking client's as usual."""
        if self.kind == "sync":
            return self.ask(question)
        messages = [{"role": "user", "content": question}]
        return str(asyncio.run(self.client.complete("m", messages)).text)

    def close(self, in_new_loop: bool = False) -> None:
        """Close the client (the async one on its own loop, or in a new ``asyncio.run``)."""
        if self.kind == "sync":
            self.client.close()
        elif in_new_loop:
            asyncio.run(self.client.aclose())
        else:
            assert self.loop is not None
            self.loop.run_until_complete(self.client.aclose())

    def end_loop(self) -> None:
        """Close the async client's loop, once the client is closed."""
        if self.loop is not None:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


def in_child(work: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    """Run ``work`` in a forked child; what it returned (or the error it raised), as JSON.

    The child leaves with ``os._exit`` whatever happens, so that it never goes on with the
    test session, and is killed by an alarm once `HANG_BOUND` seconds have passed.
    """
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: coverage is not collected here
        try:
            signal.alarm(int(HANG_BOUND))
            os.close(readable)
            try:
                report = work()
            except BaseException as exc:
                report = {"error": f"{type(exc).__name__}: {exc}"}
            os.write(writable, json.dumps(report).encode())
            os.close(writable)
        finally:
            os._exit(0)
    os.close(writable)
    with os.fdopen(readable, "rb") as pipe:
        report = pipe.read(65536)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"the child ended: {status}"
    return json.loads(report)  # type: ignore[no-any-return]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
def test_a_forked_child_opens_its_own_connections_and_leaves_the_parents_alone(
    client_kind: str, telling_server: Any
) -> None:
    """The parent asks over connection 1 and keeps it pooled; it forks; the child asks, closes
    its client and collects it; the parent asks again. The child's answer comes over a
    connection of its own, and the parent's second one over connection 1, which nobody
    ended meanwhile: not the child by using, closing or collecting what it inherited."""
    server, options = telling_server
    asker = Asker(client_kind, server.url, options)
    try:
        first = asker.ask("parent, first")

        def child() -> Dict[str, Any]:
            answer = asker.ask_in_new_loop("child")
            asker.close(in_new_loop=True)
            asker.client = None
            gc.collect()
            return {"answer": answer}

        child_report = in_child(child)
        second = asker.ask("parent, second")
        seen_before_closing = server.seen
    finally:
        asker.close()
        asker.end_loop()

    assert first == "parent, first on connection 1"
    assert child_report == {"answer": "child on connection 2"}
    assert second == "parent, second on connection 1"
    assert [(c.number, c.asked, c.ended) for c in seen_before_closing] == [
        (1, ["parent, first", "parent, second"], False),
        (2, ["child"], True),
    ]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
def test_a_child_forked_while_another_thread_holds_the_clients_lock_can_ask(
    client_kind: str, telling_server: Any
) -> None:
    """A thread of the parent's holds the lock that guards the client's sessions at the
    moment of the fork (as one that is opening a session may): the child, where that
    thread does not exist, must not wait for it for ever."""
    server, options = telling_server
    asker = Asker(client_kind, server.url, options)
    transport = asker.client._transport
    lock = transport._lock if client_kind == "sync" else transport._own._lock
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            holding.set()
            done.wait(WAIT)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    try:
        assert holding.wait(WAIT)
        report = in_child(lambda: {"answer": asker.ask_in_new_loop("child")})
    finally:
        done.set()
        holder.join(WAIT)
        asker.close()
        asker.end_loop()

    assert report == {"answer": "child on connection 1"}


# --- One async client, two threads, an event loop each ----------------------------------------


def run_in_thread(function: Callable[[], T], seconds: float = HANG_BOUND) -> Callable[[], T]:
    """Start ``function`` in a daemon thread now; the returned call waits for its result, or
    fails the test once ``seconds`` (`HANG_BOUND` by default) have passed."""
    outcome: Dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result() -> T:
        thread.join(seconds)
        assert not thread.is_alive(), f"still running after {seconds} s: it hangs"
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]  # type: ignore[no-any-return]

    return result


@dataclass
class Outcome:
    """What one thread's call gave: its events, the SDK error that ended it, how long it took."""

    events: List[Dict[str, Any]]
    error: Optional[BackendApiError]
    seconds: float


async def stream(
    client: AsyncBackendApiClient, got_first: Optional[Callable[[], None]] = None
) -> Outcome:
    """Read one stream of ``client`` to its end; call ``got_first`` once its first event
    is here."""
    started = time.monotonic()
    events: List[Dict[str, Any]] = []
    try:
        async for event in client.create("m", MESSAGES):
            events.append(event.get_dict())
            if got_first is not None and len(events) == 1:
                got_first()
    except BackendApiError as exc:
        return Outcome(events, exc, time.monotonic() - started)
    return Outcome(events, None, time.monotonic() - started)


def test_one_async_client_streams_in_two_threads_with_a_loop_each(
    backendapi_server: BackendApiTestServer, no_leaks: None
) -> None:
    """Thread A's stream waits after its first event while thread B, in its own
    ``asyncio.run``, reads a whole stream on the same client: B's new loop gets a session
    of its own instead of closing A's under A's live stream; then A reads on to its end."""
    release = threading.Event()
    backendapi_server.reply(Reply([FIRST, Wait(release), SECOND, FINISH]), Reply([FIRST, FINISH]))
    client = AsyncBackendApiClient(
        backendapi_server.url, timeout=Timeout(connect=5, read=3), max_retries=0
    )
    got_first = threading.Event()

    a = run_in_thread(lambda: asyncio.run(stream(client, got_first.set)))
    assert got_first.wait(WAIT)
    b = run_in_thread(lambda: asyncio.run(stream(client)))().events
    release.set()
    outcome_a = a()
    asyncio.run(client.aclose())

    assert b == [FIRST, FINISH]
    assert (outcome_a.events, outcome_a.error) == ([FIRST, SECOND, FINISH], None)
    assert backendapi_server.connections_accepted == 2


def test_closing_an_async_client_in_one_thread_ends_a_stream_of_another_threads_loop(
    backendapi_server: BackendApiTestServer, no_leaks: None
) -> None:
    """``aclose()`` in thread B, in its own ``asyncio.run``, while thread A's stream waits:
    A's session is closed on A's loop, and A's stream fails at once (aiohttp alone would
    leave its read waiting until the read timeout); a new call on the closed client fails
    at once."""
    release = threading.Event()
    backendapi_server.reply(Reply([FIRST, Wait(release), SECOND, FINISH]))
    read_timeout = 5.0
    client = AsyncBackendApiClient(
        backendapi_server.url, timeout=Timeout(connect=5, read=read_timeout), max_retries=0
    )
    got_first = threading.Event()

    a = run_in_thread(lambda: asyncio.run(stream(client, got_first.set)))
    assert got_first.wait(WAIT)
    run_in_thread(lambda: asyncio.run(client.aclose()))()
    outcome_a = a()
    release.set()
    after = run_in_thread(lambda: asyncio.run(stream(client)))()

    url = f"{backendapi_server.url}/backend-api/v2/conversation"
    assert outcome_a.events == [FIRST]
    assert type(outcome_a.error) is APIConnectionError
    assert str(outcome_a.error) == f"reading from {url} failed: the client was closed"
    assert outcome_a.seconds < read_timeout - 1
    assert after.events == []
    assert str(after.error) == "the client is closed"


def test_closing_an_async_client_ends_its_streams_on_the_same_loop(
    backendapi_server: BackendApiTestServer, no_leaks: None
) -> None:
    """``aclose()`` in one task while another task's stream waits on the same loop: that
    stream fails at once instead of waiting out its read timeout."""
    release = threading.Event()
    backendapi_server.reply(Reply([FIRST, Wait(release), SECOND, FINISH]))
    read_timeout = 5.0

    async def main() -> Outcome:
        client = AsyncBackendApiClient(
            backendapi_server.url, timeout=Timeout(connect=5, read=read_timeout), max_retries=0
        )
        got_first = asyncio.Event()
        reading = asyncio.ensure_future(stream(client, got_first.set))
        await asyncio.wait_for(got_first.wait(), WAIT)
        await client.aclose()
        return await reading

    outcome = finished_within(HANG_BOUND, lambda: asyncio.run(main()))
    release.set()

    assert outcome.events == [FIRST]
    assert type(outcome.error) is APIConnectionError
    assert str(outcome.error).endswith("failed: the client was closed")
    assert outcome.seconds < read_timeout - 1


# --- No read outlives its read timeout ----------------------------------------------------------


class LateBytesServer(LoopbackListener):
    """Answers every request with ``before``; once ``go`` is set (or after `WAIT` s), sends
    ``after`` in a packet of its own, then keeps the connection open until the client closes
    it (`client_closed` is then set)."""

    def __init__(self, before: bytes, after: bytes) -> None:
        self.before = before
        self.after = after
        self.go = threading.Event()
        self.client_closed = threading.Event()
        super().__init__("test-late-bytes-server")

    def serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError, ValueError):
            with conn.makefile("rb") as reader:
                read_request(reader)
            conn.sendall(self.before)
            self.go.wait(WAIT)
            conn.sendall(self.after)
            while conn.recv(65536):
                pass
            self.client_closed.set()


@pytest.mark.parametrize(
    "timeout",
    [Timeout(connect=5, read=1), Timeout(connect=5, read=None, total=1)],
    ids=["read-timeout", "total-timeout"],
)
def test_a_chunk_size_that_is_not_hex_in_a_later_packet_ends_within_the_timeout(
    client_kind: str, timeout: Timeout
) -> None:
    """aiohttp's reader waits for ever once such a line comes after the events (its own
    read timeout no longer runs): the SDK's deadline ends the read. The events before the
    bad line are handed out first, and the connection is closed."""
    before = STREAM_HEAD + chunk(sse(FIRST)) + chunk(sse(SECOND))
    with contextlib.closing(LateBytesServer(before, b"zz\r\n" + sse(FINISH) + b"\r\n")) as server:
        result = finished_within(
            HANG_BOUND,
            lambda: run_stream(
                client_kind,
                server.url,
                client_options={"timeout": timeout, "max_retries": 0},
                on_event=lambda event: server.go.set() if event.get_dict() == SECOND else None,
            ),
        )

        assert result.events == [FIRST, SECOND]
        assert isinstance(result.error, BackendApiError), result.error
        assert result.elapsed() < 1 + 3  # the timeout, and generous room
        assert server.client_closed.wait(WAIT)


def test_a_body_read_the_library_never_ends_raises_the_read_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever aiohttp's reader does, a wait for body bytes ends with the read timeout
    (here it never returns at all), and the task that read goes on uncancelled."""
    import aiohttp

    async def never(self: Any) -> bytes:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(aiohttp.StreamReader, "readany", never)
    # The head at once, the body only later: the client waits in readany() for it.
    server = LateBytesServer(STREAM_HEAD, chunk(sse(FIRST)) + b"0\r\n\r\n")

    async def main() -> Tuple[BaseException, float, int]:
        timeout = Timeout(connect=5, read=0.5)
        async with AsyncBackendApiClient(server.url, timeout=timeout, max_retries=0) as client:
            started = time.monotonic()
            with pytest.raises(BackendApiError) as caught:
                await client.complete("m", MESSAGES)
            seconds = time.monotonic() - started
            await asyncio.sleep(0)  # a task left cancelled would raise CancelledError here
            task = asyncio.current_task()
            assert task is not None
            cancelling = task.cancelling() if hasattr(task, "cancelling") else 0
            return caught.value, seconds, cancelling

    with contextlib.closing(server):
        error, seconds, cancelling = finished_within(HANG_BOUND, lambda: asyncio.run(main()))
        server.go.set()

    assert type(error) is APITimeoutError
    assert str(error) == (
        f"no data from {server.url}/backend-api/v2/conversation within the read timeout of 0.5 s"
    )
    assert seconds < 0.5 + 3
    assert cancelling == 0
