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

import datetime
import logging
import os
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    Union,
)

from .._answer import Answer
from .._core.client import ClientCore
from .._core.exchange import Exchange
from .._core.files import (
    PartialFile,
    bucket_events_call,
    check_download_path,
    check_folder,
    create_call,
    delete_bucket_call,
    download_call,
    is_text_answer,
    media_answer_error,
    media_filename,
    read_bucket_call,
    resolve_url,
    text_answer_error,
    text_media_target,
    unique_paths,
    write_data_uri,
)
from .._core.media import MediaInput
from .._core.options import ERROR_BODY_LIMIT
from .._core.redirect import REDIRECT_STATUSES, redirected
from .._core.request import Messages
from .._core.routes import (
    Speech,
    jsonl_records,
    key_for,
    log_call,
    logs_call,
    provider_call,
    record_usage_call,
    stats_call,
    status_call,
    synthesize_call,
    usage_call,
    with_key,
)
from .._core.stream import StreamState
from .._errors import BackendApiError, InvalidInputError
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
        self,
        provider: Optional[str] = None,
        *,
        api_key: Optional[str] = None,
        max_response_size: Optional[int] = None,
    ) -> Any:
        """All models as ``{provider: [model ids]}``, or one provider's model objects.

        For one provider, ``api_key`` (else the client's) goes in the
        ``x-api-key`` header, which g4f hands the provider to list the models
        that key unlocks. Reads at most ``max_response_size`` bytes (default
        16 MiB; see :meth:`version`).
        """
        key = key_for(self, api_key)
        call = self._models_call(provider, max_response_size)
        if provider is not None:
            with_key(self, call, key)
        return self._fetch(call, json=True)

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
        web_search: Union[bool, str, None] = None,
        filter_markdown: Union[bool, str, None] = None,
        cache: Union[bool, str, None] = None,
        audio: bool = False,
        stream: bool = False,
        max_response_size: Optional[int] = None,
    ) -> str:
        """``GET /backend-api/v2/create``: one prompt, the answer's text.

        Every parameter g4f's route reads: ``web_search`` (True, or a search
        query of its own), ``filter_markdown`` (True: the first fenced code
        block of the answer; a language tag such as ``"json"``, or several
        separated by commas: that block only if it is one of them, else an
        empty answer), ``cache`` (a key, or True: the server keeps the answer
        and sends it again for the same key and parameters), ``audio`` (ask for
        an audio answer), ``stream`` (let the provider stream; the text arrives
        streamed either way, and g4f ignores it with ``filter_markdown`` or
        ``cache``). Redirects are followed (see :class:`ClientCore`). An answer
        that is media bytes raises :class:`DecodeError`: :meth:`create_media`
        saves those. An audio answer arrives as a ``data:`` URI in the text.

        Reads at most ``max_response_size`` bytes (default 16 MiB; see :meth:`version`).
        """
        options = dict(
            model=model, provider=provider, web_search=web_search,
            filter_markdown=filter_markdown, cache=cache, audio=audio, stream=stream,
        )  # fmt: skip
        call = create_call(self, prompt, options, max_response_size, "create_text")
        call.start_clock(self.timeout.total)
        response = self._send(call)
        content_type = response.headers.get("Content-Type", "")
        if response.status < 300 and not is_text_answer(content_type):
            response.close()
            raise media_answer_error(call, content_type)
        result: str = self._result(call, response, json=False)
        return result

    def create_media(
        self,
        prompt: str,
        path: Union[str, os.PathLike[str]],
        *,
        model: Optional[str] = None,
        provider: Optional[str] = None,
        web_search: Union[bool, str, None] = None,
        cache: Union[bool, str, None] = None,
        audio: bool = False,
        max_response_size: Optional[int] = None,
    ) -> str:
        """``GET /backend-api/v2/create`` for an image, audio or video; saved to ``path``.

        g4f answers a media request in one of three ways, all handled: the
        media's bytes (possibly after a redirect), a URL alone as the text
        (``/media/...`` or another server's: it is downloaded), or a ``data:``
        URI as the text (audio: it is decoded). The parameters are
        :meth:`create_text`'s. ``path`` is checked as in :meth:`download`;
        a text answer that names no media raises :class:`DecodeError`. Writes
        at most ``max_response_size`` bytes (default 256 MiB, see :meth:`download`).
        Returns ``path``.
        """
        target = check_download_path(path)
        options = dict(
            model=model, provider=provider, web_search=web_search,
            cache=cache, audio=audio,
        )  # fmt: skip
        call = create_call(self, prompt, options, max_response_size, "download")
        call.start_clock(self.timeout.total)
        response = self._send(call)
        content_type = response.headers.get("Content-Type", "")
        if response.status >= 300 or not is_text_answer(content_type):
            self._save(call, response, target)
            return target
        text: str = self._result(call, response, json=False)
        named = text_media_target(text)
        if named is None:
            raise text_answer_error(call, text)
        if named[:5].lower() == "data:":
            self._transport.run_blocking(partial(write_data_uri, named, target, call))
            return target
        return self.download(named, target, max_response_size=max_response_size)

    def bucket_events(
        self, bucket_id: str, *, delete_files: bool = True, refine: bool = False
    ) -> Stream:
        """``GET /backend-api/v2/files/<bucket_id>/stream``: the server reading a bucket.

        The :class:`Stream` of its progress events, read as a
        conversation's (the same close rules, timeouts and limits); each
        event's ``type`` is g4f's ``action``: ``download`` (``count``: URLs
        fetched), ``load`` or ``refine`` (``size``: bytes of text so far),
        ``media`` (``filename``), ``delete_files``, then ``done`` (``size``:
        the whole text's). The events carry no text: :meth:`read_bucket`
        reads it, or :func:`bucket_message` hands it to a model. An error the
        server reports raises :class:`StreamError`. ``delete_files`` and
        ``refine`` are :meth:`read_bucket`'s.

        >>> for event in client.bucket_events(bucket):  # doctest: +SKIP
        ...     print(event.type, event.get("size"))
        """
        return Stream(self, bucket_events_call(self, bucket_id, delete_files, refine))

    def read_bucket(
        self,
        bucket_id: str,
        *,
        delete_files: bool = True,
        refine: bool = False,
        max_response_size: Optional[int] = None,
    ) -> str:
        """``GET /backend-api/v2/files/<bucket_id>``: the text of a bucket's documents.

        As g4f does by default, ``delete_files=True`` deletes the uploaded
        documents once their text was extracted (the text stays, cached in the
        bucket: a second read returns it too); ``delete_files=False`` keeps
        them. ``refine=True`` asks for the text refined with spaCy (g4f's
        ``refine_chunks_with_spacy``; the server needs spaCy installed). A
        bucket the server does not have raises :class:`APIStatusError` (404).

        Reads at most ``max_response_size`` bytes (default 64 MiB; see :meth:`version`).
        """
        call = read_bucket_call(self, bucket_id, delete_files, refine, max_response_size)
        result: str = self._fetch(call, json=False)
        return result

    def delete_bucket(
        self, bucket_id: str, *, max_response_size: Optional[int] = None
    ) -> Dict[str, Any]:
        """``DELETE /backend-api/v2/files/<bucket_id>``: the bucket and all it holds.

        Returns the server's ``{"message": "Bucket deleted successfully"}``; a
        bucket the server does not have raises :class:`APIStatusError` (404).
        """
        call = delete_bucket_call(self, bucket_id, max_response_size)
        result: Dict[str, Any] = self._fetch(call, json=True)
        return result

    def download(
        self,
        url: str,
        path: Union[str, os.PathLike[str]],
        *,
        max_response_size: Optional[int] = None,
    ) -> str:
        """Stream the media at ``url`` to the file ``path``; return ``path``.

        ``url`` is absolute, or a path on the server (``/media/cat.png``, as
        events carry them). Redirects are followed; the client's headers and
        credentials go to the server's own origin only. The body is written
        to a temporary file beside ``path`` and renamed to it at the end, so
        ``path`` never holds a partial file: past ``max_response_size`` bytes (else the
        client's ``max_response_size``, else 256 MiB) the temporary file is
        removed and :class:`ResponseTooLargeError` raised; any other failure
        removes it too. A ``path`` that is a directory, or whose directory does
        not exist, raises :class:`InvalidInputError` before any request
        (:meth:`save_media` saves into a folder).
        """
        target = check_download_path(path)
        if isinstance(url, str) and url[:5].lower() == "data:":
            self._transport.run_blocking(partial(write_data_uri, url, target, None))
            return target
        call = download_call(self, url, max_response_size)
        call.start_clock(self.timeout.total)
        self._save(call, self._send(call), target)
        return target

    def save_media(
        self,
        answer: Union[Answer, Sequence[str]],
        folder: Union[str, os.PathLike[str]],
        *,
        max_response_size: Optional[int] = None,
    ) -> List[str]:
        """Download every media of ``answer`` (or a list of URLs) into ``folder``.

        ``folder`` is made if missing. Each file is named after its URL's last
        path segment (made safe; ``media-<n>.<ext>`` for a ``data:`` URI), a
        name met twice getting ``-2``, ``-3``... before its extension; a file
        already there is replaced. One :meth:`download` each, in order, each
        bounded by ``max_response_size``. Returns the paths written.

        >>> cat = [{"role": "user", "content": "a cat"}]
        >>> answer = client.complete("flux", cat)  # doctest: +SKIP
        >>> client.save_media(answer, "out")  # doctest: +SKIP
        ['out/1700000000_a_cat.png']
        """
        urls = answer.media if isinstance(answer, Answer) else answer
        if isinstance(urls, str) or not isinstance(urls, (list, tuple)):
            raise InvalidInputError(
                f"answer must be an Answer or a list of URLs, not {type(urls).__name__}"
            )
        base = check_folder(folder)
        base_url = self.base_url
        absolute = [resolve_url(base_url, url) if isinstance(url, str) else url for url in urls]
        for index, url in enumerate(absolute):
            if not isinstance(url, str):
                raise InvalidInputError(f"media[{index}] must be a str, not {type(url).__name__}")
        self._transport.run_blocking(partial(os.makedirs, base, exist_ok=True))
        paths = unique_paths(base, [media_filename(url, i) for i, url in enumerate(absolute)])
        for url, path in zip(absolute, paths):
            self.download(url, path, max_response_size=max_response_size)
        return paths

    def upload(
        self, bucket_id: str, files: MediaInput, *, max_response_size: Optional[int] = None
    ) -> Any:
        """Upload files (paths, bytes, file objects) to a bucket for later messages.

        Reads at most ``max_response_size`` bytes of the server's answer
        (default 1 MiB; see :meth:`version`).
        """
        call = self._upload_call(bucket_id, files, max_response_size)
        return self._fetch(call, json=True)

    def synthesize(
        self,
        provider: str,
        text: Optional[str] = None,
        *,
        params: Optional[Mapping[str, Union[str, int, float]]] = None,
        path: Union[str, os.PathLike[str], None] = None,
        max_response_size: Optional[int] = None,
    ) -> Speech:
        """Text to speech: ``GET .../synthesize/<provider>``, the audio it streams back.

        ``text`` (sent as ``text=``) and ``params`` go in the query, as the
        provider reads them: Gemini takes ``text``; OpenaiChat takes the
        ``synthesize`` event's data (``conversation_id``, ``message_id``,
        ``voice``). Without ``path`` the audio is returned in
        :attr:`Speech.data`; with it, the audio is written there as it
        arrives, under a temporary name beside it that is renamed to ``path``
        once all of it came (after any failure, nothing is left behind and an
        existing file at ``path`` is untouched). ``path`` must not be a
        directory, and its folder must exist. At most ``max_response_size``
        bytes are taken (default 64 MiB) before :class:`ResponseTooLargeError`.
        """
        call = synthesize_call(self, provider, text, params, max_response_size)
        target = None if path is None else check_download_path(path)
        call.start_clock(self.timeout.total)
        response = self._send(call)
        content_type = response.headers.get("Content-Type") or "application/octet-stream"
        if target is not None:
            size = self._save(call, response, target)
            return Speech(content_type, size, path=Path(target))
        status, reason, body, location = self._read_all(call, response)
        if status >= 300:
            raise call.status_error(status, reason, body, location)
        return Speech(content_type, len(body), data=body)

    def quota(
        self,
        provider: str,
        *,
        api_key: Optional[str] = None,
        max_response_size: Optional[int] = None,
    ) -> Any:
        """What is left of a provider's quota, as the provider reports it (most give a dict).

        ``api_key`` (else the client's) goes in the ``x-api-key`` header.
        g4f answers 401 "Authentication required" when the provider needs a
        key and got none, 501 when it cannot tell, 404 for an unknown
        provider: each an :class:`APIStatusError`. Reads at most
        ``max_response_size`` bytes (default 1 MiB).
        """
        call = provider_call(self, "quota", provider, api_key, max_response_size)
        return self._fetch(call, json=True)

    def health(
        self,
        provider: str,
        *,
        api_key: Optional[str] = None,
        max_response_size: Optional[int] = None,
    ) -> Any:
        """Whether a provider answers: ``{"url", "status", "ok", "quota", "error"?}``.

        g4f probes the provider's own health (or models) URL, never a chat
        turn; a provider it cannot reach is ``"ok": False`` in a 200 answer.
        ``api_key`` and the errors are as for :meth:`quota`. Reads at most
        ``max_response_size`` bytes (default 1 MiB).
        """
        call = provider_call(self, "health", provider, api_key, max_response_size)
        return self._fetch(call, json=True)

    def status(self, *, max_response_size: Optional[int] = None) -> Dict[str, Any]:
        """The server at a glance: ``status``, ``version``, ``total_providers``, ``timestamp``...

        Reads at most ``max_response_size`` bytes (default 64 KiB).
        """
        result: Dict[str, Any] = self._fetch(status_call(self, max_response_size), json=True)
        return result

    def stats(
        self,
        *,
        days: Optional[int] = None,
        user: Optional[str] = None,
        max_response_size: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Token counts the server was told of, summed: ``days``, ``models``, ``providers``...

        Covers the last ``days`` days (1 to 365; the server's default is 30),
        of one ``user`` if given. The server counts only what clients recorded
        (see :meth:`record_usage`). Reads at most ``max_response_size`` bytes
        (default 16 MiB).
        """
        call = stats_call(self, days, user, max_response_size)
        result: Dict[str, Any] = self._fetch(call, json=True)
        return result

    def usage(
        self, date: Union[str, datetime.date], *, max_response_size: Optional[int] = None
    ) -> List[Dict[str, Any]]:
        """The usage records of one day (``"YYYY-MM-DD"`` or a ``datetime.date``), oldest first.

        A day without records is g4f's 404 "No usage data found for this
        date", an :class:`APIStatusError`. Reads at most ``max_response_size``
        bytes (default 64 MiB).
        """
        call = usage_call(self, date, max_response_size)
        return jsonl_records(self._fetch(call, json=False))

    def record_usage(
        self,
        model: str,
        provider: str,
        usage: Optional[Mapping[str, Any]] = None,
        *,
        user: Optional[str] = None,
        max_response_size: Optional[int] = None,
    ) -> None:
        """Add a turn's token counts to the server's records, as its web page does after a turn.

        The server keeps ``{"user", "model", "provider", **usage}`` under
        today's date; :meth:`stats` and :meth:`usage` read them back. ``user``
        goes in the ``x-user`` header (the server files records without one
        under ``"unknown"``). Reads at most ``max_response_size`` bytes of
        the answer (default 64 KiB).
        """
        call = record_usage_call(self, model, provider, usage, user, max_response_size)
        self._fetch(call, json=True)

    def logs(
        self, *, limit: int = 100, max_response_size: Optional[int] = None
    ) -> List[Dict[str, Any]]:
        """The newest records of the server's client log (last seven days), newest first.

        At most ``limit`` of them. Reads at most ``max_response_size`` bytes
        (default 16 MiB).
        """
        result = self._fetch(logs_call(self, limit, max_response_size), json=True)
        records = result.get("logs") if isinstance(result, dict) else None
        return list(records) if isinstance(records, list) else []

    def log(self, record: Mapping[str, Any], *, max_response_size: Optional[int] = None) -> None:
        """Add one record (a JSON object) to the server's client log, which :meth:`logs` reads.

        The server adds the request's ``Origin`` header as ``origin``. Reads at
        most ``max_response_size`` bytes of the answer (default 64 KiB).
        """
        self._fetch(log_call(self, record, max_response_size), json=True)

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
        return self._result(exchange, self._send(exchange), json=json)

    def _result(self, exchange: Exchange, response: RequestsResponse, *, json: bool) -> Any:
        """Read ``response`` within the exchange's limit; its JSON or text, or its error."""
        result = self._read_all(exchange, response)
        return exchange.json_result(*result) if json else exchange.text_result(*result)

    def _read_all(
        self, exchange: Exchange, response: RequestsResponse
    ) -> Tuple[int, str, bytes, Optional[str]]:
        """Read ``response`` within the exchange's limit: status, reason, body, Location."""
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
        return status, response.reason, body, response.headers.get("Location")

    def _save(self, exchange: Exchange, response: RequestsResponse, target: str) -> int:
        """Stream ``response``'s body to ``target`` through a :class:`PartialFile`; its size."""
        if response.status >= 300:
            self._result(exchange, response, json=False)  # raises its status error
        limit = exchange.max_response_size
        assert limit is not None
        transport = self._transport
        try:
            file = transport.run_blocking(partial(PartialFile, target))
        except BaseException:
            response.close()
            raise
        try:
            while True:
                try:
                    data = response.read()
                except TransportError as failure:
                    raise exchange.send_error(failure, self.timeout) from None
                if not data:
                    break
                if file.size + len(data) > limit:
                    raise exchange.too_large_error(limit)
                transport.run_blocking(partial(file.write, data))
            transport.run_blocking(file.commit)
        except BaseException:  # a cancellation too: never a partial file left behind
            file.discard()
            raise
        finally:
            response.close()
        return file.size

    def _send(self, exchange: Exchange) -> RequestsResponse:
        """Send the request, retrying as :attr:`retry` allows; return the response's head.

        A request is asked again only while nothing of its response was read:
        after a failure that left the server no work (see
        :attr:`~backendapi._transports.Failure.retryable`) or a status that
        says "try again", within the total timeout. An exchange that follows
        redirects (media and ``create`` GETs) goes where a 3xx's ``Location``
        says, its credentials kept for the server's own origin
        (``_core/redirect.py``); every other call returns the 3xx.
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
                    location = response.headers.get("Location")
                    if not (
                        exchange.follow_redirects
                        and response.status in REDIRECT_STATUSES
                        and location
                    ):
                        # Nothing sends the request again: a stream open for minutes
                        # need not keep its body (a conversation of a few KB).
                        exchange.request = replace(exchange.request, body=None)
                        return response
                    response.close()
                    exchange.hops += 1
                    exchange.request = redirected(
                        exchange.request,
                        response.status,
                        location,
                        exchange.hops,
                        exchange.origin,
                        exchange.redact(location),
                    )
                    attempt = 0
                    continue
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
        # _next_batch's loop, written out: one event per network read (a model's
        # tokens as they come) costs no call beyond the read and the decoding.
        core = self._core
        while True:
            for data in core.taking:
                event = _new_event(RawResponse)
                _set_fields(event, data)
                yield event
            try:
                next_event = core.next_event()
                while next_event is None:
                    if core.finished or self._closed:
                        self._end("completed")
                        return
                    response = self._response
                    if response is None:
                        self._open()
                        continue
                    try:
                        chunk = response.read()
                    except TransportError as failure:
                        raise core.read_error(failure, self._client.timeout) from None
                    next_event = core.absorb(chunk)
                    if next_event is None:
                        next_event = core.next_event()
            except BaseException:  # an interrupt or a cancellation too: never leave the socket open
                self._end("failed")
                raise
            yield next_event

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
                event = core.absorb(self._read())
                if event is not None:
                    return event
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
