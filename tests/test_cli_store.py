"""Conversations kept in SQLite: ``backendapi chat -c/--cid``, ``backendapi logs``, several
writers at once, a locked database, migration, the file's mode and contents, and ``Chat`` /
``AsyncChat`` with a ``ConversationStore`` over both clients."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple
from unittest import mock

import pytest
from processes import child_env, ended

from backendapi import (
    AsyncBackendApiClient,
    AsyncChat,
    BackendApiClient,
    Chat,
    ConversationStore,
    StoreError,
    StreamError,
)
from backendapi._cli import main
from backendapi._store import SCHEMA_VERSION, default_home
from backendapi.testing import BackendApiTestServer, Hold, Reply

TIMEOUT = 20
KEY = "sk-store-test-7f3a9c2e1b"
ERROR = {"type": "error", "error": "RuntimeError", "message": "the provider broke"}


@pytest.fixture(scope="module")
def server() -> Iterator[BackendApiTestServer]:
    """One test server for the module (replies are queued per test, in order)."""
    with BackendApiTestServer() as started:
        yield started


def cli(*args: str, env: Dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backendapi", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env if env is not None else child_env(),
        timeout=TIMEOUT,
    )


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> Tuple[int, str, str]:
    """The command line in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    # Standard input that is no terminal is read as part of the prompt: give it nothing.
    with mock.patch.object(sys, "stdin", io.StringIO("")):
        code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def logs_json(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> List[Dict[str, Any]]:
    code, out, err = run_main(capsys, "logs", "--json", "--db", str(db), *args)
    assert (code, err) == (0, "")
    result: List[Dict[str, Any]] = json.loads(out)
    return result


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- the command line ---------------------------------------------------------------------


def test_chat_c_continues_the_last_conversation_after_a_restart(
    server: BackendApiTestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "data" / "conversations.db"
    server.reply(Reply.answer("Paris.", conversation={"id": "c-1"}, title="Capitals"))
    first = cli("chat", "Capital of France?", "--system", "Be brief", "--base-url", server.url,
                "--db", str(db))  # fmt: skip
    assert (first.returncode, first.stdout, first.stderr) == (0, "Paris.\n", "")
    assert mode(db) == 0o600 and mode(db.parent) == 0o700

    before = len(server.requests)
    server.reply(Reply.answer("Berlin."))
    second = cli("chat", "-c", "And Germany?", "--base-url", server.url, "--db", str(db))
    assert (second.returncode, second.stdout, second.stderr) == (0, "Berlin.\n", "")
    body = server.requests[before].json
    assert body["messages"] == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And Germany?"},
    ]
    assert body["conversation"] == {"ScriptedProvider": {"id": "c-1"}}

    exchanges = logs_json(capsys, db, "-c")
    assert [(e["prompt"], e["response"], e["status"]) for e in exchanges] == [
        ("Capital of France?", "Paris.", "ok"),
        ("And Germany?", "Berlin.", "ok"),
    ]
    cid = exchanges[0]["conversation_id"]
    assert exchanges[1]["conversation_id"] == cid
    first_record = exchanges[0]
    assert first_record["conversation_name"] == "Capitals"
    assert (first_record["model"], first_record["provider"]) == ("scripted-1", "ScriptedProvider")
    assert first_record["system"] == "Be brief"
    assert first_record["usage"]["completion_tokens"] == 2
    assert first_record["datetime_utc"].endswith("Z") and first_record["duration_ms"] >= 0

    # --cid picks a conversation by id, in this process this time: the third turn.
    server.reply(Reply.answer("Rome."))
    code, out, _ = run_main(capsys, "chat", "--cid", cid, "And Italy?", "--base-url",
                            server.url, "--db", str(db))  # fmt: skip
    assert (code, out) == (0, "Rome.\n")
    assert len(server.requests[-1].json["messages"]) == 6

    code, out, err = run_main(capsys, "logs", "--db", str(db), "-n", "1")
    assert (code, err) == (0, "")
    assert f"conversation: {cid}" in out
    assert "## Prompt\n\nAnd Italy?\n" in out and "## Response\n\nRome.\n" in out
    code, out, _ = run_main(capsys, "logs", "conversations", "--db", str(db))
    assert out.startswith(f"{cid}  ") and "3 exchanges" in out

    code, _, err = run_main(capsys, "chat", "--cid", "nope", "x", "--base-url", server.url,
                            "--db", str(db))  # fmt: skip
    assert code == 2 and "there is no conversation 'nope'" in err


def test_failed_and_interrupted_turns_are_recorded_and_marked(
    server: BackendApiTestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "conversations.db"
    server.reply(Reply([{"type": "content", "content": "half an answer"}, ERROR]))
    code, out, err = run_main(capsys, "chat", "Hi", "--base-url", server.url, "--db", str(db))
    assert code == 1 and out == "half an answer\n" and "the provider broke" in err

    # Ctrl-C in the middle of an answer: the partial answer is recorded, marked interrupted.
    server.reply(Reply([{"type": "content", "content": "first"}, Hold()]))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backendapi",
            "chat",
            "-c",
            "Again",
            "--base-url",
            server.url,
            "--db",
            str(db),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    with ended(process):
        assert process.stdout is not None
        assert process.stdout.read(len(b"first")) == b"first"
        process.send_signal(signal.SIGINT)
        assert process.wait(TIMEOUT) == 130

    exchanges = logs_json(capsys, db, "-n", "0")
    assert [(e["prompt"], e["response"], e["status"]) for e in exchanges] == [
        ("Hi", "half an answer", "error"),
        ("Again", "first", "interrupted"),
    ]
    assert "the provider broke" in exchanges[0]["error"]
    assert exchanges[1]["error"] == "interrupted (Ctrl-C)"
    # A failed turn leaves the history as it was: -c went on from the same state.
    assert exchanges[0]["conversation_id"] == exchanges[1]["conversation_id"]
    assert server.requests[-1].json["messages"] == [{"role": "user", "content": "Again"}]

    code, out, _ = run_main(capsys, "logs", "--db", str(db), "--short", "-n", "0")
    lines = out.splitlines()
    assert len(lines) == 2 and "[error]" in lines[0] and "[interrupted]" in lines[1]
    code, out, _ = run_main(capsys, "logs", "--db", str(db), "-n", "0")
    assert "Status: **interrupted**: interrupted (Ctrl-C)" in out


WRITER = """
import sys
from backendapi._cli import main
url, db, name = sys.argv[1:]
codes = [main(["chat", f"{name}-{n}", "--base-url", url, "--db", db]) for n in range(25)]
sys.exit(max(codes))
"""


def test_four_processes_writing_at_once_lose_nothing(
    server: BackendApiTestServer, tmp_path: Path
) -> None:
    db = tmp_path / "conversations.db"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, server.url, str(db), f"w{index}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=child_env(),
        )
        for index in range(4)
    ]
    for writer in writers:
        with ended(writer):
            assert writer.stderr is not None
            _, err = writer.communicate(timeout=60)
            assert (writer.returncode, err) == (0, b"")
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        prompts = sorted(row[0] for row in connection.execute("SELECT prompt FROM exchanges"))
    connection.close()
    assert prompts == sorted(f"w{i}-{n}" for i in range(4) for n in range(25))


def test_a_locked_database_is_waited_for_then_reported_on_stderr(
    server: BackendApiTestServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = tmp_path / "conversations.db"
    ConversationStore(db).schema_version()  # created
    monkeypatch.setenv("BACKENDAPI_DB_TIMEOUT", "0.3")
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        code, out, err = run_main(capsys, "chat", "Hi", "--base-url", server.url, "--db", str(db))
        waited = time.monotonic() - started
    finally:
        holder.close()
    assert code == 1
    assert out == "Hello from the test server\n"  # the answer itself is not held back
    assert err.startswith("backendapi: error: the exchange was not recorded: ")
    assert str(db) in err and "locked" in err and "BACKENDAPI_DB_TIMEOUT" in err
    assert 0.3 <= waited < 4
    # Once the lock is gone, the next turn is recorded.
    code, _, err = run_main(capsys, "chat", "Hi", "--base-url", server.url, "--db", str(db))
    assert (code, err) == (0, "")
    assert len(ConversationStore(db).exchanges()) == 1


# -- the database itself ------------------------------------------------------------------

VERSION_1 = """
CREATE TABLE conversations (id TEXT PRIMARY KEY, name TEXT, model TEXT,
    created_utc TEXT NOT NULL, updated_utc TEXT NOT NULL, state_json TEXT);
CREATE TABLE exchanges (id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id), status TEXT NOT NULL,
    error TEXT, prompt TEXT, system TEXT, response TEXT, model TEXT, provider TEXT,
    usage_json TEXT, options_json TEXT, started_utc TEXT, datetime_utc TEXT NOT NULL,
    duration_ms INTEGER);
CREATE INDEX exchanges_by_conversation ON exchanges (conversation_id, id);
PRAGMA user_version = 1;
"""
"""The schema of version 1, frozen here as it was: what an older backendapi left behind."""


def test_a_version_1_database_is_migrated_and_continued(
    server: BackendApiTestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "old.db"
    state = {"version": 1, "model": "old-model", "provider": None, "options": {},
             "messages": [{"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello"}],
             "conversation": {}}  # fmt: skip
    with sqlite3.connect(db) as connection:
        connection.executescript(VERSION_1)
        connection.execute(
            "INSERT INTO conversations VALUES ('old', NULL, 'old-model', '2024-01-01T00:00:00Z',"
            " '2024-01-01T00:00:00Z', ?)",
            (json.dumps(state),),
        )
        connection.execute(
            "INSERT INTO exchanges (conversation_id, status, prompt, response, model,"
            " datetime_utc) VALUES ('old', 'ok', 'Hi', 'Hello', 'old-model',"
            " '2024-01-01T00:00:00Z')"
        )
    connection.close()

    store = ConversationStore(db)
    assert store.schema_version() == SCHEMA_VERSION == 2
    [old] = store.exchanges()
    assert (old["prompt"], old["response"], old["kind"], old["reasoning"]) == (
        "Hi", "Hello", "ask", None)  # fmt: skip
    store.close()

    server.reply(Reply.answer("Again."))
    code, out, _ = run_main(capsys, "chat", "-c", "Once more", "--base-url", server.url,
                            "--db", str(db))  # fmt: skip
    assert (code, out) == (0, "Again.\n")
    assert server.requests[-1].json["model"] == "old-model"
    assert server.requests[-1].json["messages"][:2] == state["messages"]
    assert [e["prompt"] for e in logs_json(capsys, db, "--cid", "old")] == ["Hi", "Once more"]


def test_an_empty_or_newer_or_foreign_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()  # version 0: nothing yet
    assert ConversationStore(empty).schema_version() == SCHEMA_VERSION

    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as connection:
        connection.execute("PRAGMA user_version = 99")
    connection.close()
    code, _, err = run_main(capsys, "logs", "--db", str(newer))
    assert code == 1 and "schema version 99" in err and "upgrade backendapi" in err

    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE t (x)")
    connection.close()
    with pytest.raises(StoreError, match="not a backendapi conversation database"):
        ConversationStore(foreign).schema_version()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_database_and_its_wal_and_shm_files_are_private(tmp_path: Path) -> None:
    db = tmp_path / "new" / "conversations.db"
    umask = os.umask(0)  # whatever the umask, the files are 0600
    try:
        store = ConversationStore(db)
        store.add({"conversation_id": "c", "prompt": "Hi", "response": "Hello"})
    finally:
        os.umask(umask)
    try:
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
        assert {path.name: mode(path) for path in files} == {path.name: 0o600 for path in files}
        assert mode(db.parent) == 0o700
    finally:
        store.close()


def test_the_api_key_is_never_written(
    server: BackendApiTestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "conversations.db"
    # A server that echoes the key back, in the answer, its state, its title and an error.
    server.reply(
        Reply.answer(f"your key is {KEY}", conversation={"token": KEY}, title=KEY),
        Reply([{"type": "content", "content": KEY}, {**ERROR, "message": f"bad key {KEY}"}]),
    )
    assert run_main(capsys, "chat", KEY, "--api-key", KEY, "--base-url", server.url,
                    "--db", str(db))[0] == 0  # fmt: skip
    assert run_main(capsys, "chat", "-c", "Hi", "--api-key", KEY, "--base-url", server.url,
                    "--db", str(db))[0] == 1  # fmt: skip
    assert server.requests[-1].json["api_key"] == KEY  # it was sent, and echoed
    exchanges = logs_json(capsys, db, "-c")
    assert [e["status"] for e in exchanges] == ["ok", "error"]
    assert exchanges[0]["response"] == "your key is ***"
    data = b"".join(path.read_bytes() for path in tmp_path.iterdir())
    assert len(data) > 4096
    assert KEY.encode() not in data
    assert KEY.encode("utf-16-le") not in data


def test_the_default_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BACKENDAPI_HOME", str(tmp_path))
    assert default_home() == str(tmp_path)
    monkeypatch.delenv("BACKENDAPI_HOME")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
        assert default_home() == str(tmp_path / "xdg" / "backendapi")
        monkeypatch.setenv("XDG_DATA_HOME", "relative")  # ignored, as the spec says
        assert default_home() == os.path.expanduser("~/.local/share/backendapi")


# -- Chat and AsyncChat -------------------------------------------------------------------


class WatchedStore(ConversationStore):
    """A store that notes the thread each write ran in."""

    threads: List[int]

    def add(self, record: Any) -> int:
        self.threads.append(threading.get_ident())
        return super().add(record)


def chat_session(kind: str, url: str, store: ConversationStore) -> Tuple[str, int]:
    """Through ``kind``'s chat: an answer, a failed turn, a stream closed early, continue_,
    regenerate, then resume(). Returns (the conversation id, the thread of the chat)."""
    if kind == "sync":
        with BackendApiClient(url, api_key=KEY) as client:
            chat = Chat(client, "m", store=store)
            chat.ask("one")
            with pytest.raises(StreamError):
                chat.ask("two")
            with chat.send("three") as stream:
                next(iter(stream))
            chat.flush()
            chat.continue_()
            chat.regenerate()
            again = Chat.resume(store, client)
            assert again.messages == chat.messages
            return str(chat.conversation_id), threading.get_ident()

    async def session() -> Tuple[str, int]:
        async with AsyncBackendApiClient(url, api_key=KEY) as client:
            chat = AsyncChat(client, "m", store=store)
            await chat.ask("one")
            with pytest.raises(StreamError):
                await chat.ask("two")
            async with chat.send("three") as stream:
                await stream.__anext__()
            await chat.flush()
            await chat.continue_()
            await chat.regenerate()
            again = await AsyncChat.resume(store, client)
            assert again.messages == chat.messages
            return str(chat.conversation_id), threading.get_ident()

    return asyncio.run(session())


def test_chat_records_every_turn_in_a_store(
    client_kind: str, server: BackendApiTestServer, tmp_path: Path
) -> None:
    store = WatchedStore(tmp_path / "conversations.db")
    store.threads = []
    server.reply(
        Reply.answer("One."),
        Reply([ERROR]),
        Reply([{"type": "content", "content": "Thr"}, Hold()]),
        Reply.answer(" and more."),
        Reply.answer("Uno."),
    )
    cid, chat_thread = chat_session(client_kind, server.url, store)
    exchanges = store.exchanges(cid)
    assert [(e["kind"], e["status"], e["prompt"], e["response"]) for e in exchanges] == [
        ("ask", "ok", "one", "One."),
        ("ask", "error", "two", ""),
        ("ask", "interrupted", "three", "Thr"),
        ("continue", "ok", None, " and more."),
        ("regenerate", "ok", "one", "Uno."),
    ]
    assert exchanges[2]["error"] == "closed before the end of the answer"
    state = store.conversation(cid)
    assert state is not None and state["state"]["messages"] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "Uno."},
    ]
    assert state["state"]["variants"] == [
        {"index": 1, "messages": [{"role": "assistant", "content": "One. and more."}]}
    ]
    # The blocking chat writes where it runs; the async one off the event loop.
    assert store.threads and len(store.threads) == 5
    if client_kind == "sync":
        assert set(store.threads) == {chat_thread}
    else:
        assert chat_thread not in store.threads
    store.close()
    assert KEY.encode() not in (tmp_path / "conversations.db").read_bytes()
