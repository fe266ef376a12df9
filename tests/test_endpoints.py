"""The other endpoints, multipart media uploads and configuration from the environment."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from clients import call

from backendapi import APIConnectionError, APIStatusError, BackendApiClient
from backendapi.testing import BackendApiTestServer, RecordedRequest

MESSAGES = [{"role": "user", "content": "What is this?"}]
BASE_URL_ENV = "BACKENDAPI_BASE_URL"
API_KEY_ENV = "BACKENDAPI_API_KEY"


def last(server: BackendApiTestServer) -> RecordedRequest:
    assert server.requests, "the server got no request"
    return server.requests[-1]


# Plain endpoints


def test_version(client_kind: str, backendapi_server: BackendApiTestServer) -> None:
    assert call(client_kind, backendapi_server.url, "version") == {
        "version": "8.8.6",
        "latest_version": "8.8.6",
    }
    assert (last(backendapi_server).method, last(backendapi_server).path) == (
        "GET",
        "/backend-api/v2/version",
    )


def test_models(client_kind: str, backendapi_server: BackendApiTestServer) -> None:
    assert call(client_kind, backendapi_server.url, "models") == {
        "ScriptedProvider": ["scripted-1"]
    }
    assert last(backendapi_server).path == "/backend-api/v2/models"


def test_models_of_one_provider(client_kind: str, backendapi_server: BackendApiTestServer) -> None:
    models = call(client_kind, backendapi_server.url, "models", "ScriptedProvider")
    assert [model["id"] for model in models] == ["scripted-1"]
    assert models[0]["default"] is True
    assert last(backendapi_server).path == "/backend-api/v2/models/ScriptedProvider"


def test_models_of_an_unknown_provider_is_an_empty_list(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    # As g4f 8.8.6 answers: 200 and [] (tests/data/g4f-8.8.6-routes/).
    assert call(client_kind, backendapi_server.url, "models", "NoSuchProvider") == []
    assert last(backendapi_server).path == "/backend-api/v2/models/NoSuchProvider"


def test_providers(client_kind: str, backendapi_server: BackendApiTestServer) -> None:
    providers = call(client_kind, backendapi_server.url, "providers")
    assert [provider["name"] for provider in providers] == ["ScriptedProvider"]
    assert {"label", "auth", "vision"} <= set(providers[0])
    assert last(backendapi_server).path == "/backend-api/v2/providers"


def test_create_text(client_kind: str, backendapi_server: BackendApiTestServer) -> None:
    backendapi_server.add_provider("P")
    text = call(
        client_kind, backendapi_server.url, "create_text", "Hello, wörld", model="m", provider="P"
    )
    assert text == "Hello, wörld"  # the test server echoes the prompt by default
    request = last(backendapi_server)
    assert (request.method, request.path) == ("GET", "/backend-api/v2/create")
    assert request.query == {"prompt": "Hello, wörld", "model": "m", "provider": "P"}


def test_create_text_reads_the_whole_streamed_answer(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.create_text_reply = (
        "A longer answer, streamed in pieces: ünïcödé 🌍 and more." * 50
    )
    assert (
        call(client_kind, backendapi_server.url, "create_text", "x")
        == backendapi_server.create_text_reply
    )
    assert last(backendapi_server).query == {"prompt": "x"}


def test_create_text_with_an_unknown_provider_is_a_404_with_the_server_message(
    client_kind: str,
) -> None:
    with BackendApiTestServer(known_providers={"OpenaiChat"}) as server:
        # g4f's create route words an unknown model and an unknown provider alike.
        with pytest.raises(APIStatusError, match="Model or provider not found") as caught:
            call(client_kind, server.url, "create_text", "x", provider="Nope")
        error = caught.value
        assert error.status_code == 404
        assert "Model or provider not found" in str(error)
        assert error.message == "Model or provider not found"
        assert error.body == {"error": {"message": "Model or provider not found"}}
        assert last(server).path == "/backend-api/v2/create"
        assert call(client_kind, server.url, "create_text", "y", provider="OpenaiChat") == "y"


def test_upload(client_kind: str, backendapi_server: BackendApiTestServer, tmp_path: Path) -> None:
    document = tmp_path / "notes.txt"
    document.write_bytes(b"line one\r\nline two\n")
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    answer = call(
        client_kind, backendapi_server.url, "upload", "bucket-1", [document, (png, "cat.png")]
    )
    assert answer == {
        "bucket_id": "bucket-1",
        "files": ["notes.txt"],
        "media": [{"name": "cat.png"}],
    }
    request = last(backendapi_server)
    assert (request.method, request.path) == ("POST", "/backend-api/v2/files/bucket-1")
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert [(f.name, f.filename, f.content_type, f.data) for f in request.files] == [
        ("files", "notes.txt", "text/plain", b"line one\r\nline two\n"),
        ("files", "cat.png", "image/png", png),
    ]


# upload_media=True


def big_png(size: int = 300 * 1024) -> bytes:
    body = os.urandom(size)
    return b"\x89PNG\r\n\x1a\n" + body


def test_upload_media_sends_a_multipart_form(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.add_provider("P")
    image = big_png()
    media = [(image, "big.png"), ("https://example.com/cat.jpg", None)]
    events = call(
        client_kind,
        backendapi_server.url,
        "create",
        "gpt-4o",
        MESSAGES,
        media,
        "key",
        provider="P",
        temperature=0.5,
        client_upload_media=True,
    )
    assert events[-1].type == "finish"
    request = last(backendapi_server)
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    body = {
        "model": "gpt-4o",
        "messages": MESSAGES,
        "media": None,
        "api_key": "key",
        "provider": "P",
        "temperature": 0.5,
    }
    assert [json.loads(value) for value in request.form["json"]] == [body]
    assert request.json == body
    assert request.media_urls == ["https://example.com/cat.jpg"]
    assert [(f.name, f.filename, f.content_type) for f in request.files] == [
        ("files", "big.png", "image/png")
    ]
    assert request.files[0].data == image


def test_upload_media_is_smaller_than_base64_json(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    image = big_png()
    for upload_media in (False, True):
        call(
            client_kind,
            backendapi_server.url,
            "create",
            "gpt-4o",
            MESSAGES,
            [(image, "big.png")],
            client_upload_media=upload_media,
        )
    as_json, as_form = backendapi_server.requests
    assert as_json.headers["Content-Type"] == "application/json"
    data_uri = as_json.json["media"][0][0]
    assert base64.b64decode(data_uri.split(",", 1)[1]) == image
    assert as_form.files[0].data == image
    # Raw bytes instead of base64: about a quarter smaller.
    assert len(as_form.body) < len(as_json.body) * 0.8
    assert len(as_form.body) < len(image) + 2048


def test_upload_media_without_media_still_sends_the_form(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    call(client_kind, backendapi_server.url, "create", "m", MESSAGES, client_upload_media=True)
    request = last(backendapi_server)
    assert request.json == {"model": "m", "messages": MESSAGES, "media": None, "api_key": None}
    assert (request.files, request.media_urls) == ([], [])


# Configuration from the environment


def test_environment_gives_base_url_and_api_key(
    client_kind: str, backendapi_server: BackendApiTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BASE_URL_ENV, backendapi_server.url)
    monkeypatch.setenv(API_KEY_ENV, "env-key")
    events = call(client_kind, None, "create", "m", MESSAGES)
    assert events[-1].type == "finish"
    assert last(backendapi_server).json["api_key"] == "env-key"
    assert call(client_kind, None, "version")["version"] == "8.8.6"


def test_arguments_win_over_the_environment(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    monkeypatch: pytest.MonkeyPatch,
    refused_url: str,
) -> None:
    monkeypatch.setenv(BASE_URL_ENV, refused_url)
    monkeypatch.setenv(API_KEY_ENV, "env-key")
    call(client_kind, backendapi_server.url, "create", "m", MESSAGES, client_api_key="argument-key")
    assert last(backendapi_server).json["api_key"] == "argument-key"
    # A key given to the call wins over both.
    call(
        client_kind,
        backendapi_server.url,
        "create",
        "m",
        MESSAGES,
        None,
        "call-key",
        client_api_key="argument-key",
    )
    assert last(backendapi_server).json["api_key"] == "call-key"


def test_environment_base_url_is_really_used(
    client_kind: str, monkeypatch: pytest.MonkeyPatch, refused_url: str
) -> None:
    monkeypatch.setenv(BASE_URL_ENV, refused_url)
    with pytest.raises(APIConnectionError) as caught:
        call(client_kind, None, "version")
    assert caught.value.url is not None and caught.value.url.startswith(refused_url)


def test_empty_environment_variables_are_ignored(
    client_kind: str, backendapi_server: BackendApiTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(API_KEY_ENV, "")
    call(client_kind, backendapi_server.url, "create", "m", MESSAGES)
    assert last(backendapi_server).json["api_key"] is None


def test_no_environment_means_no_key(
    client_kind: str, backendapi_server: BackendApiTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    call(client_kind, backendapi_server.url, "create", "m", MESSAGES)
    assert last(backendapi_server).json["api_key"] is None
    client = BackendApiClient()
    assert client.base_url == "http://localhost:8080"
    client.close()
