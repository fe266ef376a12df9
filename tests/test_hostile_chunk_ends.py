"""A hostile or broken server's chunk ends and trailers, with both clients.

What follows a chunk's data (its CRLF, or something else), and what follows the last chunk
(the trailer section and its end), each taken, refused or found cut short the way llhttp
(aiohttp's C parser, below the async client) does, by both clients. The servers are raw
sockets on loopback (`loopback.RawServer`): the answer, then the end of the connection.
``docs/reliability.md`` lists what each case gives the caller ("Chunk ends and trailers").
"""

from __future__ import annotations

import aiohttp.helpers
import aiohttp.http_parser
import pytest
from clients import Result, run_stream_with
from loopback import RawServer
from scripted import CONVERSATION_PATH, chunk

from backendapi import IncompleteStreamError

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
