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
  (``Connection: close``, no length, closed after the last byte), or
  ``paced`` for the ``"n<count>"`` bodies only: chunked, one event per chunk,
  each chunk written once the client has read everything written before it
  and waits for more (see :func:`_send_paced`), so that every read of the
  client's carries one event;

and the request body's ``"bench"`` field picks the body: ``"t"`` (the default:
the throughput body, ``--events`` events), ``"c"`` (the body of one of the
concurrent streams, ``--small-events`` events), ``"m"`` (about
``--mem-bytes`` bytes: a ~1 MiB block of events written repeatedly) or
``"n<count>"`` (``count`` events, for each count in ``--counts``).

``GET /stats`` answers ``{"peak_connections", "connections", "streams",
"cpu", "mem_events"}`` and resets the peak: the most connections open at once
since the last call, connections accepted and streams served so far, the
server's CPU seconds, and how many events each framing's ``m`` body holds.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import socket
import struct
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from benchmarks._processes import ConnectionServer
from benchmarks.bodies import LAST_CHUNK, build_block, build_body, encode_event, frame_chunks

WRITE_SIZE = 256 * 1024
"""Bytes handed to the transport per write."""

PACED = "paced"
"""The transfer of the one-event-per-read streams (see :func:`_send_paced`)."""

PACED_POLL = 20e-6
"""Seconds between two looks at a paced stream's socket queues (a sleep of the
server's, never of the client's: it changes when an event is sent, not how the
client reads it)."""

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


class BenchServer(ConnectionServer):
    """Holds the bodies and serves them; see the module docstring."""

    def __init__(
        self, events: int, small_events: int, mem_bytes: int, counts: Sequence[int] = ()
    ) -> None:
        super().__init__()
        self.bodies: Dict[Key, bytes] = {}
        self.paced: Dict[Tuple[str, str], List[bytes]] = {}
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
            for count in counts:
                for transfer in ("chunked", "close"):
                    self.bodies[f"n{count}", framing, transfer] = build_body(
                        count, framing, transfer
                    )
            if counts:
                # One chunk per event: the same events as build_events(count, framing).
                chunks = [
                    frame_chunks(encode_event(i, framing), last=False) for i in range(max(counts))
                ]
                for count in counts:
                    self.paced[f"n{count}", framing] = chunks[:count]
        self.streams = 0

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is to be closed."""
        request = await self.read_request(reader)
        if request is None:
            return False
        target, _, body = request
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
        if key is not None and key[2] == PACED and key[:2] in self.paced:
            self.streams += 1
            await _send_paced(writer, _HEADERS["chunked"], self.paced[key[:2]])
            return True
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


# --------------------------------------------------------------------------- paced


_SOCK_DIAG_BY_FAMILY = 20  # linux/sock_diag.h
_NLMSG_ERROR = 2
_NETLINK_SOCK_DIAG = 4


class SocketQueues:
    """The kernel's view of one TCP socket on this machine, by its two addresses.

    A ``NETLINK_SOCK_DIAG`` query (what ``ss`` asks; Linux only): for a connected
    TCP socket, ``rqueue`` is the bytes received but not yet read by its owner,
    ``wqueue`` the bytes written but not yet acknowledged by the peer, and
    ``inode`` names the socket in ``/proc/PID/fd``. It can ask about a socket of
    another process, such as the client's end of a connection.
    """

    def __init__(self) -> None:
        family = getattr(socket, "AF_NETLINK", None)
        if family is None:
            raise OSError(errno.EAFNOSUPPORT, "no netlink sockets (not Linux)")
        self.netlink = socket.socket(family, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG)

    def query(self, local: Tuple[str, int], remote: Tuple[str, int]) -> Tuple[int, int, int]:
        """``(rqueue, wqueue, inode)`` of the IPv4 TCP socket at ``local`` connected to
        ``remote``."""
        sockid = (
            struct.pack("!HH", local[1], remote[1])
            + socket.inet_aton(local[0])
            + bytes(12)
            + socket.inet_aton(remote[0])
            + bytes(12)
            + struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF)  # any interface, no cookie
        )
        # inet_diag_req_v2: family, protocol, extensions, pad, states (all), the socket id.
        request = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF)
        request += sockid
        header = struct.pack("=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY, 1, 0, 0)
        self.netlink.send(header + request)
        answer = self.netlink.recv(65536)
        kind = struct.unpack_from("=H", answer, 4)[0]
        if kind == _NLMSG_ERROR:
            code = -struct.unpack_from("=i", answer, 16)[0]
            raise OSError(code, f"sock_diag {local} -> {remote}: {errno.errorcode.get(code)}")
        # inet_diag_msg: 4 bytes, the socket id (48), expires, rqueue, wqueue, uid, inode.
        rqueue, wqueue, _, inode = struct.unpack_from("=IIII", answer, 16 + 4 + 48 + 4)
        return rqueue, wqueue, inode

    def close(self) -> None:
        self.netlink.close()


def socket_owner(inode: int) -> Optional[int]:
    """The process holding the socket ``inode`` open, if this user may see it."""
    target = f"socket:[{inode}]"
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return int(pid)
        except OSError:
            continue
    return None


def waiting(pid: int) -> bool:
    """Whether the process ``pid``'s main thread is asleep (blocked in a system call:
    for a client, waiting for data), from ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return stat.read().rpartition(b")")[2].split()[0] == b"S"


def paced_unsupported() -> Optional[str]:
    """Why the ``paced`` transfer cannot work here, or None if it can."""
    try:
        probe = SocketQueues()
    except OSError as exc:
        return f"cannot query socket queues (NETLINK_SOCK_DIAG): {exc}"
    try:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            with socket.create_connection(listener.getsockname()) as client:
                accepted, _ = listener.accept()
                with accepted:
                    here, there = client.getsockname(), accepted.getsockname()
                    accepted.sendall(b"x" * 10)
                    deadline = time.monotonic() + 5
                    while probe.query(here, there)[0] != 10:
                        if time.monotonic() > deadline:
                            return "sock_diag does not report a socket's receive queue"
                        time.sleep(0.001)
                    client.recv(10)
                    rqueue, _, inode = probe.query(here, there)
                    if rqueue != 0:
                        return "sock_diag's receive queue does not empty as the socket is read"
                    if socket_owner(inode) != os.getpid():
                        return "cannot find a socket's process through /proc/PID/fd"
                    waiting(os.getpid())
    except OSError as exc:
        return f"cannot see a client's socket queues or state (sock_diag, /proc): {exc}"
    finally:
        probe.close()
    return None


async def _send_paced(writer: asyncio.StreamWriter, head: bytes, chunks: List[bytes]) -> None:
    """Write ``head``, then each chunk once the client has read everything before it
    and waits for more.

    After each write the server waits, looking at the kernel's view of the
    connection (:class:`SocketQueues`), until its own socket has no
    unacknowledged bytes (the chunk is in the client's receive queue), then
    until the client's socket has no unread bytes (the client has read it) and
    the client process is asleep (:func:`waiting`: it has dealt with the event
    and blocks in ``poll``/``epoll_wait`` for the next one). So every read of
    the client's carries exactly one event (one small write, one segment,
    ``TCP_NODELAY``), and an event loop finds nothing to read whenever it looks
    without waiting: the client runs the same code for every event, however
    fast or slowly it runs (under valgrind, 50 times slower), with no sleep on
    its side. The waiting blocks this server's loop for ``PACED_POLL`` at a
    time, between which other connections are served.
    """
    transport = writer.transport
    sock = writer.get_extra_info("socket")
    here, there = sock.getsockname()[:2], sock.getpeername()[:2]
    probe = SocketQueues()
    try:
        pid = socket_owner(probe.query(there, here)[2])
        if pid is None:
            raise ConnectionError(f"paced stream to {there}: the client's process is not found")
        for data in (head, *chunks, LAST_CHUNK):
            writer.write(data)
            await writer.drain()
            if data is LAST_CHUNK:
                break
            while transport.get_write_buffer_size() or probe.query(here, there)[1]:
                time.sleep(PACED_POLL)
                await asyncio.sleep(0)
            while probe.query(there, here)[0] or not waiting(pid):
                time.sleep(PACED_POLL)
                await asyncio.sleep(0)
    except OSError as exc:
        raise ConnectionError(f"paced stream to {there}: {exc}") from exc
    finally:
        probe.close()


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
    parser.add_argument(
        "--counts", default="", help="comma-separated event counts of the n<count> bodies"
    )
    args = parser.parse_args()
    counts = [int(x) for x in args.counts.split(",") if x.strip()]
    server = BenchServer(args.events, args.small_events, args.mem_bytes, counts)
    try:
        asyncio.run(serve(server, args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
