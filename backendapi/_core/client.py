"""What both clients are made of before any I/O: their options, and what each call sends.

``AsyncBackendApiClient`` (``backendapi/_async/client.py``) and the
``BackendApiClient`` generated from it subclass :class:`ClientCore`, which
checks the constructor's arguments, builds every call's request, and makes
the client's transport.
"""

from __future__ import annotations

import os
from typing import Any, Callable, ClassVar, Generic, Mapping, Optional, Tuple, TypeVar, Union
from urllib.parse import quote

from .._errors import InvalidInputError
from .decoder import DEFAULT_MAX_EVENT_SIZE
from .exchange import Exchange
from .media import MediaInput
from .options import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_RESPONSE_SIZES,
    DEFAULT_TIMEOUT,
    SSLOption,
    Timeout,
    check_size,
    coerce_ssl,
    coerce_timeout,
)
from .request import (
    MODELS_PATH,
    PROVIDERS_PATH,
    VERSION_PATH,
    basic_authorization,
    build_get_request,
    normalize_base_url,
    plan_conversation_request,
    plan_upload_request,
    server_root,
    split_credentials,
    validate_headers,
)
from .retry import RetryPolicy
from .stream import StreamCore
from .tools import prepare_tools, tool_definitions

__all__ = ["ClientCore"]

MIN_SECRET_LENGTH = 4
"""Shorter api keys are not scrubbed from messages (see ClientCore._secrets)."""

DEFAULT_BASE_URL = "http://localhost:8080"
"""Where ``g4f gui`` listens by default."""
BASE_URL_ENV = "BACKENDAPI_BASE_URL"
API_KEY_ENV = "BACKENDAPI_API_KEY"


SessionT = TypeVar("SessionT")
TransportT = TypeVar("TransportT")


class ClientCore(Generic[SessionT, TransportT]):
    """The constructor, options and request building of both clients.

    Arguments, the same for :class:`BackendApiClient` and
    :class:`AsyncBackendApiClient`:

    * ``base_url``: the server's root, e.g. ``"http://localhost:8080"``; when
      omitted, ``BACKENDAPI_BASE_URL``, else ``http://localhost:8080``. The
      client adds ``/backend-api/v2/...`` itself: a URL ending in
      ``/backend-api/v2`` is taken without it, one holding any other
      ``/backend-api/`` path is refused (naming the root to write).
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
      The blocking client sets up the pools of the session's
      ``requests.adapters.HTTPAdapter`` (subclasses too; pools and idle
      connections made before included) as its own session's, so that
      informational responses (``102``, ``103``) are skipped and the total
      timeout ends a call whatever the server dribbles. The total applies
      inside the client's calls only: your own requests on the session see
      only that 1xx fix (http.client alone would take a ``103`` for the
      answer). Below an adapter that is no ``HTTPAdapter``, a 1xx is refused.
    * ``max_event_size``: largest event in bytes (default 64 MiB).
    * ``keep_debug_events``: keep the ``request``, ``response`` and
      ``headers`` events (a provider's own HTTP traffic, which may carry its
      keys or cookies) in ``answer.debug_events``, the api key replaced;
      False (the default) drops them from the answer (the stream still
      yields them).
    * ``upload_media``: send local media as multipart file parts (raw bytes)
      instead of base64 ``data:`` URIs, a third fewer bytes on the wire.
    * ``max_retries``: retries of a request that failed before any of its
      response was read; 0 disables; a :class:`RetryPolicy` also sets the
      backoff.
    * ``proxy``: a proxy URL for every request; without it ``HTTP_PROXY``,
      ``HTTPS_PROXY`` and ``NO_PROXY`` apply.
    * ``max_connections``: connections the client's own session keeps open at
      once (default 1000).
    * ``max_response_size``: most bytes (counted decompressed) a plain call
      (``models()``, ``version()``, ``providers()``, ``create_text()``,
      ``upload()``, ``synthesize()``, ``quota()``, ``health()``, ``status()``,
      ``stats()``, ``usage()``, ``record_usage()``, ``logs()``, ``log()``)
      reads of an answer before it raises :class:`ResponseTooLargeError`; None
      (the default) keeps each call's own default
      (``DEFAULT_MAX_RESPONSE_SIZES``, by call name: 64 KiB for ``version()``,
      1 MiB for ``upload()``, 64 MiB for ``synthesize()``...). Each call also takes a
      ``max_response_size=`` of its own, which wins. Streams are bounded per
      event instead (``max_event_size``).

    Redirects are not followed by the conversation POST (its body carries the
    api key) nor the JSON calls: a 3xx response raises :class:`APIStatusError`.
    Media downloads and ``create`` answers follow up to 10, sending the
    client's headers and credentials only to ``base_url``'s origin (see
    ``backendapi/_core/redirect.py``).
    """

    _transport_class: ClassVar[Callable[..., Any]]
    """The transport the client runs on; a subclass sets it."""

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
        max_response_size: Optional[int] = None,
        keep_debug_events: bool = False,
    ) -> None:
        name = "base_url"
        if base_url is None:
            base_url = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
            if os.environ.get(BASE_URL_ENV):
                name = BASE_URL_ENV  # the error names where the bad URL came from
        self.base_url, credentials = split_credentials(
            server_root(normalize_base_url(base_url, name), name)
        )
        """The server's root: no trailing slash, ``/backend-api/v2`` nor credentials (see below)."""
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
        if max_response_size is not None:
            check_size("max_response_size", max_response_size)
        self.max_response_size = max_response_size
        """Most bytes a plain call reads of an answer; None: each call's own default."""
        if not isinstance(keep_debug_events, bool):
            raise InvalidInputError(
                f"keep_debug_events must be True or False, not {type(keep_debug_events).__name__}"
            )
        self.keep_debug_events = keep_debug_events
        """Keep request/response/headers events in ``answer.debug_events`` (redacted)."""
        self._transport: TransportT = self._transport_class(
            session, ssl=self.ssl, proxy=self.proxy, max_connections=max_connections
        )

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
        if "tools" in extra:
            extra = _with_tool_definitions(extra)
        request, loader = plan_conversation_request(
            self.base_url, model, messages, media, key, extra, self._headers(), self.upload_media
        )
        core = StreamCore(request, self.max_event_size, self._secrets(key))
        core.answer._keep_debug_events = self.keep_debug_events
        core.loader = loader
        core.answer._base_url = self.base_url  # for its relative media URLs
        return core

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

    def _limit(self, call: str, size: Optional[int]) -> int:
        """The most bytes ``call`` reads: its argument, else the client's, else its default."""
        if size is not None:
            return check_size("max_response_size", size)
        if self.max_response_size is not None:
            return self.max_response_size
        return DEFAULT_MAX_RESPONSE_SIZES[call]

    def _get(self, path: str, limit: int, **params: Optional[str]) -> Exchange:
        for name, value in params.items():
            if value is not None and not isinstance(value, str):
                raise InvalidInputError(f"{name} must be a str, not {type(value).__name__}")
        exchange = Exchange(
            build_get_request(self.base_url, path, params, self._headers()), self._secrets()
        )
        exchange.max_response_size = limit
        return exchange

    def _version_call(self, size: Optional[int]) -> Exchange:
        return self._get(VERSION_PATH, self._limit("version", size))

    def _models_call(self, provider: Optional[str], size: Optional[int]) -> Exchange:
        limit = self._limit("models", size)
        if provider is None:
            return self._get(MODELS_PATH, limit)
        if not isinstance(provider, str) or not provider:
            raise InvalidInputError(f"provider must be a non-empty str, got {provider!r}")
        return self._get(f"{MODELS_PATH}/{quote(provider, safe='')}", limit)

    def _providers_call(self, size: Optional[int]) -> Exchange:
        return self._get(PROVIDERS_PATH, self._limit("providers", size))

    def _upload_call(self, bucket_id: object, files: object, size: Optional[int]) -> Exchange:
        limit = self._limit("upload", size)
        request, loader = plan_upload_request(self.base_url, bucket_id, files, self._headers())
        exchange = Exchange(request, self._secrets())
        exchange.loader = loader
        exchange.max_response_size = limit
        return exchange


def _with_tool_definitions(extra: Mapping[str, Any]) -> Mapping[str, Any]:
    """``extra`` with its ``tools`` as definitions: Python functions become their schema.

    ``tools=None`` or ``[]`` sends no ``tools`` at all (some providers refuse an empty list).
    """
    tools = extra["tools"]
    rest = {name: value for name, value in extra.items() if name != "tools"}
    if tools is None:
        return rest
    definitions = tool_definitions(prepare_tools(tools))
    return {**rest, "tools": definitions} if definitions else rest
