"""``backendapi chat`` on a terminal: a session that survives failed and interrupted turns,
slash commands and multi-line input, through a pseudo-terminal against the test server."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any, Dict, List

import pytest
from terminal import TIMEOUT, cli_in_a_terminal, interrupt_at_the_prompt

from backendapi import BackendApiClient, Chat, StreamError, __version__
from backendapi._cli_chat import ChatSession, TurnOutcome
from backendapi.testing import BackendApiTestServer, Hold, Reply


def user(text: str) -> Dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> Dict[str, str]:
    return {"role": "assistant", "content": text}


def error_event(message: str) -> Dict[str, Any]:
    return {"type": "error", "error": "RuntimeError", "message": message}


def test_a_failed_turn_keeps_the_history_and_returns_to_the_prompt(
    backendapi_server: BackendApiTestServer,
) -> None:
    backendapi_server.reply(
        Reply.answer("Paris."),
        Reply([{"type": "content", "content": "Some"}, error_event("provider overloaded")]),
        Reply.answer("About two million."),
        Reply.answer("Red."),
    )
    url = backendapi_server.url
    with cli_in_a_terminal("chat", "-s", "Be brief.", BACKENDAPI_BASE_URL=url) as (
        process,
        terminal,
    ):
        banner = terminal.read_until("> ")
        assert f"backendapi {__version__}" in banner
        assert "model: (the server picks)" in banner
        assert "provider: (the server picks)" in banner
        assert f"server: {url}" in banner
        assert "/help" in banner
        terminal.write("\n")  # an empty line does nothing: a new prompt, no request
        terminal.write("   \n")
        terminal.read_until("> ")
        terminal.read_until("> ")
        terminal.write("Capital of France?\n")
        terminal.read_until("Paris.")
        terminal.read_until("> ")
        terminal.write("How many live there?\n")
        shown = terminal.read_until("> ")
        assert "backendapi: error: " in shown
        assert "provider overloaded" in shown
        assert "/retry" in shown
        terminal.write("/retry\n")  # sends the failed question again
        terminal.read_until("About two million.")
        terminal.read_until("> ")
        terminal.write("Colour of the sky at sunset?\n")
        terminal.read_until("Red.")
        terminal.read_until("> ")
        terminal.write("\x04")  # Ctrl-D
        assert process.wait(TIMEOUT) == 0
    sent = [request.json["messages"] for request in backendapi_server.requests]
    system = {"role": "system", "content": "Be brief."}
    asked = [system, user("Capital of France?"), assistant("Paris.")]
    assert sent == [
        [system, user("Capital of France?")],
        [*asked, user("How many live there?")],
        [*asked, user("How many live there?")],
        [
            *asked,
            user("How many live there?"),
            assistant("About two million."),
            user("Colour of the sky at sunset?"),
        ],
    ]


def test_ctrl_c_stops_the_answer_and_returns_to_the_prompt(
    backendapi_server: BackendApiTestServer,
) -> None:
    backendapi_server.reply(
        Reply([{"type": "content", "content": "A very long"}, Hold()]),
        Reply.answer("Short."),
    )
    with cli_in_a_terminal("chat", BACKENDAPI_BASE_URL=backendapi_server.url) as (
        process,
        terminal,
    ):
        terminal.read_until("> ")
        terminal.write("Tell me everything.\n")
        terminal.read_until("A very long")  # the server holds the rest back
        held = backendapi_server.requests[0]
        assert not held.disconnected.is_set()
        process.send_signal(signal.SIGINT)
        shown = terminal.read_until("> ")
        assert "interrupted" in shown
        assert held.disconnected.wait(5)  # the answer's connection was closed
        assert process.poll() is None
        terminal.write("Then in short?\n")
        terminal.read_until("Short.")
        terminal.read_until("> ")
        assert interrupt_at_the_prompt(process) == 0  # Ctrl-C at an empty prompt ends
    second = backendapi_server.requests[1].json["messages"]
    assert second == [user("Then in short?")]  # the interrupted turn is not in the history


def test_slash_commands(backendapi_server: BackendApiTestServer, tmp_path: Path) -> None:
    backendapi_server.add_provider("Other", ["other-1"])
    backendapi_server.reply(
        Reply.answer("One."),
        Reply.answer("Uno."),
        Reply.answer("After clearing."),
        Reply.answer("After loading."),
    )
    saved = tmp_path / "chat one.json"
    with cli_in_a_terminal("chat", BACKENDAPI_BASE_URL=backendapi_server.url) as (
        process,
        terminal,
    ):
        terminal.read_until("> ")
        terminal.write("/help\n")
        shown = terminal.read_until("> ")
        for command in ("/bye", "/clear", "/save FILE", "/load FILE", "/retry", "/model"):
            assert command in shown
        assert "/provider" in shown
        terminal.write("/model other-1\n")
        assert "model: other-1" in terminal.read_until("> ")
        terminal.write("/provider Other\n")
        assert "provider: Other" in terminal.read_until("> ")
        terminal.write("/frobnicate\n")
        assert "unknown command /frobnicate" in terminal.read_until("> ")
        terminal.write("First?\n")
        terminal.read_until("One.")
        terminal.read_until("> ")
        terminal.write("/retry\n")  # another answer to the same question
        terminal.read_until("Uno.")
        terminal.read_until("> ")
        terminal.write(f"/save {saved}\n")
        assert "saved" in terminal.read_until("> ")
        terminal.write("/clear\n")
        terminal.read_until("> ")
        terminal.write("Fresh?\n")
        terminal.read_until("After clearing.")
        terminal.read_until("> ")
        terminal.write(f"/load {saved}\n")
        assert "loaded 1 question" in terminal.read_until("> ")
        terminal.write(f"/load {tmp_path / 'missing.json'}\n")
        assert "cannot load a chat from" in terminal.read_until("> ")
        terminal.write("Again?\n")
        terminal.read_until("After loading.")
        terminal.read_until("> ")
        terminal.write("/bye\n")
        assert process.wait(TIMEOUT) == 0
    requests = [request.json for request in backendapi_server.requests]
    assert len(requests) == 4  # no command was sent as a prompt
    assert {(r["model"], r["provider"]) for r in requests} == {("other-1", "Other")}
    assert requests[1]["action"] == "variant"
    assert requests[1]["messages"] == [user("First?")]
    assert requests[2]["messages"] == [user("Fresh?")]
    assert requests[3]["messages"] == [user("First?"), assistant("Uno."), user("Again?")]
    assert json.loads(saved.read_text(encoding="utf-8"))["messages"] == [
        user("First?"),
        assistant("Uno."),
    ]


def test_multi_line_input(backendapi_server: BackendApiTestServer) -> None:
    backendapi_server.reply(Reply.answer("Got the poem."), Reply.answer("Got one line."))
    with cli_in_a_terminal("chat", BACKENDAPI_BASE_URL=backendapi_server.url) as (
        process,
        terminal,
    ):
        terminal.read_until("> ")
        terminal.write('"""\n')
        terminal.read_until("... ")
        terminal.write("/help is not a command here\n")
        terminal.read_until("... ")
        terminal.write("\n")
        terminal.read_until("... ")
        terminal.write('second verse"""\n')
        terminal.read_until("Got the poem.")
        terminal.read_until("> ")
        terminal.write('"""just one line"""\n')
        terminal.read_until("Got one line.")
        terminal.read_until("> ")
        terminal.write("/bye\n")
        assert process.wait(TIMEOUT) == 0
    sent = [request.json["messages"][-1]["content"] for request in backendapi_server.requests]
    assert sent == ["/help is not a command here\n\nsecond verse", "just one line"]


def test_every_turn_ends_in_one_outcome(
    backendapi_server: BackendApiTestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Completed and failed turns both reach ChatSession.turn_hooks, with the chat's state."""
    backendapi_server.reply(
        Reply.answer("Fine.", title="Hello"),
        Reply([{"type": "content", "content": "Half"}, error_event("provider down")]),
    )
    outcomes: List[TurnOutcome] = []
    with BackendApiClient(backendapi_server.url) as client:
        session = ChatSession(Chat(client), verbose=True)
        session.turn_hooks.append(outcomes.append)
        session.one_shot("How are you?")
        with pytest.raises(StreamError):
            session.one_shot("And then?")
    completed, failed = outcomes
    assert (completed.kind, completed.prompt, completed.status) == (
        "send",
        "How are you?",
        "completed",
    )
    assert (completed.answer.text, completed.answer.title, completed.error) == (
        "Fine.",
        "Hello",
        None,
    )
    assert (failed.status, failed.answer.text, failed.interrupted) == ("failed", "Half", False)
    assert failed.error is not None and "provider down" in failed.error
    assert failed.chat.messages == [user("How are you?"), assistant("Fine.")]
    assert completed.started <= completed.ended <= failed.started <= failed.ended
    assert "title: Hello" in capsys.readouterr().err  # -v reports from the same place
