"""Issue 14's chat features over both clients: continue, regenerate, tools, the saved format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
from test_chat import SYSTEM, Side, assistant, bodies, user

from backendapi.testing import BackendApiTestServer, Reply

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def side(client_kind: str, backendapi_server: BackendApiTestServer) -> Iterator[Side]:
    client_side = Side(client_kind, backendapi_server.url)
    try:
        yield client_side
    finally:
        client_side.close()


# -- the saved format ---------------------------------------------------------------------


def test_a_save_of_format_version_1_still_loads_and_continues(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    # tests/data/chat-v1.json was written by Chat.save() of format version 1, unedited.
    path = DATA / "chat-v1.json"
    assert json.loads(path.read_text(encoding="utf-8"))["version"] == 1
    chat = side.chat_class.load(path, side.client, api_key="sk-later")
    assert chat.model == "scripted-1"
    assert chat.provider == "ScriptedProvider"
    assert chat.options == {"temperature": 0.2, "web_search": False}
    assert chat.conversation == {
        "ScriptedProvider": {"conversation_id": "c-1", "message_id": "m-2"}
    }
    history = [
        SYSTEM,
        user("What is the capital of France?"),
        assistant("Paris."),
        user([{"type": "text", "text": "How many people live there?"}]),
        assistant("About 2.1 million people."),
    ]
    assert chat.messages == history
    backendapi_server.reply(Reply.answer("Yes."))
    assert side.ask(chat, "Sure?").text == "Yes."
    sent = bodies(backendapi_server)[-1]
    assert sent["messages"] == [*history, user("Sure?")]
    assert sent["conversation"] == {"conversation_id": "c-1", "message_id": "m-2"}
    assert sent["api_key"] == "sk-later"
    assert sent["temperature"] == 0.2
