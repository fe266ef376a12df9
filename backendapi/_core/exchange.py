"""One request and everything about it that needs no I/O: deadlines, errors, redaction, logs.

Both clients ask an :class:`Exchange` what a failure means. A transport
reports a library's exception as a :class:`~backendapi._transports.Failure`
kind; :meth:`Exchange.send_error` and :meth:`Exchange.read_error` turn it
into the SDK's exception with the same words whichever library raised it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any, Optional, Tuple

from .._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    BackendApiError,
    DecodeError,
    IncompleteStreamError,
    excerpt,
    one_line,
)
from .._transports import Failure, TransportError
from .options import Timeout
from .request import Loader, PreparedRequest

__all__ = ["Exchange"]

logger = logging.getLogger("backendapi")


class Exchange:
    """One request and the I/O-free handling of its response: errors, redaction, logging."""

    def __init__(self, request: PreparedRequest, secrets: Tuple[str, ...] = ()) -> None:
        self.request = request
        self.secrets = secrets
        self.deadline: Optional[float] = None
        """When the total timeout expires (``time.monotonic()``), if one is set."""
        self.started: Optional[float] = None
        """When the call went out (``time.monotonic()``), once it did."""
        self.loader: Optional[Loader] = None
        """Builds :attr:`request` in full, files read, when it goes out; None once built."""

    # -- the total timeout ------------------------------------------------------------------

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

    def retry_delay(self, delay: Optional[float]) -> Optional[float]:
        """``delay`` if waiting that long leaves time before the total timeout, else None."""
        if delay is None:
            return None
        left = self.remaining()
        return delay if left is None or delay < left else None

    def total_timeout_error(self, timeout: Timeout) -> APITimeoutError:
        """The error for an expired total timeout."""
        url = self.request.url
        return APITimeoutError(
            f"{url} did not finish within the total timeout of {timeout.total} s", url=url
        )

    # -- failures below the seam ------------------------------------------------------------

    def send_error(self, failure: TransportError, timeout: Timeout) -> BackendApiError:
        """The error for a request that failed before its response was read."""
        url = self.request.url
        kind = failure.kind
        if self.expired() and kind in (Failure.CONNECT_TIMEOUT, Failure.READ_TIMEOUT):
            return self.total_timeout_error(timeout)
        if kind is Failure.CONNECT_TIMEOUT:
            return APITimeoutError(
                f"timed out connecting to {url} (connect timeout {timeout.connect} s)", url=url
            )
        if kind is Failure.READ_TIMEOUT:
            return APITimeoutError(
                f"no response from {url} within the read timeout of {timeout.read} s", url=url
            )
        if kind is Failure.TLS:
            return self.tls_error(failure.detail)
        if kind is Failure.INVALID_RESPONSE:
            return self.invalid_response_error(failure.detail)
        reason = self.redact(failure.detail)
        if kind is Failure.INCOMPLETE:
            return IncompleteStreamError(
                f"the response from {url} was cut short: {reason}", url=url
            )
        if kind is Failure.DECOMPRESS:
            return DecodeError(f"cannot decompress the response from {url}: {one_line(reason)}")
        if kind is Failure.DISCONNECTED:
            # The request went out: "cannot connect" would point at the wrong end.
            return APIConnectionError(
                f"the connection to {url} closed before any response: {reason}", url=url
            )
        return APIConnectionError(f"cannot connect to {url}: {reason}", url=url)

    def read_error(self, failure: TransportError, timeout: Timeout) -> BackendApiError:
        """The error for a stream whose body could not be read on."""
        url = self.request.url
        kind = failure.kind
        if kind is Failure.READ_TIMEOUT:
            if self.expired():
                return self.total_timeout_error(timeout)
            return APITimeoutError(
                f"no data from {url} within the read timeout of {timeout.read} s", url=url
            )
        reason = self.redact(failure.detail)
        if kind is Failure.INVALID_RESPONSE:
            # The framing broke (a chunk size that is no number) after the head.
            return IncompleteStreamError(f"the response from {url} broke off: {reason}", url=url)
        if kind is Failure.DECOMPRESS:
            return DecodeError(f"cannot decompress the stream: {one_line(reason)}")
        if kind is Failure.INCOMPLETE:
            return IncompleteStreamError(
                f"connection to {url} broke before the stream was complete: {reason}", url=url
            )
        return APIConnectionError(f"reading from {url} failed: {reason}", url=url)

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

    def invalid_response_error(self, reason: str) -> APIConnectionError:
        """The error for a response that is no HTTP (a bad status line, a header too long)."""
        url = self.request.url
        return APIConnectionError(
            f"invalid HTTP response from {url}: {one_line(self.redact(reason))}", url=url
        )

    # -- the response -----------------------------------------------------------------------

    def status_error(
        self, status: int, reason: str, body: bytes, location: Optional[str]
    ) -> BackendApiError:
        """The exception for a response with HTTP status >= 300, from its first bytes."""
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

    def json_result(self, status: int, reason: str, body: bytes, location: Optional[str]) -> Any:
        """The decoded JSON of a plain (non-streaming) response, or the error it means."""
        if status >= 300:
            raise self.status_error(status, reason, body, location)
        try:
            return json.loads(body)
        except ValueError:
            raise DecodeError(
                f"expected JSON from {self.request.url}, got {excerpt(body)}"
            ) from None

    def text_result(self, status: int, reason: str, body: bytes, location: Optional[str]) -> str:
        """The text of a plain response, or the error it means."""
        if status >= 300:
            raise self.status_error(status, reason, body, location)
        return body.decode("utf-8", "replace")

    # -- secrets and logs -------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """Replace the api key wherever it occurs in ``text``."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def redact_json(self, value: Any) -> Any:
        """``value`` (decoded JSON) with the api key replaced wherever it occurs."""
        if not self.secrets:
            return value
        text = json.dumps(value)
        redacted = self.redact(text)
        return value if redacted == text else json.loads(redacted)

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
