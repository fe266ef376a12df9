"""The client's options, checked: timeouts, TLS, limits and their defaults."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Optional, Union

from .._errors import InvalidInputError

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_RESPONSE_SIZES",
    "DEFAULT_TIMEOUT",
    "SSLOption",
    "Timeout",
]

READ_SIZE = 64 * 1024
"""Most bytes asked of the network at once; a read returns whatever has arrived."""
ACCEPT_ENCODING = "gzip, deflate"
"""The content codings both clients ask for, and undo themselves (``_transports/body.py``)."""
ERROR_BODY_LIMIT = 64 * 1024
"""Most bytes read of an error response's body (decompressed)."""

_MiB = 1024 * 1024
DEFAULT_MAX_RESPONSE_SIZES: Mapping[str, int] = MappingProxyType(
    {
        "version": 64 * 1024,
        "models": 16 * _MiB,
        "providers": 16 * _MiB,
        "create_text": 16 * _MiB,
        "upload": 1 * _MiB,
        "read_bucket": 64 * _MiB,
        "delete_bucket": 64 * 1024,
        "download": 256 * _MiB,
        "quota": 1 * _MiB,
        "health": 1 * _MiB,
        "status": 64 * 1024,
        "stats": 16 * _MiB,
        "usage": 64 * _MiB,
        "record_usage": 64 * 1024,
        "logs": 16 * _MiB,
        "log": 64 * 1024,
        "synthesize": 64 * _MiB,
    }
)
"""Most body bytes (decompressed) each plain call reads before it raises
:class:`~backendapi.ResponseTooLargeError`, unless the client's or the call's
``max_response_size`` says otherwise: far above what a server sends (g4f's
models of every provider are about 100 KB; a day of ``usage`` records is some 150 bytes
a turn; spoken audio some 10 MB an hour), far below what hurts."""

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


def check_size(name: str, value: object) -> int:
    """``value`` if it is a positive int (a size in bytes); else :class:`InvalidInputError`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name} must be an int, not {type(value).__name__}")
    if value <= 0:
        raise InvalidInputError(f"{name} must be positive, got {value}")
    return value
