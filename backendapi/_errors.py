"""The exceptions the SDK raises; all derive from :class:`BackendApiError`.

::

    BackendApiError
    ├── InvalidInputError        bad argument, raised before any network call
    ├── APIConnectionError       could not connect, or the connection broke
    │   ├── APITimeoutError      a timeout expired
    │   └── IncompleteStreamError  the stream ended in the middle of an event or body
    ├── APIStatusError           the server answered with HTTP status >= 400
    ├── StreamError              the server sent a fatal ``error`` or ``auth`` event
    │   └── AuthenticationError  ... and it was ``auth``: the provider needs a key or login
    ├── DecodeError              bytes that are not a valid event
    │   └── EventTooLargeError   one event exceeded the decoder's size limit
    ├── ResponseTooLargeError    a plain call's answer exceeded its max_response_size
    ├── ToolCallError            a tool call the chat cannot run (bad arguments, no JSON result)
    ├── ToolRoundsExceededError  the model still asked for tools after max_tool_rounds
    └── AnswerParseError         answer.json() / answer.parse(): the text is not what was asked

Every one of them has three views of what went wrong: ``str(error)``, one
printable line of at most :data:`STR_LIMIT` characters (whatever the server
sent: a log line cannot be forged with it); ``error.message``, the whole
text (the server's own words, for an :class:`APIStatusError` or a
:class:`StreamError`); and the parsed answer (``body``, ``event``). No view
carries the api key: the clients scrub it from the server's words, parsed,
before they become part of an exception. Every one survives ``pickle``
(a ``ProcessPoolExecutor`` worker's error comes back as itself).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Optional, Tuple, Type

if TYPE_CHECKING:
    from ._events import RawResponse

__all__ = [
    "APIConnectionError",
    "AnswerParseError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BackendApiError",
    "DecodeError",
    "EventTooLargeError",
    "IncompleteStreamError",
    "InvalidInputError",
    "ResponseTooLargeError",
    "StreamError",
    "ToolCallError",
    "ToolRoundsExceededError",
]

EXCERPT_LENGTH = 120
STR_LIMIT = 500
"""The longest ``str()`` of an SDK exception, in characters."""
_URL_LIMIT = 200  # of STR_LIMIT, at most this much for the URL: the rest is the server's words

_WORD = re.compile(r"\S+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def one_line(text: str, limit: int = 300) -> str:
    """``text`` as one printable line of at most ``limit`` characters.

    Runs of whitespace (line breaks of every kind too) become single spaces,
    other control characters ``\\xNN`` escapes, and a longer text is cut,
    ending in ``...``. Only the words that fit are copied: a 10 MB text costs
    one scan at most.
    """
    words = []
    size = -1
    for match in _WORD.finditer(text):
        start, end = match.span()
        word = _CONTROL.sub(_escape, text[start : min(end, start + limit + 1)])
        words.append(word)
        size += len(word) + 1
        if size > limit:
            break
    line = " ".join(words)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _headline(prefix: str, words: str) -> str:
    """``prefix: words`` in :data:`STR_LIMIT` characters, the words cut rather than ``prefix``."""
    line = one_line(prefix, STR_LIMIT)
    room = STR_LIMIT - len(line) - 2
    return f"{line}: {one_line(words, room)}" if words and room > 3 else line


def _url(url: Optional[str]) -> str:
    return "" if url is None else " from " + one_line(url, _URL_LIMIT)


def excerpt(data: bytes | bytearray | str, limit: int = EXCERPT_LENGTH) -> str:
    """Return a short, printable quotation of ``data`` for an error message.

    The quotation stays under about ``limit`` characters however long ``data``
    is, escapes included (a line of control bytes quadruples in ``repr``).
    """
    if isinstance(data, (bytes, bytearray)):
        text = bytes(data[: limit * 4]).decode("utf-8", "backslashreplace")
    else:
        text = data[: limit * 4]
    quoted = repr(text[:limit])
    if len(quoted) > limit + 2:  # + 2: the quotes
        quoted = quoted[:limit] + quoted[0]
    elif len(text) <= limit and len(data) <= limit * 4:
        return quoted
    return quoted + f"... ({len(data)} {_unit(data)} in all)"


def _unit(data: bytes | bytearray | str) -> str:
    return "characters" if isinstance(data, str) else "bytes"


def _rebuild(cls: Type[BackendApiError], args: Tuple[Any, ...]) -> BackendApiError:
    """An exception of class ``cls`` made without its ``__init__``; pickle then sets its fields."""
    error = cls.__new__(cls)
    error.args = args
    return error


class BackendApiError(Exception):
    """Base class of every error the SDK raises.

    ``str(error)`` is one printable line of at most :data:`STR_LIMIT`
    characters; :attr:`message` is the whole text.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        """The whole description; for an error the server reported, its own words, whole."""

    def __str__(self) -> str:
        return self._headline()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> Tuple[Any, ...]:
        # Exception's own reduce calls cls(*args), which the keyword-only fields
        # of the subclasses refuse: unpickled in a ProcessPoolExecutor, such an
        # error broke the pool. The fields travel as the instance's state.
        return (_rebuild, (type(self), self.args), self.__dict__)

    def _headline(self) -> str:
        """``str(error)``: the line a log shows."""
        return one_line(self._text(), STR_LIMIT)

    def _text(self) -> str:
        # An error made by a caller's subclass may lack a message, or hold no str.
        message = self.__dict__.get("message")
        if message is None:
            return " ".join(map(str, self.args))
        return message if isinstance(message, str) else str(message)


class InvalidInputError(BackendApiError, ValueError, TypeError):
    """An argument was wrong; raised before anything is sent.

    It is also a :class:`ValueError` and a :class:`TypeError`, so code that
    catches the built-in exceptions for bad arguments keeps working.
    """


class APIConnectionError(BackendApiError):
    """The server could not be reached, or the connection failed mid-way."""

    def __init__(self, message: str, *, url: Optional[str] = None) -> None:
        super().__init__(message)
        self.url = url
        """The URL that was being requested, when known."""


class APITimeoutError(APIConnectionError):
    """A connect or read timeout expired."""


class IncompleteStreamError(APIConnectionError):
    """The stream ended before an event, or the HTTP body, was complete.

    Raised instead of ending the iteration quietly, so a cut connection is
    never mistaken for a finished answer.
    """


class APIStatusError(BackendApiError):
    """The server answered the request with an HTTP status >= 400 (or a redirect).

    ``str(error)`` is ``HTTP <status> <reason> from <url>: <the server's
    words>`` (``(empty body)`` when there are none), cut to one line;
    :attr:`message` is the server's own words, whole (the message of a JSON
    body, ``{"error": {"message": ...}}`` and its variants, else the body's
    text); :attr:`body` the parsed body. For a redirect, which is never
    followed, :attr:`message` says so.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        url: Optional[str] = None,
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        """The HTTP status code."""
        self.body = body
        """The decoded JSON body, or the body's text (its first 64 KiB), or None."""
        self.url = url
        """The URL that was requested."""
        self.reason = reason
        """The status line's reason phrase ("Not Found"), "" when there was none."""

    def _headline(self) -> str:
        status = f"HTTP {self.status_code} {self.reason}".rstrip()
        words = self._text()
        return _headline(status + _url(self.url), words if words.strip() else "(empty body)")


class StreamError(BackendApiError):
    """The server reported a fatal error inside the stream (an ``error`` event).

    Every event before it has already been yielded; the stream is closed.
    ``str(error)`` is ``error event (<error_type>) from <url>: <the server's
    words>``, cut to one line; :attr:`message` is the event's ``message``,
    whole (else its error name, else its JSON); :attr:`event` the event.
    """

    def __init__(self, message: str, *, event: RawResponse, url: Optional[str] = None) -> None:
        super().__init__(message)
        self.event = event
        """The ``error`` or ``auth`` event itself."""
        self.url = url
        """The URL of the stream, when known."""

    @property
    def error_type(self) -> Optional[str]:
        """The server-side exception name, e.g. ``"RuntimeError"``, if given."""
        name = self.event.get("error") if self.event.type == "error" else self.event.get("auth")
        return name if isinstance(name, str) else None

    def _headline(self) -> str:
        name = self.error_type
        kind = f"{self.event.type} event" + (f" ({name})" if name else "")
        return _headline(kind + _url(self.url), self._text())


class AuthenticationError(StreamError):
    """The provider needs a login or an api key (an ``auth`` event)."""


class DecodeError(BackendApiError, ValueError):
    """The server sent bytes that are not a valid event; the message quotes them."""


class EventTooLargeError(DecodeError):
    """One event grew past the decoder's ``max_event_size``."""


class ResponseTooLargeError(BackendApiError):
    """A plain call's answer (``models()``, ``version()``...) grew past its limit.

    The limit counts the body's bytes once decompressed; the call's
    ``max_response_size=`` argument, or the client's, raises it.
    """

    def __init__(self, message: str, *, limit: int, url: Optional[str] = None) -> None:
        super().__init__(message)
        self.limit = limit
        """The limit that was exceeded, in bytes."""
        self.url = url
        """The URL that was requested."""


class ToolCallError(BackendApiError):
    """A tool call the chat cannot run: arguments that are not a JSON object fitting
    the function's parameters, or a result with no JSON form.

    The chat is left as it was before the call: its history still ends with
    the assistant message that asked, so ``run_tools()`` can try again.
    """


class ToolRoundsExceededError(BackendApiError):
    """The model asked for tools again after ``max_tool_rounds`` rounds of tool results.

    The chat keeps every round: its history ends with the assistant message
    whose calls were not run; ``run_tools()`` goes on from there.
    """

    def __init__(self, message: str, *, rounds: int) -> None:
        super().__init__(message)
        self.rounds = rounds
        """How many rounds of tool results were sent."""


class AnswerParseError(BackendApiError, ValueError):
    """``answer.json()`` or ``answer.parse(Model)`` found no JSON, or none that fits.

    It is also a :class:`ValueError`, as :func:`json.loads` and pydantic's
    errors are. :attr:`message` says where: the line and column of the
    answer's text (in its fenced code block, if one was parsed), with an
    excerpt, or which field of which model; the error it came from (a
    :class:`json.JSONDecodeError`, pydantic's ``ValidationError``...) is its
    ``__cause__``.
    """

    def __init__(
        self,
        message: str,
        *,
        lineno: Optional[int] = None,
        colno: Optional[int] = None,
        pos: Optional[int] = None,
        model: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.lineno = lineno
        """The line (from 1) of the answer's text where JSON parsing failed, else None."""
        self.colno = colno
        """The column (from 1) of that line, else None."""
        self.pos = pos
        """The index of that character in the answer's text, else None."""
        self.model = model
        """The name of the class the JSON did not fit (``parse``), else None."""
