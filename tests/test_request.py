"""Building the conversation request, encoding media, and checking arguments.

Bad arguments must raise :class:`InvalidInputError` from the call itself,
before anything is sent. The HTTP answers at the end are emulated in memory
(``responses`` for the blocking client, ``aioresponses`` for the async one);
no test opens a socket.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import gc
import inspect
import io
import json
import pathlib
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import aiohttp
import pytest
import responses
from aioresponses import aioresponses
from clients import MESSAGES, client_class
from scripted import CONVERSATION_PATH
from yarl import URL

from backendapi import (
    APIStatusError,
    AsyncBackendApiClient,
    BackendApiClient,
    BackendApiError,
    DecodeError,
    InvalidInputError,
    RawResponse,
    StreamError,
    Timeout,
)
from backendapi._core.media import encode_media, guess_mime_type
from backendapi._core.request import (
    PreparedRequest,
    normalize_base_url,
    plan_conversation_request,
    validate_messages,
)


def build_conversation_request(*args: Any, **kwargs: Any) -> PreparedRequest:
    """The request ``plan_conversation_request`` makes, its media files read."""
    request, loader = plan_conversation_request(*args, **kwargs)
    return request if loader is None else loader()


BASE = "http://127.0.0.1:9"
ENDPOINT = BASE + CONVERSATION_PATH
KEY = "sk-test-5f3a9c1e7b2d"
DATA = pathlib.Path(__file__).parent / "data"

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01"
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00"
WAV = b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00"
MP3_ID3 = b"ID3\x04\x00\x00\x00\x00\x00#TSSE\x00\x00\x00\x0f"
MP3_FRAME = b"\xff\xfb\x90\x64\x00\x00\x00\x00\x00\x00\x00\x00"
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"
SIGNATURES = [
    ("png", PNG, "image/png"),
    ("jpeg", JPEG, "image/jpeg"),
    ("gif", GIF, "image/gif"),
    ("webp", WEBP, "image/webp"),
    ("wav", WAV, "audio/wav"),
    ("mp3-id3", MP3_ID3, "audio/mpeg"),
    ("mp3-frame", MP3_FRAME, "audio/mpeg"),
    ("pdf", PDF, "application/pdf"),
]


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def make_client(kind: str, base_url: object = BASE, **options: Any) -> Any:
    return client_class(kind)(base_url, **options)


# -- arguments of create(), checked before any request ---------------------------------------


@pytest.fixture
def offline_client(client_kind: str) -> Iterator[Any]:
    """A client whose every request would be caught: none may be sent."""
    if client_kind == "sync":
        with responses.RequestsMock() as mock:
            client = BackendApiClient(BASE, api_key=KEY, max_retries=0)
            yield client
            client.close()
            assert len(mock.calls) == 0
    else:
        with aioresponses() as mock:
            client = AsyncBackendApiClient(BASE, api_key=KEY, max_retries=0)
            yield client
            asyncio.run(client.aclose())
            assert mock.requests == {}


# Each case: the arguments of create() that differ from a good call, and
# what the error message must name.
BAD_CALLS: Dict[str, Tuple[Dict[str, Any], List[str]]] = {
    "messages-str": ({"messages": "Hello"}, ["messages", "list", "str"]),
    "messages-dict": ({"messages": {"role": "user", "content": "Hi"}}, ["messages", "dict"]),
    "messages-none": ({"messages": None}, ["messages", "NoneType"]),
    "messages-empty": ({"messages": []}, ["messages", "empty"]),
    "message-not-dict": ({"messages": ["Hello"]}, ["messages[0]", "dict", "str"]),
    "message-no-role": ({"messages": [{"content": "Hi"}]}, ["messages[0]", "'role'"]),
    "message-no-content": ({"messages": [{"role": "user"}]}, ["messages[0]", "'content'"]),
    "message-role-none": ({"messages": [{"role": None, "content": "x"}]}, ["'role'"]),
    "content-int": ({"messages": [{"role": "user", "content": 5}]}, ["'content'", "int"]),
    "second-content-dict": (
        {"messages": [*MESSAGES, {"role": "assistant", "content": {"text": "y"}}]},
        ["messages[1]", "'content'", "dict"],
    ),
    "model-none": ({"model": None}, ["model", "NoneType"]),
    "model-int": ({"model": 4}, ["model", "int"]),
    "api-key-int": ({"api_key": 123}, ["api_key", "int"]),
    "api-key-bytes": ({"api_key": b"sk-x"}, ["api_key", "bytes"]),
    "provider-int": ({"provider": 3}, ["provider", "int"]),
    "kwarg-object": ({"temperature": object()}, ["'temperature'", "JSON"]),
    "kwarg-set": ({"conversation": {"P": {1, 2}}}, ["'conversation'", "JSON"]),
    "kwarg-nan": ({"temperature": float("nan")}, ["'temperature'"]),
    "kwarg-inf": ({"top_p": float("inf")}, ["'top_p'"]),
    "message-bytes-text": (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": b"x"}]}]},
        ["'messages'", "JSON"],
    ),
    "media-unknown-bytes": ({"media": [b"just some text"]}, ["media[0]", "cannot tell"]),
    "media-text-file": ({"media": [io.StringIO("text")]}, ["media[0]", "binary"]),
    "media-none-item": ({"media": [None]}, ["media[0]", "NoneType", "pair"]),
    "media-ftp": ({"media": ["ftp://example.com/cat.png"]}, ["media[0]", "'ftp'"]),
    "media-filename-int": ({"media": [(PNG, 5)]}, ["media[0]", "filename", "int"]),
    "media-triple": ({"media": [(PNG, "a.png", "x")]}, ["media[0]", "3"]),
    "media-second-bad": ({"media": [PNG, 42]}, ["media[1]", "int"]),
    "media-int": ({"media": 42}, ["media", "int"]),
    "media-bad-data-uri": ({"media": ["data:image/png;base64"]}, ["media[0]", "data:"]),
}


def check_invalid_input(error: BaseException, fragments: List[str]) -> None:
    assert isinstance(error, InvalidInputError)
    assert isinstance(error, ValueError)
    assert isinstance(error, TypeError)
    message = str(error)
    for fragment in fragments:
        assert fragment in message
    assert KEY not in message


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_call_raises_from_create_itself(offline_client: Any, case: str) -> None:
    changes, fragments = BAD_CALLS[case]
    call = {"model": "gpt-4o", "messages": MESSAGES, **changes}
    with pytest.raises(InvalidInputError) as caught:
        offline_client.create(**call)
    check_invalid_input(caught.value, fragments)


def test_missing_media_file_is_named(offline_client: Any, tmp_path: pathlib.Path) -> None:
    missing = str(tmp_path / "missing.png")
    with pytest.raises(InvalidInputError) as caught:
        offline_client.create("gpt-4o", MESSAGES, media=[missing])
    check_invalid_input(caught.value, ["media[0]", "no such file", missing])


def test_missing_media_path_object_is_named(offline_client: Any, tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "gone.wav"
    with pytest.raises(InvalidInputError) as caught:
        offline_client.create("gpt-4o", MESSAGES, media=[(missing, None)])
    check_invalid_input(caught.value, ["media[0]", str(missing)])


def test_directory_as_media_is_refused(offline_client: Any, tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidInputError) as caught:
        offline_client.create("gpt-4o", MESSAGES, media=[str(tmp_path)])
    check_invalid_input(caught.value, ["media[0]", "not a file", str(tmp_path)])


def test_text_mode_file_as_media_is_refused(offline_client: Any, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with open(path) as text_file, pytest.raises(InvalidInputError) as caught:
        offline_client.create("gpt-4o", MESSAGES, media=[text_file])
    check_invalid_input(caught.value, ["media[0]", "'rb'"])


# -- arguments of the constructors -----------------------------------------------------------

BAD_OPTIONS: Dict[str, Tuple[Dict[str, Any], List[str]]] = {
    "url-no-scheme": ({"base_url": "localhost:8080"}, ["base_url", "http://", "localhost:8080"]),
    "url-ftp": ({"base_url": "ftp://x"}, ["base_url", "ftp://x"]),
    "url-no-host": ({"base_url": "http://"}, ["base_url", "host"]),
    "url-no-host-port": ({"base_url": "http://:8080"}, ["base_url", "host"]),
    "url-int": ({"base_url": 8080}, ["base_url", "int"]),
    "url-bytes": ({"base_url": b"http://x"}, ["base_url", "bytes"]),
    "url-bad-port": ({"base_url": "http://h:99999"}, ["base_url", "port"]),
    "url-query": ({"base_url": "http://h/?x=1"}, ["base_url", "query"]),
    "timeout-negative": ({"timeout": -1}, ["timeout", "-1"]),
    "timeout-zero": ({"timeout": 0}, ["timeout", "positive"]),
    "timeout-true": ({"timeout": True}, ["timeout", "bool"]),
    "timeout-str": ({"timeout": "10"}, ["timeout", "str"]),
    "headers-int-value": ({"headers": {"X-Retry": 3}}, ["headers", "int", "X-Retry"]),
    "headers-none-value": ({"headers": {"X-A": None}}, ["headers", "X-A"]),
    "headers-crlf-value": ({"headers": {"X-A": "a\r\nX-Injected: 1"}}, ["X-A", "line break"]),
    "headers-lf-name": ({"headers": {"X-A\n": "a"}}, ["line break"]),
    "headers-list": ({"headers": [("X-A", "a")]}, ["headers", "list"]),
    # Non-ASCII had no agreed encoding: requests sent ISO-8859-1 (or raised for what
    # that cannot encode), aiohttp UTF-8. The value is never shown (it may be a key).
    "headers-latin1-value": ({"headers": {"X-User": "J\u00f6rg"}}, ["X-User", "ASCII"]),
    "headers-cjk-value": ({"headers": {"X-User": "\u65e5\u672c"}}, ["X-User", "ASCII"]),
    "headers-control-value": ({"headers": {"X-A": "a\x00b"}}, ["X-A", "control"]),
    "headers-space-in-name": ({"headers": {"X A": "a"}}, ["'X A'", "token"]),
    "headers-colon-in-name": ({"headers": {"X-A:": "a"}}, ["'X-A:'", "token"]),
    "headers-empty-name": ({"headers": {"": "a"}}, ["''", "token"]),
    "headers-non-ascii-name": ({"headers": {"X-\u00c4": "a"}}, ["token"]),
    "headers-leading-space": ({"headers": {"X-A": " a"}}, ["X-A", "whitespace"]),
    "ssl-int": ({"ssl": 1}, ["ssl", "int"]),
    "ssl-missing-ca": ({"ssl": "/nonexistent/ca-bundle.pem"}, ["/nonexistent/ca-bundle.pem"]),
    "ssl-missing-ca-path": (
        {"ssl": pathlib.Path("/nonexistent/ca.pem")},
        ["/nonexistent/ca.pem"],
    ),
    "session-object": ({"session": object()}, ["session", "object"]),
    "session-str": ({"session": "requests"}, ["session", "str"]),
    "api-key-int": ({"api_key": 42}, ["api_key", "int"]),
    "max-event-size-zero": ({"max_event_size": 0}, ["max_event_size"]),
    "max-retries-negative": ({"max_retries": -1}, ["max_retries"]),
}


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> Iterator[List[Any]]:
    """Exceptions from finalizers of this test's objects, kept here, not left to a later test."""
    gc.collect()
    found: List[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", found.append)
    yield found
    gc.collect()


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_constructor_argument(client_kind: str, case: str, unraisable: List[Any]) -> None:
    # A failing finalizer is for test_failed_constructor_leaves_nothing_behind to report.
    options, fragments = BAD_OPTIONS[case]
    options = dict(options)
    base_url = options.pop("base_url", BASE)
    with pytest.raises(InvalidInputError) as caught:
        make_client(client_kind, base_url, **options)
    check_invalid_input(caught.value, fragments)


def test_header_value_is_never_shown(unraisable: List[Any]) -> None:
    secret = "Bearer s\u00e9cret-token-123"
    with pytest.raises(InvalidInputError) as caught:
        make_client("sync", BASE, headers={"Authorization": secret})
    assert "Authorization" in str(caught.value)
    assert "cret-token" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["http://me:s3cret@h:99999", "ftp://me:s3cret@h", "me:s3cret@h:8080", "http://me:s3cret@"],
)
def test_bad_base_url_with_credentials_is_shown_without_them(
    url: str, unraisable: List[Any]
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        make_client("sync", url)
    assert "base_url" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_bad_timeout_object_is_refused() -> None:
    for bad in ({"connect": -1.0}, {"read": 0}, {"total": True}):
        with pytest.raises(InvalidInputError, match="timeout"):
            Timeout(**bad)


def test_failed_constructor_leaves_nothing_behind(client_kind: str, unraisable: List[Any]) -> None:
    # The half-built client is garbage at once; its finalizer must not fail on it.
    with pytest.raises(InvalidInputError) as caught:
        make_client(client_kind, "localhost:8080")
    del caught
    gc.collect()
    assert [f"{item.exc_type.__name__}: {item.exc_value}" for item in unraisable] == []


# -- the request a good call builds ----------------------------------------------------------


def test_body_is_exactly_the_call() -> None:
    extra = {
        "provider": "OpenaiChat",
        "temperature": 0.5,
        "conversation": {"OpenaiChat": {"conversation_id": "c-1", "message_id": "m-1"}},
        "action": "continue",
        "web_search": True,
    }
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "w\u00f6rld \U0001f30d"}]},
    ]
    request = build_conversation_request(
        normalize_base_url("http://h:8080/"),
        "gpt-4o",
        messages,
        [PNG, ("https://example.com/cat.jpg", "cat.jpg")],
        KEY,
        extra,
        {"X-Secret": "demo"},
    )
    assert isinstance(request, PreparedRequest)
    assert request.method == "POST"
    assert request.url == "http://h:8080/backend-api/v2/conversation"
    assert request.body is not None
    assert json.loads(request.body) == {
        "model": "gpt-4o",
        "messages": messages,
        "media": [[data_uri(PNG, "image/png"), None], ["https://example.com/cat.jpg", "cat.jpg"]],
        "api_key": KEY,
        **extra,
    }
    assert request.headers["Accept"] == "text/event-stream"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Secret"] == "demo"


def test_body_without_media_or_key_has_nulls() -> None:
    request = build_conversation_request(BASE, "", MESSAGES, None, None, {}, {})
    assert request.body is not None
    assert json.loads(request.body) == {
        "model": "",
        "messages": MESSAGES,
        "media": None,
        "api_key": None,
    }


URL_JOINS = [
    ("http://h", "http://h/backend-api/v2/conversation"),
    ("http://h/", "http://h/backend-api/v2/conversation"),
    ("https://h:8443", "https://h:8443/backend-api/v2/conversation"),
    ("http://h/g4f/", "http://h/g4f/backend-api/v2/conversation"),
    ("http://h/g4f", "http://h/g4f/backend-api/v2/conversation"),
    ("  http://h:8080/a/b/  ", "http://h:8080/a/b/backend-api/v2/conversation"),
]


@pytest.mark.parametrize("base_url, expected", URL_JOINS)
def test_url_join(base_url: str, expected: str) -> None:
    request = build_conversation_request(
        normalize_base_url(base_url), "m", MESSAGES, None, None, {}, {}
    )
    assert request.url == expected


def test_validate_messages_accepts_good_conversations() -> None:
    for messages in (
        MESSAGES,
        tuple(MESSAGES),
        [{"role": "assistant", "content": None}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
    ):
        validate_messages(messages)
    with pytest.raises(InvalidInputError):
        validate_messages([{"role": "", "content": "x"}])


# -- media -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, data, mime", SIGNATURES, ids=[s[0] for s in SIGNATURES])
def test_signature_bytes_become_data_uris(name: str, data: bytes, mime: str) -> None:
    assert guess_mime_type(data) == mime
    encoded = encode_media([data])
    assert encoded == [[data_uri(data, mime), None]]
    assert encoded is not None
    uri = encoded[0][0]
    assert uri is not None
    header, payload = uri.split(",", 1)
    assert header == f"data:{mime};base64"
    assert base64.b64decode(payload, validate=True) == data


def test_one_bare_item_is_a_list_of_one() -> None:
    assert encode_media(PNG) == [[data_uri(PNG, "image/png"), None]]
    assert encode_media(bytearray(GIF)) == [[data_uri(GIF, "image/gif"), None]]
    assert encode_media(memoryview(JPEG)) == [[data_uri(JPEG, "image/jpeg"), None]]


def test_no_media_is_null() -> None:
    assert encode_media(None) is None


@pytest.mark.parametrize("as_path", [str, pathlib.Path], ids=["str", "Path"])
def test_path_becomes_data_uri_named_by_basename(
    tmp_path: pathlib.Path, as_path: Callable[[pathlib.Path], Any]
) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(PNG)
    assert encode_media([as_path(path)]) == [[data_uri(PNG, "image/png"), "photo.png"]]
    assert encode_media([(as_path(path), "renamed.png")]) == [
        [data_uri(PNG, "image/png"), "renamed.png"]
    ]


def test_pair_filename_gives_the_type_of_unknown_bytes(tmp_path: pathlib.Path) -> None:
    table = b"a,b\n1,2\n"
    assert encode_media([(table, "table.csv")]) == [[data_uri(table, "text/csv"), "table.csv"]]
    assert encode_media([[table, "table.csv"]]) == [[data_uri(table, "text/csv"), "table.csv"]]
    path = tmp_path / "data.bin"
    path.write_bytes(table)
    assert encode_media([(str(path), "table.csv")]) == [[data_uri(table, "text/csv"), "table.csv"]]


def test_guess_mime_type_falls_back_to_the_filename() -> None:
    assert guess_mime_type(b"a,b\n", "table.csv") == "text/csv"
    assert guess_mime_type(PNG, "misnamed.csv") == "image/png"
    assert guess_mime_type(b"plain") is None
    assert guess_mime_type(b"plain", "no-extension") is None


def test_urls_and_data_uris_pass_through_unchanged() -> None:
    inline = data_uri(PNG, "image/png")
    media = [
        "https://example.com/cat.png?size=large#x",
        ("http://example.com/a", "a.jpg"),
        inline,
        ("DATA:text/plain,hello", None),
    ]
    assert encode_media(media) == [
        ["https://example.com/cat.png?size=large#x", None],
        ["http://example.com/a", "a.jpg"],
        [inline, None],
        ["DATA:text/plain,hello", None],
    ]


def test_binary_file_objects(tmp_path: pathlib.Path) -> None:
    assert encode_media([io.BytesIO(JPEG)]) == [[data_uri(JPEG, "image/jpeg"), None]]
    path = tmp_path / "voice.wav"
    path.write_bytes(WAV)
    with open(path, "rb") as file:
        assert encode_media([file]) == [[data_uri(WAV, "audio/wav"), "voice.wav"]]
    with open(path, "rb") as file:
        assert encode_media([(file, "other.wav")]) == [[data_uri(WAV, "audio/wav"), "other.wav"]]


def test_callers_media_list_is_unchanged(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(PNG)
    pair = (str(path), "x.png")
    media: List[Any] = [PNG, pair, ["https://example.com/a.png", None], bytearray(GIF), path]
    before = copy.deepcopy(media)
    items_before = [id(item) for item in media]
    encode_media(media)
    build_conversation_request(BASE, "m", MESSAGES, media, None, {}, {})
    assert media == before
    assert [id(item) for item in media] == items_before
    assert media[1] is pair
    assert isinstance(media[1], tuple)


# -- repr never shows the key ----------------------------------------------------------------


def test_prepared_request_repr_hides_the_body() -> None:
    request = build_conversation_request(BASE, "m", MESSAGES, None, KEY, {}, {})
    assert request.body is not None
    assert KEY.encode() in request.body
    assert KEY not in repr(request)
    assert KEY not in str(request)
    assert ENDPOINT in repr(request)


def test_client_repr_hides_the_key(client_kind: str) -> None:
    client = make_client(client_kind, api_key=KEY)
    assert KEY not in repr(client)
    assert KEY not in str(client)
    assert BASE in repr(client)


# -- what the clients send and how they read answers, emulated in memory ---------------------


_NEEDS_STREAM_WRITER = "stream_writer" in inspect.signature(aiohttp.ClientResponse).parameters


class CompatClientResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds responses without the ``stream_writer`` that
    aiohttp 3.14 requires; supply a finished one so it can emulate answers.
    (Older aiohttp, such as 3.13 on Python 3.9, takes no such argument.)"""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        if _NEEDS_STREAM_WRITER:
            kwargs.setdefault("stream_writer", types.SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


@dataclass
class Reply:
    """The answer the emulated server gives."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/event-stream; charset=utf-8"
    headers: Dict[str, str] = field(default_factory=dict)
    url: str = ENDPOINT


@dataclass
class Sent:
    url: str
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Outcome:
    events: List[RawResponse]
    error: Optional[BaseException]
    sent: List[Sent]


def exchange(
    kind: str,
    reply: Reply,
    call: Optional[Dict[str, Any]] = None,
    **options: Any,
) -> Outcome:
    """Make one create() call against ``reply``; keep the events, the error and what was sent."""
    call = {"model": "gpt-4o", "messages": MESSAGES, **(call or {})}
    options = {"base_url": BASE, "max_retries": 0, **options}
    if kind == "sync":
        return exchange_sync(reply, call, options)
    return asyncio.run(exchange_async(reply, call, options))


def exchange_sync(reply: Reply, call: Dict[str, Any], options: Dict[str, Any]) -> Outcome:
    events: List[RawResponse] = []
    error: Optional[BaseException] = None
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(
            responses.POST,
            reply.url,
            body=reply.body,
            status=reply.status,
            content_type=reply.content_type,
            headers=reply.headers,
        )
        with BackendApiClient(**options) as client:
            try:
                for event in client.create(**call):
                    events.append(event)
            except BackendApiError as exc:
                error = exc
        sent = [
            Sent(str(c.request.url), as_bytes(c.request.body), dict(c.request.headers))
            for c in mock.calls
        ]
    return Outcome(events, error, sent)


async def exchange_async(reply: Reply, call: Dict[str, Any], options: Dict[str, Any]) -> Outcome:
    events: List[RawResponse] = []
    error: Optional[BaseException] = None
    with aioresponses() as mock:
        mock.post(
            reply.url,
            status=reply.status,
            body=reply.body,
            content_type=reply.content_type,
            headers=reply.headers,
            response_class=CompatClientResponse,
        )
        async with AsyncBackendApiClient(**options) as client:
            try:
                async for event in client.create(**call):
                    events.append(event)
            except BackendApiError as exc:
                error = exc
        sent = [
            Sent(str(url), as_bytes(request.kwargs["data"]), dict(request.kwargs["headers"]))
            for (_method, url), requests in mock.requests.items()
            for request in requests
        ]
    return Outcome(events, error, sent)


def as_bytes(body: Union[bytes, str, None]) -> bytes:
    if body is None:
        return b""
    return body.encode() if isinstance(body, str) else body


@pytest.mark.parametrize("sse_path", sorted(DATA.glob("*.sse")), ids=lambda path: path.stem)
def test_emulated_answer_is_streamed(client_kind: str, sse_path: pathlib.Path) -> None:
    # Shows the emulation carries a real transcript; the error tests below rely on it.
    ndjson = sse_path.with_name(
        sse_path.name.replace("g4f-8.8.6-", "g4f-pre-2025-12-").replace(".sse", ".ndjson")
    )
    expected = [json.loads(line) for line in ndjson.read_bytes().splitlines() if line]
    fatal = [event for event in expected if event["type"] in ("error", "auth")]
    outcome = exchange(client_kind, Reply(body=sse_path.read_bytes()))
    if fatal:  # the provider-error transcript ends in a fatal event, raised after the rest
        assert isinstance(outcome.error, StreamError)
        assert outcome.error.event.get_dict() == fatal[0]
        expected = expected[: expected.index(fatal[0])]
    else:
        assert outcome.error is None
    assert [event.get_dict() for event in outcome.events] == expected


def test_client_sends_the_call_as_json(client_kind: str, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "chart.png"
    path.write_bytes(PNG)
    call = {
        "model": "gpt-4o",
        "messages": MESSAGES,
        "media": [(str(path), None), "https://example.com/cat.png"],
        "provider": "OpenaiChat",
        "conversation": None,
        "temperature": 0.2,
    }
    outcome = exchange(client_kind, Reply(body=b'{"type": "finish"}\n'), call, api_key=KEY)
    assert outcome.error is None
    assert len(outcome.sent) == 1
    sent = outcome.sent[0]
    assert sent.url == ENDPOINT
    assert sent.json() == {
        "model": "gpt-4o",
        "messages": MESSAGES,
        "media": [[data_uri(PNG, "image/png"), "chart.png"], ["https://example.com/cat.png", None]],
        "api_key": KEY,
        "provider": "OpenaiChat",
        "conversation": None,
        "temperature": 0.2,
    }
    headers = {name.lower(): value for name, value in sent.headers.items()}
    assert headers["accept"] == "text/event-stream"
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize("base_url, expected", URL_JOINS)
def test_client_posts_to_the_joined_url(client_kind: str, base_url: str, expected: str) -> None:
    outcome = exchange(
        client_kind, Reply(body=b'{"type": "finish"}\n', url=expected), base_url=base_url
    )
    assert outcome.error is None
    assert [sent.url for sent in outcome.sent] == [expected]


def test_client_key_is_the_default_and_the_call_key_wins(client_kind: str) -> None:
    reply = Reply(body=b'{"type": "finish"}\n')
    by_client = exchange(client_kind, reply, api_key="client-key-123")
    by_call = exchange(client_kind, reply, {"api_key": "call-key-456"}, api_key="client-key-123")
    assert by_client.sent[0].json()["api_key"] == "client-key-123"
    assert by_call.sent[0].json()["api_key"] == "call-key-456"


def test_key_from_environment_or_none(client_kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    reply = Reply(body=b'{"type": "finish"}\n')
    monkeypatch.delenv("BACKENDAPI_API_KEY", raising=False)
    assert exchange(client_kind, reply).sent[0].json()["api_key"] is None
    monkeypatch.setenv("BACKENDAPI_API_KEY", "env-key-789")
    assert exchange(client_kind, reply).sent[0].json()["api_key"] == "env-key-789"


def test_media_list_unchanged_by_create(client_kind: str, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(PNG)
    media: List[Any] = [PNG, (str(path), "x.png"), ["https://example.com/a.png", None]]
    before = copy.deepcopy(media)
    outcome = exchange(client_kind, Reply(body=b'{"type": "finish"}\n'), {"media": media})
    assert outcome.error is None
    assert media == before
    assert isinstance(media[1], tuple)


def test_404_carries_the_servers_message(client_kind: str) -> None:
    body = json.dumps({"error": {"message": "Provider not found"}}).encode()
    outcome = exchange(
        client_kind, Reply(status=404, body=body, content_type="application/json"), api_key=KEY
    )
    error = outcome.error
    assert isinstance(error, APIStatusError)
    assert error.status_code == 404
    assert "Provider not found" in str(error)
    assert outcome.events == []


def test_500_with_html_quotes_the_text(client_kind: str) -> None:
    body = (
        b"<html><head><title>500 Internal Server Error</title></head>"
        b"<body><h1>Internal Server Error</h1><p>upstream overloaded</p></body></html>"
    )
    outcome = exchange(client_kind, Reply(status=500, body=body, content_type="text/html"))
    error = outcome.error
    assert isinstance(error, APIStatusError)
    assert error.status_code == 500
    assert "upstream overloaded" in str(error)
    assert len(outcome.sent) == 1  # max_retries=0


def test_403_missing_secret(client_kind: str) -> None:
    body = json.dumps({"error": {"message": "Invalid or missing secret"}}).encode()
    outcome = exchange(client_kind, Reply(status=403, body=body, content_type="application/json"))
    error = outcome.error
    assert isinstance(error, APIStatusError)
    assert error.status_code == 403
    assert "Invalid or missing secret" in str(error)


def test_redirect_is_not_followed(client_kind: str) -> None:
    reply = Reply(status=307, headers={"Location": "http://elsewhere.example/steal"})
    outcome = exchange(client_kind, reply, api_key=KEY)
    error = outcome.error
    assert isinstance(error, APIStatusError)
    assert error.status_code == 307
    assert [sent.url for sent in outcome.sent] == [ENDPOINT]


def test_html_with_status_200_is_a_decode_error_naming_the_content_type(client_kind: str) -> None:
    reply = Reply(body=b"<html><body>Please log in</body></html>", content_type="text/html")
    outcome = exchange(client_kind, reply)
    assert isinstance(outcome.error, DecodeError)
    assert "text/html" in str(outcome.error)
    assert outcome.events == []


ECHOING_ANSWERS = {
    "json-403": Reply(
        status=403,
        body=json.dumps({"error": {"message": f"Invalid or missing secret: {KEY}"}}).encode(),
        content_type="application/json",
    ),
    "json-detail": Reply(
        status=401,
        body=json.dumps({"detail": f"bad key {KEY}"}).encode(),
        content_type="application/json",
    ),
    "html-502": Reply(
        status=502,
        body=f"<html>Bad Gateway for key={KEY}</html>".encode(),
        content_type="text/html",
    ),
    "redirect": Reply(status=307, headers={"Location": f"http://other.example/?key={KEY}"}),
    "html-200": Reply(body=f"<html>hello {KEY}</html>".encode(), content_type="text/html"),
}


@pytest.mark.parametrize("case", sorted(ECHOING_ANSWERS))
def test_error_message_never_echoes_the_key(client_kind: str, case: str) -> None:
    outcome = exchange(client_kind, ECHOING_ANSWERS[case], api_key=KEY)
    assert isinstance(outcome.error, BackendApiError)
    assert KEY not in str(outcome.error)
    assert KEY not in repr(outcome.error)


@pytest.mark.parametrize("case", ["json-403", "json-detail", "html-502"])
def test_status_error_body_never_echoes_the_key(client_kind: str, case: str) -> None:
    # The errors module promises the key is scrubbed from server text
    # "before it becomes part of an exception"; .body is part of it.
    outcome = exchange(client_kind, ECHOING_ANSWERS[case], api_key=KEY)
    assert isinstance(outcome.error, APIStatusError)
    assert KEY not in repr(outcome.error.body)
