"""The seam between the client and an HTTP library.

A transport sends a :class:`~backendapi._core.request.PreparedRequest` and
hands back a response: its status, reason and headers, and a reader that
returns whatever body bytes have arrived. There is one per library:
``requests.py`` (blocking) and ``aiohttp.py`` (asyncio). Each keeps to
itself what its library needs (sessions, TLS contexts, pools, timeouts,
cookies, header limits) and turns every exception its library raises into a
:class:`TransportError` of one :class:`Failure` kind, in one table.

Everything else is decided above the seam, once, for both: which failures
are retried, what an error says, how long the whole call may take, what the
environment asks for (``backendapi._core.environment``).
"""

from __future__ import annotations

import enum
import os
import ssl
from typing import ClassVar, Generic, List, Mapping, Optional, TypeVar, Union

from .._core.environment import Environment
from .._errors import InvalidInputError

__all__ = ["Failure", "ResponseHead", "TransportBase", "TransportError"]

SessionT = TypeVar("SessionT")

_inherited: List[object] = []
"""What transports abandoned in a forked child: the parent's sessions and their pooled
connections, referenced for the child's life so that no collector closes them either."""


class Failure(enum.Enum):
    """What went wrong below the seam, as far as a client must know."""

    CONNECT = "connect"
    """No connection, or one closed before any response: the server did no work
    that anybody will see, so asking again is safe."""
    DISCONNECTED = "disconnected"
    """The connection closed (or was reset) after the request went out and before any
    response: a server does that to an idle keep-alive connection it closes just as
    the client reuses it. No answer was begun, so asking again is taken to be safe."""
    CONNECT_TIMEOUT = "connect timeout"
    """The connection was not made within the connect timeout (asking again is safe)."""
    TLS = "tls"
    """The TLS handshake failed: a certificate problem does not go away by asking again."""
    READ_TIMEOUT = "read timeout"
    """The request was sent and the server stayed silent for the read timeout:
    it may be working on it, so it is not asked again."""
    INVALID_RESPONSE = "invalid response"
    """The server answered, but not in HTTP (a bad status line, a header too long)."""
    INCOMPLETE = "incomplete"
    """The response's body broke off before its end."""
    DECOMPRESS = "decompress"
    """The body's content coding (gzip, deflate...) could not be decoded."""
    OTHER = "other"
    """Anything else the library raised, after the request may have been sent."""

    @property
    def retryable(self) -> bool:
        """True where nothing of the request reached the server's work: asking again is safe."""
        return self in (Failure.CONNECT, Failure.DISCONNECTED, Failure.CONNECT_TIMEOUT)


class TransportError(Exception):
    """A library's failure, as a transport reports it: its :class:`Failure` kind and text.

    ``detail`` is the library's most specific description (it may quote what
    the server sent, so the client redacts it before it shows it).
    """

    def __init__(self, kind: Failure, detail: str) -> None:
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.detail}"


class ResponseHead:
    """What both transports' responses have before their body: status, reason, headers."""

    __slots__ = ("headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: Mapping[str, str]) -> None:
        self.status = status
        """The HTTP status code."""
        self.reason = reason
        """The reason phrase ("" when the server sent none)."""
        self.headers = headers
        """The headers; look-ups ignore case."""

    def close(self) -> None:
        """Release the connection: kept for reuse after a full read, else closed."""
        raise NotImplementedError


class TransportBase(Generic[SessionT]):
    """What both transports keep: a session (the caller's, or one of their own) and settings."""

    _session_class: ClassVar[type]
    """The library's session class; a transport sets it."""

    def __init__(
        self,
        session: Optional[SessionT],
        *,
        ssl: Union[bool, ssl.SSLContext, str],
        proxy: Optional[str],
        max_connections: int,
    ) -> None:
        kind = self._session_class
        if session is not None and not isinstance(session, kind):
            raise InvalidInputError(
                f"session must be a {kind.__module__.split('.')[0]}.{kind.__name__}, "
                f"not {type(session).__name__}"
            )
        self._session: Optional[SessionT] = session
        self._owns_session = session is None
        self._ssl = ssl
        self._proxy = proxy
        self._max_connections = max_connections
        self._closed = False
        self._environment = Environment()
        """Read for the own session's requests (the transport says how long a reading lasts)."""
        self._pid = os.getpid()

    def _forked(self) -> bool:
        """True, once, in a process forked since the transport's last look (or its birth).

        The own sessions are then the parent's: their pooled sockets are the very
        connections the parent goes on using. The child must neither send on them
        (answers would cross) nor close them (closing sends a TLS close_notify on
        the parent's connection, and takes an asyncio socket out of the event-loop
        selector both processes share), so it abandons them (:meth:`_abandon`) and
        makes its own. The pid is checked as redis-py and psycopg check it: cheap
        enough per request, and it sees forks made without ``os.fork`` too.
        """
        pid = os.getpid()
        if pid == self._pid:
            return False
        self._pid = pid
        return True

    @staticmethod
    def _abandon(inherited: object) -> None:
        """Keep what a forked child inherited, unused and unclosed (see :meth:`_forked`)."""
        _inherited.append(inherited)
