"""Request building, with no I/O: validated arguments in, a :class:`PreparedRequest` out.

Both clients send exactly the bytes built here, so they cannot disagree on
what a call means.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import re
import secrets
from collections import abc
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

from .._errors import InvalidInputError
from .._version import __version__
from .media import MediaInput, MediaPart, check_media, has_pending, load_media, wire_media
from .options import ACCEPT_ENCODING

__all__ = [
    "CONVERSATION_PATH",
    "Messages",
    "PreparedRequest",
    "Loader",
    "plan_conversation_request",
    "plan_upload_request",
    "normalize_base_url",
    "validate_messages",
]

CONVERSATION_PATH = "/backend-api/v2/conversation"
FILES_PATH = "/backend-api/v2/files"
VERSION_PATH = "/backend-api/v2/version"
MODELS_PATH = "/backend-api/v2/models"
PROVIDERS_PATH = "/backend-api/v2/providers"
CREATE_PATH = "/backend-api/v2/create"
USER_AGENT = f"backendapi-python/{__version__}"

Messages = Sequence[Mapping[str, Any]]
"""A conversation: ``[{"role": "user", "content": "Hello"}, ...]``."""


@dataclass(frozen=True)
class PreparedRequest:
    """One HTTP request, ready for either client to send as it is.

    Its repr shows the method, URL and body size, never the body, which may
    hold the api key.
    """

    method: str
    url: str
    headers: Dict[str, str] = field(default_factory=dict)
    body: Optional[bytes] = None
    model: str = ""
    provider: Optional[str] = None

    @property
    def has_authorization(self) -> bool:
        """True when the headers carry an ``Authorization`` (then ``.netrc`` is not read)."""
        return "authorization" in map(str.lower, self.headers)

    def __repr__(self) -> str:
        size = "no body" if self.body is None else f"{len(self.body)} byte body"
        return f"PreparedRequest({self.method} {self.url}, {size})"


def basic_authorization(user: str, password: str) -> str:
    """An ``Authorization: Basic`` value, latin-1 encoded as requests and aiohttp do."""
    pair = f"{user}:{password}"
    try:
        raw = pair.encode("latin-1")
    except UnicodeEncodeError:
        raw = pair.encode("utf-8")
    return "Basic " + base64.b64encode(raw).decode("ascii")


def shown_url(url: str) -> str:
    """``url`` as messages may show it: a password in it replaced by ``***``.

    >>> shown_url("http://me:secret@host:8080/g4f")
    'http://me:***@host:8080/g4f'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:  # no scheme: "me:secret@host" is shown masked too
        scheme, rest = "", url
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{hostport}{slash}{path}"


def split_credentials(url: str) -> Tuple[str, Optional[Tuple[str, str]]]:
    """``url`` without its ``user:password@``, and the (percent-decoded) pair, if any.

    >>> split_credentials("http://me:p%40ss@host:8080/g4f")
    ('http://host:8080/g4f', ('me', 'p@ss'))
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    hostport = parts.netloc.rpartition("@")[2]
    credentials = (unquote(parts.username or ""), unquote(parts.password or ""))
    return urlunsplit(parts._replace(netloc=hostport)), credentials


def normalize_base_url(base_url: object, name: str = "base_url") -> str:
    """Check an http(s) URL (``base_url``, or the argument ``name``); drop a trailing slash.

    >>> normalize_base_url("http://localhost:8080/")
    'http://localhost:8080'
    """
    if not isinstance(base_url, str):
        raise InvalidInputError(f"{name} must be a str, not {type(base_url).__name__}")
    parts = urlsplit(base_url.strip())
    if parts.scheme.lower() not in ("http", "https"):
        hint = ""
        if "://" not in base_url and base_url.strip():
            # "localhost:8080" parses as the scheme "localhost": say what was meant.
            hint = f" (write {'http://' + shown_url(base_url.strip())!r})"
        raise InvalidInputError(
            f"{name} must start with http:// or https://, got {shown_url(base_url)!r}{hint}"
        )
    if not parts.hostname:
        raise InvalidInputError(f"{name} has no host: {shown_url(base_url)!r}")
    if parts.query or parts.fragment:
        raise InvalidInputError(
            f"{name} must not have a query or fragment: {shown_url(base_url)!r}"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise InvalidInputError(f"{name} has an invalid port: {shown_url(base_url)!r}") from None
    return base_url.strip().rstrip("/")


API_ROOT = "/backend-api/v2"
"""The path every route starts with; a base URL is the server's root, without it."""


def server_root(base_url: str, name: str = "base_url") -> str:
    """``base_url`` (normalized) as the server's root: a trailing ``/backend-api/v2`` removed.

    The client adds that path to every call itself, so a URL copied with it
    (``http://host:8080/backend-api/v2``) means the server at
    ``http://host:8080``. Any other path holding ``/backend-api/`` (a route's
    URL, another version) is refused, naming the root to write instead.

    >>> server_root("http://localhost:8080/backend-api/v2/")
    'http://localhost:8080'
    >>> server_root("http://proxy.lan/g4f/backend-api/v2")
    'http://proxy.lan/g4f'
    """
    scheme, sep, rest = base_url.partition("://")
    netloc, slash, path = rest.partition("/")
    path = slash + path
    # Paths are case-sensitive, but nobody means "/Backend-API/v2" as a prefix of their own.
    lowered = path.lower()
    if lowered.endswith(API_ROOT):
        return scheme + sep + netloc + path[: -len(API_ROOT)].rstrip("/")
    cut = lowered.find("/backend-api/")
    if cut >= 0 or lowered.endswith("/backend-api"):
        if cut < 0:
            cut = len(path) - len("/backend-api")
        root = shown_url(scheme + sep + netloc + path[:cut])
        raise InvalidInputError(
            f"{name} is the server's root, to which the client adds {API_ROOT}/...; "
            f"got {shown_url(base_url)!r}: write {root!r}"
        )
    return base_url


def validate_messages(messages: object) -> None:
    """Raise :class:`InvalidInputError` unless ``messages`` is a valid conversation."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, (list, tuple)):
        raise InvalidInputError(
            f"messages must be a list of {{'role': ..., 'content': ...}} dicts, "
            f"not {type(messages).__name__}"
        )
    if not messages:
        raise InvalidInputError("messages must not be empty")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, abc.Mapping):  # the ABC: typing's alias checks slowly
            raise InvalidInputError(
                f"{where} must be a dict with 'role' and 'content', not {type(message).__name__}"
            )
        for key in ("role", "content"):
            if key not in message:
                raise InvalidInputError(f"{where} has no {key!r}")
        if not isinstance(message["role"], str) or not message["role"]:
            raise InvalidInputError(f"{where}['role'] must be a non-empty str")
        content = message["content"]
        if content is not None and not isinstance(content, (str, list)):
            raise InvalidInputError(
                f"{where}['content'] must be a str or a list of parts, not {type(content).__name__}"
            )


Loader = Callable[[], PreparedRequest]
"""Builds a request in full, reading the local files it attaches (the only I/O it does)."""


def plan_conversation_request(
    base_url: str,
    model: object,
    messages: object,
    media: Optional[MediaInput],
    api_key: object,
    extra: Mapping[str, Any],
    headers: Mapping[str, str],
    upload_media: bool = False,
) -> Tuple[PreparedRequest, Optional[Loader]]:
    """Check a conversation call; build its request, or what builds it once files are read.

    The body is the seed's ``{"model", "messages", "media", "api_key", **extra}``.
    With ``upload_media`` it is the endpoint's multipart form instead: that
    JSON in the ``json`` field, local media as ``files`` parts (raw bytes, a
    third smaller than base64) and URLs as ``media_url`` fields.

    Every argument is checked here. When ``media`` names files (paths or
    file objects), they are not read yet: the request returned then has no
    body, and the loader returned beside it reads them and builds the full
    request (a client calls it when the request goes out, off the event loop
    in the async client). Without files the loader is None.
    """
    if not isinstance(model, str):
        raise InvalidInputError(f"model must be a str, not {type(model).__name__}")
    validate_messages(messages)
    if api_key is not None and not isinstance(api_key, str):
        raise InvalidInputError(f"api_key must be a str or None, not {type(api_key).__name__}")
    provider = extra.get("provider")
    if provider is not None and not isinstance(provider, str):
        raise InvalidInputError(f"provider must be a str, not {type(provider).__name__}")
    entries = check_media(media)
    body: Dict[str, Any] = {"model": model, "messages": messages, "media": None, "api_key": api_key}
    body.update(extra)
    url = base_url + CONVERSATION_PATH

    def build(parts: Optional[List[MediaPart]]) -> PreparedRequest:
        if upload_media:
            fields = [("json", encode_json_body(body).decode("utf-8"))]
            fields += [("media_url", part.uri) for part in parts or () if part.uri is not None]
            payload, content_type = encode_multipart(fields, _file_parts(parts or [], "files"))
        else:
            payload = encode_json_body({**body, "media": wire_media(parts)})
            content_type = "application/json"
        return PreparedRequest(
            method="POST",
            url=url,
            headers=merge_headers(
                {"Content-Type": content_type, "Accept": "text/event-stream"}, headers
            ),
            body=payload,
            model=model,
            provider=provider,
        )

    if not has_pending(entries):
        return build(load_media(entries)), None
    encode_json_body(body)  # a value JSON cannot carry is named now, not once files are read
    placeholder = PreparedRequest(
        "POST", url, merge_headers({}, headers), None, model=model, provider=provider
    )
    return placeholder, lambda: build(load_media(entries))


def _file_parts(parts: Sequence[MediaPart], name: str) -> List[Tuple[str, str, str, bytes]]:
    files = []
    for index, part in enumerate(parts):
        if part.data is not None:
            filename = part.filename or f"file{index}{_extension(part.mime)}"
            files.append((name, filename, part.mime or "application/octet-stream", part.data))
    return files


def _extension(mime: Optional[str]) -> str:
    return (mimetypes.guess_extension(mime) or "") if mime else ""


def plan_upload_request(
    base_url: str, bucket_id: object, files: object, headers: Mapping[str, str]
) -> Tuple[PreparedRequest, Loader]:
    """Check ``POST .../backend-api/v2/files/<bucket_id>``, a multipart upload of ``files``.

    Returns a request without a body and the loader that reads the files and
    builds the full request (see :func:`plan_conversation_request`).
    """
    from .files import check_bucket_id  # files builds on this module

    check_bucket_id(bucket_id)
    entries = check_media(files, "files")  # type: ignore[arg-type]
    if not entries:
        raise InvalidInputError("files must hold at least one file")
    for index, entry in enumerate(entries):
        if isinstance(entry, MediaPart) and entry.data is None:
            raise InvalidInputError(f"files[{index}]: only local bytes or files can be uploaded")
    url = f"{base_url}{FILES_PATH}/{bucket_id}"

    def load() -> PreparedRequest:
        parts = load_media(entries) or []
        payload, content_type = encode_multipart([], _file_parts(parts, "files"))
        return PreparedRequest(
            method="POST",
            url=url,
            headers=merge_headers(
                {"Content-Type": content_type, "Accept": "application/json"}, headers
            ),
            body=payload,
        )

    return PreparedRequest("POST", url, merge_headers({}, headers)), load


def build_get_request(
    base_url: str, path: str, params: Mapping[str, Optional[str]], headers: Mapping[str, str]
) -> PreparedRequest:
    """Build a ``GET`` of one of the server's other endpoints."""
    query = urlencode({key: value for key, value in params.items() if value is not None})
    return PreparedRequest(
        method="GET",
        url=base_url + path + ("?" + query if query else ""),
        headers=merge_headers({"Accept": "application/json"}, headers),
    )


def merge_headers(defaults: Mapping[str, str], overrides: Mapping[str, str]) -> Dict[str, str]:
    """Return ``defaults`` updated by ``overrides``, header names compared case-insensitively."""
    merged = {"User-Agent": USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING, **defaults}
    lowered = {name.lower(): name for name in merged}
    for name, value in overrides.items():
        existing = lowered.pop(name.lower(), None)
        if existing is not None:
            del merged[existing]
        merged[name] = value
        lowered[name.lower()] = name
    return merged


# One encoder for every request: json.dumps() with options builds a new one each call.
_encode_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def encode_json_body(body: Mapping[str, Any]) -> bytes:
    """Serialize a request body; a value JSON cannot carry is named in the error."""
    try:
        return _encode_json(body).encode("utf-8")
    except (TypeError, ValueError) as exc:
        for key, value in body.items():
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as inner:
                raise InvalidInputError(f"{key!r} cannot be sent as JSON: {inner}") from None
        raise InvalidInputError(f"the request cannot be sent as JSON: {exc}") from None


def validate_headers(headers: object) -> Dict[str, str]:
    """Check a headers mapping (str names, str values) and return a copy."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidInputError(f"headers must be a mapping, not {type(headers).__name__}")
    checked: Dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidInputError(
                f"headers must map str to str; got {type(name).__name__}: {type(value).__name__}"
                f" for {name!r}"
            )
        if any(ch in name + value for ch in "\r\n"):
            raise InvalidInputError(f"header {name!r} contains a line break")
        if not _HEADER_NAME.fullmatch(name):
            raise InvalidInputError(
                f"header name {name!r} is not an HTTP token "
                "(letters, digits and !#$%&'*+-.^_`|~ only)"
            )
        # The value is never shown: it may be a credential.
        if not _HEADER_VALUE.fullmatch(value):
            raise InvalidInputError(
                f"header {name!r} must have an ASCII value with no control character "
                "other than a tab: HTTP gives other characters no agreed encoding "
                "(requests would send ISO-8859-1, aiohttp UTF-8); percent-encode or "
                "base64 such text"
            )
        if value[:1] in (" ", "\t"):
            raise InvalidInputError(f"header {name!r} must not start with whitespace")
        checked[name] = value
    return checked


_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


def encode_multipart(
    fields: Sequence[Tuple[str, str]], files: Sequence[Tuple[str, str, str, bytes]]
) -> Tuple[bytes, str]:
    """Build a ``multipart/form-data`` body; return it and its Content-Type.

    ``fields`` are ``(name, text)``; ``files`` are ``(name, filename, mime, data)``.
    """
    boundary = "backendapi-" + secrets.token_hex(16)
    out: List[bytes] = []
    for name, value in fields:
        out.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n'
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n".encode()
        )
        out.append(value.encode("utf-8"))
        out.append(b"\r\n")
    for name, filename, mime, data in files:
        out.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"; '
            f'filename="{_quote(filename)}"\r\nContent-Type: {mime}\r\n\r\n'.encode()
        )
        out.append(data)
        out.append(b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


def _quote(value: str) -> str:
    # RFC 7578: names and filenames are quoted strings; escape what would end them.
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
