"""The ``backendapi`` command line: chat with a server, list its models, run a test server.

::

    backendapi chat "Why is the sky blue?" -m gpt-4o -p OpenaiChat
    cat notes.txt | backendapi chat "Summarise this"   # the piped text, then the prompt
    backendapi chat                       # interactive, multi-turn (stdin is a terminal)
    backendapi chat "Hi" -o temperature 0.2 -o web_search true -v
    backendapi chat "Hi" --json | jq .    # every raw event as one JSON line
    backendapi --base-url http://localhost:8080 models --provider OpenaiChat
    backendapi providers
    backendapi version
    backendapi serve-test --text "Hello"  # a scripted server; its URL is the first line

The server comes from ``--base-url`` or ``BACKENDAPI_BASE_URL``, the key from
``--api-key`` or ``BACKENDAPI_API_KEY``; those options (and ``--timeout``,
``--json``, ``-v``) go before or after the subcommand. Exit codes: see
:data:`EXIT_CODES`.

This module, ``_cli_chat.py`` (the chat session) and ``_cli_store.py`` (the
conversation database's options and ``logs``) are the only places in the package that
print.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable, Dict, List, Optional, Sequence

from ._cli_chat import PROG, ChatSession, TurnOutcome, _safe_write, escape_json, isatty
from ._cli_store import add_chat_arguments, add_logs_command, open_chat, record_turn
from ._errors import BackendApiError, InvalidInputError
from ._sync.chat import Chat
from ._sync.client import BackendApiClient
from ._version import __version__

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: What each exit status means; the README's table says the same.
EXIT_CODES = """\
exit status:
  0    success; also when the reader of stdout went away (| head), and at the
       end of an interactive chat (/bye, Ctrl-D, Ctrl-C at an empty prompt)
  1    a server, connection or stream error (its message on stderr); or the
       exchange could not be recorded in the database (the answer is printed)
  2    a usage error: a bad option, a missing file, no prompt
  130  interrupted by Ctrl-C (a one-shot chat, models...), after closing the stream"""

DEFAULT_TEST_ANSWER = "Hello from the test server"

# The -o keys the command line sets itself, and what to use instead.
_RESERVED_OPTIONS = {
    "api_key": "pass the key with --api-key or BACKENDAPI_API_KEY, not -o api_key",
    "model": "use -m/--model, not -o model",
    "provider": "use -p/--provider, not -o provider",
    "messages": "the prompt makes the messages; -o messages cannot set them",
    "media": "use -a/--media, not -o media",
}

# Options taken before or after the subcommand: (flags, argparse keywords).
_GLOBAL_OPTIONS: List[Any] = [
    (
        ("--base-url",),
        {
            "metavar": "URL",
            "help": "the server's root URL (default: $BACKENDAPI_BASE_URL, "
            "else http://localhost:8080)",
        },
    ),
    (
        ("--api-key",),
        {"metavar": "KEY", "help": "the provider's api key (default: $BACKENDAPI_API_KEY)"},
    ),
    (
        ("--timeout",),
        {
            "type": lambda text: _positive_float(text),
            "metavar": "SECONDS",
            "help": "connect timeout and longest silence while reading (default: 10 s and 600 s)",
        },
    ),
    (
        ("--json",),
        {"action": "store_true", "help": "print JSON (for chat: every event as one line)"},
    ),
    (
        ("-v", "--verbose"),
        {
            "action": "store_true",
            "help": "after each answer, print its provider, model, usage and title to stderr",
        },
    ),
]
_GLOBAL_DESTS = ("base_url", "api_key", "timeout", "json", "verbose")


class UsageError(Exception):
    """A mistake in the command line found after parsing: exit code 2."""


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Errors are reported on stderr as ``backendapi: error: <message>`` without a
    traceback. argparse's own usage errors exit with 2 through ``SystemExit``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except KeyboardInterrupt:
        # The streams were closed on the way out of their ``with`` blocks.
        _safe_write(sys.stderr, "\n")
        return EXIT_INTERRUPTED
    except (UsageError, InvalidInputError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except BackendApiError as exc:
        _error(str(exc))
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader of stdout went away (``| head``): it has what it wanted. Stop quietly.
        _silence_stdout()
        return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its subcommands (``chat``, ``models``, ...)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Talk to a Backend API server (gpt4free's /backend-api/v2).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"""\
examples:
  backendapi chat "Why is the sky blue?" -m gpt-4o -p OpenaiChat
  cat notes.txt | backendapi chat "Summarise this"
  backendapi chat                          # an interactive chat; /help inside
  backendapi --base-url http://localhost:8080 models

The server defaults to $BACKENDAPI_BASE_URL, the key to $BACKENDAPI_API_KEY.
--base-url, --api-key, --timeout, --json and -v go before or after COMMAND.

{EXIT_CODES}""",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    chat = commands.add_parser(
        "chat",
        help="send a prompt and stream the answer",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Send PROMPT and stream the answer to stdout, reasoning to stderr. Text piped on\n"
            "standard input comes first, then a blank line, then PROMPT (either may be left\n"
            "out). With no prompt on a terminal, start an interactive chat (/help inside)."
        ),
        epilog="""\
examples:
  backendapi chat "Why is the sky blue?" -m gpt-4o -p OpenaiChat -s "Be brief."
  git diff | backendapi chat "Write a commit message for this"
  backendapi chat "What is in this picture?" -a cat.png
  backendapi chat "Latest news?" -o web_search true -o temperature 0.2 -v
  backendapi chat "Hi" --json | jq -c 'select(.type == "content")'
  backendapi chat                          # interactive: /help, /retry, /save FILE...
  backendapi chat -c "And in French?"      # continue the last conversation (backendapi logs)""",
    )
    chat.add_argument("prompt", nargs="?", metavar="PROMPT", help="the message to send")
    chat.add_argument("-m", "--model", default="", help="model id (default: the server picks)")
    chat.add_argument("-p", "--provider", help="provider name, e.g. OpenaiChat")
    chat.add_argument("-s", "--system", metavar="TEXT", help="a system message sent first")
    chat.add_argument(
        "-a",
        "--media",
        action="append",
        default=[],
        metavar="FILE",
        help="attach a file, a data: URI or an http(s) URL (repeatable)",
    )
    chat.add_argument(
        "-o",
        "--option",
        action="append",
        nargs=2,
        default=[],
        dest="options",
        metavar=("KEY", "VALUE"),
        help="a server option sent with the request (repeatable): VALUE is read as JSON "
        "when it parses as JSON (true, 0.2, [1,2], {...}), as a string otherwise; "
        "e.g. -o web_search true -o temperature 0.2",
    )
    _add_global_options(chat)
    add_chat_arguments(chat)
    chat.set_defaults(handler=_chat_command)

    models = commands.add_parser(
        "models",
        help="list the server's models",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  backendapi models\n  backendapi models -p OpenaiChat --json",
    )
    models.add_argument("-p", "--provider", help="only this provider's models, with details")
    _add_global_options(models)
    models.set_defaults(handler=_models_command)

    providers = commands.add_parser(
        "providers",
        help="list the server's providers",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  backendapi providers\n  backendapi providers --json | jq '.[].name'",
    )
    _add_global_options(providers)
    providers.set_defaults(handler=_providers_command)

    version = commands.add_parser(
        "version",
        help="print the server's (and this client's) version",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  backendapi version --base-url http://localhost:8080",
    )
    _add_global_options(version)
    version.set_defaults(handler=_version_command)

    add_logs_command(commands)

    serve = commands.add_parser(
        "serve-test",
        help="run a scripted test server in the foreground",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run backendapi.testing.BackendApiTestServer, responding to every conversation with\n"
            "TEXT. Its URL is the first line of stdout. Stops on SIGINT or SIGTERM."
        ),
        epilog="""\
example:
  backendapi serve-test --text "Hello" --port 8080 &
  backendapi chat "Hi" --base-url http://127.0.0.1:8080""",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument(
        "--port", type=int, default=0, help="port to listen on (default 0: the system picks)"
    )
    serve.add_argument(
        "--text", default=DEFAULT_TEST_ANSWER, help="the answer sent to every conversation"
    )
    serve.add_argument(
        "--framing", choices=("sse", "ndjson"), default="sse", help="event framing (default sse)"
    )
    serve.add_argument(
        "--provider",
        action="append",
        default=[],
        metavar="NAME",
        help="one more provider the server knows besides ScriptedProvider (repeatable); "
        "a conversation naming an unknown one gets 404, as on g4f",
    )
    serve.set_defaults(handler=_serve_test_command)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """The options taken before or after the subcommand.

    The main parser sets their defaults; a subcommand's copies default to
    SUPPRESS, so that they set a value only when given after the subcommand
    and never hide one given before it.
    """
    group = parser.add_argument_group("connection and output (before or after the subcommand)")
    for flags, keywords in _GLOBAL_OPTIONS:
        options = dict(keywords)
        if top:
            options["default"] = False if options.get("action") == "store_true" else None
        else:
            options["default"] = argparse.SUPPRESS
        group.add_argument(*flags, **options)


# -- chat ------------------------------------------------------------------------------------


def _chat_command(args: argparse.Namespace) -> int:
    """``backendapi chat``: one prompt, or an interactive session on a terminal."""
    options = server_options(args.options)
    prompt: Optional[str] = args.prompt
    if sys.stdin is not None and not isatty(sys.stdin):  # None: no fd 0 at all
        prompt = join_piped(sys.stdin.read(), prompt)
        if prompt is None:
            raise UsageError("no prompt: give PROMPT, or pipe text to standard input")
    media: Optional[List[str]] = list(args.media) or None
    with _client(args) as client, open_chat(args, client) as chat:
        chat.options.update(options)
        session = ChatSession(
            chat, json_lines=args.json, verbose=args.verbose, base_url=client.base_url
        )
        recorded = _record_turns(session, chat)
        if prompt is None:
            return session.interactive(media)
        # send() reads and checks the media files before anything is sent.
        session.one_shot(prompt, media)
    return EXIT_OK if recorded() else EXIT_ERROR


def _record_turns(session: ChatSession, chat: Chat) -> Callable[[], bool]:
    """Have every turn of ``session`` recorded in ``chat``'s database (when it has one).

    Returns a function that says whether every record was written (a failure is
    reported on stderr as it happens). ``/clear`` starts a new conversation in the
    database; a chat ``/load`` brought in is recorded as a new one too.
    """
    store = chat.store
    failures: List[TurnOutcome] = []

    def record(outcome: TurnOutcome) -> None:
        if not record_turn(outcome.chat):
            failures.append(outcome)

    def restart(new: Chat, reason: str) -> None:
        if store is not None:
            new.attach(store)

    session.turn_hooks.append(record)
    session.chat_hooks.append(restart)
    return lambda: not failures


def join_piped(piped: str, prompt: Optional[str]) -> Optional[str]:
    """The prompt sent when ``piped`` came on standard input: the piped text first, then
    ``prompt`` after a blank line, as llm and ollama put the piped text first; None when
    both are empty."""
    piped = piped.rstrip("\r\n")
    if not piped.strip():
        return prompt
    if prompt is None or not prompt.strip():
        return piped
    return f"{piped}\n\n{prompt}"


def server_options(pairs: Sequence[Sequence[str]]) -> Dict[str, Any]:
    """``-o KEY VALUE`` pairs as request options: VALUE as JSON when it parses, else as text.

    Raises :class:`UsageError` for an empty key or one the command line sets
    itself (``api_key``: use ``--api-key``; ``model``, ``provider``...).
    """
    options: Dict[str, Any] = {}
    for key, text in pairs:
        if not key or key != key.strip():
            raise UsageError(f"-o needs an option name without spaces around it, not {key!r}")
        refusal = _RESERVED_OPTIONS.get(key)
        if refusal is not None:
            raise UsageError(refusal)
        options[key] = _json_or_text(text)
    return options


def _json_or_text(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(constant)  # NaN and Infinity are not JSON: keep them as text

    try:
        return json.loads(text, parse_constant=refuse)
    except ValueError:
        return text


# -- models, providers, version -------------------------------------------------------------


def _models_command(args: argparse.Namespace) -> int:
    """``backendapi models``: ``{provider: [ids]}``, or one provider's model objects."""
    with _client(args) as client:
        result = client.models(args.provider)
    if args.json:
        _print_json(result)
    elif isinstance(result, dict):
        for provider, models in result.items():
            print(provider)
            for model in models if isinstance(models, list) else [models]:
                print(f"  {_model_name(model)}")
    elif isinstance(result, list):
        for model in result:
            print(_model_line(model))
        if not result and args.provider:
            # g4f answers an unknown provider's models with [] too, not with an error.
            _safe_write(sys.stderr, f"no models listed for provider {args.provider!r}\n")
    else:
        _print_json(result)
    return EXIT_OK


def _providers_command(args: argparse.Namespace) -> int:
    """``backendapi providers``: one provider per line, with its label and features."""
    with _client(args) as client:
        result = client.providers()
    if args.json:
        _print_json(result)
        return EXIT_OK
    for provider in result:
        if not isinstance(provider, dict):
            print(provider)
            continue
        name = str(provider.get("name", "?"))
        label = provider.get("label")
        line = name if not label or label == name else f"{name} ({label})"
        flags = [
            flag for flag in ("auth", "vision", "image", "audio", "video") if provider.get(flag)
        ]
        print(f"{line}  [{', '.join(flags)}]" if flags else line)
    return EXIT_OK


def _version_command(args: argparse.Namespace) -> int:
    """``backendapi version``: the server's version and this client's."""
    with _client(args) as client:
        result = client.version()
    if args.json:
        _print_json({**result, "client_version": __version__})
        return EXIT_OK
    server = result.get("version")
    latest = result.get("latest_version")
    line = f"server {server}"
    if latest and latest != server:
        line += f" (latest: {latest})"
    print(line)
    print(f"{PROG} {__version__}")
    return EXIT_OK


def _model_name(model: Any) -> str:
    if isinstance(model, dict):
        for key in ("model", "name", "id", "label"):
            if isinstance(model.get(key), str):
                return str(model[key])
        return json.dumps(model, ensure_ascii=False)
    return str(model)


def _model_line(model: Any) -> str:
    name = _model_name(model)
    if not isinstance(model, dict):
        return name
    flags = [flag for flag in ("default", "vision", "image", "audio", "video") if model.get(flag)]
    return f"{name}  [{', '.join(flags)}]" if flags else name


def _print_json(value: Any) -> None:
    print(escape_json(json.dumps(value, ensure_ascii=False, indent=2)))


# -- serve-test ------------------------------------------------------------------------------


def _serve_test_command(args: argparse.Namespace) -> int:
    """``backendapi serve-test``: a scripted server in the foreground until SIGINT/SIGTERM."""
    from .testing import BackendApiTestServer, Reply

    given = [name for name in _GLOBAL_DESTS if getattr(args, name, None) not in (None, False)]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UsageError(f"serve-test takes no {flags}: it is a server, not a client")
    stop = threading.Event()

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        stop.set()

    previous = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        server = BackendApiTestServer(args.host, port=args.port, known_providers=args.provider)
        server.default_reply = Reply.answer(args.text, framing=args.framing)
        try:
            server.start()
        except OSError as exc:
            raise BackendApiError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
        try:
            print(server.url, flush=True)
            _safe_write(sys.stderr, "serving scripted answers; Ctrl-C or SIGTERM stops\n")
            stop.wait()
        finally:
            server.stop()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return EXIT_OK


# -- helpers ---------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> BackendApiClient:
    options: Dict[str, Any] = {}
    if args.timeout is not None:
        options["timeout"] = args.timeout
    return BackendApiClient(args.base_url, api_key=args.api_key, **options)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _error(message: str) -> None:
    _safe_write(sys.stderr, f"{PROG}: error: {message}\n")


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
