"""The provider and bookkeeping routes: what each call sends, checked before any I/O.

``synthesize/<provider>``, ``quota/<provider>``, ``health/<provider>``, ``status``,
``stats``, ``usage`` (POST), ``usage/<date>`` and ``log`` (GET and POST). Each
builder returns the call's :class:`~backendapi._core.exchange.Exchange`; both
clients send it and read its answer (``synthesize(..., path=...)`` writes
through :class:`~backendapi._core.files.PartialFile`, as downloads do).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional
from urllib.parse import quote, urlencode

from .._errors import InvalidInputError
from .exchange import Exchange
from .request import (
    _HEADER_VALUE,
    PreparedRequest,
    build_get_request,
    encode_json_body,
    merge_headers,
)

if TYPE_CHECKING:
    from .client import ClientCore

__all__ = ["Speech"]

V2 = "/backend-api/v2"
API_KEY_HEADER = "x-api-key"
"""The header g4f's ``quota``, ``health`` and ``models/<provider>`` routes read the key from."""
USER_HEADER = "x-user"
"""The header g4f's ``usage`` route files a record under (``"unknown"`` without it)."""


@dataclass(frozen=True)
class Speech:
    """The audio :meth:`~backendapi.BackendApiClient.synthesize` received.

    ``content_type`` is the provider's audio type as the server named it
    (``audio/aac``, ``audio/vnd.wav``...; ``application/octet-stream`` when
    the provider names none). Exactly one of ``data`` (the audio, when no
    ``path`` was given) and ``path`` (the file it was written to) is set.
    """

    content_type: str
    size: int
    """Bytes received (counted decompressed)."""
    data: Optional[bytes] = field(default=None, repr=False)
    path: Optional[Path] = None


def provider_segment(provider: object) -> str:
    """``provider`` as one path segment, or :class:`InvalidInputError`."""
    if not isinstance(provider, str) or not provider.strip():
        raise InvalidInputError(f"provider must be a non-empty str, got {provider!r}")
    return quote(provider, safe="")


def key_for(core: ClientCore[Any, Any], api_key: object) -> Optional[str]:
    """The key a call sends as ``x-api-key``: its own, else the client's."""
    if api_key is not None and not isinstance(api_key, str):
        raise InvalidInputError(f"api_key must be a str or None, not {type(api_key).__name__}")
    key = api_key if api_key is not None else core._api_key
    return key or None


def with_key(core: ClientCore[Any, Any], exchange: Exchange, key: Optional[str]) -> Exchange:
    """Send ``key`` in the ``x-api-key`` header, and scrub it wherever the client scrubs keys."""
    if key is not None:
        if not _HEADER_VALUE.fullmatch(key):
            raise InvalidInputError(
                "api_key goes in the x-api-key header here, so it must be ASCII "
                "with no control character"
            )
        exchange.request.headers[API_KEY_HEADER] = key
        exchange.secrets = core._secrets(key)
    return exchange


def provider_call(
    core: ClientCore[Any, Any], route: str, provider: object, api_key: object, size: Optional[int]
) -> Exchange:
    """``GET .../quota/<provider>`` or ``.../health/<provider>``, the key in ``x-api-key``."""
    segment = provider_segment(provider)
    key = key_for(core, api_key)
    exchange = core._get(f"{V2}/{route}/{segment}", core._limit(route, size))
    return with_key(core, exchange, key)


def status_call(core: ClientCore[Any, Any], size: Optional[int]) -> Exchange:
    """``GET .../status``."""
    return core._get(f"{V2}/status", core._limit("status", size))


def stats_call(
    core: ClientCore[Any, Any], days: object, user: object, size: Optional[int]
) -> Exchange:
    """``GET .../stats?days=&user=``; ``days`` is checked against g4f's range, 1 to 365."""
    if days is not None and (
        isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 365
    ):
        raise InvalidInputError(f"days must be an int from 1 to 365, got {days!r}")
    if user is not None and not isinstance(user, str):
        raise InvalidInputError(f"user must be a str, not {type(user).__name__}")
    limit = core._limit("stats", size)
    shown = None if days is None else str(days)
    return core._get(f"{V2}/stats", limit, days=shown, user=user)


def usage_date(date: object) -> str:
    """``date`` (a :class:`datetime.date` or ``"YYYY-MM-DD"``) as g4f's route takes it."""
    if isinstance(date, datetime.datetime):
        raise InvalidInputError("date must be a datetime.date or 'YYYY-MM-DD', not a datetime")
    if isinstance(date, datetime.date):
        return date.isoformat()
    if isinstance(date, str):
        try:
            if len(date) == 10:
                return datetime.date.fromisoformat(date).isoformat()
        except ValueError:
            pass
        raise InvalidInputError(f"date must be a real date written YYYY-MM-DD, got {date!r}")
    raise InvalidInputError(
        f"date must be a datetime.date or a 'YYYY-MM-DD' str, not {type(date).__name__}"
    )


def usage_call(core: ClientCore[Any, Any], date: object, size: Optional[int]) -> Exchange:
    """``GET .../usage/<date>``: that day's records, one JSON object a line."""
    exchange = core._get(f"{V2}/usage/{usage_date(date)}", core._limit("usage", size))
    exchange.request.headers["Accept"] = "text/plain"
    return exchange


def post_json_call(
    core: ClientCore[Any, Any],
    path: str,
    body: Mapping[str, Any],
    size: Optional[int],
    call: str,
    headers: Optional[Mapping[str, str]] = None,
) -> Exchange:
    """``POST`` a JSON ``body`` to one of the bookkeeping routes."""
    defaults = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
    request = PreparedRequest(
        method="POST",
        url=core.base_url + path,
        headers=merge_headers(defaults, core._headers()),
        body=encode_json_body(body),
    )
    exchange = Exchange(request, core._secrets())
    exchange.max_response_size = core._limit(call, size)
    return exchange


def record_usage_call(
    core: ClientCore[Any, Any],
    model: object,
    provider: object,
    usage: object,
    user: object,
    size: Optional[int],
) -> Exchange:
    """``POST .../usage``: ``{"model", "provider", **usage}``, filed under ``x-user``."""
    for name, value in (("model", model), ("provider", provider)):
        if not isinstance(value, str) or not value:
            raise InvalidInputError(f"{name} must be a non-empty str, got {value!r}")
    if usage is None:
        usage = {}
    if not isinstance(usage, Mapping):
        raise InvalidInputError(
            f"usage must be a mapping such as answer.usage, not {type(usage).__name__}"
        )
    headers: Dict[str, str] = {}
    if user is not None:
        if not isinstance(user, str) or not user or not _HEADER_VALUE.fullmatch(user):
            raise InvalidInputError(
                f"user must be a non-empty ASCII str with no control character, got {user!r}"
            )
        headers[USER_HEADER] = user
    body = {**usage, "model": model, "provider": provider}
    return post_json_call(core, f"{V2}/usage", body, size, "record_usage", headers)


def logs_call(core: ClientCore[Any, Any], limit: object, size: Optional[int]) -> Exchange:
    """``GET .../log?limit=``: the newest log records of the last seven days."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInputError(f"limit must be a positive int, got {limit!r}")
    query = {"limit": str(limit)}  # not through core._get, whose own argument is named limit
    request = build_get_request(core.base_url, f"{V2}/log", query, core._headers())
    exchange = Exchange(request, core._secrets())
    exchange.max_response_size = core._limit("logs", size)
    return exchange


def log_call(core: ClientCore[Any, Any], record: object, size: Optional[int]) -> Exchange:
    """``POST .../log``: one record, a JSON object."""
    if not isinstance(record, Mapping) or not record:
        raise InvalidInputError(
            f"record must be a non-empty mapping (a JSON object), got {type(record).__name__}"
        )
    return post_json_call(core, f"{V2}/log", record, size, "log")


def synthesize_call(
    core: ClientCore[Any, Any],
    provider: object,
    text: object,
    params: object,
    size: Optional[int],
) -> Exchange:
    """``GET .../synthesize/<provider>?text=...``: every parameter goes in the query."""
    segment = provider_segment(provider)
    query: Dict[str, str] = {}
    if params is not None:
        if not isinstance(params, Mapping):
            raise InvalidInputError(f"params must be a mapping, not {type(params).__name__}")
        for name, value in params.items():
            if not isinstance(name, str):
                raise InvalidInputError(f"params keys must be str, got {name!r}")
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise InvalidInputError(
                    f"params[{name!r}] must be a str or a number, not {type(value).__name__}"
                )
            query[name] = str(value)
    if text is not None:
        if not isinstance(text, str) or not text:
            raise InvalidInputError(f"text must be a non-empty str, got {text!r}")
        if "text" in query:
            raise InvalidInputError("text is given twice: as text= and in params")
        query["text"] = text
    url = f"{core.base_url}{V2}/synthesize/{segment}"
    request = PreparedRequest(
        method="GET",
        url=url + ("?" + urlencode(query) if query else ""),
        headers=merge_headers({"Accept": "audio/*, */*"}, core._headers()),
    )
    exchange = Exchange(request, core._secrets())
    exchange.max_response_size = core._limit("synthesize", size)
    return exchange


def jsonl_records(text: str) -> List[Dict[str, Any]]:
    """The JSON objects of a ``usage/<date>`` answer, one a line.

    A line that is no JSON object is skipped, as g4f's own ``stats`` route
    skips it (a record being appended while the file was read ends that way).
    """
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
