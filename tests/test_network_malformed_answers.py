"""Answers that are no HTTP, or whose head one client's library would refuse, from a raw
socket server, with both clients.

A `base_url` at the wrong port, a head with two lengths or an unknown encoding, a head too
large: the raw socket server (``raw_server``, `loopback.RawServer`) answers every request
with the same bytes, and both clients must give the same error (not retried) or the same
events. ``docs/reliability.md`` lists what each case gives the caller.
"""

from __future__ import annotations

import inspect

import aiohttp
import pytest
from clients import Result, run_stream_with
from loopback import RawServer
from scripted import CONVERSATION_PATH

from backendapi import APIConnectionError

pytestmark = pytest.mark.usefixtures("clean_network_env")


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n"
SSE_BODY = b'data: {"type": "content", "content": "Hi"}\n\n'


@pytest.mark.parametrize(
    "answer",
    [b"SSH-2.0-OpenSSH_9.6\r\n", b"hello\n", b"HTTP/1.1 abc OK\r\n\r\n"],
    ids=["ssh", "text", "bad-status"],
)
def test_an_answer_that_is_no_http_is_not_retried(
    client_kind: str, raw_server: RawServer, answer: bytes
) -> None:
    # A base_url pointing at the wrong port: asking again gives the same answer.
    raw_server.answer = answer

    result = run_stream_with(client_kind, raw_server.url, max_retries=2)

    assert type(result.error) is APIConnectionError, result.error
    assert str(result.error).startswith(
        f"invalid HTTP response from {raw_server.url}{CONVERSATION_PATH}: "
    )
    assert "\n" not in str(result.error)
    assert raw_server.connections == 1


def _optional_coding_decoded(coding: str) -> bool:
    """Whether either client's library could decode ``coding`` here (a library installed)."""
    import aiohttp.compression_utils
    import urllib3.response

    flag = {"br": "HAS_BROTLI", "zstd": "HAS_ZSTD"}[coding]
    return coding in urllib3.response.HTTPResponse.CONTENT_DECODERS or bool(
        getattr(aiohttp.compression_utils, flag, False)
    )


BAD_HEADS = {
    # Both Content-Length and chunked: RFC 9112 6.3 says to treat it as an error.
    "length-and-chunked": b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
    b"5\r\nabcde\r\n0\r\n\r\n",
    "two-lengths": b"Content-Length: 10\r\nContent-Length: 12\r\n\r\n0123456789ab",
    "br": b"Content-Encoding: br\r\nContent-Length: 5\r\n\r\nabcde",
    "zstd": b"Content-Encoding: zstd\r\nContent-Length: 5\r\n\r\nabcde",
}


@pytest.mark.parametrize("status", [b"200 OK", b"401 Unauthorized"])
@pytest.mark.parametrize("head", sorted(BAD_HEADS))
def test_an_answer_head_that_aiohttp_refuses_is_refused_by_both(
    client_kind: str, raw_server: RawServer, head: str, status: bytes
) -> None:
    """http.client and urllib3 would go on (and read compressed bytes as events)."""
    if head in ("br", "zstd") and _optional_coding_decoded(head):
        pytest.skip(f"a library that decodes {head} is installed")
    raw_server.answer = (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: text/event-stream\r\n"
        b"Connection: close\r\n" + BAD_HEADS[head]
    )

    result = run_stream_with(client_kind, raw_server.url, max_retries=2)

    assert type(result.error) is APIConnectionError, result.error
    message = str(result.error)
    assert message.startswith(f"invalid HTTP response from {raw_server.url}{CONVERSATION_PATH}: ")
    if head in ("br", "zstd"):
        assert f"({head})" in message or repr(head) in message
    assert raw_server.connections == 1  # not retried
    assert result.events == []


def check_head_taken(result: Result, raw_server: RawServer, ok: bool) -> None:
    """The stream read SSE_BODY if ``ok``, else failed at once on the answer's head."""
    if ok:
        assert result.error is None
        assert [event.get("content") for event in result.events] == ["Hi"]
    else:
        assert type(result.error) is APIConnectionError, result.error
        assert "invalid HTTP response" in str(result.error)
        assert raw_server.connections == 1  # not retried


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        (97, True),  # with the two of SSE_HEAD: 99 header lines
        (98, False),
    ],
    ids=["99-lines", "100-lines"],
)
def test_an_answer_head_may_have_99_header_lines_not_100(
    client_kind: str, raw_server: RawServer, headers: int, ok: bool
) -> None:
    # http.client refuses a 100th header line (its limit of 100 counts the blank
    # line); the async client is held to the same (aiohttp's own default is 128).
    if (
        client_kind == "async"
        and "max_headers" not in inspect.signature(aiohttp.ClientSession).parameters
    ):
        pytest.skip("aiohttp < 3.13.4 has no max_headers: its fixed limit is 32768")
    extra = b"".join(b"X-H%d: v\r\n" % i for i in range(headers))
    raw_server.answer = SSE_HEAD + extra + b"\r\n" + SSE_BODY

    check_head_taken(run_stream_with(client_kind, raw_server.url, max_retries=2), raw_server, ok)


@pytest.mark.parametrize(("size", "ok"), [(20_000, True), (70_000, False)])
def test_an_answer_header_line_may_have_20_kb_not_70(
    client_kind: str, raw_server: RawServer, size: int, ok: bool
) -> None:
    # http.client takes header lines of up to 64 KiB; aiohttp's default is 8190 bytes,
    # so a 20 kB cookie or policy header used to fail in the async client alone.
    raw_server.answer = SSE_HEAD + b"X-Big: " + b"a" * size + b"\r\n\r\n" + SSE_BODY

    check_head_taken(run_stream_with(client_kind, raw_server.url, max_retries=2), raw_server, ok)
