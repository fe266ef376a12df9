"""What both transports check of a response's head, and how they undo its content codings.

:func:`head_failure` refuses the heads that cannot be read as the answer
(an informational status, a ``Content-Length`` that is no number...) the
same way in both transports.

Both clients ask for ``gzip`` and ``deflate`` only
(:data:`~backendapi._core.options.ACCEPT_ENCODING`)
and decode the body here, not in their library: urllib3 and aiohttp differ
on ``x-gzip`` (RFC 9110 8.4.1.3: the same as ``gzip``), on a list of
codings (``gzip, gzip``: applied in order, undone in reverse), and neither
notices a gzip body that ends before its trailer, which would pass for a
complete answer. A transport asks :func:`content_decoder` for the decoder a
response's ``Content-Encoding`` needs and reads through it.

Every call returns at most :data:`~backendapi._core.options.READ_SIZE`
decoded bytes and holds the rest of its input for the next, so a small
compressed body cannot become a large allocation (a "gzip bomb").
"""

from __future__ import annotations

import re
import zlib
from typing import List, Mapping, Optional

from .._core.options import ACCEPT_ENCODING, READ_SIZE
from . import Failure, TransportError

__all__ = [
    "INVALID_CHUNKING",
    "MAX_FIELDS",
    "MAX_FIELD_SIZE",
    "ContentDecoder",
    "body_decoder",
    "content_decoder",
    "head_failure",
]

INVALID_CHUNKING = "invalid chunked encoding"
"""What both transports report of a body whose chunk framing is broken (whichever of
its lines, in whatever packet): their libraries' words differ."""

MAX_FIELDS = 99
"""The most header fields of a response's head in both transports: http.client takes at
most 100 lines of head, its empty line included, and aiohttp is set to as many fields
(from aiohttp 3.13.4 on). aiohttp counts a chunked body's trailer fields on with the
head's, all but the last; the blocking transport counts them so too."""

MAX_FIELD_SIZE = 65536
"""The most bytes of a header field's name and value together: the size aiohttp is set to
(http.client takes head lines of up to 64 KiB, their line ends included)."""

_NAMES = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}

# Compressions the client never asks for: their bytes handed on as text would only
# give a confusing decoding error.
_COMPRESSIONS = ("br", "zstd", "compress", "x-compress", "dcb", "dcz")


_DIGITS = re.compile(r"[0-9]+")


def body_decoder(
    status: int, reason: str, headers: Mapping[str, str], hint: str = ""
) -> Optional[ContentDecoder]:
    """The decoder a response's body needs (None: it is read as it is).

    Raises a :class:`TransportError` of kind ``INVALID_RESPONSE`` for a head
    that cannot be read as the answer (see :func:`head_failure`; ``hint`` is
    added to what an informational status is told) or a coding that cannot
    be decoded.
    """
    problem = head_failure(status, reason, headers)
    if problem is not None:
        raise TransportError(Failure.INVALID_RESPONSE, problem + hint if status < 200 else problem)
    # Several Content-Encoding lines are one list (aiohttp's headers keep them apart).
    getall = getattr(headers, "getall", None)
    codings = (
        headers.get("content-encoding")
        if getall is None
        else ", ".join(getall("content-encoding", ()))
    )
    return content_decoder(codings)


def head_failure(status: int, reason: str, headers: Mapping[str, str]) -> Optional[str]:
    """Why a response's head cannot be read as the answer (None when it can).

    aiohttp refuses these heads; http.client and urllib3 would go on, so
    the blocking transport refuses them too and both clients answer alike.
    """
    if status < 200:
        if status == 101:
            return "the server switched protocols (HTTP 101), which the client never asked for"
        return f"an informational response (HTTP {status} {reason}) came as the answer"
    length = headers.get("content-length")
    if length is not None:
        if not _DIGITS.fullmatch(length):
            # urllib3 would read such a body to the connection's end; "5, 5" is two
            # headers, which aiohttp refuses too.
            return f"invalid Content-Length {length!r}"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            # RFC 9112 6.3: such a message "ought to be handled as an error".
            return "the response has both Content-Length and Transfer-Encoding: chunked"
    return None


def content_decoder(header: Optional[str]) -> Optional[ContentDecoder]:
    """The decoder for a ``Content-Encoding`` value; None where the body is read as it is.

    A coding nobody knows leaves the body as it is, as both libraries do;
    a compression other than gzip and deflate is refused (a
    :class:`TransportError` of kind ``INVALID_RESPONSE``).
    """
    if not header:
        return None
    codings = [coding.strip() for coding in header.lower().split(",")]
    codings = [coding for coding in codings if coding and coding != "identity"]
    for coding in codings:
        if coding in _COMPRESSIONS:
            raise TransportError(
                Failure.INVALID_RESPONSE,
                f"cannot decode Content-Encoding {header.strip()!r}: the client asks for "
                f"{ACCEPT_ENCODING} only",
            )
    if not codings or any(coding not in _NAMES for coding in codings):
        return None
    return ContentDecoder(codings)


class ContentDecoder:
    """Undoes a list of codings, the last applied first, a bounded amount per call.

    A transport's read takes what is decoded already, else feeds it what the
    network gives until some bytes come out or the body ends::

        data = decoder.take()
        while not data:
            raw = read_the_network()
            data = decoder.feed(raw)
            if not raw:
                break
    """

    __slots__ = ("_stages",)

    def __init__(self, codings: List[str]) -> None:
        self._stages = [_Stage(_NAMES[coding]) for coding in reversed(codings)]

    def take(self) -> bytes:
        """Decoded bytes of the input held from earlier calls (``b""``: read on)."""
        while self.holding:
            data = self.decode(b"")
            if data:
                return data
        return b""

    def feed(self, raw: bytes) -> bytes:
        """Decoded bytes of ``raw``, the body's next bytes; ``b""`` (the end) checks that
        every coding's stream ended too (see :meth:`end`)."""
        if not raw:
            self.end()
            return b""
        return self.decode(raw)

    @property
    def holding(self) -> bool:
        """True while input given earlier may still decode to more bytes."""
        return any(stage.tail for stage in self._stages)

    def decode(self, data: bytes) -> bytes:
        """Decoded bytes of ``data`` and of what was held; ``b""`` when none are ready yet.

        Raises a :class:`TransportError` of kind ``DECOMPRESS`` on bytes that
        are not of the coding.
        """
        return self._pull(len(self._stages) - 1, data)

    def end(self) -> None:
        """The body ended: raise a ``INCOMPLETE`` :class:`TransportError` if a coding's
        stream had not (a gzip member without its trailer, a deflate stream cut)."""
        for stage in self._stages:
            stage.end()

    def _pull(self, index: int, data: bytes) -> bytes:
        """What stage ``index`` gives, the stages before it fed first (``data`` to stage 0)."""
        stage = self._stages[index]
        if index == 0:
            return stage.decompress(data)
        while True:
            if stage.tail:
                decoded = stage.decompress(b"")
                if decoded:
                    return decoded
            given = self._pull(index - 1, data)
            data = b""
            if not given:
                return b""
            decoded = stage.decompress(given)
            if decoded:
                return decoded


class _Stage:
    """One coding: a zlib stream (gzip: one member after another) and its held input."""

    __slots__ = ("_ignoring", "_members", "_name", "_object", "_prefix", "_started", "tail")

    def __init__(self, name: str) -> None:
        self._name = name
        self._object: Optional[zlib._Decompress] = None
        self._started = False  # the current member (gzip) or the stream (deflate) began
        self._members = 0  # gzip members decoded whole
        self._ignoring = False  # past the end of what counts
        self._prefix = b""  # a first byte, waiting for the second that tells the format
        self.tail = b""
        """Input not decompressed yet: held when a call's output was full."""

    def decompress(self, data: bytes) -> bytes:
        if self.tail:
            data = self.tail + data
            self.tail = b""
        if self._ignoring or not data:
            return b""
        decoder = self._object
        if decoder is None:
            data = self._prefix + data
            if len(data) < 2:
                self._prefix = data  # two bytes tell a zlib header from raw deflate
                return b""
            self._prefix = b""
            decoder = self._object = self._new(data)
        self._started = True
        try:
            decoded = decoder.decompress(data, READ_SIZE)
        except zlib.error as exc:
            if self._members:
                # Bytes after a whole gzip member that are no gzip: ignored, as
                # urllib3, browsers and gunzip do.
                self._ignoring = True
                self._started = False
                return b""
            raise TransportError(Failure.DECOMPRESS, f"invalid {self._name} data: {exc}") from None
        if not decoder.eof:
            self.tail = decoder.unconsumed_tail
            return decoded
        self._started = False
        if self._name == "gzip":
            # Another member may follow (RFC 1952 2.2).
            self._members += 1
            self._object = self._new(b"")
            self.tail = decoder.unused_data
        else:
            self._ignoring = True
        return decoded

    def _new(self, data: bytes) -> zlib._Decompress:
        if self._name == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # "deflate" means zlib's format (RFC 9110 8.4.1.2), but some servers send raw
        # deflate: both libraries take either, told apart by the header.
        zlib_header = data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)

    def end(self) -> None:
        """Raise if the stream began and did not reach its end."""
        if (self._started or self.tail or self._prefix) and not self._ignoring:
            raise TransportError(
                Failure.INCOMPLETE, f"the {self._name} stream ended before its end"
            )
