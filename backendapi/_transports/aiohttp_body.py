"""How the async transport reads a body: as it arrives, decoded, broken framing reported.

:class:`BodyReader` reads with ``readany()`` and undoes the content codings
(``body.py``). When aiohttp's C parser (llhttp) refuses a body's chunk framing (a chunk-size
line that is no hex number, spaces after a chunk extension's ``;``):

* in a later packet than the head, it closes the connection without telling
  the response's reader, which then waits forever for more: :class:`BodyWatch`
  notices the connection's end and has the reader end with the error, after
  the bytes that came before it;
* in the packet of the head, it refuses the response whole, and the events
  before the bad line are lost: :class:`HeadFirstProtocol` (the own session's
  protocol) hands the parser a response's head apart from what follows it, so
  the response is made first and the error comes after its events.

:func:`broken_framing` tells such a refusal, in aiohttp's words, from a body cut short.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Optional

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.http_exceptions import BadHttpMessage, PayloadEncodingError, TransferEncodingError

from . import Failure, TransportError
from .body import INVALID_CHUNKING, ContentDecoder

__all__ = [
    "BodyReader",
    "BodyWatch",
    "HeadFirstProtocol",
    "broken_framing",
    "use_head_first_protocol",
]


class BodyReader:
    """A response's body, read as it arrives and decoded; raises aiohttp's exceptions
    (the transport maps them) and :class:`TransportError`."""

    __slots__ = ("_decoder", "_watch", "content", "eof", "plain")

    def __init__(self, response: aiohttp.ClientResponse, decoder: Optional[ContentDecoder]) -> None:
        self.content = response.content
        """aiohttp's reader of the body."""
        self._decoder = decoder
        self.plain = decoder is None
        """True when the body has no content coding: :attr:`content`'s ``readany()``
        is then :meth:`read` but for its end, which :meth:`ended` checks."""
        self._watch = BodyWatch(response)
        self.eof = False
        """True once the body was read to its end."""
        # aiohttp's sock_read timer would move on every packet (a cancel and a
        # call_later: a fifth of the event loop's work per event of a stream that
        # carries one event per read). The transport bounds each read of the body with
        # its own deadline instead, while the read waits, as the blocking client's
        # socket timeout bounds it; the timer still bounds the wait for the head, and
        # aiohttp sets it again for the connection's next request.
        connection = response.connection
        protocol = None if connection is None else connection.protocol
        if protocol is not None and hasattr(protocol, "_drop_timeout"):
            protocol.read_timeout = None
            protocol._drop_timeout()

    async def read(self) -> bytes:
        """The body bytes that have arrived (waiting for some), decoded; ``b""`` at its end."""
        decoder = self._decoder
        if decoder is None:
            return await self._read_raw()
        data = decoder.take()
        while not data:
            raw = await self._read_raw()
            data = decoder.feed(raw)
            if not raw:
                break
        return data

    async def _read_raw(self) -> bytes:
        # readany() returns as soon as any bytes are buffered, over chunked and
        # close-delimited bodies alike, and never splits on lines, so no line
        # length limit applies (iterating response.content by line raises once
        # a single line outgrows the reader's buffer).
        data = await self.content.readany()
        if not data:
            self.ended()
        return data

    def ended(self) -> None:
        """``readany()`` returned no bytes: the body ended, or raise if its framing broke."""
        if self._watch.broken:
            raise TransportError(Failure.INVALID_RESPONSE, INVALID_CHUNKING)
        self.eof = True

    def close(self) -> None:
        """Stop watching the connection."""
        self._watch.close()


class BodyWatch:
    """Watches a response's connection: its end before the body's means a broken body."""

    __slots__ = ("_closed", "_content", "broken")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.broken = False
        """True once the connection ended while the body was neither complete nor failed."""
        self._content = response.content
        connection = response.connection
        protocol = None if connection is None else connection.protocol
        self._closed = None if protocol is None else protocol.closed
        if self._closed is not None:
            self._closed.add_done_callback(self._connection_lost)

    def _connection_lost(self, _: Any) -> None:
        content = self._content
        # aiohttp fails the body itself when the connection ends early (a cut, a
        # length not reached); a parser error leaves it waiting.
        if not content.is_eof() and content.exception() is None:
            self.broken = True
            content.feed_eof()  # wakes the reader; the transport reports it as an error

    def close(self) -> None:
        """Stop watching (the connection, kept alive, outlives the response)."""
        closed, self._closed = self._closed, None
        if closed is not None:
            closed.remove_done_callback(self._connection_lost)


class HeadFirstProtocol(ResponseHandler):
    """aiohttp's protocol, feeding its parser each response head apart from what follows,
    and never reused once the server sent bytes that answer no request."""

    _awaiting_head = False
    _head_start = b""  # the first bytes of the head being received: its status line
    # The last bytes received, in which a head's end may begin. (Not "_tail": the
    # parent keeps bytes to feed its next parser under that name.)
    _head_tail = b""
    _unasked = False  # bytes came while no response was under way

    def set_response_params(self, *args: Any, **kwargs: Any) -> None:
        # Set first: the parent feeds the parser whatever arrived before it was made.
        self._awaiting_head = True
        self._head_start = self._head_tail = b""
        super().set_response_params(*args, **kwargs)

    def is_connected(self) -> bool:
        # Asked when the pool hands the connection out again. aiohttp would parse
        # bytes that came while it sat idle (a late or repeated response) and give
        # them to the next request as its answer: such a connection is closed instead.
        return super().is_connected() and not self._unasked

    def data_received(self, data: bytes) -> None:
        if not self._awaiting_head and data:
            payload = self._payload
            if payload is None or payload.is_eof():
                self._unasked = True  # no request of ours is waiting for them
        while self._awaiting_head and data:
            seen = self._head_tail
            end = (seen + data).find(b"\r\n\r\n")
            if end < 0:
                self._head_start = (self._head_start + data)[:12]
                self._head_tail = (seen + data)[-3:]
                break
            cut = end + 4 - len(seen)
            head, data = data[:cut], data[cut:]
            status = (self._head_start + head)[9:12]
            # 1xx heads (but 101) are followed by another head: split that one off too.
            self._awaiting_head = status[:1] == b"1" and status != b"101"
            self._head_start = self._head_tail = b""
            super().data_received(head)
        if data:
            super().data_received(data)


def use_head_first_protocol(
    connector: aiohttp.BaseConnector, loop: asyncio.AbstractEventLoop
) -> None:
    """Have ``connector`` (the own session's) make :class:`HeadFirstProtocol`\\ s.

    aiohttp offers no public way to choose the protocol; its connectors make
    theirs with the factory in ``_factory`` (aiohttp 3.x).
    """
    factory: Any = functools.partial(HeadFirstProtocol, loop=loop)
    connector._factory = factory


def broken_framing(exc: BaseException) -> bool:
    """Whether aiohttp's exception, raised while reading a body, says its chunked framing
    is broken rather than cut short.

    aiohttp's Python parser (``AIOHTTP_NO_EXTENSIONS``) says so of a chunk line it refuses
    (and of a body cut short: "Not enough data..."). The C parser's refusal of a trailer
    section (too many fields, a NUL in one, one too long) comes as a body that "is not
    completed", caused by the parser's error.
    """
    cause = exc.__cause__
    if any(isinstance(error, TransferEncodingError) for error in (exc, cause)):
        return "Not enough data" not in str(exc)
    return isinstance(cause, BadHttpMessage) and not isinstance(cause, PayloadEncodingError)
