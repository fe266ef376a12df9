"""Following redirects, with no I/O: where a 3xx leads, and which headers may go there.

The conversation POST never follows a redirect (its body carries the api
key). The GETs of media and of ``create`` answers do (g4f and the proxies in
front of it answer some with a 302), within :data:`MAX_REDIRECTS` hops.
Credentials go to the server's own origin only: a hop to any other origin
(another scheme, host or port) carries none of the caller's headers, just
the SDK's own (``User-Agent``, ``Accept``, ``Accept-Encoding``), and no hop
after it gets them back.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional
from urllib.parse import urljoin, urlsplit

from .._errors import APIStatusError
from .request import PreparedRequest

__all__ = ["MAX_REDIRECTS", "REDIRECT_STATUSES", "origin", "public_headers", "redirected"]

MAX_REDIRECTS = 10
"""Most redirects one call follows before it raises :class:`APIStatusError`."""
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
"""The statuses whose ``Location`` a following call goes to."""
_PUBLIC_HEADERS = frozenset({"user-agent", "accept", "accept-encoding"})
"""The SDK's own headers: the only ones a hop to another origin carries."""


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, lower-cased, the default port made explicit.

    >>> origin("HTTP://Example.com/a?b") == origin("http://example.com:80/c")
    True
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    host = (parts.hostname or "").lower()
    return f"{scheme}://{host}:{port}"


def public_headers(headers: Mapping[str, str]) -> Dict[str, str]:
    """``headers`` without any the caller set: what may go to another origin."""
    return {name: value for name, value in headers.items() if name.lower() in _PUBLIC_HEADERS}


def redirected(
    request: PreparedRequest,
    status: int,
    location: str,
    hops: int,
    own_origin: Optional[str],
    shown: str,
) -> PreparedRequest:
    """The request to send after ``request`` got ``status`` with ``location``.

    ``hops``: redirects followed so far, this one included; beyond
    :data:`MAX_REDIRECTS` it raises. ``own_origin``: the server's origin, the
    only one that gets the caller's headers. ``shown``: ``location`` as an
    error message may quote it (redacted). Every hop is a ``GET`` without a
    body (only GETs follow redirects).
    """
    url = request.url
    if hops > MAX_REDIRECTS:
        raise APIStatusError(
            f"more than {MAX_REDIRECTS} redirects, the last to {shown!r}",
            status_code=status,
            url=url,
        )
    target = urljoin(url, location.strip())
    scheme = urlsplit(target).scheme.lower()
    if scheme not in ("http", "https") or not urlsplit(target).hostname:
        raise APIStatusError(
            f"redirect to {shown!r} not followed: only http(s) URLs are",
            status_code=status,
            url=url,
        )
    target = target.split("#", 1)[0]
    headers = dict(request.headers)
    if own_origin is None or origin(target) != own_origin or origin(url) != own_origin:
        headers = public_headers(headers)
    return PreparedRequest("GET", target, headers)
