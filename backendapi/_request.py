"""Request building, with no I/O: validated arguments in, a :class:`PreparedRequest` out.

Both clients send exactly the bytes built here, so they cannot disagree on
what a call means.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence
from urllib.parse import urlsplit

from ._errors import InvalidInputError
from ._media import MediaInput, encode_media
from ._version import __version__

__all__ = [
    "CONVERSATION_PATH",
    "Messages",
    "PreparedRequest",
    "build_conversation_request",
    "normalize_base_url",
    "validate_messages",
]

CONVERSATION_PATH = "/backend-api/v2/conversation"
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

    def __repr__(self) -> str:
        size = "no body" if self.body is None else f"{len(self.body)} byte body"
        return f"PreparedRequest({self.method} {self.url}, {size})"


def normalize_base_url(base_url: object) -> str:
    """Check ``base_url`` and return it without a trailing slash.

    >>> normalize_base_url("http://localhost:8080/")
    'http://localhost:8080'
    """
    if not isinstance(base_url, str):
        raise InvalidInputError(f"base_url must be a str, not {type(base_url).__name__}")
    parts = urlsplit(base_url.strip())
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInputError(
            f"base_url must start with http:// or https://, got {base_url!r}"
        )
    if not parts.hostname:
        raise InvalidInputError(f"base_url has no host: {base_url!r}")
    if parts.query or parts.fragment:
        raise InvalidInputError(f"base_url must not have a query or fragment: {base_url!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise InvalidInputError(f"base_url has an invalid port: {base_url!r}") from None
    return base_url.strip().rstrip("/")


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
        if not isinstance(message, Mapping):
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
                f"{where}['content'] must be a str or a list of parts, "
                f"not {type(content).__name__}"
            )


def build_conversation_request(
    base_url: str,
    model: object,
    messages: object,
    media: Optional[MediaInput],
    api_key: object,
    extra: Mapping[str, Any],
    headers: Mapping[str, str],
) -> PreparedRequest:
    """Build the ``POST .../backend-api/v2/conversation`` request.

    The body is the seed's ``{"model", "messages", "media", "api_key", **extra}``.
    """
    if not isinstance(model, str):
        raise InvalidInputError(f"model must be a str, not {type(model).__name__}")
    validate_messages(messages)
    if api_key is not None and not isinstance(api_key, str):
        raise InvalidInputError(f"api_key must be a str or None, not {type(api_key).__name__}")
    body: Dict[str, Any] = {
        "model": model,
        "messages": messages,
        "media": encode_media(media),
        "api_key": api_key,
    }
    body.update(extra)
    provider = extra.get("provider")
    if provider is not None and not isinstance(provider, str):
        raise InvalidInputError(f"provider must be a str, not {type(provider).__name__}")
    return PreparedRequest(
        method="POST",
        url=base_url + CONVERSATION_PATH,
        headers=merge_headers(
            {"Content-Type": "application/json", "Accept": "text/event-stream"}, headers
        ),
        body=encode_json_body(body),
        model=model,
        provider=provider,
    )


def merge_headers(defaults: Mapping[str, str], overrides: Mapping[str, str]) -> Dict[str, str]:
    """Return ``defaults`` updated by ``overrides``, header names compared case-insensitively."""
    merged = {"User-Agent": USER_AGENT, **defaults}
    lowered = {name.lower(): name for name in merged}
    for name, value in overrides.items():
        existing = lowered.pop(name.lower(), None)
        if existing is not None:
            del merged[existing]
        merged[name] = value
        lowered[name.lower()] = name
    return merged


def encode_json_body(body: Mapping[str, Any]) -> bytes:
    """Serialize a request body; a value JSON cannot carry is named in the error."""
    try:
        return json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
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
        checked[name] = value
    return checked


def list_keys(body: Mapping[str, Any]) -> List[str]:
    """The body's field names, for logging without values."""
    return sorted(body)
