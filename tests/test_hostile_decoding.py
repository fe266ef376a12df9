"""Hostile streams, decoding: what a broken or malicious server can do to the I/O-free decoder.

* An event whose JSON is spread over many ``data:`` lines (pretty-printed JSON is valid
  SSE), fed in small pieces, costs work linear in its bytes, with every line-end style.
  Counted, not timed: bytes searched for line ends, bytes given to a JSON parser, and
  Python and C calls made, each growing in proportion to the stream.
* JSON nested deeper than `MAX_EVENT_DEPTH` raises `DecodeError` after every event before
  it was handed out, with and without msgspec, from a shallow stack or a deep one; up to
  the limit, it decodes.
* A UTF-8 BOM changes nothing at the end of a stream: one NDJSON line without its final
  newline is still an event.
* Fuzzing: streams built from the protocol's pieces (nested JSON, pretty-printed ``data:``
  lines, comments, ``id:``/``retry:`` lines, mixed line ends, BOMs, ``[DONE]``), random
  bytes, cut anywhere, decode exactly as a simple reference decoder written from the
  protocol's rules says; the only exceptions are the SDK's.
"""

from __future__ import annotations

import contextlib
import json
import json.scanner
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Type

import pytest
from clients import run_stream
from hypothesis import HealthCheck, given, settings
from hypothesis import event as label
from hypothesis import strategies as st
from scripted import FIRST, SECOND

from backendapi import (
    MAX_EVENT_DEPTH,
    BackendApiError,
    DecodeError,
    EventDecoder,
    IncompleteStreamError,
)
from backendapi._core import parsing
from backendapi.testing import BackendApiTestServer, Reply

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
        if decoder.error_pending:
            # A last NDJSON line after an unfinished SSE event is handed out first; the
            # error waits for the next call (EventDecoder.close), as a stream raises it.
            decoder.close()
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


# --- 8: deeply nested JSON ----------------------------------------------------------------

SHAPES = ["arrays", "objects", "mixed"]


def nested_value(depth: int, shape: str) -> str:
    """A JSON value nested `depth` levels deep (0: a number)."""
    if depth <= 0:
        return "0"
    arrays = [shape == "arrays" or (shape == "mixed" and level % 2 == 1) for level in range(depth)]
    openers = ["[" if array else '{"a": ' for array in arrays[:-1]]
    closers = ["]" if array else "}" for array in reversed(arrays[:-1])]
    return "".join(openers) + ("[]" if arrays[-1] else "{}") + "".join(closers)


def deep_event(depth: int, shape: str = "mixed") -> bytes:
    """An event object whose JSON nests `depth` levels deep: the event itself is level 1."""
    return ('{"type": "deep", "value": ' + nested_value(depth - 1, shape) + "}").encode()


def nesting(text: str) -> int:
    """How deep `text`'s objects and arrays nest (outside strings): the reference."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def test_the_nested_values_nest_as_deep_as_asked() -> None:
    for shape in SHAPES:
        for depth in (1, 2, 3, 7, MAX_EVENT_DEPTH + 1):
            event = deep_event(depth, shape).decode()
            assert nesting(event) == depth
            json.loads(event)


def test_the_depth_limit_is_explicit() -> None:
    assert MAX_EVENT_DEPTH == 100
    assert f"{MAX_EVENT_DEPTH}" in (EventDecoder.__doc__ or "")
    assert DecodeError.__name__ in (EventDecoder.__doc__ or "")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("framing", sorted(FRAMINGS))
def test_nesting_up_to_the_limit_decodes(speedups: str, framing: str, shape: str) -> None:
    event = deep_event(MAX_EVENT_DEPTH, shape)
    data = FRAMINGS[framing](event)

    for size in (len(data), 7):
        assert feed_all(in_pieces(data, size)) == ([json.loads(event)], None)


def first_and_second(framing: str, middle: bytes) -> bytes:
    frame = FRAMINGS[framing]
    return frame(json.dumps(FIRST).encode()) + frame(middle) + frame(json.dumps(SECOND).encode())


@pytest.mark.parametrize("depth", [MAX_EVENT_DEPTH + 1, 1000, 100_000])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("framing", sorted(FRAMINGS))
def test_nesting_past_the_limit_raises_decode_error_after_the_events_before_it(
    speedups: str, framing: str, shape: str, depth: int
) -> None:
    data = first_and_second(framing, deep_event(depth, shape))

    for size in (len(data), 4096, 7):
        events, error = feed_all(in_pieces(data, size))

        assert events == [FIRST]
        assert type(error) is DecodeError
        assert f"nests deeper than {MAX_EVENT_DEPTH} levels" in str(error)


def stack_depth() -> int:
    frame: Any = sys._getframe(1)
    depth = 0
    while frame is not None:
        depth += 1
        frame = frame.f_back
    return depth


def with_headroom(headroom: int, function: Callable[[], Any]) -> Any:
    """Call `function` with only `headroom` frames left under the recursion limit."""

    def descend(levels: int) -> Any:
        return descend(levels - 1) if levels > 0 else function()

    return descend(sys.getrecursionlimit() - headroom - stack_depth() - 1)


# Frames left to the decoder: too few for a recursive parser to reach the limit's depth.
HEADROOM = 40


@pytest.mark.parametrize("framing", sorted(FRAMINGS))
def test_the_limit_is_the_same_from_deep_in_the_callers_stack(speedups: str, framing: str) -> None:
    allowed = first_and_second(framing, deep_event(MAX_EVENT_DEPTH))
    too_deep = first_and_second(framing, deep_event(MAX_EVENT_DEPTH + 1))
    if sys.version_info < (3, 12):  # later, C recursion has its own budget
        # The stack really is short: a recursive parser cannot go this deep here.
        with pytest.raises(RecursionError):
            with_headroom(HEADROOM, lambda: json.loads(deep_event(MAX_EVENT_DEPTH)))

    for size in (len(allowed), 7):
        pieces = in_pieces(allowed, size)
        outcome = with_headroom(HEADROOM, lambda: feed_all(pieces))  # noqa: B023
        assert outcome == ([FIRST, json.loads(deep_event(MAX_EVENT_DEPTH)), SECOND], None)

        pieces = in_pieces(too_deep, size)
        events, error = with_headroom(HEADROOM, lambda: feed_all(pieces))  # noqa: B023
        assert events == [FIRST]
        assert type(error) is DecodeError
        assert f"nests deeper than {MAX_EVENT_DEPTH} levels" in str(error)


@pytest.mark.parametrize("shape", SHAPES)
def test_nesting_past_the_limit_in_a_last_line_without_its_newline(
    speedups: str, shape: str
) -> None:
    """Whole or cut short, a last line too deep is refused as such, not as a cut stream; one
    with an error before it gets too deep is a cut stream. From any stack."""
    first = ndjson(json.dumps(FIRST).encode())
    deep = deep_event(MAX_EVENT_DEPTH + 1, shape)
    for headroom in (None, HEADROOM):
        for last in (deep, deep[: -MAX_EVENT_DEPTH // 2], b"{{" + deep[1:]):
            data = first + last
            if headroom is None:
                events, error = feed_all([data])
            else:
                events, error = with_headroom(headroom, lambda: feed_all([data]))  # noqa: B023

            assert events == [FIRST]
            if last.startswith(b"{{"):
                assert type(error) is IncompleteStreamError
            else:
                assert type(error) is DecodeError
                assert f"nests deeper than {MAX_EVENT_DEPTH} levels" in str(error)


@pytest.mark.parametrize("framing", ["sse", "ndjson"])
def test_nesting_past_the_limit_reaches_the_caller_as_decode_error(
    client_kind: str, backendapi_server: BackendApiTestServer, speedups: str, framing: str
) -> None:
    deep = FRAMINGS[framing](deep_event(100_000))
    backendapi_server.reply(Reply([FIRST, deep, SECOND], framing=framing))

    result = run_stream(client_kind, backendapi_server.url)

    assert result.events == [FIRST]
    assert type(result.error) is DecodeError
    assert f"nests deeper than {MAX_EVENT_DEPTH} levels" in str(result.error)


# --- 14: a BOM at the end of a stream -----------------------------------------------------

LAST_LINES = [
    b'{"type": "content", "content": "Hi"}',
    b'  {"type": "content", "content": "indented"}',
    b'{"type": "title", "title": "t"}\n{"type": "content", "content": "second line"}',
    b": a comment",
    b"",
]


@pytest.mark.parametrize("body", LAST_LINES)
def test_a_bom_changes_nothing_at_the_end_of_a_stream(body: bytes) -> None:
    expected = feed_all([body])
    assert expected[1] is None
    data = BOM + body

    for cut in range(len(data) + 1):
        assert feed_all([data[:cut], data[cut:]]) == expected


@pytest.mark.parametrize("transfer", ["chunked", "close"])
def test_a_bom_and_one_ndjson_line_without_newline_reach_the_caller(
    client_kind: str, backendapi_server: BackendApiTestServer, transfer: str
) -> None:
    line = json.dumps(FIRST).encode()
    backendapi_server.reply(Reply([BOM + line], framing="ndjson", transfer=transfer))

    result = run_stream(client_kind, backendapi_server.url)

    assert result.error is None
    assert result.events == [FIRST]


@pytest.mark.parametrize("newline", [b"\n", b""], ids=["with-newline", "without-newline"])
def test_a_last_ndjson_line_after_unfinished_sse_data_comes_before_the_error(
    newline: bytes,
) -> None:
    decoder = EventDecoder()
    line = json.dumps(SECOND).encode()
    events = decoder.feed(b"data: " + json.dumps(FIRST).encode() + b"\n" + line + newline)
    events += decoder.close() if not newline else []

    assert [event.get_dict() for event in events] == [SECOND]
    with pytest.raises(IncompleteStreamError, match="blank line that completes an SSE event"):
        decoder.close()


@pytest.mark.parametrize("transfer", ["chunked", "close"])
def test_a_last_ndjson_line_after_unfinished_sse_data_reaches_the_caller(
    client_kind: str, backendapi_server: BackendApiTestServer, transfer: str
) -> None:
    body = b"data: " + json.dumps(FIRST).encode() + b"\n" + json.dumps(SECOND).encode()
    backendapi_server.reply(Reply([body], framing="ndjson", transfer=transfer))

    result = run_stream(client_kind, backendapi_server.url)

    assert result.events == [SECOND]
    assert isinstance(result.error, IncompleteStreamError)


# --- Fuzzing against a reference decoder --------------------------------------------------


class Bad(Exception):
    """The reference decoder's DecodeError."""


class TooDeep(Bad):
    """The reference decoder's DecodeError for JSON nested too deep."""


class Cut(Exception):
    """The reference decoder's IncompleteStreamError."""


_FIELD_NAME = re.compile(rb"[A-Za-z][A-Za-z0-9_-]*")


def first_error(text: str) -> Optional[int]:
    """Where ``json.loads(text)`` finds its first error, None if nowhere, whatever the depth."""
    decoder = json.JSONDecoder()
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    limit = sys.getrecursionlimit()
    # Python's own scanner recurses in Python frames: a few per level, a level per 2 chars.
    sys.setrecursionlimit(limit + 2 * len(text) + 100)
    try:
        decoder.decode(text)
    except json.JSONDecodeError as exc:
        return exc.pos
    finally:
        sys.setrecursionlimit(limit)
    return None


def reference_loads(text: str) -> Any:
    """``json.loads``, but `TooDeep` where the JSON nests deeper than the limit before any
    error in it, `Bad` for any other error."""
    if nesting(text) > MAX_EVENT_DEPTH:
        error = first_error(text)
        raise TooDeep if error is None or nesting(text[:error]) > MAX_EVENT_DEPTH else Bad
    try:
        return json.loads(text)
    except ValueError:
        raise Bad from None


def reference_parse(payload: bytes, name: Optional[str]) -> Dict[str, Any]:
    """One event's JSON, as the decoder's docstring and README describe it."""
    try:
        text = payload.decode(json.detect_encoding(payload), "surrogatepass")
    except UnicodeDecodeError:
        raise Bad from None
    value = reference_loads(text)
    if not isinstance(value, dict):
        raise Bad
    if "type" not in value:
        if not name:
            raise Bad
        value = {"type": name, **value}
    if not isinstance(value["type"], str):
        value["type"] = str(value["type"])
    return value


def reference_decode(stream: bytes) -> Tuple[List[Dict[str, Any]], Optional[Type[Exception]]]:
    """The events of a whole stream, and the kind of error that ends it (`Bad` or `Cut`).

    Written from the rules alone, for clarity, not speed: split into lines at ``\\r\\n``,
    ``\\r`` or ``\\n``; a BOM opens the first line; a line starting with ``{`` (after spaces
    or tabs) is an NDJSON event; ``:`` a comment; else an SSE field, dispatched at a blank
    line; ``data: [DONE]`` ends the stream. JSON nested deeper than the limit before any
    error in it is too deep. At the end, an unterminated NDJSON line is an event if whole
    (too deep: a `Bad` one), and the stream was cut otherwise, or inside an SSE event.
    """
    *lines, rest = re.split(rb"\r\n|\r|\n", stream)
    events: List[Dict[str, Any]] = []
    data: List[bytes] = []
    name: Optional[str] = None
    if (lines[0] if lines else rest).startswith(BOM):
        if lines:
            lines[0] = lines[0][len(BOM) :]
        else:
            rest = rest[len(BOM) :]
    try:
        for line in lines:
            if not line:
                if data:
                    payload = b"\n".join(data)
                    if payload == b"[DONE]":
                        return events, None
                    events.append(reference_parse(payload, name))
                data, name = [], None
            elif line.lstrip(b" \t").startswith(b"{") and line[:1] in b"{ \t":
                events.append(reference_parse(line, None))
            elif line.startswith(b":"):
                pass
            else:
                field, colon, value = line.partition(b":")
                if not colon and field not in (b"data", b"event", b"id", b"retry"):
                    raise Bad
                if value.startswith(b" "):
                    value = value[1:]
                if field == b"data":
                    data.append(value)
                elif field == b"event":
                    try:
                        name = value.decode("utf-8")
                    except UnicodeDecodeError:
                        raise Bad from None
                elif field == b"id":
                    if b"\0" not in value:
                        try:
                            value.decode("utf-8")
                        except UnicodeDecodeError:
                            raise Bad from None
                elif field != b"retry" and not _FIELD_NAME.fullmatch(field):
                    raise Bad
        last = []
        if rest.lstrip(b" \t").startswith(b"{"):
            try:
                last.append(reference_parse(rest, None))
            except TooDeep:
                raise
            except Bad:
                raise Cut from None
        elif rest and not rest.startswith(b":"):
            raise Cut
        events += last  # a whole last NDJSON line is handed out, even after SSE data lines
        if data:  # cut inside an SSE event
            raise Cut
    except (Bad, Cut) as exc:
        return events, type(exc)
    return events, None


def decoded(pieces: Sequence[bytes]) -> Tuple[List[Dict[str, Any]], Optional[Type[Exception]]]:
    """`feed_all`, with the SDK's errors named as the reference names them."""
    events, error = feed_all(pieces)
    if error is None:
        return events, None
    assert str(error)
    if isinstance(error, IncompleteStreamError):
        return events, Cut
    return events, TooDeep if "nests deeper than" in str(error) else Bad


def test_the_reference_decoder_reads_the_protocol() -> None:
    """A few cases by hand, so that the fuzz test compares against something right."""
    hi = {"type": "content", "content": "Hi"}
    line = json.dumps(hi).encode()
    assert reference_decode(BOM + line) == ([hi], None)
    assert reference_decode(b"event: content\r\ndata: " + line + b"\r\rdata: [DONE]\n\n") == (
        [hi],
        None,
    )
    assert reference_decode(b'data: {"a":\ndata: 1}\n\n') == ([], Bad)
    named = b'event: x\ndata: {"a":\ndata: 1}\n\n'
    assert reference_decode(named) == ([{"type": "x", "a": 1}], None)
    assert reference_decode(line + b"\n" + line[:-1]) == ([hi], Cut)
    assert reference_decode(b"data: " + line + b"\n") == ([], Cut)
    deep = deep_event(MAX_EVENT_DEPTH + 1)
    assert reference_decode(line + b"\n" + deep) == ([hi], TooDeep)
    assert reference_decode(line + b"\n" + deep + b"\n" + line) == ([hi], TooDeep)
    # An error before the nesting gets too deep: invalid JSON, cut at the end.
    assert reference_decode(b"{{" + deep[1:] + b"\n") == ([], Bad)
    assert reference_decode(b"{{" + deep[1:]) == ([], Cut)
    assert reference_decode(deep[:-20] + b"\n") == ([], TooDeep)
    assert reference_decode(b"<html>\n") == ([], Bad)
    assert reference_decode(b"retry: 10\nid: 7\nfoo: bar\n: c\n" + line) == ([hi], None)


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
# Around the limit, and far past it (where a recursive parser would hit Python's own).
DEPTHS = [2, MAX_EVENT_DEPTH - 1, MAX_EVENT_DEPTH, MAX_EVENT_DEPTH + 1, 150, 1500]
TYPES = st.sampled_from(["content", "content", "title", "preview", 7, None])
END = st.sampled_from([b"\n", b"\r\n", b"\r"])


@st.composite
def event_texts(draw: st.DrawFn) -> str:
    """One event's JSON text: small random JSON, or nested to a depth near the limit."""
    fields: Dict[str, Any] = {}
    kind = draw(TYPES)
    if kind is not None:
        fields["type"] = kind
    if draw(st.integers(0, 2)):
        fields["value"] = draw(JSON_VALUES)
        return json.dumps(fields, indent=draw(st.sampled_from([None, 0, 1, 2])))
    depth = draw(st.sampled_from(DEPTHS))
    value = nested_value(depth - 1, draw(st.sampled_from(SHAPES)))
    text = json.dumps({**fields, "value": 0}).replace("0}", value + "}")
    if depth <= 150 and draw(st.booleans()):  # pretty-printed: a line per bracket
        text = re.sub(r"([\[{])", "\\1\n", text)
    return text


# What a stream is made of: events of one framing (so that whole feeds take the decoder's
# batch paths), or everything mixed.
ITEMS = {
    "ndjson": ["ndjson"] * 8 + ["blank"],
    "sse": ["sse"] * 6 + ["comment", "blank", "done"],
    "mixed": ["ndjson"] * 6 + ["sse"] * 6 + ["comment", "blank"] * 2 + ["done", "junk"],
}


@st.composite
def framed_events(draw: st.DrawFn, items: List[str], end: st.SearchStrategy[bytes]) -> bytes:
    """One item of a stream, each line ended its own way: an event as an NDJSON line or as
    SSE (one ``data:`` line per line of its JSON, comments and fields among them), a
    comment, a blank line, ``[DONE]``, a BOM, or a few random bytes."""
    choice = draw(st.sampled_from(items))
    if choice == "comment":
        return b": keep-alive" + draw(end)
    if choice == "blank":
        return draw(end)
    if choice == "done":
        return b"data: [DONE]" + draw(end) + draw(end)
    if choice == "junk":
        return draw(st.one_of(st.binary(max_size=6), st.just(BOM)))
    text = draw(event_texts())
    if choice == "ndjson":
        return text.replace("\n", "").encode() + draw(end)
    lines: List[bytes] = []
    if draw(st.booleans()):
        lines.append(b"event: " + draw(st.sampled_from([b"content", b"title", b""])))
    # Among the data lines, now and then: nothing else, or comments, or other fields.
    extras = draw(st.sampled_from([[b": c"], [b": c", b"id: 1", b"retry: 5"]]))
    rate = draw(st.sampled_from([0, 0, 10, 3]))
    for line in text.split("\n"):
        if rate and not draw(st.integers(0, rate)):
            lines.append(draw(st.sampled_from(extras)))
        lines.append(draw(st.sampled_from([b"data: ", b"data:"])) + line.encode())
    return b"".join(line + draw(end) for line in lines) + draw(end)


@st.composite
def framed_streams(draw: st.DrawFn) -> bytes:
    items = ITEMS[draw(st.sampled_from(sorted(ITEMS)))]
    end = draw(st.sampled_from([st.just(b"\n"), END]))  # "\n" alone: the fast path
    stream = b"".join(draw(st.lists(framed_events(items, end), min_size=1, max_size=8)))
    if draw(st.booleans()):
        stream = BOM + stream
    ending = draw(st.sampled_from(["whole", "whole", "no final line end", "truncated"]))
    if ending == "no final line end":
        stream = stream.rstrip(b"\r\n")
    elif ending == "truncated":
        stream = stream[: draw(st.integers(0, len(stream)))]
    return stream


@st.composite
def cut_up(draw: st.DrawFn, streams: st.SearchStrategy[bytes]) -> Tuple[bytes, List[bytes]]:
    """A stream and the pieces it arrives in, often cut right after a ``\\r``."""
    stream = draw(streams)
    anywhere = st.integers(0, len(stream))
    tricky = [at for at in range(1, len(stream)) if stream[at - 1] in b"\r\xbb\xef"]
    positions = st.one_of(anywhere, st.sampled_from(tricky)) if tricky else anywhere
    cuts = sorted(draw(st.lists(positions, max_size=16)))
    bounds = [0, *cuts, len(stream)]
    return stream, [stream[start:end] for start, end in zip(bounds, bounds[1:])]


# Small: CI runs the whole suite in a few minutes; test_decoder_fuzz.py fuzzes at length.
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("name", sorted(PARSERS))
@FUZZ
@given(case=cut_up(framed_streams()))
def test_fuzzed_streams_decode_as_the_reference_says(
    name: str, case: Tuple[bytes, List[bytes]]
) -> None:
    check_against_the_reference(name, case)


@pytest.mark.parametrize("name", sorted(PARSERS))
@FUZZ
@given(case=cut_up(st.binary(max_size=300)))
def test_random_bytes_decode_as_the_reference_says(
    name: str, case: Tuple[bytes, List[bytes]]
) -> None:
    check_against_the_reference(name, case)


def check_against_the_reference(name: str, case: Tuple[bytes, List[bytes]]) -> None:
    stream, pieces = case
    expected = reference_decode(stream)

    with parser(name):
        assert decoded(pieces) == expected
    # Shown by --hypothesis-show-statistics: how far the streams got.
    events, error = expected
    label(f"ends with: {'no error' if error is None else error.__name__}")
    label(f"events: {min(len(events), 3)}{'+' if len(events) >= 3 else ''}")
    label(f"deepest event: {max((nesting(json.dumps(e)) for e in events), default=0) // 50 * 50}+")
