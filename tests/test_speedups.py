"""The decoder's fast path and its helpers give exactly what the per-line path gives.

The fast path (``EventDecoder._fast``: one UTF-8 decode per feed, regular
events parsed as one batch, the rest in a line loop calling the stdlib JSON
scanner directly; and before it, a feed that is one whole event parsed at
once) must be invisible: the same events, the same errors with the same
messages, raised at the same point. Each stream here is decoded with both
switched off, with the line loop alone, and with batches parsed by the stdlib
and by msgspec (the ``speedups`` extra), and the outcomes compared.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backendapi import Answer, BackendApiError, EventDecoder, RawResponse
from backendapi._answer import CONTENT_CHUNK as _CHUNK
from backendapi._core import decoder as _decoder
from backendapi._core import parsing as _json

DATA = Path(__file__).parent / "data"

Outcome = Tuple[List[Any], Optional[Tuple[str, str]], List[bool]]


# The ways a stream can be decoded: the per-line path alone; the fast path's
# line loop alone (no batches); batches parsed by the stdlib; batches parsed by
# msgspec (the speedups extra, installed with the test extra).
MODES = ["per-line", "loop", "stdlib", "msgspec"]
PARSERS: Dict[str, Any] = {
    "loop": lambda texts: None,
    "stdlib": _json.stdlib_parse_events,
    "msgspec": _json.msgspec_parse_events(),
}
assert PARSERS["msgspec"] is not None, "the test extra installs msgspec"


def run(
    data: bytes, cuts: List[int], mode: str, monkeypatch: pytest.MonkeyPatch, **kwargs: Any
) -> Outcome:
    with monkeypatch.context() as patch:
        if mode == "per-line":
            patch.setattr(EventDecoder, "_fast", lambda *args: False)
            patch.setattr(_decoder, "_ONE_EVENT", re.compile("(?!)"))  # matches nothing
        else:
            patch.setattr(_json, "parse_events", PARSERS[mode])
        decoder = EventDecoder(**kwargs)
        events: List[Any] = []
        pending: List[bool] = []
        bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(data))), len(data)]
        try:
            for start, stop in zip(bounds, bounds[1:]):
                events.extend(e.get_dict() for e in decoder.feed(data[start:stop]))
                pending.append(decoder.error_pending)
            events.extend(e.get_dict() for e in decoder.close())
        except BackendApiError as exc:
            return events, (type(exc).__name__, str(exc)), pending
        return events, None, pending


def same(data: bytes, cuts: List[int], monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> Outcome:
    slow = run(data, cuts, "per-line", monkeypatch, **kwargs)
    for mode in MODES[1:]:
        assert repr(run(data, cuts, mode, monkeypatch, **kwargs)) == repr(slow), mode
    return slow


# The recorded streams; tests/data also holds other recordings (a saved chat...).
STREAMS = sorted(path for path in DATA.iterdir() if path.suffix in (".sse", ".ndjson"))


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.name)
@pytest.mark.parametrize("piece", [1, 7, 64, 1000, 1 << 20])
def test_fixtures_decode_the_same_on_both_paths(
    path: Path, piece: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = path.read_bytes()
    events, error, _ = same(data, list(range(piece, len(data), piece)), monkeypatch)
    assert events and error is None


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.name)
def test_fixtures_one_event_per_feed_decode_the_same_on_both_paths(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a model's tokens arrive: each feed one whole event (or NDJSON line).
    data = path.read_bytes()
    end = b"\n" if path.suffix == ".ndjson" else b"\n\n"
    cuts = [at + len(end) for at in range(len(data)) if data.startswith(end, at)]
    events, error, _ = same(data, cuts, monkeypatch)
    assert len(events) > 1 and error is None


CASES = [
    b'{"type": "content", "content": "a\xe2\x80\xa8b"}\n{"type": "title", "title": "t"}\n',
    b'event: content\ndata: {"content": "no type"}\n\n',
    b'data: {"type": "content",\ndata: "content": "two lines"}\n\n',
    b'data:{"type": "content", "content": "x"}\n\ndata: [DONE]\n\n{"type": "late"}\n',
    b'{"type": "content", "content": "x"}\nnot json\n{"type": "content", "content": "y"}\n',
    b'{"type": "content", "content": "x"}\n{"type": "content", "content": "\xff"}\n',
    b'{"type": "a"}\n{"b": 1}\n',
    b'{"type": "a"}\n[1, 2]\n',
    b'{"type": "a"}\n{"type": "n", "v": NaN, "i": 123456789012345678901234567890}\n',
    b'{"type": "a"}\n {"type": "b"} \n{"type": "c"}  \n',
    b'{"type": "a"}\n\xef\xbb\xbf{"type": "b"}\n',
    b'{"type": "a"}\n{"type": "b", "s": "\\ud800"}\n',
    b'{"type": "a"}\nid: 7\nretry: 10\n: keep-alive\nevent: x\ndata: {"type": "b"}\n\n',
    b'{"type": "a"}\ndata: {"type": "b"}\r\n\r\n{"type": "c"}\r{"type": "d"}\n',
    b'{"type": "a"}\nweird\n',
    b'{"type": "a"}\nunknown-field: 1\n{"type": "b"}\n',
    b'{"type": "a"}\ndata: {"type": "b"}\n',
    b'{"type": "a"}\n{"type": "b", "x": "' + b"y" * 300 + b'"}\n',
    b'{"type": "a"}\n{"type": "b"',
    b'{"type": "a"}\ndata: {"type": "error", "error": "E", "message": "m"}\n\n',
    b'{"type": "a"}\ndata: \xc3\n\n',
    b'{"type": "a"}\nevent: \xc3\ndata: {"type": "b"}\n\n',
]


@pytest.mark.parametrize("data", CASES)
@pytest.mark.parametrize("piece", [1, 3, 16, 1 << 20])
def test_unusual_streams_decode_the_same_on_both_paths(
    data: bytes, piece: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    same(data, list(range(piece, len(data), piece)), monkeypatch)


@pytest.mark.parametrize("limit", [20, 40, 64, 100])
def test_the_size_limit_is_the_same_on_both_paths(
    limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = (
        b'{"type": "a"}\ndata: {"type": "b",\ndata: "c": "' + b"x" * 30 + b'"}\n\n'
        b'{"type": "content", "content": "' + b"z" * 40 + b'"}\n'
    )
    for piece in (1, 5, 17, 1 << 20):
        same(data, list(range(piece, len(data), piece)), monkeypatch, max_event_size=limit)


FRAGMENTS = [
    b'event: content\ndata: {"type": "content", "content": " fox"}\n\n',
    b'data: {"type": "content", "content": "x"}\n\n',
    b'{"type": "content", "content": "y"}\n',
    b"\n",
    b"\n\n",
    b"\r",
    b"\r\n",
    b"data:",
    b"data: ",
    b"event: content",
    b"event:",
    b": ping",
    b"id: 1",
    b"retry: 5",
    b"{",
    b"}",
    b'"type"',
    b": ",
    b'"content"',
    b",",
    b'{"type": "content", "content": " fox"}',
    b'{"type": "title", "title": "\xe2\x80\xa8"}',
    b"[DONE]",
    b"\xc3",
    b"\xa9",
    b"\xef\xbb\xbf",
    b" ",
    b"x",
    b"NaN",
    b"12345678901234567890",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(st.sampled_from(FRAGMENTS), max_size=40),
    cuts=st.lists(st.integers(0, 400), max_size=10),
    limit=st.sampled_from([10, 50, 1 << 20]),
)
def test_random_streams_decode_the_same_on_both_paths(
    parts: List[bytes], cuts: List[int], limit: int
) -> None:
    data = b"".join(parts)
    with pytest.MonkeyPatch.context() as monkeypatch:
        same(data, cuts, monkeypatch, max_event_size=limit)


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "content", "content": " fox"}',
        ' {"a": 1}',
        '{"a": 1} ',
        '{"a": 1}\n',
        "\ufeff{}",
        "NaN",
        "[1e400, -0, -0.0, 123456789012345678901234567890]",
        '"\\ud800"',
        '{"a": 1}{"b": 2}',
        '{"a": 1',
        "",
        "  ",
        "\x00",
        '{"a": "\x01"}',
        '{"a": "\u2028"}',
        '{"type": "t", "n": [1, 2.5, -3e-5, true, false, null], "s": "\\u00e9\\n"}',
    ],
)
def test_the_scanner_taking_a_whole_text_means_json_loads_agrees(text: str) -> None:
    try:
        value, end = _json.scan_once(text, 0)
    except (StopIteration, ValueError):
        return  # the fast path leaves this text to json.loads
    if end != len(text):
        return  # likewise
    assert repr(json.loads(text)) == repr(value)
    assert type(json.loads(text)) is type(value)


def test_answer_text_is_exact_across_its_joined_chunks() -> None:
    answer = Answer()
    tokens = [f"<{i}\u2028é>" for i in range(3 * _CHUNK + 5)]
    expected = ""
    for i, token in enumerate(tokens):
        answer.add(RawResponse(type="content", content=token))
        expected += token
        if i in (0, _CHUNK - 1, _CHUNK, 2 * _CHUNK + 3):
            assert answer.text == expected  # read in the middle, then keep adding
    assert answer.text == expected
    assert str(answer) == expected
    assert answer.events == len(tokens)
    # Held as a few joined strings, not one per event.
    assert len(answer._chunks) + len(answer._content) <= 4


@pytest.mark.parametrize("count", [60, 1_000, 20_000])
def test_an_answer_holds_few_strings_while_its_tokens_come(count: int) -> None:
    # An open stream's answer, before anyone reads its text: each small token alone
    # would be a string of ~55 bytes for the stream's whole life.
    answer = Answer()
    for i in range(count):
        answer._add_contents([f" t{i}"])
    held = len(answer._chunks) + len(answer._content)
    assert held <= 2 * (2 * count) ** 0.5 + _CHUNK
    assert held < count / 3
    assert answer.text == "".join(f" t{i}" for i in range(count))


def _regular(count: int, framing: str, event: Dict[str, Any]) -> bytes:
    out = []
    for i in range(count):
        payload = json.dumps({**event, "i": i})
        if framing == "named":
            out.append(f"event: {event['type']}\ndata: {payload}\n\n")
        elif framing == "data":
            out.append(f"data: {payload}\n\n")
        else:
            out.append(payload + "\n")
    return "".join(out).encode()


CONTENT = {"type": "content", "content": " fox \u2028 w\u00f6rld \U0001f30d"}


def _inside(middle: bytes, framing: str) -> bytes:
    """``middle`` between 100 regular events before and 100 after."""
    return _regular(100, framing, CONTENT) + middle + _regular(100, framing, CONTENT)


LONG_STREAMS = {
    "named": _regular(300, "named", CONTENT),
    "data-only": _regular(300, "data", CONTENT),
    "ndjson": _regular(300, "ndjson", CONTENT),
    "named then data-only": _regular(150, "named", CONTENT) + _regular(150, "data", CONTENT),
    "ndjson then sse": _regular(150, "ndjson", CONTENT) + _regular(150, "named", CONTENT),
    "comments between": _regular(100, "named", CONTENT).replace(b"\n\nevent", b"\n\n: ping\nevent"),
    "id lines": _regular(100, "named", CONTENT).replace(b"\n\nevent", b"\n\nid: 5\nevent"),
    "a bad event inside": _inside(b"event: content\ndata: {not json}\n\n", "named"),
    "a big integer inside": _inside(
        b'{"type": "usage", "n": 123456789012345678901234567890}\n', "ndjson"
    ),
    "NaN inside": _inside(b'data: {"type": "usage", "n": NaN}\n\n', "data"),
    "an error event inside": _inside(
        b'event: error\ndata: {"type": "error", "error": "E", "message": "m"}\n\n', "named"
    ),
    "no type field": _inside(b'event: title\ndata: {"title": "t"}\n\n', "named"),
    "two data lines": _inside(
        b'event: content\ndata: {"type": "content",\ndata: "content": "x"}\n\n', "named"
    ),
    "no space after data:": _regular(100, "named", CONTENT).replace(b"data: ", b"data:"),
    "two spaces after data:": _regular(100, "named", CONTENT).replace(b"data: ", b"data:  "),
    "DONE at the end": _regular(100, "data", CONTENT) + b"data: [DONE]\n\n" + b"garbage\n",
    "blank lines between ndjson": _regular(100, "ndjson", CONTENT).replace(b"}\n", b"}\n\n"),
    "ndjson with a second value on a line": _inside(b'{"type": "a"} {"type": "b"}\n', "ndjson"),
    "ndjson with a value over two lines": _inside(b'{"type": "a", "x": [1,\n2]}\n', "ndjson"),
    "an event line alone": _inside(b"event: content\n\n", "named"),
    "a lone surrogate": _inside(
        b'event: content\ndata: {"type": "content", "content": "\\ud800"}\n\n', "named"
    ),
    "a byte-order mark": b"\xef\xbb\xbf" + _regular(100, "named", CONTENT),
    "cut at the end": _regular(100, "named", CONTENT)[:-30],
}


@pytest.mark.parametrize("name", sorted(LONG_STREAMS))
@pytest.mark.parametrize("piece", [61, 1000, 4096, 1 << 20])
def test_long_regular_streams_decode_the_same_every_way(
    name: str, piece: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = LONG_STREAMS[name]
    same(data, list(range(piece, len(data), piece)), monkeypatch)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    fields=st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=5),
    ascii_only=st.booleans(),
    spaced=st.booleans(),
)
def test_batch_parsers_return_exactly_what_json_loads_returns(
    fields: Dict[str, Any], ascii_only: bool, spaced: bool
) -> None:
    text = json.dumps(
        {"type": "t", **fields},
        ensure_ascii=ascii_only,
        separators=(", ", ": ") if spaced else (",", ":"),
    )
    expected = json.loads(text)
    for mode in ("stdlib", "msgspec"):
        found = PARSERS[mode]([text, text])
        assert found is not None, mode
        assert repr(found) == repr([expected, expected]), mode
        assert [type(v) for v in found[0].values()] == [type(v) for v in expected.values()]


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "t", "n": NaN}',
        '{"type": "t", "n": 1e400}',
        '{"type": "t", "s": "\\ud800"}',
        '{"type": "t"} {"type": "u"}',
        '{"type": "t"',
        '{"title": "no type"}',
        '["type"]',
        '"type"',
        "",
        "\x0c{}",
        '{"type": "t", "s": "\x01"}',
        "[" * 3000 + "]" * 3000,
        '{"type": ' + "[" * 3000 + "]" * 3000 + "}",
    ],
)
def test_batch_parsers_leave_every_doubtful_text_to_json(text: str) -> None:
    for mode in ("stdlib", "msgspec"):
        found = PARSERS[mode](['{"type": "fine"}', text])
        if found is not None:  # accepted: then it must be json's own answer
            assert repr(found) == repr([{"type": "fine"}, json.loads(text)]), mode


@pytest.mark.parametrize("framing", ["named", "data", "ndjson"])
def test_regular_streams_are_parsed_in_batches_not_line_by_line(
    framing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A count, not a timing: the per-event Python loop sees only the edges of feeds."""
    data = _regular(2000, framing, CONTENT)
    looped: List[int] = []
    batched: List[int] = []
    loop = EventDecoder._loop
    parse = _json.parse_events

    def counting_loop(self: EventDecoder, lines: List[str], *args: Any) -> Any:
        looped.append(len(lines))
        return loop(self, lines, *args)

    def counting_parse(texts: List[str]) -> Any:
        batched.append(len(texts))
        return parse(texts)

    monkeypatch.setattr(EventDecoder, "_loop", counting_loop)
    monkeypatch.setattr(_json, "parse_events", counting_parse)
    decoder = EventDecoder()
    feeds = range(0, len(data), 4096)
    count = sum(len(decoder.feed(data[start : start + 4096])) for start in feeds)
    count += len(decoder.close())
    assert count == 2000
    assert sum(batched) >= 2000 - 2 * len(feeds)  # nearly every event in a batch
    assert sum(looped) <= 4 * len(feeds)  # the loop: a partial event at each end


def _python(code: str, **env: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return completed.stdout.strip()


CHOSEN = (
    "import sys, backendapi\n"
    "from backendapi import decode\nfrom backendapi._core import parsing as _json\n"
    "before = 'msgspec' in sys.modules\n"
    'events = decode(b\'{"type": "a"}\\n{"type": "b"}\\n\')\n'
    "print(before, _json.speedups(), [e.type for e in events])\n"
)


def test_msgspec_is_imported_on_first_use_and_used() -> None:
    assert _python(CHOSEN, BACKENDAPI_SPEEDUPS="") == "False msgspec ['a', 'b']"


@pytest.mark.parametrize("setting", ["0", "false", "off", "no"])
def test_backendapi_speedups_0_leaves_msgspec_unused(setting: str) -> None:
    assert _python(CHOSEN, BACKENDAPI_SPEEDUPS=setting) == "False None ['a', 'b']"


def test_a_msgspec_error_that_is_no_value_error_leaves_the_batch_to_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """msgspec 0.20 and older raise errors that are no ValueErrors (msgspec 0.23's are)."""
    import msgspec.json

    class OldError(Exception):
        pass

    class OldDecoder:
        def __init__(self, kind: Any) -> None:
            pass

        def decode(self, text: str) -> Any:
            raise OldError("Expected `object`, got `array`")

    monkeypatch.setattr(msgspec, "MsgspecError", OldError)
    monkeypatch.setattr(msgspec.json, "Decoder", OldDecoder)
    parse = _json.msgspec_parse_events()
    assert parse is not None
    assert parse(['{"type": "a"}', "[1]"]) is None
