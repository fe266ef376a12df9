"""The async client, on ``aiohttp``: for asyncio applications."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import ssl
import warnings
from types import TracebackType
from typing import Any, AsyncGenerator, AsyncIterator, Dict, List, Optional, Type, Union
from urllib.parse import urlsplit

import aiohttp
import certifi
from urllib3.exceptions import InsecureRequestWarning
from yarl import URL

from ._answer import Answer
from ._base import (
    ERROR_BODY_LIMIT,
    BaseClient,
    Exchange,
    StreamBase,
    Timeout,
    environment_ca_bundle,
    one_line,
)
from ._environment import Environment
from ._errors import (
    APIConnectionError,
    APITimeoutError,
    BackendApiError,
    DecodeError,
    IncompleteStreamError,
)
from ._events import RawResponse, _set_fields, _wrap_events
from ._events import _new as _new_event
from ._media import MediaInput
from ._request import Messages, PreparedRequest

__all__ = ["AsyncBackendApiClient", "AsyncStream"]

logger = logging.getLogger("backendapi")

# The constructor's ``ssl`` argument shadows the module inside it.
SSLContextType = ssl.SSLContext


class AsyncBackendApiClient(BaseClient[aiohttp.ClientSession]):
    """Async client for a Backend API server; the twin of :class:`BackendApiClient`.

    >>> async with AsyncBackendApiClient("http://localhost:8080") as client:  # doctest: +SKIP
    ...     async for event in client.create("gpt-4o", [{"role": "user", "content": "Hi"}]):
    ...         if event.type == "content":
    ...             print(event.content, end="", flush=True)

    It takes the arguments :class:`BaseClient` lists, the same as
    :class:`BackendApiClient`; ``session`` is an ``aiohttp.ClientSession``
    of yours (left open by the client). Without one, the client makes its own session on first use;
    close it with ``async with`` or :meth:`aclose`. Like ``requests``, the
    client's own session honours ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``,
    and trusts the same CA bundle (certifi's) by default.
    """

    _session_type = aiohttp.ClientSession

    def _setup(self) -> None:
        self._session_loop: Optional[asyncio.AbstractEventLoop] = None
        self._closer: Optional[AsyncGenerator[None, None]] = None
        self._timeout_seen: Optional[Timeout] = None
        # False while the own connector was built without the TLS setting (see _get_session).
        self._connector_tls = True
        self._tls_context: Union[bool, ssl.SSLContext, None] = None
        self._timeout_open: Optional[aiohttp.ClientTimeout] = None
        self._environment = Environment()
        # The own sessions' cookies, kept for the client's life as requests.Session
        # keeps them: across event loops too (a session is made per loop).
        self._cookie_jar: Optional[aiohttp.CookieJar] = None
        # ssl=True: the default contexts by the environment's CA bundle (None:
        # certifi's), and the bundle the own connector's context trusts.
        self._contexts: Dict[Optional[str], ssl.SSLContext] = {}
        self._connector_bundle: Optional[str] = None

    def create(
        self,
        model: str,
        messages: Messages,
        media: Optional[MediaInput] = None,
        api_key: Optional[str] = None,
        **kwargs: Any,
    ) -> AsyncStream:
        """Start a conversation turn; return the :class:`AsyncStream` of its events.

        A plain call, not a coroutine, so both ``async for event in
        client.create(...)`` and ``async with client.create(...) as stream``
        work. Arguments are checked here, before any network call; the request
        goes out when the stream is entered or first iterated.
        """
        core = self._prepare(model, messages, media, api_key, kwargs)
        return AsyncStream(self, core)

    async def complete(
        self,
        model: str,
        messages: Messages,
        media: Optional[MediaInput] = None,
        api_key: Optional[str] = None,
        **kwargs: Any,
    ) -> Answer:
        """Send a turn and return the finished :class:`Answer`, with no loop to write."""
        async with self.create(model, messages, media, api_key, **kwargs) as stream:
            return await stream.collect()

    async def version(self) -> Dict[str, Any]:
        """The server's version: ``{"version": "8.8.6", "latest_version": ...}``."""
        result: Dict[str, Any] = await self._fetch(self._version_call(), json=True)
        return result

    async def models(self, provider: Optional[str] = None) -> Any:
        """All models as ``{provider: [model ids]}``, or one provider's model objects."""
        return await self._fetch(self._models_call(provider), json=True)

    async def providers(self) -> List[Dict[str, Any]]:
        """The server's providers (``name``, ``label``, ``auth``, ``vision``...)."""
        result: List[Dict[str, Any]] = await self._fetch(self._providers_call(), json=True)
        return result

    async def create_text(
        self, prompt: str, *, model: Optional[str] = None, provider: Optional[str] = None
    ) -> str:
        """The plain-text ``GET /backend-api/v2/create`` endpoint: one prompt, the answer's text."""
        call = self._create_text_call(prompt, model, provider)
        result: str = await self._fetch(call, json=False)
        return result

    async def upload(self, bucket_id: str, files: MediaInput) -> Any:
        """Upload files (paths, bytes, file objects) to a bucket for later messages."""
        return await self._fetch(self._upload_call(bucket_id, files), json=True)

    async def aclose(self) -> None:
        """Close the client's own session (a caller's session is left open)."""
        self._closed = True
        if self._session_loop is not asyncio.get_running_loop():
            self._drop_session()  # made on a loop that is gone: nothing there to await
            return
        session, self._session = self._session, None
        closer, self._closer = self._closer, None
        if closer is not None:
            await closer.aclose()  # closes the session
        elif session is not None and self._owns_session:
            await session.close()

    async def __aenter__(self) -> AsyncBackendApiClient:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    async def _fetch(self, exchange: Exchange, *, json: bool) -> Any:
        exchange.start_clock(self.timeout.total)
        response = await self._send(exchange)
        try:
            answer = (
                response.status,
                response.reason or "",
                await response.read(),
                response.headers.get("Location"),
            )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise _request_error(exchange, self.timeout, exc) from None
        finally:
            response.release()
        return exchange.json_result(*answer) if json else exchange.text_result(*answer)

    async def _send(self, exchange: Exchange) -> aiohttp.ClientResponse:
        """Send the request, retrying as :attr:`retry` allows; return the answer's head."""
        request = exchange.request
        session = self._session
        if session is None or self._session_loop is not asyncio.get_running_loop():
            session = await self._get_session()
        elif self._closed:
            raise BackendApiError("the client is closed")
        options = self._request_options(request)
        if self._owns_session:
            tls = self._request_tls(request.url, options.get("proxy"))
            if tls is not None:
                options = {**options, "ssl": tls}
        unverified = _unverified(self.ssl) and request.url[:6].lower() == "https:"
        attempt = 0
        while True:
            exchange.log_request()
            if exchange.expired():
                raise exchange.total_timeout_error(self.timeout.total)
            if unverified:
                # The blocking client's urllib3 warns so on every request; so do we.
                warnings.warn(
                    f"Unverified HTTPS request to host {urlsplit(request.url).hostname!r}: the "
                    "server's certificate is not checked (ssl=False, or an SSLContext "
                    "that does not require one)",
                    InsecureRequestWarning,
                    stacklevel=2,
                )
            try:
                response = await session.request(
                    request.method,
                    _wire_url(request.url),
                    data=request.body,
                    allow_redirects=False,
                    timeout=self._client_timeout(exchange.remaining()),
                    **options,
                )
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                delay = self.retry.error_delay(attempt) if _may_retry(exc) else None
                if delay is None or not exchange.can_wait(delay):
                    if exchange.expired():
                        raise exchange.total_timeout_error(self.timeout.total) from None
                    raise _request_error(exchange, self.timeout, exc) from None
                exchange.log_retry(attempt, delay, str(exc) or type(exc).__name__)
            else:
                logger.debug("HTTP %d from %s", response.status, request.url)
                delay = self.retry.status_delay(
                    attempt, response.status, response.headers.get("Retry-After")
                )
                if delay is None or not exchange.can_wait(delay):
                    return response
                response.close()
                exchange.log_retry(attempt, delay, f"HTTP {response.status}")
            await asyncio.sleep(delay)
            attempt += 1

    def _client_timeout(self, remaining: Optional[float] = None) -> aiohttp.ClientTimeout:
        timeout = self.timeout
        if remaining is None:
            # No total limit: the same (immutable) ClientTimeout for every request.
            if self._timeout_seen is not timeout or self._timeout_open is None:
                self._timeout_open = aiohttp.ClientTimeout(
                    total=None, sock_connect=timeout.connect, sock_read=timeout.read
                )
                self._timeout_seen = timeout
            return self._timeout_open
        return aiohttp.ClientTimeout(
            total=remaining, sock_connect=timeout.connect, sock_read=timeout.read
        )

    def _request_tls(self, url: str, proxy: object) -> Union[bool, ssl.SSLContext, None]:
        """The own session's TLS setting for ``url`` (through ``proxy``), where its
        connector's is not it; None where that one serves, or no TLS is needed."""
        if url[:6].lower() != "https:" and str(proxy or "")[:6].lower() != "https:":
            return None  # no TLS at all: to the server nor to a proxy
        if self.ssl is True:
            # The environment's CA bundle may have changed since the connector was
            # made: requests reads it for every request, and so does this.
            bundle = environment_ca_bundle()
            if self._connector_tls and bundle == self._connector_bundle:
                return None
            return self._default_context(bundle)
        if self._connector_tls:
            return None
        # TLS after all (base_url or proxy changed since): the setting per request.
        if self._tls_context is None:
            self._tls_context = self._ssl_context()
        return self._tls_context

    def _request_options(self, request: PreparedRequest) -> Dict[str, Any]:
        """``session.request()``'s keyword arguments beyond the request itself."""
        if self._owns_session:
            # The own session has trust_env=False: proxies and .netrc come from here.
            found, headers = self._environment.request_options(
                request.url, self.proxy or None, request.has_authorization
            )
            found["headers"] = {**request.headers, **headers} if headers else request.headers
            return found
        options: Dict[str, Any] = {"headers": request.headers}
        if self.proxy:
            options["proxy"] = self.proxy
        # The client's own connector carries the SSL setting; a caller's does not.
        if self.ssl is not True:
            options["ssl"] = self._ssl_context()
        return options

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise BackendApiError("the client is closed")
        loop = asyncio.get_running_loop()
        if self._session is not None and self._owns_session and self._session_loop is not loop:
            # A new event loop (asyncio.run called again, as scripts and notebooks do):
            # the old session belonged to a loop that is gone.
            self._drop_session()
        if self._session is None:
            # Loading a CA bundle (certifi's, or a ``ssl`` path) takes ~12 ms: not for
            # a plain-http server without a proxy, whose connections never use TLS.
            tls = (
                self.proxy is not None
                or not self.base_url.lower().startswith("http://")
                or self.ssl is False
                or isinstance(self.ssl, SSLContextType)
            )
            self._connector_bundle = environment_ca_bundle() if tls and self.ssl is True else None
            connector = aiohttp.TCPConnector(
                ssl=self._ssl_context(self._connector_bundle) if tls else True,
                limit=self.max_connections,
                limit_per_host=0,
            )
            self._connector_tls = tls
            # trust_env=False: aiohttp would read .netrc and the proxy variables in
            # worker threads on every request; _environment reads them once a tick.
            if self._cookie_jar is None:
                # unsafe=True: cookies of a server reached by IP address are kept, as
                # requests (and browsers) keep them; aiohttp's default drops them.
                self._cookie_jar = aiohttp.CookieJar(unsafe=True)
            session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                cookie_jar=self._cookie_jar,
                **_HEADER_LIMITS,
            )
            if self._owns_session:
                # The loop closes every live async generator before it stops (asyncio.run
                # calls shutdown_asyncgens), and finalises a collected one on the loop:
                # either way this one closes the session while its loop can still await.
                self._closer = _close_at_loop_end(session)
                await self._closer.__anext__()
            self._session = session
            self._session_loop = loop
        return self._session

    def _drop_session(self) -> None:
        """Forget the own session; release its connections without awaiting.

        Sessions made by the client are normally closed on their loop by their
        closer (see :meth:`_get_session`); this is for what is left when that loop
        is gone or not running.
        """
        session, self._session = self._session, None
        self._closer = None
        if session is None or not self._owns_session or session.closed:
            return
        connector = session.connector
        session.detach()
        if connector is not None:
            connector._close()  # closes every transport while the loop still runs

    def __del__(self) -> None:
        # An own session left open would leak its sockets and make aiohttp warn.
        # getattr: a constructor that raised leaves a half-built object behind.
        if getattr(self, "_session", None) is not None and self._owns_session:
            self._drop_session()

    def _ssl_context(self, bundle: Optional[str] = None) -> Union[bool, ssl.SSLContext]:
        """The context for ``ssl=``; for True, one trusting ``bundle`` (else certifi's)."""
        option = self.ssl
        if option is False or isinstance(option, SSLContextType):
            return option
        if isinstance(option, str):
            return _context_trusting(option)
        return self._default_context(bundle)

    def _default_context(self, bundle: Optional[str]) -> ssl.SSLContext:
        # requests verifies against the environment's bundle (environment_ca_bundle),
        # else certifi's: trust the same. One context per bundle: loading takes ~12 ms.
        context = self._contexts.get(bundle)
        if context is None:
            context = self._contexts[bundle] = _context_trusting(bundle or certifi.where())
        return context


# The limits http.client (so the blocking client) puts on an answer's head: a line
# of up to 64 KiB and at most 99 header lines (aiohttp: 8190 bytes, 128 lines).
_HEADER_LIMITS: Dict[str, Any] = {"max_line_size": 65536, "max_field_size": 65536}
if "max_headers" in inspect.signature(aiohttp.ClientSession).parameters:  # aiohttp >= 3.13.4
    _HEADER_LIMITS["max_headers"] = 99  # http.client counts the blank line too


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


class AsyncStream(
    StreamBase[AsyncBackendApiClient, aiohttp.ClientResponse], AsyncIterator[RawResponse]
):
    """The events of one conversation turn, read as they arrive (async).

    ``async for`` over it, or ``async with`` it; leaving the block, calling
    :meth:`aclose`, reaching the end or cancelling the task that iterates
    releases the connection::

        async with client.create(model, messages) as stream:
            async for event in stream:
                ...
    """

    @property
    def status_code(self) -> Optional[int]:
        """The HTTP status of the answer, once the request was sent."""
        return None if self._response is None else self._response.status

    async def collect(self) -> Answer:
        """Read the rest of the stream; return the finished :class:`Answer`."""
        async for _ in self:
            pass
        return self._core.answer

    def __aiter__(self) -> AsyncIterator[RawResponse]:
        # An async generator: handing out an event creates no coroutine. Its state
        # is the stream's, so loops (and anext()) over one stream share it.
        return self._events()

    async def _events(self) -> AsyncIterator[RawResponse]:
        core = self._core
        wrap = _wrap_events
        while True:
            if wrap is not None:
                for event in wrap(RawResponse, core.taking):  # the loop below, in C
                    yield event
            else:
                for data in core.taking:
                    event = _new_event(RawResponse)
                    _set_fields(event, data)
                    yield event
            try:
                event = await self._next_batch()
            except StopAsyncIteration:
                return
            yield event

    async def __anext__(self) -> RawResponse:
        # anext() takes from the current batch too; async for loops use _events.
        for data in self._core.taking:
            event: RawResponse = _new_event(RawResponse)
            _set_fields(event, data)
            return event
        return await self._next_batch()

    async def _next_batch(self) -> RawResponse:
        core = self._core
        try:
            while True:
                event = core.next_event()
                if event is not None:
                    return event
                if core.finished or self._closed:
                    self._end("completed")
                    raise StopAsyncIteration
                if self._response is None:
                    await self._open()
                core.absorb(await self._read())
        except StopAsyncIteration:
            raise
        except BaseException:  # CancelledError included: never leave the socket open
            self._end("failed")
            raise

    async def __aenter__(self) -> AsyncStream:
        if self._response is None and not self._closed:
            try:
                await self._open()
            except BaseException:
                self._end("failed")
                raise
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading and release the connection; safe to call more than once."""
        self._end("closed")

    async def _open(self) -> None:
        core = self._core
        core.start_clock(self._client.timeout.total)
        response = await self._client._send(core)
        self._response = response
        if response.status >= 300:
            body = await self._read_head(ERROR_BODY_LIMIT)
            raise core.status_error(
                response.status,
                response.reason or "",
                body,
                response.headers.get("Location"),
            )
        content_type = response.headers.get("Content-Type", "")
        if core.is_not_a_stream(content_type):
            raise core.content_type_error(content_type, await self._read_head(2048))

    async def _read(self) -> bytes:
        assert self._response is not None
        url = self._core.request.url
        # readany() returns as soon as any bytes are buffered, over chunked and
        # close-delimited bodies alike, and never splits on lines, so no line
        # length limit applies (iterating response.content by line raises once
        # a single line outgrows the reader's buffer).
        try:
            return await self._response.content.readany()
        except aiohttp.ClientPayloadError as exc:
            if "compress" in str(exc).lower() or "decod" in str(exc).lower():
                # The innermost message of the chain (aiohttp's ContentEncodingError),
                # on one line: ClientPayloadError's own text spans two.
                cause: BaseException = exc
                while cause.__cause__ is not None:
                    cause = cause.__cause__
                reason = getattr(cause, "message", None) or str(cause)
                raise DecodeError(
                    f"cannot decompress the stream: {one_line(self._core.redact(reason))}"
                ) from None
            raise IncompleteStreamError(
                f"connection to {url} broke before the stream was complete: "
                + self._core.redact(str(exc)),
                url=url,
            ) from None
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError):
            if self._core.expired():
                raise self._core.total_timeout_error(self._client.timeout.total) from None
            raise APITimeoutError(
                f"no data from {url} within the read timeout of {self._client.timeout.read} s",
                url=url,
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise APIConnectionError(
                f"reading from {url} failed: " + self._core.redact(str(exc) or repr(exc)),
                url=url,
            ) from None

    async def _read_head(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of the body, for an error message."""
        parts = []
        size = 0
        try:
            while size < limit:
                data = await self._read()
                if not data:
                    break
                parts.append(data)
                size += len(data)
        except BackendApiError:
            pass
        return b"".join(parts)[:limit]

    def _close_response(self, response: aiohttp.ClientResponse, outcome: str) -> None:
        if self._core.eof:
            response.release()  # the body was read to its end: keep-alive reuse
        else:
            response.close()  # the server sees the connection close
        self._core.log_end(outcome)


async def _close_at_loop_end(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    """Suspended once started; closes ``session`` when the generator is closed."""
    try:
        yield
    finally:
        if not session.closed:
            await session.close()


def _wire_url(url: str) -> Union[str, URL]:
    """``url`` for aiohttp, its query sent exactly as the core encoded it.

    The core's queries come from ``urlencode`` (plain ASCII, only unreserved
    characters left bare), which the blocking client sends as they are. yarl
    would requote them (``%2F`` to ``/``, ``%27`` to ``'``...): the same
    values for a server that decodes, other bytes for one that signs or
    compares the raw target. The part before the query goes through yarl as
    usual (IDNA host, quoted path).
    """
    base, mark, query = url.partition("?")
    if not mark:
        return url
    return URL(f"{URL(base)}?{query}", encoded=True)


def _may_retry(exc: BaseException) -> bool:
    """True for failures before any answer: could not connect, or dropped unanswered."""
    if isinstance(exc, (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError)):
        return False  # a certificate problem does not go away by asking again
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return False  # a read timeout: the server may be working on the answer
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return True
    return isinstance(
        exc,
        (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError),
    )


def _request_error(exchange: Exchange, timeout: Timeout, exc: BaseException) -> APIConnectionError:
    """Map a failure to send a request (or read a plain answer) to the SDK's errors."""
    url = exchange.request.url
    reason = exchange.redact(str(exc) or type(exc).__name__)
    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
        return exchange.tls_error(str(exc))
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return APITimeoutError(
            f"no answer from {url} within the read timeout of {timeout.read} s", url=url
        )
    if isinstance(exc, asyncio.TimeoutError):
        return APITimeoutError(
            f"timed out connecting to {url} (connect timeout {timeout.connect} s)", url=url
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return IncompleteStreamError(f"the answer from {url} was cut short: {reason}", url=url)
    if isinstance(exc, aiohttp.ClientResponseError):
        # Raised before any response is handed over: the answer is no HTTP (a bad
        # status line, a header beyond the limits). Not retried (see _may_retry).
        return exchange.invalid_answer_error(exc.message or reason)
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exchange.redact(str(exc.os_error) or reason)
    return APIConnectionError(f"cannot connect to {url}: {reason}", url=url)
