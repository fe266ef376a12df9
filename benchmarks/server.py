"""A minimal HTTP/1.1 server on raw asyncio streams that writes pre-built bodies.

It parses just enough of each request to pick a body, then copies bytes to
the socket: no framework, no per-event work, so on loopback it is never the
bottleneck (its own CPU time is reported by ``GET /stats``). It runs in its
own process (``python -m benchmarks.server``), apart from the client being
measured.

Paths: ``/{framing}/{transfer}/backend-api/v2/conversation`` (a client's
``base_url`` is then ``http://127.0.0.1:PORT/{framing}/{transfer}``), where

* ``framing`` is ``sse`` or ``ndjson``;
* ``transfer`` is ``chunked`` (16 KiB chunks, keep-alive) or ``close``
  (``Connection: close``, no length, closed after the last byte);

and the request body's ``"bench"`` field picks the body: ``"t"`` (the default:
the throughput body, ``--events`` events), ``"c"`` (the body of one of the
concurrent streams, ``--small-events`` events) or ``"m"`` (about
``--mem-bytes`` bytes: a ~1 MiB block of events written repeatedly).

``GET /stats`` answers ``{"peak_connections", "connections", "streams",
"cpu", "mem_events"}`` and resets the peak: the most connections open at once
since the last call, connections accepted and streams served so far, the
server's CPU seconds, and how many events each framing's ``m`` body holds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Dict, Optional, Tuple

from benchmarks.bodies import LAST_CHUNK, build_block, build_body

WRITE_SIZE = 256 * 1024
"""Bytes handed to the transport per write."""

_HEADERS = {
    "chunked": (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: text/event-stream; charset=utf-8\r\n"
        b"Cache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    ),
    "close": (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: text/event-stream; charset=utf-8\r\n"
        b"Cache-Control: no-cache\r\n"
        b"Connection: close\r\n\r\n"
    ),
}
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"

Key = Tuple[str, str, str]


class BenchServer:
    """Holds the bodies and serves them; see the module docstring."""

    def __init__(self, events: int, small_events: int, mem_bytes: int) -> None:
        self.bodies: Dict[Key, bytes] = {}
        self.blocks: Dict[Key, Tuple[bytes, int]] = {}
        self.block_events: Dict[str, int] = {}
        for framing in ("sse", "ndjson"):
            for transfer in ("chunked", "close"):
                self.bodies["t", framing, transfer] = build_body(events, framing, transfer)
                self.bodies["c", framing, transfer] = build_body(small_events, framing, transfer)
                block, count, size = build_block(1 << 20, framing, transfer)
                repeats = max(1, -(-mem_bytes // size))
                self.blocks["m", framing, transfer] = (block, repeats)
                self.block_events[framing] = count * repeats
        self.streams = 0
        self.connections = 0
        self.open = 0
        self.peak = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is to be closed."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head.decode("latin-1").split("\r\n")
        target = lines[0].split(" ")[1].split("?")[0]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = await reader.readexactly(length) if length else b""
        if target == "/stats":
            stats = {
                "peak_connections": self.peak,
                "connections": self.connections,
                "streams": self.streams,
                "cpu": time.process_time(),
                "mem_events": self.block_events,
            }
            self.peak = self.open
            data = json.dumps(stats).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(data) + data
            )
            await writer.drain()
            return True
        parts = target.strip("/").split("/")
        key: Optional[Key] = None
        if len(parts) >= 2:
            key = (_kind(body), parts[0], parts[1])
        if key is None or (key not in self.bodies and key not in self.blocks):
            writer.write(_NOT_FOUND)
            await writer.drain()
            return True
        transfer = key[2]
        self.streams += 1
        writer.write(_HEADERS[transfer])
        if key in self.bodies:
            await _send(writer, self.bodies[key])
        else:
            block, repeats = self.blocks[key]
            for _ in range(repeats):
                await _send(writer, block)
            if transfer == "chunked":
                writer.write(LAST_CHUNK)
        await writer.drain()
        return transfer != "close"


def _kind(body: bytes) -> str:
    try:
        kind = json.loads(body).get("bench", "t")
    except (ValueError, AttributeError):
        return "t"
    return kind if isinstance(kind, str) else "t"


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    view = memoryview(data)
    for start in range(0, len(view), WRITE_SIZE):
        writer.write(view[start : start + WRITE_SIZE])
        await writer.drain()


async def serve(server: BenchServer, port: int) -> None:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", port, backlog=1024)
    bound = listener.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    async with listener:
        await listener.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--small-events", type=int, default=400)
    parser.add_argument("--mem-bytes", type=int, default=256 << 20)
    args = parser.parse_args()
    server = BenchServer(args.events, args.small_events, args.mem_bytes)
    try:
        asyncio.run(serve(server, args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
