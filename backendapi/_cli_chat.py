"""``backendapi chat``'s turns: printing a stream, and the interactive session.

Every turn, one-shot or interactive, completed, failed or interrupted, ends
in :meth:`ChatSession._on_turn` with a :class:`TurnOutcome`: the one place
that reports it (``-v``) and hands it to whatever else wants it
(:attr:`ChatSession.turn_hooks`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from typing import IO, Any, Callable, List, Optional, Tuple

from ._answer import Answer
from ._errors import BackendApiError, InvalidInputError, StreamError
from ._events import RawResponse
from ._sync.chat import Chat
from ._sync.client import Stream
from ._version import __version__

PROG = "backendapi"
DIM = "\x1b[2m"
RESET = "\x1b[0m"
PROMPT = "> "
MORE_PROMPT = "... "
FENCE = '"""'

COMPLETED = "completed"
FAILED = "failed"
INTERRUPTED = "interrupted"

HELP = f"""\
Commands:
  /help, /?          this list
  /bye               end the chat (so do Ctrl-D, and Ctrl-C at an empty prompt)
  /clear             forget the history (the system message stays)
  /save FILE         write the chat to FILE (JSON, as Chat.save does)
  /load FILE         continue the chat saved in FILE
  /retry             answer the last question again; after a failed or interrupted
                     turn, send that question again
  /model [NAME]      show or change the model
  /provider [NAME]   show or change the provider
Multi-line input: start with {FENCE} and end a line with {FENCE}.
Ctrl-C during an answer stops it; the history stays as it was before the question.
"""

# A line is a command when its first word is a slash and letters ("/save"), or "/?".
_COMMAND = re.compile(r"/([A-Za-z]+|\?)(?:\s+(.*))?\Z", re.DOTALL)


@dataclass
class TurnOutcome:
    """What one turn of ``backendapi chat`` came to, once it is over.

    Attributes:
        kind: ``"send"`` (a new question) or ``"retry"`` (``/retry``:
            ``Chat.send_regenerate()``, another answer to the last question).
        prompt: the question: the user's text for ``"send"``, the last user
            message's content for ``"retry"``.
        status: ``"completed"``, ``"failed"`` (an HTTP, connection or stream
            error: see ``error``) or ``"interrupted"`` (Ctrl-C, or the reader
            of stdout went away).
        answer: what arrived, gathered (``stream.answer``): the whole answer
            when completed, what came before the end otherwise.
        error: the error's message when failed (or why it was interrupted),
            else None. It never holds the api key (the SDK's errors don't).
        chat: the chat after the turn: its history holds the turn only when
            it completed.
        started: when the turn was sent, ``time.time()``.
        ended: when it ended, ``time.time()``.
    """

    kind: str
    prompt: Any
    status: str
    answer: Answer
    error: Optional[str]
    chat: Chat
    started: float
    ended: float

    @property
    def interrupted(self) -> bool:
        """True when Ctrl-C (or a closed stdout) stopped the answer."""
        return self.status == INTERRUPTED


class ChatSession:
    """The turns of one ``backendapi chat`` run: one-shot (:meth:`one_shot`) or a
    terminal session (:meth:`interactive`), over one :class:`Chat`.

    Args:
        chat: the chat the turns go through; ``/load`` and ``/clear`` change it.
        json_lines: print every event as one JSON line instead of the text.
        verbose: after each turn, print provider, model, usage and title to stderr.
        base_url: the server's root, shown in the banner.
    """

    def __init__(
        self, chat: Chat, *, json_lines: bool = False, verbose: bool = False, base_url: str = ""
    ) -> None:
        self.chat = chat
        self.json_lines = json_lines
        self.verbose = verbose
        self.base_url = base_url
        #: Called with every turn's outcome, in order, after ``-v`` printed it.
        self.turn_hooks: List[Callable[[TurnOutcome], None]] = []
        #: Called when ``/clear`` or ``/load`` gives the session a new history,
        #: with the chat and the command's name (``"clear"``, ``"load"``).
        self.chat_hooks: List[Callable[[Chat, str], None]] = []
        # The question (and its media) of a turn that failed or was interrupted: /retry
        # sends it again, since it never entered the history.
        self._unanswered: Optional[Tuple[Any, Optional[List[str]]]] = None
        self._last_media: Optional[List[str]] = None

    # -- turns ------------------------------------------------------------------------------

    def one_shot(self, prompt: str, media: Optional[List[str]] = None) -> TurnOutcome:
        """Send ``prompt`` and print the answer; errors and Ctrl-C propagate, reported."""
        return self.run_turn("send", prompt, media)

    def run_turn(
        self, kind: str, prompt: Any = None, media: Optional[List[str]] = None
    ) -> TurnOutcome:
        """Send one turn (``"send"`` or ``"retry"``), print it, and report its outcome.

        A failed turn re-raises its error and an interrupted one its
        ``KeyboardInterrupt`` (or ``BrokenPipeError``), once :meth:`_on_turn`
        has seen the outcome. Bad input found before anything is sent (a
        missing media file, nothing to retry) raises
        :class:`InvalidInputError` and is no turn.
        """
        chat = self.chat
        if kind == "send":
            stream = chat.send(prompt, media=media)
        else:
            stream = chat.send_regenerate(media)
            prompt = _last_question(chat)
        started = time.time()

        def outcome(status: str, error: Optional[str]) -> TurnOutcome:
            return TurnOutcome(
                kind, prompt, status, stream.answer, error, chat, started, time.time()
            )

        # A new question that gets no answer is not in the history: /retry sends it again.
        # (A retry that gets none leaves /retry a retry.)
        unanswered = (prompt, media) if kind == "send" else None
        try:
            print_stream(stream, json_lines=self.json_lines)
        except KeyboardInterrupt:
            self._unanswered = unanswered
            self._on_turn(outcome(INTERRUPTED, "interrupted (Ctrl-C)"))
            raise
        except BrokenPipeError:
            self._on_turn(outcome(INTERRUPTED, "standard output was closed"))
            raise
        except BackendApiError as exc:
            self._unanswered = unanswered
            self._on_turn(outcome(FAILED, str(exc)))
            raise
        self._unanswered = None
        self._last_media = media
        result = outcome(COMPLETED, None)
        self._on_turn(result)
        return result

    def _on_turn(self, outcome: TurnOutcome) -> None:
        """Where every turn's outcome goes: ``-v``'s report, then each of :attr:`turn_hooks`."""
        if self.verbose:
            # An interrupted answer left its line unfinished.
            _print_details(outcome.answer, new_line=outcome.interrupted)
        for hook in self.turn_hooks:
            hook(outcome)

    # -- the interactive session ----------------------------------------------------------

    def interactive(self, media: Optional[List[str]] = None) -> int:
        """Prompt, send, print, until ``/bye``, Ctrl-D or Ctrl-C at an empty prompt; return 0.

        ``media`` goes with the first question. A failed turn prints its error
        and Ctrl-C stops an answer: either way the history stays as it was and
        the prompt comes back.
        """
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())

        _note(self._banner())
        try:
            while True:
                try:
                    text, block = _read_prompt()
                except EOFError:
                    _safe_write(sys.stdout, "\n")
                    return 0
                except KeyboardInterrupt:
                    if _typed_text():
                        _safe_write(sys.stderr, "\n")
                        continue  # Ctrl-C with a line typed drops the line, as shells do
                    _safe_write(sys.stderr, "\n")
                    return 0
                if not text.strip():
                    continue
                command = None if block else _COMMAND.match(text.strip())
                try:
                    if command is None:
                        if self._ask(text, media):
                            media = None  # files from the command line go with one question
                    elif self._command(command.group(1).lower(), command.group(2) or ""):
                        return 0
                except KeyboardInterrupt:
                    _note("\n(interrupted: the history is as it was before the question)")
        finally:
            # A late Ctrl-C on the way out must not print a traceback.
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _ask(self, text: str, media: Optional[List[str]]) -> bool:
        """Send a question; print an error instead of raising it. True when it completed."""
        try:
            self.run_turn("send", text, media)
        except InvalidInputError as exc:
            _error(str(exc))
            return False
        except BackendApiError as exc:
            _error(str(exc))
            _note("(the history is as it was; /retry sends the question again)")
            return False
        return True

    def _command(self, name: str, argument: str) -> bool:
        """Run the slash command ``/name argument``; True when it ends the session."""
        argument = argument.strip()
        if name in ("bye", "exit", "quit"):
            return True
        if name in ("help", "?"):
            _note(HELP.rstrip("\n"))
        elif name == "clear":
            self.chat.messages[:] = [m for m in self.chat.messages if m.get("role") == "system"]
            self.chat.conversation.clear()
            self.chat.variants.clear()
            self._unanswered = None
            self._notify_chat("clear")
            _note("(history cleared)")
        elif name == "save":
            self._save(argument)
        elif name == "load":
            self._load(argument)
        elif name == "retry":
            self._retry()
        elif name == "model":
            if argument:
                self.chat.model = argument
            _note(f"model: {self.chat.model or '(the server picks)'}")
        elif name == "provider":
            if argument:
                self.chat.provider = argument
            _note(f"provider: {self.chat.provider or '(the server picks)'}")
        else:
            _error(f"unknown command /{name}: /help lists the commands")
        return False

    def _save(self, argument: str) -> None:
        if not argument:
            _error("/save needs a file name: /save FILE")
            return
        path = os.path.expanduser(argument)
        try:
            self.chat.save(path)
        except (OSError, InvalidInputError) as exc:
            _error(f"cannot save the chat to {argument}: {_reason(exc)}")
            return
        _note(f"(saved to {argument})")

    def _load(self, argument: str) -> None:
        if not argument:
            _error("/load needs a file name: /load FILE")
            return
        path = os.path.expanduser(argument)
        try:
            chat = Chat.load(path, self.chat.client)
        except (OSError, InvalidInputError) as exc:
            _error(f"cannot load a chat from {argument}: {_reason(exc)}")
            return
        self.chat = chat
        self._unanswered = None
        self._notify_chat("load")
        turns = sum(1 for m in chat.messages if m.get("role") == "user")
        _note(
            f"(loaded {turns} question{'s' if turns != 1 else ''} from {argument}; "
            f"model: {chat.model or '(the server picks)'}, "
            f"provider: {chat.provider or '(the server picks)'})"
        )

    def _retry(self) -> None:
        try:
            if self._unanswered is not None:
                prompt, earlier = self._unanswered
                self.run_turn("send", prompt, earlier)
            else:
                self.run_turn("retry", None, self._last_media)
        except InvalidInputError as exc:
            _error(str(exc))
        except BackendApiError as exc:
            _error(str(exc))

    def _notify_chat(self, reason: str) -> None:
        for hook in self.chat_hooks:
            hook(self.chat, reason)

    def _banner(self) -> str:
        chat = self.chat
        return (
            f"{PROG} {__version__}, model: {chat.model or '(the server picks)'}, "
            f"provider: {chat.provider or '(the server picks)'}, server: {self.base_url}\n"
            f"/help lists the commands; {FENCE} starts multi-line input; Ctrl-D or /bye ends."
        )


# -- printing ----------------------------------------------------------------------------------


def print_stream(stream: Stream, *, json_lines: bool) -> None:
    """Print a stream as it arrives: answer to stdout, reasoning and notices to stderr.

    With ``json_lines``, every event (a fatal ``error`` event included) is one
    JSON line on stdout instead. Leaving, by an exception or a Ctrl-C too,
    closes the stream and releases its connection.
    """
    out, err = sys.stdout, sys.stderr
    dim = isatty(err)
    ended_line = True  # stdout is at the start of a line
    thinking = False  # stderr is in the middle of reasoning tokens
    interrupted = False
    with stream:
        try:
            for event in stream:
                if json_lines:
                    write_json(out, event)
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
                write_json(out, exc.event)
            raise
        except (KeyboardInterrupt, BrokenPipeError):
            interrupted = True  # nothing more is printed: not even the end of the line
            raise
        finally:
            if thinking and not interrupted:
                _safe_write(err, "\n")
            if not ended_line and not interrupted and not json_lines:
                _safe_write(out, "\n")


# Characters str.splitlines() splits on that json.dumps(ensure_ascii=False) leaves raw, and
# lone surrogates, which no UTF-8 stream can write.
_UNSAFE_IN_A_LINE = re.compile("[\x85\u2028\u2029\ud800-\udfff]")


def json_line(value: Any) -> str:
    """``value`` as one line of JSON, non-ASCII text kept as it is.

    U+0085, U+2028 and U+2029 (line breaks to ``str.splitlines()``) and
    lone surrogates are written as ``\\uXXXX`` escapes, so every reader sees
    exactly one line per value.
    """
    return escape_json(json.dumps(value, ensure_ascii=False))


def escape_json(text: str) -> str:
    """JSON text with U+0085, U+2028, U+2029 and lone surrogates written as ``\\uXXXX``.

    They can only be inside strings, where the escape means the same character.
    """
    return _UNSAFE_IN_A_LINE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def write_json(out: IO[str], event: RawResponse) -> None:
    """Write one event as a JSON line and flush."""
    out.write(json_line(event.get_dict()) + "\n")
    out.flush()


def _print_details(answer: Answer, *, new_line: bool = False) -> None:
    """``-v``: provider, model, usage and title, one per line on stderr."""
    lines: List[str] = []
    provider = answer.provider_name
    if provider:
        lines.append(f"provider: {provider}")
    if answer.model:
        lines.append(f"model: {answer.model}")
    usage = answer.usage
    if usage:
        counts = ", ".join(f"{key} {_scalar(value)}" for key, value in usage.items())
        lines.append(f"usage: {counts}")
    if answer.title:
        lines.append(f"title: {answer.title}")
    if not lines:
        lines.append("provider, model, usage, title: none reported")
    text = "\n".join(lines)
    if new_line:
        _safe_write(sys.stderr, "\n")
    _safe_write(sys.stderr, f"{DIM}{text}{RESET}\n" if isatty(sys.stderr) else f"{text}\n")


def _scalar(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json_line(value)
    return str(value)


# -- the terminal ------------------------------------------------------------------------------


def _read_prompt() -> Tuple[str, bool]:
    """A line, or the text of a ``\"\"\"`` block ("" if Ctrl-C dropped it), and whether it
    was a block (never a command)."""
    line = input(PROMPT)
    stripped = line.strip()
    if not stripped.startswith(FENCE):
        return line, False
    rest = stripped[len(FENCE) :]
    if len(rest) >= len(FENCE) and rest.endswith(FENCE):
        return rest[: -len(FENCE)], True  # """one line"""
    parts = [rest]
    try:
        while True:
            line = input(MORE_PROMPT)
            if line.rstrip().endswith(FENCE):
                parts.append(line.rstrip()[: -len(FENCE)])
                break
            parts.append(line)
    except KeyboardInterrupt:
        _safe_write(sys.stderr, "\n")
        return "", True  # Ctrl-C in a block drops the block
    if parts and not parts[0].strip():
        parts.pop(0)
    if parts and not parts[-1].strip():
        parts.pop()
    return "\n".join(parts), True


def _typed_text() -> bool:
    """Whether the line being edited when Ctrl-C came had text (readline tells)."""
    try:
        import readline
    except ImportError:
        return False
    try:
        return bool(readline.get_line_buffer().strip())
    except Exception:  # an emulation without it
        return False


def _last_question(chat: Chat) -> Any:
    for message in reversed(chat.messages):
        if message.get("role") == "user":
            return message.get("content")
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _note(text: str) -> None:
    _safe_write(sys.stderr, text + "\n")


def _error(message: str) -> None:
    _safe_write(sys.stderr, f"{PROG}: error: {message}\n")


def isatty(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (False for anything that cannot tell)."""
    method = getattr(stream, "isatty", None)
    try:
        return bool(method()) if callable(method) else False
    except (OSError, ValueError):
        return False


def _safe_write(stream: IO[str], text: str) -> None:
    """Write and flush, ignoring a closed or broken stream (used on the way out)."""
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        pass
