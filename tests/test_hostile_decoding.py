"""Hostile streams, decoding: what a broken or malicious server can do to the I/O-free decoder.

* An event whose JSON is spread over many ``data:`` lines (pretty-printed JSON is valid
  SSE), fed in small pieces, costs work linear in its bytes, with every line-end style.
  Counted, not timed: bytes searched for line ends, bytes given to a JSON parser, and
  Python and C calls made, each growing in proportion to the stream.
"""

from __future__ import annotations

import contextlib
import json
import json.scanner
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from backendapi import (
    BackendApiError,
    EventDecoder,
)
from backendapi._core import parsing

BOM = b"\xef\xbb\xbf"
PARSERS: Dict[str, Any] = {
    "stdlib": parsing.stdlib_parse_events,
    "msgspec": parsing.msgspec_parse_events(),
}
assert PARSERS["msgspec"] is not None, "the test extra installs msgspec"


@contextlib.contextmanager
def parser(name: str) -> Iterator[None]:
    """Batches parsed by the stdlib alone (``BACKENDAPI_SPEEDUPS=0``) or by msgspec."""
    saved = parsing.parse_events
    parsing.parse_events = PARSERS[name]
    try:
        yield
    finally:
        parsing.parse_events = saved


@pytest.fixture(params=sorted(PARSERS))
def speedups(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with batches parsed by the stdlib, then by msgspec."""
    with parser(request.param):
        yield request.param


Outcome = Tuple[List[Dict[str, Any]], Optional[BaseException]]


def feed_all(pieces: Sequence[bytes]) -> Outcome:
    """Feed `pieces` to a new decoder, then close it: the events, and the SDK error if any."""
    decoder = EventDecoder()
    events: List[Dict[str, Any]] = []
    try:
        for piece in pieces:
            events += [event.get_dict() for event in decoder.feed(piece)]
        events += [event.get_dict() for event in decoder.close()]
    except BackendApiError as exc:
        return events, exc
    return events, None


def in_pieces(data: bytes, size: int) -> List[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def ndjson(event: bytes) -> bytes:
    return event + b"\n"


def sse(event: bytes, name: str = "content") -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + event + b"\n\n"


def sse_lines(event: bytes) -> bytes:
    """The event's JSON text cut into one ``data:`` line per line of it (no event name)."""
    return b"".join(b"data: " + line + b"\n" for line in event.split(b"\n")) + b"\n"


FRAMINGS: Dict[str, Callable[[bytes], bytes]] = {
    "ndjson": ndjson,
    "sse": sse,
    "sse-many-data-lines": sse_lines,
}


# --- 5: linear decoding -------------------------------------------------------------------


def pretty_event(items: int) -> bytes:
    """A pretty-printed event object: one JSON line per 30-odd bytes, ``items * 5 + 4`` lines."""
    value = [{"index": i, "text": "abcdefghij" * 2, "flag": True} for i in range(items)]
    return json.dumps({"type": "preview", "value": value}, indent=1).encode()


LINE_ENDS = {
    "lf": [b"\n"],
    "crlf": [b"\r\n"],
    "cr": [b"\r"],
    # Each line ends its own way, so the pieces swing between the decoder's paths.
    "mixed": [b"\n", b"\r\n", b"\n", b"\r", b"\n", b"\n"],
}


def multiline_sse(event: bytes, ends: List[bytes]) -> bytes:
    """`event` as SSE: an ``event:`` line, one ``data:`` line per line of JSON, a comment
    every 50 lines, each line ended by the next of `ends` in turn, then the blank line."""
    lines = [b"event: preview"]
    for number, line in enumerate(event.split(b"\n")):
        if number % 50 == 49:
            lines.append(b": still pretty-printing")
        lines.append(b"data: " + line)
    lines.append(b"")  # the blank line that ends the event
    # A last "\n" in case the blank line's end joined the "\r" before it into one "\r\n".
    return b"".join(line + ends[number % len(ends)] for number, line in enumerate(lines)) + b"\n"


class CountingBuffer(bytearray):
    """A bytearray that counts the bytes its ``find`` and ``rfind`` examine."""

    searched = 0

    def find(self, sub: Any, start: Any = None, end: Any = None) -> int:  # type: ignore[override]
        found = super().find(sub, start, end)
        first, stop, _ = slice(start, end).indices(len(self))
        self.searched += max(0, (stop if found < 0 else found + len(sub)) - first)
        return found

    def rfind(self, sub: Any, start: Any = None, end: Any = None) -> int:  # type: ignore[override]
        found = super().rfind(sub, start, end)
        first, stop, _ = slice(start, end).indices(len(self))
        self.searched += max(0, stop - (first if found < 0 else found))
        return found


@dataclass
class Work:
    """What decoding one stream cost, counted."""

    searched: int = 0
    """Bytes examined by the buffer's searches for line ends."""
    parsed: int = 0
    """Characters (or bytes) handed to a JSON parser."""
    calls: int = 0
    """Python and C function calls made inside ``feed()`` and ``close()``."""


def measure(data: bytes, piece: int, monkeypatch: pytest.MonkeyPatch) -> Work:
    """Decode `data` fed in pieces of `piece` bytes, counting the work done."""
    work = Work()
    loads, scan_once, parse_events = json.loads, parsing.scan_once, parsing.parse_events

    def counting_loads(text: Any, *args: Any, **kwargs: Any) -> Any:
        work.parsed += len(text)
        return loads(text, *args, **kwargs)

    def counting_scan_once(text: str, at: int) -> Any:
        work.parsed += len(text) - at
        return scan_once(text, at)

    def counting_parse_events(texts: List[str]) -> Any:
        work.parsed += sum(map(len, texts))
        return parse_events(texts)

    monkeypatch.setattr(json, "loads", counting_loads)
    monkeypatch.setattr(parsing, "scan_once", counting_scan_once)
    monkeypatch.setattr(parsing, "parse_events", counting_parse_events)

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event in ("call", "c_call"):
            work.calls += 1

    decoder = EventDecoder()
    buffer = CountingBuffer()
    decoder._buf = buffer
    events = []
    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        for start in range(0, len(data), piece):
            events += decoder.feed(data[start : start + piece])
            # Whatever the decoder keeps has been searched for line ends, once.
            assert decoder._buf is buffer, "the decoder replaced its buffer: update this test"
            assert decoder._scanned == len(buffer)
        events += decoder.close()
    finally:
        sys.setprofile(previous)
    monkeypatch.undo()
    assert len(events) == 1 and events[0].type == "preview"
    work.searched = buffer.searched
    return work


@pytest.mark.parametrize("piece", [3, 64, 4096])
@pytest.mark.parametrize("ends", sorted(LINE_ENDS))
def test_an_event_of_many_data_lines_in_small_pieces_costs_linear_work(
    ends: str, piece: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = multiline_sse(pretty_event(120), LINE_ENDS[ends])
    large = multiline_sse(pretty_event(480), LINE_ENDS[ends])
    assert len(large) > 3.9 * len(small)

    little = measure(small, piece, monkeypatch)
    much = measure(large, piece, monkeypatch)

    # Four times the bytes, four times the work, give or take the fixed costs and the mix
    # of the decoder's paths; a decoder that goes over the event's earlier lines again on
    # every feed does ~16 times more.
    growth = len(large) / len(small)
    for name in ("searched", "parsed", "calls"):
        assert getattr(much, name) <= 1.3 * growth * getattr(little, name), name
    # Absolute bounds too: each byte searched for a line end a few times at most (for "\n",
    # for "\r", once more where a "\r" ends a line after a "\n"), parsed twice at most (a
    # fast attempt, then the per-line path), and a bounded number of calls per line and
    # per feed.
    lines = large.count(b"\n") + large.count(b"\r")
    feeds = -(-len(large) // piece)
    assert much.searched <= 3 * len(large)
    assert much.parsed <= 2 * len(large)
    assert much.calls <= 40 * lines + 40 * feeds
