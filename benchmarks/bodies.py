"""Pre-built response bodies: small ``content`` events in either framing.

Every body is built once, before any measurement, and then written as it is.
A chunked body is framed here too (chunks of ``CHUNK_SIZE`` bytes), so the
server does no work per request beyond copying bytes to the socket.
"""

from __future__ import annotations

import json
from typing import List, Tuple

CHUNK_SIZE = 16 * 1024
"""Payload bytes per chunk of a chunked body."""

# Token-sized pieces of text, as providers stream them (3 to 8 characters).
TOKENS = (
    " the",
    " quick",
    " brown",
    " fox",
    " jumps",
    " over",
    " lazy",
    " dog",
    ".",
    " Hello",
    ",",
    " world",
    " stream",
    " event",
    " token",
    " answer",
)


def encode_event(index: int, framing: str) -> bytes:
    """One small ``content`` event, serialised like g4f does (``json.dumps``)."""
    data = json.dumps({"type": "content", "content": TOKENS[index % len(TOKENS)]})
    if framing == "sse":
        return f"event: content\ndata: {data}\n\n".encode()
    if framing == "ndjson":
        return f"{data}\n".encode()
    raise ValueError(f"unknown framing {framing!r}")


def build_events(count: int, framing: str) -> bytes:
    """``count`` content events, back to back (the tokens repeat with a short period)."""
    period = b"".join(encode_event(i, framing) for i in range(len(TOKENS)))
    full, rest = divmod(count, len(TOKENS))
    return period * full + b"".join(encode_event(i, framing) for i in range(rest))


def content_chars(count: int) -> int:
    """The total length of the ``content`` strings of ``build_events(count, ...)``."""
    full, rest = divmod(count, len(TOKENS))
    return full * sum(len(t) for t in TOKENS) + sum(len(t) for t in TOKENS[:rest])


def frame_chunks(payload: bytes, *, last: bool = True) -> bytes:
    """``payload`` in HTTP/1.1 chunked framing, ``CHUNK_SIZE`` bytes per chunk."""
    view = memoryview(payload)
    parts: List[bytes] = []
    for start in range(0, len(payload), CHUNK_SIZE):
        piece = view[start : start + CHUNK_SIZE]
        parts.append(b"%x\r\n" % len(piece))
        parts.append(bytes(piece))
        parts.append(b"\r\n")
    if last:
        parts.append(b"0\r\n\r\n")
    return b"".join(parts)


LAST_CHUNK = b"0\r\n\r\n"


def build_body(count: int, framing: str, transfer: str) -> bytes:
    """The whole body as it goes on the wire (framed if chunked)."""
    payload = build_events(count, framing)
    return frame_chunks(payload) if transfer == "chunked" else payload


def build_block(target_size: int, framing: str, transfer: str) -> Tuple[bytes, int, int]:
    """A block of whole events of about ``target_size`` bytes, to be repeated.

    Returns the block as written (chunk-framed, without the last chunk, if
    chunked), the number of events in it and its payload size.
    """
    per_event = len(encode_event(0, framing))
    # A multiple of len(TOKENS), so every repetition carries the same text.
    count = max(len(TOKENS), target_size // per_event // len(TOKENS) * len(TOKENS))
    payload = build_events(count, framing)
    block = frame_chunks(payload, last=False) if transfer == "chunked" else payload
    return block, count, len(payload)
