"""A reply as bytes: its headers, its error body, its events framed, gzipped and cut into writes."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from ._replies import Cut, Hold, Pause, Reply, Wait

#: What g4f 8.8.6 sends as the Content-Type of an event stream, whatever the framing.
STREAM_CONTENT_TYPE = "text/event-stream; charset=utf-8"


class _GzipStream:
    """The gzip encoder of one reply body (`Reply.gzip`).

    Each item is compressed and flushed with ``Z_SYNC_FLUSH``, so the bytes sent so far
    always decompress to every item sent so far: a client that decompresses as it reads
    gets each event on arrival, not at the end of the body.
    """

    def __init__(self) -> None:
        self._compressor = zlib.compressobj(wbits=31)  # 31: gzip header and trailer

    def compress(self, data: bytes) -> bytes:
        """The compressed bytes of `data`, flushed so that they decode on their own."""
        return self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        """The end of the gzip stream: the last block and the trailer (CRC, length)."""
        return self._compressor.flush(zlib.Z_FINISH)


def encode_event(item: Mapping[str, Any] | bytes, framing: str) -> bytes:
    """One item of `Reply.events` framed as ``"sse"`` or ``"ndjson"``; bytes stay as given."""
    if isinstance(item, bytes):
        return item
    data = json.dumps(dict(item))
    if framing == "ndjson":
        return f"{data}\n".encode()
    event_type = item.get("type")
    event_line = "" if event_type is None else f"event: {event_type}\n"
    return f"{event_line}data: {data}\n\n".encode()


def body_steps(reply: Reply) -> Iterator[bytes | Pause | Wait | Hold | Cut]:
    """The body of a reply as it is sent: the bytes of each write, the transport actions in
    between, in order, and last the end of the gzip stream when `Reply.gzip` is set.

    Each item is encoded only when it is reached, so a sender that stops at a `Cut` never
    ends the gzip stream.
    """
    gzip = _GzipStream() if reply.gzip else None
    for item in reply.events:
        if isinstance(item, (Pause, Wait, Hold, Cut)):
            yield item
        else:
            yield from _write_pieces(reply, item, gzip)
    if gzip is not None:
        yield gzip.finish()


def _write_pieces(
    reply: Reply, item: Mapping[str, Any] | bytes, gzip: _GzipStream | None
) -> Iterator[bytes]:
    """The bytes of one item as `reply` writes them: compressed, then cut to `write_size`."""
    data = encode_event(item, reply.framing)
    if gzip is not None:
        data = gzip.compress(data)
    size = reply.write_size or len(data) or 1
    for start in range(0, len(data), size):
        yield data[start : start + size]


def stream_headers(reply: Reply) -> dict[str, str]:
    """The headers of a streamed (non-error) reply; `Reply.headers` override the others."""
    headers = {"Content-Type": reply.content_type or STREAM_CONTENT_TYPE}
    if reply.gzip:
        headers["Content-Encoding"] = "gzip"
    return {**headers, **reply.headers}


def error_body(reply: Reply) -> tuple[bytes, dict[str, str]]:
    """The body of an error reply, `Reply.error` encoded, and its headers."""
    error = reply.error
    if error is None:
        body, content_type = b"", "application/octet-stream"
    elif isinstance(error, bytes):
        body, content_type = error, "application/octet-stream"
    elif isinstance(error, str):
        body, content_type = error.encode(), "text/plain; charset=utf-8"
    else:
        body, content_type = json.dumps(error).encode(), "application/json"
    return body, {"Content-Type": reply.content_type or content_type, **reply.headers}
