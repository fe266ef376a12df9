"""The provider and bookkeeping routes: synthesize, quota, health, status, stats, usage, log.

Each call over both clients against the test server, whose answers are compared with
a real g4f 8.8.6's, recorded in ``tests/data/g4f-8.8.6-info-routes/``
(``scripts/record_info_routes.py``).
"""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest
import requests
from clients import call
from loopback import RawServer

from backendapi import (
    DEFAULT_MAX_RESPONSE_SIZES,
    APIStatusError,
    BackendApiClient,
    InvalidInputError,
    ResponseTooLargeError,
    Speech,
)
from backendapi.testing import BackendApiTestServer, RecordedRequest, ScriptedAudio

RECORDED = Path(__file__).parent / "data" / "g4f-8.8.6-info-routes"
KEY = "sk-route-key-0123456789"
AUDIO = bytes(range(256)) * 300  # 76.8 KB: several chunks
MiB = 1024 * 1024


def last(server: BackendApiTestServer) -> RecordedRequest:
    assert server.requests, "the server got no request"
    return server.requests[-1]


@pytest.fixture
def server() -> Iterator[BackendApiTestServer]:
    """A test server knowing the providers the recordings name, scripted as g4f had them."""
    known = {"ScriptedProvider", "OpenaiChat", "PollinationsAI", "Gemini", "OpenRouter"}
    with BackendApiTestServer(known_providers=known) as test_server:
        info = test_server.info
        info.speech["Gemini"] = ScriptedAudio(AUDIO, "audio/vnd.wav")
        info.keys["OpenRouter"] = "sk-recorded-key"
        unreachable = json.loads((RECORDED / "health-of-an-unreachable-provider.json").read_text())
        info.health["OpenRouter"] = unreachable["body"]
        yield test_server


# The test server answers as g4f 8.8.6 did

REPLAYED = [
    "quota-of-an-unknown-provider",
    "health-of-an-unknown-provider",
    "synthesize-with-an-unknown-provider",
    "quota-not-supported",
    "health-not-supported",
    "quota-without-a-key",
    "health-without-a-key",
    "health-of-an-unreachable-provider",
    "synthesize-not-supported",
    "synthesize-without-its-text",
    "oauth-of-an-unknown-provider",
    "oauth-not-supported",
    "status",
    "stats-with-no-usage",
    "log-with-no-lines",
    "usage-of-a-malformed-date",
    "usage-of-an-impossible-date",
    "usage-of-a-date-without-usage",
    "usage-recorded",
    "usage-of-today",
    "stats-after-usage",
    "log-line-recorded",
    "log-after-a-line",
    "log-with-a-malformed-limit",
]
"""Every recording, in the order it was made (later ones read what earlier ones stored)."""


def test_every_recording_is_replayed() -> None:
    assert sorted(REPLAYED) == sorted(path.stem for path in RECORDED.glob("*.json"))


def test_the_test_server_answers_each_route_as_g4f_did(server: BackendApiTestServer) -> None:
    recorded_day = None
    today = datetime.date.today().isoformat()
    for name in REPLAYED:
        recording = json.loads((RECORDED / f"{name}.json").read_text())
        request = recording["request"]
        path = request["path"]
        if name == "usage-of-today":
            recorded_day = path.rsplit("/", 1)[1]
            path = path.replace(recorded_day, today)
        response = requests.request(
            request["method"],
            server.url + path,
            json=request.get("json"),
            headers=request.get("headers"),
            timeout=10,
        )
        assert response.status_code == recording["status"], name
        content_type = response.headers["Content-Type"].replace(" ", "").lower()
        assert content_type == recording["content_type"].replace(" ", "").lower(), name
        if not recording["content_type"].startswith("application/json"):
            assert response.text == recording["body"], name
            continue
        body = response.json()
        expected = recording["body"]
        if name == "status":
            # The counts and the time are the server's own; the document's shape is g4f's.
            assert sorted(body) == sorted(expected)
            assert {key: type(value) for key, value in body.items()} == {
                key: type(value) for key, value in expected.items()
            }
            assert (body["status"], body["version"], body["working_providers"]) == (
                "ok",
                "8.8.6",
                0,
            )
            continue
        if name == "stats-after-usage":
            assert recorded_day is not None
            expected = json.loads(json.dumps(expected).replace(recorded_day, today))
        assert body == expected, name


# synthesize


def test_synthesize_returns_the_audio_and_its_type(
    client_kind: str, server: BackendApiTestServer
) -> None:
    speech = call(client_kind, server.url, "synthesize", "Gemini", "Hello, wörld")
    assert isinstance(speech, Speech)
    assert (speech.data, speech.size, speech.path) == (AUDIO, len(AUDIO), None)
    assert speech.content_type == "audio/vnd.wav"
    assert "data" not in repr(speech)  # 77 KB of bytes stay out of a repr
    request = last(server)
    assert (request.method, request.path) == ("GET", "/backend-api/v2/synthesize/Gemini")
    assert request.query == {"text": "Hello, wörld"}
    assert "x-api-key" not in request.headers


def test_synthesize_sends_the_synthesize_events_data_as_its_query(
    client_kind: str, server: BackendApiTestServer
) -> None:
    server.info.speech["OpenaiChat"] = ScriptedAudio(b"aac", "audio/aac", required=())
    event_data = {"conversation_id": "c-1", "message_id": "m-1", "voice": "maple"}
    speech = call(client_kind, server.url, "synthesize", "OpenaiChat", params=event_data)
    assert (speech.data, speech.content_type) == (b"aac", "audio/aac")
    assert last(server).query == event_data


def test_synthesize_writes_the_file_whole_and_leaves_nothing_else(
    client_kind: str, server: BackendApiTestServer, tmp_path: Path
) -> None:
    target = tmp_path / "hello.wav"
    target.write_bytes(b"an older file")
    speech = call(client_kind, server.url, "synthesize", "Gemini", "Hi", path=str(target))
    assert (speech.path, speech.size, speech.data) == (target, len(AUDIO), None)
    assert target.read_bytes() == AUDIO
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hello.wav"]


@pytest.mark.parametrize(
    ("provider", "status", "message"),
    [
        ("NoSuchProvider", 404, "Provider not found"),
        ("PollinationsAI", 500, "Provider doesn't support synthesize"),
    ],
)
def test_a_synthesize_error_is_the_servers_and_leaves_the_file_alone(
    client_kind: str,
    server: BackendApiTestServer,
    tmp_path: Path,
    provider: str,
    status: int,
    message: str,
) -> None:
    target = tmp_path / "kept.wav"
    target.write_bytes(b"kept")
    with pytest.raises(APIStatusError) as caught:
        call(client_kind, server.url, "synthesize", provider, "Hi", path=target)
    assert (caught.value.status_code, caught.value.message) == (status, message)
    assert target.read_bytes() == b"kept"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.wav"]


def test_synthesize_without_the_text_its_provider_needs_is_g4fs_500_page(
    client_kind: str, server: BackendApiTestServer
) -> None:
    with pytest.raises(APIStatusError) as caught:
        call(client_kind, server.url, "synthesize", "Gemini")
    assert caught.value.status_code == 500
    assert "Internal Server Error" in caught.value.message


def test_synthesize_past_its_limit_raises_and_writes_nothing(
    client_kind: str, server: BackendApiTestServer, tmp_path: Path
) -> None:
    target = tmp_path / "big.wav"
    with pytest.raises(ResponseTooLargeError) as caught:
        call(
            client_kind, server.url, "synthesize", "Gemini", "Hi", path=target,
            max_response_size=len(AUDIO) - 1,
        )  # fmt: skip
    assert caught.value.limit == len(AUDIO) - 1
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ResponseTooLargeError):
        call(client_kind, server.url, "synthesize", "Gemini", "Hi", max_response_size=1000)
    exact = call(
        client_kind, server.url, "synthesize", "Gemini", "Hi", max_response_size=len(AUDIO)
    )
    assert exact.data == AUDIO


@pytest.mark.parametrize(
    ("args", "kwargs", "words"),
    [
        (("",), {}, "provider must be a non-empty str"),
        ((5,), {}, "provider must be a non-empty str"),
        (("Gemini", ""), {}, "text must be a non-empty str"),
        (("Gemini",), {"params": ["text"]}, "params must be a mapping"),
        (("Gemini",), {"params": {"voice": ["a"]}}, "params['voice'] must be a str or a number"),
        (("Gemini", "Hi"), {"params": {"text": "Hi"}}, "text is given twice"),
        (("Gemini", "Hi"), {"path": 3}, "path must be a file path"),
    ],
)
def test_bad_synthesize_arguments_are_refused_before_any_request(
    client_kind: str, server: BackendApiTestServer, args: Any, kwargs: Any, words: str
) -> None:
    with pytest.raises(InvalidInputError, match=words.replace("[", r"\[").replace("]", r"\]")):
        call(client_kind, server.url, "synthesize", *args, **kwargs)
    assert server.requests == []


def test_a_synthesize_path_that_is_a_directory_or_in_no_directory_is_refused(
    client_kind: str, server: BackendApiTestServer, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError, match="is a directory"):
        call(client_kind, server.url, "synthesize", "Gemini", "Hi", path=tmp_path)
    with pytest.raises(InvalidInputError, match="directory does not exist"):
        call(client_kind, server.url, "synthesize", "Gemini", "Hi", path=tmp_path / "no" / "a.wav")
    assert server.requests == []


# quota, health and models/<provider>: the key in x-api-key


@pytest.mark.parametrize("route", ["quota", "health"])
def test_quota_and_health_send_the_calls_key_else_the_clients(
    client_kind: str, server: BackendApiTestServer, route: str
) -> None:
    answers = getattr(server.info, route)
    answers["ScriptedProvider"] = {"remaining": 42}
    server.info.keys["ScriptedProvider"] = KEY
    assert call(client_kind, server.url, route, "ScriptedProvider", api_key=KEY) == {
        "remaining": 42
    }
    request = last(server)
    assert (request.path, request.headers["x-api-key"]) == (
        f"/backend-api/v2/{route}/ScriptedProvider",
        KEY,
    )
    assert call(client_kind, server.url, route, "ScriptedProvider", client_api_key=KEY) == {
        "remaining": 42
    }
    assert last(server).headers["x-api-key"] == KEY
    assert KEY not in request.body.decode() and request.query == {}

    with pytest.raises(APIStatusError) as caught:
        call(client_kind, server.url, route, "ScriptedProvider")
    assert (caught.value.status_code, caught.value.message) == (401, "Authentication required")
    assert "x-api-key" not in last(server).headers


@pytest.mark.parametrize(
    ("route", "provider", "status", "message"),
    [
        ("quota", "NoSuchProvider", 404, "Provider not found"),
        ("health", "NoSuchProvider", 404, "Provider not found"),
        ("quota", "OpenaiChat", 501, "Quota check not supported"),
        ("health", "OpenaiChat", 501, "Health check not supported"),
    ],
)
def test_quota_and_health_errors_are_the_servers(
    client_kind: str, server: BackendApiTestServer, route: str, provider: str, status: int,
    message: str,
) -> None:  # fmt: skip
    with pytest.raises(APIStatusError) as caught:
        call(client_kind, server.url, route, provider)
    assert (caught.value.status_code, caught.value.message) == (status, message)


def test_health_of_an_unreachable_provider_is_an_answer_not_an_error(
    client_kind: str, server: BackendApiTestServer
) -> None:
    health = call(client_kind, server.url, "health", "OpenRouter", api_key="sk-recorded-key")
    assert (health["ok"], health["status"]) == (False, 0)


def test_models_of_a_provider_send_the_key_in_x_api_key_and_all_models_do_not(
    client_kind: str, server: BackendApiTestServer
) -> None:
    call(client_kind, server.url, "models", "ScriptedProvider", api_key=KEY)
    assert last(server).headers["x-api-key"] == KEY
    call(client_kind, server.url, "models", "ScriptedProvider", client_api_key=KEY)
    assert last(server).headers["x-api-key"] == KEY
    call(client_kind, server.url, "models", client_api_key=KEY)
    assert "x-api-key" not in last(server).headers
    call(client_kind, server.url, "models", "ScriptedProvider")
    assert "x-api-key" not in last(server).headers


def echoed_key_answer(status: str) -> bytes:
    """An error answer that quotes the key, plainly and JSON-escaped."""
    escaped = "\\u0073" + KEY[1:]  # the key's "s" as a JSON escape
    body = f'{{"error": {{"message": "bad key {KEY} ({escaped})"}}}}'.encode()
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
    return f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body


@pytest.mark.parametrize(
    ("method", "args"), [("quota", ("P",)), ("health", ("P",)), ("models", ("P",))]
)
def test_the_x_api_key_is_scrubbed_from_errors_and_logs(
    client_kind: str,
    raw_server: RawServer,
    caplog: pytest.LogCaptureFixture,
    method: str,
    args: Tuple[str, ...],
) -> None:
    caplog.set_level(logging.DEBUG)
    raw_server.answer = echoed_key_answer("401 Unauthorized")
    with pytest.raises(APIStatusError) as caught:
        call(client_kind, raw_server.url, method, *args, api_key=KEY)
    error = caught.value
    for text in (str(error), error.message, repr(error), json.dumps(error.body)):
        assert KEY not in text and KEY[1:] not in text
    assert "***" in error.message
    assert all(KEY not in record.getMessage() for record in caplog.records)


def test_a_key_that_cannot_be_a_header_is_refused_before_any_request(
    client_kind: str, server: BackendApiTestServer
) -> None:
    with pytest.raises(InvalidInputError, match="x-api-key") as caught:
        call(client_kind, server.url, "quota", "ScriptedProvider", api_key="sk-ключ")
    assert "ключ" not in str(caught.value)
    with pytest.raises(InvalidInputError, match="api_key must be a str"):
        call(client_kind, server.url, "health", "ScriptedProvider", api_key=5)
    assert server.requests == []


# status, usage, stats, log


def test_status(client_kind: str, server: BackendApiTestServer) -> None:
    status = call(client_kind, server.url, "status")
    assert (status["status"], status["version"], status["total_providers"]) == ("ok", "8.8.6", 1)
    assert last(server).path == "/backend-api/v2/status"


def test_recorded_usage_comes_back_by_day_and_in_the_stats(
    client_kind: str, server: BackendApiTestServer
) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert call(client_kind, server.url, "record_usage", "m-1", "P", usage, user="me") is None
    request = last(server)
    assert (request.method, request.path, request.headers["x-user"]) == (
        "POST",
        "/backend-api/v2/usage",
        "me",
    )
    assert request.json == {**usage, "model": "m-1", "provider": "P"}
    call(client_kind, server.url, "record_usage", "m-2", "P", {"prompt_tokens": 10})

    today = datetime.date.today()
    expected = [
        {"user": "me", **usage, "model": "m-1", "provider": "P"},
        {"user": "unknown", "prompt_tokens": 10, "model": "m-2", "provider": "P"},
    ]
    assert call(client_kind, server.url, "usage", today) == expected
    assert call(client_kind, server.url, "usage", today.isoformat()) == expected

    stats = call(client_kind, server.url, "stats")
    assert stats["totals"] == {
        "requests": 2, "prompt_tokens": 13, "completion_tokens": 4, "saved_tokens": 0,
        "total_tokens": 17,
    }  # fmt: skip
    # g4f orders them by tokens, then Flask's jsonify sorts every object's keys.
    assert list(stats["models"]) == ["m-1", "m-2"]
    mine = call(client_kind, server.url, "stats", days=1, user="me")
    assert mine["totals"]["requests"] == 1
    assert last(server).query == {"days": "1", "user": "me"}


def test_usage_of_a_day_without_records_is_the_servers_404(
    client_kind: str, server: BackendApiTestServer
) -> None:
    with pytest.raises(APIStatusError) as caught:
        call(client_kind, server.url, "usage", "2024-01-01")
    assert caught.value.message == "No usage data found for this date"


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "words"),
    [
        ("usage", ("2024-13-01",), {}, "a real date written YYYY-MM-DD"),
        ("usage", ("yesterday",), {}, "a real date written YYYY-MM-DD"),
        ("usage", (datetime.datetime(2024, 1, 1),), {}, "not a datetime"),
        ("usage", (20240101,), {}, "not int"),
        ("stats", (), {"days": 0}, "days must be an int from 1 to 365"),
        ("stats", (), {"days": 366}, "days must be an int from 1 to 365"),
        ("record_usage", ("", "P"), {}, "model must be a non-empty str"),
        ("record_usage", ("m", "P", [1]), {}, "usage must be a mapping"),
        ("record_usage", ("m", "P"), {"user": "a\nb"}, "user must be a non-empty ASCII str"),
        ("logs", (), {"limit": 0}, "limit must be a positive int"),
        ("log", ({},), {}, "record must be a non-empty mapping"),
    ],
)
def test_bad_bookkeeping_arguments_are_refused_before_any_request(
    client_kind: str, server: BackendApiTestServer, method: str, args: Any, kwargs: Any,
    words: str,
) -> None:  # fmt: skip
    with pytest.raises(InvalidInputError, match=words):
        call(client_kind, server.url, method, *args, **kwargs)
    assert server.requests == []


def test_log_records_come_back_newest_first(client_kind: str, server: BackendApiTestServer) -> None:
    assert call(client_kind, server.url, "log", {"type": "error", "message": "one"}) is None
    call(client_kind, server.url, "log", {"type": "error", "message": "two"})
    assert last(server).json == {"type": "error", "message": "two"}
    logs = call(client_kind, server.url, "logs")
    assert [record["message"] for record in logs] == ["two", "one"]
    assert call(client_kind, server.url, "logs", limit=1) == [logs[0]]
    assert last(server).query == {"limit": "1"}


# Every call reads at most its limit

# (method, arguments, what a 200 answer of a JSON string gives back)
CALLS: Dict[str, Tuple[str, Tuple[Any, ...], Any]] = {
    "quota": ("quota", ("P",), "json"),
    "health": ("health", ("P",), "json"),
    "status": ("status", (), "json"),
    "stats": ("stats", (), "json"),
    "usage": ("usage", ("2024-01-01",), []),
    "record_usage": ("record_usage", ("m", "P", {}), None),
    "logs": ("logs", (), []),
    "log": ("log", ({"message": "x"},), None),
    "synthesize": ("synthesize", ("P", "Hi"), "speech"),
}


def answer_of(size: int) -> bytes:
    body = b'"' + b"x" * (size - 2) + b'"'
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


@pytest.mark.parametrize("name", sorted(CALLS))
def test_each_call_reads_up_to_its_limit_and_no_further(
    client_kind: str, raw_server: RawServer, name: str
) -> None:
    method, args, gives = CALLS[name]
    raw_server.answer = answer_of(1000)
    result = call(client_kind, raw_server.url, method, *args, max_response_size=1000)
    if gives == "json":
        assert result == "x" * 998
    elif gives == "speech":
        assert result.data == b'"' + b"x" * 998 + b'"'
    else:
        assert result == gives
    raw_server.answer = answer_of(1001)
    with pytest.raises(ResponseTooLargeError, match=r"max_response_size \(1000 bytes"):
        call(client_kind, raw_server.url, method, *args, max_response_size=1000)
    with pytest.raises(ResponseTooLargeError, match=r"max_response_size \(1000 bytes"):
        call(client_kind, raw_server.url, method, *args, client_max_response_size=1000)


def test_the_routes_default_limits_are_the_documented_ones() -> None:
    assert {name: DEFAULT_MAX_RESPONSE_SIZES[name] for name in CALLS} == {
        "quota": 1 * MiB,
        "health": 1 * MiB,
        "status": 64 * 1024,
        "stats": 16 * MiB,
        "usage": 64 * MiB,
        "record_usage": 64 * 1024,
        "logs": 16 * MiB,
        "log": 64 * 1024,
        "synthesize": 64 * MiB,
    }


def test_a_default_limit_applies_without_any_given(raw_server: RawServer) -> None:
    raw_server.answer = answer_of(64 * 1024 + 1)
    client = BackendApiClient(raw_server.url, max_retries=0)
    with client, pytest.raises(ResponseTooLargeError) as caught:
        client.status()
    assert caught.value.limit == 64 * 1024
