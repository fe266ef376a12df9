"""A hostile or broken server's chunk ends and trailers, with both clients.

What follows a chunk's data (its CRLF, or something else), and what follows the last chunk
(the trailer section and its end), each taken, refused or found cut short the way llhttp
(aiohttp's C parser, below the async client) does, by both clients. The servers are raw
sockets on loopback (`loopback.RawServer`): the answer, then the end of the connection.
``docs/reliability.md`` lists what each case gives the caller ("Chunk ends and trailers").

The last test feeds random chunk ends and trailer sections to llhttp itself and to the
blocking client's response class, and expects the same judgement of each.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import random
from typing import Any, Callable, Iterator
from unittest import mock

import aiohttp.helpers
import aiohttp.http_parser
import pytest
from aiohttp.http_exceptions import HttpProcessingError, TransferEncodingError
from clients import Result, run_stream_with
from loopback import RawServer
from scripted import CONVERSATION_PATH, chunk

from backendapi import IncompleteStreamError
from backendapi._transports.aiohttp import _HEADER_LIMITS
from backendapi._transports.connections import FinalResponse

pytestmark = pytest.mark.usefixtures("clean_network_env")

HI = b'data: {"type": "content", "content": "Hi"}\n\n'
YO = b'data: {"type": "content", "content": "Yo"}\n\n'
# Two header fields: aiohttp counts them with the trailer fields against its limit of 99.
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)
LAST = b"0\r\n\r\n"

TAKEN = "taken"
"""All the events, and a clean end."""
REFUSED = "refused"
"""The events before, then the error of broken chunk framing."""
CUT = "cut"
"""The events before, then the error of a body that ended before its end."""

INVALID_CHUNKING = "invalid chunked encoding"


def _c_parser() -> bool:
    """Whether aiohttp parses with its C extension (llhttp) here."""
    return aiohttp.http_parser.HttpResponseParser is not aiohttp.http_parser.HttpResponseParserPy


def _skip_where_aiohttp_parses_otherwise(client_kind: str) -> None:
    if client_kind != "async":
        return
    if aiohttp.helpers.DEBUG:
        pytest.skip("in Python's dev mode aiohttp has llhttp parse strictly")
    if not _c_parser():
        pytest.skip("aiohttp's Python parser has a grammar of its own")


def _assert_alike(result: Result, url: str, outcome: str, events: list[str]) -> None:
    assert [event.get("content") for event in result.events] == events
    if outcome == TAKEN:
        assert result.error is None, result.error
        return
    assert type(result.error) is IncompleteStreamError, result.error
    if outcome == REFUSED:
        assert str(result.error) == (
            f"the response from {url}{CONVERSATION_PATH} broke off: {INVALID_CHUNKING}"
        )
    else:
        # The rest is the library's own word for it.
        assert str(result.error).startswith(
            f"connection to {url}{CONVERSATION_PATH} broke before the stream was complete: "
        ), result.error


# What follows the data of a chunk (YO's), and then the last chunk unless the body ends
# there; as llhttp (aiohttp's C parser, with the leniencies aiohttp turns on) takes it, as
# measured on loopback. http.client threw away the two bytes after the data unread.
CHUNK_ENDS = [
    ("crlf", b"\r\n" + LAST, TAKEN),
    ("lf", b"\n" + LAST, TAKEN),
    ("lf-then-bare-lf-last-chunk", b"\n0\n\n\n", TAKEN),
    ("xy", b"XY" + LAST, REFUSED),
    ("x", b"X" + LAST, REFUSED),
    ("cr-then-size", b"\r" + LAST, REFUSED),
    ("cr-x", b"\rX" + LAST, REFUSED),
    ("cr-cr-lf", b"\r\r\n" + LAST, REFUSED),
    ("space-crlf", b" \r\n" + LAST, REFUSED),
    ("lf-lf", b"\n\n" + LAST, REFUSED),  # the second LF is an empty chunk-size line
    ("lf-crlf", b"\n\r\n" + LAST, REFUSED),
    ("crlf-crlf", b"\r\n\r\n" + LAST, REFUSED),
    ("x-then-fin", b"X", REFUSED),
    ("fin", b"", CUT),
    ("cr-then-fin", b"\r", CUT),
    ("lf-then-fin", b"\n", CUT),
    ("crlf-then-fin", b"\r\n", CUT),
]


@pytest.mark.parametrize(
    ("end", "outcome"),
    [pytest.param(end, outcome, id=name) for name, end, outcome in CHUNK_ENDS],
)
def test_what_follows_a_chunks_data_is_taken_or_refused_alike(
    client_kind: str, raw_server: RawServer, end: bytes, outcome: str
) -> None:
    """A chunk's data ends in CRLF or a bare LF; anything else is refused after the events
    before, and a body ending there is cut short (the blocking client threw the two bytes
    after the data away unread: it took ``XY`` and refused a bare LF)."""
    _skip_where_aiohttp_parses_otherwise(client_kind)
    raw_server.answer = CHUNKED + chunk(HI) + b"%x\r\n" % len(YO) + YO + end

    result = run_stream_with(client_kind, raw_server.url)

    _assert_alike(result, raw_server.url, outcome, ["Hi", "Yo"])


TCHARS = b"!#$%&'*+-.^_`|~09azAZ"


def _fields(count: int) -> bytes:
    return b"".join(b"X-%d: 1\r\n" % number for number in range(count))


# aiohttp counts the head's fields and the trailers' (all but the last) against its limit.
TOO_MANY_FIELDS = b"0\r\n" + _fields(99) + b"\r\n"
# The limit the async client sets, where aiohttp lets it (from 3.13.4 on).
FIELDS_LIMITED = "max_headers" in _HEADER_LIMITS


def _folded_field(size: int) -> bytes:
    """A field over two lines whose name and value come to ``size`` bytes as aiohttp
    counts them: the continuation's space, not the spaces before the value nor line ends."""
    return b"X: " + b"a" * 40000 + b"\r\n " + b"b" * (size - 40002) + b"\r\n"


# What follows the first chunk: the last chunk, its trailer section and the section's end;
# as llhttp takes it, as measured on loopback. http.client read lines up to the first
# empty one or the body's end, whatever they held.
TRAILERS = [
    ("crlf", b"0\r\n\r\n", TAKEN),
    ("lf", b"0\r\n\n", TAKEN),
    ("lf-lf-size-line-then-lf", b"0\n\n\n", TAKEN),
    ("lf-lf-size-line-then-crlf", b"0\n\n\r\n", TAKEN),
    ("extension-lf-then-lf", b"0;a\n\n", TAKEN),
    ("extension-lf-then-crlf", b"0;a\n\r\n", TAKEN),
    ("field", b"0\r\nX-T: 1\r\n\r\n", TAKEN),
    ("field-lf-lf", b"0\r\nX-T: 1\n\n", TAKEN),
    ("field-lf-crlf", b"0\r\nX-T: 1\n\r\n", TAKEN),
    ("field-crlf-lf", b"0\r\nX-T: 1\r\n\n", TAKEN),
    ("fields", b"0\r\nX-T: 1\r\nX-U: 2\r\n\r\n", TAKEN),
    ("token-name", b"0\r\n" + TCHARS + b": 1\r\n\r\n", TAKEN),
    ("empty-value", b"0\r\nX-T:\r\n\r\n", TAKEN),
    ("tab-and-trailing-spaces", b"0\r\nX-T:\t1 \t\r\n\r\n", TAKEN),
    ("any-value-byte", b'0\r\nX-T: \x00\x01\x7f\x80\xff"\\:\r\n\r\n', TAKEN),
    ("folded", b"0\r\nX-T: 1\r\n 2\r\n\t3\r\n\r\n", TAKEN),
    ("folded-empty", b"0\r\nX-T:\r\n \r\n\r\n", TAKEN),
    # llhttp ends an empty field at a CR alone right after the colon (and its spaces).
    ("cr-after-colon", b"0\r\nX-T:\rX-U: 2\r\n\r\n", TAKEN),
    ("cr-after-colon-then-end", b"0\r\nX-T: \r\r\n", TAKEN),
    ("nul-in-the-last-field", b"0\r\nX-T: 1\r\nX-U: a\x00b\r\n\r\n", TAKEN),
    ("98-fields", b"0\r\n" + _fields(98) + b"\r\n", TAKEN),
    (
        "a-field-of-64-kib-over-two-lines",
        b"0\r\n" + _folded_field(65536) + b"\r\n",
        TAKEN,
    ),
    ("no-colon", b"0\r\nXT\r\n\r\n", REFUSED),
    ("space-in-name", b"0\r\nX T: 1\r\n\r\n", REFUSED),
    ("space-before-colon", b"0\r\nX-T : 1\r\n\r\n", REFUSED),
    ("empty-name", b"0\r\n: 1\r\n\r\n", REFUSED),
    ("not-a-token", b"0\r\nX@T: 1\r\n\r\n", REFUSED),
    ("folded-first", b"0\r\n X-T: 1\r\n\r\n", REFUSED),
    ("cr-in-value", b"0\r\nX-T: 1\rx\r\n\r\n", REFUSED),
    ("cr-cr-lf", b"0\r\nX-T: 1\r\r\n\r\n", REFUSED),
    ("end-cr-x", b"0\r\n\rX", REFUSED),
    ("end-cr-cr-lf", b"0\r\nX-T: 1\r\n\r\r\n", REFUSED),
    ("nul-in-a-field-before-another", b"0\r\nX-T: a\x00b\r\nX-U: 1\r\n\r\n", REFUSED),
    ("99-fields", TOO_MANY_FIELDS, REFUSED),
    (
        "a-field-over-64-kib-over-two-lines",
        b"0\r\n" + _folded_field(65537) + b"\r\n",
        REFUSED,
    ),
    ("a-line-over-64-kib", b"0\r\nX-T: " + b"a" * 70000 + b"\r\n\r\n", REFUSED),
    ("no-token-then-fin", b"0\r\nX T", REFUSED),
    ("fin", b"0\r\n", CUT),
    ("cr-then-fin", b"0\r\n\r", CUT),
    ("lf-lf-size-line-then-fin", b"0\n\n", CUT),
    ("extension-lf-then-fin", b"0;a\n", CUT),
    ("field-then-fin", b"0\r\nX-T: 1\r\n", CUT),
    ("field-lf-then-fin", b"0\r\nX-T: 1\n", CUT),
    ("in-a-value", b"0\r\nX-T: 1", CUT),
    ("in-a-name", b"0\r\nX-T", CUT),
    ("after-a-colon", b"0\r\nX-T:", CUT),
    ("after-a-value-cr", b"0\r\nX-T: 1\r", CUT),
    ("in-a-fold", b"0\r\nX-T: 1\r\n ", CUT),
]


@pytest.mark.parametrize(
    ("tail", "outcome"),
    [pytest.param(tail, outcome, id=name) for name, tail, outcome in TRAILERS],
)
def test_a_trailer_section_is_taken_or_refused_alike(
    client_kind: str, raw_server: RawServer, tail: bytes, outcome: str
) -> None:
    """After the last chunk, trailer fields and an empty line, or the body is cut short
    (the blocking client took a body ending anywhere in the section for a whole one, and
    any line at all as a field)."""
    _skip_where_aiohttp_parses_otherwise(client_kind)
    if client_kind == "async" and tail == TOO_MANY_FIELDS and not FIELDS_LIMITED:
        pytest.skip("aiohttp before 3.13.4 cannot be set to 99 fields")
    raw_server.answer = CHUNKED + chunk(HI) + tail

    result = run_stream_with(client_kind, raw_server.url)

    _assert_alike(result, raw_server.url, outcome, ["Hi"])


# Random chunk ends and trailer sections, judged by llhttp and by the blocking client.


class _Socket:
    """What ``HTTPResponse`` reads a response from: here, bytes in memory."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self._data))


def _judged_by_the_blocking_client(body: bytes) -> str:
    response = FinalResponse(_Socket(CHUNKED + body), method="POST")
    response.begin()
    try:
        # As the transport reads: the usual framing at once, the rest by read1's rules.
        while response.read_data(65536) or response.read1(65536):
            pass
    except http.client.IncompleteRead as exc:
        # The transport's reading of it: a ValueError behind it is broken framing.
        return REFUSED if isinstance(exc.__context__, ValueError) else CUT
    return TAKEN


@pytest.fixture(scope="module")
def judged_by_llhttp() -> Iterator[Callable[[bytes], str]]:
    """Judges a body with llhttp, as aiohttp (configured as the async client has it) runs it."""
    loop = asyncio.new_event_loop()

    def judge(body: bytes) -> str:
        parser = aiohttp.http_parser.HttpResponseParser(mock.Mock(), loop, 2**16, **_HEADER_LIMITS)
        messages, _, _ = parser.feed_data(CHUNKED)
        payload = messages[0][1]
        try:
            parser.feed_data(body)
        except HttpProcessingError:
            # After a whole body, bytes that are no next response do not matter.
            return TAKEN if payload.is_eof() and payload.exception() is None else REFUSED
        if payload.is_eof():
            return TAKEN
        with pytest.raises(TransferEncodingError):
            parser.feed_eof()
        return CUT

    yield judge
    loop.close()


def _random_chunk_end(rng: random.Random) -> bytes:
    pieces = [b"\r\n"] * 4 + [b"\n"] * 2 + [b"\r", b"X", b" ", b"0", b"\t"]
    end = b"".join(rng.choice(pieces) for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3])))
    after = rng.choice([b"", LAST, b"0\n\n\n", b"2c\r\n" + YO + b"\r\n" + LAST])
    body = YO + end + after
    if rng.random() < 0.3:
        body = body[: rng.randint(len(YO), len(body))]
    return chunk(HI) + b"%x\r\n" % len(YO) + body


# The pieces of trailer sections, the good ones more often than the others.
_NAMES = [b"X", b"X-T", TCHARS] * 8 + [b"", b"X T", b"X@", b"\x7f", b"\x80", b"X\t"]
_SPACES = [b"", b" ", b"\t", b"  "]
_GOOD_VALUE_BYTES = [b"a", b"1", b" ", b"\t", b":", b'"', b"\x80"]
_VALUE_BYTES = _GOOD_VALUE_BYTES * 4 + [b"\x00", b"\x7f", b"\r"]
_LINE_ENDS = [b"\r\n"] * 6 + [b"\n"] * 3 + [b"\r", b"\r\r\n", b""]


def _random_value(rng: random.Random, good: bool = False) -> bytes:
    choices = _GOOD_VALUE_BYTES if good else _VALUE_BYTES
    return b"".join(rng.choice(choices) for _ in range(rng.randint(0, 4)))


def _random_trailer_line(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.6:
        colon = b":" if rng.random() < 0.95 else b""
        line = rng.choice(_NAMES) + colon + rng.choice(_SPACES) + _random_value(rng)
    elif kind < 0.85:
        line = rng.choice([b" ", b"\t"]) + _random_value(rng)  # a continuation
    else:
        line = b""
    return line + rng.choice(_LINE_ENDS)


def _random_trailer_section(rng: random.Random) -> bytes:
    section = [rng.choice([b"0\r\n", b"0\n\n", b"0;a\n", b"0;a=b\r\n"])]
    if FIELDS_LIMITED and rng.random() < 0.1:
        # Around aiohttp's limit on fields (the head's two and the trailers), a NUL at times.
        for number in range(rng.randint(96, 100)):
            nul = b"\x00" if rng.random() < 0.01 else b""
            section.append(b"X-%d: %s%s\r\n" % (number, nul, _random_value(rng, good=True)))
    else:
        section.extend(_random_trailer_line(rng) for _ in range(rng.randint(0, 4)))
    section.append(rng.choice([b"\r\n", b"\n", b""]))
    body = b"".join(section)
    if rng.random() < 0.3:
        body = body[: rng.randint(0, len(body))]
    return chunk(HI) + body


@pytest.mark.skipif(
    aiohttp.helpers.DEBUG or not _c_parser(), reason="llhttp, as aiohttp runs it by default"
)
@pytest.mark.parametrize(
    "generate", [_random_chunk_end, _random_trailer_section], ids=["chunk-ends", "trailers"]
)
def test_random_chunk_ends_and_trailers_are_judged_as_llhttp_judges_them(
    judged_by_llhttp: Callable[[bytes], str], generate: Callable[[random.Random], bytes]
) -> None:
    """Bodies made of the pieces of the tables above, at random: the blocking client takes,
    refuses or finds cut short each as llhttp does."""
    rng = random.Random(12)
    bodies = {generate(rng) for _ in range(3000)}

    differing = [
        (body, judged_by_llhttp(body), _judged_by_the_blocking_client(body))
        for body in sorted(bodies)
        if judged_by_llhttp(body) != _judged_by_the_blocking_client(body)
    ]

    assert differing == []
    judgements = {judged_by_llhttp(body) for body in bodies}
    assert judgements == {TAKEN, REFUSED, CUT}


class _Pieces(io.RawIOBase):
    """A socket's bytes, handed out in pieces of random sizes, as a real socket's reads
    come (a size line cut, a chunk's data in parts, its CRLF apart)."""

    def __init__(self, data: bytes, rng: random.Random) -> None:
        super().__init__()
        self._data = memoryview(data)
        self._rng = rng

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), len(self._data), self._rng.choice([1, 2, 3, 5, 9, 40, 4096]))
        buffer[:size] = self._data[:size]
        self._data = self._data[size:]
        return size


class _PiecesSocket:
    def __init__(self, data: bytes, rng: random.Random) -> None:
        self._file = io.BufferedReader(_Pieces(data, rng), rng.choice([8, 64, 8192]))

    def makefile(self, mode: str) -> io.BufferedReader:
        return self._file


def _read_body(body: bytes, rng: random.Random, at_once: bool, amount: int) -> tuple:
    """The data a FinalResponse reads of a chunked ``body`` and how it ends, with the usual
    framing read at once (``read_data``, then ``read1``) as the transport does, or by
    ``read1`` alone; ``rng`` cuts the socket's bytes into pieces."""
    response = FinalResponse(_PiecesSocket(CHUNKED + body, rng), method="POST")
    response.begin()
    data = []
    try:
        while True:
            piece = (response.read_data(amount) if at_once else b"") or response.read1(amount)
            if not piece:
                return b"".join(data), TAKEN
            assert len(piece) <= amount, "a read returned more than it was asked for"
            data.append(piece)
    except http.client.IncompleteRead as exc:
        return b"".join(data), REFUSED if isinstance(exc.__context__, ValueError) else CUT


def _random_chunked_body(rng: random.Random) -> bytes:
    """Chunks of random sizes, their size lines and ends mostly usual, now and then not
    (cases, extensions, bare LFs, spaces, a 0x, a wrong end), maybe cut short."""
    parts = []
    for _ in range(rng.randint(0, 6)):
        data = rng.randbytes(rng.choice([1, 2, 10, 58, 300, 5000]))
        size = rng.choice([b"%x", b"%x", b"%x", b"%X", b"00%x", b"%x;a=b", b"%x ", b"0x%x"])
        line_end = rng.choice([b"\r\n"] * 6 + [b"\n", b"\n\n", b"\r"])
        data_end = rng.choice([b"\r\n"] * 6 + [b"\n", b"X", b"\r\r\n", b""])
        parts.append(size % len(data) + line_end + data + data_end)
    parts.append(rng.choice([LAST, LAST, b"0\r\nX-T: 1\r\n\r\n", b"0\n\n", b"00\r\n\r\n"]))
    body = b"".join(parts)
    if rng.random() < 0.2:
        body = body[: rng.randint(0, len(body))]
    return body


@pytest.mark.parametrize(
    "generate",
    [_random_chunked_body, _random_chunk_end, _random_trailer_section],
    ids=["chunks", "chunk-ends", "trailers"],
)
def test_the_usual_framing_read_at_once_reads_as_read1_does(
    generate: Callable[[random.Random], bytes],
) -> None:
    """FinalResponse.read_data (the usual size lines and chunk ends, at once) with read1
    after it reads the same data and ends the same way as read1 alone, however the
    socket's bytes come in pieces and whatever the read size."""
    rng = random.Random(13)
    differing = []
    fast_reads = 0
    for _ in range(1500):
        body = generate(rng)
        amount = rng.choice([1, 7, 65536])
        expected = _read_body(body, random.Random(0), False, amount)
        for seed in range(3):
            found = _read_body(body, random.Random(seed), True, amount)
            if found != expected:
                differing.append((body, amount, seed, expected, found))
        fast_reads += bool(expected[0])
    assert differing[:3] == []
    assert fast_reads > 500  # most bodies have data to read


def test_the_usual_framing_read_at_once_reads_nothing_of_a_head_response() -> None:
    # As read1: a response to HEAD has no body, whatever its head says.
    response = FinalResponse(_Socket(CHUNKED + chunk(HI) + LAST), method="HEAD")
    response.begin()
    assert response.read_data(65536) == b""
    assert response.read1(65536) == b""
