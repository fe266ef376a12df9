"""Conversations kept in a SQLite database: :class:`ConversationStore`.

Every exchange (one request and its answer, whether it completed, failed or
was interrupted) is one row of ``exchanges``; the state a chat needs to go
on (its :meth:`~backendapi.Chat.to_dict`) is kept per conversation in
``conversations``. The command line records every turn here, and a
:class:`~backendapi.Chat` or :class:`~backendapi.AsyncChat` given
``store=`` does too::

    store = ConversationStore()                      # the user's data directory
    chat = Chat(client, "gpt-4o", store=store)       # every turn recorded
    chat = Chat.resume(store, client)                # later: the last conversation

Several processes may write to one database at once: it is in WAL mode and
each record is one short ``BEGIN IMMEDIATE`` transaction; a writer that
finds the database locked waits up to ``timeout`` seconds, then raises
:class:`StoreError`. The schema's version is SQLite's ``PRAGMA
user_version``; an older database is migrated when it is opened. The file
is created with mode 0600 (its ``-wal`` and ``-shm`` files take the same
mode) in a directory created with mode 0700. No api key is ever written:
the chats leave it out of what they record.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ._errors import BackendApiError

__all__ = [
    "DB_FILENAME",
    "DEFAULT_STORE_TIMEOUT",
    "HOME_ENV",
    "SCHEMA_VERSION",
    "TIMEOUT_ENV",
    "ConversationStore",
    "StoreError",
    "default_home",
    "default_path",
]

HOME_ENV = "BACKENDAPI_HOME"
"""The environment variable naming the directory that holds the database."""
TIMEOUT_ENV = "BACKENDAPI_DB_TIMEOUT"
"""The environment variable giving how long, in seconds, a writer waits for a locked database."""
DB_FILENAME = "conversations.db"
"""The database's name in that directory."""
DEFAULT_STORE_TIMEOUT = 5.0
"""How long a writer waits for a locked database by default, in seconds."""
SCHEMA_VERSION = 2
"""The schema this version of backendapi writes (``PRAGMA user_version``).

1: conversations (id, name, model, state) and exchanges (prompt, answer,
model, provider, usage, status, error, options, times).
2: each exchange's kind (ask, continue, regenerate, tools), reasoning,
title, finish reason and tool calls; a conversation's provider and the
sequence number of its state (an older state never overwrites a newer one).
"""

STATUSES = ("ok", "error", "interrupted")
"""An exchange's ``status``: it completed, it failed (``error`` says why), or it was cut short."""

_MIGRATIONS: Dict[int, Sequence[str]] = {
    1: (
        """CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            name TEXT,
            model TEXT,
            created_utc TEXT NOT NULL,
            updated_utc TEXT NOT NULL,
            state_json TEXT
        )""",
        """CREATE TABLE exchanges (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id TEXT NOT NULL REFERENCES conversations(id),
            status TEXT NOT NULL,
            error TEXT,
            prompt TEXT,
            system TEXT,
            response TEXT,
            model TEXT,
            provider TEXT,
            usage_json TEXT,
            options_json TEXT,
            started_utc TEXT,
            datetime_utc TEXT NOT NULL,
            duration_ms INTEGER
        )""",
        "CREATE INDEX exchanges_by_conversation ON exchanges (conversation_id, id)",
    ),
    2: (
        "ALTER TABLE conversations ADD COLUMN provider TEXT",
        "ALTER TABLE conversations ADD COLUMN state_seq INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE exchanges ADD COLUMN kind TEXT NOT NULL DEFAULT 'ask'",
        "ALTER TABLE exchanges ADD COLUMN reasoning TEXT",
        "ALTER TABLE exchanges ADD COLUMN title TEXT",
        "ALTER TABLE exchanges ADD COLUMN finish_reason TEXT",
        "ALTER TABLE exchanges ADD COLUMN tool_calls_json TEXT",
    ),
}

_EXCHANGE_COLUMNS = (
    "e.id, e.conversation_id, c.name, e.kind, e.status, e.error, e.model, e.provider, "
    "e.prompt, e.system, e.response, e.reasoning, e.usage_json, e.title, e.finish_reason, "
    "e.tool_calls_json, e.options_json, e.started_utc, e.datetime_utc, e.duration_ms"
)

PathType = Union[str, "os.PathLike[str]"]


class StoreError(BackendApiError):
    """The conversation database could not be read or written (locked, damaged, too new...).

    The message names the database's path and what to do; a record that could
    not be written is not lost silently: the chat keeps it for its next
    :meth:`~backendapi.Chat.flush`.
    """


def default_home() -> str:
    """The directory that holds the database: ``$BACKENDAPI_HOME``, else the data directory.

    As ``llm`` does, the platform's place for a user's application data:
    ``$XDG_DATA_HOME/backendapi`` (default ``~/.local/share/backendapi``) on
    Linux and other Unixes, ``~/Library/Application Support/backendapi`` on
    macOS, ``%APPDATA%\\backendapi`` on Windows.
    """
    home = os.environ.get(HOME_ENV)
    if home:
        return os.path.abspath(os.path.expanduser(home))
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or os.path.expanduser(r"~\AppData\Roaming")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME") or ""
        if not os.path.isabs(base):  # the XDG spec: a relative value is to be ignored
            base = os.path.expanduser("~/.local/share")
    return os.path.join(base, "backendapi")


def default_path() -> str:
    """The database's default path: ``conversations.db`` in :func:`default_home`."""
    return os.path.join(default_home(), DB_FILENAME)


def _timeout_from_env() -> float:
    text = os.environ.get(TIMEOUT_ENV)
    if not text:
        return DEFAULT_STORE_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise StoreError(f"{TIMEOUT_ENV} must be a number of seconds >= 0, not {text!r}")
    return value


def _utc(seconds: Optional[float]) -> Optional[str]:
    if seconds is None:
        return None
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _json(value: Any) -> Optional[str]:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, default=repr)


def _loads(text: Optional[str]) -> Any:
    return None if text is None else json.loads(text)


class ConversationStore:
    """A SQLite database of conversations and their exchanges, safe for several processes.

    >>> store = ConversationStore("/tmp/chats.db")  # doctest: +SKIP
    >>> chat = Chat(client, "gpt-4o", store=store)  # doctest: +SKIP
    >>> store.exchanges(chat.conversation_id)  # doctest: +SKIP

    One connection, opened on first use and shared by the threads of this
    process under a lock (an :class:`AsyncChat` writes from a worker thread).
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: Optional[PathType] = None, *, timeout: Optional[float] = None) -> None:
        """Name the database; nothing is opened before the first read or write.

        Args:
            path: the database file (default: :func:`default_path`, that is
                ``$BACKENDAPI_HOME/conversations.db`` or the platform's data directory).
            timeout: how long a write waits for a database another process
                holds locked before :class:`StoreError` (default
                ``$BACKENDAPI_DB_TIMEOUT``, else 5 seconds).
        """
        if timeout is None:
            timeout = _timeout_from_env()
        elif isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise StoreError(f"timeout must be a number of seconds >= 0, not {timeout!r}")
        self.path: str = os.path.abspath(os.fspath(path) if path is not None else default_path())
        """The database file's absolute path."""
        self.timeout = float(timeout)
        """How long a write waits for a locked database, in seconds."""
        self._lock = threading.Lock()
        self._connection: Optional[sqlite3.Connection] = None

    # -- opening ----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """The open connection; the first call creates and migrates the database."""
        connection = self._connection
        if connection is not None:
            return connection
        directory = os.path.dirname(self.path)
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            # Created here, not by SQLite, so that it is private from the start;
            # SQLite gives the -wal and -shm files the database's own mode. Only
            # a file this call created is opened and closed: closing a descriptor
            # drops every POSIX lock this process holds on the file, those of
            # SQLite connections to it too, and then another process may
            # checkpoint the WAL under them.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StoreError(
                f"cannot create the conversation database {self.path}: {exc.strerror}"
            ) from None
        try:
            connection = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._error(exc, "open") from None
        try:
            # In WAL mode NORMAL cannot corrupt the database; it syncs at
            # checkpoints rather than at every commit, so writers hold the lock
            # for less time (a power cut may lose the last records, no more).
            connection.execute("PRAGMA synchronous=NORMAL")
            self._migrate(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _migrate(self, connection: sqlite3.Connection) -> None:
        """Bring the schema to :data:`SCHEMA_VERSION`, in one transaction per database."""
        try:
            version = self._version(connection)
            if version == SCHEMA_VERSION:
                return
            # Before the transaction: the journal mode cannot change inside one. WAL
            # lets readers go on while one process writes.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("BEGIN IMMEDIATE")
            try:
                version = self._version(connection)  # another process may have done it
                if version == 0:
                    tables = connection.execute(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                    ).fetchone()[0]
                    if tables:
                        raise StoreError(
                            f"{self.path} is not a backendapi conversation database (it holds "
                            "tables but no schema version); give another path with --db "
                            f"or {HOME_ENV}"
                        )
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[step]:
                        connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._error(exc, "open") from None

    def _version(self, connection: sqlite3.Connection) -> int:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the conversation database {self.path} has schema version {version}, written "
                f"by a newer backendapi (this one reads versions up to {SCHEMA_VERSION}); "
                "upgrade backendapi"
            )
        return version

    def _error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StoreError(
                f"the conversation database {self.path} is locked: another process held it "
                f"for more than {self.timeout:g} s, so the {doing} failed (set {TIMEOUT_ENV} "
                "to wait longer)"
            )
        return StoreError(f"the conversation database {self.path}: {doing} failed: {text}")

    def schema_version(self) -> int:
        """The database's ``PRAGMA user_version`` (after any migration: :data:`SCHEMA_VERSION`)."""
        with self._lock:
            return self._version(self._connect())

    def close(self) -> None:
        """Close the connection; the store opens it again if it is used afterwards."""
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.close()

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ConversationStore({self.path!r})"

    # -- writing ----------------------------------------------------------------------------

    @staticmethod
    def new_conversation_id() -> str:
        """A new conversation id: 26 lowercase hex digits, sorting by creation time."""
        return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(7)}"

    def add(self, record: Mapping[str, Any]) -> int:
        """Write one exchange (and its conversation's state) in one transaction; return its id.

        ``record`` has the keys :meth:`exchanges` returns (``conversation_id``,
        ``kind``, ``status``, ``error``, ``model``, ``provider``, ``prompt``,
        ``system``, ``response``, ``reasoning``, ``usage``, ``title``,
        ``finish_reason``, ``tool_calls``, ``options``, with ``started`` and
        ``ended`` as Unix times), plus ``state`` (the chat's ``to_dict()``
        after the exchange) and ``seq`` (its order in the chat: a state is
        kept only if no later one was written). Missing keys are empty. Raises
        :class:`StoreError` if the database stays locked past ``timeout``.
        """
        cid = record.get("conversation_id")
        if not isinstance(cid, str) or not cid:
            raise StoreError("an exchange needs a conversation_id (a non-empty str)")
        status = record.get("status", "ok")
        if status not in STATUSES:
            raise StoreError(f"an exchange's status is one of {STATUSES}, not {status!r}")
        ended = record.get("ended")
        ended = time.time() if ended is None else float(ended)
        started = record.get("started")
        duration = None if started is None else max(0, round((ended - float(started)) * 1000))
        state = record.get("state")
        seq = int(record.get("seq") or 0)
        title = record.get("title")
        row = (
            cid,
            record.get("kind") or "ask",
            status,
            record.get("error"),
            record.get("prompt"),
            record.get("system"),
            record.get("response"),
            record.get("reasoning"),
            record.get("model"),
            record.get("provider"),
            _json(record.get("usage")),
            title,
            record.get("finish_reason"),
            _json(record.get("tool_calls") or None),
            _json(record.get("options") or None),
            _utc(None if started is None else float(started)),
            _utc(ended),
            duration,
        )
        now = _utc(ended)
        with self._lock:
            connection = self._connect()
            try:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    connection.execute(
                        "INSERT INTO conversations (id, name, model, provider, created_utc, "
                        "updated_utc, state_json, state_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT(id) DO UPDATE SET updated_utc = excluded.updated_utc, "
                        "name = coalesce(excluded.name, name), "
                        "model = coalesce(excluded.model, model), "
                        "provider = coalesce(excluded.provider, provider)",
                        (
                            cid,
                            title,
                            record.get("model"),
                            record.get("provider"),
                            now,
                            now,
                            None,
                            -1,
                        ),
                    )
                    if state is not None:
                        connection.execute(
                            "UPDATE conversations SET state_json = ?, state_seq = ? "
                            "WHERE id = ? AND state_seq <= ?",
                            (_json(state), seq, cid, seq),
                        )
                    cursor = connection.execute(
                        "INSERT INTO exchanges (conversation_id, kind, status, error, prompt, "
                        "system, response, reasoning, model, provider, usage_json, title, "
                        "finish_reason, tool_calls_json, options_json, started_utc, "
                        "datetime_utc, duration_ms) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        row,
                    )
                    connection.execute("COMMIT")
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._error(exc, "write of the exchange") from None
        rowid = cursor.lastrowid
        assert rowid is not None
        return rowid

    # -- reading ----------------------------------------------------------------------------

    def _query(self, sql: str, parameters: Sequence[Any] = ()) -> List[Any]:
        with self._lock:
            connection = self._connect()
            try:
                return connection.execute(sql, parameters).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc, "read") from None

    def last_conversation_id(self) -> Optional[str]:
        """The id of the conversation of the latest exchange, or None when there is none."""
        rows = self._query("SELECT conversation_id FROM exchanges ORDER BY id DESC LIMIT 1")
        return str(rows[0][0]) if rows else None

    def conversation(self, conversation_id: str) -> Optional[Dict[str, Any]]:
        """One conversation, or None: ``{id, name, model, provider, created_utc,
        updated_utc, exchanges, state}``, ``state`` being the chat's ``to_dict()``
        after its latest exchange (None if it has none)."""
        rows = self._query(
            "SELECT c.id, c.name, c.model, c.provider, c.created_utc, c.updated_utc, "
            "(SELECT count(*) FROM exchanges e WHERE e.conversation_id = c.id), c.state_json "
            "FROM conversations c WHERE c.id = ?",
            (conversation_id,),
        )
        if not rows:
            return None
        return self._conversation(rows[0], with_state=True)

    def conversations(self, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """The latest ``limit`` conversations (all for None), most recently updated first.

        Each as :meth:`conversation` gives it, without ``state``.
        """
        rows = self._query(
            "SELECT c.id, c.name, c.model, c.provider, c.created_utc, c.updated_utc, "
            "(SELECT count(*) FROM exchanges e WHERE e.conversation_id = c.id), NULL "
            "FROM conversations c ORDER BY c.updated_utc DESC, c.rowid DESC LIMIT ?",
            (-1 if limit is None else limit,),
        )
        return [self._conversation(row, with_state=False) for row in rows]

    @staticmethod
    def _conversation(row: Sequence[Any], *, with_state: bool) -> Dict[str, Any]:
        keys = ("id", "name", "model", "provider", "created_utc", "updated_utc", "exchanges")
        result = dict(zip(keys, row))
        if with_state:
            result["state"] = _loads(row[7])
        return result

    def exchanges(
        self, conversation_id: Optional[str] = None, limit: Optional[int] = None
    ) -> List[Dict[str, Any]]:
        """The latest ``limit`` exchanges (all for None), oldest first; one conversation's
        with ``conversation_id``.

        Each is ``{id, conversation_id, conversation_name, kind, status, error,
        model, provider, prompt, system, response, reasoning, usage, title,
        finish_reason, tool_calls, options, started_utc, datetime_utc,
        duration_ms}``; ``status`` is ``"ok"``, ``"error"`` or ``"interrupted"``.
        """
        where = "WHERE e.conversation_id = ?" if conversation_id is not None else ""
        parameters: List[Any] = [] if conversation_id is None else [conversation_id]
        parameters.append(-1 if limit is None else limit)
        rows = self._query(
            f"SELECT {_EXCHANGE_COLUMNS} FROM exchanges e "
            f"JOIN conversations c ON c.id = e.conversation_id {where} "
            "ORDER BY e.id DESC LIMIT ?",
            parameters,
        )
        keys = (
            "id",
            "conversation_id",
            "conversation_name",
            "kind",
            "status",
            "error",
            "model",
            "provider",
            "prompt",
            "system",
            "response",
            "reasoning",
            "usage",
            "title",
            "finish_reason",
            "tool_calls",
            "options",
            "started_utc",
            "datetime_utc",
            "duration_ms",
        )
        result = []
        for row in reversed(rows):
            item = dict(zip(keys, row))
            item["usage"] = _loads(item["usage"])
            item["tool_calls"] = _loads(item["tool_calls"]) or []
            item["options"] = _loads(item["options"]) or {}
            result.append(item)
        return result
