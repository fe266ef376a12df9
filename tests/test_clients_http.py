"""Both clients over real HTTP on loopback: whatever a caller can observe must be the same.

Every test that is not about one client only runs once per client (the
``client_kind`` fixture), through the harness in ``clients.py``.
"""

from __future__ import annotations

import base64
import collections.abc
import hashlib
import inspect
import json
import logging
import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest
from clients import KINDS, MESSAGES, run_stream
from scripted import CONVERSATION_PATH, FINISH, FIRST, SECOND, disconnected, sse

from backendapi import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    DecodeError,
    EventTooLargeError,
    IncompleteStreamError,
    RawResponse,
    StreamError,
)
from backendapi.testing import BackendApiTestServer, Cut, Hold, Pause, Reply, Wait

# Every test fails if it leaves a socket, response, session or connector to the GC.
pytestmark = pytest.mark.usefixtures("no_leaks")

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data"
TRANSCRIPTS = sorted(DATA.glob("*.sse")) + sorted(DATA.glob("*.ndjson"))
TRANSFERS = ("chunked", "close")  # the two ways a streamed body is delimited

PROVIDER = {
    "type": "provider",
    "provider": {
        "name": "ScriptedProvider",
        "url": "http://127.0.0.1",
        "label": "ScriptedProvider",
        "model": "scripted-1",
    },
}


def ndjson_events(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().split(b"\n") if line]


def transcript_events(path: Path) -> List[Dict[str, Any]]:
    """The events of a transcript: those of the NDJSON transcript of the same kind."""
    kind = "provider-error" if "-provider-error." in path.name else "conversation"
    (ndjson,) = DATA.glob(f"*-{kind}.ndjson")
    return ndjson_events(ndjson)


# --- The fixture transcripts -------------------------------------------------------------


def test_sse_transcripts_carry_the_ndjson_events() -> None:
    """The premise of test_every_transcript_arrives_whole_however_it_is_served: both
    framings of a transcript hold the same events."""
    for path in DATA.glob("*.sse"):
        data_lines = [
            line[len(b"data: ") :]
            for line in path.read_bytes().split(b"\n")
            if line.startswith(b"data: ")
        ]
        assert [json.loads(line) for line in data_lines] == transcript_events(path), path.name


SERVINGS = [
    f"{framing}-{transfer}" for framing in ("raw", "sse", "ndjson") for transfer in TRANSFERS
]


@pytest.mark.parametrize("serving", SERVINGS)
@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda path: path.name)
def test_every_transcript_arrives_whole_however_it_is_served(
    client_kind: str, backendapi_server: BackendApiTestServer, path: Path, serving: str
) -> None:
    framing, transfer = serving.split("-")
    expected = transcript_events(path)
    if framing == "raw":
        backendapi_server.reply(Reply([path.read_bytes()], transfer=transfer))
    else:
        backendapi_server.reply(Reply(expected, framing=framing, transfer=transfer))

    result = run_stream(client_kind, backendapi_server.url)

    assert all(type(item.event) is RawResponse for item in result.received)
    if expected[-1]["type"] == "error":
        assert result.events == expected[:-1]
        assert type(result.error) is StreamError
        assert result.error.event.get_dict() == expected[-1]
        assert "scripted provider failure" in str(result.error)
    else:
        assert result.error is None
        assert result.events == expected
    assert result.stream.closed


def test_events_split_across_reads_with_every_sse_feature_arrive_whole(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    """CRLF and CR line ends, comments, id/retry, multi-line data and raw UTF-8, 3 bytes a write."""
    body = (
        b": keep-alive\r\n\r\n"
        b"id: 7\r\nretry: 1000\r\nevent: content\r\n"
        b'data: {"type": "content",\r\n'
        b'data:  "content": "w\xc3\xb6rld \xf0\x9f\x8c\x8d \xe2\x80\xa8"}\r\n\r\n'
        b'event: finish\rdata: {"type": "finish", "finish": {"reason": "stop"}}\r\r'
    )
    backendapi_server.reply(Reply([body], write_size=3))

    result = run_stream(client_kind, backendapi_server.url)

    assert result.error is None
    assert result.events == [{"type": "content", "content": "wörld \U0001f30d \u2028"}, FINISH]


# --- The request -------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
JPEG = b"\xff\xd8\xff\xe0" + b"not really a jpeg"


def test_the_request_carries_the_call_exactly(
    client_kind: str, backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    backendapi_server.add_provider("OpenaiChat")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(JPEG)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is on these? \u00e9\u2028"}]},
    ]

    result = run_stream(
        client_kind,
        backendapi_server.url,
        "gpt-4o",
        messages,
        client_options={"api_key": "sk-client"},
        media=[PNG, photo],
        api_key="sk-call",
        provider="OpenaiChat",
        temperature=0.5,
    )

    assert result.error is None
    (request,) = backendapi_server.requests
    assert request.method == "POST"
    assert request.path == CONVERSATION_PATH
    assert request.headers["Accept"] == "text/event-stream"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json == {
        "model": "gpt-4o",
        "messages": messages,
        "media": [
            ["data:image/png;base64," + base64.b64encode(PNG).decode(), None],
            ["data:image/jpeg;base64," + base64.b64encode(JPEG).decode(), "photo.jpg"],
        ],
        "api_key": "sk-call",
        "provider": "OpenaiChat",
        "temperature": 0.5,
    }


def test_the_request_has_no_media_and_the_client_key_by_default(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    result = run_stream(
        client_kind, backendapi_server.url, "", client_options={"api_key": "sk-client"}
    )

    assert result.error is None
    (request,) = backendapi_server.requests
    assert request.json == {
        "model": "",
        "messages": MESSAGES,
        "media": None,
        "api_key": "sk-client",
    }


def test_both_clients_send_the_same_request(
    backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    backendapi_server.add_provider("OpenaiChat")
    photo = tmp_path / "photo.png"
    photo.write_bytes(PNG)
    call: Dict[str, Any] = dict(
        media=[(JPEG, "a.jpg"), str(photo)],
        api_key="sk-call",
        provider="OpenaiChat",
        conversation={"conversation_id": "c-1"},
        temperature=0.5,
    )
    for kind in KINDS:
        result = run_stream(kind, backendapi_server.url, "gpt-4o", **call)
        assert result.error is None, kind

    sync_request, async_request = backendapi_server.requests
    assert sync_request.body == async_request.body
    for name in ("Content-Type", "Accept", "User-Agent"):
        assert sync_request.headers.get(name) == async_request.headers.get(name), name


# --- Latency -----------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["sse", "ndjson"])
@pytest.mark.parametrize("transfer", ["chunked", "close"])
def test_first_event_is_not_held_back(
    client_kind: str, backendapi_server: BackendApiTestServer, transfer: str, framing: str
) -> None:
    backendapi_server.reply(
        Reply([FIRST, Pause(3), SECOND, FINISH], framing=framing, transfer=transfer)
    )

    result = run_stream(client_kind, backendapi_server.url)

    assert result.error is None
    assert result.events == [FIRST, SECOND, FINISH]
    assert result.first_event_delay() < 0.5
    # The server did pause, so the bound above measured something.
    assert result.received[1].at - result.started >= 2.5


@pytest.mark.parametrize("framing", ["sse", "ndjson"])
@pytest.mark.parametrize("transfer", TRANSFERS)
def test_each_event_is_handed_out_before_the_next_is_sent(
    client_kind: str, backendapi_server: BackendApiTestServer, transfer: str, framing: str
) -> None:
    """The same without a clock: the server sends more only once the caller has the event.

    A client that waits for more bytes before handing out an event stalls until its read
    timeout and fails the test.
    """
    released = threading.Event()
    backendapi_server.reply(
        Reply([FIRST, Wait(released), SECOND, FINISH], framing=framing, transfer=transfer)
    )

    result = run_stream(client_kind, backendapi_server.url, on_event=lambda event: released.set())

    assert result.error is None
    assert result.events == [FIRST, SECOND, FINISH]


# --- A large event -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_content() -> str:
    """16 MiB of base64 text, like an image sent inline."""
    return base64.b64encode(random.Random(0).randbytes(12 * 1024 * 1024)).decode()


@pytest.mark.parametrize("framing", ["sse", "ndjson"])
@pytest.mark.parametrize("transfer", ["chunked", "close"])
def test_a_16_mib_event_arrives_intact(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    big_content: str,
    transfer: str,
    framing: str,
) -> None:
    assert len(big_content) == 16 * 1024 * 1024
    big = {"type": "content", "content": big_content}
    backendapi_server.reply(Reply([FIRST, big, FINISH], framing=framing, transfer=transfer))

    result = run_stream(client_kind, backendapi_server.url)

    assert result.error is None
    assert [event["type"] for event in result.events] == ["content", "content", "finish"]
    first, received, finish = result.events
    assert (first, finish) == (FIRST, FINISH)
    assert len(received["content"]) == len(big_content)
    digest = hashlib.sha256(received["content"].encode()).hexdigest()
    assert digest == hashlib.sha256(big_content.encode()).hexdigest()


# --- The with block ----------------------------------------------------------------------


def test_with_block_sends_the_request_on_entering(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    """``with``/``async with client.create(...)`` sends the request on entering and gives
    the stream itself; leaving the block closes the connection."""
    backendapi_server.reply(Reply([FIRST, Hold()]))

    result = run_stream(
        client_kind,
        backendapi_server.url,
        use_with=True,
        on_enter=lambda: len(backendapi_server.requests),
        stop_after=1,
        after_stream=lambda: disconnected(backendapi_server),
    )

    assert result.error is None
    assert result.on_enter == 1
    assert result.entered is result.stream
    assert result.events == [FIRST]
    assert result.after_stream is True  # disconnected before the client itself was closed


# --- Streams that end too early ----------------------------------------------------------


@pytest.mark.parametrize("framing", ["sse", "ndjson"])
def test_a_chunked_body_cut_after_an_event_raises_incomplete_stream(
    client_kind: str, backendapi_server: BackendApiTestServer, framing: str
) -> None:
    backendapi_server.reply(Reply([FIRST, Cut()], framing=framing))

    result = run_stream(client_kind, backendapi_server.url)

    assert result.events == [FIRST]
    assert isinstance(result.error, IncompleteStreamError)


@pytest.mark.parametrize("transfer", ["chunked", "close"])
def test_done_ends_the_stream_without_waiting_for_the_connection(
    client_kind: str, backendapi_server: BackendApiTestServer, transfer: str
) -> None:
    backendapi_server.reply(Reply([FIRST, b"data: [DONE]\n\n", Hold()], transfer=transfer))

    result = run_stream(
        client_kind, backendapi_server.url, after_stream=lambda: disconnected(backendapi_server)
    )

    assert result.error is None  # a client waiting for the end gets a read timeout instead
    assert result.events == [FIRST]
    assert result.after_stream is True  # and the held connection was let go


# --- Errors ------------------------------------------------------------------------------


def test_an_http_404_raises_a_status_error_with_the_servers_message(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply.http_error(404, "Provider not found"))

    result = run_stream(client_kind, backendapi_server.url, provider="Nope")

    assert result.events == []
    assert isinstance(result.error, APIStatusError)
    assert result.error.status_code == 404
    assert "Provider not found" in str(result.error)


def test_an_http_500_with_an_html_page_raises_a_status_error_quoting_it(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    # Every attempt gets the page, however often the client retries a 500.
    backendapi_server.default_reply = Reply(
        status=500, error="<html><body>Bad gateway</body></html>", content_type="text/html"
    )

    result = run_stream(client_kind, backendapi_server.url)

    assert result.events == []
    assert isinstance(result.error, APIStatusError)
    assert result.error.status_code == 500
    assert "Bad gateway" in str(result.error)


def test_a_refused_connection_raises_a_connection_error_naming_the_url(
    client_kind: str, refused_url: str
) -> None:
    result = run_stream(client_kind, refused_url)

    assert type(result.error) is APIConnectionError
    assert refused_url + CONVERSATION_PATH in str(result.error)
    assert result.error.url == refused_url + CONVERSATION_PATH


def test_an_auth_event_raises_an_authentication_error(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    auth = {"type": "auth", "auth": "MissingAuthError", "message": "Add a .har file"}
    backendapi_server.reply(Reply([PROVIDER, auth, FIRST]))

    result = run_stream(client_kind, backendapi_server.url)

    assert result.events == [PROVIDER]
    assert isinstance(result.error, AuthenticationError)
    assert isinstance(result.error, StreamError)
    assert result.error.event.get_dict() == auth
    assert "Add a .har file" in str(result.error)


def test_message_event_is_not_fatal(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    message = {"type": "message", "message": "RateLimitError: slow down", "error": "RateLimitError"}
    events = [PROVIDER, message, PROVIDER, FIRST, FINISH]
    backendapi_server.reply(Reply(events))

    result = run_stream(client_kind, backendapi_server.url)

    assert result.error is None
    assert result.events == events


def test_an_html_page_with_status_200_raises_a_decode_error(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    page = b"<html><body>Please log in</body></html>"
    backendapi_server.reply(Reply([page], content_type="text/html; charset=utf-8"))

    result = run_stream(client_kind, backendapi_server.url)

    assert result.events == []
    assert isinstance(result.error, DecodeError)
    assert "text/html" in str(result.error)


def test_an_undecodable_line_raises_a_decode_error(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply([FIRST, b"<html><body>Bad gateway</body></html>\n"]))

    result = run_stream(client_kind, backendapi_server.url)

    assert isinstance(result.error, DecodeError)
    assert "<html><body>Bad gateway" in str(result.error)


def test_an_event_over_max_event_size_raises_event_too_large(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply([FIRST, {"type": "content", "content": "x" * 5000}]))

    result = run_stream(client_kind, backendapi_server.url, client_options={"max_event_size": 1024})

    assert isinstance(result.error, EventTooLargeError)
    assert "1024" in str(result.error)


@pytest.mark.parametrize(
    "bad",
    [b"<html>\n", sse({"type": "content", "content": "x" * 5000})],
    ids=["undecodable", "too-large"],
)
def test_events_before_a_bad_one_in_the_same_read_are_yielded(
    client_kind: str, backendapi_server: BackendApiTestServer, bad: bytes
) -> None:
    """Whether FIRST is seen must not depend on how TCP cut the bytes: one write holds both."""
    backendapi_server.reply(Reply([sse(FIRST) + bad]))

    result = run_stream(client_kind, backendapi_server.url, client_options={"max_event_size": 1024})

    assert isinstance(result.error, DecodeError)
    assert result.events == [FIRST]


# --- Events the SDK does not know --------------------------------------------------------

ODD_EVENTS: List[Dict[str, Any]] = [
    {"type": "brand-new-type", "payload": {"nested": [1, 2.5, None, True, {"deep": "x"}]}},
    {"type": "content", "content": "a", "urls": ["http://x/a.png"], "user-agent": "ua", "get": 1},
    {"type": "usage", "usage": {"total_tokens": 3, "cost": 0.25}, "surprise": None},
]


@pytest.mark.parametrize("framing", ["sse", "ndjson"])
def test_unknown_types_and_fields_pass_through(
    client_kind: str, backendapi_server: BackendApiTestServer, framing: str
) -> None:
    backendapi_server.reply(Reply(ODD_EVENTS, framing=framing))

    result = run_stream(client_kind, backendapi_server.url)

    assert result.error is None
    assert result.events == ODD_EVENTS
    assert [item.event.type for item in result.received] == [e["type"] for e in ODD_EVENTS]
    assert result.received[1].event["user-agent"] == "ua"


# --- One client only ---------------------------------------------------------------------


def test_create_returns_a_stream_not_a_coroutine(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    result = run_stream(client_kind, backendapi_server.url)

    assert result.error is None
    stream = result.stream
    assert not inspect.iscoroutine(stream)
    if client_kind == "sync":
        assert not inspect.isawaitable(stream)
        assert isinstance(stream, collections.abc.Iterator)
        assert hasattr(stream, "__enter__") and hasattr(stream, "__exit__")
    else:
        assert isinstance(stream, collections.abc.AsyncIterator)
        assert hasattr(stream, "__aenter__") and hasattr(stream, "__aexit__")
        # Awaitable too, for openai's habit (tests/test_helpful_errors.py): it returns itself.
        assert inspect.isawaitable(stream)


PLAIN_SCRIPT = """
import json, sys
from backendapi import BackendApiClient

with BackendApiClient(sys.argv[1], timeout=10) as client:
    events = [event.get_dict() for event in client.create("m", [{"role": "user", "content": "Hi"}])]
imported = sorted(name for name in ("aiohttp", "yarl") if name in sys.modules)
print(json.dumps({"events": events, "imported": imported}))
"""


def test_the_sync_client_works_in_a_plain_script_without_aiohttp(
    backendapi_server: BackendApiTestServer,
) -> None:
    backendapi_server.reply(Reply([PROVIDER, FIRST, FINISH]))

    done = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-c", PLAIN_SCRIPT, backendapi_server.url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout) == {
        "events": [PROVIDER, FIRST, FINISH],
        "imported": [],  # the blocking client needs neither aiohttp nor yarl
    }


# --- The api key -------------------------------------------------------------------------

SECRET = "sk-test-SECRET-123"


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("backendapi", "urllib3", "requests", "aiohttp", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def test_api_key_never_leaks(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    refused_url: str,
    all_logs: pytest.LogCaptureFixture,
) -> None:
    backendapi_server.reply(
        # g4f's parameters event echoes what the provider was given.
        Reply([PROVIDER, {"type": "parameters", "parameters": {"api_key": SECRET}}, FIRST]),
        Reply(status=403, error={"error": {"message": f"bad key {SECRET}"}}),
        Reply([FIRST, {"type": "error", "error": "AuthError", "message": f"bad key {SECRET}"}]),
    )
    url = backendapi_server.url
    ok = run_stream(client_kind, url, client_options={"api_key": SECRET})
    http_error = run_stream(client_kind, url, api_key=SECRET)
    event_error = run_stream(client_kind, url, client_options={"api_key": SECRET})
    refused = run_stream(client_kind, refused_url, client_options={"api_key": SECRET})

    # The key was in play everywhere, and each call failed the way it should.
    assert [request.json["api_key"] for request in backendapi_server.requests] == [SECRET] * 3
    assert ok.error is None
    assert ok.events[1]["parameters"]["api_key"] == SECRET
    assert isinstance(http_error.error, APIStatusError)
    assert "bad key" in str(http_error.error)
    assert type(event_error.error) is StreamError
    assert "bad key" in str(event_error.error)
    assert isinstance(refused.error, APIConnectionError)
    assert any(record.name.startswith("backendapi") for record in all_logs.records)

    seen: List[str] = []
    for result in (ok, http_error, event_error, refused):
        seen += [repr(result.client), repr(result.stream)]
        seen += [repr(item.event) for item in result.received]
        if result.error is not None:
            seen += [str(result.error), repr(result.error)]
    for record in all_logs.records:
        seen += [record.getMessage(), str(record.msg), repr(record.args)]
    assert [text for text in seen if SECRET in text] == []
