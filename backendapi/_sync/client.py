# Generated from backendapi/_async/client.py by scripts/unasync.py: do not edit.
# Regenerate with `make unasync`; `make test` fails while this file is stale.
"""The client, :class:`BackendApiClient`, and its stream, :class:`Stream`.

Both clients are written once, in ``backendapi/_async/``; the blocking one
in ``backendapi/_sync/`` is generated from it (``make unasync``), so every
policy here (retries, the total timeout, redirects refused, status errors,
the stream loop, every call) is the same in both. Below the transport
(``backendapi/_transports/``) is what differs by HTTP library; in
``backendapi/_core/``, what needs no I/O at all.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Type

from .._answer import Answer
from .._core.client import ClientCore
from .._core.exchange import Exchange
from .._core.media import MediaInput
from .._core.options import ERROR_BODY_LIMIT
from .._core.request import Messages
from .._core.stream import StreamState
from .._errors import BackendApiError
from .._events import RawResponse, _set_fields
from .._events import _new as _new_event
from .._transports import TransportError
from .._transports.requests import RequestsResponse, RequestsTransport

if TYPE_CHECKING:
    # Named in a string (the base class), which ruff does not see.
    import requests  # noqa: F401

__all__ = ["BackendApiClient", "Stream"]

logger = logging.getLogger("backendapi")


class BackendApiClient(ClientCore["requests.Session", RequestsTransport]):
    """Client for a Backend API server, on ``requests``: for scripts and notebooks.

    >>> with BackendApiClient("http://localhost:8080") as client:  # doctest: +SKIP
    ...     for event in client.create("gpt-4o", [{"role": "user", "content": "Hi"}]):
    ...         if event.type == "content":
    ...             print(event.content, end="", flush=True)

    It takes the arguments :class:`~backendapi._core.client.ClientCore`
    lists; ``session`` is a ``requests.Session`` of yours (left open by
    the client). Without one, the client makes its own on first use; close it
    by leaving ``with`` or with :meth:`close`. The client's own session honours
    ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``, ``.netrc`` and the CA bundle
    ``REQUESTS_CA_BUNDLE`` names, read for each request.
    """

    _transport_class = RequestsTransport

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
        other option go in ``kwargs``. ``tools`` takes Python functions and
        OpenAI-style definitions and sends their definitions (see
        :func:`~backendapi.function_definition`; None or ``[]`` sends none);
        g4f's own ``tool_calls`` field goes as it is. A plain call, so ``for event in
        client.create(...)`` and ``with client.create(...) as stream``
        both work. Arguments are checked here, before any network call; the
        request goes out (and media files are read) when the stream is
        entered or first iterated.
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

    def version(self, *, max_response_size: Optional[int] = None) -> Dict[str, Any]:
        """The server's version: ``{"version": "8.8.6", "latest_version": ...}``.

        Every plain call reads at most ``max_response_size`` bytes of the
        answer (counted decompressed), else the client's, else its own default
        (here 64 KiB), and raises :class:`ResponseTooLargeError` beyond.
        """
        call = self._version_call(max_response_size)
        result: Dict[str, Any] = self._fetch(call, json=True)
        return result

    def models(
        self, provider: Optional[str] = None, *, max_response_size: Optional[int] = None
    ) -> Any:
        """All models as ``{provider: [model ids]}``, or one provider's model objects.

        Reads at most ``max_response_size`` bytes (default 16 MiB; see :meth:`version`).
        """
        return self._fetch(self._models_call(provider, max_response_size), json=True)

    def providers(self, *, max_response_size: Optional[int] = None) -> List[Dict[str, Any]]:
        """The server's providers (``name``, ``label``, ``auth``, ``vision``...).

        Reads at most ``max_response_size`` bytes (default 16 MiB; see :meth:`version`).
        """
        call = self._providers_call(max_response_size)
        result: List[Dict[str, Any]] = self._fetch(call, json=True)
        return result

    def create_text(
        self,
        prompt: str,
        *,
        model: Optional[str] = None,
        provider: Optional[str] = None,
        max_response_size: Optional[int] = None,
    ) -> str:
        """The plain-text ``GET /backend-api/v2/create`` endpoint: one prompt, the answer's text.

        Reads at most ``max_response_size`` bytes (default 16 MiB; see :meth:`version`).
        """
        call = self._create_text_call(prompt, model, provider, max_response_size)
        result: str = self._fetch(call, json=False)
        return result

    def upload(
        self, bucket_id: str, files: MediaInput, *, max_response_size: Optional[int] = None
    ) -> Any:
        """Upload files (paths, bytes, file objects) to a bucket for later messages.

        Reads at most ``max_response_size`` bytes of the server's answer
        (default 1 MiB; see :meth:`version`).
        """
        call = self._upload_call(bucket_id, files, max_response_size)
        return self._fetch(call, json=True)

    def close(self) -> None:
        """Close the client's own session and its connections (a caller's session is left open)."""
        self._transport.close()

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
        response = self._send(exchange)
        status = response.status
        # An error's body is only quoted, so its start is enough; an answer is read
        # up to the call's limit. A read returns at most READ_SIZE bytes,
        # decompressed, so a gzip bomb stops a read past the limit.
        limit = ERROR_BODY_LIMIT if status >= 300 else exchange.max_response_size
        assert limit is not None
        parts: List[bytes] = []
        size = 0
        try:
            while size <= limit:
                data = response.read()
                if not data:
                    break
                parts.append(data)
                size += len(data)
        except TransportError as failure:
            raise exchange.send_error(failure, self.timeout) from None
        finally:
            response.close()  # before the whole body was read, this closes the connection
        body = b"".join(parts)
        if size > limit:
            if status < 300:
                raise exchange.too_large_error(limit)
            body = body[:limit]
        result = (status, response.reason, body, response.headers.get("Location"))
        return exchange.json_result(*result) if json else exchange.text_result(*result)

    def _send(self, exchange: Exchange) -> RequestsResponse:
        """Send the request, retrying as :attr:`retry` allows; return the response's head.

        A request is asked again only while nothing of its response was read:
        after a failure that left the server no work (see
        :attr:`~backendapi._transports.Failure.retryable`) or a status that
        says "try again", within the total timeout.
        """
        transport = self._transport
        timeout = self.timeout
        if exchange.loader is not None:
            exchange.request = transport.run_blocking(exchange.loader)
            exchange.loader = None
        attempt = 0
        while True:
            exchange.log_request()
            if exchange.expired():
                raise exchange.total_timeout_error(timeout)
            try:
                response = transport.open(exchange.request, timeout, exchange.remaining())
            except TransportError as failure:
                wait = self.retry.error_delay(attempt) if failure.kind.retryable else None
                delay = exchange.retry_delay(wait)
                if delay is None:
                    if exchange.expired():
                        raise exchange.total_timeout_error(timeout) from None
                    raise exchange.send_error(failure, timeout) from None
                exchange.log_retry(attempt, delay, failure.detail)
            else:
                logger.debug("HTTP %d from %s", response.status, exchange.request.url)
                wait = self.retry.status_delay(
                    attempt, response.status, response.headers.get("Retry-After")
                )
                delay = exchange.retry_delay(wait)
                if delay is None:
                    return response
                response.close()
                exchange.log_retry(attempt, delay, f"HTTP {response.status}")
            transport.sleep(delay)
            attempt += 1


class Stream(StreamState[BackendApiClient, RequestsResponse], Iterator[RawResponse]):
    """The events of one conversation turn, read as they arrive.

    Iterate it with ``for``, or use it with ``with``; leaving the
    block, calling :meth:`close`, reaching the end (or, in asyncio,
    cancelling the task that iterates) releases the connection::

        with client.create(model, messages) as stream:
            for event in stream:
                ...

    A fatal ``error``/``auth`` event raises :class:`StreamError` after every
    earlier event was yielded; a connection cut mid-stream raises
    :class:`IncompleteStreamError`.
    """

    def collect(self) -> Answer:
        """Read the rest of the stream; return the finished :class:`Answer`."""
        for _ in self:
            pass
        return self._core.answer

    def __iter__(self) -> Iterator[RawResponse]:
        # A generator: handing out an event costs no method call (and, in asyncio,
        # creates no coroutine). Its state is the stream's, so loops (and
        # next calls) over one stream share it.
        return self._events()

    def _events(self) -> Iterator[RawResponse]:
        core = self._core
        while True:
            for data in core.taking:
                event = _new_event(RawResponse)
                _set_fields(event, data)
                yield event
            try:
                event = self._next_batch()
            except StopIteration:
                return
            yield event

    def __next__(self) -> RawResponse:
        # Takes from the current batch too; loops use _events.
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
        except BaseException:  # an interrupt or a cancellation too: never leave the socket open
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
        response = client._send(core)
        self._response = response
        if response.status >= 300:
            body = self._read_head(ERROR_BODY_LIMIT)
            raise core.status_error(
                response.status, response.reason, body, response.headers.get("Location")
            )
        content_type = response.headers.get("Content-Type", "")
        if core.is_not_a_stream(content_type):
            raise core.content_type_error(content_type, self._read_head(2048))

    def _read(self) -> bytes:
        assert self._response is not None
        try:
            return self._response.read()
        except TransportError as failure:
            raise self._core.read_error(failure, self._client.timeout) from None

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
