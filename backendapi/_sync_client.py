"""The blocking client, on ``requests``: for scripts and Jupyter notebooks."""

from __future__ import annotations

import http.client
import logging
import ssl
import threading
import time
from types import TracebackType
from typing import Any, Dict, Iterator, List, Mapping, Optional, Type, Union
from urllib.parse import quote, urlsplit, urlunsplit

import requests
import urllib3.exceptions
import urllib3.response
from requests.adapters import HTTPAdapter

from ._answer import Answer
from ._base import (
    ERROR_BODY_LIMIT,
    READ_SIZE,
    BaseClient,
    Exchange,
    StreamBase,
    Timeout,
    environment_ca_bundle,
)
from ._errors import (
    APIConnectionError,
    APITimeoutError,
    BackendApiError,
    DecodeError,
    IncompleteStreamError,
    InvalidInputError,
)
from ._events import RawResponse, _set_fields, _wrap_events
from ._events import _new as _new_event
from ._media import MediaInput
from ._request import Messages

__all__ = ["BackendApiClient", "Stream"]

logger = logging.getLogger("backendapi")

# The constructor's ``ssl`` argument shadows the module inside it.
SSLContextType = ssl.SSLContext


class BackendApiClient(BaseClient[requests.Session]):
    """Blocking client for a Backend API server, on ``requests``.

    >>> with BackendApiClient("http://localhost:8080") as client:  # doctest: +SKIP
    ...     for event in client.create("gpt-4o", [{"role": "user", "content": "Hi"}]):
    ...         if event.type == "content":
    ...             print(event.content, end="", flush=True)

    It takes the arguments :class:`BaseClient` lists, the same as
    :class:`AsyncBackendApiClient`; ``session`` is a ``requests.Session``.
    One client may be shared by several threads.
    """

    _session_type = requests.Session

    def _setup(self) -> None:
        if not self._owns_session and isinstance(self.ssl, SSLContextType):
            raise InvalidInputError(
                "ssl=SSLContext cannot be applied to a session you own; "
                "mount an adapter with that context on your session instead"
            )
        self._lock = threading.Lock()

    def create(
        self,
        model: str,
        messages: Messages,
        media: Optional[MediaInput] = None,
        api_key: Optional[str] = None,
        **kwargs: Any,
    ) -> Stream:
        """Start a conversation turn; return the :class:`Stream` of its events.

        The body is ``{"model", "messages", "media", "api_key", **kwargs}``:
        ``provider``, ``conversation``, ``action``, ``temperature`` and any
        other option go in ``kwargs``. Arguments are checked here, before any
        network call; the request goes out when the stream is entered or
        first iterated.
        """
        core = self._prepare(model, messages, media, api_key, kwargs)
        return Stream(self, core)

    def complete(
        self,
        model: str,
        messages: Messages,
        media: Optional[MediaInput] = None,
        api_key: Optional[str] = None,
        **kwargs: Any,
    ) -> Answer:
        """Send a turn and return the finished :class:`Answer`, with no loop to write.

        >>> messages = [{"role": "user", "content": "Hi"}]
        >>> answer = client.complete("gpt-4o", messages)  # doctest: +SKIP
        >>> print(answer.text, answer.usage)  # doctest: +SKIP
        """
        with self.create(model, messages, media, api_key, **kwargs) as stream:
            return stream.collect()

    def version(self) -> Dict[str, Any]:
        """The server's version: ``{"version": "8.8.6", "latest_version": ...}``."""
        result: Dict[str, Any] = self._fetch(self._version_call(), json=True)
        return result

    def models(self, provider: Optional[str] = None) -> Any:
        """All models as ``{provider: [model ids]}``, or one provider's model objects."""
        return self._fetch(self._models_call(provider), json=True)

    def providers(self) -> List[Dict[str, Any]]:
        """The server's providers (``name``, ``label``, ``auth``, ``vision``...)."""
        result: List[Dict[str, Any]] = self._fetch(self._providers_call(), json=True)
        return result

    def create_text(
        self, prompt: str, *, model: Optional[str] = None, provider: Optional[str] = None
    ) -> str:
        """The plain-text ``GET /backend-api/v2/create`` endpoint: one prompt, the answer's text."""
        result: str = self._fetch(self._create_text_call(prompt, model, provider), json=False)
        return result

    def upload(self, bucket_id: str, files: MediaInput) -> Any:
        """Upload files (paths, bytes, file objects) to a bucket for later messages."""
        return self._fetch(self._upload_call(bucket_id, files), json=True)

    def close(self) -> None:
        """Close the client's own session and its connections (a caller's session is left open)."""
        with self._lock:
            self._closed = True
            session, self._session = self._session, None
        if session is not None and self._owns_session:
            session.close()

    def __enter__(self) -> BackendApiClient:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def _fetch(self, exchange: Exchange, *, json: bool) -> Any:
        exchange.start_clock(self.timeout.total)
        try:
            with self._send(exchange, stream=False) as response:
                answer = (
                    response.status_code,
                    response.reason or "",
                    response.content,
                    response.headers.get("Location"),
                )
        except requests.RequestException as exc:
            raise _request_error(exchange, self.timeout, exc) from None
        return exchange.json_result(*answer) if json else exchange.text_result(*answer)

    def _send(self, exchange: Exchange, *, stream: bool) -> requests.Response:
        """Send the request, retrying as :attr:`retry` allows; return the answer's head."""
        request = exchange.request
        session = self._get_session()
        timeout = self.timeout
        proxies = {"http": self.proxy, "https": self.proxy} if self.proxy else None
        if proxies is None and session.trust_env:
            proxies = _environment_proxy_with_netrc(request.url)
        # requests would replace an Authorization header of the caller's with
        # credentials from .netrc; a no-op auth keeps the header (as aiohttp does).
        auth = _keep_headers if request.has_authorization else None
        if self.ssl is True and request.url[:6].lower() == "https:":
            # requests trusts the bundle this names; a missing one is named here,
            # as the async client names it, rather than by requests' OSError.
            environment_ca_bundle()
        attempt = 0
        while True:
            exchange.log_request()
            if exchange.expired():
                raise exchange.total_timeout_error(timeout.total)
            remaining = exchange.remaining()
            try:
                response = session.request(
                    request.method,
                    request.url,
                    headers=request.headers,
                    data=request.body,
                    stream=stream,
                    allow_redirects=False,
                    timeout=(
                        _at_most(timeout.connect, remaining),
                        _at_most(timeout.read, remaining),
                    ),
                    verify=self._verify(),
                    proxies=proxies,
                    auth=auth,
                )
            except requests.RequestException as exc:
                delay = self.retry.error_delay(attempt) if _may_retry(exc) else None
                if delay is None or not exchange.can_wait(delay):
                    if exchange.expired():
                        raise exchange.total_timeout_error(timeout.total) from None
                    raise _request_error(exchange, timeout, exc) from None
                exchange.log_retry(attempt, delay, _innermost(exc))
            else:
                problem = _answer_framing_problem(response.headers)
                if problem is not None:
                    response.close()
                    raise exchange.invalid_answer_error(problem)
                logger.debug("HTTP %d from %s", response.status_code, request.url)
                delay = self.retry.status_delay(
                    attempt, response.status_code, response.headers.get("Retry-After")
                )
                if delay is None or not exchange.can_wait(delay):
                    return response
                response.close()
                exchange.log_retry(attempt, delay, f"HTTP {response.status_code}")
            time.sleep(delay)
            attempt += 1

    def _verify(self) -> Union[bool, str, None]:
        """requests' ``verify``: None leaves the session's own setting in force."""
        return self.ssl if self.ssl is False or isinstance(self.ssl, str) else None

    def _get_session(self) -> requests.Session:
        with self._lock:
            if self._closed:
                raise BackendApiError("the client is closed")
            if self._session is None:
                session = requests.Session()
                context = self.ssl if isinstance(self.ssl, SSLContextType) else None
                for prefix in ("http://", "https://"):
                    session.mount(prefix, _Adapter(self.max_connections, context))
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

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # requests gives a proxy's pools no ssl_context: through a proxy, the
        # server's certificate would be checked against certifi's CAs instead.
        if self._context is not None:
            proxy_kwargs.setdefault("ssl_context", self._context)
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        if getattr(conn, "scheme", None) == "https" and not url.lower().startswith("https:"):
            # A plain-http request through an https:// proxy: the pool is the proxy's.
            # requests would leave its certificate unchecked (for an http URL); check it
            # as the async client does, like a server's.
            url = "https:" + url.split(":", 1)[1]
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        context = self._context
        if context is not None and url.lower().startswith("https:"):
            # The caller's SSLContext is used as it is, as aiohttp uses it: requests
            # would make urllib3 set its verify_mode and load certifi's CAs into it
            # (a context trusting one private CA would then trust every public one).
            conn.cert_reqs = _CERT_REQS[context.verify_mode]
            conn.ca_certs = conn.ca_cert_dir = None
            # check_hostname off: no hostname check, not urllib3's own one instead.
            conn.assert_hostname = None if context.check_hostname else False


_CERT_REQS = {
    ssl.CERT_NONE: "CERT_NONE",
    ssl.CERT_OPTIONAL: "CERT_OPTIONAL",
    ssl.CERT_REQUIRED: "CERT_REQUIRED",
}


class Stream(StreamBase[BackendApiClient, requests.Response], Iterator[RawResponse]):
    """The events of one conversation turn, read as they arrive.

    Iterate it, or use it as a context manager; leaving the ``with`` block,
    calling :meth:`close`, or reaching the end releases the connection::

        with client.create(model, messages) as stream:
            for event in stream:
                ...

    A fatal ``error``/``auth`` event raises :class:`StreamError` after every
    earlier event was yielded; a connection cut mid-stream raises
    :class:`IncompleteStreamError`.
    """

    @property
    def status_code(self) -> Optional[int]:
        """The HTTP status of the answer, once the request was sent."""
        return None if self._response is None else self._response.status_code

    def collect(self) -> Answer:
        """Read the rest of the stream; return the finished :class:`Answer`."""
        for _ in self:
            pass
        return self._core.answer

    def __iter__(self) -> Iterator[RawResponse]:
        # A generator: handing out an event costs no method call. Its state is the
        # stream's, so loops (and next()) over one stream share it.
        return self._events()

    def _events(self) -> Iterator[RawResponse]:
        core = self._core
        wrap = _wrap_events
        while True:
            if wrap is not None:
                yield from wrap(RawResponse, core.taking)  # the loop below, in C
            else:
                for data in core.taking:
                    event: RawResponse = _new_event(RawResponse)
                    _set_fields(event, data)
                    yield event
            try:
                event = self._next_batch()
            except StopIteration:
                return
            yield event

    def __next__(self) -> RawResponse:
        # next() takes from the current batch too; for loops use _events.
        for data in self._core.taking:
            event: RawResponse = _new_event(RawResponse)
            _set_fields(event, data)
            return event
        return self._next_batch()

    def _next_batch(self) -> RawResponse:
        core = self._core
        try:
            while True:
                event = core.next_event()
                if event is not None:
                    return event
                if core.finished or self._closed:
                    self._end("completed")
                    raise StopIteration
                if self._response is None:
                    self._open()
                core.absorb(self._read())
        except StopIteration:
            raise
        except BaseException:
            self._end("failed")
            raise

    def __enter__(self) -> Stream:
        if self._response is None and not self._closed:
            try:
                self._open()
            except BaseException:
                self._end("failed")
                raise
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading and release the connection; safe to call more than once."""
        self._end("closed")

    def _open(self) -> None:
        core = self._core
        client = self._client
        core.start_clock(client.timeout.total)
        response = client._send(core, stream=True)
        self._response = response
        if response.status_code >= 300:
            body = self._read_head(ERROR_BODY_LIMIT)
            raise core.status_error(
                response.status_code,
                response.reason or "",
                body,
                response.headers.get("Location"),
            )
        content_type = response.headers.get("Content-Type", "")
        if core.is_not_a_stream(content_type):
            raise core.content_type_error(content_type, self._read_head(2048))

    def _read(self) -> bytes:
        assert self._response is not None
        core = self._core
        timeout = self._client.timeout
        remaining = core.remaining()
        if remaining is not None:
            if core.expired():
                raise core.total_timeout_error(timeout.total)
            # The read timeout is the socket's; shorten it to what the total leaves.
            connection = self._response.raw.connection
            sock = getattr(connection, "sock", None)
            if sock is not None:
                sock.settimeout(_at_most(timeout.read, remaining))
        # read1() returns whatever bytes have arrived, at most READ_SIZE, so an
        # event is handed out as soon as its last byte is here. iter_lines() and
        # iter_content() would instead wait for a full read size on a
        # close-delimited body (a 2 s server pause held events back 2 s).
        try:
            data = self._response.raw.read1(READ_SIZE, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError:
            if core.expired():
                raise core.total_timeout_error(timeout.total) from None
            raise APITimeoutError(
                f"no data from {self._core.request.url} within the read timeout "
                f"of {self._client.timeout.read} s",
                url=self._core.request.url,
            ) from None
        except urllib3.exceptions.ProtocolError as exc:
            raise IncompleteStreamError(
                f"connection to {self._core.request.url} broke before the stream was complete: "
                + self._core.redact(_innermost(exc)),
                url=self._core.request.url,
            ) from None
        except urllib3.exceptions.DecodeError as exc:
            raise DecodeError(
                f"cannot decompress the stream: {self._core.redact(_innermost(exc))}"
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise APIConnectionError(
                f"reading from {self._core.request.url} failed: "
                + self._core.redact(_innermost(exc)),
                url=self._core.request.url,
            ) from None
        return data or b""

    def _read_head(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of the body, for an error message."""
        parts = []
        size = 0
        try:
            while size < limit:
                data = self._read()
                if not data:
                    break
                parts.append(data)
                size += len(data)
        except BackendApiError:
            pass
        return b"".join(parts)[:limit]

    def _close_response(self, response: requests.Response, outcome: str) -> None:
        # After a full read urllib3 has already put the connection back in the
        # pool; otherwise this closes the socket, so the server sees it.
        response.close()
        self._core.log_end(outcome)


def _keep_headers(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """An ``auth`` for requests that changes nothing: no ``.netrc`` lookup."""
    return request


def _request_error(
    exchange: Exchange, timeout: Timeout, exc: requests.RequestException
) -> APIConnectionError:
    """Map a failure to send a request (or read a plain answer) to the SDK's errors."""
    url = exchange.request.url
    reason = exchange.redact(_innermost(exc))
    if isinstance(exc, requests.ConnectTimeout):
        return APITimeoutError(
            f"timed out connecting to {url} (connect timeout {timeout.connect} s)", url=url
        )
    if isinstance(exc, requests.ReadTimeout):
        return APITimeoutError(
            f"no answer from {url} within the read timeout of {timeout.read} s", url=url
        )
    if isinstance(exc, requests.exceptions.SSLError) or _tls_failure(exc):
        return exchange.tls_error(_innermost(exc))
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError,)):
        return IncompleteStreamError(f"the answer from {url} was cut short: {reason}", url=url)
    if _invalid_answer(exc):
        _close_abandoned_answers(exc)
        return exchange.invalid_answer_error(_innermost(exc))
    return APIConnectionError(f"cannot connect to {url}: {reason}", url=url)


def _close_abandoned_answers(exc: BaseException) -> None:
    """Close the http.client answers an exception's frames still hold.

    When urllib3 refuses an answer's head after http.client read it (two unlike
    Content-Lengths), nobody closes http.client's answer, whose file keeps the
    socket open until the exception is collected. Its frames are the only
    reference left, so it is closed from there.
    """
    chain: List[BaseException] = []
    seen: Optional[BaseException] = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for link in chain:
        tb = link.__traceback__
        while tb is not None:
            for value in tb.tb_frame.f_locals.values():
                if isinstance(value, http.client.HTTPResponse):
                    value.close()
            tb = tb.tb_next


def _environment_proxy_with_netrc(url: str) -> Optional[Dict[str, str]]:
    """The environment's proxy for ``url`` with its ``.netrc`` credentials, if it has none.

    As the async client (and aiohttp) does; requests sends no credentials to a
    proxy but those in its URL. None leaves the environment to requests.
    """
    proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
    if not proxy:
        return None
    parts = urlsplit(proxy if "://" in proxy else "http://" + proxy)
    if "@" in parts.netloc or not parts.hostname:
        return None
    credentials = requests.utils.get_netrc_auth(urlunsplit(parts))
    if not credentials:
        return None
    user, password = (quote(part, safe="") for part in credentials)
    with_credentials = urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc}"))
    return {urlsplit(url).scheme.lower(): with_credentials}


def _tls_failure(exc: BaseException) -> bool:
    """True for a TLS failure that requests reports as another error (a proxy's, say)."""
    return isinstance(_innermost_exception(exc), ssl.SSLError)


def _invalid_answer(exc: BaseException) -> bool:
    """True when the server answered, but not in HTTP (a bad status line, a header too long)."""
    inner = _innermost_exception(exc)
    if isinstance(inner, urllib3.exceptions.InvalidHeader):
        return True  # an answer's head urllib3 refused (two unlike Content-Lengths)
    return isinstance(inner, http.client.HTTPException) and not isinstance(
        inner, (http.client.RemoteDisconnected, http.client.IncompleteRead)
    )


# Content codings that aiohttp decodes with an optional library, and refuses as an
# invalid answer without it; urllib3 would pass such a body on undecoded, for the
# decoder to read compressed bytes as text.
_OPTIONAL_CODINGS = {"br": "brotli", "zstd": "zstandard"}


def _answer_framing_problem(headers: Mapping[str, str]) -> Optional[str]:
    """Why an answer's head cannot be read as aiohttp reads it, or None.

    The async client's aiohttp refuses these heads; http.client and urllib3
    would go on, so the blocking client refuses them here, the same way.
    """
    if "content-length" in headers and "chunked" in headers.get("transfer-encoding", "").lower():
        # RFC 9112 6.3: such a message "ought to be handled as an error".
        return "the answer has both Content-Length and Transfer-Encoding: chunked"
    decoders = urllib3.response.HTTPResponse.CONTENT_DECODERS
    for coding in headers.get("content-encoding", "").lower().split(","):
        coding = coding.strip()
        if coding in _OPTIONAL_CODINGS and coding not in decoders:
            return (
                f"cannot decode Content-Encoding {coding!r} "
                f"(install {_OPTIONAL_CODINGS[coding]} for it)"
            )
    return None


def _may_retry(exc: requests.RequestException) -> bool:
    """True for failures before any answer: could not connect, or dropped unanswered."""
    if isinstance(exc, requests.exceptions.SSLError) or _tls_failure(exc):
        return False  # a certificate problem does not go away by asking again
    if _invalid_answer(exc):
        return False  # neither does an answer that is no HTTP (a wrong port, say)
    return isinstance(exc, requests.ConnectionError) and not isinstance(
        exc, (requests.exceptions.ChunkedEncodingError, requests.ReadTimeout)
    )


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
