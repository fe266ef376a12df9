"""The test server answers as g4f 8.8.6 does: compared with recorded answers of a real one.

``tests/data/g4f-8.8.6-routes/`` holds what a real g4f 8.8.6 GUI backend answered (request,
status, content type, body); its README says how they were recorded.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import pytest
from clients import call, run_stream
from test_cli import serve_test

from backendapi import APIStatusError
from backendapi.testing import BackendApiTestServer, Reply

ROUTES = Path(__file__).parent / "data" / "g4f-8.8.6-routes"
RECORDINGS = sorted(ROUTES.glob("*.json"))
WAIT = 10.0


def recording(name: str) -> dict[str, Any]:
    recorded: dict[str, Any] = json.loads((ROUTES / f"{name}.json").read_text("utf-8"))
    return recorded


def ask(server: BackendApiTestServer, request: dict[str, Any]) -> tuple[int, str, Any]:
    """Send a recorded request to `server`: its status, Content-Type and parsed JSON body."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=WAIT)
    try:
        body = None if "json" not in request else json.dumps(request["json"])
        headers = {} if body is None else {"Content-Type": "application/json"}
        connection.request(request["method"], request["path"], body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), json.loads(response.read())
    finally:
        connection.close()


def is_models_listing(value: Any) -> bool:
    """True for ``{provider: [model ids]}``, the shape of ``GET /backend-api/v2/models``."""
    return isinstance(value, dict) and all(
        isinstance(models, list) and all(isinstance(model, str) for model in models)
        for models in value.values()
    )


# -- every recorded route, compared ----------------------------------------------------------


@pytest.mark.parametrize("path", RECORDINGS, ids=[path.stem for path in RECORDINGS])
def test_the_test_server_answers_each_recorded_request_as_g4f_did(path: Path) -> None:
    recorded = json.loads(path.read_text("utf-8"))
    with BackendApiTestServer() as server:
        status, content_type, body = ask(server, recorded["request"])
    assert (status, content_type) == (recorded["status"], recorded["content_type"])
    if path.stem == "models":
        # The real server lists its built-in providers; the test server its own, in the
        # same shape.
        assert is_models_listing(recorded["body"]) and is_models_listing(body)
        assert body == {"ScriptedProvider": ["scripted-1"]}
    else:
        assert body == recorded["body"]


def test_the_recordings_cover_the_answers_this_file_relies_on() -> None:
    assert {path.stem for path in RECORDINGS} >= {
        "conversation-with-an-unknown-provider",
        "models-of-a-provider",
        "models-of-an-unknown-provider",
        "models",
        "version",
    }


# -- through the clients ---------------------------------------------------------------------


def test_model_objects_carry_id_and_tags_not_model(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    recorded = recording("models-of-a-provider")
    models = call(client_kind, backendapi_server.url, "models", "ScriptedProvider")
    assert models == recorded["body"]
    assert [(model["id"], model["tags"]) for model in models] == [("scripted-1", [])]
    assert "model" not in models[0]


def test_models_of_an_unknown_provider_is_an_empty_list_not_an_error(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    recorded = recording("models-of-an-unknown-provider")
    assert recorded["status"] == 200
    assert call(client_kind, backendapi_server.url, "models", "NoSuchProvider") == []
    assert backendapi_server.requests[-1].path == "/backend-api/v2/models/NoSuchProvider"


def test_a_conversation_with_an_unknown_provider_is_g4fs_404(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    recorded = recording("conversation-with-an-unknown-provider")
    backendapi_server.reply(Reply.answer("kept for the next request"))
    result = run_stream(client_kind, backendapi_server.url, "x", provider="NoSuchProvider")
    error = result.error
    assert isinstance(error, APIStatusError)
    assert (error.status_code, error.body) == (recorded["status"], recorded["body"])
    assert error.message == "Provider not found"
    assert result.events == []
    # A rejected request leaves the queued reply for the next one.
    after = run_stream(client_kind, backendapi_server.url, "x", provider="ScriptedProvider")
    assert after.error is None
    assert after.stream.answer.text == "kept for the next request"


def test_a_conversation_without_a_provider_is_answered(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply.answer("g4f picks one"))
    result = run_stream(client_kind, backendapi_server.url, "x")
    assert result.error is None
    assert result.stream.answer.text == "g4f picks one"
    assert "provider" not in backendapi_server.requests[-1].json


def test_a_registered_provider_is_answered_and_listed(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    url = backendapi_server.url
    before = run_stream(client_kind, url, "gpt-4o", provider="OpenaiChat")
    assert isinstance(before.error, APIStatusError) and before.error.status_code == 404

    backendapi_server.add_provider("OpenaiChat", ["gpt-4o", "o3"], label="OpenAI ChatGPT")
    backendapi_server.reply(Reply.answer("Hi", provider="OpenaiChat", model="gpt-4o"))
    after = run_stream(client_kind, url, "gpt-4o", provider="OpenaiChat")
    assert after.error is None
    assert after.stream.answer.text == "Hi"
    assert backendapi_server.requests[-1].json["provider"] == "OpenaiChat"

    assert call(client_kind, url, "models") == {
        "ScriptedProvider": ["scripted-1"],
        "OpenaiChat": ["gpt-4o", "o3"],
    }
    objects = call(client_kind, url, "models", "OpenaiChat")
    # The same keys as the recorded object of a real provider; the first model is the default.
    assert [set(item) for item in objects] == [
        set(recording("models-of-a-provider")["body"][0])
    ] * 2
    assert [(item["id"], item["label"], item["default"]) for item in objects] == [
        ("gpt-4o", "gpt-4o", True),
        ("o3", "o3", False),
    ]
    providers = call(client_kind, url, "providers")
    assert [(item["name"], item["label"]) for item in providers] == [
        ("ScriptedProvider", "ScriptedProvider"),
        ("OpenaiChat", "OpenAI ChatGPT"),
    ]
    assert backendapi_server.known_providers == {"ScriptedProvider", "OpenaiChat"}


def test_known_providers_registers_providers_without_models(client_kind: str) -> None:
    with BackendApiTestServer(known_providers=["Gemini"]) as server:
        assert server.known_providers == {"ScriptedProvider", "Gemini"}
        assert run_stream(client_kind, server.url, "m", provider="Gemini").error is None
        assert call(client_kind, server.url, "models", "Gemini") == []
        assert call(client_kind, server.url, "models")["Gemini"] == []
        refused = run_stream(client_kind, server.url, "m", provider="OpenaiChat").error
        assert isinstance(refused, APIStatusError) and refused.status_code == 404


def test_create_with_an_unknown_provider_is_g4fs_404(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    with pytest.raises(APIStatusError) as caught:
        call(client_kind, backendapi_server.url, "create_text", "x", provider="Nope")
    assert caught.value.status_code == 404
    # g4f 8.8.6's create route: ``except (ModelNotFoundError, ProviderNotFoundError)``.
    assert caught.value.body == {"error": {"message": "Model or provider not found"}}
    backendapi_server.add_provider("Nope")
    assert call(client_kind, backendapi_server.url, "create_text", "x", provider="Nope") == "x"


@pytest.mark.parametrize(
    ("name", "models", "error"),
    [
        ("", (), ValueError),
        (None, (), ValueError),
        ("P", "gpt-4o", TypeError),
        ("P", [1], TypeError),
    ],
)
def test_add_provider_refuses_what_is_no_provider(name: Any, models: Any, error: type) -> None:
    server = BackendApiTestServer()
    with pytest.raises(error):
        server.add_provider(name, models)
    assert server.known_providers == {"ScriptedProvider"}


def test_serve_test_knows_the_providers_it_is_given() -> None:
    with serve_test("--provider", "OpenaiChat") as (_, url):
        assert run_stream("sync", url, "m", provider="OpenaiChat").error is None
        refused = run_stream("sync", url, "m", provider="Gemini").error
        assert isinstance(refused, APIStatusError) and refused.status_code == 404
