"""Multi-turn chats (`Chat`, `AsyncChat`) against the test server, with both clients."""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

import pytest
from clients import TEST_TIMEOUT

from backendapi import (
    Answer,
    APIStatusError,
    AsyncChat,
    BackendApiClient,
    Chat,
    IncompleteStreamError,
    InvalidInputError,
    RawResponse,
    StreamError,
)
from backendapi.testing import BackendApiTestServer, Cut, Reply

SYSTEM = {"role": "system", "content": "Be brief"}
AnyChat = Union[Chat, AsyncChat]


class Side:
    """One client kind behind a blocking facade, so each scenario is written once.

    The async client runs on an event loop of its own that lives as long as the
    side, so a chat can span several turns, as it would in an application.
    """

    def __init__(self, kind: str, url: str, **options: Any) -> None:
        self.kind = kind
        options = {"timeout": TEST_TIMEOUT, "max_retries": 0, **options}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self.client: Any
        if kind == "sync":
            self.client = BackendApiClient(url, **options)
        else:
            from backendapi import AsyncBackendApiClient

            self._loop = asyncio.new_event_loop()
            self.client = AsyncBackendApiClient(url, **options)

    @property
    def chat_class(self) -> Any:
        return Chat if self.kind == "sync" else AsyncChat

    def run(self, value: Any) -> Any:
        """The value itself, or what it gives when awaited."""
        if inspect.isawaitable(value):
            assert self._loop is not None
            return self._loop.run_until_complete(value)
        return value

    def chat(self, *args: Any, **kwargs: Any) -> Any:
        return self.chat_class(self.client, *args, **kwargs)

    def ask(self, chat: AnyChat, *args: Any, **kwargs: Any) -> Answer:
        answer: Answer = self.run(chat.ask(*args, **kwargs))
        return answer

    def read(self, stream: Any, limit: Optional[int] = None) -> List[RawResponse]:
        """Events of a stream: all of them, or the first `limit` (the stream stays open)."""
        if self.kind == "sync":
            events = []
            for event in stream:
                events.append(event)
                if limit is not None and len(events) >= limit:
                    break
            return events

        async def read_async() -> List[RawResponse]:
            events = []
            async for event in stream:
                events.append(event)
                if limit is not None and len(events) >= limit:
                    break
            return events

        result: List[RawResponse] = self.run(read_async())
        return result

    def close_stream(self, stream: Any) -> None:
        self.run(stream.close() if self.kind == "sync" else stream.aclose())

    def close(self) -> None:
        if self._loop is None:
            self.client.close()
            return
        loop = self._loop
        try:
            loop.run_until_complete(self.client.aclose())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


@pytest.fixture
def side(client_kind: str, backendapi_server: BackendApiTestServer) -> Iterator[Side]:
    # The chats here talk to OpenaiChat; like g4f, the test server refuses providers it lacks.
    backendapi_server.add_provider("OpenaiChat", ["gpt-4o", "other-model"])
    client_side = Side(client_kind, backendapi_server.url)
    try:
        yield client_side
    finally:
        client_side.close()


def bodies(server: BackendApiTestServer) -> List[Dict[str, Any]]:
    """The JSON bodies of the conversation requests, in order."""
    return [r.json for r in server.requests if r.path.endswith("/conversation")]


def user(text: Any) -> Dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> Dict[str, Any]:
    return {"role": "assistant", "content": text}


# What a turn sends


def test_second_turn_carries_history_provider_and_provider_state(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(
        Reply.answer("Hi there", provider="OpenaiChat", conversation={"id": "c1", "msg": "m1"}),
        Reply.answer("Then this", provider="OpenaiChat", conversation={"id": "c1", "msg": "m2"}),
        Reply.answer("Done", provider="OpenaiChat"),
    )
    chat = side.chat("gpt-4o", provider="OpenaiChat", system="Be brief", temperature=0.2)
    assert chat.messages == [SYSTEM]

    assert side.ask(chat, "Hello").text == "Hi there"
    assert side.ask(chat, "And then?").text == "Then this"
    side.ask(chat, "Thanks")

    first, second, third = bodies(backendapi_server)
    assert first == {
        "model": "gpt-4o",
        "messages": [SYSTEM, user("Hello")],
        "media": None,
        "api_key": None,
        "provider": "OpenaiChat",
        "temperature": 0.2,
    }  # no state yet: no "conversation" key at all
    assert second == {
        "model": "gpt-4o",
        "messages": [SYSTEM, user("Hello"), assistant("Hi there"), user("And then?")],
        "media": None,
        "api_key": None,
        "provider": "OpenaiChat",
        "temperature": 0.2,
        "conversation": {"id": "c1", "msg": "m1"},
    }
    # The newest state replaces the provider's older one.
    assert third["conversation"] == {"id": "c1", "msg": "m2"}
    assert third["messages"][-3:] == [user("And then?"), assistant("Then this"), user("Thanks")]
    assert chat.messages == [*third["messages"], assistant("Done")]
    assert chat.conversation == {"OpenaiChat": {"id": "c1", "msg": "m2"}}


def test_state_of_another_provider_is_not_sent(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply.answer("Hi", provider="Gemini", conversation={"id": "g1"}))
    chat = side.chat("gpt-4o", provider="OpenaiChat")
    side.ask(chat, "Hello")
    side.ask(chat, "Again")
    assert chat.conversation == {"Gemini": {"id": "g1"}}
    assert "conversation" not in bodies(backendapi_server)[1]
    assert bodies(backendapi_server)[1]["provider"] == "OpenaiChat"


@pytest.mark.parametrize("provider", [None, "AnyProvider"])
def test_any_provider_or_none_sends_all_the_merged_state(
    side: Side, backendapi_server: BackendApiTestServer, provider: Optional[str]
) -> None:
    backendapi_server.reply(
        Reply.answer("One", provider="OpenaiChat", conversation={"id": "o1"}),
        Reply.answer("Two", provider="Gemini", conversation={"id": "g1"}),
    )
    chat = side.chat("", provider=provider)
    side.ask(chat, "first")
    side.ask(chat, "second")
    side.ask(chat, "third")
    first, second, third = bodies(backendapi_server)
    assert "conversation" not in first
    assert second["conversation"] == {"OpenaiChat": {"id": "o1"}}
    assert third["conversation"] == {"OpenaiChat": {"id": "o1"}, "Gemini": {"id": "g1"}}
    if provider is None:
        assert "provider" not in third
    else:
        assert third["provider"] == "AnyProvider"


def test_turn_arguments_override_the_chat_options_for_that_turn_only(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply.answer("Hi", provider="OpenaiChat", conversation={"id": "c1"}))
    chat = side.chat("gpt-4o", provider="OpenaiChat", temperature=0.2, api_key="chat-key")
    side.ask(chat, "one")
    side.ask(
        chat,
        "two",
        temperature=0.9,
        web_search=True,
        conversation={"id": "explicit"},
        api_key="turn-key",
        model="other-model",
    )
    side.ask(chat, "three")
    first, second, third = bodies(backendapi_server)
    assert (first["temperature"], first["api_key"], first["model"]) == (0.2, "chat-key", "gpt-4o")
    assert second["temperature"] == 0.9
    assert second["web_search"] is True
    assert second["conversation"] == {"id": "explicit"}
    assert (second["api_key"], second["model"]) == ("turn-key", "other-model")
    assert (third["temperature"], third["api_key"], third["model"]) == (0.2, "chat-key", "gpt-4o")
    assert "web_search" not in third
    assert third["conversation"] == {"id": "c1"}


def test_media_go_with_their_turn_only(side: Side, backendapi_server: BackendApiTestServer) -> None:
    chat = side.chat("gpt-4o")
    side.ask(chat, "What is this?", media=[("https://example.com/cat.png", "cat.png")])
    side.ask(chat, "And now?")
    first, second = bodies(backendapi_server)
    assert first["media"] == [["https://example.com/cat.png", "cat.png"]]
    assert second["media"] is None
    assert chat.messages[0] == user("What is this?")


# When the history changes


def test_history_changes_only_once_the_stream_completes(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    reply = Reply.answer("Hello you", provider="OpenaiChat", conversation={"id": "c1"})
    backendapi_server.reply(reply)
    chat = side.chat("gpt-4o", provider="OpenaiChat")
    stream = chat.send("Hi")
    assert chat.messages == []
    seen = side.read(stream, limit=len(reply.events) - 1)  # all but the finish event
    assert [event.type for event in seen][-1] == "usage"
    assert stream.answer.text == "Hello you"
    assert (chat.messages, chat.conversation) == ([], {})
    assert [event.type for event in side.read(stream)] == ["finish"]
    assert chat.messages == [user("Hi"), assistant("Hello you")]
    assert chat.conversation == {"OpenaiChat": {"id": "c1"}}


FAILURES = {
    "http-error": (Reply.http_error(403, "Invalid or missing secret"), APIStatusError),
    "error-event": (
        Reply(
            [
                {"type": "conversation", "conversation": {"OpenaiChat": {"id": "bad"}}},
                {"type": "content", "content": "partial"},
                {"type": "error", "error": "RateLimitError", "message": "slow down"},
            ]
        ),
        StreamError,
    ),
    "auth-event": (
        Reply([{"type": "auth", "auth": "MissingAuthError", "message": "log in"}]),
        StreamError,
    ),
    "cut": (
        Reply(
            [
                {"type": "conversation", "conversation": {"OpenaiChat": {"id": "bad"}}},
                {"type": "content", "content": "partial"},
                Cut(),
            ]
        ),
        IncompleteStreamError,
    ),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_failed_turn_leaves_the_chat_unchanged(
    side: Side, backendapi_server: BackendApiTestServer, failure: str
) -> None:
    reply, error = FAILURES[failure]
    backendapi_server.reply(
        Reply.answer("First answer", provider="OpenaiChat", conversation={"id": "good"}),
        reply,
        Reply.answer("Retried", provider="OpenaiChat"),
    )
    chat = side.chat("gpt-4o", provider="OpenaiChat", system="Be brief")
    side.ask(chat, "first")
    before = (copy.deepcopy(chat.messages), copy.deepcopy(chat.conversation))

    with pytest.raises(error):
        side.ask(chat, "second")
    assert (chat.messages, chat.conversation) == before

    # The same turn sent again carries the history without the failed attempt.
    side.ask(chat, "second")
    retried = bodies(backendapi_server)[-1]
    assert retried["messages"] == [SYSTEM, user("first"), assistant("First answer"), user("second")]
    assert retried["conversation"] == {"id": "good"}
    assert chat.messages == [*retried["messages"], assistant("Retried")]


def test_failed_turn_with_send_leaves_the_chat_unchanged(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(FAILURES["error-event"][0])
    chat = side.chat("gpt-4o", provider="OpenaiChat")
    stream = chat.send("Hi")
    with pytest.raises(StreamError):
        side.read(stream)
    assert stream.answer.text == "partial"
    assert (chat.messages, chat.conversation) == ([], {})


def test_turn_closed_early_leaves_the_chat_unchanged(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply.answer("A long answer", conversation={"id": "c1"}))
    chat = side.chat("gpt-4o")
    stream = chat.send("Hi")
    assert len(side.read(stream, limit=3)) == 3
    side.close_stream(stream)
    assert (chat.messages, chat.conversation) == ([], {})
    side.read(stream)  # a closed stream yields nothing more and completes nothing
    assert chat.messages == []
    assert side.ask(chat, "Hi again").text == "Hello from the test server"
    assert chat.messages == [user("Hi again"), assistant("Hello from the test server")]


def test_overlapping_turns_enter_the_history_in_completion_order(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply.answer("answered first"), Reply.answer("answered second"))
    chat = side.chat("gpt-4o")
    early = chat.send("sent first")
    late = chat.send("sent second")
    # Each request carries the history as it was when send() was called: empty.
    side.read(late)
    side.read(early)
    assert [body["messages"] for body in bodies(backendapi_server)] == [
        [user("sent second")],
        [user("sent first")],
    ]
    assert chat.messages == [
        user("sent second"),
        assistant("answered first"),
        user("sent first"),
        assistant("answered second"),
    ]


# Saving and loading


def test_save_and_load_continue_the_same_conversation(
    side: Side, backendapi_server: BackendApiTestServer, tmp_path: Path
) -> None:
    backendapi_server.reply(
        Reply.answer("Hi there", provider="OpenaiChat", conversation={"id": "c1"}),
        Reply.answer("Welcome back", provider="OpenaiChat", conversation={"id": "c2"}),
    )
    chat = side.chat(
        "gpt-4o", provider="OpenaiChat", system="Be brief", temperature=0.2, api_key="sk-secret"
    )
    side.ask(chat, "Hello")
    path = tmp_path / "chat.json"
    chat.save(path)

    text = path.read_text(encoding="utf-8")
    assert "sk-secret" not in text
    assert json.loads(text) == {
        "version": 2,
        "model": "gpt-4o",
        "provider": "OpenaiChat",
        "options": {"temperature": 0.2},
        "messages": [SYSTEM, user("Hello"), assistant("Hi there")],
        "conversation": {"OpenaiChat": {"id": "c1"}},
        "variants": [],
    }
    assert json.loads(chat.to_json()) == chat.to_dict() == json.loads(text)

    loaded = side.chat_class.load(path, side.client, api_key="sk-secret")
    assert type(loaded) is side.chat_class
    assert loaded.to_dict() == chat.to_dict()
    assert side.ask(loaded, "Remember me?").text == "Welcome back"
    resumed = bodies(backendapi_server)[-1]
    assert resumed == {
        "model": "gpt-4o",
        "messages": [SYSTEM, user("Hello"), assistant("Hi there"), user("Remember me?")],
        "media": None,
        "api_key": "sk-secret",
        "provider": "OpenaiChat",
        "temperature": 0.2,
        "conversation": {"id": "c1"},
    }
    assert loaded.conversation == {"OpenaiChat": {"id": "c2"}}
    # from_dict / from_json give the same chat.
    again = side.chat_class.from_json(chat.to_json(), side.client)
    assert again.to_dict() == side.chat_class.from_dict(chat.to_dict(), side.client).to_dict()
    assert again.to_dict() == chat.to_dict()


def test_save_replaces_the_file(side: Side, tmp_path: Path) -> None:
    path = tmp_path / "chat.json"
    path.write_text("old content that is longer than the new one" * 100, encoding="utf-8")
    chat = side.chat("m", system="ü")
    chat.save(str(path))
    assert json.loads(path.read_text(encoding="utf-8"))["messages"] == [
        {"role": "system", "content": "ü"}
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["chat.json"]  # no temporary file left


@pytest.mark.parametrize(
    "data",
    [
        {"version": 3, "model": "m", "messages": []},
        {"version": True, "model": "m", "messages": []},
        {"model": "m", "messages": []},
        {"version": 1, "model": 5},
        {"version": 1, "model": "m", "messages": "Hello"},
        {"version": 1, "model": "m", "messages": [{"role": "user"}]},
        {"version": 1, "model": "m", "options": ["temperature"]},
        {"version": 1, "model": "m", "conversation": ["state"]},
        {"version": 1, "model": "m", "options": {"messages": []}},
        {"version": 1, "model": "m", "options": {"api_key": "k"}},
        {"version": 1, "model": "m", "options": {"media": []}},
        ["not", "a", "dict"],
    ],
)
def test_from_dict_rejects_bad_data(side: Side, data: Any) -> None:
    with pytest.raises(InvalidInputError):
        side.chat_class.from_dict(data, side.client)


def test_from_json_rejects_invalid_json(side: Side) -> None:
    with pytest.raises(InvalidInputError, match="JSON"):
        side.chat_class.from_json("{not json", side.client)


def test_options_that_are_no_json_cannot_be_saved(side: Side) -> None:
    chat = side.chat("m", temperature=object())
    with pytest.raises(InvalidInputError, match="JSON"):
        chat.to_json()


# Copies, not shared lists


def test_the_callers_lists_are_never_modified(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    history = [user("earlier"), assistant("before")]
    parts = [{"type": "text", "text": "Look at this"}]
    media = [(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16, "a.png")]
    state = {"OpenaiChat": {"id": "c0"}}
    snapshots = copy.deepcopy((history, parts, media, state))
    backendapi_server.reply(Reply.answer("A cat", provider="OpenaiChat", conversation={"id": "c1"}))

    chat = side.chat("gpt-4o", provider="OpenaiChat", messages=history, conversation=state)
    side.ask(chat, parts, media=media)
    side.ask(chat, "More?")

    assert (history, parts, media, state) == snapshots
    assert chat.messages[:3] == [user("earlier"), assistant("before"), user(parts)]
    assert bodies(backendapi_server)[0]["conversation"] == {"id": "c0"}
    assert bodies(backendapi_server)[1]["conversation"] == {"id": "c1"}

    # The chat's data is copied both ways too.
    data = chat.to_dict()
    data["messages"].append(user("injected"))
    data["conversation"]["OpenaiChat"]["id"] = "injected"
    assert user("injected") not in chat.messages
    assert chat.conversation["OpenaiChat"] == {"id": "c1"}
    copy_of_data = chat.to_dict()
    rebuilt = side.chat_class.from_dict(copy_of_data, side.client)
    copy_of_data["messages"][0]["content"] = "changed"
    assert rebuilt.messages[0] == user("earlier")


def test_turn_content_may_be_a_list_of_parts(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    parts = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    chat = side.chat("gpt-4o")
    side.ask(chat, parts)
    assert bodies(backendapi_server)[0]["messages"] == [user(parts)]


# Arguments


def test_bad_arguments_are_rejected_before_any_request(
    side: Side, backendapi_server: BackendApiTestServer
) -> None:
    chat = side.chat("gpt-4o")
    with pytest.raises(InvalidInputError):
        chat.send(42)
    with pytest.raises(InvalidInputError, match="messages"):
        chat.send("Hi", messages=[])
    with pytest.raises(InvalidInputError):
        chat.send("Hi", provider=5)
    for reserved in ("messages", "media", "conversation"):
        with pytest.raises(InvalidInputError, match=reserved):
            side.chat("gpt-4o", **{reserved: "x"})
    with pytest.raises(InvalidInputError):
        side.chat(5)
    with pytest.raises(InvalidInputError):
        side.chat("m", provider=["OpenaiChat"])
    with pytest.raises(InvalidInputError):
        side.chat("m", system=1)
    assert backendapi_server.requests == []
    assert chat.messages == []


def test_a_chat_needs_its_own_kind_of_client(side: Side) -> None:
    other = AsyncChat if side.kind == "sync" else Chat
    with pytest.raises(InvalidInputError, match=other.__name__):
        other(side.client, "gpt-4o")
    with pytest.raises(InvalidInputError):
        side.chat_class("http://localhost:8080", "gpt-4o")


def test_repr_shows_no_api_key(side: Side) -> None:
    chat = side.chat("gpt-4o", provider="OpenaiChat", api_key="sk-secret", system="x")
    text = repr(chat)
    assert "sk-secret" not in text
    assert "gpt-4o" in text and "OpenaiChat" in text


def test_chats_are_exported_without_importing_aiohttp() -> None:
    code = (
        "import sys, backendapi\n"
        "assert backendapi.Chat.__name__ == 'Chat'\n"
        "assert backendapi.AsyncChat.__name__ == 'AsyncChat'\n"
        "assert 'Chat' in backendapi.__all__ and 'AsyncChat' in backendapi.__all__\n"
        "assert 'aiohttp' not in sys.modules, 'aiohttp imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
