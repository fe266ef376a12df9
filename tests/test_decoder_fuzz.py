"""Fuzzing the event decoder: whatever bytes arrive, cut however, it fails only in its own way.

Inputs are random bytes, random sequences of protocol fragments (field names, line ends,
braces, a BOM, invalid UTF-8, long runs), and the real transcripts in ``tests/data`` mutated
at random (bytes flipped, inserted, deleted, lines duplicated, the end truncated). Each is
fed to `EventDecoder` in random pieces. The properties:

* the only exceptions are the SDK's own: `DecodeError` (and `EventTooLargeError`) or
  `IncompleteStreamError`, all `BackendApiError`s; never a `KeyError`, `IndexError`,
  `UnicodeDecodeError` or `RecursionError` from inside;
* every event is a `RawResponse` with a str ``type`` that can be printed;
* how the bytes are cut changes nothing: same events, same kind of error;
* with a small ``max_event_size``, the decoder never holds more than the limit plus the
  piece it was just given, plus the 6 bytes of a ``data: `` prefix, which the limit does
  not count (no unbounded buffering of a line that never ends);
* nothing hangs: inputs are bounded and each example runs under an alarm.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Type

from hypothesis import HealthCheck, given, settings
from hypothesis import event as label
from hypothesis import strategies as st

from backendapi import (
    BackendApiError,
    DecodeError,
    EventDecoder,
    EventTooLargeError,
    IncompleteStreamError,
    RawResponse,
)

DATA = Path(__file__).parent / "data"
FIXTURES = [
    path.read_bytes() for path in sorted(DATA.iterdir()) if path.suffix in {".sse", ".ndjson"}
]
FAMILY = (DecodeError, EventTooLargeError, IncompleteStreamError)
SMALL_LIMIT = 4096
# The limit counts an event's payload: an unterminated "data: " line may hold its prefix too.
PREFIX = len(b"data: ")
HANG_SECONDS = 5.0
FUZZ = settings(
    max_examples=600,
    deadline=None,  # timing is the alarm's job; CI machines are noisy
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Pieces of the protocol, so that random sequences of them reach deep into the decoder.
FRAGMENTS = [
    b"event: ",
    b"data: ",
    b"data:",
    b"id: ",
    b"retry: ",
    b"retry: 1500",
    b": keep-alive",
    b"[DONE]",
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\n",
    b"{",
    b"}",
    b'{"type": "content", "content": "x"}',
    b'"type"',
    b'"content"',
    b": ",
    b",",
    b"[",
    b"]",
    b'"',
    b"\\",
    b"\\u00e9",
    b"\\ud83d",
    b"null",
    b"1e999",
    b"content",
    b" ",
    b"\t",
    b"\x00",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xc3",
    b"\xe2\x80\xa8",
    b"\xf0\x9f\x8c",
    b"<html>",
]


# Whole events in both framings, so that random sequences also decode into events.
WHOLE_EVENTS = [
    b'event: content\ndata: {"type": "content", "content": "Hi"}\n\n',
    b'data: {"content": "no type"}\n\n',
    b'event: title\ndata: {"title": "t"}\r\n\r\n',
    b'event: title\r\ndata: {"title": "crlf"}\r\n\r\n',
    b'event: title\rdata: {"title": "cr"}\r\r',
    b'data: {"type": "a",\ndata: "b": 1}\n\n',
    b'{"type": "usage", "usage": {"total_tokens": 3}}\n',
    b'{"type": "content", "content": "\xe2\x80\xa8 \xc3\xa9"}\r',
    b"data: [DONE]\n\n",
]
LONG_EVENT_FORMS = [
    b'{"type": "content", "content": "LONG"}\n',
    b'event: content\ndata: {"type": "content", "content": "LONG"}\n\n',
    b"data: LONG\n",
    b": LONG\n",
    b"LONG",
]


class Hang(Exception):
    """The decoder took longer than `HANG_SECONDS` on one bounded input."""


@contextlib.contextmanager
def no_hang(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Turn a hang into a failure (SIGALRM, main thread only; elsewhere a no-op)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"the decoder did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def pieces_of(stream: bytes, cuts: Sequence[int]) -> List[bytes]:
    """`stream` cut at `cuts` (positions in it, any order; repeats make empty pieces)."""
    bounds = [0, *sorted(cuts), len(stream)]
    return [stream[start:end] for start, end in zip(bounds, bounds[1:])]


def check_event(event: object) -> None:
    assert isinstance(event, RawResponse)
    assert isinstance(event.type, str)
    data = event.get_dict()
    assert isinstance(data, dict) and "type" in data
    repr(event)
    str(event)


def run(
    pieces: Sequence[bytes], max_event_size: Optional[int] = None
) -> Tuple[List[dict], Optional[Type[BaseException]]]:
    """Feed `pieces`, then close; return the events and the class of the error, if any.

    Checks on the way that only the SDK's errors come out, and, with a `max_event_size`,
    that the buffer stays bounded after every piece.
    """
    decoder = (
        EventDecoder() if max_event_size is None else EventDecoder(max_event_size=max_event_size)
    )
    events: List[dict] = []
    error: Optional[BaseException] = None
    with no_hang():
        try:
            taken = 0  # size of the last piece the decoder took in
            for piece in pieces:
                # With an error pending, feed() raises it without taking the piece.
                taken = taken if decoder.error_pending else len(piece)
                try:
                    new = decoder.feed(piece)
                finally:
                    if max_event_size is not None:
                        assert len(decoder._buf) <= max_event_size + PREFIX + taken
                if max_event_size is not None and not decoder.error_pending:
                    # All it holds: the unterminated line and the pending SSE data lines.
                    held = len(decoder._buf) + decoder._data_size
                    assert held <= max_event_size + PREFIX
                for event in new:
                    check_event(event)
                events += [event.get_dict() for event in new]
            new = decoder.close()
            for event in new:
                check_event(event)
            events += [event.get_dict() for event in new]
        except FAMILY as exc:
            error = exc
    if error is not None:
        assert isinstance(error, BackendApiError)
        assert str(error)  # a message for the user, never empty
        # Closing after a failure must not blow up in some other way either.
        with no_hang(), contextlib.suppress(*FAMILY):
            decoder.close()
    # Shown by --hypothesis-show-statistics: how deep the inputs got.
    label(f"outcome: {'no error' if error is None else type(error).__name__}")
    label(f"events: {'none' if not events else 'some'}")
    return events, None if error is None else type(error)


def error_kind(error: Optional[Type[BaseException]]) -> Optional[Type[BaseException]]:
    """DecodeError covers EventTooLargeError: where a limit is hit may depend on the cuts."""
    if error is not None and issubclass(error, DecodeError):
        return DecodeError
    return error


# --- Strategies --------------------------------------------------------------------------


@st.composite
def fragment_streams(draw: st.DrawFn) -> bytes:
    parts = draw(
        st.lists(
            st.one_of(
                st.sampled_from(FRAGMENTS),
                st.sampled_from(WHOLE_EVENTS),
                st.binary(max_size=8),
                st.builds(long_event, st.sampled_from(LONG_EVENT_FORMS), st.integers(0, 6000)),
            ),
            max_size=40,
        )
    )
    return b"".join(parts)


def long_event(form: bytes, size: int) -> bytes:
    """A whole event (or bare line) whose text is `size` bytes long: around the limit."""
    return form.replace(b"LONG", b"a" * size)


@st.composite
def mutated_fixtures(draw: st.DrawFn) -> bytes:
    stream = bytearray(draw(st.sampled_from(FIXTURES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate-line"]))
        at = draw(st.integers(0, max(len(stream) - 1, 0)))
        if kind == "flip" and stream:
            stream[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            stream[at:at] = draw(
                st.one_of(st.binary(min_size=1, max_size=16), st.sampled_from(FRAGMENTS))
            )
        elif kind == "delete":
            del stream[at : at + draw(st.integers(1, 64))]
        elif kind == "truncate":
            del stream[at:]
        elif kind == "duplicate-line":
            lines = bytes(stream).splitlines(keepends=True)
            if lines:
                index = draw(st.integers(0, len(lines) - 1))
                lines.insert(index, lines[index])
                stream = bytearray(b"".join(lines))
    return bytes(stream)


@st.composite
def long_streams(draw: st.DrawFn) -> bytes:
    """A few events and lines, most of them near or over `SMALL_LIMIT`."""
    parts = draw(
        st.lists(
            st.one_of(
                st.sampled_from(WHOLE_EVENTS),
                st.builds(long_event, st.sampled_from(LONG_EVENT_FORMS), st.integers(1000, 9000)),
            ),
            min_size=1,
            max_size=6,
        )
    )
    return b"".join(parts)


@st.composite
def event_streams(draw: st.DrawFn) -> bytes:
    """Mostly valid streams: whole events in both framings and every line-end style,
    keep-alive comments, now and then one mutated byte."""
    parts = draw(
        st.lists(
            st.one_of(
                st.sampled_from(WHOLE_EVENTS),
                st.sampled_from([b": keep-alive\n", b":\r\n", b"\n", b"\r"]),
                st.builds(long_event, st.sampled_from(LONG_EVENT_FORMS[:2]), st.integers(0, 300)),
            ),
            max_size=20,
        )
    )
    stream = bytearray(b"".join(parts))
    if stream and draw(st.booleans()):
        stream[draw(st.integers(0, len(stream) - 1))] = draw(st.integers(0, 255))
    return bytes(stream)


any_stream = st.one_of(st.binary(max_size=4096), fragment_streams(), mutated_fixtures())


@st.composite
def cut_up(draw: st.DrawFn, streams: st.SearchStrategy[bytes]) -> Tuple[bytes, List[bytes]]:
    """A stream and the pieces it arrives in, cut at up to 24 random places."""
    stream = draw(streams)
    anywhere = st.integers(0, len(stream))
    # Where a cut is most likely to confuse a decoder: right after a "\r" (is a "\n" next
    # part of the same line end?) and inside or next to a non-ASCII byte.
    tricky = [
        at
        for at in range(1, len(stream))
        if stream[at - 1] == 0x0D or stream[at] >= 0x80 or stream[at - 1] >= 0x80
    ]
    positions = st.one_of(anywhere, st.sampled_from(tricky)) if tricky else anywhere
    cuts = draw(st.lists(positions, max_size=24))
    return stream, pieces_of(stream, cuts)


# --- Properties --------------------------------------------------------------------------


@FUZZ
@given(cut_up(st.binary(max_size=4096)))
def test_random_bytes_raise_only_the_sdks_errors(case: Tuple[bytes, List[bytes]]) -> None:
    run(case[1])


@FUZZ
@given(cut_up(mutated_fixtures()))
def test_mutated_transcripts_raise_only_the_sdks_errors(case: Tuple[bytes, List[bytes]]) -> None:
    run(case[1])


@FUZZ
@given(cut_up(fragment_streams()))
def test_protocol_fragments_raise_only_the_sdks_errors(case: Tuple[bytes, List[bytes]]) -> None:
    run(case[1])


@FUZZ
@given(cut_up(st.one_of(any_stream, event_streams())))
def test_cutting_changes_neither_the_events_nor_the_error(case: Tuple[bytes, List[bytes]]) -> None:
    stream, pieces = case
    whole = run([stream])
    cut = run(pieces)

    assert cut[0] == whole[0]
    assert error_kind(cut[1]) == error_kind(whole[1])


@FUZZ
@given(cut_up(st.one_of(any_stream, long_streams())))
def test_buffer_stays_within_a_small_max_event_size(case: Tuple[bytes, List[bytes]]) -> None:
    """`run` asserts the bound after every piece; lines of up to 9000 bytes exceed it."""
    run(case[1], max_event_size=SMALL_LIMIT)


@FUZZ
@given(st.one_of(any_stream, long_streams()), st.integers(1, 64))
def test_small_pieces_stay_within_a_small_max_event_size(stream: bytes, size: int) -> None:
    """Fed in small pieces of equal size, the way a slow network delivers a long line."""
    pieces = [stream[start : start + size] for start in range(0, len(stream), size)]
    run(pieces, max_event_size=SMALL_LIMIT)
