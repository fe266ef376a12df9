"""Servers on loopback made of plain sockets, for what `BackendApiTestServer` cannot do.

* `SilentServer`: a listener that never accepts; the kernel completes the handshake and
  buffers the request, and no byte ever comes back.
* `RawServer`: answers every request with the same canned bytes (no HTTP at all, a
  malformed head, a chunked body cut short), or never answers.
* `ForwardingProxy` and `TLSForwardingProxy`: a minimal HTTP forward proxy (with
  ``CONNECT`` tunnels), plain or behind TLS.
* `TLSSetup`: a CA made at test time and server contexts with certificates it issued.

The conftest's fixtures start and stop them; a test never sleeps to wait on them: each
records what it saw behind a lock, and `RawServer.client_closed` is an event.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import trustme
from scripted import WAIT


def read_request(reader: BinaryIO) -> Tuple[bytes, Optional[bytes]]:
    """One request from a connection's file: its first line (``b""`` when the client
    closed before one) and its body by ``Content-Length`` (None when the connection
    ended before the whole body)."""
    first = reader.readline()
    length = 0
    while first:
        line = reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = reader.read(length)
    return first, body if len(body) == length else None


class SilentServer:
    """A listening socket that never accepts: the kernel completes every TCP handshake and
    buffers the request, and no byte ever comes back."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def connections(self) -> int:
        """How many connections were made to it so far (each is accepted and closed)."""
        self._listener.setblocking(False)
        count = 0
        while True:
            try:
                conn, _ = self._listener.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self) -> None:
        self._listener.close()


class LoopbackListener:
    """A socket listening on 127.0.0.1; each connection is served by `serve` in a thread.

    `close` stops accepting, shuts down every socket a handler still uses (so that a
    handler blocked in ``recv`` returns) and joins the handlers.
    """

    def __init__(self, name: str) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = self._listener.getsockname()
        self.url = f"http://127.0.0.1:{self.address[1]}"
        self._lock = threading.Lock()
        self._stopping = False
        self._sockets: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name=name, daemon=True)
        self._acceptor.start()

    def serve(self, conn: socket.socket) -> None:
        """Serve one accepted connection (in a thread of its own)."""
        raise NotImplementedError

    def handle(self, conn: socket.socket) -> None:
        """Hand one accepted connection to `serve` in a new thread (called by the acceptor)."""
        self._track(conn)
        self._start(self.serve, conn)

    def _track(self, sock: socket.socket) -> None:
        """Have `close` shut ``sock`` down."""
        with self._lock:
            self._sockets.append(sock)

    def _start(self, target: Callable[..., None], *args: object) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()
        return thread

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self._stopping:
                conn.close()
                return
            self.handle(conn)

    def close(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):  # wakes the accept() of the accepting thread
            socket.create_connection(self.address, timeout=WAIT).close()
        self._acceptor.join(WAIT)
        self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:  # unblocks a handler still reading or piping
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(WAIT)


class RawServer(LoopbackListener):
    """An HTTP server answering every request with the same raw bytes, `answer`.

    It reads each request whole (head and Content-Length body) before answering, then
    closes its side cleanly (a FIN, not a reset), so the client sees exactly `answer` and
    then the end of the connection. With ``answer = None`` it reads the request and never
    answers. Either way `client_closed` is set once the client closes the connection.
    """

    def __init__(self) -> None:
        self.answer: Optional[bytes] = b""
        self.client_closed = threading.Event()
        self._request_lines: List[bytes] = []
        self._requests = 0
        self._connections = 0
        super().__init__("test-raw-server")

    @property
    def connections(self) -> int:
        """How many connections the client opened."""
        with self._lock:
            return self._connections

    @property
    def requests(self) -> int:
        """How many requests were read whole."""
        with self._lock:
            return self._requests

    @property
    def request_lines(self) -> List[bytes]:
        """The first line of each request, as it came."""
        with self._lock:
            return list(self._request_lines)

    def handle(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections += 1
        super().handle(conn)

    def serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError, ValueError):
            with conn.makefile("rb") as reader:
                first, body = read_request(reader)
                with self._lock:
                    self._request_lines.append(first.rstrip(b"\r\n"))
                if body is None:
                    return
            with self._lock:
                self._requests += 1
            if self.answer is not None:
                conn.sendall(self.answer)
                conn.shutdown(socket.SHUT_WR)
            while conn.recv(65536):
                pass
            self.client_closed.set()


@dataclass(frozen=True)
class TLSSetup:
    """A CA made at test time, and server contexts with certificates it issued."""

    ca: trustme.CA
    ca_path: Path
    server_context: ssl.SSLContext
    """Certificate for 127.0.0.1 and localhost."""
    wrong_host_context: ssl.SSLContext
    """Certificate for other.example only."""
    other_ca_path: Path
    """A CA bundle with an unrelated CA."""

    @classmethod
    def create(cls, directory: Path) -> TLSSetup:
        """Make the CAs, writing their bundles to ``directory``."""
        ca = trustme.CA()
        ca_path = directory / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
        wrong_host_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("other.example").configure_cert(wrong_host_context)
        other_ca_path = directory / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other_ca_path))
        return cls(ca, ca_path, server_context, wrong_host_context, other_ca_path)

    def private_ca_context(self) -> ssl.SSLContext:
        """A client context that trusts the test CA and nothing else."""
        context = ssl.create_default_context(cafile=str(self.ca_path))
        assert context.cert_store_stats()["x509_ca"] == 1
        return context


@dataclass
class ProxiedRequest:
    """One request as the forwarding proxy received it."""

    method: str
    target: str
    headers: Dict[str, str] = field(default_factory=dict)


class ForwardingProxy(LoopbackListener):
    """A minimal HTTP forward proxy on 127.0.0.1, in threads.

    It takes absolute-form requests (``POST http://host:port/path HTTP/1.1``, what a client
    sends to a proxy for an ``http://`` URL), one per connection, records them, forwards
    each to its target with ``Connection: close``, and pipes the answer back as it arrives,
    byte for byte, until the target closes. ``CONNECT host:port`` (what a client sends for
    an ``https://`` URL) opens a tunnel: bytes are piped both ways until either side
    closes. No request bodies without Content-Length.
    """

    def __init__(self) -> None:
        self._requests: List[ProxiedRequest] = []
        super().__init__("test-proxy")

    @property
    def requests(self) -> List[ProxiedRequest]:
        with self._lock:
            return list(self._requests)

    def serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError, ValueError):
            with conn.makefile("rb") as reader:
                method, target, _version = reader.readline().decode("latin-1").split()
                headers: Dict[str, str] = {}
                while True:
                    line = reader.readline().decode("latin-1").rstrip("\r\n")
                    if not line:
                        break
                    name, _, value = line.partition(":")
                    headers[name.strip()] = value.strip()
                length = int(headers.get("Content-Length", "0"))
                body = reader.read(length) if length else b""
            with self._lock:
                self._requests.append(ProxiedRequest(method, target, headers))
            if method == "CONNECT":
                self._tunnel(conn, target)
                return
            parts = urlsplit(target)
            if parts.scheme != "http" or not parts.hostname:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                return
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            hop_by_hop = {"connection", "proxy-connection", "keep-alive", "proxy-authorization"}
            lines = [f"{method} {path} HTTP/1.1"]
            lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in hop_by_hop]
            lines.append("Connection: close")
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            upstream = socket.create_connection((parts.hostname, parts.port or 80), timeout=30)
            with upstream:
                self._track(upstream)
                upstream.sendall(head + body)
                _pipe(upstream, conn)

    def _tunnel(self, conn: socket.socket, target: str) -> None:
        host, _, port = target.rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=30)
        with upstream:
            self._track(upstream)
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            outbound = self._start(_pipe, conn, upstream)
            _pipe(upstream, conn)
            outbound.join(WAIT)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes from ``source`` to ``sink`` until ``source`` ends; then end ``sink``."""
    with contextlib.suppress(OSError):
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)


class TLSForwardingProxy(ForwardingProxy):
    """The forwarding proxy behind TLS: an ``https://`` proxy."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()
        self.url = self.url.replace("http://", "https://", 1)

    def handle(self, conn: socket.socket) -> None:
        try:
            wrapped = self._context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):  # the client refused the certificate
            conn.close()
            return
        super().handle(wrapped)
