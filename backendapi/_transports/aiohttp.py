"""The asyncio transport, on ``aiohttp``: what the async client needs of that library.

It keeps a session per event loop (a script may call ``asyncio.run`` again,
a notebook runs its own loop, threads may run one each: see ``_loops``), its
TLS contexts, cookies and header limits, reads the body with ``readany()``
(``aiohttp_body.py``) within the SDK's own deadline, and maps aiohttp's exceptions to
:class:`~backendapi._transports.Failure` kinds in :func:`_failure`.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import ssl
import warnings
from typing import Any, Callable, Dict, Optional, TypeVar, Union
from urllib.parse import urlsplit

import aiohttp
import certifi
from aiohttp.http_exceptions import HttpProcessingError
from urllib3.exceptions import InsecureRequestWarning
from yarl import URL

from .._core.environment import environment_ca_bundle
from .._core.options import Timeout
from .._core.request import PreparedRequest
from .._errors import BackendApiError
from . import Failure, TransportBase, TransportError
from ._loops import LoopResponse, LoopSession, LoopSessions, ReadDeadline
from .aiohttp_body import BodyReader, broken_framing, use_head_first_protocol
from .body import INVALID_CHUNKING, MAX_FIELD_SIZE, MAX_FIELDS, ContentDecoder, body_decoder

__all__ = ["AiohttpResponse", "AiohttpTransport"]

T = TypeVar("T")

# The constructor's ``ssl`` argument shadows the module inside it.
SSLContextType = ssl.SSLContext

# The limits http.client (so the blocking transport) puts on a response's head: a line
# of up to 64 KiB and at most 99 header lines (aiohttp: 8190 bytes, 128 lines).
_HEADER_LIMITS: Dict[str, Any] = {"max_line_size": 65536, "max_field_size": MAX_FIELD_SIZE}
if "max_headers" in inspect.signature(aiohttp.ClientSession).parameters:  # aiohttp >= 3.13.4
    _HEADER_LIMITS["max_headers"] = MAX_FIELDS

# TLS inside TLS (an https:// proxy for an https:// server) is in asyncio from
# Python 3.11 on, and aiohttp then supports it; before, such a proxy is not used.
_PROXY_SCHEMES = ("http", "https") if hasattr(asyncio, "timeout") else ("http",)


class AiohttpResponse(LoopResponse):
    """A response whose body is read as it arrives."""

    __slots__ = ("_body", "_response")

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        decoder: Optional[ContentDecoder],
        deadline: ReadDeadline,
        own: Optional[_OwnSession],
    ) -> None:
        """``decoder``: the body's content coding (see ``body.py``); ``deadline`` and
        ``own`` (the own session, or None): see :class:`LoopResponse`."""
        super().__init__((response.status, response.reason or "", response.headers), deadline, own)
        self._response = response
        self._body = BodyReader(response, decoder)

    async def read(self) -> bytes:
        """The body bytes that have arrived (waited for within the deadline); ``b""`` at the end."""
        deadline = self._deadline
        deadline.start()
        body = self._body
        try:
            if not body.plain:
                return await body.read()
            data = await body.content.readany()  # BodyReader.read, written out
            if not data:
                body.ended()
            return data
        except asyncio.CancelledError:
            deadline.check()
            raise
        except (aiohttp.ClientError, HttpProcessingError, asyncio.TimeoutError, OSError) as exc:
            raise _failure(exc, connecting=False) from None
        finally:
            deadline._task = None  # deadline.stop(), written out

    def interrupt(self) -> None:
        """Make the read in progress (or the next) fail: the client is being closed."""
        self._response.content.set_exception(aiohttp.ClientConnectionError("the client was closed"))

    def close(self) -> None:
        """Keep the connection for reuse after a full read; close it otherwise."""
        self._body.close()
        self._done()
        if self._body.eof:
            self._response.release()
        else:
            self._response.close()  # the server sees the connection close


class AiohttpTransport(TransportBase[aiohttp.ClientSession]):
    """Sends requests through an ``aiohttp.ClientSession``: the caller's, or its own."""

    _session_class = aiohttp.ClientSession

    def __init__(self, session: Optional[aiohttp.ClientSession], **settings: Any) -> None:
        super().__init__(session, **settings)
        self._own: LoopSessions[_OwnSession] = LoopSessions()
        self._tls_context: Union[bool, SSLContextType, None] = None
        # ssl=True: the default contexts by the environment's CA bundle (None: certifi's).
        self._contexts: Dict[Optional[str], SSLContextType] = {}
        self._timeout_seen: Optional[Timeout] = None
        self._timeout_open: Optional[aiohttp.ClientTimeout] = None

    async def open(
        self, request: PreparedRequest, timeout: Timeout, remaining: Optional[float]
    ) -> AiohttpResponse:
        """Send ``request``; return its response once the head has arrived.

        ``remaining``: seconds left of the call's total timeout, or None.
        """
        if self._closed:
            raise BackendApiError("the client is closed")
        deadline = ReadDeadline(timeout.read, remaining)  # the total's, from before sending
        own = self._own.get(asyncio.get_running_loop())
        if self._owns_session and (own is None or self._pid != os.getpid()):
            own = await self._own_session(request.url)
        session = self._session if own is None else own.session
        assert session is not None
        options = self._request_options(request, own)
        if _unverified(self._ssl) and request.url[:6].lower() == "https:":
            # urllib3 warns so on every unverified request of the blocking client.
            warnings.warn(
                f"Unverified HTTPS request to host {urlsplit(request.url).hostname!r}: the "
                "server's certificate is not checked (ssl=False, or an SSLContext "
                "that does not require one)",
                InsecureRequestWarning,
                stacklevel=4,
            )
        try:
            response = await session.request(
                request.method,
                _wire_url(request.url),
                data=request.body,
                allow_redirects=False,
                timeout=self._client_timeout(timeout, remaining),
                auto_decompress=False,  # the body is decoded as in the blocking client
                **options,
            )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise _failure(exc, connecting=True) from None
        try:
            decoder = body_decoder(response.status, response.reason or "", response.headers)
        except TransportError:
            response.close()
            raise
        return AiohttpResponse(response, decoder, deadline, own)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` without blocking the event loop."""
        await asyncio.sleep(seconds)

    async def run_blocking(self, function: Callable[[], T]) -> T:
        """Run ``function`` (file reading) in a worker thread, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, function)

    async def aclose(self) -> None:
        """Close the own sessions (a caller's session is left open): this loop's here,
        another loop's on that loop (its calls in progress fail), at once."""
        self._closed = True
        await self._own.aclose(self._forked())

    def __del__(self, _getpid: Callable[[], int] = os.getpid) -> None:
        # An own session left open would leak its sockets and make aiohttp warn.
        # getattr: a constructor that raised leaves a half-built object behind.
        own = getattr(self, "_own", None)
        if own is not None:
            own.finalise(_getpid() != self._pid)

    def _client_timeout(
        self, timeout: Timeout, remaining: Optional[float]
    ) -> aiohttp.ClientTimeout:
        if remaining is None:
            # No total limit: the same (immutable) ClientTimeout for every request.
            if self._timeout_seen is not timeout or self._timeout_open is None:
                self._timeout_open = aiohttp.ClientTimeout(
                    total=None, sock_connect=timeout.connect, sock_read=timeout.read
                )
                self._timeout_seen = timeout
            return self._timeout_open
        return aiohttp.ClientTimeout(
            total=max(remaining, 0.001), sock_connect=timeout.connect, sock_read=timeout.read
        )

    def _request_options(
        self, request: PreparedRequest, own: Optional[_OwnSession] = None
    ) -> Dict[str, Any]:
        """``session.request()``'s keyword arguments beyond the request itself."""
        if not self._owns_session:
            # A caller's session obeys its own trust_env; its connector has no TLS setting.
            options: Dict[str, Any] = {"headers": request.headers}
            if self._proxy:
                options["proxy"] = self._proxy
            if self._ssl is not True:
                options["ssl"] = self._ssl_context()
            return options
        # The own session has trust_env=False: the environment is read above the seam,
        # once per loop iteration (aiohttp would read it in worker threads per request).
        loop = asyncio.get_running_loop()
        reading, fresh = self._environment.read(loop)
        if fresh:
            loop.call_soon(self._environment.expire)
        route = reading.route(request.url, self._proxy, request.has_authorization, _PROXY_SCHEMES)
        headers = {**request.headers, **route.headers} if route.headers else request.headers
        options = {"headers": headers}
        if route.proxy is not None:
            options["proxy"] = route.proxy
        tls = self._request_tls(request.url, route.proxy, own)
        if tls is not None:
            options["ssl"] = tls
        return options

    def _request_tls(
        self, url: str, proxy: Optional[str], own: Optional[_OwnSession]
    ) -> Union[bool, ssl.SSLContext, None]:
        """The TLS setting for ``url`` (through ``proxy``) over the own session ``own``,
        where its connector's is not it; None where that one serves, or no TLS is needed."""
        if url[:6].lower() != "https:" and (proxy or "")[:6].lower() != "https:":
            return None  # no TLS at all: to the server nor to a proxy
        tls, bundle_then = (True, None) if own is None else (own.tls, own.bundle)
        if self._ssl is True:
            # The environment's CA bundle may have changed since the connector was made.
            bundle = environment_ca_bundle()
            if tls and bundle == bundle_then:
                return None
            return self._default_context(bundle)
        if tls:
            return None
        # TLS after all (a proxy from the environment): the setting per request.
        if self._tls_context is None:
            self._tls_context = self._ssl_context()
        return self._tls_context

    async def _own_session(self, url: str) -> _OwnSession:
        """This loop's own session, made if it has none (or only its parent process's)."""
        loop = asyncio.get_running_loop()
        own = self._own.prepare(loop, self._forked())
        if own is not None:
            return own
        # Loading a CA bundle takes ~12 ms: not for a plain-http server without a proxy.
        tls = (
            self._proxy is not None
            or not url.lower().startswith("http://")
            or self._ssl is False
            or isinstance(self._ssl, SSLContextType)
        )
        bundle = environment_ca_bundle() if tls and self._ssl is True else None
        connector = aiohttp.TCPConnector(
            ssl=self._ssl_context(bundle) if tls else True,
            limit=self._max_connections,
            limit_per_host=0,
        )
        use_head_first_protocol(connector, loop)
        # The cookies, kept for the client's life as requests.Session keeps them, across
        # loops too; unsafe=True: cookies of a server reached by IP address are kept, as
        # requests (and browsers) keep them; aiohttp's default drops them.
        jar = self._own.shared(lambda: aiohttp.CookieJar(unsafe=True))
        session = aiohttp.ClientSession(
            connector=connector, trust_env=False, cookie_jar=jar, **_HEADER_LIMITS
        )
        own = _OwnSession(session, tls, bundle)
        await own.start(session.close, self._pid)
        if not self._own.add(own):  # closed by another thread meanwhile
            await own.aclose()
            raise BackendApiError("the client is closed")
        return own

    def _ssl_context(self, bundle: Optional[str] = None) -> Union[bool, ssl.SSLContext]:
        """The context for ``ssl=``; for True, one trusting ``bundle`` (else certifi's)."""
        option = self._ssl
        if option is False or isinstance(option, SSLContextType):
            return option
        if isinstance(option, str):
            return _context_trusting(option)
        return self._default_context(bundle)

    def _default_context(self, bundle: Optional[str]) -> ssl.SSLContext:
        # requests verifies against the environment's bundle, else certifi's: trust
        # the same. One context per bundle: loading one takes ~12 ms.
        context = self._contexts.get(bundle)
        if context is None:
            context = self._contexts[bundle] = _context_trusting(bundle or certifi.where())
        return context


def _failure(exc: BaseException, *, connecting: bool) -> TransportError:
    """aiohttp's exception as a :class:`Failure`: the one table of this transport.

    ``connecting``: raised while sending the request and waiting for the head
    (a bare timeout is then the connect timeout's), not while reading a body.
    """
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
        return TransportError(Failure.TLS, detail)
    if not connecting and broken_framing(exc):
        return TransportError(Failure.INVALID_RESPONSE, INVALID_CHUNKING)
    if isinstance(exc, aiohttp.ClientPayloadError):
        if "compress" in detail.lower() or "decod" in detail.lower():
            # The innermost message of the chain (aiohttp's ContentEncodingError):
            # ClientPayloadError's own text spans two lines.
            cause: BaseException = exc
            while cause.__cause__ is not None:
                cause = cause.__cause__
            return TransportError(Failure.DECOMPRESS, getattr(cause, "message", None) or str(cause))
        return TransportError(Failure.INCOMPLETE, detail)
    if isinstance(exc, aiohttp.SocketTimeoutError) or (
        not connecting and isinstance(exc, asyncio.TimeoutError)
    ):
        return TransportError(Failure.READ_TIMEOUT, detail)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return TransportError(Failure.CONNECT_TIMEOUT, detail)
    if isinstance(exc, asyncio.TimeoutError):
        # The ClientTimeout's total: what was left of the call's total timeout, which
        # the client finds expired.
        return TransportError(Failure.CONNECT_TIMEOUT, detail)
    if isinstance(exc, aiohttp.ClientResponseError):
        # Raised before any response is handed over: the response is no HTTP (a bad
        # status line, a header beyond the limits).
        return TransportError(Failure.INVALID_RESPONSE, exc.message or detail)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportError(Failure.CONNECT, str(exc.os_error) or detail)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        # Connected (ClientConnectorError is above): the request went out.
        return TransportError(Failure.DISCONNECTED if connecting else Failure.OTHER, detail)
    if not connecting:
        detail = str(exc) or repr(exc)
    return TransportError(Failure.OTHER, detail)


class _OwnSession(LoopSession[aiohttp.ClientSession]):
    """A session the transport made, for the loop it belongs to."""

    __slots__ = ("bundle", "tls")

    def __init__(self, session: aiohttp.ClientSession, tls: bool, bundle: Optional[str]) -> None:
        super().__init__(session)
        self.tls = tls  # False: the connector has no TLS setting (see _request_tls)
        self.bundle = bundle  # the CA bundle the connector's default context trusts

    def close_now(self) -> None:
        """Release the connections without awaiting."""
        session = self.session
        if session.closed:
            return
        connector = session.connector
        session.detach()
        if connector is not None:
            connector._close()  # closes every transport while the loop still runs

    def abandon(self) -> None:
        """Leave the session and its connections to the parent process."""
        connector = self.session.connector
        self.session.detach()  # its closer and finaliser then close nothing
        if connector is not None:
            connector._closed = True  # its finaliser would close the parent's connections


def _wire_url(url: str) -> Union[str, URL]:
    """``url`` for aiohttp, its query sent exactly as the core encoded it.

    The core's queries come from ``urlencode`` (plain ASCII, only unreserved
    characters left bare), which requests sends as they are. yarl would
    requote them (``%2F`` to ``/``, ``%27`` to ``'``...): the same values for
    a server that decodes, other bytes for one that signs or compares the raw
    target. The part before the query goes through yarl as usual (IDNA host,
    quoted path).
    """
    base, mark, query = url.partition("?")
    if not mark:
        return url
    return URL(f"{URL(base)}?{query}", encoded=True)


def _context_trusting(path: str) -> ssl.SSLContext:
    """A default context that trusts the CA bundle at ``path`` (a file or a directory)."""
    if os.path.isdir(path):
        return ssl.create_default_context(capath=path)
    return ssl.create_default_context(cafile=path)


def _unverified(option: object) -> bool:
    """True when ``ssl=`` leaves the server's certificate unchecked."""
    if isinstance(option, SSLContextType):
        return option.verify_mode != ssl.CERT_REQUIRED
    return option is False
