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
    └── DecodeError              bytes that are not a valid event
        └── EventTooLargeError   one event exceeded the decoder's size limit

No message carries the api key: the clients scrub it from any text the server
sends back before it becomes part of an exception.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from ._events import RawResponse

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BackendApiError",
    "DecodeError",
    "EventTooLargeError",
    "IncompleteStreamError",
    "InvalidInputError",
    "StreamError",
]

EXCERPT_LENGTH = 120


def one_line(text: str, limit: int = 300) -> str:
    """``text`` with its runs of whitespace (newlines too) made single spaces, cut at ``limit``."""
    return " ".join(text.split())[:limit]


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


class BackendApiError(Exception):
    """Base class of every error the SDK raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        """Human-readable description, also ``str(error)``."""


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
    """The server answered the request with an HTTP status >= 400.

    ``message`` is the server's own message (from ``{"error": {"message": ...}}``
    or the start of the body text).
    """

    def __init__(
        self, message: str, *, status_code: int, body: Any = None, url: Optional[str] = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        """The HTTP status code."""
        self.body = body
        """The decoded JSON body, or the body text (truncated), or None."""
        self.url = url
        """The URL that was requested."""


class StreamError(BackendApiError):
    """The server reported a fatal error inside the stream (an ``error`` event).

    Every event before it has already been yielded; the stream is closed.
    """

    def __init__(self, message: str, *, event: RawResponse) -> None:
        super().__init__(message)
        self.event = event
        """The ``error`` or ``auth`` event itself."""

    @property
    def error_type(self) -> Optional[str]:
        """The server-side exception name, e.g. ``"RuntimeError"``, if given."""
        name = self.event.get("error") if self.event.type == "error" else self.event.get("auth")
        return name if isinstance(name, str) else None


class AuthenticationError(StreamError):
    """The provider needs a login or an api key (an ``auth`` event)."""


class DecodeError(BackendApiError, ValueError):
    """The server sent bytes that are not a valid event; the message quotes them."""


class EventTooLargeError(DecodeError):
    """One event grew past the decoder's ``max_event_size``."""
