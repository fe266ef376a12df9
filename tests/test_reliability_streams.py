"""Reliability of streams over real HTTP: cancellation, connection reuse, faults, load, soak.

Every scenario that applies to both clients runs once per client (the ``client_kind``
fixture). Nothing here sleeps to synchronise: the server reports what it saw through
`RecordedRequest.disconnected`, `wait_for_requests` and `connections_accepted`, and `Wait`
gates hold a reply back until the test lets it go on. `docs/reliability.md` lists each fault
tried here and what the caller gets.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import gc
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import weakref
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from clients import MESSAGES, TEST_TIMEOUT, in_thread, run_stream, run_turns
from leaks import recorded_leaks
from loopback import RawServer
from scripted import FINISH, FIRST, SECOND, WAIT, chunk, disconnected, sse

from backendapi import (
    APITimeoutError,
    AsyncBackendApiClient,
    BackendApiClient,
    DecodeError,
    IncompleteStreamError,
    Timeout,
)
from backendapi.testing import BackendApiTestServer, Cut, Hold, Reply, Wait

# Every test fails if it leaves a socket, response, session or connector to the GC.
pytestmark = pytest.mark.usefixtures("no_leaks")

STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


# --- Cancellation: every way of leaving a stream closes its connection -------------------


@pytest.mark.parametrize("how", ["break then close", "break out of a with block"])
def test_leaving_a_stream_early_closes_the_connection(
    client_kind: str, backendapi_server: BackendApiTestServer, how: str
) -> None:
    """`break`, then ``close()``/``await aclose()``; or `break` out of the loop and so out of
    a ``with``/``async with client.create(...)`` block."""
    backendapi_server.reply(Reply([FIRST, Hold()]))

    result = run_stream(
        client_kind,
        backendapi_server.url,
        use_with=how == "break out of a with block",
        stop_after=1,
        after_stream=lambda: disconnected(backendapi_server),
    )

    assert result.error is None
    assert result.events == [FIRST]
    assert result.stream.closed
    assert result.after_stream is True  # seen by the server while the client was still open


class Boom(Exception):
    """Raised by the test inside a ``with`` block."""


def test_an_exception_in_a_with_block_closes_the_connection(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply([FIRST, Hold()]))
    url = backendapi_server.url

    def sync() -> Tuple[bool, bool]:
        with BackendApiClient(url, timeout=TEST_TIMEOUT) as client:
            stream = client.create("m", MESSAGES)
            with pytest.raises(Boom), stream:
                next(stream)
                raise Boom
            return stream.closed, disconnected(backendapi_server)

    async def asynchronous() -> Tuple[bool, bool]:
        async with AsyncBackendApiClient(url, timeout=TEST_TIMEOUT) as client:
            stream = client.create("m", MESSAGES)
            with pytest.raises(Boom):
                async with stream:
                    await stream.__anext__()
                    raise Boom
            return stream.closed, await in_thread(disconnected, backendapi_server)

    outcome = sync() if client_kind == "sync" else asyncio.run(asynchronous())

    assert outcome == (True, True)


@pytest.mark.parametrize(
    "held_by", ["a variable", "a reference cycle", "a reference cycle, after a young collection"]
)
def test_dropping_an_unfinished_stream_closes_the_connection(
    client_kind: str, backendapi_server: BackendApiTestServer, held_by: str
) -> None:
    """A stream abandoned mid-way, never closed, is closed when it is garbage collected.

    In a reference cycle only the cycle collector frees it, so this also checks that
    ``__del__`` works when called from ``gc.collect()``. A young collection between
    ``create()`` and the first read changes the order in which the collector would
    finalize the stream and its socket, were the socket in the same garbage: the blocking
    client then warned of an "unclosed socket" (its transport now keeps every response
    it lent until it is closed, as aiohttp's connector does).
    """
    young_collection = held_by.endswith("after a young collection")
    backendapi_server.reply(Reply([FIRST, Hold()]))
    url = backendapi_server.url

    def hold(stream: Any) -> Any:
        if held_by == "a variable":
            return stream
        cycle: Dict[str, Any] = {"stream": stream}
        cycle["self"] = cycle
        return cycle

    def drop(streams: List[Any]) -> Dict[str, bool]:
        """Drop the only reference to the stream in ``streams`` (held as `held_by` says),
        then collect garbage: whether the stream was freed, and open until then."""
        collected = weakref.ref(streams[0])
        holder = hold(streams.pop())
        open_before = not backendapi_server.requests[0].disconnected.is_set()
        del holder
        gc.collect()
        return {"collected": collected() is None, "open before": open_before}

    def sync() -> Dict[str, Any]:
        with BackendApiClient(url, timeout=TEST_TIMEOUT) as client:
            streams = [client.create("m", MESSAGES)]
            if young_collection:
                gc.collect(0)
            first = next(streams[0]).get_dict()
            dropped = drop(streams)  # while the client is open
            return {"first": first, **dropped, "disconnected": disconnected(backendapi_server)}

    async def asynchronous() -> Dict[str, Any]:
        async with AsyncBackendApiClient(url, timeout=TEST_TIMEOUT) as client:
            streams = [client.create("m", MESSAGES)]
            if young_collection:
                gc.collect(0)
            first = (await streams[0].__anext__()).get_dict()
            dropped = drop(streams)  # while the client is open and its loop runs
            gone = await in_thread(disconnected, backendapi_server)
            return {"first": first, **dropped, "disconnected": gone}

    outcome = sync() if client_kind == "sync" else asyncio.run(asynchronous())

    assert outcome == {"first": FIRST, "collected": True, "open before": True, "disconnected": True}


@pytest.mark.parametrize("when", ["after the first event", "before any event"])
def test_cancelling_the_task_closes_the_connection(
    backendapi_server: BackendApiTestServer, when: str
) -> None:
    """The async client only: cancelling the task that iterates releases the connection."""
    events = [FIRST, Hold()] if when == "after the first event" else [Hold()]
    backendapi_server.reply(Reply(events))

    async def main() -> Dict[str, Any]:
        seen: List[Dict[str, Any]] = []
        async with AsyncBackendApiClient(backendapi_server.url, timeout=TEST_TIMEOUT) as client:
            got_first = asyncio.Event()
            # Held here, so that only the cancellation, not garbage collection, can close it.
            stream = client.create("m", MESSAGES)

            async def consume() -> None:
                async for event in stream:
                    seen.append(event.get_dict())
                    got_first.set()

            task = asyncio.create_task(consume())
            if events[0] == FIRST:
                await asyncio.wait_for(got_first.wait(), WAIT)
            else:
                assert await in_thread(backendapi_server.wait_for_requests, 1)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return {
                "seen": seen,
                "cancelled": task.cancelled(),
                "closed": stream.closed,
                "disconnected": await in_thread(disconnected, backendapi_server),
            }

    outcome = asyncio.run(main())

    expected_seen = [FIRST] if when == "after the first event" else []
    assert outcome == {
        "seen": expected_seen,
        "cancelled": True,
        "closed": True,
        "disconnected": True,
    }


@pytest.mark.parametrize("stream_state", ["read to its end", "abandoned mid-way"])
def test_async_client_dropped_unclosed_inside_its_loop_leaks_nothing(
    backendapi_server: BackendApiTestServer, stream_state: str
) -> None:
    """An ``AsyncBackendApiClient`` never closed, dropped with its loop still running:
    no "Unclosed client session"/"Unclosed connector", no unclosed socket (checked by the
    ``no_leaks`` fixture), and an unfinished stream's connection is closed."""
    backendapi_server.default_reply = Reply([FIRST, Hold()])
    if stream_state == "read to its end":
        backendapi_server.reply(Reply([FIRST, SECOND, FINISH]))

    async def use() -> List[Dict[str, Any]]:
        client = AsyncBackendApiClient(backendapi_server.url, timeout=TEST_TIMEOUT)
        stream = client.create("m", MESSAGES)
        if stream_state == "read to its end":
            return [event.get_dict() async for event in stream]
        return [(await stream.__anext__()).get_dict()]

    events = asyncio.run(use())
    gc.collect()

    if stream_state == "read to its end":
        assert events == [FIRST, SECOND, FINISH]
    else:
        assert events == [FIRST]
        assert disconnected(backendapi_server)


def stream_in_two_asyncio_runs(url: str) -> Tuple[List[List[Dict[str, Any]]], List[str]]:
    """One `AsyncBackendApiClient` streams in an ``asyncio.run``, then in a second one that
    also closes it: the events of each run, and what leaked (`recorded_leaks`)."""
    client = AsyncBackendApiClient(url, timeout=TEST_TIMEOUT)

    async def use() -> List[Dict[str, Any]]:
        return [event.get_dict() async for event in client.create("m", MESSAGES)]

    async def use_then_close() -> List[Dict[str, Any]]:
        try:
            return await use()
        finally:
            await client.aclose()  # the second run's session is closed properly

    with recorded_leaks() as leaks:
        results = [asyncio.run(use()), asyncio.run(use_then_close())]
    return results, leaks


def test_async_client_keeps_working_across_two_asyncio_runs(
    backendapi_server: BackendApiTestServer,
) -> None:
    """Scripts and notebooks call ``asyncio.run`` once per question: the client makes a new
    session for the new loop (what it leaks doing so is for the next test to judge)."""
    backendapi_server.default_reply = Reply([FIRST, SECOND, FINISH])

    results, _ = stream_in_two_asyncio_runs(backendapi_server.url)

    assert results == [[FIRST, SECOND, FINISH]] * 2
    assert len(backendapi_server.requests) == 2


def test_second_asyncio_run_closes_the_first_runs_connections(
    backendapi_server: BackendApiTestServer,
) -> None:
    """The session made in the first ``asyncio.run`` is dropped when the second run needs a
    new one. Its loop is closed by then, yet its pooled keep-alive connection must still be
    closed, not left to the garbage collector (an "unclosed socket" ResourceWarning)."""
    backendapi_server.default_reply = Reply([FIRST, SECOND, FINISH])

    results, leaks = stream_in_two_asyncio_runs(backendapi_server.url)

    assert results == [[FIRST, SECOND, FINISH]] * 2
    assert leaks == []


def test_async_client_dropped_after_its_loop_closed_leaks_nothing(
    backendapi_server: BackendApiTestServer,
) -> None:
    """A client used in ``asyncio.run`` and never closed, dropped once that loop is gone:
    its ``__del__`` must close the pooled connection, not leave it to the GC."""
    backendapi_server.default_reply = Reply([FIRST, SECOND, FINISH])
    client = AsyncBackendApiClient(backendapi_server.url, timeout=TEST_TIMEOUT)

    async def use(client: AsyncBackendApiClient) -> List[Dict[str, Any]]:
        return [event.get_dict() async for event in client.create("m", MESSAGES)]

    with recorded_leaks() as leaks:
        events = asyncio.run(use(client))
        del client  # the last reference: the loop is closed by now

    assert events == [FIRST, SECOND, FINISH]
    assert leaks == []


# --- Connection reuse --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transfer", "gzip", "connections"),
    [("chunked", False, 1), ("chunked", True, 1), ("length", False, 1), ("close", False, 5)],
    ids=["chunked", "chunked-gzip", "content-length", "close-delimited"],
)
def test_sequential_streams_reuse_one_keep_alive_connection(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    transfer: str,
    gzip: bool,
    connections: int,
) -> None:
    """Five streams read to their end, one after the other, on one client.

    A delimited body (chunked or Content-Length) leaves the connection reusable: one
    connection carries all five. A close-delimited body ends by closing the connection, so
    each stream necessarily opens its own.
    """
    backendapi_server.default_reply = Reply([FIRST, SECOND, FINISH], transfer=transfer, gzip=gzip)

    turns = run_turns(client_kind, backendapi_server.url, [lambda: None] * 5)

    assert [(turn.events, turn.error) for turn in turns] == [([FIRST, SECOND, FINISH], None)] * 5
    assert len(backendapi_server.requests) == 5
    assert backendapi_server.connections_accepted == connections


@pytest.mark.parametrize("transfer", ["chunked", "length"])
def test_a_pooled_connection_has_its_socket_timeout_back(
    backendapi_server: BackendApiTestServer, transfer: str
) -> None:
    """The blocking client reads a plain socket with the kernel's receive timeout
    (``SO_RCVTIMEO``, the socket in blocking mode) while a response is read; once the body
    is read to its end, the connection goes back to the pool with Python's timeout again
    and no kernel one, so the next request is sent as before, on the same connection."""
    backendapi_server.default_reply = Reply([FIRST, SECOND, FINISH], transfer=transfer)
    url = backendapi_server.url
    with BackendApiClient(url, timeout=Timeout(connect=5, read=7.25)) as client:
        for _ in range(2):
            assert [event.get_dict() for event in client.create("m", MESSAGES)] == [
                FIRST,
                SECOND,
                FINISH,
            ]
            session = client._transport._session
            assert session is not None
            pools = session.get_adapter(url).poolmanager.pools
            (connection,) = [
                conn
                for key in pools.keys()  # noqa: SIM118 (the container refuses iteration)
                for conn in pools[key].pool.queue
                if conn is not None
            ]
            sock = connection.sock
            assert sock.gettimeout() == 7.25
            timeval = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
            assert timeval == bytes(len(timeval))  # no kernel timeout left behind
    assert backendapi_server.connections_accepted == 1


def test_a_stream_closed_early_does_not_return_its_connection_to_the_pool(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    """The next stream must not read the rest of the abandoned body as its own answer."""
    backendapi_server.reply(
        Reply([FIRST, Hold()]), Reply([SECOND, FINISH]), Reply([SECOND, FINISH])
    )
    url = backendapi_server.url

    def sync() -> List[Any]:
        with BackendApiClient(url, timeout=TEST_TIMEOUT) as client:
            stream = client.create("m", MESSAGES)
            first = [next(stream).get_dict()]
            stream.close()
            rest = [[event.get_dict() for event in client.create("m", MESSAGES)] for _ in "ab"]
            return [first, *rest]

    async def asynchronous() -> List[Any]:
        async with AsyncBackendApiClient(url, timeout=TEST_TIMEOUT) as client:
            stream = client.create("m", MESSAGES)
            first = [(await stream.__anext__()).get_dict()]
            await stream.aclose()
            rest = []
            for _ in "ab":
                rest.append([event.get_dict() async for event in client.create("m", MESSAGES)])
            return [first, *rest]

    results = sync() if client_kind == "sync" else asyncio.run(asynchronous())

    assert results == [[FIRST], [SECOND, FINISH], [SECOND, FINISH]]
    assert disconnected(backendapi_server)
    assert backendapi_server.connections_accepted == 2  # the second and third share one


# --- Faults ------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["sse", "ndjson"])
@pytest.mark.parametrize("where", ["between events", "mid-event"])
def test_connection_cut_raises_incomplete_stream(
    client_kind: str, backendapi_server: BackendApiTestServer, framing: str, where: str
) -> None:
    """A chunked body whose connection is aborted: the events before the cut are yielded,
    then `IncompleteStreamError`; never a silent, truncated "success"."""
    partial = b'event: content\ndata: {"type": "content", "con' if framing == "sse" else b'{"ty'
    events: List[Any] = [FIRST, SECOND]
    if where == "mid-event":
        events.append(partial)
    backendapi_server.reply(Reply([*events, Cut()], framing=framing))

    result = run_stream(client_kind, backendapi_server.url)

    assert result.events == [FIRST, SECOND]
    assert isinstance(result.error, IncompleteStreamError)
    assert backendapi_server.url in str(result.error)


@pytest.mark.parametrize(
    "rest",
    [chunk(sse(SECOND)), b"100\r\n" + sse(SECOND)[:20], b"100\r\n" + sse(SECOND)],
    ids=["no-last-chunk", "inside-a-chunk-mid-event", "inside-a-chunk-after-an-event"],
)
def test_chunked_body_cut_short_raises_incomplete_stream(
    client_kind: str, raw_server: RawServer, rest: bytes
) -> None:
    """The server closes cleanly (FIN) before the chunked body is complete: before its
    zero-length last chunk, or inside a chunk that announced 256 bytes."""
    raw_server.answer = STREAM_HEAD + chunk(sse(FIRST)) + rest

    result = run_stream(client_kind, raw_server.url)

    expected = [FIRST, SECOND] if sse(SECOND) in rest else [FIRST]
    assert result.events == expected
    assert isinstance(result.error, IncompleteStreamError)
    assert raw_server.requests == 1  # not retried: part of the answer had been read


@pytest.mark.parametrize(
    "tail",
    [
        b'event: content\ndata: {"type": "content", "cont',
        b'event: content\ndata: {"type": "content", "content": "x"}\n',
        b'{"type": "content", "cont',
    ],
    ids=["sse-mid-line", "sse-before-blank-line", "ndjson-mid-line"],
)
def test_close_delimited_body_cut_inside_an_event_raises_incomplete_stream(
    client_kind: str, backendapi_server: BackendApiTestServer, tail: bytes
) -> None:
    backendapi_server.reply(Reply([FIRST, tail], transfer="close"))

    result = run_stream(client_kind, backendapi_server.url)

    assert result.events == [FIRST]
    assert isinstance(result.error, IncompleteStreamError)


def test_close_delimited_body_cut_between_events_looks_complete(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    """A close-delimited body has no end marker: cut between two events, it is
    indistinguishable from a complete answer (documented, not an error)."""
    backendapi_server.reply(Reply([FIRST, Cut()], transfer="close"))

    result = run_stream(client_kind, backendapi_server.url)

    assert result.error is None
    assert result.events == [FIRST]


@pytest.mark.parametrize("framing", ["sse", "ndjson"])
@pytest.mark.parametrize("transfer", ["chunked", "close"])
def test_gzip_stream_arrives_event_by_event(
    client_kind: str, backendapi_server: BackendApiTestServer, transfer: str, framing: str
) -> None:
    """``Content-Encoding: gzip``, flushed after each event: each event reaches the caller
    while the server waits for exactly that before sending the next. A client that
    decompressed only at the end of the body would stall here until its read timeout."""
    gates = [threading.Event(), threading.Event()]
    events = [FIRST, SECOND, {"type": "content", "content": "ünïcode ✓"}, FINISH]
    backendapi_server.reply(
        Reply(
            [events[0], Wait(gates[0]), events[1], Wait(gates[1]), events[2], events[3]],
            framing=framing,
            transfer=transfer,
            gzip=True,
        )
    )
    seen: List[Any] = []

    def on_event(event: Any) -> None:
        seen.append(event)
        if len(seen) <= len(gates):
            gates[len(seen) - 1].set()

    result = run_stream(client_kind, backendapi_server.url, on_event=on_event)

    assert result.error is None
    assert result.events == events
    assert "gzip" in backendapi_server.requests[0].headers.get("Accept-Encoding", "")


def test_gzip_stream_cut_raises_incomplete_stream(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply([FIRST, SECOND, Cut()], gzip=True))

    result = run_stream(client_kind, backendapi_server.url)

    assert result.events == [FIRST, SECOND]
    assert isinstance(result.error, IncompleteStreamError)


def test_corrupt_gzip_raises_decode_error(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply([b"this is not gzip\n"], headers={"Content-Encoding": "gzip"}))

    result = run_stream(client_kind, backendapi_server.url)

    assert result.events == []
    assert isinstance(result.error, DecodeError)
    assert str(result.error).startswith("cannot decompress the stream: ")
    assert "\n" not in str(result.error)  # aiohttp's message spans two lines


@pytest.mark.parametrize(
    "bad",
    [
        b'event: content\ndata: {"type": "content", "content": "caf\xe9"}\n\n',
        b'{"type": "content", "content": "\xff\xfe"}\n',
        b'event: cont\xe9nt\ndata: {"type": "content", "content": "x"}\n\n',
    ],
    ids=["sse-data", "ndjson", "sse-event-name"],
)
def test_invalid_utf8_raises_decode_error(
    client_kind: str, backendapi_server: BackendApiTestServer, bad: bytes
) -> None:
    backendapi_server.reply(Reply([FIRST, bad, SECOND]))

    result = run_stream(client_kind, backendapi_server.url)

    assert result.events == [FIRST]
    assert isinstance(result.error, DecodeError)
    assert "utf-8" in str(result.error).lower()


def test_html_page_with_status_200_raises_decode_error(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    """A proxy's login or error page, served with 200: not an event stream."""
    page = b"<!DOCTYPE html><html><head><title>Sign in to the proxy</title></head><body>"
    backendapi_server.reply(Reply([page, b"x" * 100_000], content_type="text/html; charset=utf-8"))

    result = run_stream(client_kind, backendapi_server.url)

    assert result.events == []
    assert isinstance(result.error, DecodeError)
    message = str(result.error)
    assert "text/html" in message
    assert "<!DOCTYPE html><html><head><title>Sign in" in message
    assert len(message) < 1000  # an excerpt, not the whole page


def test_server_that_never_answers_raises_timeout(client_kind: str, raw_server: RawServer) -> None:
    """The connection is accepted and the request read, but no answer ever comes."""
    raw_server.answer = None
    started = time.monotonic()

    result = run_stream(
        client_kind, raw_server.url, client_options={"timeout": Timeout(connect=5, read=0.5)}
    )

    elapsed = time.monotonic() - started
    assert isinstance(result.error, APITimeoutError)
    assert "read timeout" in str(result.error)
    assert 0.5 <= elapsed < WAIT
    assert raw_server.requests == 1  # a read timeout is not retried: the server may be working
    assert raw_server.client_closed.wait(WAIT)


@pytest.mark.parametrize("transfer", ["chunked", "close"])
def test_server_silent_mid_stream_raises_timeout(
    client_kind: str, backendapi_server: BackendApiTestServer, transfer: str
) -> None:
    """The read timeout, never a complete answer: a close-delimited body that merely
    pauses must not read as ended (the blocking client waits with the kernel's receive
    timeout, whose expiry http.client's own socket reader would have taken for the end)."""
    backendapi_server.reply(Reply([FIRST, Hold()], transfer=transfer))

    result = run_stream(
        client_kind,
        backendapi_server.url,
        client_options={"timeout": Timeout(connect=5, read=0.5)},
        after_stream=lambda: disconnected(backendapi_server),
    )

    assert result.events == [FIRST]
    assert isinstance(result.error, APITimeoutError)
    assert result.after_stream is True  # and the connection was let go


# --- Concurrency -------------------------------------------------------------------------


def tagged_replies(count: int, gate: Optional[threading.Event] = None) -> List[Reply]:
    """`count` distinct replies; with `gate`, each waits on it after its first event."""
    replies = []
    for number in range(count):
        events: List[Any] = [
            {"type": "content", "content": f"reply {number} "},
            {"type": "content", "content": "x" * (number % 7)},
            {"type": "usage", "usage": {"total_tokens": number}},
        ]
        if gate is not None:
            events.insert(1, Wait(gate))
        replies.append(Reply(events, framing="ndjson" if number % 2 else "sse"))
    return replies


def reply_events(reply: Reply) -> List[Dict[str, Any]]:
    return [dict(item) for item in reply.events if isinstance(item, collections.abc.Mapping)]


def check_answers(
    server: BackendApiTestServer, replies: List[Reply], received: Dict[int, List[Dict[str, Any]]]
) -> None:
    """Every stream got the whole reply to its own request, intact.

    Requests take the queued replies in arrival order, so the i-th recorded request (found
    by the ``tag`` it carried) was answered with ``replies[i]``.
    """
    sent = [reply_events(reply) for reply in replies]
    assert sorted(map(json.dumps, received.values())) == sorted(map(json.dumps, sent))
    tags = [request.json["tag"] for request in server.requests]
    assert sorted(tags) == sorted(received)
    assert {tag: received[tag] for tag in tags} == {tag: sent[i] for i, tag in enumerate(tags)}


def test_300_concurrent_async_streams(backendapi_server: BackendApiTestServer) -> None:
    """One async client, 300 streams at once via asyncio.gather, all open at the same time.

    Each reply sends its first event, then waits on a gate the test opens only once the
    server holds all 300 requests: a client that allowed fewer connections at once (aiohttp
    defaults to 100) would never send the rest, and the test fails on its timeout.
    """
    count = 300
    gate = threading.Event()
    replies = tagged_replies(count, gate)
    backendapi_server.reply(*replies)

    def open_gate_when_all_arrived() -> bool:
        try:
            return backendapi_server.wait_for_requests(count, timeout=20)
        finally:
            gate.set()  # let everything finish either way, so a failure does not hang

    async def main() -> Tuple[Dict[int, List[Dict[str, Any]]], bool, float]:
        async with AsyncBackendApiClient(backendapi_server.url, timeout=30) as client:

            async def one(tag: int) -> Tuple[int, List[Dict[str, Any]]]:
                stream = client.create("m", MESSAGES, tag=tag)
                return tag, [event.get_dict() async for event in stream]

            started = time.monotonic()
            opener = asyncio.ensure_future(in_thread(open_gate_when_all_arrived))
            answers = await asyncio.wait_for(
                asyncio.gather(*(one(tag) for tag in range(count))), 30
            )
            all_arrived = await opener
            return dict(answers), all_arrived, time.monotonic() - started

    received, all_arrived, elapsed = asyncio.run(main())

    assert all_arrived, "the client did not have 300 requests in flight at once"
    assert len(received) == count
    check_answers(backendapi_server, replies, received)
    print(f"300 concurrent async streams: {elapsed:.2f} s")


def test_one_sync_client_shared_by_16_threads(
    backendapi_server: BackendApiTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    """16 threads, 8 streams each, on one `BackendApiClient`; a barrier makes them start
    together. Every stream gets its own answer intact, and urllib3 never discards a
    connection ("Connection pool is full")."""
    caplog.set_level(logging.WARNING, logger="urllib3")
    threads, per_thread = 16, 20
    replies = tagged_replies(threads * per_thread)
    backendapi_server.reply(*replies)
    received: Dict[int, List[Dict[str, Any]]] = {}
    errors: List[BaseException] = []
    barrier = threading.Barrier(threads)

    with BackendApiClient(backendapi_server.url, timeout=TEST_TIMEOUT) as client:

        def work(first_tag: int) -> None:
            try:
                barrier.wait(WAIT)
                for tag in range(first_tag, first_tag + per_thread):
                    received[tag] = [e.get_dict() for e in client.create("m", MESSAGES, tag=tag)]
            except BaseException as exc:
                errors.append(exc)

        workers = [
            threading.Thread(target=work, args=(number * per_thread,)) for number in range(threads)
        ]
        started = time.monotonic()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        elapsed = time.monotonic() - started

    assert errors == []
    assert len(received) == threads * per_thread
    check_answers(backendapi_server, replies, received)
    assert [r.getMessage() for r in caplog.records if "pool is full" in r.getMessage()] == []
    assert backendapi_server.connections_accepted <= threads
    print(f"16 threads x {per_thread} sync streams: {elapsed:.2f} s")


# --- Soak --------------------------------------------------------------------------------

# The soak server runs in a child process, so that only the client's file descriptors and
# memory are measured (the in-process server records every request and holds sockets).
SOAK_SERVER = """
import sys
from backendapi.testing import BackendApiTestServer, Hold, Reply

events = [{"type": "content", "content": "Hi"}, {"type": "finish", "finish": {"reason": "stop"}}]
with BackendApiTestServer() as server:
    server.default_reply = Reply(events + [Hold()] if sys.argv[1] == "hold" else events)
    print(server.url, flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""
SOAK_EVENTS = [
    {"type": "content", "content": "Hi"},
    {"type": "finish", "finish": {"reason": "stop"}},
]
FD_SLACK = 10
MEMORY_SLACK = 10 * 1024 * 1024


@contextlib.contextmanager
def soak_server(mode: str) -> Iterator[str]:
    """A `BackendApiTestServer` in a child process; yields its URL."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    process = subprocess.Popen(
        [sys.executable, "-c", SOAK_SERVER, mode],
        cwd=root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(WAIT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            assert process.stdout is not None
            process.stdout.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


needs_proc = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="counts file descriptors in /proc"
)


@needs_proc
def test_soak_5000_sequential_streams_leave_fds_and_memory_flat() -> None:
    count, warm_up = 5000, 200
    with soak_server("finish") as url, BackendApiClient(url, timeout=TEST_TIMEOUT) as client:
        for _ in range(warm_up):
            assert [e.get_dict() for e in client.create("m", MESSAGES)] == SOAK_EVENTS
        gc.collect()
        fds_before, rss_before = open_fds(), rss()
        started = time.monotonic()
        for _ in range(count):
            assert [e.get_dict() for e in client.create("m", MESSAGES)] == SOAK_EVENTS
        elapsed = time.monotonic() - started
        gc.collect()
        fds_after, rss_after = open_fds(), rss()

    print(
        f"{count} sequential sync streams: {elapsed:.2f} s; fds {fds_after - fds_before:+d}, "
        f"RSS {(rss_after - rss_before) / 1e6:+.2f} MB"
    )
    assert fds_after - fds_before <= FD_SLACK
    assert rss_after - rss_before <= MEMORY_SLACK


class Meter:
    """Open file descriptors and traced memory: `start` after the warm-up, then `stop`."""

    def start(self) -> None:
        gc.collect()
        tracemalloc.start()
        self.fds, self.memory = open_fds(), tracemalloc.get_traced_memory()[0]
        self.started = time.monotonic()

    def stop(self) -> Tuple[int, int, float]:
        """(fd growth, traced memory growth in bytes, seconds since `start`)."""
        elapsed = time.monotonic() - self.started
        gc.collect()
        fds, memory = open_fds(), tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return fds - self.fds, memory - self.memory, elapsed


@needs_proc
def test_soak_1000_abandoned_streams_leave_fds_and_memory_flat(client_kind: str) -> None:
    """Open a stream, read one event, drop it without closing; 1000 times on one client.

    The server holds each reply open after its first event, so only the client closing the
    socket (from ``__del__``) frees it. Memory is traced with tracemalloc.
    """
    count, warm_up = 1000, 100
    meter = Meter()

    def sync(url: str) -> Tuple[int, int, float]:
        with BackendApiClient(url, timeout=TEST_TIMEOUT) as client:

            def run(times: int) -> None:
                for number in range(times):
                    stream = client.create("m", MESSAGES)
                    assert next(stream).get_dict() == SOAK_EVENTS[0]
                    del stream
                    if number % 100 == 99:
                        gc.collect()

            run(warm_up)
            meter.start()
            try:
                run(count)
            finally:
                result = meter.stop()
        return result

    async def asynchronous(url: str) -> Tuple[int, int, float]:
        async with AsyncBackendApiClient(url, timeout=TEST_TIMEOUT) as client:

            async def run(times: int) -> None:
                for number in range(times):
                    stream = client.create("m", MESSAGES)
                    assert (await stream.__anext__()).get_dict() == SOAK_EVENTS[0]
                    del stream
                    if number % 100 == 99:
                        gc.collect()
                await asyncio.sleep(0)  # let the transports closed last finish closing

            await run(warm_up)
            meter.start()
            try:
                await run(count)
            finally:
                result = meter.stop()
        return result

    with soak_server("hold") as url:
        if client_kind == "sync":
            fds, memory, elapsed = sync(url)
        else:
            # A client that leaked its connections would wait for a free one forever.
            fds, memory, elapsed = asyncio.run(asyncio.wait_for(asynchronous(url), 120))

    print(
        f"{count} abandoned {client_kind} streams: {elapsed:.2f} s; fds {fds:+d}, "
        f"traced memory {memory / 1e6:+.2f} MB"
    )
    assert fds <= FD_SLACK
    assert memory <= MEMORY_SLACK
