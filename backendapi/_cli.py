"""The ``backendapi`` command line: chat with a server, list its models, run a test server.

::

    backendapi chat "Why is the sky blue?" -m gpt-4o -p OpenaiChat
    echo "Summarise this" | backendapi chat --media notes.pdf
    backendapi chat                       # interactive, multi-turn (stdin is a terminal)
    backendapi chat "Hi" --json | jq .    # every raw event as one JSON line
    backendapi models --provider OpenaiChat
    backendapi providers
    backendapi version
    backendapi serve-test --text "Hello"  # a scripted server; its URL is the first line

The server comes from ``--base-url`` or ``BACKENDAPI_BASE_URL``, the key from
``--api-key`` or ``BACKENDAPI_API_KEY``. Exit codes: 0 success, 1 a server or
stream error, 2 a usage error, 130 interrupted (Ctrl-C).

This module and ``_cli_store.py`` (the conversation database's options and
``logs``) are the only places in the package that print.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from types import FrameType
from typing import IO, Any, Dict, List, Optional

from ._cli_store import add_chat_arguments, add_logs_command, open_chat, record_turn
from ._errors import BackendApiError, InvalidInputError, StreamError
from ._events import RawResponse
from ._sync.chat import Chat
from ._sync.client import BackendApiClient, Stream
from ._version import __version__

__all__ = ["build_parser", "main"]

PROG = "backendapi"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DIM = "\x1b[2m"
RESET = "\x1b[0m"
PROMPT = "> "
DEFAULT_TEST_ANSWER = "Hello from the test server"


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
        # The reader of stdout went away (``| head``): stop quietly.
        _silence_stdout()
        return EXIT_ERROR


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its subcommands (``chat``, ``models``, ...)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Talk to a Backend API server (gpt4free's /backend-api/v2).",
        epilog="The server defaults to BACKENDAPI_BASE_URL, the key to BACKENDAPI_API_KEY.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument(
        "--base-url",
        metavar="URL",
        help="the server's root URL (default: $BACKENDAPI_BASE_URL, else http://localhost:8080)",
    )
    connection.add_argument(
        "--api-key", metavar="KEY", help="the provider's api key (default: $BACKENDAPI_API_KEY)"
    )
    connection.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="connect timeout and longest silence while reading (default: 10 s and 600 s)",
    )
    connection.add_argument(
        "--json", action="store_true", help="print JSON (for chat: every event as one line)"
    )

    chat = commands.add_parser(
        "chat",
        parents=[connection],
        help="send a prompt and stream the answer",
        description=(
            "Send PROMPT (or standard input when it is not a terminal) and stream the answer "
            "to stdout, reasoning to stderr. With no prompt on a terminal, start an "
            "interactive chat: a blank line or Ctrl-D ends it."
        ),
    )
    chat.add_argument("prompt", nargs="?", metavar="PROMPT", help="the message to send")
    chat.add_argument("-m", "--model", default="", help="model id (default: the server picks)")
    chat.add_argument("-p", "--provider", help="provider name, e.g. OpenaiChat")
    chat.add_argument(
        "--media",
        action="append",
        default=[],
        metavar="FILE",
        help="attach a file, a data: URI or an http(s) URL (repeatable)",
    )
    chat.add_argument("--system", metavar="TEXT", help="a system message sent first")
    add_chat_arguments(chat)
    chat.set_defaults(handler=_chat_command)

    models = commands.add_parser("models", parents=[connection], help="list the server's models")
    models.add_argument("-p", "--provider", help="only this provider's models, with details")
    models.set_defaults(handler=_models_command)

    providers = commands.add_parser(
        "providers", parents=[connection], help="list the server's providers"
    )
    providers.set_defaults(handler=_providers_command)

    version = commands.add_parser(
        "version", parents=[connection], help="print the server's (and this client's) version"
    )
    version.set_defaults(handler=_version_command)

    add_logs_command(commands)

    serve = commands.add_parser(
        "serve-test",
        help="run a scripted test server in the foreground",
        description=(
            "Run backendapi.testing.BackendApiTestServer, responding to every conversation with "
            "TEXT. Its URL is the first line of stdout. Stops on SIGINT or SIGTERM."
        ),
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


# -- chat ------------------------------------------------------------------------------------


def _chat_command(args: argparse.Namespace) -> int:
    """``backendapi chat``: one prompt, or an interactive session on a terminal."""
    prompt: Optional[str] = args.prompt
    if prompt is None and not _isatty(sys.stdin):
        prompt = sys.stdin.read().rstrip("\r\n")
        if not prompt.strip():
            raise UsageError("no prompt: standard input was empty")
    media: Optional[List[str]] = list(args.media) or None
    with _client(args) as client, open_chat(args, client) as chat:
        if prompt is None:
            return _interactive(chat, args, media)
        # send() reads and checks the media files before anything is sent.
        stream = chat.send(prompt, media=media)
        try:
            _print_stream(stream, json_lines=args.json)
        finally:
            recorded = record_turn(chat)
    return EXIT_OK if recorded else EXIT_ERROR


def _interactive(chat: Chat, args: argparse.Namespace, media: Optional[List[str]]) -> int:
    """A multi-turn session on a terminal: ``> `` prompts until a blank line or EOF."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())

    while True:
        try:
            line = input(PROMPT)
        except EOFError:
            _safe_write(sys.stdout, "\n")
            return EXIT_OK
        if not line.strip():
            return EXIT_OK
        stream = chat.send(line, media=media)
        media = None  # files given on the command line go with the first turn only
        try:
            _print_stream(stream, json_lines=args.json)
        finally:
            record_turn(chat)


def _print_stream(stream: Stream, *, json_lines: bool) -> None:
    """Print a stream as it arrives: answer to stdout, reasoning and notices to stderr.

    With ``json_lines``, every event (a fatal ``error`` event included) is one
    JSON line on stdout instead. Leaving, by an exception or a Ctrl-C too,
    closes the stream and releases its connection.
    """
    out, err = sys.stdout, sys.stderr
    dim = _isatty(err)
    ended_line = True  # stdout is at the start of a line
    thinking = False  # stderr is in the middle of reasoning tokens
    interrupted = False
    with stream:
        try:
            for event in stream:
                if json_lines:
                    _write_json(out, event)
                    continue
                kind = event.type
                if kind == "content":
                    text = event.get("content")
                    if not isinstance(text, str) or not text:
                        continue
                    if thinking:
                        err.write("\n")
                        err.flush()
                        thinking = False
                    ended_line = text.endswith("\n")
                    out.write(text)
                    out.flush()
                elif kind == "reasoning":
                    token = event.get("token")
                    if isinstance(token, str) and token:
                        thinking = True
                        err.write(f"{DIM}{token}{RESET}" if dim else token)
                        err.flush()
                elif kind == "message":
                    # A non-fatal provider error; another provider may answer after it.
                    if thinking:
                        err.write("\n")
                        thinking = False
                    err.write(f"{PROG}: warning: {event.get('message')}\n")
                    err.flush()
        except StreamError as exc:
            if json_lines:
                _write_json(out, exc.event)
            raise
        except KeyboardInterrupt:
            interrupted = True  # main() ends the line on stderr; nothing else is printed
            raise
        finally:
            if thinking and not interrupted:
                _safe_write(err, "\n")
            if not ended_line and not interrupted and not json_lines:
                _safe_write(out, "\n")


def _write_json(out: IO[str], event: RawResponse) -> None:
    out.write(json.dumps(event.get_dict(), ensure_ascii=False) + "\n")
    out.flush()


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
    print(json.dumps(value, ensure_ascii=False, indent=2))


# -- serve-test ------------------------------------------------------------------------------


def _serve_test_command(args: argparse.Namespace) -> int:
    """``backendapi serve-test``: a scripted server in the foreground until SIGINT/SIGTERM."""
    from .testing import BackendApiTestServer, Reply

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


def _isatty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):
        return False


def _error(message: str) -> None:
    _safe_write(sys.stderr, f"{PROG}: error: {message}\n")


def _safe_write(stream: IO[str], text: str) -> None:
    """Write and flush, ignoring a closed or broken stream (used on the way out)."""
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        pass


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
