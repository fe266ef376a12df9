"""What the blocking and the async client share: options, error mapping, the stream core.

The two clients differ only in how they open a response, read bytes from it
and close it; every decision about what those bytes mean is made here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import ssl
import time
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    Generic,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    TypeVar,
    Union,
    cast,
)
from urllib.parse import quote

from ._answer import Answer
from ._decoder import DEFAULT_MAX_EVENT_SIZE, EventDecoder
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BackendApiError,
    DecodeError,
    InvalidInputError,
    StreamError,
    excerpt,
)
from ._events import RawResponse, _compiled, _set_fields, _string_type
from ._events import _new as _new_event
from ._media import MediaInput
from ._request import (
    CREATE_PATH,
    MODELS_PATH,
    PROVIDERS_PATH,
    VERSION_PATH,
    PreparedRequest,
    basic_authorization,
    build_conversation_request,
    build_get_request,
    build_upload_request,
    normalize_base_url,
    split_credentials,
    validate_headers,
)
from ._retry import RetryPolicy

_TYPE = itemgetter("type")
_CONTENT = itemgetter("content")
_STR = repeat(str)


def _python_content_pieces(items: List[Dict[str, Any]]) -> Optional[List[Any]]:
    """The ``content`` of each item if every one is a plain content piece, else None.

    A plain content piece has just the two keys ``"type"`` (equal to
    ``"content"``) and ``"content"``: no ``"urls"``, so the answer may take a
    run of them as one text. ``_batches.content_pieces`` is this in C.
    """
    # Every decoded event has a "type", so a key count of 2 per item on
    # average with each holding "content" means exactly those two keys each.
    if list(map(_TYPE, items)).count("content") != len(items):
        return None
    if sum(map(len, items)) != 2 * len(items):
        return None
    try:
        return list(map(_CONTENT, items))
    except KeyError:  # a content event without content
        return None


_content_pieces: Callable[[List[Dict[str, Any]]], Optional[List[Any]]] = (
    getattr(_compiled, "content_pieces", None) or _python_content_pieces
)


def _wrap(data: Dict[str, Any]) -> RawResponse:
    """A RawResponse over one of the decoder's dicts (adopted, not copied)."""
    event: RawResponse = _new_event(RawResponse)
    _set_fields(event, data)
    return event


def _dicts(events: List[RawResponse]) -> List[Dict[str, Any]]:
    """What a decoder with ``_raw_dicts`` set returns: the events' bare dicts."""
    return cast(List[Dict[str, Any]], events)


FEED_SIZE = 32 * 1024
"""Most bytes fed to the decoder at once (a network read is cut in slices)."""

__all__ = ["DEFAULT_MAX_CONNECTIONS", "DEFAULT_TIMEOUT", "SSLOption", "Timeout"]

logger = logging.getLogger("backendapi")

READ_SIZE = 64 * 1024
"""Most bytes asked of the network at once; a read returns whatever has arrived."""
ERROR_BODY_LIMIT = 64 * 1024
"""Most bytes read of an error answer's body."""

SSLOption = Union[bool, ssl.SSLContext, str, "os.PathLike[str]", None]
"""``ssl=``: True/None verify with the default CAs, False skips verification,
an :class:`ssl.SSLContext` is used as it is, a path names a CA bundle."""


@dataclass(frozen=True)
class Timeout:
    """Timeouts in seconds; ``None`` disables one.

    ``connect`` bounds establishing the connection; ``read`` bounds the
    silence between two pieces of data from the server (reasoning models can
    think silently for minutes, so the default is generous); ``total``, off
    by default, bounds a whole call, retries and streaming included.
    """

    connect: Optional[float] = 10.0
    read: Optional[float] = 600.0
    total: Optional[float] = None

    def __post_init__(self) -> None:
        for name in ("connect", "read", "total"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidInputError(
                    f"timeout {name} must be a number of seconds or None, "
                    f"not {type(value).__name__}"
                )
            if not value > 0:
                raise InvalidInputError(f"timeout {name} must be positive, got {value!r}")


DEFAULT_TIMEOUT = Timeout()
"""Connect within 10 s; up to 600 s of silence while streaming; no total limit."""
DEFAULT_MAX_CONNECTIONS = 1000
"""Connections one client opens at once. A stream holds its connection for as
long as it lasts, so aiohttp's default of 100 would silently queue the 101st
concurrent stream."""


def coerce_timeout(timeout: Union[Timeout, float, None]) -> Timeout:
    """``None`` disables all timeouts; a number sets both connect and read."""
    if timeout is None:
        return Timeout(connect=None, read=None)
    if isinstance(timeout, Timeout):
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidInputError(
            f"timeout must be a number of seconds, a Timeout or None, not {type(timeout).__name__}"
        )
    return Timeout(connect=timeout, read=timeout)


def coerce_ssl(value: SSLOption) -> Union[bool, ssl.SSLContext, str]:
    """Validate ``ssl=``; return True, False, an SSLContext or a CA bundle path."""
    if value is None or value is True:
        return True
    if value is False or isinstance(value, ssl.SSLContext):
        return value
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if not os.path.exists(path):
            raise InvalidInputError(f"ssl: no such CA bundle: {path!r}")
        return path
    raise InvalidInputError(
        f"ssl must be True, False, an ssl.SSLContext or a CA bundle path, "
        f"not {type(value).__name__}"
    )


def one_line(text: str, limit: int = 300) -> str:
    """``text`` with its runs of whitespace (newlines too) made single spaces, cut at ``limit``."""
    return " ".join(text.split())[:limit]


CA_BUNDLE_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
"""Variables naming the CA bundle to verify with by default (requests' rule: the first set)."""


def environment_ca_bundle() -> Optional[str]:
    """The CA bundle (file or directory) the environment names for ``ssl=True``, or None.

    Read for each request, as requests reads it: ``REQUESTS_CA_BUNDLE``, else
    ``CURL_CA_BUNDLE``. Raises :class:`InvalidInputError` naming the variable
    when the path does not exist.
    """
    for name in CA_BUNDLE_ENV:
        path = os.environ.get(name)
        if path:
            if not os.path.exists(path):
                raise InvalidInputError(f"{name}: no such CA bundle: {path!r}")
            return path
    return None


MIN_SECRET_LENGTH = 4
"""Shorter api keys are not scrubbed from messages (see BaseClient._secrets)."""

DEFAULT_BASE_URL = "http://localhost:8080"
"""Where ``g4f gui`` listens by default."""
BASE_URL_ENV = "BACKENDAPI_BASE_URL"
API_KEY_ENV = "BACKENDAPI_API_KEY"


SessionT = TypeVar("SessionT")


class BaseClient(Generic[SessionT]):
    """The constructor, options and request building both clients share.

    Arguments, the same for :class:`BackendApiClient` and
    :class:`AsyncBackendApiClient`:

    * ``base_url``: the server's root, e.g. ``"http://localhost:8080"``; when
      omitted, ``BACKENDAPI_BASE_URL``, else ``http://localhost:8080``.
    * ``api_key``: sent as the body's ``api_key`` when a call gives none; when
      omitted, ``BACKENDAPI_API_KEY``.
    * ``headers``: extra HTTP headers for every request.
    * ``ssl``: True (verify with certifi's CAs, the default), False, an
      ``ssl.SSLContext``, or a CA bundle path.
    * ``timeout``: a :class:`Timeout`, a number of seconds for both connect
      and read, or None for no timeout.
    * ``session``: a ``requests.Session`` (blocking client) or an
      ``aiohttp.ClientSession`` (async client) of yours; the client uses it
      and leaves closing it to you. Without one, the client makes its own.
    * ``max_event_size``: largest event in bytes (default 64 MiB).
    * ``upload_media``: send local media as multipart file parts (raw bytes)
      instead of base64 ``data:`` URIs, a third fewer bytes on the wire.
    * ``max_retries``: retries of a request that failed before any of its
      answer was read; 0 disables; a :class:`RetryPolicy` also sets the
      backoff.
    * ``proxy``: a proxy URL for every request; without it ``HTTP_PROXY``,
      ``HTTPS_PROXY`` and ``NO_PROXY`` apply.
    * ``max_connections``: connections the client's own session keeps open at
      once (default 1000).

    Redirects are not followed: the conversation body carries the api key, and
    a redirect must not carry it elsewhere; a 3xx answer raises
    :class:`APIStatusError`.
    """

    _session_type: ClassVar[type]
    """The session class the client runs on; a subclass sets it."""

    def __init__(
        self,
        base_url: Optional[str] = None,
        *,
        api_key: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        ssl: SSLOption = None,
        timeout: Union[Timeout, float, None] = DEFAULT_TIMEOUT,
        session: Optional[SessionT] = None,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        upload_media: bool = False,
        max_retries: Union[int, RetryPolicy] = 2,
        proxy: Optional[str] = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if base_url is None:
            base_url = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        self.base_url, credentials = split_credentials(normalize_base_url(base_url))
        """The server's root, without a trailing slash (nor credentials: see below)."""
        if api_key is None:
            api_key = os.environ.get(API_KEY_ENV) or None
        if api_key is not None and not isinstance(api_key, str):
            raise InvalidInputError(f"api_key must be a str or None, not {type(api_key).__name__}")
        self._api_key = api_key
        self.headers = validate_headers(headers)
        """Extra headers sent with every request."""
        # Credentials in base_url go as the Basic auth requests and aiohttp would
        # make of them, kept out of base_url so that no repr, log line or error
        # message shows them.
        self._authorization: Optional[str] = None
        if credentials is not None:
            if any(name.lower() == "authorization" for name in self.headers):
                raise InvalidInputError(
                    "base_url carries credentials and headers an Authorization: give one"
                )
            self._authorization = basic_authorization(*credentials)
        self.ssl = coerce_ssl(ssl)
        """TLS verification: True, False, an SSLContext or a CA bundle path."""
        self.timeout = coerce_timeout(timeout)
        """The :class:`Timeout` applied to every request."""
        if isinstance(max_event_size, bool) or not isinstance(max_event_size, int):
            raise InvalidInputError(
                f"max_event_size must be an int, not {type(max_event_size).__name__}"
            )
        if max_event_size <= 0:
            raise InvalidInputError(f"max_event_size must be positive, got {max_event_size}")
        self.max_event_size = max_event_size
        """Largest event, in bytes, a stream accepts before raising."""
        if not isinstance(upload_media, bool):
            raise InvalidInputError(
                f"upload_media must be True or False, not {type(upload_media).__name__}"
            )
        self.upload_media = upload_media
        """Send local media as multipart file parts instead of base64 data: URIs."""
        self.retry = (
            max_retries
            if isinstance(max_retries, RetryPolicy)
            else RetryPolicy(max_retries=max_retries)
        )
        """The :class:`RetryPolicy` in force."""
        self.proxy = None if proxy is None else normalize_base_url(proxy, "proxy")
        """An explicit proxy URL; without one, HTTP(S)_PROXY and NO_PROXY apply."""
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise InvalidInputError(
                f"max_connections must be an int, not {type(max_connections).__name__}"
            )
        if max_connections < 1:
            raise InvalidInputError(f"max_connections must be >= 1, got {max_connections}")
        self.max_connections = max_connections
        """How many connections the client's own session may open at once."""
        if session is not None and not isinstance(session, self._session_type):
            kind = self._session_type
            raise InvalidInputError(
                f"session must be a {kind.__module__.split('.')[0]}.{kind.__name__}, "
                f"not {type(session).__name__}"
            )
        self._session: Optional[SessionT] = session
        self._owns_session = session is None
        self._closed = False
        self._setup()

    def _setup(self) -> None:
        """What one client adds to the shared construction; arguments are checked."""

    def __repr__(self) -> str:
        key = "***" if self._api_key else None
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key={key!r})"

    def _prepare(
        self,
        model: object,
        messages: object,
        media: Optional[MediaInput],
        api_key: object,
        extra: Mapping[str, Any],
    ) -> StreamCore:
        key = api_key if api_key is not None else self._api_key
        request = build_conversation_request(
            self.base_url, model, messages, media, key, extra, self._headers(), self.upload_media
        )
        return StreamCore(request, self.max_event_size, self._secrets(key))

    def _headers(self) -> Mapping[str, str]:
        """The headers of every request: :attr:`headers`, and base_url's credentials."""
        if self._authorization is None:
            return self.headers
        return {**self.headers, "Authorization": self._authorization}

    def _secrets(self, key: object = None) -> Tuple[str, ...]:
        # Scrubbing a one- or two-letter "key" out of every message would mangle
        # them all and protect nothing; real keys are far longer.
        keys = {key, self._api_key}
        return tuple(k for k in keys if isinstance(k, str) and len(k) >= MIN_SECRET_LENGTH)

    def _get(self, path: str, **params: Optional[str]) -> Exchange:
        for name, value in params.items():
            if value is not None and not isinstance(value, str):
                raise InvalidInputError(f"{name} must be a str, not {type(value).__name__}")
        return Exchange(
            build_get_request(self.base_url, path, params, self._headers()), self._secrets()
        )

    def _version_call(self) -> Exchange:
        return self._get(VERSION_PATH)

    def _models_call(self, provider: Optional[str]) -> Exchange:
        if provider is None:
            return self._get(MODELS_PATH)
        if not isinstance(provider, str) or not provider:
            raise InvalidInputError(f"provider must be a non-empty str, got {provider!r}")
        return self._get(f"{MODELS_PATH}/{quote(provider, safe='')}")

    def _providers_call(self) -> Exchange:
        return self._get(PROVIDERS_PATH)

    def _create_text_call(
        self, prompt: object, model: Optional[str], provider: Optional[str]
    ) -> Exchange:
        if not isinstance(prompt, str) or not prompt:
            raise InvalidInputError(f"prompt must be a non-empty str, got {prompt!r}")
        exchange = self._get(CREATE_PATH, prompt=prompt, model=model, provider=provider)
        exchange.request.headers["Accept"] = "text/plain"
        return exchange

    def _upload_call(self, bucket_id: object, files: object) -> Exchange:
        request = build_upload_request(self.base_url, bucket_id, files, self._headers())
        return Exchange(request, self._secrets())


class Exchange:
    """One request and the I/O-free handling of its answer: errors, redaction, logging."""

    def __init__(self, request: PreparedRequest, secrets: Tuple[str, ...] = ()) -> None:
        self.request = request
        self.secrets = secrets
        self.deadline: Optional[float] = None
        """When the total timeout expires (``time.monotonic()``), if one is set."""
        self.started: Optional[float] = None
        """When the call went out (``time.monotonic()``), once it did."""

    def start_clock(self, total: Optional[float]) -> None:
        """Note when the call started; start counting the total timeout, if any."""
        if self.started is None:
            self.started = time.monotonic()
        if total is not None and self.deadline is None:
            self.deadline = time.monotonic() + total

    def remaining(self) -> Optional[float]:
        """Seconds left before the total timeout, or None without one."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def expired(self) -> bool:
        """True once the total timeout has run out."""
        left = self.remaining()
        return left is not None and left <= 0

    def can_wait(self, delay: float) -> bool:
        """True if waiting ``delay`` seconds leaves time before the total timeout."""
        left = self.remaining()
        return left is None or delay < left

    def total_timeout_error(self, total: Optional[float]) -> APITimeoutError:
        """The error for an expired total timeout."""
        url = self.request.url
        return APITimeoutError(
            f"{url} did not finish within the total timeout of {total} s", url=url
        )

    def tls_error(self, reason: str) -> APIConnectionError:
        """The error for a failed TLS handshake, saying plainly when it was the certificate."""
        url = self.request.url
        reason = self.redact(reason)
        if "certificate verify failed" in reason.lower() or "CERTIFICATE_VERIFY" in reason:
            return APIConnectionError(
                f"TLS certificate verification failed for {url} (pass ssl=<CA bundle path> "
                f"to trust its issuer): {reason}",
                url=url,
            )
        return APIConnectionError(f"TLS error connecting to {url}: {reason}", url=url)

    def invalid_answer_error(self, reason: str) -> APIConnectionError:
        """The error for an answer that is no HTTP (a bad status line, a header too long)."""
        url = self.request.url
        return APIConnectionError(
            f"invalid HTTP answer from {url}: {one_line(self.redact(reason))}", url=url
        )

    def log_retry(self, attempt: int, delay: float, why: str) -> None:
        """Log a retry at INFO: which call, why, which attempt, after how long."""
        logger.info(
            "retrying %s %s in %.2f s (retry %d) after: %s",
            self.request.method,
            self.request.url,
            delay,
            attempt + 1,
            self.redact(why),
        )

    def redact(self, text: str) -> str:
        """Replace the api key wherever it occurs in ``text``."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def status_error(
        self, status: int, reason: str, body: bytes, location: Optional[str]
    ) -> BackendApiError:
        """The exception for an answer with HTTP status >= 300, from its first bytes."""
        url = self.request.url
        if 300 <= status < 400:
            return APIStatusError(
                self.redact(
                    f"HTTP {status} {reason} from {url}: redirect to {location!r} not followed, "
                    "because the request body carries the api key"
                ),
                status_code=status,
                url=url,
            )
        parsed: Any = None
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
        server_message = _server_message(parsed)
        shown: Any = self.redact_json(parsed)
        if server_message is None:
            text = body.decode("utf-8", "replace")
            shown = self.redact(text[:2000])
            server_message = one_line(text) or "(empty body)"
        message = self.redact(f"HTTP {status} {reason} from {url}: {server_message}")
        return APIStatusError(message, status_code=status, body=shown, url=url)

    def redact_json(self, value: Any) -> Any:
        """``value`` (decoded JSON) with the api key replaced wherever it occurs."""
        if not self.secrets:
            return value
        text = json.dumps(value)
        redacted = self.redact(text)
        return value if redacted == text else json.loads(redacted)

    def json_result(self, status: int, reason: str, body: bytes, location: Optional[str]) -> Any:
        """The decoded JSON of a plain (non-streaming) answer, or the error it means."""
        if status >= 300:
            raise self.status_error(status, reason, body, location)
        try:
            return json.loads(body)
        except ValueError:
            raise DecodeError(
                f"expected JSON from {self.request.url}, got {excerpt(body)}"
            ) from None

    def text_result(self, status: int, reason: str, body: bytes, location: Optional[str]) -> str:
        """The text of a plain answer, or the error it means."""
        if status >= 300:
            raise self.status_error(status, reason, body, location)
        return body.decode("utf-8", "replace")

    def log_request(self) -> None:
        """Log the request, with no key and no message text."""
        request = self.request
        logger.debug(
            "%s %s model=%r provider=%r body=%d bytes",
            request.method,
            request.url,
            request.model,
            request.provider,
            len(request.body or b""),
        )


class StreamCore(Exchange):
    """The I/O-free half of a stream: decoding, the batch of events, error events.

    A client's stream pumps bytes in with :meth:`absorb` and hands events out
    of :attr:`taking`, the iterator over the current batch (the events one
    network read completed, as the decoder's dicts: the stream wraps each in
    a :class:`RawResponse` as it hands it out, so a batch of them never waits
    as garbage-collector work); when it runs dry, :meth:`next_event` starts
    the next batch, and ``finished`` tells the stream when to stop reading.

    The answer counts a batch's events lazily, when it is read or the batch is
    used up: the events handed out so far are ``len(batch)`` minus what
    ``taking`` has left, so handing an event out needs no bookkeeping.
    """

    def __init__(
        self, request: PreparedRequest, max_event_size: int, secrets: Tuple[str, ...]
    ) -> None:
        super().__init__(request, secrets)
        self.finished = False
        self.eof = False
        """True once the body was read to its end."""
        self.answer = Answer()
        """Everything yielded so far, gathered."""
        self.answer._catch_up = self._count_taken
        self.on_complete: List[Callable[[Answer], None]] = []
        """Called once with the answer when the stream ends without error."""
        self.taking: Iterator[Dict[str, Any]] = iter(())
        """The events (dicts) of the current batch not yet handed out."""
        self._decoder = EventDecoder(max_event_size=max_event_size)
        self._decoder._raw_dicts = True  # the stream wraps each as it hands it out
        self._batch: List[Dict[str, Any]] = []
        # The batch's contents when every event in it is a plain content piece
        # (the usual case), so the answer takes a run of them at once.
        self._contents: Optional[List[Any]] = None
        self._counted = 0  # events of _batch already in the answer
        self._fatal: Optional[Dict[str, Any]] = None  # an error/auth event after the batch
        # What is left of the last chunk read: it is fed to the decoder in slices
        # of FEED_SIZE as the events before are taken (see absorb).
        self._rest: Optional[memoryview] = None

    @property
    def events_yielded(self) -> int:
        """Events handed out so far (every one of them went to the answer)."""
        return self.answer.events

    @property
    def bytes_received(self) -> int:
        """Body bytes fed to the decoder so far."""
        return self._decoder.bytes_fed

    def absorb(self, chunk: bytes) -> None:
        """Feed bytes from the network; an empty chunk means the body ended.

        Call it only once :attr:`taking` ran dry and :meth:`next_event`
        returned None.
        """
        if chunk:
            if len(chunk) > FEED_SIZE:
                # A big read is decoded a slice at a time, as its events are
                # taken: 6,500 small events of one 256 KiB async read, decoded at
                # once, are handed out more slowly than 32 KiB slices of them.
                self._rest = memoryview(chunk)
                self._feed_rest()
            else:
                self._feed(chunk)
        else:
            self.finished = self.eof = True
            self._start_batch(_dicts(self._decoder.close()))

    def _feed(self, data: Union[bytes, memoryview]) -> None:
        self._start_batch(_dicts(self._decoder.feed(data)))
        if self._decoder.done:
            self.finished = True
            self._rest = None

    def _feed_rest(self) -> None:
        rest = self._rest
        assert rest is not None
        if len(rest) > FEED_SIZE:
            self._rest = rest[FEED_SIZE:]
            rest = rest[:FEED_SIZE]
        else:
            self._rest = None
        self._feed(rest)

    def _start_batch(self, items: List[Dict[str, Any]]) -> None:
        """Make the decoder's new events (dicts, each with a "type") the batch."""
        self._count_taken()
        # Plain content pieces (the usual batch): the answer takes their text at once.
        contents = _content_pieces(items)
        if contents is None:
            types = list(map(_TYPE, items))
            if not all(map(isinstance, types, _STR)):
                for data in items:
                    _string_type(data)
            if "error" in types or "auth" in types:
                # Everything before it is handed out first; nothing after it ever is.
                cut = min(types.index(kind) for kind in ("error", "auth") if kind in types)
                self._fatal = items[cut]
                del items[cut:]
                self._rest = None
        self._contents = contents
        self._batch = items
        self._counted = 0
        self.taking = iter(items)

    def _count_taken(self) -> None:
        """Add the events handed out since the last count to the answer."""
        batch = self._batch
        if not batch:
            return
        taken = len(batch) - self.taking.__length_hint__()  # type: ignore[attr-defined]
        counted = self._counted
        if taken > counted:
            self._counted = taken
            if self._contents is not None:
                try:
                    self.answer._add_contents(self._contents[counted:taken])
                    return
                except TypeError:  # a content that is no string: one at a time
                    self._contents = None
            for data in batch[counted:taken]:
                self.answer.add(_wrap(data))

    def next_event(self) -> Optional[RawResponse]:
        """Start the next batch and return its first event; None when bytes are needed.

        Raises :class:`StreamError` (or :class:`AuthenticationError`) at a
        fatal ``error`` or ``auth`` event, after all earlier events were
        handed out, and a held :class:`DecodeError` likewise.
        """
        for data in self.taking:
            return _wrap(data)
        while True:
            # Raising, the stream ends (end() counts what was taken).
            if self._fatal is not None:
                data, self._fatal = self._fatal, None
                self.finished = True
                raise self._event_error(_wrap(data))
            if self._decoder.error_pending:
                self.finished = True
                self._decoder.feed(b"")  # raises the decode error held behind the events
            if self._rest is None:
                return None
            self._feed_rest()
            for data in self.taking:
                return _wrap(data)

    def end(self, outcome: str) -> None:
        """Note that the stream ended (``"completed"``, ``"closed"``, ``"failed"``...).

        Events decoded but not yet taken are dropped: nothing comes out of a
        stream after it was closed.
        """
        self._count_taken()
        self.answer._catch_up = None
        self.finished = True
        self._batch.clear()  # in place: an iterator a loop holds over it is done too
        self._contents = None
        self.taking = iter(())
        self._fatal = None
        self._rest = None
        if outcome == "completed":
            callbacks, self.on_complete = self.on_complete, []
            for callback in callbacks:
                callback(self.answer)

    def _event_error(self, event: RawResponse) -> StreamError:
        message = event.get("message")
        name = event.get("error") if event.type == "error" else event.get("auth")
        if not isinstance(message, str) or not message:
            message = str(name) if name else json.dumps(event.get_dict())[:500]
        text = self.redact(f"server reported {event.type}: {message}")
        cls = AuthenticationError if event.type == "auth" else StreamError
        return cls(text, event=RawResponse(self.redact_json(event.get_dict())))

    @staticmethod
    def is_not_a_stream(content_type: str) -> bool:
        """True when a 200 answer is plainly no event stream (a proxy's HTML page)."""
        return content_type.lower().startswith(("text/html", "application/xhtml"))

    def content_type_error(self, content_type: str, head: bytes) -> DecodeError:
        """The error for an answer :meth:`is_not_a_stream` rejected."""
        return DecodeError(
            self.redact(
                f"expected an event stream from {self.request.url}, got Content-Type "
                f"{content_type!r}; the body starts {excerpt(head)}"
            )
        )

    def log_end(self, outcome: str) -> None:
        """Log a one-line summary of the finished stream."""
        seconds = 0.0 if self.started is None else time.monotonic() - self.started
        logger.debug(
            "stream %s %s: %d events, %d bytes, %.3f s",
            self.request.url,
            outcome,
            self.events_yielded,
            self.bytes_received,
            seconds,
        )


def _server_message(parsed: Any) -> Optional[str]:
    """The message in g4f's ``{"error": {"message": ...}}`` and its common variants."""
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    for value in (error, parsed.get("message"), parsed.get("detail")):
        if isinstance(value, str) and value:
            return value
    return None


ClientT = TypeVar("ClientT")
ResponseT = TypeVar("ResponseT")


class StreamBase(Generic[ClientT, ResponseT]):
    """What :class:`Stream` and :class:`AsyncStream` share: their state and their end.

    A client's stream adds only how it opens, reads and closes a response.
    """

    def __init__(self, client: ClientT, core: StreamCore) -> None:
        self._client = client
        self._core = core
        self._response: Optional[ResponseT] = None
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once the stream ended or was closed."""
        return self._closed

    @property
    def answer(self) -> Answer:
        """Everything yielded so far, gathered: text, usage, title, conversation..."""
        return self._core.answer

    def __del__(self) -> None:
        # A stream dropped mid-way must not keep its socket open.
        if not self._closed and self._response is not None:
            self._end("abandoned")

    def _end(self, outcome: str) -> None:
        if self._closed:
            return
        self._closed = True
        response, self._response = self._response, None
        try:
            self._core.end(outcome)
        finally:
            if response is not None:
                self._close_response(response, outcome)

    def _close_response(self, response: ResponseT, outcome: str) -> None:
        raise NotImplementedError
