"""The retry policy both clients obey: what is retried, and how long to wait.

A request is retried only while nothing of the answer's body has been read:
after that the server may already have run the model, and a second request
would repeat the work and its cost. So retries cover failing to connect, a
connection dropped before any response, and the statuses that say "try
again": 408, 409, 429, 500, 502, 503, 504.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Optional

from .._errors import InvalidInputError

__all__ = ["RETRY_STATUSES", "RetryPolicy"]

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
"""HTTP statuses that are retried."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    The n-th retry (from 0) waits ``min(backoff_max, backoff_base * 2**n)``
    seconds scaled by a random factor in [0.5, 1] (jitter, so many clients do
    not retry in step), unless the server's ``Retry-After`` says otherwise;
    ``Retry-After`` is honoured up to ``retry_after_max`` seconds, beyond
    which the error is raised instead of waiting.
    """

    max_retries: int = 2
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    retry_after_max: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise InvalidInputError(
                f"max_retries must be an int, not {type(self.max_retries).__name__}"
            )
        if self.max_retries < 0:
            raise InvalidInputError(f"max_retries must be >= 0, got {self.max_retries}")

    def status_delay(
        self, attempt: int, status: int, retry_after: Optional[str]
    ) -> Optional[float]:
        """Seconds to wait before retrying after ``status``, or None: do not retry."""
        if attempt >= self.max_retries or status not in RETRY_STATUSES:
            return None
        if retry_after is not None:
            asked = parse_retry_after(retry_after)
            if asked is not None:
                return asked if asked <= self.retry_after_max else None
        return self.backoff(attempt)

    def error_delay(self, attempt: int) -> Optional[float]:
        """Seconds to wait before retrying a connection failure, or None."""
        if attempt >= self.max_retries:
            return None
        return self.backoff(attempt)

    def backoff(self, attempt: int) -> float:
        """The jittered exponential delay before retry number ``attempt`` (from 0)."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0**attempt)
        return float(ceiling * (0.5 + random.random() / 2))


def parse_retry_after(value: str, now: Optional[float] = None) -> Optional[float]:
    """Seconds from a ``Retry-After`` header: a number, or an HTTP date.

    >>> parse_retry_after("3")
    3.0
    >>> parse_retry_after("soon") is None
    True
    """
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds == seconds else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
