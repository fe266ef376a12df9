"""Performance guards that count instead of timing, so they are deterministic in CI.

Timing belongs to ``make bench`` (``benchmarks/``). These tests catch the
regressions that turn linear work into quadratic work, or streaming into
buffering, whatever the machine's speed:

* the decoder searches each byte for a line end a bounded number of times,
  however small the pieces a long event arrives in (a decoder that rescans its
  buffer from the start on every feed does ~N^2/piece searches);
* after every feed, the decoder's "searched up to" mark is the end of its
  buffer, so no byte is ever searched again;
* the clients hand the decoder what the network delivered, piece by piece,
  never the whole body in one buffer.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, List, Tuple

import pytest
from clients import MESSAGES

from backendapi import AsyncBackendApiClient, BackendApiClient, EventDecoder
from backendapi.testing import BackendApiTestServer, Reply
from backendapi.testing._wire import encode_event

MiB = 1024 * 1024
PIECE = 4096


class CountingBuffer(bytearray):
    """A bytearray that counts the bytes its ``find`` examines.

    The count is exact for a single-byte needle: up to and including the match,
    or the whole range when there is none.
    """

    searched = 0
    searches = 0

    def find(self, sub: Any, start: Any = None, end: Any = None) -> int:  # type: ignore[override]
        found = super().find(sub, start, end)
        first, stop, _ = slice(start, end).indices(len(self))
        last = stop if found < 0 else found + 1
        self.searched += max(0, last - first)
        self.searches += 1
        return found


def instrumented_decoder(**kwargs: Any) -> Tuple[EventDecoder, CountingBuffer]:
    decoder = EventDecoder(**kwargs)
    buffer = CountingBuffer()
    decoder._buf = buffer
    return decoder, buffer


def big_event(size: int) -> bytes:
    """A JSON ``content`` event of exactly ``size`` bytes."""
    prefix, suffix = b'{"type": "content", "content": "', b'"}'
    room = size - len(prefix) - len(suffix)
    return prefix + (b"0123456789abcdef" * (room // 16 + 1))[:room] + suffix


def feed_in_pieces(
    decoder: EventDecoder, buffer: CountingBuffer, data: bytes, piece: int = PIECE
) -> List[Any]:
    """Feed ``data`` piece by piece, checking the decoder's scan mark after each feed."""
    events: List[Any] = []
    for start in range(0, len(data), piece):
        events.extend(decoder.feed(data[start : start + piece]))
        # The instrumentation only counts while the decoder keeps its buffer.
        assert decoder._buf is buffer, "the decoder replaced its buffer: update this test"
        # Everything kept has been searched once already and will not be again.
        assert decoder._scanned == len(decoder._buf)
    events.extend(decoder.close())
    return events


@pytest.mark.parametrize(
    ("framing", "newline"),
    [("ndjson", b"\n"), ("sse", b"\n"), ("sse", b"\r\n")],
    ids=["ndjson", "sse-lf", "sse-crlf"],
)
def test_a_16_mib_event_in_4_kib_pieces_is_searched_a_bounded_number_of_times(
    framing: str, newline: bytes
) -> None:
    event = big_event(16 * MiB)
    if framing == "ndjson":
        data = event + newline
    else:
        data = b"event: content" + newline + b"data: " + event + newline + newline
    decoder, buffer = instrumented_decoder(max_event_size=32 * MiB)

    events = feed_in_pieces(decoder, buffer, data)

    assert len(events) == 1
    assert len(events[0].content) == len(event) - len(b'{"type": "content", "content": ""}')
    # Every byte must be looked at once at least, to find the line end...
    assert buffer.searched >= len(data) - 2 * PIECE
    # ...and at most twice (once for "\n", once for "\r"). Rescanning the
    # buffer on each of the 4096 feeds would search ~2000 times more.
    assert buffer.searched <= 2 * len(data) + 4 * PIECE
    assert buffer.searches <= 4 * (len(data) // PIECE + 2)


@pytest.mark.parametrize("framing", ["ndjson", "sse"])
def test_many_small_events_are_each_searched_a_bounded_number_of_times(framing: str) -> None:
    lines = []
    for i in range(40_000):
        payload = json.dumps({"type": "content", "content": f" token{i}"}).encode()
        lines.append(payload + b"\n" if framing == "ndjson" else b"data: " + payload + b"\n\n")
    data = b"".join(lines)
    decoder, buffer = instrumented_decoder()

    # An odd piece size cuts lines, and "\r\n"-free data, at every possible offset.
    events = feed_in_pieces(decoder, buffer, data, piece=1000)

    assert len(events) == 40_000
    assert buffer.searched <= 2 * len(data) + 4 * 1000


def _body_events(count: int, size: int) -> List[Any]:
    return [
        {"type": "content", "content": chr(ord("a") + i % 26) * size, "index": i}
        for i in range(count)
    ]


class FeedRecorder:
    """Records the size of every buffer handed to ``EventDecoder.feed``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: List[int] = []
        original = EventDecoder.feed

        def feed(decoder: EventDecoder, data: Any) -> Any:
            self.sizes.append(len(data))
            return original(decoder, data)

        monkeypatch.setattr(EventDecoder, "feed", feed)


# 512 events of 16 KiB: an 8 MiB body.
EVENTS = _body_events(512, 16 * 1024)


def _run_sync(server: BackendApiTestServer) -> int:
    with BackendApiClient(server.url) as client, client.create("m", MESSAGES) as stream:
        return sum(1 for _ in stream)


def _run_async(server: BackendApiTestServer) -> int:
    async def main() -> int:
        async with AsyncBackendApiClient(server.url) as client:
            count = 0
            async for _ in client.create("m", MESSAGES):
                count += 1
            return count

    return asyncio.run(main())


@pytest.mark.parametrize("transfer", ["chunked", "close"])
@pytest.mark.parametrize("framing", ["sse", "ndjson"])
@pytest.mark.parametrize(
    ("client_kind", "largest"),
    # The blocking client asks urllib3 for at most 64 KiB per read; the async
    # one takes what aiohttp has, at most one socket read (asyncio's is 256 KiB).
    [("sync", 64 * 1024), ("async", 256 * 1024)],
)
def test_a_multi_mb_body_reaches_the_decoder_in_network_sized_pieces(
    backendapi_server: BackendApiTestServer,
    monkeypatch: pytest.MonkeyPatch,
    client_kind: str,
    largest: int,
    framing: str,
    transfer: str,
) -> None:
    backendapi_server.reply(Reply(EVENTS, framing=framing, transfer=transfer))
    recorder = FeedRecorder(monkeypatch)

    count = (_run_sync if client_kind == "sync" else _run_async)(backendapi_server)

    assert count == len(EVENTS)
    body = sum(len(encode_event(e, framing)) for e in EVENTS)
    assert body > 8 * 1024 * 1024
    sizes = recorder.sizes
    assert sum(sizes) == body, "every body byte goes through EventDecoder.feed"
    # iter_content(None) on a close-delimited body, or response.read(), would
    # hand over the whole body at once.
    assert max(sizes) <= largest
    assert len(sizes) >= body // largest
