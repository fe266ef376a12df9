"""The blocking transport, on ``requests``: what the blocking client needs of that library.

It keeps a ``requests.Session`` (the caller's, or its own with a pool sized
for ``max_connections`` and an adapter that uses an ``SSLContext`` as it
is), reads the body with urllib3's ``read1``, refuses the response heads
aiohttp refuses, and maps requests' and urllib3's exceptions to
:class:`~backendapi._transports.Failure` kinds in :func:`_failure`.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from typing import Any, Callable, Dict, Mapping, Optional, Set, TypeVar, Union

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from .._core.environment import environment_ca_bundle
from .._core.options import READ_SIZE, Timeout
from .._core.request import PreparedRequest
from .._errors import BackendApiError, InvalidInputError
from . import Failure, ResponseHead, TransportBase, TransportError
from .body import INVALID_CHUNKING, ContentDecoder, body_decoder
from .connections import (
    FinalResponse,
    call_deadline,
    close_abandoned_responses,
    final_responses_below,
    use_own_connections,
)

__all__ = ["RequestsResponse", "RequestsTransport"]

T = TypeVar("T")

# The constructor's ``ssl`` argument shadows the module inside it.
SSLContextType = ssl.SSLContext


class RequestsResponse(ResponseHead):
    """A response whose body is read as it arrives; in ``open_responses`` until closed.

    urllib3 keeps no lent connection: a stream dropped in a reference cycle would take its
    socket into that garbage, finalized ("unclosed socket") before ``__del__`` closes it.
    """

    __slots__ = ("_body", "_deadline", "_decoder", "_open_responses", "_read_timeout", "_response")

    def __init__(
        self,
        response: requests.Response,
        read_timeout: Optional[float],
        deadline: Optional[float],
        decoder: Optional[ContentDecoder],
        open_responses: Set[RequestsResponse],
    ) -> None:
        super().__init__(response.status_code, response.reason or "", response.headers)
        self._response = response
        self._read_timeout = read_timeout
        self._deadline = deadline
        self._decoder = decoder
        self._open_responses = open_responses
        open_responses.add(self)
        # http.client's response below urllib3's, when its body is chunked (see read()).
        body = getattr(response.raw, "_fp", None)
        self._body = body if isinstance(body, FinalResponse) and body.chunked else None

    def read(self) -> bytes:
        """The body bytes that have arrived (waiting for some), decoded; ``b""`` at its end."""
        # A body with a content coding is a _DecodedResponse's: this is the raw read.
        raw = self._response.raw
        if self._deadline is not None:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise TransportError(Failure.READ_TIMEOUT, "the total timeout ran out")
            # The read timeout is the socket's; shorten it to what the total leaves.
            sock = getattr(raw.connection, "sock", None)
            if sock is not None:
                sock.settimeout(_at_most(self._read_timeout, remaining))
        # read1() returns whatever bytes have arrived, at most READ_SIZE, so an
        # event is handed out as soon as its last byte is here. iter_lines() and
        # iter_content() would instead wait for a full read size on a
        # close-delimited body (a 2 s server pause held events back 2 s).
        body = self._body
        try:
            if body is not None:
                # The usual chunked framing, read below urllib3 (FinalResponse.read_data).
                try:
                    data = body.read_data(READ_SIZE)
                except OSError:
                    with raw._error_catcher():  # what read1 would make of it, and do
                        raise
                if data:
                    return data
            return raw.read1(READ_SIZE, decode_content=False) or b""
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _failure(exc) from None

    def close(self) -> None:
        """Release the connection: back to the pool after a full read, else closed."""
        # After a full read urllib3 has already put the connection back in the
        # pool; otherwise this closes the socket, so the server sees it.
        self._open_responses.discard(self)
        self._response.close()


class _DecodedResponse(RequestsResponse):
    """A response whose body has a content coding (gzip...), undone as it is read."""

    __slots__ = ()

    def read(self) -> bytes:
        """The body bytes that have arrived (waiting for some), decoded; ``b""`` at its end."""
        decoder = self._decoder
        assert decoder is not None
        data = decoder.take()
        while not data:
            raw = RequestsResponse.read(self)
            data = decoder.feed(raw)
            if not raw:
                break
        return data


class RequestsTransport(TransportBase[requests.Session]):
    """Sends requests through a ``requests.Session``: the caller's, or its own.

    One transport may be shared by several threads.
    """

    _session_class = requests.Session

    def __init__(self, session: Optional[requests.Session], **settings: Any) -> None:
        super().__init__(session, **settings)
        if session is not None and isinstance(self._ssl, SSLContextType):
            raise InvalidInputError(
                "ssl=SSLContext cannot be applied to a session you own; "
                "mount an adapter with that context on your session instead"
            )
        self._lock = threading.Lock()
        self.open_responses: Set[RequestsResponse] = set()  # see RequestsResponse

    def open(
        self, request: PreparedRequest, timeout: Timeout, remaining: Optional[float]
    ) -> RequestsResponse:
        """Send ``request``; return its response once the head has arrived.

        ``remaining``: seconds left of the call's total timeout, or None.
        """
        session = self._get_session()
        headers: Mapping[str, str] = request.headers
        proxies: Optional[Dict[str, str]] = None
        if self._proxy:
            proxies = {"http": self._proxy, "https": self._proxy}
        elif self._owns_session or session.trust_env:
            # The own session trusts nothing itself (trust_env=False): the environment
            # is read above the seam, by the same rules for both transports.
            reading, _ = self._environment.read()
            route = reading.route(request.url, None, request.has_authorization)
            if route.proxy is not None:
                proxies = {"http": route.proxy, "https": route.proxy}
            if route.headers and self._owns_session:
                headers = {**headers, **route.headers}
        verify = self._verify(request.url, proxies)
        deadline = None if remaining is None else time.monotonic() + remaining
        try:
            # Responses below an HTTPAdapter skip 1xx and keep the deadline at every socket read.
            final = self._owns_session or final_responses_below(session, request.url)
            with call_deadline(deadline):
                response = session.request(
                    request.method,
                    request.url,
                    headers=headers,
                    data=request.body,
                    stream=True,
                    allow_redirects=False,
                    timeout=(
                        _at_most(timeout.connect, remaining),
                        _at_most(timeout.read, remaining),
                    ),
                    verify=verify,
                    proxies=proxies,
                    # requests would replace an Authorization header of the caller's with
                    # credentials from .netrc; a no-op auth keeps the header.
                    auth=_keep_headers if request.has_authorization else None,
                )
        except requests.RequestException as exc:
            raise _failure(exc) from None
        # The request (its body, a conversation of a few KB) is sent: the response need
        # not keep it for a stream's life.
        response.request = None  # type: ignore[assignment]
        hint = "" if final or response.status_code == 101 else _SKIPPED_BELOW_HTTP_ADAPTERS
        try:
            decoder = body_decoder(
                response.status_code, response.reason or "", response.headers, hint
            )
        except TransportError:
            response.close()  # the connection is closed, never pooled with a body unread
            raise
        response_class = RequestsResponse if decoder is None else _DecodedResponse
        return response_class(response, timeout.read, deadline, decoder, self.open_responses)

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        time.sleep(seconds)

    def run_blocking(self, function: Callable[[], T]) -> T:
        """Run ``function`` (file reading): here, in the calling thread."""
        return function()

    def close(self) -> None:
        """Close the own session and its connections (a caller's session is left open)."""
        forked = self._forked()
        if forked:
            self._lock = threading.Lock()  # a thread of the parent's may have held it
        with self._lock:
            self._closed = True
            session, self._session = self._session, None
        if session is not None and self._owns_session:
            if forked:
                self._abandon(session)  # the parent's connections: left to the parent
            else:
                session.close()

    def _verify(self, url: str, proxies: Optional[Dict[str, str]]) -> Union[bool, str, None]:
        """requests' ``verify``: None leaves the session's own setting in force."""
        if self._ssl is False or isinstance(self._ssl, str):
            return self._ssl
        if self._ssl is not True:
            return None  # an SSLContext: the own adapter applies it
        tls = url[:6].lower() == "https:" or any(
            proxy[:6].lower() == "https:" for proxy in (proxies or {}).values()
        )
        # requests trusts the bundle the environment names; a missing one is named
        # here, by its variable, rather than by requests' OSError.
        bundle = environment_ca_bundle() if tls else None
        if not self._owns_session:
            return None  # the caller's session reads the environment itself
        return bundle or True

    def _get_session(self) -> requests.Session:
        forked = self._forked()
        if forked:
            self._lock = threading.Lock()  # a thread of the parent's may have held it
        with self._lock:
            if self._closed:
                raise BackendApiError("the client is closed")
            if forked and self._session is not None and self._owns_session:
                # A forked child: its pool holds the parent's connections.
                self._abandon(self._session)
                self._session = None
            if self._session is None:
                session = requests.Session()
                # Proxies, .netrc and the CA bundle come from the core's reading
                # of the environment (see open), the async transport's too.
                session.trust_env = False
                context = self._ssl if isinstance(self._ssl, SSLContextType) else None
                for prefix in ("http://", "https://"):
                    session.mount(prefix, _Adapter(self._max_connections, context))
                self._session = session
            return self._session


class _Adapter(HTTPAdapter):
    """requests' adapter, with room for ``max_connections`` and an optional SSLContext.

    urllib3 keeps 10 connections per host by default and discards (with a
    warning) the ones beyond, which many threads sharing a client would hit.
    """

    def __init__(self, max_connections: int, context: Optional[ssl.SSLContext]) -> None:
        self._context = context
        super().__init__(pool_maxsize=max_connections)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._context is not None:
            kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)
        use_own_connections(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # requests gives a proxy's pools no ssl_context: through a proxy, the
        # server's certificate would be checked against certifi's CAs instead.
        if self._context is not None:
            proxy_kwargs.setdefault("ssl_context", self._context)
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        use_own_connections(manager)
        return manager

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        if getattr(conn, "scheme", None) == "https" and not url.lower().startswith("https:"):
            # A plain-http request through an https:// proxy: the pool is the proxy's.
            # requests would leave its certificate unchecked (for an http URL); it is
            # checked like a server's.
            url = "https:" + url.split(":", 1)[1]
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        context = self._context
        if context is not None and url.lower().startswith("https:"):
            # The caller's SSLContext is used as it is: requests would make urllib3
            # set its verify_mode and load certifi's CAs into it (a context trusting
            # one private CA would then trust every public one).
            conn.cert_reqs = _CERT_REQS[context.verify_mode]
            conn.ca_certs = conn.ca_cert_dir = None
            # check_hostname off: no hostname check, not urllib3's own one instead.
            conn.assert_hostname = None if context.check_hostname else False


_CERT_REQS = {
    ssl.CERT_NONE: "CERT_NONE",
    ssl.CERT_OPTIONAL: "CERT_OPTIONAL",
    ssl.CERT_REQUIRED: "CERT_REQUIRED",
}


_SKIPPED_BELOW_HTTP_ADAPTERS = (
    "; the client skips these below requests' HTTPAdapter only, "
    "not below your session's adapter for this URL"
)


def _keep_headers(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """An ``auth`` for requests that changes nothing: no ``.netrc`` lookup."""
    return request


def _failure(exc: BaseException) -> TransportError:
    """requests' or urllib3's exception as a :class:`Failure`: the one table of this transport."""
    detail = _innermost(exc)
    inner = _innermost_exception(exc)
    if isinstance(exc, requests.ConnectTimeout):
        return TransportError(Failure.CONNECT_TIMEOUT, detail)
    if isinstance(exc, (requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError)):
        return TransportError(Failure.READ_TIMEOUT, detail)
    if isinstance(exc, requests.exceptions.SSLError) or isinstance(inner, ssl.SSLError):
        return TransportError(Failure.TLS, detail)
    if isinstance(inner, http.client.IncompleteRead) and isinstance(inner.__context__, ValueError):
        # http.client's word for a chunk-size line that is no hex number.
        return TransportError(Failure.INVALID_RESPONSE, INVALID_CHUNKING)
    if isinstance(
        exc, (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError)
    ):
        return TransportError(Failure.INCOMPLETE, detail)
    if isinstance(exc, urllib3.exceptions.DecodeError):
        return TransportError(Failure.DECOMPRESS, detail)
    if isinstance(inner, urllib3.exceptions.InvalidHeader) or (
        isinstance(inner, http.client.HTTPException)
        and not isinstance(inner, (http.client.RemoteDisconnected, http.client.IncompleteRead))
    ):
        # The server answered, but not in HTTP (a bad status line, a header too long,
        # two unlike Content-Lengths).
        close_abandoned_responses(exc)
        return TransportError(Failure.INVALID_RESPONSE, detail)
    if isinstance(exc, requests.ConnectionError):
        cause = exc.args[0] if exc.args else None
        if isinstance(cause, urllib3.exceptions.MaxRetryError):
            cause = cause.reason  # a session of the caller's that retries
        if isinstance(cause, urllib3.exceptions.ProtocolError):
            # urllib3's "Connection aborted.": connected, then closed or reset before any
            # response, the request sent (or being sent).
            return TransportError(Failure.DISCONNECTED, detail)
        return TransportError(Failure.CONNECT, detail)
    return TransportError(Failure.OTHER, detail)


def _at_most(timeout: Optional[float], remaining: Optional[float]) -> Optional[float]:
    """The smaller of a timeout and the time left, either of which may be None."""
    if remaining is None:
        return timeout
    remaining = max(remaining, 0.001)
    return remaining if timeout is None else min(timeout, remaining)


def _innermost(exc: BaseException) -> str:
    """The most specific description in an exception chain (urllib3 nests them)."""
    seen = _innermost_exception(exc)
    return str(seen) or type(seen).__name__


def _innermost_exception(exc: BaseException) -> BaseException:
    """The most specific exception in a chain (urllib3 nests them in reasons and args)."""
    seen = exc
    while True:
        reason = getattr(seen, "reason", None)
        if isinstance(reason, BaseException) and reason is not seen:
            seen = reason
            continue
        args = getattr(seen, "args", ())
        nested = next((arg for arg in args if isinstance(arg, BaseException)), None)
        if nested is not None and nested is not seen:
            seen = nested
            continue
        return seen
