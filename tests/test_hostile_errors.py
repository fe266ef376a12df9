"""What an error may carry when the server is hostile: its text, the api key, its size.

A server answers with a body too large to hold (or a gzip bomb), echoes the api key in
every escaped form JSON and Python know, sends a 60 KB message or a 10 MB ``error`` event
full of line breaks; both clients must bound what they read, keep the key out of every
error, give one short line as ``str(error)`` and the server's words whole as
``error.message``, and raise errors that cross a process boundary intact.
``docs/reliability.md`` ("Hostile responses") lists what each case gives the caller.
"""

from __future__ import annotations

import json
import multiprocessing
import pickle
import tracemalloc
import zlib
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from clients import call, run_stream
from loopback import RawServer
from scripted import CONVERSATION_PATH, FIRST

from backendapi import (
    DEFAULT_MAX_RESPONSE_SIZES,
    AnswerParseError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BackendApiError,
    DecodeError,
    EventTooLargeError,
    IncompleteStreamError,
    InvalidInputError,
    RawResponse,
    ResponseTooLargeError,
    StreamError,
    ToolCallError,
    ToolRoundsExceededError,
)
from backendapi.testing import BackendApiTestServer, Reply

pytestmark = pytest.mark.usefixtures("clean_network_env")

STR_LIMIT = 500
"""The longest ``str(error)`` may be."""

MiB = 1024 * 1024


def http_answer(status: str, body: bytes, *headers: str) -> bytes:
    """A whole HTTP/1.1 answer with ``body`` (Content-Length), closed after it."""
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join([*head, *headers]) + "\r\n\r\n").encode() + body


def json_string(size: int) -> bytes:
    """A JSON document (a string) of exactly ``size`` bytes; also plain text."""
    return b'"' + b"x" * (size - 2) + b'"'


def gzipped(data: bytes, times: int = 1) -> bytes:
    """``data`` repeated ``times`` times, gzip-compressed, without ever holding it whole."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    parts = [compressor.compress(data) for _ in range(times)]
    return b"".join(parts) + compressor.flush()


# --- Point 7: every read of a plain call is bounded ---------------------------------------

# Each non-streaming call: (method, arguments); its default limit is the method's.
CALLS: Dict[str, Tuple[str, Tuple[Any, ...]]] = {
    "version": ("version", ()),
    "models": ("models", ()),
    "models-of-a-provider": ("models", ("OpenaiChat",)),
    "providers": ("providers", ()),
    "create_text": ("create_text", ("Hi",)),
    "upload": ("upload", ("bucket-1", [(b"some text", "notes.txt")])),
}


def call_with(kind: str, raw_server: RawServer, name: str, **options: Any) -> Any:
    method, args = CALLS[name]
    return call(kind, raw_server.url, method, *args, **options)


def returned(name: str, body: bytes) -> Any:
    """What call ``name`` returns for a 200 answer of ``body``: its JSON, or its text."""
    return body.decode() if name == "create_text" else json.loads(body)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_plain_call_reads_up_to_the_client_limit_and_no_further(
    client_kind: str, raw_server: RawServer, name: str
) -> None:
    raw_server.answer = http_answer("200 OK", json_string(1000))
    result = call_with(client_kind, raw_server, name, client_max_response_size=1000)
    assert result == returned(name, json_string(1000))

    raw_server.answer = http_answer("200 OK", json_string(1001))
    with pytest.raises(ResponseTooLargeError) as caught:
        call_with(client_kind, raw_server, name, client_max_response_size=1000)
    error = caught.value
    assert error.limit == 1000
    assert error.url is not None and error.url.startswith(raw_server.url + "/backend-api/v2/")
    assert str(error) == (
        f"the response from {error.url} is larger than max_response_size (1000 bytes, "
        "counted decompressed); pass a larger max_response_size to accept it"
    )
    assert isinstance(error, BackendApiError)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_calls_own_limit_wins_over_the_clients(
    client_kind: str, raw_server: RawServer, name: str
) -> None:
    raw_server.answer = http_answer("200 OK", json_string(1001))
    method, args = CALLS[name]

    result = call(
        client_kind, raw_server.url, method, *args, max_response_size=1001,
        client_max_response_size=10,
    )  # fmt: skip
    assert result == returned(name, json_string(1001))
    with pytest.raises(ResponseTooLargeError, match=r"max_response_size \(100 bytes"):
        call(
            client_kind, raw_server.url, method, *args, max_response_size=100,
            client_max_response_size=10 * MiB,
        )  # fmt: skip


@pytest.mark.parametrize("name", sorted(CALLS))
def test_each_call_has_a_default_limit_counted_on_decompressed_bytes(
    client_kind: str, raw_server: RawServer, name: str
) -> None:
    # Gzip keeps the bodies small on the wire; the limit counts what they expand to.
    limit = DEFAULT_MAX_RESPONSE_SIZES[CALLS[name][0]]
    for size, fits in ((limit, True), (limit + 1, False)):
        body = gzipped(json_string(size))
        raw_server.answer = http_answer("200 OK", body, "Content-Encoding: gzip")
        if fits:
            assert call_with(client_kind, raw_server, name) == returned(name, json_string(size))
        else:
            with pytest.raises(ResponseTooLargeError) as caught:
                call_with(client_kind, raw_server, name)
            assert caught.value.limit == limit


def test_the_default_limits_are_the_documented_ones() -> None:
    assert dict(DEFAULT_MAX_RESPONSE_SIZES) == {
        "version": 64 * 1024,
        "models": 16 * MiB,
        "providers": 16 * MiB,
        "create_text": 16 * MiB,
        "upload": 1 * MiB,
        "read_bucket": 64 * MiB,
        "delete_bucket": 64 * 1024,
        "download": 256 * MiB,
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


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "10"])
def test_a_limit_that_is_no_positive_int_is_refused_before_any_request(
    client_kind: str, raw_server: RawServer, size: Any
) -> None:
    with pytest.raises(InvalidInputError, match="max_response_size"):
        call_with(client_kind, raw_server, "version", client_max_response_size=size)
    with pytest.raises(InvalidInputError, match="max_response_size"):
        call_with(client_kind, raw_server, "version", max_response_size=size)
    assert raw_server.connections == 0


BOMB_SIZE = 256 * MiB
"""What the gzip bomb expands to: it is 256 KB on the wire."""


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    return gzipped(b"\0" * MiB, BOMB_SIZE // MiB)


@pytest.fixture
def allocations() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def test_a_gzip_bomb_is_decompressed_no_further_than_the_limit(
    client_kind: str, raw_server: RawServer, gzip_bomb: bytes, allocations: None
) -> None:
    assert len(gzip_bomb) < MiB
    raw_server.answer = http_answer(
        "200 OK", gzip_bomb, "Content-Encoding: gzip", "Content-Type: application/json"
    )
    tracemalloc.reset_peak()

    with pytest.raises(ResponseTooLargeError) as caught:
        call(client_kind, raw_server.url, "models", client_max_response_size=MiB)

    _, peak = tracemalloc.get_traced_memory()
    assert caught.value.limit == MiB
    # The limit, a read or two beyond it, the libraries' buffers: far from 256 MiB.
    assert peak < 24 * MiB, f"{peak / MiB:.0f} MiB allocated at the peak"


def test_an_error_answer_is_read_no_further_than_its_first_64_kib(
    client_kind: str, raw_server: RawServer, gzip_bomb: bytes, allocations: None
) -> None:
    raw_server.answer = http_answer(
        "500 Internal Server Error", gzip_bomb, "Content-Encoding: gzip", "Content-Type: text/plain"
    )
    tracemalloc.reset_peak()

    with pytest.raises(APIStatusError) as caught:
        call(client_kind, raw_server.url, "models")

    _, peak = tracemalloc.get_traced_memory()
    assert peak < 24 * MiB, f"{peak / MiB:.0f} MiB allocated at the peak"
    assert caught.value.status_code == 500
    assert caught.value.message == "\0" * 64 * 1024


# --- Point 9: hiding the key never breaks parsing -----------------------------------------

JSON_LITERAL_KEYS = ["true", "null", "false", "12345"]
LITERALS = {"code": 12345, "ok": True, "no": False, "none": None}


@pytest.mark.parametrize("key", JSON_LITERAL_KEYS)
def test_a_key_spelt_like_a_json_literal_leaves_a_status_error_parsed(
    client_kind: str, backendapi_server: BackendApiTestServer, key: str
) -> None:
    backendapi_server.reply(
        Reply(status=404, error={"error": {"message": "Provider not found"}, **LITERALS})
    )

    result = run_stream(client_kind, backendapi_server.url, client_options={"api_key": key})

    error = result.error
    assert type(error) is APIStatusError, repr(error)
    assert error.message == "Provider not found"
    assert str(error) == (
        f"HTTP 404 Not Found from {backendapi_server.url}{CONVERSATION_PATH}: Provider not found"
    )
    # true, false and null are no key; a number spelling the key is hidden.
    code = "***" if key == "12345" else 12345
    assert error.body == {"error": {"message": "Provider not found"}, **LITERALS, "code": code}


@pytest.mark.parametrize("key", JSON_LITERAL_KEYS)
def test_a_key_spelt_like_a_json_literal_leaves_an_error_event_parsed(
    client_kind: str, backendapi_server: BackendApiTestServer, key: str
) -> None:
    failure = {"type": "error", "error": "RuntimeError", "message": "failed", **LITERALS}
    backendapi_server.reply(Reply([FIRST, failure]))

    result = run_stream(client_kind, backendapi_server.url, client_options={"api_key": key})

    error = result.error
    assert type(error) is StreamError, repr(error)
    assert result.events == [FIRST]
    assert error.message == "failed"
    assert error.error_type == "RuntimeError"
    code = "***" if key == "12345" else 12345
    assert error.event.get_dict() == {**failure, "code": code}


@pytest.mark.parametrize("key", JSON_LITERAL_KEYS)
def test_a_key_spelt_like_a_json_literal_leaves_a_plain_calls_error_parsed(
    client_kind: str, raw_server: RawServer, key: str
) -> None:
    body = json.dumps({"error": {"message": "Provider not found"}, **LITERALS})
    raw_server.answer = http_answer("404 Not Found", body.encode())

    with pytest.raises(APIStatusError) as caught:
        call(client_kind, raw_server.url, "models", "Nope", client_api_key=key)

    assert caught.value.message == "Provider not found"
    assert caught.value.body["ok"] is True


# --- Point 10: the key is gone from every error, however it is escaped -------------------

HOSTILE_KEYS = {
    "non-ascii": "sk-ключ-秘密-🔑-é",
    "quote": "sk-\"quoted\"-'key'",
    "backslash": "sk-back\\slash\\n-key",
    "all": "sk-é\"\\'\t-key",
}


def spellings(key: str) -> List[str]:
    """Every way ``key`` may be written in JSON or by Python's ``repr``/``ascii``."""
    forms = {
        key,
        json.dumps(key)[1:-1],
        json.dumps(key, ensure_ascii=False)[1:-1],
        repr(key)[1:-1],
        ascii(key)[1:-1],
        repr(key + "'\"")[1:-4],  # inside a repr that had to escape its quote
    }
    forms |= {json.dumps(form)[1:-1] for form in list(forms)}  # the JSON of a repr...
    return sorted(forms)


def texts_of(error: BaseException) -> List[str]:
    """Every text a caller or a log may make of ``error``."""
    texts = [str(error), repr(error), getattr(error, "message", "")]
    for name in ("body", "event"):
        value = getattr(error, name, None)
        if isinstance(value, RawResponse):
            texts.append(repr(value))
            value = value.get_dict()
        if value is not None:
            texts += [json.dumps(value), json.dumps(value, ensure_ascii=False), repr(value)]
    return texts


def assert_no_key(error: Optional[BaseException], key: str) -> None:
    assert isinstance(error, BackendApiError), repr(error)
    leaks = [(form, text[:200]) for text in texts_of(error) for form in spellings(key)]
    assert [(form, text) for form, text in leaks if form in text] == []


@pytest.mark.parametrize("key", sorted(HOSTILE_KEYS), ids=sorted(HOSTILE_KEYS))
def test_a_key_echoed_in_any_escaped_form_is_hidden_from_stream_errors(
    client_kind: str, backendapi_server: BackendApiTestServer, key: str
) -> None:
    key = HOSTILE_KEYS[key]
    echo = f"bad key {key}, twice: {key}"
    backendapi_server.reply(
        # JSON bodies and events go out as json.dumps writes them: ASCII, escaped.
        Reply(status=403, error={"error": {"message": echo}, key: [key, {"api_key": key}]}),
        Reply(status=403, error=f"<p>{echo}</p>\n{json.dumps(key)}\n{key!r}"),
        Reply([FIRST, {"type": "error", "error": "AuthError", "message": echo, "key": key}]),
        Reply([FIRST, {"type": "auth", "auth": key, "parameters": {"api_key": key}}]),
        Reply([FIRST, {"type": "error", "error": {"detail": key}}]),
        Reply([f"data: not json {key} {key!r} {json.dumps(key)}\n\n".encode()]),
        Reply(status=200, content_type="text/html", events=[f"<p>{key!r}</p>".encode()]),
    )
    kinds = [APIStatusError, APIStatusError, StreamError, AuthenticationError, StreamError]
    kinds += [DecodeError, DecodeError]

    errors = [
        run_stream(client_kind, backendapi_server.url, client_options={"api_key": key}).error
        for _ in kinds
    ]

    assert [type(error) for error in errors] == kinds, errors
    for error in errors:
        assert_no_key(error, key)
    assert errors[0].message == "bad key ***, twice: ***"
    hidden = "bad key ***, twice: ***"
    assert errors[0].body == {"error": {"message": hidden}, "***": ["***", {"api_key": "***"}]}
    assert errors[2].message == "bad key ***, twice: ***"
    assert errors[2].event.get_dict() == {
        "type": "error", "error": "AuthError", "message": "bad key ***, twice: ***", "key": "***"
    }  # fmt: skip


@pytest.mark.parametrize("key", sorted(HOSTILE_KEYS), ids=sorted(HOSTILE_KEYS))
def test_a_key_echoed_in_any_escaped_form_is_hidden_from_plain_call_errors(
    client_kind: str, raw_server: RawServer, key: str
) -> None:
    key = HOSTILE_KEYS[key]
    answers = [
        ("404 Not Found", json.dumps({"error": {"message": f"no {key}"}, "k": key}).encode()),
        ("404 Not Found", f"no such thing as {key!r} or {json.dumps(key)}".encode()),
        ("200 OK", f"not json: {key!r} {json.dumps(key)} {key}".encode()),
    ]
    for status, body in answers:
        raw_server.answer = http_answer(status, body)
        with pytest.raises(BackendApiError) as caught:
            call(client_kind, raw_server.url, "models", client_api_key=key)
        assert_no_key(caught.value, key)


# --- Point 11: every error survives pickle, and a process boundary -----------------------


def every_error() -> List[BackendApiError]:
    """One of each of the SDK's exceptions, every field set."""
    event = RawResponse(type="error", error="RuntimeError", message="it broke")
    auth = RawResponse(type="auth", auth="MissingAuthError", message="log in")
    url = "http://127.0.0.1:1/backend-api/v2/conversation"
    return [
        BackendApiError("something"),
        InvalidInputError("model must be a str"),
        APIConnectionError("cannot connect", url=url),
        APITimeoutError("timed out", url=url),
        IncompleteStreamError("cut short", url=url),
        APIStatusError(
            "Provider not found", status_code=404, body={"error": "x"}, url=url, reason="Not Found"
        ),
        StreamError("it broke", event=event, url=url),
        AuthenticationError("log in", event=auth, url=url),
        DecodeError("not JSON"),
        EventTooLargeError("too large"),
        ResponseTooLargeError("too large", limit=1000, url=url),
        ToolCallError("the arguments of the call to f (c1) are not JSON"),
        ToolRoundsExceededError("the model still asks for tools", rounds=8),
        AnswerParseError("no JSON at line 1", lineno=1, colno=2, pos=1, model="Recipe"),
    ]


FIELDS = (
    "args",
    "message",
    "status_code",
    "url",
    "body",
    "event",
    "limit",
    "reason",
    "lineno",
    "colno",
    "pos",
    "model",
    "rounds",
)


def same_error(one: BaseException, other: BaseException) -> bool:
    return (
        type(one) is type(other)
        and str(one) == str(other)
        and repr(one) == repr(other)
        and all(getattr(one, name, None) == getattr(other, name, None) for name in FIELDS)
    )


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_error_survives_pickle(protocol: int) -> None:
    errors = every_error()
    assert {type(error) for error in errors} == {
        value
        for value in vars(__import__("backendapi")).values()
        if isinstance(value, type) and issubclass(value, BackendApiError)
    }
    for error in errors:
        restored = pickle.loads(pickle.dumps(error, protocol=protocol))
        assert same_error(restored, error), (restored, error)


def test_errors_raised_by_either_client_survive_pickle(
    client_kind: str, backendapi_server: BackendApiTestServer, raw_server: RawServer
) -> None:
    backendapi_server.reply(
        Reply(status=404, error={"error": {"message": "Provider not found"}}),
        Reply([FIRST, {"type": "error", "error": "RuntimeError", "message": "it broke"}]),
        Reply([FIRST, {"type": "auth", "auth": "MissingAuthError", "message": "log in"}]),
        Reply([b"data: {not json\n\n"]),
    )
    errors = [run_stream(client_kind, backendapi_server.url).error for _ in range(4)]
    raw_server.answer = http_answer("200 OK", json_string(100))
    with pytest.raises(ResponseTooLargeError) as caught:
        call(client_kind, raw_server.url, "version", max_response_size=10)
    errors.append(caught.value)

    assert [type(error) for error in errors] == [
        APIStatusError, StreamError, AuthenticationError, DecodeError, ResponseTooLargeError
    ]  # fmt: skip
    for error in errors:
        assert error is not None
        assert same_error(pickle.loads(pickle.dumps(error)), error)


def _raise(error: BaseException) -> None:
    raise error


def _call_in_worker(kind: str, url: str, method: str) -> Any:
    return call(kind, url, method)


@pytest.fixture(scope="module")
def worker_pool() -> Iterator[ProcessPoolExecutor]:
    # spawn: the test servers run threads, which a fork would copy half-way.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def test_an_error_raised_in_a_worker_process_comes_back_as_itself(
    worker_pool: ProcessPoolExecutor,
) -> None:
    for error in every_error():
        with pytest.raises(BackendApiError) as caught:
            worker_pool.submit(_raise, error).result(timeout=60)
        assert same_error(caught.value, error), (caught.value, error)


def test_an_error_either_client_raised_in_a_worker_process_comes_back_as_itself(
    client_kind: str, raw_server: RawServer, worker_pool: ProcessPoolExecutor
) -> None:
    body = json.dumps({"error": {"message": "Provider not found"}}).encode()
    raw_server.answer = http_answer("404 Not Found", body)

    with pytest.raises(APIStatusError) as caught:
        worker_pool.submit(_call_in_worker, client_kind, raw_server.url, "providers").result(60)

    error = caught.value
    assert (error.status_code, error.message, error.body) == (
        404, "Provider not found", {"error": {"message": "Provider not found"}}
    )  # fmt: skip
    assert error.url == raw_server.url + "/backend-api/v2/providers"
    assert str(error) == f"HTTP 404 Not Found from {error.url}: Provider not found"


# --- Point 13: one line for str(), the server's words whole in .message ------------------

FORGED = "failed\nERROR root: forged log line\r\nWARNING root: another\x1b[2J\x00"


def check_line(error: BaseException, prefix: str) -> str:
    """``str(error)``: one line, at most STR_LIMIT characters, starting with ``prefix``."""
    text = str(error)
    assert len(text) <= STR_LIMIT, len(text)
    assert text.isprintable(), text[:200]  # no line break, no control character
    assert text.startswith(prefix), text[:200]
    assert len(repr(error)) <= 4 * STR_LIMIT
    return text


def test_a_long_json_message_is_whole_in_message_and_cut_in_str(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    words = FORGED + " " + "word " * 12_000  # 60 KB
    backendapi_server.reply(Reply(status=404, error={"error": {"message": words}}))

    error = run_stream(client_kind, backendapi_server.url).error

    assert isinstance(error, APIStatusError)
    url = backendapi_server.url + CONVERSATION_PATH
    text = check_line(error, f"HTTP 404 Not Found from {url}: failed ERROR root: forged log line")
    assert text.endswith("...")
    assert error.message == words
    assert error.body == {"error": {"message": words}}


def test_a_long_text_body_is_whole_in_message_and_cut_in_str(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    words = FORGED + "\r\n" + "<p>overloaded</p>\r\n" * 3000  # 57 KB
    backendapi_server.reply(Reply(status=400, error=words))

    error = run_stream(client_kind, backendapi_server.url).error

    assert isinstance(error, APIStatusError)
    url = backendapi_server.url + CONVERSATION_PATH
    check_line(error, f"HTTP 400 Bad Request from {url}: failed ERROR root: forged log line")
    assert error.message == words
    assert error.body == words


def test_a_10_mb_error_event_is_whole_in_message_and_cut_in_str(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    words = FORGED + " " + "x" * 10 * MiB
    failure = {"type": "error", "error": "RuntimeError", "message": words}
    backendapi_server.reply(Reply([FIRST, failure]))

    result = run_stream(client_kind, backendapi_server.url)

    error = result.error
    assert type(error) is StreamError
    url = backendapi_server.url + CONVERSATION_PATH
    text = check_line(
        error, f"error event (RuntimeError) from {url}: failed ERROR root: forged log line"
    )
    assert text.endswith("xxx...")
    assert error.message == words
    assert error.event.get_dict() == failure
    assert result.events == [FIRST]


def test_an_error_event_without_a_message_says_what_it_has(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    failure = {"type": "error", "error": {"code": 7, "detail": "line\nbreak " * 100}}
    backendapi_server.reply(Reply([failure]))

    error = run_stream(client_kind, backendapi_server.url).error

    assert type(error) is StreamError
    check_line(error, f"error event from {backendapi_server.url}{CONVERSATION_PATH}: ")
    assert json.loads(error.message) == failure["error"]
    assert error.error_type is None


def test_a_plain_calls_long_error_is_whole_in_message_and_cut_in_str(
    client_kind: str, raw_server: RawServer
) -> None:
    words = FORGED + " " + "word " * 12_000
    raw_server.answer = http_answer("404 Not Found", json.dumps({"detail": words}).encode())

    with pytest.raises(APIStatusError) as caught:
        call(client_kind, raw_server.url, "models", "Nope")

    url = raw_server.url + "/backend-api/v2/models/Nope"
    check_line(caught.value, f"HTTP 404 Not Found from {url}: failed ERROR root: forged log line")
    assert caught.value.message == words


def test_an_empty_error_body_says_so_in_str(client_kind: str, raw_server: RawServer) -> None:
    raw_server.answer = http_answer("404 Not Found", b"")

    with pytest.raises(APIStatusError) as caught:
        call(client_kind, raw_server.url, "version")

    url = raw_server.url + "/backend-api/v2/version"
    assert str(caught.value) == f"HTTP 404 Not Found from {url}: (empty body)"
    assert (caught.value.message, caught.value.body) == ("", "")


@pytest.mark.parametrize("error", every_error(), ids=lambda error: type(error).__name__)
def test_every_error_is_one_bounded_line_whatever_its_message(error: BackendApiError) -> None:
    hostile = FORGED + " " + "y" * 100_000
    error.message = hostile
    error.args = (hostile,)
    if hasattr(error, "url"):
        error.url = "http://127.0.0.1:1/" + "u" * 10_000 + "\n"

    text = str(error)

    assert len(text) <= STR_LIMIT and text.isprintable()
    assert "failed ERROR root: forged log line" in text  # the url was cut, not the words
    assert error.message == hostile
