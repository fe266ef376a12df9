"""One request and everything about it that needs no I/O: deadlines, errors, redaction, logs.

Both clients ask an :class:`Exchange` what a failure means. A transport
reports a library's exception as a :class:`~backendapi._transports.Failure`
kind; :meth:`Exchange.send_error` and :meth:`Exchange.read_error` turn it
into the SDK's exception with the same words whichever library raised it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from .._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    BackendApiError,
    DecodeError,
    IncompleteStreamError,
    ResponseTooLargeError,
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
        self.max_response_size: Optional[int] = None
        """Most body bytes (decompressed) a plain call reads before it raises."""
        self.follow_redirects = False
        """Follow a 3xx's ``Location`` (GETs of media and ``create`` only: see ``redirect.py``)."""
        self.origin: Optional[str] = None
        """The server's own origin: the only one a followed redirect sends credentials to."""
        self.hops = 0
        """Redirects followed so far."""
        self._spellings: Optional[Tuple[str, ...]] = None  # of the secrets: see redact

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
    ) -> APIStatusError:
        """The exception for a response with HTTP status >= 300, from its first bytes.

        Its ``message`` is the server's own words, whole: the message of a JSON
        body (g4f's ``{"error": {"message": ...}}`` and its variants), else the
        body's text; its ``body`` the parsed JSON, else that text. The key is
        hidden in the parsed values, so no key can make them unparseable.
        """
        url = self.request.url
        reason = self.redact(reason)
        if 300 <= status < 400 and self.follow_redirects:
            return APIStatusError(
                self.redact(f"HTTP {status} {reason}: a redirect without a usable Location"),
                status_code=status,
                url=url,
                reason=reason,
            )
        if 300 <= status < 400:
            return APIStatusError(
                self.redact(
                    f"redirect to {location!r} not followed, because the request body "
                    "carries the api key"
                ),
                status_code=status,
                url=url,
                reason=reason,
            )
        text = self.redact(body.decode("utf-8", "replace"))
        shown: Any = text
        words: Optional[str] = None
        try:
            shown = self.redact_json(json.loads(body))
        except (ValueError, RecursionError):  # not JSON, or nested past Python's stack
            pass
        else:
            words = _server_message(shown)
        return APIStatusError(
            text if words is None else words,
            status_code=status,
            body=shown,
            url=url,
            reason=reason,
        )

    def json_result(self, status: int, reason: str, body: bytes, location: Optional[str]) -> Any:
        """The decoded JSON of a plain (non-streaming) response, or the error it means."""
        if status >= 300:
            raise self.status_error(status, reason, body, location)
        try:
            return json.loads(body)
        except ValueError:
            problem = "expected JSON from {}, got {}"
        except RecursionError:
            problem = "the JSON from {} is nested too deeply to parse: {}"
        quoted = excerpt(self.redact(body.decode("utf-8", "backslashreplace")))
        raise DecodeError(problem.format(self.request.url, quoted))

    def text_result(self, status: int, reason: str, body: bytes, location: Optional[str]) -> str:
        """The text of a plain response, or the error it means."""
        if status >= 300:
            raise self.status_error(status, reason, body, location)
        return body.decode("utf-8", "replace")

    def too_large_error(self, limit: int) -> ResponseTooLargeError:
        """The error for a plain response whose body grew past ``limit`` bytes."""
        url = self.request.url
        return ResponseTooLargeError(
            f"the response from {url} is larger than max_response_size ({limit} bytes, "
            "counted decompressed); pass a larger max_response_size to accept it",
            limit=limit,
            url=url,
        )

    # -- secrets and logs -------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """Replace the api key in ``text``, as it is and in every escaped spelling of it.

        A server may echo the key JSON-escaped (``\\"``, ``\\u00e9``), and an
        excerpt quotes it as ``repr`` does: each of those spellings, and each
        spelling of those, is replaced too.
        """
        spellings = self._spellings
        if spellings is None:
            spellings = self._spellings = _spellings(self.secrets)
        for spelling in spellings:
            if spelling in text:
                text = text.replace(spelling, "***")
        return text

    def redact_json(self, value: Any) -> Any:
        """A copy of ``value`` (decoded JSON) with the api key replaced wherever it occurs.

        The parsed values are redacted, never the JSON text, so whatever the key
        (``true``, ``12345``...) the result is the same JSON shape: strings, keys
        included, have the key replaced; a number whose digits hold the key
        becomes ``"***"``; ``true``, ``false`` and ``null`` carry no key. The
        walk uses no recursion, so no nesting depth can break it.
        """
        if not self.secrets:
            return value
        return _scrubbed(value, self.redact)

    def scrub(self, error: BackendApiError) -> None:
        """Redact ``error``'s text in place (an error the decoder raised quotes the body)."""
        if self.secrets:
            error.message = self.redact(error.message)
            error.args = (error.message,)

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
    if isinstance(parsed, str) and parsed:
        return parsed
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    for value in (error, parsed.get("message"), parsed.get("detail")):
        if isinstance(value, str) and value:
            return value
    return None


_Escape = Callable[[str], str]
_ESCAPES: Tuple[_Escape, ...] = (
    lambda text: json.dumps(text)[1:-1],
    lambda text: json.dumps(text, ensure_ascii=False)[1:-1],
    lambda text: repr(text)[1:-1],
    lambda text: repr(text + "'\"")[1:-4],  # inside a repr that escapes its quote
    lambda text: ascii(text)[1:-1],
    lambda text: ascii(text + "'\"")[1:-4],
)
"""The ways JSON and Python's ``repr``/``ascii`` may write a string inside quotes."""


def _spellings(secrets: Tuple[str, ...]) -> Tuple[str, ...]:
    """Each secret as it is, escaped once and escaped twice; the longest first."""
    found = set(secrets)
    for _ in range(2):  # a repr of a JSON text, a JSON of a repr...
        found |= {escape(text) for text in found for escape in _ESCAPES}
    return tuple(sorted(found, key=len, reverse=True))


def _scrubbed(value: Any, redact: Callable[[str], str]) -> Any:
    """A copy of the JSON ``value`` with ``redact`` applied to every string and number in it."""
    top: List[Any] = [value]
    # (container, index or key) of each value still to be redacted, replaced by a copy in
    # place: a stack instead of recursion, for JSON nested a thousand deep.
    pending: List[Tuple[Union[List[Any], Dict[Any, Any]], Any]] = [(top, 0)]
    while pending:
        holder, at = pending.pop()
        item = holder[at]
        if isinstance(item, str):
            holder[at] = redact(item)
        elif isinstance(item, dict):
            copy = {(redact(key) if isinstance(key, str) else key): v for key, v in item.items()}
            holder[at] = copy
            pending.extend((copy, key) for key in copy)
        elif isinstance(item, list):
            copy_list = list(item)
            holder[at] = copy_list
            pending.extend((copy_list, index) for index in range(len(copy_list)))
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            digits = json.dumps(item)
            if redact(digits) != digits:
                holder[at] = "***"
    return top[0]
