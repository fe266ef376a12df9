"""The command line's conversation database: ``chat -c/--cid/--db/--no-log`` and ``logs``.

``backendapi/_cli.py`` builds the chat of a command with :func:`open_chat`
and, after every turn (completed, failed or interrupted), calls
:func:`record_turn`; ``backendapi logs`` lists and shows what was recorded.
The database is :class:`~backendapi.ConversationStore`'s (``_store.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import IO, Any, Dict, Iterator, List, Optional

from ._errors import InvalidInputError
from ._store import HOME_ENV, TIMEOUT_ENV, ConversationStore, StoreError, default_path
from ._sync.chat import Chat
from ._sync.client import BackendApiClient

__all__ = ["add_chat_arguments", "add_logs_command", "open_chat", "record_turn"]

PROG = "backendapi"
DEFAULT_LOGS_COUNT = 3
DEFAULT_CONVERSATIONS_COUNT = 20
LOGS_EXAMPLES = """\
examples:
  backendapi logs                  the last 3 exchanges, in full
  backendapi logs -c -n 0          every exchange of the last conversation
  backendapi logs --cid ID --json  one conversation's exchanges as a JSON array
  backendapi logs conversations    the latest conversations, one per line
  backendapi logs path             where the database is
"""


def _db_help() -> str:
    return (
        f"the conversation database (default: ${HOME_ENV}/conversations.db, else "
        f"{default_path()}); a locked one is waited for ${TIMEOUT_ENV} seconds (default 5)"
    )


def add_chat_arguments(chat: argparse.ArgumentParser) -> None:
    """``chat``'s options for the database: ``-c``, ``--cid``, ``--db``, ``--no-log``."""
    group = chat.add_argument_group(
        "conversations", "every exchange is recorded in a database: see `backendapi logs`"
    )
    which = group.add_mutually_exclusive_group()
    which.add_argument(
        "-c",
        "--continue",
        dest="continue_last",
        action="store_true",
        help="continue the last conversation",
    )
    which.add_argument("--cid", metavar="ID", help="continue the conversation with this id")
    group.add_argument("--db", metavar="PATH", help=_db_help())
    group.add_argument(
        "--no-log", action="store_true", help="record nothing of this chat in the database"
    )


def add_logs_command(commands: Any) -> None:
    """The ``logs`` subcommand, added to ``commands`` (the parser's subparsers)."""
    logs = commands.add_parser(
        "logs",
        help="list and show the recorded conversations",
        description=(
            "Show what `backendapi chat` recorded: the last exchanges in full (list, the "
            "default), the latest conversations one per line (conversations), or the "
            "database's path (path). Failed and interrupted exchanges are marked so."
        ),
        epilog=LOGS_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    logs.add_argument(
        "action",
        nargs="?",
        choices=("list", "conversations", "path"),
        default="list",
        help="what to show (default: list)",
    )
    logs.add_argument(
        "-n",
        "--count",
        type=_count,
        metavar="N",
        help=f"how many, latest first (default {DEFAULT_LOGS_COUNT} exchanges, "
        f"{DEFAULT_CONVERSATIONS_COUNT} conversations; 0 for all)",
    )
    which = logs.add_mutually_exclusive_group()
    which.add_argument(
        "-c",
        "--current",
        dest="continue_last",
        action="store_true",
        help="only the last conversation's exchanges",
    )
    which.add_argument("--cid", metavar="ID", help="only this conversation's exchanges")
    logs.add_argument("--short", action="store_true", help="one line per exchange")
    logs.add_argument("--json", action="store_true", help="a JSON array")
    logs.add_argument("--db", metavar="PATH", help=_db_help())
    logs.set_defaults(handler=logs_command)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def _store(args: argparse.Namespace) -> ConversationStore:
    return ConversationStore(args.db)


# -- chat ------------------------------------------------------------------------------------


@contextlib.contextmanager
def open_chat(args: argparse.Namespace, client: BackendApiClient) -> Iterator[Chat]:
    """The chat of a ``backendapi chat`` command, recording into the database.

    A context manager: the database is closed on the way out.

    A new conversation; or, with ``-c``, the last one, with ``--cid ID``
    that one (``-m`` and ``-p`` then change its model and provider). With
    ``--no-log`` nothing is recorded (a conversation is still read for
    ``-c``/``--cid``). Raises :class:`InvalidInputError` (a usage error) for
    a conversation that is not there, and for ``--system`` with ``-c``/``--cid``.
    """
    store = _store(args)
    with store:
        yield _chat(args, client, store)


def _chat(args: argparse.Namespace, client: BackendApiClient, store: ConversationStore) -> Chat:
    continuing = bool(getattr(args, "continue_last", False) or getattr(args, "cid", None))
    if not continuing:
        chat = Chat(client, args.model, provider=args.provider, system=args.system)
        if not args.no_log:
            chat.attach(store)
        return chat
    if args.system is not None:
        raise InvalidInputError(
            "--system starts a conversation: it cannot be given with -c or --cid"
        )
    if not os.path.exists(store.path):
        raise InvalidInputError(
            f"there is no conversation to continue: {store.path} does not exist"
        )
    chat = Chat.resume(store, client, args.cid)
    if args.model:
        chat.model = args.model
    if args.provider is not None:
        chat.provider = args.provider
    if args.no_log:
        chat.store = None
    return chat


def record_turn(chat: Chat) -> bool:
    """Write the turns of ``chat`` that ended since the last call; False if that failed.

    Call it after every turn, however it ended (the chat marks a failed or
    interrupted one so). When the database stays locked past its timeout
    (or cannot be written at all), the message goes to stderr, naming the
    database and what to do, and the result is False: a record is never lost
    without a word.
    """
    try:
        chat.flush()
    except StoreError as exc:
        _write(sys.stderr, f"{PROG}: error: the exchange was not recorded: {exc}\n")
        return False
    return True


# -- logs ------------------------------------------------------------------------------------


def logs_command(args: argparse.Namespace) -> int:
    """``backendapi logs``: the recorded exchanges or conversations."""
    store = _store(args)
    if args.action == "path":
        print(store.path)
        return 0
    if not os.path.exists(store.path):
        # Reading must not create the database.
        if args.json:
            print("[]")
        else:
            _write(sys.stderr, f"nothing recorded yet: {store.path} does not exist\n")
        return 0
    with store:
        if args.action == "conversations":
            if args.cid or args.continue_last:
                raise InvalidInputError("-c and --cid choose exchanges: use them with `logs list`")
            count = DEFAULT_CONVERSATIONS_COUNT if args.count is None else args.count
            conversations = store.conversations(count or None)
            if args.json:
                _print_json(conversations)
            else:
                for conversation in conversations:
                    print(_conversation_line(conversation))
            return 0
        cid: Optional[str] = args.cid
        if args.continue_last:
            cid = store.last_conversation_id()
            if cid is None:
                _write(sys.stderr, f"nothing recorded yet in {store.path}\n")
                return 0
        elif cid is not None and store.conversation(cid) is None:
            raise InvalidInputError(f"there is no conversation {cid!r} in {store.path}")
        count = DEFAULT_LOGS_COUNT if args.count is None else args.count
        exchanges = store.exchanges(cid, count or None)
    if args.json:
        _print_json(exchanges)
    elif args.short:
        for exchange in exchanges:
            print(_exchange_line(exchange))
    else:
        print("\n".join(_exchange_markdown(exchange) for exchange in exchanges), end="")
    return 0


def _exchange_markdown(exchange: Dict[str, Any]) -> str:
    """One exchange as ``llm logs`` shows a response: a heading, then prompt and response."""
    lines = [
        f"# {exchange['datetime_utc']}    conversation: {exchange['conversation_id']} "
        f"id: {exchange['id']}",
        "",
    ]
    model = exchange["model"] or "(the server's choice)"
    provider = f" ({exchange['provider']})" if exchange["provider"] else ""
    lines.append(f"Model: **{model}**{provider}")
    if exchange["kind"] != "ask":
        lines.append(f"Kind: {exchange['kind']}")
    if exchange["status"] != "ok":
        lines.append(f"Status: **{exchange['status']}**: {exchange['error']}")
    lines.append("")
    if exchange["system"]:
        lines += ["## System", "", exchange["system"], ""]
    if exchange["prompt"] is not None:
        lines += ["## Prompt", "", exchange["prompt"], ""]
    if exchange["reasoning"]:
        lines += ["## Reasoning", "", exchange["reasoning"], ""]
    lines += ["## Response", "", exchange["response"] or "", ""]
    usage = exchange["usage"]
    if isinstance(usage, dict):
        counts = [
            f"{usage[key]} {name}"
            for key, name in (("prompt_tokens", "input"), ("completion_tokens", "output"))
            if key in usage
        ]
        if counts:
            lines += ["## Token usage", "", ", ".join(counts), ""]
    return "\n".join(lines) + "\n"


def _exchange_line(exchange: Dict[str, Any]) -> str:
    status = "" if exchange["status"] == "ok" else f" [{exchange['status']}]"
    return (
        f"{exchange['id']}  {exchange['datetime_utc']}  {exchange['conversation_id']}  "
        f"{exchange['model'] or '-'}{status}  {_excerpt(exchange['prompt'] or '')}"
    )


def _conversation_line(conversation: Dict[str, Any]) -> str:
    count = conversation["exchanges"]
    plural = "" if count == 1 else "s"
    return (
        f"{conversation['id']}  {conversation['updated_utc']}  {count} exchange{plural}  "
        f"{conversation['model'] or '-'}  {_excerpt(conversation['name'] or '')}"
    ).rstrip()


def _excerpt(text: str, limit: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _print_json(value: List[Dict[str, Any]]) -> None:
    # U+2028/U+2029 escaped: a reader splitting lines with str.splitlines() stays whole.
    text = json.dumps(value, ensure_ascii=False, indent=2)
    print(text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _write(stream: IO[str], text: str) -> None:
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        pass
