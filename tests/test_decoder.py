"""The event decoder on its own: bytes in, events out, no server.

Expected events are written out as the dicts a server serialized (or taken
from ``json.loads`` of the NDJSON transcripts), never from the decoder itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backendapi import (
    DecodeError,
    EventDecoder,
    EventTooLargeError,
    IncompleteStreamError,
    RawResponse,
    decode,
)

DATA = Path(__file__).parent / "data"
SSE_FIXTURES = sorted(DATA.glob("g4f-8.8.6-*.sse"))
EOLS = ("\n", "\r\n", "\r")
PROPERTY = settings(max_examples=200, deadline=None)

# Raw UTF-8 (ensure_ascii=False), as servers other than g4f send it: multi-byte
# characters that a cut can split, and the two separators str.splitlines breaks on.
EVENTS: List[Dict[str, Any]] = [
    {"type": "provider", "provider": {"name": "OpenaiChat", "model": "gpt-4o"}},
    {"type": "content", "content": "w\u00f6rld \U0001f30d \u2028 ok"},
    {"type": "content", "content": "a\u2029b \u00e9\u00e8 \u4e2d\u6587 \r\n escaped"},
    {"type": "reasoning", "token": "\U0001f914", "is_thinking": True},
    {"type": "usage", "usage": {"prompt_tokens": 3, "completion_tokens": 8}},
    {"type": "finish", "finish": {"reason": "stop"}},
]


def dump(event: Dict[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False)


def as_sse(events: Sequence[Dict[str, Any]], eol: str = "\n") -> bytes:
    return "".join(
        f"event: {event['type']}{eol}data: {dump(event)}{eol}{eol}" for event in events
    ).encode("utf-8")


def as_ndjson(events: Sequence[Dict[str, Any]], eol: str = "\n") -> bytes:
    return "".join(dump(event) + eol for event in events).encode("utf-8")


def as_dicts(events: Sequence[RawResponse]) -> List[Dict[str, Any]]:
    return [event.get_dict() for event in events]


def dicts(data: bytes, **options: Any) -> List[Dict[str, Any]]:
    """Decode ``data`` in one piece."""
    return as_dicts(decode(data, **options))


def dicts_in_pieces(data: bytes, cuts: Sequence[int], **options: Any) -> List[Dict[str, Any]]:
    """Decode ``data`` fed as the pieces between ``cuts`` (empty pieces included)."""
    decoder = EventDecoder(**options)
    bounds = [0, *sorted(cuts), len(data)]
    events = []
    for start, end in zip(bounds, bounds[1:]):
        events += decoder.feed(data[start:end])
    events += decoder.close()
    return [event.get_dict() for event in events]


def byte_by_byte(data: bytes, **options: Any) -> List[Dict[str, Any]]:
    return dicts_in_pieces(data, range(len(data)), **options)


# -- the real transcripts -------------------------------------------------------------------


def ndjson_twin(sse_path: Path) -> Path:
    return sse_path.with_name(
        sse_path.name.replace("g4f-8.8.6-", "g4f-pre-2025-12-").replace(".sse", ".ndjson")
    )


def test_every_fixture_has_both_framings() -> None:
    assert SSE_FIXTURES, "no transcripts found in tests/data"
    ndjson = sorted(DATA.glob("*.ndjson"))
    assert sorted(ndjson_twin(path) for path in SSE_FIXTURES) == ndjson


@pytest.mark.parametrize("sse_path", SSE_FIXTURES, ids=lambda path: path.stem)
def test_fixture_framings_decode_to_the_json_of_each_ndjson_line(sse_path: Path) -> None:
    sse_bytes = sse_path.read_bytes()
    ndjson_bytes = ndjson_twin(sse_path).read_bytes()
    oracle = [json.loads(line) for line in ndjson_bytes.split(b"\n") if line.strip()]
    assert len(oracle) >= 4

    assert dicts(ndjson_bytes) == oracle
    assert dicts(sse_bytes) == oracle
    assert byte_by_byte(sse_bytes) == oracle
    assert byte_by_byte(ndjson_bytes) == oracle


# -- cutting the bytes anywhere -------------------------------------------------------------


def mixed_stream(eol: str) -> bytes:
    """Both framings, comments and an SSE id in one stream, as a proxy might relay them."""
    first, second, third, *rest = EVENTS
    return b"".join(
        [
            b"\xef\xbb\xbf",
            as_sse([first], eol),
            f": keep-alive{eol}{eol}".encode(),
            as_ndjson([second], eol),
            f"id: 7{eol}retry: 1500{eol}".encode(),
            as_sse([third], eol),
            as_ndjson(rest, eol),
        ]
    )


STREAMS = {
    **{f"sse{eol!r}": as_sse(EVENTS, eol) for eol in EOLS},
    **{f"ndjson{eol!r}": as_ndjson(EVENTS, eol) for eol in EOLS},
    **{f"mixed{eol!r}": mixed_stream(eol) for eol in EOLS},
}


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_streams_decode_to_the_serialized_events(name: str) -> None:
    assert dicts(STREAMS[name]) == EVENTS


@PROPERTY
@given(st.data())
def test_cutting_a_stream_anywhere_gives_the_same_events(data: st.DataObject) -> None:
    stream = STREAMS[data.draw(st.sampled_from(sorted(STREAMS)), label="stream")]
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=40), label="cuts")
    assert dicts_in_pieces(stream, cuts) == EVENTS


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_every_cut_inside_a_character_or_line_end_gives_the_same_events(name: str) -> None:
    # Exhaustive over two-piece cuts: each continuation byte of a UTF-8
    # character and each "\r\n" is split once.
    stream = STREAMS[name]
    for cut in range(len(stream) + 1):
        assert dicts_in_pieces(stream, [cut]) == EVENTS, f"cut at byte {cut}"


SPECIAL_CHARACTERS = st.sampled_from(
    ["\u2028", "\u2029", "\r", "\n", "\x85", "\x00", "\u00f6", "\U0001f30d", '"', "\\"]
)
TEXT = st.text(st.characters(codec="utf-8") | SPECIAL_CHARACTERS, max_size=20)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
EVENT_NAMES = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1)


@st.composite
def framed_events(draw: st.DrawFn) -> Any:
    """Random events, each framed as NDJSON or SSE, with random line ends."""
    events = []
    out: List[str] = []

    def eol() -> str:
        # "\r" then "\n" would be one "\r\n", so a line end after "\r" never starts with "\n".
        after_cr = bool(out) and out[-1].endswith("\r")
        return draw(st.sampled_from(("\r", "\r\n") if after_cr else EOLS))

    for _ in range(draw(st.integers(1, 4))):
        fields = draw(
            st.dictionaries(TEXT.filter(lambda key: key != "type"), JSON_VALUES, max_size=5)
        )
        name = draw(EVENT_NAMES)
        ascii_only = draw(st.booleans())
        framing = draw(st.sampled_from(["ndjson", "sse", "sse-pretty", "sse-type-from-event"]))
        event = {"type": draw(TEXT), **fields}
        if framing == "sse-type-from-event":
            event = {"type": name, **fields}
            payload = json.dumps(fields, ensure_ascii=ascii_only)
        elif framing == "sse-pretty":
            payload = json.dumps(event, ensure_ascii=ascii_only, indent=2)
        else:
            payload = json.dumps(event, ensure_ascii=ascii_only)
        if framing == "ndjson":
            out.append(payload + eol())
        else:
            if draw(st.booleans()):
                out.append(": keep-alive" + eol())
            out.append(f"event: {name}{eol()}")
            for line in payload.split("\n"):
                out.append(f"data: {line}{eol()}")
            out.append(eol())
        events.append(event)
    return "".join(out).encode("utf-8"), events


@PROPERTY
@given(framed_events(), st.data())
def test_random_events_survive_framing_and_cutting(framed: Any, data: st.DataObject) -> None:
    stream, events = framed
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=30), label="cuts")
    assert dicts(stream) == events
    assert dicts_in_pieces(stream, cuts) == events


@pytest.mark.parametrize("piece_type", [bytes, bytearray, memoryview])
def test_feed_accepts_any_bytes_like_piece(piece_type: Any) -> None:
    stream = STREAMS["mixed'\\r\\n'"]
    decoder = EventDecoder()
    events = []
    for start in range(0, len(stream), 5):
        events += decoder.feed(piece_type(stream[start : start + 5]))
    events += decoder.close()
    assert [event.get_dict() for event in events] == EVENTS


# -- line ends ------------------------------------------------------------------------------


@pytest.mark.parametrize("eol", EOLS, ids=repr)
def test_each_line_end_delivers_an_event_as_soon_as_it_arrives(eol: str) -> None:
    first, second = EVENTS[0], EVENTS[1]
    decoder = EventDecoder()
    assert decoder.feed(dump(first).encode()) == []
    assert as_dicts(decoder.feed(eol.encode())) == [first]
    sse_event = f"event: content{eol}data: {dump(second)}{eol}".encode()
    assert decoder.feed(sse_event) == []
    assert as_dicts(decoder.feed(eol.encode())) == [second]
    assert decoder.close() == []


def test_crlf_split_across_feeds_is_one_line_end() -> None:
    # A spurious empty line between "\r" and "\n" would end the SSE event
    # early: the event name would be lost and the data split in two.
    decoder = EventDecoder()
    assert decoder.feed(b"event: content\r") == []
    assert decoder.feed(b'\ndata: {"content": "Hi",\r') == []
    assert as_dicts(decoder.feed(b'\ndata:  "n": 1}\r\n\r')) == [
        {"type": "content", "content": "Hi", "n": 1}
    ]
    assert decoder.feed(b"\n") == []
    assert decoder.close() == []


def test_cr_as_last_byte_of_a_feed_followed_by_the_next_event() -> None:
    decoder = EventDecoder()
    events = decoder.feed(b'{"type": "a"}\r')
    assert as_dicts(events) == [{"type": "a"}]
    assert as_dicts(decoder.feed(b'{"type": "b"}\r')) == [{"type": "b"}]
    assert as_dicts(decoder.feed(b'\n{"type": "c"}\n')) == [{"type": "c"}]
    assert decoder.close() == []


def test_cr_cr_is_two_line_ends() -> None:
    # "\r" then "\r" across feeds: the second one is a blank line of its own.
    decoder = EventDecoder()
    assert decoder.feed(b'data: {"type": "a"}\r') == []
    assert as_dicts(decoder.feed(b"\r")) == [{"type": "a"}]


# -- SSE fields -----------------------------------------------------------------------------


def test_comments_are_ignored() -> None:
    stream = (
        b": keep-alive\n\n"
        b'event: content\n: comment in the middle\ndata: {"type": "content", "content": "a"}\n\n'
        b":\n\n"
    )
    assert dicts(stream) == [{"type": "content", "content": "a"}]


def test_id_sets_last_event_id_and_retry_sets_retry() -> None:
    decoder = EventDecoder()
    assert decoder.last_event_id is None
    assert decoder.retry is None
    decoder.feed(b'id: evt-41\nretry: 2500\ndata: {"type": "a"}\n\n')
    assert decoder.last_event_id == "evt-41"
    assert decoder.retry == 2500
    decoder.feed(b'id: evt-42\nretry: 3s\nretry: -1\nretry:\ndata: {"type": "b"}\n\n')
    assert decoder.last_event_id == "evt-42"
    assert decoder.retry == 2500


def test_multi_line_data_is_joined_with_newlines() -> None:
    event = {"type": "usage", "usage": {"prompt_tokens": 3, "total_tokens": 11}, "model": "m"}
    lines = json.dumps(event, indent=2).split("\n")
    assert len(lines) > 3
    stream = "".join(f"data: {line}\n" for line in lines).encode() + b"\n"
    assert dicts(stream) == [event]
    assert byte_by_byte(stream) == [event]


def test_data_lines_are_not_concatenated_without_separator() -> None:
    # Joined with "\n" the numbers 1 and 2 stay two tokens (invalid JSON);
    # glued together they would silently become 12.
    with pytest.raises(DecodeError):
        decode(b'data: {"type": "a", "n": 1\ndata: 2}\n\n')


def test_data_without_space_after_colon() -> None:
    assert dicts(b'data:{"type":"a"}\n\n') == [{"type": "a"}]
    assert dicts(b'event:content\ndata:{"content":"x"}\n\n') == [
        {"type": "content", "content": "x"}
    ]


def test_event_without_type_takes_it_from_the_event_field() -> None:
    stream = b'event: title\ndata: {"title": "Greeting"}\n\n'
    assert dicts(stream) == [{"type": "title", "title": "Greeting"}]


def test_type_in_the_json_wins_over_the_event_field() -> None:
    stream = b'event: message\ndata: {"type": "content", "content": "Hi"}\n\n'
    assert dicts(stream) == [{"type": "content", "content": "Hi"}]


def test_event_name_does_not_carry_over_to_the_next_event() -> None:
    decoder = EventDecoder()
    assert as_dicts(decoder.feed(b'event: title\ndata: {"title": "T"}\n\n')) == [
        {"type": "title", "title": "T"}
    ]
    with pytest.raises(DecodeError, match="type"):
        decoder.feed(b'data: {"title": "U"}\n\n')


def test_done_ends_the_stream_and_later_bytes_are_ignored() -> None:
    decoder = EventDecoder()
    events = decoder.feed(
        b'data: {"type": "content", "content": "a"}\n\n'
        b"data: [DONE]\n\n"
        b'{"type": "content", "content": "after"}\n<html>garbage'
    )
    assert as_dicts(events) == [{"type": "content", "content": "a"}]
    assert decoder.done
    assert decoder.feed(b"\xff\xfe not even utf-8\n\n{broken\n") == []
    assert decoder.close() == []


def test_done_is_false_until_done_arrives() -> None:
    decoder = EventDecoder()
    decoder.feed(b"data: [DONE]\n")
    assert not decoder.done  # the blank line that completes the event is still missing
    decoder.feed(b"\n")
    assert decoder.done


def test_unknown_field_is_ignored() -> None:
    stream = b'foo: bar\nevent: content\nx-custom: 1\ndata: {"content": "c"}\n\n'
    assert dicts(stream) == [{"type": "content", "content": "c"}]


def test_event_with_no_data_dispatches_nothing() -> None:
    assert dicts(b"event: ping\n\nevent: ping\r\n\r\n") == []


def test_byte_order_mark_at_the_start_is_skipped() -> None:
    for stream in (b'\xef\xbb\xbf{"type": "a"}\n', b'\xef\xbb\xbfdata: {"type": "a"}\n\n'):
        assert dicts(stream) == [{"type": "a"}]
        assert byte_by_byte(stream) == [{"type": "a"}]


def test_mixed_framings_decode_in_order() -> None:
    stream = (
        b'{"type": "provider", "provider": {"name": "P"}}\n'
        b'event: content\ndata: {"content": "one"}\n\n'
        b'{"type": "content", "content": "two"}\n'
        b'data: {"type": "finish", "finish": {"reason": "stop"}}\n\n'
    )
    assert dicts(stream) == [
        {"type": "provider", "provider": {"name": "P"}},
        {"type": "content", "content": "one"},
        {"type": "content", "content": "two"},
        {"type": "finish", "finish": {"reason": "stop"}},
    ]


@pytest.mark.parametrize("framing", [as_sse, as_ndjson])
def test_raw_line_separators_inside_a_string_stay_in_it(framing: Any) -> None:
    event = {"type": "content", "content": "a\u2028b\u2029c\x85d"}
    stream = framing([event])
    assert "\u2028".encode() in stream  # raw, not escaped
    assert dicts(stream) == [event]
    assert byte_by_byte(stream) == [event]


# -- errors ---------------------------------------------------------------------------------


def test_html_line_is_a_decode_error_quoting_it() -> None:
    with pytest.raises(DecodeError) as caught:
        decode(b"<html><body>502 Bad Gateway</body></html>\n")
    assert "<html><body>502 Bad Gateway" in str(caught.value)


def test_plain_text_line_is_a_decode_error() -> None:
    with pytest.raises(DecodeError) as caught:
        decode(b"Internal Server Error\n")
    assert "Internal Server Error" in str(caught.value)


@pytest.mark.parametrize(
    "stream",
    [b'{"type": "content", "content": }\n', b'data: {"type": "a",}\n\n', b"{\n"],
)
def test_invalid_json_is_a_decode_error(stream: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(stream)
    assert "JSON" in str(caught.value)


@pytest.mark.parametrize(
    "stream, shown",
    [
        (b"data: [1, 2]\n\n", "[1, 2]"),
        (b"data: 42\n\n", "42"),
        (b'data: "text"\n\n', '"text"'),
        (b"event: content\ndata: null\n\n", "null"),
    ],
)
def test_json_that_is_not_an_object_is_a_decode_error(stream: bytes, shown: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(stream)
    message = str(caught.value)
    assert "object" in message
    assert shown in message


@pytest.mark.parametrize(
    "stream", [b'{"content": "no type"}\n', b'data: {"content": "no type"}\n\n']
)
def test_object_without_type_is_a_decode_error(stream: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(stream)
    assert "'type'" in str(caught.value)


@pytest.mark.parametrize(
    "stream",
    [
        b'{"type": "content", "content": "\xff\xfe"}\n',
        b'data: {"type": "content", "content": "\xc3"}\n\n',
        b'event: \xe2\x82\ndata: {"content": "x"}\n\n',
    ],
)
def test_invalid_utf8_is_a_decode_error(stream: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(stream)
    assert "utf-8" in str(caught.value).lower()


def test_events_before_a_bad_line_come_out_before_its_error() -> None:
    decoder = EventDecoder()
    events = decoder.feed(as_ndjson(EVENTS[:2]) + b"<html>Bad Gateway</html>\n")
    assert as_dicts(events) == EVENTS[:2]
    assert decoder.error_pending
    with pytest.raises(DecodeError, match="Bad Gateway"):
        decoder.feed(b"")
    # Nothing after a bad line is trusted.
    assert decoder.feed(as_ndjson(EVENTS[2:])) == []


BAD_TAIL = b"<html>Bad Gateway</html>\n" + as_ndjson(EVENTS[:1])


@PROPERTY
@given(st.data())
def test_events_before_a_bad_line_come_out_however_the_bytes_are_cut(
    data: st.DataObject,
) -> None:
    stream = as_sse(EVENTS[:3]) + as_ndjson(EVENTS[3:]) + BAD_TAIL
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30), label="cuts"))
    bounds = [0, *cuts, len(stream)]
    decoder = EventDecoder()
    events: List[RawResponse] = []
    with pytest.raises(DecodeError, match="Bad Gateway"):
        for start, end in zip(bounds, bounds[1:]):
            events += decoder.feed(stream[start:end])
        decoder.close()
    assert as_dicts(events) == EVENTS


def ndjson_event_of_size(size: int) -> bytes:
    """An NDJSON line of exactly ``size`` bytes, without its line end."""
    line = b'{"type": "content", "content": ""}'
    return line[:-2] + b"x" * (size - len(line)) + b'"}'


def test_max_event_size_counts_the_line() -> None:
    line = ndjson_event_of_size(1000)
    assert len(line) == 1000
    assert len(dicts(line + b"\n", max_event_size=1000)) == 1
    assert len(byte_by_byte(line + b"\n", max_event_size=1000)) == 1
    with pytest.raises(EventTooLargeError, match="1000"):
        decode(ndjson_event_of_size(1001) + b"\n", max_event_size=1000)


def test_too_large_event_in_one_feed() -> None:
    decoder = EventDecoder(max_event_size=10_000)
    with pytest.raises(EventTooLargeError) as caught:
        decoder.feed(ndjson_event_of_size(50_000) + b"\n")
    assert "10000" in str(caught.value)
    assert isinstance(caught.value, DecodeError)


def test_too_large_event_raises_at_the_first_feed_past_the_limit() -> None:
    limit = 10_500
    decoder = EventDecoder(max_event_size=limit)
    line = ndjson_event_of_size(100_000)
    received = 0
    for start in range(0, len(line), 1000):
        piece = line[start : start + 1000]
        received += len(piece)
        if received <= limit:
            assert decoder.feed(piece) == []
        else:
            with pytest.raises(EventTooLargeError):
                decoder.feed(piece)
            break
    assert received == 11_000


def test_too_large_sse_event_raises_at_the_first_feed_past_the_limit() -> None:
    limit = 10_500
    decoder = EventDecoder(max_event_size=limit)
    assert decoder.feed(b'event: content\ndata: {"content": "') == []
    received = len(b'{"content": "')
    while received + 1000 <= limit:
        assert decoder.feed(b"x" * 1000) == []
        received += 1000
    with pytest.raises(EventTooLargeError):
        decoder.feed(b"x" * 1000)


def test_too_large_event_of_many_data_lines_raises_at_the_line_past_the_limit() -> None:
    limit = 1050
    decoder = EventDecoder(max_event_size=limit)
    line = b"data: " + b" " * 99 + b"\n"  # 99 bytes of data, 100 with its joining newline
    for _ in range(10):
        assert decoder.feed(line) == []
    with pytest.raises(EventTooLargeError):
        decoder.feed(line)


def test_limit_does_not_depend_on_how_the_bytes_are_cut() -> None:
    # The SSE event's data is one byte under the limit: it fits whole, so it
    # must fit when it arrives in pieces too.
    limit = 1000
    payload = ndjson_event_of_size(limit - 1)
    stream = b"data: " + payload + b"\n\n"
    assert len(dicts(stream, max_event_size=limit)) == 1
    assert len(dicts_in_pieces(stream, [len(stream) - 2], max_event_size=limit)) == 1


def test_limit_is_the_same_for_both_framings() -> None:
    # The docs: the limit is on "a line, or an SSE event's data lines"; the
    # same JSON of exactly max_event_size bytes fits as a line, so it fits as data.
    limit = 1000
    payload = ndjson_event_of_size(limit)
    assert len(dicts(payload + b"\n", max_event_size=limit)) == 1
    assert len(dicts(b"data: " + payload + b"\n\n", max_event_size=limit)) == 1


def test_close_inside_an_sse_event_is_incomplete() -> None:
    decoder = EventDecoder()
    decoder.feed(b'event: content\ndata: {"type": "content", "content": "cut"}\n')
    with pytest.raises(IncompleteStreamError) as caught:
        decoder.close()
    assert "cut" in str(caught.value)


def test_close_inside_a_json_line_is_incomplete() -> None:
    decoder = EventDecoder()
    decoder.feed(b'{"type": "content", "content": "Hel')
    with pytest.raises(IncompleteStreamError) as caught:
        decoder.close()
    assert "Hel" in str(caught.value)


def test_close_inside_an_sse_line_is_incomplete() -> None:
    decoder = EventDecoder()
    decoder.feed(b'data: {"type": "content", "content": "Hello"}')
    with pytest.raises(IncompleteStreamError):
        decoder.close()


def test_close_after_a_whole_json_object_without_newline_gives_the_event() -> None:
    decoder = EventDecoder()
    assert decoder.feed(b'{"type": "finish", "finish": {"reason": "stop"}}') == []
    assert as_dicts(decoder.close()) == [{"type": "finish", "finish": {"reason": "stop"}}]


def test_close_after_an_event_name_only_or_a_comment_is_clean() -> None:
    for tail in (b"event: ping\n", b": keep-alive"):
        decoder = EventDecoder()
        decoder.feed(b'{"type": "a"}\n' + tail)
        assert decoder.close() == []


def test_feed_after_close_raises() -> None:
    decoder = EventDecoder()
    decoder.close()
    with pytest.raises(RuntimeError):
        decoder.feed(b'{"type": "a"}\n')


@pytest.mark.parametrize("bad", [0, -1, "1", 1.5, True, None])
def test_max_event_size_must_be_a_positive_int(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError), match="max_event_size"):
        EventDecoder(max_event_size=bad)


# -- a long event in small pieces -----------------------------------------------------------

BIG = 16 * 1024 * 1024
PIECE = 4096


@pytest.mark.parametrize("framing", ["ndjson", "sse"])
def test_long_event_in_small_pieces_is_never_rescanned(framing: str) -> None:
    head = b'{"type": "content", "content": "'
    body = bytes(range(0x41, 0x41 + 26)) * (BIG // 26)
    line = head + body + b'"}'
    stream = line + b"\n" if framing == "ndjson" else b"data: " + line + b"\n\n"
    decoder = EventDecoder()
    events = []
    for start in range(0, len(stream), PIECE):
        events += decoder.feed(stream[start : start + PIECE])
        # The "searched up to" mark keeps up with the buffer: no byte is searched twice.
        assert decoder._scanned == len(decoder._buf)
    events += decoder.close()
    assert len(events) == 1
    assert events[0].type == "content"
    assert events[0].content == body.decode("ascii")


# -- error messages stay short --------------------------------------------------------------

MEGABYTE = 1024 * 1024
CONTROL = bytes(b for b in range(32) if b not in (0x0A, 0x0D))


@pytest.mark.parametrize(
    "stream",
    [
        b"<html>" + b"x" * MEGABYTE + b"\n",
        b"{" + b"x" * MEGABYTE + b"\n",
        b'{"type": "content", "content": "' + b"\xff" * MEGABYTE + b'"}\n',
        b"event: " + b"\xff" * MEGABYTE + b"\n",
        b"data: [" + b"1," * MEGABYTE + b"1]\n\n",
        b'{"content": "' + b"a" * MEGABYTE + b'"}\n',
        b'{"content": "' + "\u2028".encode() * MEGABYTE + b'"}\n',
        CONTROL * (MEGABYTE // len(CONTROL)) + b"\n",
    ],
    ids=[
        "html",
        "bad-json",
        "bad-utf8",
        "bad-utf8-field",
        "not-object",
        "no-type",
        "no-type-u2028",
        "control-bytes",
    ],
)
def test_error_excerpt_is_short_for_a_huge_line(stream: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(stream)
    assert len(str(caught.value)) < 400


def test_incomplete_excerpt_is_short_for_a_huge_line() -> None:
    decoder = EventDecoder()
    decoder.feed(b'{"type": "content", "content": "' + b"a" * MEGABYTE)
    with pytest.raises(IncompleteStreamError) as caught:
        decoder.close()
    assert len(str(caught.value)) < 400


def test_decode_of_nothing_is_no_events() -> None:
    assert decode(b"") == []
    assert decode(b"\n\r\n\r") == []


# --- One event per feed (a model's tokens, one per network read) ---------------------------
#
# A feed that is one whole event, with nothing held before it, is parsed at once
# (EventDecoder.feed's first branch). Each chunk below, fed alone, must come out exactly
# as the same bytes fed one at a time (which never takes that branch): the same events,
# the same error and message, at the start of a stream and after an event.

ONE_EVENT_FEEDS = [
    b'event: content\ndata: {"type": "content", "content": "Hi"}\n\n',
    b'data: {"type": "content", "content": "Hi"}\n\n',
    b'{"type": "content", "content": "Hi"}\n',
    b'event: content\ndata: {"type":"content","content":"Hi","sent":1764755000.5}\n\n',
    b'event: content\ndata: {"type": "content", "content": "a\xe2\x80\xa8b \xc3\xa9"}\n\n',
    b'event: \ndata: {"type": "title", "title": "t"}\n\n',
    b'data:  {"type": "content", "content": "two spaces"}\n\n',
    b'data:{"type": "content", "content": "no space"}\n\n',
    b'\xef\xbb\xbfdata: {"type": "content", "content": "a BOM"}\n\n',
    b'data: {"type": "content", "content": "crlf"}\r\n\r\n',
    b'data: {"type": "content", "content": "cr"}\r\r',
    b'data: {"type": "a"}\r\n\n',
    b'data: {\r"type": "a"}\n\n',
    b'{"type": "a",\r"b": 1}\n',
    b'event: x\rdata: {"type": "a"}\n\n',
    b'event: x\ndata: {"type": "x"}\nid: 7\n\n',
    b'id: 7\ndata: {"type": "x"}\n\n',
    b'data: {"type": "a"}\n\n\n',
    b'data: {"type": "a"}\n',
    b'data: {"type": "a"}',
    b'{"type": "a"}\n{"type": "b"}\n',
    b'data: {"type": "a"}\n\ndata: {"type": "b"}\n\n',
    b'data: {"type": "a",\ndata: "b": 1}\n\n',
    b": keep-alive\n\n",
    b"data: \n\n",
    b"data: [DONE]\n\n",
    b"data: [1, 2]\n\n",
    b'data: {"content": "no type"}\n\n',
    b'data: {"type": 5}\n\n',
    b'data: {"type": "a"} trailing\n\n',
    b'data: {"type": "\xff"}\n\n',
    b'event: \xff\ndata: {"type": "a"}\n\n',
    b'data: {"type": "a", "v": NaN}\n\n',
    b'data: {"type": "a", "a": 1, "a": 2}\n\n',
    b'data: {"type": "a", "deep": ' + b"[" * 150 + b"]" * 150 + b"}\n\n",
    b'data: {"type": "error", "error": "bad key"}\n\n',
]
WARM_UP = b'data: {"type": "content", "content": "before"}\n\n'


def _fed(pieces: Sequence[bytes], max_event_size: int = 1 << 20) -> List[Any]:
    """What the decoder makes of ``pieces`` and its close: its events' dicts, then the
    error (class and message) if one came."""
    decoder = EventDecoder(max_event_size=max_event_size)
    out: List[Any] = []
    try:
        for piece in pieces:
            out += [event.get_dict() for event in decoder.feed(piece)]
        out += [event.get_dict() for event in decoder.close()]
    except (DecodeError, IncompleteStreamError) as exc:
        out.append((type(exc), str(exc)))
    return out


@pytest.mark.parametrize("chunk", ONE_EVENT_FEEDS)
@pytest.mark.parametrize("before", [b"", WARM_UP], ids=["at-start", "after-an-event"])
def test_a_feed_of_one_whole_event_reads_as_its_bytes_one_at_a_time(
    chunk: bytes, before: bytes
) -> None:
    stream = before + chunk
    alone = _fed([before, chunk] if before else [chunk])
    assert alone == _fed([stream[i : i + 1] for i in range(len(stream))])
    # And fed as one piece with an event after it (one feed, never one event alone).
    after = b'data: {"type": "content", "content": "after"}\n\n'
    assert _fed([before, chunk, after]) == _fed([stream + after])


@pytest.mark.parametrize("limit", [20, 37, 38, 39, 57, 58, 60])
def test_a_feed_of_one_whole_event_keeps_the_size_limit(limit: int) -> None:
    # The event's data is 38 bytes (58 with its framing): over some of these limits,
    # within the others. How many bytes the error says it saw depends on the pieces: its
    # class does not.
    chunk = b'event: content\ndata: {"type": "content", "content": "0123"}\n\n'

    def kinds(out: List[Any]) -> List[Any]:
        return [item[0] if isinstance(item, tuple) else item for item in out]

    one_by_one = kinds(_fed([chunk[i : i + 1] for i in range(len(chunk))], limit))
    assert kinds(_fed([chunk], limit)) == one_by_one
    assert kinds(_fed([WARM_UP, chunk], limit)) == kinds(
        _fed([(WARM_UP + chunk)[i : i + 1] for i in range(len(WARM_UP + chunk))], limit)
    )
    assert (EventTooLargeError in one_by_one) == (limit < 38)


def test_a_feed_of_one_whole_event_is_parsed_at_once() -> None:
    # Not a test of results (those above are) but that the branch is taken: the usual
    # line machinery is never entered for such a feed.
    decoder = EventDecoder()
    decoder.feed(WARM_UP)

    def refuse(*args: Any) -> None:
        raise AssertionError("the per-line path was taken")

    decoder._feed = refuse  # type: ignore[method-assign]
    events = decoder.feed(b'event: content\ndata: {"type": "content", "content": "x"}\n\n')
    assert [event.get_dict() for event in events] == [{"type": "content", "content": "x"}]
    assert decoder.bytes_fed == len(WARM_UP) + 58
