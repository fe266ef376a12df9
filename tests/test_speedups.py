"""The decoder's fast path and its helpers give exactly what the per-line path gives.

The fast path (``EventDecoder._fast``: one UTF-8 decode and one split per
feed, the stdlib JSON scanner called directly) must be invisible: the same
events, the same errors with the same messages, raised at the same point.
Each stream here is decoded twice, once with the fast path switched off, and
the two outcomes compared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backendapi import Answer, BackendApiError, EventDecoder, RawResponse, _json
from backendapi._answer import CONTENT_CHUNK as _CHUNK

DATA = Path(__file__).parent / "data"

Outcome = Tuple[List[Any], Optional[Tuple[str, str]], List[bool]]


def run(
    data: bytes, cuts: List[int], fast: bool, monkeypatch: pytest.MonkeyPatch, **kwargs: Any
) -> Outcome:
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(EventDecoder, "_fast", lambda *args: False)
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
    fast = run(data, cuts, True, monkeypatch, **kwargs)
    slow = run(data, cuts, False, monkeypatch, **kwargs)
    assert repr(fast) == repr(slow)
    return fast


@pytest.mark.parametrize("path", sorted(DATA.iterdir()), ids=lambda p: p.name)
@pytest.mark.parametrize("piece", [1, 7, 64, 1000, 1 << 20])
def test_fixtures_decode_the_same_on_both_paths(
    path: Path, piece: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = path.read_bytes()
    events, error, _ = same(data, list(range(piece, len(data), piece)), monkeypatch)
    assert events and error is None


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
