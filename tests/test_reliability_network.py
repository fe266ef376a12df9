"""Reliability and security over real sockets: timeouts, retries, redirects, TLS, proxies.

Every fault is produced on loopback by something this module starts and stops itself: a
`BackendApiTestServer` (on 127.0.0.1, a second one on 127.0.0.2, an HTTPS one with a
certificate made by ``trustme``), a raw listening socket that never answers, a listener
whose accept queue is full (so that ``connect()`` hangs), and a small forwarding HTTP proxy.
Every test runs once per client (the ``client_kind`` fixture): both must behave alike.

Nothing here sleeps to synchronise: tests wait on events, sockets and
`BackendApiTestServer.wait_for_requests`. Backoff delays are made tiny where a test is not
about them (the ``fast_backoff`` fixture).

``docs/reliability.md`` lists every fault and bad input tried here with what the caller
gets; `test_reliability_doc_names_existing_tests` keeps that table and these tests in step.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import contextlib
import dataclasses
import email.utils
import gc
import inspect
import logging
import re
import socket
import ssl
import sys
import threading
import time
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlsplit

import aiohttp
import pytest
import trustme
from clients import MESSAGES, TEST_TIMEOUT, Result, run_stream
from urllib3.exceptions import InsecureRequestWarning

from backendapi import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncBackendApiClient,
    BackendApiClient,
    BackendApiError,
    IncompleteStreamError,
    InvalidInputError,
    RawResponse,
    RetryPolicy,
    Timeout,
)
from backendapi._core.environment import Environment
from backendapi.testing import BackendApiTestServer, Cut, Hold, Pause, Reply, Wait

ROOT = Path(__file__).parent.parent
DOC = ROOT / "docs" / "reliability.md"
CONVERSATION_PATH = "/backend-api/v2/conversation"
CLIENTS: Dict[str, Any] = {"sync": BackendApiClient, "async": AsyncBackendApiClient}
WAIT = 5.0  # seconds to wait for something a server reports; only reached on failure
SECRET = "sk-reliability-secret-key"

FIRST = {"type": "content", "content": "Hello"}
SECOND = {"type": "content", "content": " world"}
FINISH = {"type": "finish", "finish": {"reason": "stop"}}
GOOD = Reply([FIRST, SECOND, FINISH])
GOOD_EVENTS = [FIRST, SECOND, FINISH]

# Hop-by-hop state that must not leak between tests: requests and aiohttp both read these.
NETWORK_ENV = (
    "NETRC",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def clean_network_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy or CA bundle from the machine's environment: each test sets what it needs."""
    for name in NETWORK_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def retry_logs(caplog: pytest.LogCaptureFixture) -> Callable[[], List[str]]:
    """Returns a function listing the INFO retry messages logged on ``backendapi`` so far."""
    caplog.set_level(logging.INFO, logger="backendapi")

    def messages() -> List[str]:
        return [
            record.getMessage()
            for record in caplog.records
            if record.name == "backendapi"
            and record.levelno == logging.INFO
            and record.getMessage().startswith("retrying ")
        ]

    return messages


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every backoff delay becomes 10 ms, so retry tests take no time."""
    monkeypatch.setattr(RetryPolicy, "backoff", lambda self, attempt: 0.01)


@pytest.fixture
def second_server() -> Iterator[BackendApiTestServer]:
    """Another test server, on another loopback address: 127.0.0.2."""
    with BackendApiTestServer(host="127.0.0.2") as server:
        yield server


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
    """A socket listening on 127.0.0.1; a thread hands each connection to ``handle``."""

    def __init__(self, name: str) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = self._listener.getsockname()
        self.url = f"http://127.0.0.1:{self.address[1]}"
        self._lock = threading.Lock()
        self._stopping = False
        self._acceptor = threading.Thread(target=self._accept_loop, name=name, daemon=True)
        self._acceptor.start()

    def handle(self, conn: socket.socket) -> None:
        """Serve one accepted connection (in the accepting thread)."""
        raise NotImplementedError

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

    def stop_accepting(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):  # wakes the accept() of the accepting thread
            socket.create_connection(self.address, timeout=WAIT).close()
        self._acceptor.join(WAIT)
        self._listener.close()


class RawAnswerServer(LoopbackListener):
    """Answers every request with the same raw bytes, then ends the connection.

    It reads each request whole (head and Content-Length body) before answering, so
    closing never resets a connection that still has request bytes unread.
    """

    def __init__(self) -> None:
        self.answer = b""
        self.request_lines: List[bytes] = []
        """The first line of each request, as it came."""
        self._connections = 0
        super().__init__("test-raw-server")

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    def handle(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections += 1
        with conn, contextlib.suppress(OSError, ValueError), conn.makefile("rb") as reader:
            length = 0
            first = reader.readline()
            with self._lock:
                self.request_lines.append(first.rstrip(b"\r\n"))
            while first:
                line = reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            reader.read(length)
            conn.sendall(self.answer)

    def close(self) -> None:
        self.stop_accepting()


@pytest.fixture
def raw_server() -> Iterator[RawAnswerServer]:
    with contextlib.closing(RawAnswerServer()) as server:
        yield server


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def blackhole_url() -> Iterator[str]:
    """A URL where ``connect()`` hangs: a listener whose accept queue is full.

    With ``listen(0)`` Linux queues one connection; once it is queued, the kernel drops
    further SYNs, so a connect keeps waiting for an answer to its retransmitted SYN. The
    queue is filled until a probe connect times out; a system that never drops the SYN
    (one that answers with RST or SYN cookies instead) gets the test skipped.
    """
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(64):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.settimeout(0.2)
            try:
                probe.connect(address)
            except socket.timeout:
                probe.close()
                break
            except OSError as exc:
                probe.close()
                pytest.skip(f"a connect to a full accept queue fails at once here: {exc}")
            stack.callback(probe.close)
        else:
            pytest.skip("connect() to a listen(0) socket never hangs here: cannot test it")
        yield f"http://127.0.0.1:{address[1]}"


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


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSSetup:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca_path = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    wrong_host_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.example").configure_cert(wrong_host_context)
    other_ca_path = directory / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca_path))
    return TLSSetup(ca, ca_path, server_context, wrong_host_context, other_ca_path)


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
        self._sockets: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        super().__init__("test-proxy")

    @property
    def requests(self) -> List[ProxiedRequest]:
        with self._lock:
            return list(self._requests)

    def close(self) -> None:
        self.stop_accepting()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:  # unblocks a handler still piping
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(WAIT)

    def handle(self, conn: socket.socket) -> None:
        thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
        with self._lock:
            self._threads.append(thread)
            self._sockets.append(conn)
        thread.start()

    def _serve(self, conn: socket.socket) -> None:
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
                with self._lock:
                    self._sockets.append(upstream)
                upstream.sendall(head + body)
                _pipe(upstream, conn)

    def _tunnel(self, conn: socket.socket, target: str) -> None:
        host, _, port = target.rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=30)
        with upstream:
            with self._lock:
                self._sockets.append(upstream)
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            outbound = threading.Thread(target=_pipe, args=(conn, upstream), daemon=True)
            with self._lock:
                self._threads.append(outbound)
            outbound.start()
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


@pytest.fixture
def https_proxy(tls: TLSSetup) -> Iterator[TLSForwardingProxy]:
    with contextlib.closing(TLSForwardingProxy(tls.server_context)) as forwarding:
        yield forwarding


@pytest.fixture
def proxy() -> Iterator[ForwardingProxy]:
    forwarding = ForwardingProxy()
    try:
        yield forwarding
    finally:
        forwarding.close()


# --------------------------------------------------------------------------- helpers


def stream(kind: str, url: str, timeout: Any = TEST_TIMEOUT, **options: Any) -> Result:
    """`run_stream` with client options as keyword arguments."""
    return run_stream(kind, url, client_options={"timeout": timeout, **options})


def timed(call: Callable[[], Result]) -> Tuple[Result, float]:
    """The result of ``call`` and the seconds from just before ``create()`` to the end."""
    result = call()
    return result, time.monotonic() - result.started


def error_reply(status: int, message: str = "try later", **headers: str) -> Reply:
    """An HTTP error with g4f's body and extra headers, e.g. ``Retry-After``."""
    return Reply(status=status, error={"error": {"message": message}}, headers=headers)


# --------------------------------------------------------------------------- timeouts


def test_read_timeout_when_server_never_answers(
    client_kind: str, silent_server: SilentServer, retry_logs: Callable[[], List[str]]
) -> None:
    result, elapsed = timed(
        lambda: stream(client_kind, silent_server.url, timeout=Timeout(connect=5, read=0.5))
    )

    assert isinstance(result.error, APITimeoutError), result.error
    assert isinstance(result.error, APIConnectionError)
    message = str(result.error)
    assert "read timeout" in message
    assert silent_server.url + CONVERSATION_PATH in message
    assert result.error.url == silent_server.url + CONVERSATION_PATH
    assert 0.4 <= elapsed <= 3.0
    # A read timeout is not retried: the server may be working on the request.
    assert silent_server.connections() == 1
    assert retry_logs() == []


def test_read_timeout_after_headers(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply([Hold()]))

    result, elapsed = timed(
        lambda: stream(client_kind, backendapi_server.url, timeout=Timeout(connect=5, read=0.5))
    )

    assert isinstance(result.error, APITimeoutError), result.error
    assert "read timeout" in str(result.error)
    assert backendapi_server.url + CONVERSATION_PATH in str(result.error)
    assert 0.4 <= elapsed <= 3.0
    assert len(backendapi_server.requests) == 1
    assert backendapi_server.requests[0].disconnected.wait(WAIT)


def test_read_timeout_mid_stream(client_kind: str, backendapi_server: BackendApiTestServer) -> None:
    backendapi_server.reply(Reply([FIRST, Hold(), SECOND]))

    result = stream(client_kind, backendapi_server.url, timeout=Timeout(connect=5, read=0.5))
    silence = time.monotonic() - result.received[0].at

    assert result.events == [FIRST]
    assert isinstance(result.error, APITimeoutError), result.error
    assert "read timeout" in str(result.error)
    assert backendapi_server.url + CONVERSATION_PATH in str(result.error)
    assert 0.4 <= silence <= 3.0
    assert len(backendapi_server.requests) == 1
    assert backendapi_server.requests[0].disconnected.wait(WAIT)


def test_read_timeout_bounds_silence_not_duration(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    # 1.2 s in all, but never more than 0.3 s without a byte: within a 0.6 s read timeout.
    items: List[Any] = []
    for index in range(4):
        items += [Pause(0.3), {"type": "content", "content": str(index)}]
    backendapi_server.reply(Reply(items))

    result, elapsed = timed(
        lambda: stream(client_kind, backendapi_server.url, timeout=Timeout(connect=5, read=0.6))
    )

    assert result.error is None
    assert [event["content"] for event in result.events] == ["0", "1", "2", "3"]
    assert elapsed >= 1.2


def test_connect_timeout(
    client_kind: str, blackhole_url: str, retry_logs: Callable[[], List[str]]
) -> None:
    result, elapsed = timed(
        lambda: stream(
            client_kind, blackhole_url, timeout=Timeout(connect=0.5, read=5), max_retries=0
        )
    )

    assert isinstance(result.error, APITimeoutError), result.error
    message = str(result.error)
    assert "connect timeout" in message
    assert "read timeout" not in message
    assert blackhole_url + CONVERSATION_PATH in message
    assert 0.4 <= elapsed <= 3.0
    assert retry_logs() == []


def test_connect_timeout_is_retried(
    client_kind: str, blackhole_url: str, fast_backoff: None, retry_logs: Callable[[], List[str]]
) -> None:
    result = stream(client_kind, blackhole_url, timeout=Timeout(connect=0.3, read=5), max_retries=1)

    assert isinstance(result.error, APITimeoutError), result.error
    assert "connect timeout" in str(result.error)
    assert len(retry_logs()) == 1


def test_connect_timeout_named_when_url_contains_read(client_kind: str, blackhole_url: str) -> None:
    # A base URL with a path prefix is allowed; "reader" in it must not change which
    # timeout the message names.
    url = blackhole_url + "/reader"

    result = stream(client_kind, url, timeout=Timeout(connect=0.3, read=5), max_retries=0)

    assert isinstance(result.error, APITimeoutError), result.error
    message = str(result.error)
    assert "connect timeout" in message, message
    assert "read timeout" not in message, message


def test_total_timeout_while_streaming(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    # Each event within the 5 s read timeout, 4 s in all: over the 1 s total.
    items: List[Any] = []
    for index in range(20):
        items += [{"type": "content", "content": str(index)}, Pause(0.2)]
    backendapi_server.reply(Reply(items))

    result, elapsed = timed(
        lambda: stream(
            client_kind, backendapi_server.url, timeout=Timeout(connect=5, read=5, total=1)
        )
    )

    assert isinstance(result.error, APITimeoutError), result.error
    message = str(result.error)
    assert "total" in message
    assert backendapi_server.url + CONVERSATION_PATH in message
    assert 2 <= len(result.events) < 20
    assert 0.8 <= elapsed <= 3.0


def test_total_timeout_while_waiting_for_the_answer(
    client_kind: str, silent_server: SilentServer
) -> None:
    result, elapsed = timed(
        lambda: stream(
            client_kind, silent_server.url, timeout=Timeout(connect=5, read=5, total=0.5)
        )
    )

    assert isinstance(result.error, APITimeoutError), result.error
    assert "total" in str(result.error)
    assert silent_server.url + CONVERSATION_PATH in str(result.error)
    assert 0.4 <= elapsed <= 3.0


def test_timeout_none_disables_every_timeout(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(GOOD)

    result = stream(client_kind, backendapi_server.url, timeout=None)

    assert result.client.timeout == Timeout(connect=None, read=None, total=None)
    assert result.error is None
    assert result.events == GOOD_EVENTS


# --------------------------------------------------------------------------- retries


def test_backoff_is_exponential_with_jitter(client_kind: str) -> None:
    client = CLIENTS[client_kind]("http://127.0.0.1:9")
    policy = client.retry
    assert policy.max_retries == 2  # the default
    for attempt in range(6):
        ceiling = min(policy.backoff_max, policy.backoff_base * 2**attempt)
        delays = [policy.backoff(attempt) for _ in range(200)]
        assert all(0.5 * ceiling <= delay <= ceiling for delay in delays), attempt
        assert max(delays) - min(delays) > 0.1 * ceiling  # jittered, not a constant
    assert policy.backoff(10) <= policy.backoff_max


def test_backoff_delay_is_waited(
    client_kind: str, backendapi_server: BackendApiTestServer, retry_logs: Callable[[], List[str]]
) -> None:
    backendapi_server.reply(error_reply(503), GOOD)

    result, elapsed = timed(lambda: stream(client_kind, backendapi_server.url))

    assert result.error is None
    (log,) = retry_logs()
    match = re.search(r" in (\d+\.\d+) s ", log)
    assert match is not None, log
    delay = float(match.group(1))
    assert 0.25 <= delay <= 0.5  # backoff_base 0.5 s, jitter factor 0.5 to 1
    assert elapsed >= delay - 0.01


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_retryable_status_then_success(
    client_kind: str,
    status: int,
    backendapi_server: BackendApiTestServer,
    fast_backoff: None,
    retry_logs: Callable[[], List[str]],
) -> None:
    backendapi_server.reply(error_reply(status), GOOD)

    result = stream(client_kind, backendapi_server.url)

    assert result.error is None
    assert result.events == GOOD_EVENTS
    assert len(backendapi_server.requests) == 2
    (log,) = retry_logs()
    assert f"HTTP {status}" in log


def test_503_twice_then_success(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    fast_backoff: None,
    retry_logs: Callable[[], List[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    backendapi_server.reply(error_reply(503, "overloaded"), error_reply(503, "overloaded"), GOOD)

    result = stream(client_kind, backendapi_server.url, api_key=SECRET)

    assert result.error is None
    assert result.events == GOOD_EVENTS
    assert len(backendapi_server.requests) == 3
    logs = retry_logs()
    assert len(logs) == 2
    assert "(retry 1)" in logs[0] and "(retry 2)" in logs[1]
    assert all(backendapi_server.url + CONVERSATION_PATH in log for log in logs)
    assert SECRET not in caplog.text


def test_retries_exhausted(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    fast_backoff: None,
    retry_logs: Callable[[], List[str]],
) -> None:
    backendapi_server.reply(*[error_reply(503, "overloaded")] * 3, GOOD)

    result = stream(client_kind, backendapi_server.url)

    assert isinstance(result.error, APIStatusError), result.error
    assert result.error.status_code == 503
    assert "overloaded" in str(result.error)
    assert len(backendapi_server.requests) == 3
    assert len(retry_logs()) == 2


def test_max_retries_zero(
    client_kind: str, backendapi_server: BackendApiTestServer, retry_logs: Callable[[], List[str]]
) -> None:
    backendapi_server.reply(error_reply(503, "overloaded"), GOOD)

    result = stream(client_kind, backendapi_server.url, max_retries=0)

    assert isinstance(result.error, APIStatusError), result.error
    assert result.error.status_code == 503
    assert len(backendapi_server.requests) == 1
    assert retry_logs() == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_error_not_retried(
    client_kind: str,
    status: int,
    backendapi_server: BackendApiTestServer,
    retry_logs: Callable[[], List[str]],
) -> None:
    backendapi_server.reply(error_reply(status, "you asked wrong"), GOOD)

    result = stream(client_kind, backendapi_server.url)

    assert isinstance(result.error, APIStatusError), result.error
    assert result.error.status_code == status
    assert "you asked wrong" in str(result.error)
    assert len(backendapi_server.requests) == 1
    assert retry_logs() == []


@pytest.mark.parametrize(
    "retry_after",
    ["0", email.utils.formatdate(time.time() - 3600, usegmt=True)],
    ids=["seconds", "http-date-in-the-past"],
)
def test_retry_after_now_honoured(
    client_kind: str,
    retry_after: str,
    backendapi_server: BackendApiTestServer,
    retry_logs: Callable[[], List[str]],
) -> None:
    # Without Retry-After the first retry waits 0.25 to 0.5 s (see the backoff test).
    backendapi_server.reply(error_reply(503, **{"Retry-After": retry_after}), GOOD)

    result, elapsed = timed(lambda: stream(client_kind, backendapi_server.url))

    assert result.error is None
    assert len(backendapi_server.requests) == 2
    (log,) = retry_logs()
    assert " in 0.00 s " in log, log
    assert elapsed < 2.0


def test_retry_after_seconds_waited(
    client_kind: str, backendapi_server: BackendApiTestServer, retry_logs: Callable[[], List[str]]
) -> None:
    backendapi_server.reply(error_reply(429, **{"Retry-After": "0.6"}), GOOD)

    result, elapsed = timed(lambda: stream(client_kind, backendapi_server.url))

    assert result.error is None
    (log,) = retry_logs()
    assert " in 0.60 s " in log, log
    assert elapsed >= 0.6


@pytest.mark.parametrize(
    "retry_after",
    ["3600", lambda: email.utils.formatdate(time.time() + 3600, usegmt=True)],
    ids=["seconds", "http-date"],
)
def test_retry_after_beyond_cap_raises_at_once(
    client_kind: str,
    retry_after: Any,
    backendapi_server: BackendApiTestServer,
    retry_logs: Callable[[], List[str]],
) -> None:
    value = retry_after() if callable(retry_after) else retry_after
    backendapi_server.reply(error_reply(429, "slow down", **{"Retry-After": value}), GOOD)

    result, elapsed = timed(lambda: stream(client_kind, backendapi_server.url))

    assert isinstance(result.error, APIStatusError), result.error
    assert result.error.status_code == 429
    assert "slow down" in str(result.error)
    assert len(backendapi_server.requests) == 1
    assert retry_logs() == []
    assert elapsed < 2.0


def test_cut_after_first_event_not_retried(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    fast_backoff: None,
    retry_logs: Callable[[], List[str]],
) -> None:
    # A retry would get the good reply queued behind and hide the cut: there must be none.
    backendapi_server.reply(Reply([FIRST, Cut(), SECOND]), GOOD)

    result = stream(client_kind, backendapi_server.url)

    assert result.events == [FIRST]
    assert isinstance(result.error, IncompleteStreamError), result.error
    assert backendapi_server.url + CONVERSATION_PATH in str(result.error)
    assert len(backendapi_server.requests) == 1
    assert retry_logs() == []


def test_cut_after_headers_not_retried(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    fast_backoff: None,
    retry_logs: Callable[[], List[str]],
) -> None:
    backendapi_server.reply(Reply([Cut(), FIRST]), GOOD)

    result = stream(client_kind, backendapi_server.url)

    assert result.events == []
    assert isinstance(result.error, IncompleteStreamError), result.error
    assert len(backendapi_server.requests) == 1
    assert retry_logs() == []


def test_reset_before_any_response_byte_retried(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    fast_backoff: None,
    retry_logs: Callable[[], List[str]],
) -> None:
    backendapi_server.reply(Reply(reset=True), GOOD)

    result = stream(client_kind, backendapi_server.url)

    assert result.error is None
    assert result.events == GOOD_EVENTS
    assert len(backendapi_server.requests) == 2
    assert len(retry_logs()) == 1


def test_reset_on_every_attempt(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    fast_backoff: None,
    retry_logs: Callable[[], List[str]],
) -> None:
    backendapi_server.reply(*[Reply(reset=True)] * 3, GOOD)

    result = stream(client_kind, backendapi_server.url)

    assert type(result.error) is APIConnectionError, result.error
    assert backendapi_server.url + CONVERSATION_PATH in str(result.error)
    assert len(backendapi_server.requests) == 3
    assert len(retry_logs()) == 2


@pytest.mark.parametrize("max_retries", [0, 3])
def test_connection_refused_retried_then_raises(
    client_kind: str,
    max_retries: int,
    refused_url: str,
    fast_backoff: None,
    retry_logs: Callable[[], List[str]],
) -> None:
    result = stream(client_kind, refused_url, max_retries=max_retries)

    assert type(result.error) is APIConnectionError, result.error
    assert refused_url + CONVERSATION_PATH in str(result.error)
    assert len(retry_logs()) == max_retries


# --------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_not_followed(
    client_kind: str,
    status: int,
    backendapi_server: BackendApiTestServer,
    second_server: BackendApiTestServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    location = second_server.url + CONVERSATION_PATH
    backendapi_server.reply(Reply(status=status, headers={"Location": location}))

    result = stream(client_kind, backendapi_server.url, api_key=SECRET)

    assert isinstance(result.error, APIStatusError), result.error
    assert result.error.status_code == status
    message = str(result.error)
    assert "redirect" in message
    assert location in message
    assert SECRET not in message and SECRET not in caplog.text
    assert len(backendapi_server.requests) == 1
    assert backendapi_server.requests[0].json["api_key"] == SECRET
    # Not a request, not even a connection: the key never went to 127.0.0.2.
    assert second_server.requests == []
    assert second_server.connections_accepted == 0


# --------------------------------------------------------------------------- TLS


def tls_stream(kind: str, server_context: ssl.SSLContext, **options: Any) -> Result:
    """Stream the GOOD reply from an HTTPS test server serving ``server_context``."""
    with BackendApiTestServer(ssl_context=server_context) as server:
        server.reply(GOOD)
        return stream(kind, server.url, **options)


def test_tls_verified_by_default(
    client_kind: str, tls: TLSSetup, retry_logs: Callable[[], List[str]]
) -> None:
    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        assert server.url.startswith("https://127.0.0.1:")

        result = stream(client_kind, server.url)

        assert type(result.error) is APIConnectionError, result.error
        message = str(result.error)
        assert "certificate verification failed" in message
        assert server.url + CONVERSATION_PATH in message
        assert server.requests == []
        assert retry_logs() == []  # a bad certificate is not retried


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_tls_ca_bundle_from_the_environment(
    client_kind: str, tls: TLSSetup, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    # requests trusts the bundle these name instead of certifi's; so do both clients.
    monkeypatch.setenv(variable, str(tls.ca_path))
    result = tls_stream(client_kind, tls.server_context)

    assert result.error is None
    assert result.events == GOOD_EVENTS


def errors_in_turns(
    kind: str, url: str, before_each: List[Callable[[], None]]
) -> List[Optional[BaseException]]:
    """One client streams once per item of ``before_each``, calling it first; the errors."""
    errors: List[Optional[BaseException]] = []
    options: Dict[str, Any] = {"timeout": TEST_TIMEOUT, "max_retries": 0}
    if kind == "sync":
        with BackendApiClient(url, **options) as client:
            for prepare in before_each:
                prepare()
                try:
                    with client.create("m", MESSAGES) as events:
                        list(events)
                    errors.append(None)
                except BackendApiError as exc:
                    errors.append(exc)
        return errors

    async def main() -> None:
        async with AsyncBackendApiClient(url, **options) as client:
            for prepare in before_each:
                prepare()
                try:
                    async with client.create("m", MESSAGES) as events:
                        async for _ in events:
                            pass
                    errors.append(None)
                except BackendApiError as exc:
                    errors.append(exc)

    asyncio.run(main())
    return errors


def test_tls_ca_bundle_from_the_environment_is_read_for_each_request(
    client_kind: str, tls: TLSSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests reads the variable for every request; the async client does too,
    # though its connector was made with the first bundle.
    def trust(path: Path) -> Callable[[], None]:
        return lambda: monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(path))

    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        server.reply(GOOD, GOOD)
        first, second, third = errors_in_turns(
            client_kind,
            server.url,
            [trust(tls.ca_path), trust(tls.other_ca_path), trust(tls.ca_path)],
        )

    assert first is None and third is None
    assert type(second) is APIConnectionError, second
    assert "certificate verification failed" in str(second)


def test_tls_ca_bundle_from_the_environment_that_does_not_exist(
    client_kind: str, tls: TLSSetup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-ca.pem"
    monkeypatch.setenv("CURL_CA_BUNDLE", str(missing))
    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        result = stream(client_kind, server.url)

        assert type(result.error) is InvalidInputError, result.error
        assert str(result.error) == f"CURL_CA_BUNDLE: no such CA bundle: {str(missing)!r}"
        assert server.connections_accepted == 0  # named before any connection


def test_tls_ca_bundle_argument_wins_over_the_environment(
    client_kind: str, tls: TLSSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.other_ca_path))
    result = tls_stream(client_kind, tls.server_context, ssl=str(tls.ca_path))

    assert result.error is None
    assert result.events == GOOD_EVENTS


@pytest.mark.parametrize("form", ["str", "Path"])
def test_tls_ca_bundle_path(client_kind: str, form: str, tls: TLSSetup) -> None:
    ca_bundle = str(tls.ca_path) if form == "str" else tls.ca_path
    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        server.reply(GOOD)

        result = stream(client_kind, server.url, ssl=ca_bundle)

        assert result.error is None
        assert result.events == GOOD_EVENTS
        assert len(server.requests) == 1


def test_tls_ssl_context(client_kind: str, tls: TLSSetup) -> None:
    context = ssl.create_default_context()
    tls.ca.configure_trust(context)
    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        server.reply(GOOD)

        result = stream(client_kind, server.url, ssl=context)

        assert result.error is None
        assert result.events == GOOD_EVENTS


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_verification_off(client_kind: str, tls: TLSSetup) -> None:
    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        server.reply(GOOD)

        result = stream(client_kind, server.url, ssl=False)

        assert result.error is None
        assert result.events == GOOD_EVENTS


def private_ca_context(tls: TLSSetup) -> ssl.SSLContext:
    """A context that trusts the test CA and nothing else."""
    context = ssl.create_default_context(cafile=str(tls.ca_path))
    assert context.cert_store_stats()["x509_ca"] == 1
    return context


def test_tls_ssl_context_is_used_as_it_is(client_kind: str, tls: TLSSetup) -> None:
    # requests made urllib3 load certifi's CAs into the caller's context: one that
    # trusted a private CA alone then trusted every public CA too.
    context = private_ca_context(tls)
    result = tls_stream(client_kind, tls.server_context, ssl=context)

    assert result.error is None
    assert result.events == GOOD_EVENTS
    assert context.cert_store_stats()["x509_ca"] == 1
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_tls_ssl_context_without_hostname_check(client_kind: str, tls: TLSSetup) -> None:
    # The certificate names other.example: a context that checks no hostname takes it.
    context = private_ca_context(tls)
    context.check_hostname = False
    result = tls_stream(client_kind, tls.wrong_host_context, ssl=context)

    assert result.error is None
    assert result.events == GOOD_EVENTS


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_ssl_context_without_verification(client_kind: str, tls: TLSSetup) -> None:
    context = ssl.create_default_context(cafile=str(tls.other_ca_path))
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    result = tls_stream(client_kind, tls.server_context, ssl=context)

    assert result.error is None
    assert result.events == GOOD_EVENTS
    assert context.verify_mode == ssl.CERT_NONE


def test_tls_ssl_context_through_a_proxy(
    client_kind: str, tls: TLSSetup, proxy: ForwardingProxy
) -> None:
    # requests gave a proxy's connections no ssl_context: certifi's CAs, not the caller's.
    context = private_ca_context(tls)
    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        server.reply(GOOD)

        result = stream(client_kind, server.url, ssl=context, proxy=proxy.url)
        address = server.url.split("//")[1]

    assert result.error is None
    assert result.events == GOOD_EVENTS
    (proxied,) = proxy.requests
    assert proxied.method == "CONNECT"
    assert proxied.target == address
    assert context.cert_store_stats()["x509_ca"] == 1


def insecure_warnings(seen: List[warnings.WarningMessage]) -> List[str]:
    return [str(w.message) for w in seen if issubclass(w.category, InsecureRequestWarning)]


@pytest.mark.parametrize("setting", ["ssl=False", "context"])
def test_tls_unverified_requests_warn_in_both_clients(
    client_kind: str, tls: TLSSetup, setting: str
) -> None:
    # urllib3 warns on every unverified HTTPS request of the blocking client; the async
    # client gives the same warning, so that one filter (or urllib3.disable_warnings())
    # is all either needs.
    option: Any = False
    if setting == "context":
        option = ssl.create_default_context()
        option.check_hostname = False
        option.verify_mode = ssl.CERT_NONE
    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        server.reply(GOOD, GOOD)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            first = stream(client_kind, server.url, ssl=option, api_key="sk-warn-secret")
            second = stream(client_kind, server.url, ssl=option)

    assert first.error is None and second.error is None
    messages = insecure_warnings(seen)
    assert len(messages) == 2, messages
    assert all("127.0.0.1" in message for message in messages)
    assert not any("sk-warn-secret" in message for message in messages)


def test_tls_verified_and_plain_http_requests_do_not_warn(client_kind: str, tls: TLSSetup) -> None:
    with (
        BackendApiTestServer(ssl_context=tls.server_context) as secure,
        BackendApiTestServer() as plain,
    ):
        secure.reply(GOOD)
        plain.reply(GOOD)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            verified = stream(client_kind, secure.url, ssl=str(tls.ca_path))
            unverified_http = stream(client_kind, plain.url, ssl=False)

    assert verified.error is None and unverified_http.error is None
    assert insecure_warnings(seen) == []


def test_tls_other_ca_rejected(client_kind: str, tls: TLSSetup) -> None:
    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        result = stream(client_kind, server.url, ssl=str(tls.other_ca_path))

        assert type(result.error) is APIConnectionError, result.error
        assert "certificate verification failed" in str(result.error)
        assert server.requests == []


def test_tls_wrong_host_rejected(client_kind: str, tls: TLSSetup) -> None:
    with BackendApiTestServer(ssl_context=tls.wrong_host_context) as server:
        result = stream(client_kind, server.url, ssl=str(tls.ca_path))

        assert type(result.error) is APIConnectionError, result.error
        assert "certificate verification failed" in str(result.error)
        assert server.requests == []


# --------------------------------------------------------------------------- proxies


def proxied_stream(
    kind: str, server: BackendApiTestServer, **options: Any
) -> Tuple[Result, threading.Event]:
    """Stream a reply that the server only finishes once the client has its first event.

    A proxy (or client) that buffers the answer never hands out that event, so the stream
    ends in a read timeout instead of succeeding.
    """
    release = threading.Event()
    server.reply(Reply([FIRST, Wait(release), SECOND, FINISH]))

    def on_event(event: RawResponse) -> None:
        release.set()

    try:
        result = run_stream(
            kind,
            server.url,
            client_options={"timeout": Timeout(connect=5, read=3), **options},
            on_event=on_event,
        )
    finally:
        release.set()
    return result, release


def test_explicit_proxy(
    client_kind: str, backendapi_server: BackendApiTestServer, proxy: ForwardingProxy
) -> None:
    result, _ = proxied_stream(client_kind, backendapi_server, proxy=proxy.url)

    assert result.error is None
    assert result.events == GOOD_EVENTS
    (proxied,) = proxy.requests
    assert proxied.method == "POST"
    assert proxied.target == backendapi_server.url + CONVERSATION_PATH
    (received,) = backendapi_server.requests
    assert received.json["messages"] == MESSAGES


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])
def test_proxy_from_environment(
    client_kind: str,
    variable: str,
    backendapi_server: BackendApiTestServer,
    proxy: ForwardingProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(variable, proxy.url)

    result, _ = proxied_stream(client_kind, backendapi_server)

    assert result.error is None
    assert result.events == GOOD_EVENTS
    (proxied,) = proxy.requests
    assert proxied.target == backendapi_server.url + CONVERSATION_PATH
    assert len(backendapi_server.requests) == 1


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio has TLS in TLS from 3.11")
@pytest.mark.parametrize("given", ["environment", "argument"])
def test_https_proxy(
    client_kind: str,
    tls: TLSSetup,
    https_proxy: TLSForwardingProxy,
    monkeypatch: pytest.MonkeyPatch,
    given: str,
) -> None:
    # requests used an https:// proxy from HTTPS_PROXY; the async client ignored it
    # (aiohttp's rule from before asyncio could run TLS inside TLS).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_path))  # trusts proxy and server
    options: Dict[str, Any] = {}
    if given == "environment":
        monkeypatch.setenv("HTTPS_PROXY", https_proxy.url)
    else:
        options["proxy"] = https_proxy.url
    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        server.reply(GOOD)
        result = stream(client_kind, server.url, **options)
        address = server.url.split("//")[1]

    assert result.error is None
    assert result.events == GOOD_EVENTS
    (proxied,) = https_proxy.requests
    assert (proxied.method, proxied.target) == ("CONNECT", address)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio has TLS in TLS from 3.11")
def test_https_proxy_with_an_untrusted_certificate(
    client_kind: str,
    tls: TLSSetup,
    https_proxy: TLSForwardingProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ssl= another CA's bundle trusts neither the proxy nor the server: both clients
    # check the proxy's certificate with it, and fail there, before any CONNECT.
    monkeypatch.setenv("HTTPS_PROXY", https_proxy.url)
    with BackendApiTestServer(ssl_context=tls.server_context) as server:
        result = stream(client_kind, server.url, ssl=str(tls.other_ca_path))

        assert type(result.error) is APIConnectionError, result.error
        assert https_proxy.requests == []
        assert server.requests == []


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio has TLS in TLS from 3.11")
@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
def test_https_proxy_for_a_plain_http_server(
    client_kind: str,
    tls: TLSSetup,
    https_proxy: TLSForwardingProxy,
    backendapi_server: BackendApiTestServer,
    monkeypatch: pytest.MonkeyPatch,
    trusted: bool,
) -> None:
    # requests left an https:// proxy's certificate unchecked when the server's URL
    # was http:// (a warning, and on it went); aiohttp checked it. Both check it now.
    monkeypatch.setenv("HTTP_PROXY", https_proxy.url)
    if trusted:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_path))
    backendapi_server.reply(GOOD)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = stream(client_kind, backendapi_server.url)

    assert insecure_warnings(seen) == []
    if trusted:
        assert result.error is None
        assert result.events == GOOD_EVENTS
        assert [request.method for request in https_proxy.requests] == ["POST"]
    else:
        assert type(result.error) is APIConnectionError, result.error
        assert "certificate verification failed" in str(result.error)
        assert https_proxy.requests == []
        assert backendapi_server.requests == []


def test_scheme_proxy_wins_over_all_proxy(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    proxy: ForwardingProxy,
    monkeypatch: pytest.MonkeyPatch,
    refused_url: str,
) -> None:
    monkeypatch.setenv("ALL_PROXY", refused_url)  # nothing listens there
    monkeypatch.setenv("HTTP_PROXY", proxy.url)

    result, _ = proxied_stream(client_kind, backendapi_server)

    assert result.error is None
    assert result.events == GOOD_EVENTS
    assert len(proxy.requests) == 1


@pytest.mark.parametrize("proxy_variable", ["HTTP_PROXY", "ALL_PROXY"])
@pytest.mark.parametrize("variable", ["NO_PROXY", "no_proxy"])
def test_no_proxy_bypasses_proxy(
    client_kind: str,
    variable: str,
    proxy_variable: str,
    backendapi_server: BackendApiTestServer,
    proxy: ForwardingProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(proxy_variable, proxy.url)
    monkeypatch.setenv(variable, "127.0.0.1")

    result, _ = proxied_stream(client_kind, backendapi_server)

    assert result.error is None
    assert result.events == GOOD_EVENTS
    assert proxy.requests == []
    assert len(backendapi_server.requests) == 1


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def netrc_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A .netrc with credentials for 127.0.0.1, named by $NETRC."""
    path = tmp_path / "netrc"
    path.write_text("machine 127.0.0.1 login netrc-user password netrc-pw\n")
    path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(path))
    return path


def test_netrc_credentials_reach_the_server(
    client_kind: str, backendapi_server: BackendApiTestServer, netrc_file: Path
) -> None:
    backendapi_server.reply(GOOD)
    result = stream(client_kind, backendapi_server.url)

    assert result.error is None
    (received,) = backendapi_server.requests
    assert received.headers["Authorization"] == basic("netrc-user", "netrc-pw")


def test_an_authorization_header_wins_over_netrc(
    client_kind: str, backendapi_server: BackendApiTestServer, netrc_file: Path
) -> None:
    backendapi_server.reply(GOOD)
    result = stream(
        client_kind, backendapi_server.url, headers={"authorization": "Bearer my-own-token"}
    )

    assert result.error is None
    (received,) = backendapi_server.requests
    assert received.headers.getall("Authorization") == ["Bearer my-own-token"]


def test_proxy_credentials_from_the_environment(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    proxy: ForwardingProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://p-user:p%40ss@"))

    result, _ = proxied_stream(client_kind, backendapi_server)

    assert result.error is None
    (proxied,) = proxy.requests
    assert proxied.headers["Proxy-Authorization"] == basic("p-user", "p@ss")
    (received,) = backendapi_server.requests
    assert "Proxy-Authorization" not in received.headers


def test_netrc_credentials_for_an_environment_proxy(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    proxy: ForwardingProxy,
    netrc_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiohttp's rule, in both clients: a proxy from the environment given without
    credentials gets those of its host in .netrc (requests alone has no such rule)."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)

    result, _ = proxied_stream(client_kind, backendapi_server)

    assert result.error is None
    (proxied,) = proxy.requests
    assert proxied.headers["Proxy-Authorization"] == basic("netrc-user", "netrc-pw")


def test_a_change_to_the_environment_counts_for_the_next_request(
    client_kind: str,
    backendapi_server: BackendApiTestServer,
    proxy: ForwardingProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One client, three requests: direct, then through HTTP_PROXY, then direct again."""
    backendapi_server.default_reply = GOOD
    seen: List[int] = []

    def through_proxy_then_not() -> None:
        seen.append(len(proxy.requests))
        if len(seen) == 1:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
        else:
            monkeypatch.delenv("HTTP_PROXY", raising=False)

    if client_kind == "sync":
        with BackendApiClient(backendapi_server.url, timeout=TEST_TIMEOUT) as client:
            for _ in range(3):
                assert len(list(client.create("m", MESSAGES))) == len(GOOD_EVENTS)
                through_proxy_then_not()
    else:

        async def main() -> None:
            async with AsyncBackendApiClient(backendapi_server.url, timeout=TEST_TIMEOUT) as client:
                for _ in range(3):
                    assert len([e async for e in client.create("m", MESSAGES)]) == len(GOOD_EVENTS)
                    through_proxy_then_not()

        asyncio.run(main())
    assert seen == [0, 1, 1]
    assert len(backendapi_server.requests) == 3


def test_concurrent_requests_share_one_reading_of_the_environment(
    backendapi_server: BackendApiTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A count, not a timing: the environment is read once for requests started together."""
    backendapi_server.default_reply = GOOD
    readings: List[int] = []
    getproxies = urllib.request.getproxies

    def counting_getproxies() -> Dict[str, str]:
        readings.append(1)
        return getproxies()

    monkeypatch.setattr(urllib.request, "getproxies", counting_getproxies)

    async def one(client: AsyncBackendApiClient) -> int:
        return len([event async for event in client.create("m", MESSAGES)])

    async def main() -> List[int]:
        async with AsyncBackendApiClient(backendapi_server.url, timeout=TEST_TIMEOUT) as client:
            await one(client)  # the session exists from here on
            readings.clear()
            return await asyncio.gather(*(one(client) for _ in range(20)))

    assert asyncio.run(main()) == [len(GOOD_EVENTS)] * 20
    assert len(readings) == 1


# --------------------------------------------------------------------------- the request target


def test_both_clients_send_a_query_string_byte_for_byte_alike(
    client_kind: str, raw_server: RawAnswerServer
) -> None:
    """The core's urlencode()d query goes out as it is: yarl would requote %2F, %27..."""
    raw_server.answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\nok"
    )
    url = raw_server.url + "/pre%7Efix/a b"
    prompt = "a b+c&d=e/\u00e9~'*()!%7E%2F"
    if client_kind == "sync":
        with BackendApiClient(url, max_retries=0) as client:
            answer = client.create_text(prompt, model="m/x", provider="P q")
    else:

        async def main() -> str:
            async with AsyncBackendApiClient(url, max_retries=0) as client:
                return await client.create_text(prompt, model="m/x", provider="P q")

        answer = asyncio.run(main())
    assert answer == "ok"
    assert raw_server.request_lines == [
        b"GET /pre~fix/a%20b/backend-api/v2/create?prompt=a+b%2Bc%26d%3De%2F%C3%A9~"
        b"%27%2A%28%29%21%257E%252F&model=m%2Fx&provider=P+q HTTP/1.1"
    ]


# --------------------------------------------------------------------------- no HTTP

SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n"
SSE_BODY = b'data: {"type": "content", "content": "Hi"}\n\n'


@pytest.mark.parametrize(
    "answer",
    [b"SSH-2.0-OpenSSH_9.6\r\n", b"hello\n", b"HTTP/1.1 abc OK\r\n\r\n"],
    ids=["ssh", "text", "bad-status"],
)
def test_an_answer_that_is_no_http_is_not_retried(
    client_kind: str, raw_server: RawAnswerServer, answer: bytes
) -> None:
    # A base_url pointing at the wrong port: asking again gives the same answer.
    raw_server.answer = answer

    result = stream(client_kind, raw_server.url, max_retries=2)

    assert type(result.error) is APIConnectionError, result.error
    assert str(result.error).startswith(
        f"invalid HTTP response from {raw_server.url}{CONVERSATION_PATH}: "
    )
    assert "\n" not in str(result.error)
    assert raw_server.connections == 1


def _optional_coding_decoded(coding: str) -> bool:
    """Whether either client's library could decode ``coding`` here (a library installed)."""
    import aiohttp.compression_utils
    import urllib3.response

    flag = {"br": "HAS_BROTLI", "zstd": "HAS_ZSTD"}[coding]
    return coding in urllib3.response.HTTPResponse.CONTENT_DECODERS or bool(
        getattr(aiohttp.compression_utils, flag, False)
    )


BAD_HEADS = {
    # Both Content-Length and chunked: RFC 9112 6.3 says to treat it as an error.
    "length-and-chunked": b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
    b"5\r\nabcde\r\n0\r\n\r\n",
    "two-lengths": b"Content-Length: 10\r\nContent-Length: 12\r\n\r\n0123456789ab",
    "br": b"Content-Encoding: br\r\nContent-Length: 5\r\n\r\nabcde",
    "zstd": b"Content-Encoding: zstd\r\nContent-Length: 5\r\n\r\nabcde",
}


@pytest.mark.parametrize("status", [b"200 OK", b"401 Unauthorized"])
@pytest.mark.parametrize("head", sorted(BAD_HEADS))
def test_an_answer_head_that_aiohttp_refuses_is_refused_by_both(
    client_kind: str, raw_server: RawAnswerServer, head: str, status: bytes
) -> None:
    """http.client and urllib3 would go on (and read compressed bytes as events)."""
    if head in ("br", "zstd") and _optional_coding_decoded(head):
        pytest.skip(f"a library that decodes {head} is installed")
    raw_server.answer = (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: text/event-stream\r\n"
        b"Connection: close\r\n" + BAD_HEADS[head]
    )

    result = stream(client_kind, raw_server.url, max_retries=2)

    assert type(result.error) is APIConnectionError, result.error
    message = str(result.error)
    assert message.startswith(f"invalid HTTP response from {raw_server.url}{CONVERSATION_PATH}: ")
    if head in ("br", "zstd"):
        assert f"({head})" in message or repr(head) in message
    assert raw_server.connections == 1  # not retried
    assert result.events == []


def check_head_taken(result: Result, raw_server: RawAnswerServer, ok: bool) -> None:
    """The stream read SSE_BODY if ``ok``, else failed at once on the answer's head."""
    if ok:
        assert result.error is None
        assert [event.get("content") for event in result.events] == ["Hi"]
    else:
        assert type(result.error) is APIConnectionError, result.error
        assert "invalid HTTP response" in str(result.error)
        assert raw_server.connections == 1  # not retried


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        (97, True),  # with the two of SSE_HEAD: 99 header lines
        (98, False),
    ],
    ids=["99-lines", "100-lines"],
)
def test_answer_header_count_limit(
    client_kind: str, raw_server: RawAnswerServer, headers: int, ok: bool
) -> None:
    # http.client refuses a 100th header line (its limit of 100 counts the blank
    # line); the async client is held to the same (aiohttp's own default is 128).
    if (
        client_kind == "async"
        and "max_headers" not in inspect.signature(aiohttp.ClientSession).parameters
    ):
        pytest.skip("aiohttp < 3.13.4 has no max_headers: its fixed limit is 32768")
    extra = b"".join(b"X-H%d: v\r\n" % i for i in range(headers))
    raw_server.answer = SSE_HEAD + extra + b"\r\n" + SSE_BODY

    check_head_taken(stream(client_kind, raw_server.url, max_retries=2), raw_server, ok)


@pytest.mark.parametrize(("size", "ok"), [(20_000, True), (70_000, False)])
def test_answer_header_line_limit(
    client_kind: str, raw_server: RawAnswerServer, size: int, ok: bool
) -> None:
    # http.client takes header lines of up to 64 KiB; aiohttp's default is 8190 bytes,
    # so a 20 kB cookie or policy header used to fail in the async client alone.
    raw_server.answer = SSE_HEAD + b"X-Big: " + b"a" * size + b"\r\n\r\n" + SSE_BODY

    check_head_taken(stream(client_kind, raw_server.url, max_retries=2), raw_server, ok)


# --------------------------------------------------------------------------- base_url credentials


def with_credentials(url: str, userinfo: str) -> str:
    return url.replace("://", f"://{userinfo}@", 1)


def test_credentials_in_base_url_go_as_basic_auth_and_are_never_shown(
    client_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Percent-encoded, as a URL carries them: the server gets "me@home" / "p:ss w0rd".
    caplog.set_level(logging.DEBUG, logger="backendapi")
    with BackendApiTestServer() as server:
        server.reply(GOOD)
        url = with_credentials(server.url, "me%40home:p%3Ass%20w0rd")
        client = CLIENTS[client_kind](url, timeout=TEST_TIMEOUT)
        shown = [repr(client), client.base_url]

        errors = errors_in_turns(client_kind, url, [lambda: None])

        (request,) = server.requests
        assert request.headers["Authorization"] == basic("me@home", "p:ss w0rd")
        assert client.base_url == server.url
        plain_url = server.url
    assert errors == [None]
    logged = [record.getMessage() for record in caplog.records]
    assert any(plain_url in line for line in logged)  # the URL is logged, without them
    for text in shown + logged:
        assert "w0rd" not in text and "me%40home" not in text, text


def test_credentials_in_base_url_are_not_in_errors(client_kind: str, refused_url: str) -> None:
    (error,) = errors_in_turns(
        client_kind, with_credentials(refused_url, "me:s3cret"), [lambda: None]
    )

    assert type(error) is APIConnectionError, error
    assert refused_url in str(error)
    assert "s3cret" not in str(error) and "s3cret" not in str(error.url)


def test_credentials_in_base_url_and_an_authorization_header(client_kind: str) -> None:
    # requests let the URL's credentials replace the header, aiohttp refused the two.
    with pytest.raises(InvalidInputError, match="credentials") as caught:
        CLIENTS[client_kind](
            "http://me:s3cret@127.0.0.1:8080", headers={"Authorization": "Bearer token"}
        )
    assert "s3cret" not in str(caught.value)


# --------------------------------------------------------------------------- cookies


def with_cookie(reply: Reply) -> Reply:
    return dataclasses.replace(reply, headers={"Set-Cookie": "session=abc; Path=/"})


def stream_in_turns(kind: str, url: str, turns: int, new_loop_each_turn: bool = False) -> None:
    """Stream ``turns`` conversations one after another through one client."""
    if kind == "sync":
        with BackendApiClient(url, timeout=TEST_TIMEOUT) as client:
            for _ in range(turns):
                with client.create("m", MESSAGES) as stream:
                    list(stream)
        return

    async def turn(client: AsyncBackendApiClient) -> None:
        async with client.create("m", MESSAGES) as stream:
            async for _ in stream:
                pass

    if new_loop_each_turn:
        client = AsyncBackendApiClient(url, timeout=TEST_TIMEOUT)
        for _ in range(turns):
            asyncio.run(turn(client))
        asyncio.run(client.aclose())
        return

    async def main() -> None:
        async with AsyncBackendApiClient(url, timeout=TEST_TIMEOUT) as client:
            for _ in range(turns):
                await turn(client)

    asyncio.run(main())


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_cookies_are_sent_back_by_both_clients(client_kind: str, host: str) -> None:
    # aiohttp's default cookie jar drops the cookies of a server reached by IP
    # address; requests keeps them, so the async client's jar keeps them too.
    with BackendApiTestServer() as server:
        server.reply(with_cookie(GOOD), GOOD)

        stream_in_turns(client_kind, server.url.replace("127.0.0.1", host), 2)

        assert [request.headers.get("Cookie") for request in server.requests] == [
            None,
            "session=abc",
        ]


def test_cookies_outlive_the_event_loop_of_the_async_client() -> None:
    # The async client makes a session per event loop (asyncio.run twice); its
    # cookies stay the client's, as a BackendApiClient's do.
    with BackendApiTestServer() as server:
        server.reply(with_cookie(GOOD), GOOD)

        stream_in_turns("async", server.url, 2, new_loop_each_turn=True)

        assert [request.headers.get("Cookie") for request in server.requests] == [
            None,
            "session=abc",
        ]
        assert server.connections_accepted == 2  # two loops: two sessions


# --------------------------------------------------------------------------- bad arguments


BAD_CONSTRUCTOR_ARGUMENTS: List[Tuple[str, Callable[[], Dict[str, Any]], str]] = [
    ("max_retries=-1", lambda: {"max_retries": -1}, "max_retries"),
    ("max_retries=str", lambda: {"max_retries": "2"}, "max_retries"),
    ("max_retries=2.0", lambda: {"max_retries": 2.0}, "max_retries"),
    ("timeout=-1", lambda: {"timeout": -1}, "timeout"),
    ("timeout=0", lambda: {"timeout": 0}, "timeout"),
    ("timeout=str", lambda: {"timeout": "5"}, "timeout"),
    ("Timeout(read=0)", lambda: {"timeout": Timeout(read=0)}, "read"),
    ("Timeout(connect=-1)", lambda: {"timeout": Timeout(connect=-1)}, "connect"),
    ("Timeout(total=0)", lambda: {"timeout": Timeout(total=0)}, "total"),
    ("Timeout(read=str)", lambda: {"timeout": Timeout(read="5")}, "read"),
    ("proxy=123", lambda: {"proxy": 123}, "proxy"),
    ("proxy=not-a-url", lambda: {"proxy": "not a url"}, "proxy"),
    ("max_connections=0", lambda: {"max_connections": 0}, "max_connections"),
    ("max_connections=str", lambda: {"max_connections": "10"}, "max_connections"),
    ("ssl=123", lambda: {"ssl": 123}, "ssl"),
    ("ssl=missing-file", lambda: {"ssl": "/no/such/ca-bundle.pem"}, "ssl"),
    ("max_event_size=0", lambda: {"max_event_size": 0}, "max_event_size"),
    ("api_key=123", lambda: {"api_key": 123}, "api_key"),
]


def construct(kind: str, options: Callable[[], Dict[str, Any]]) -> Tuple[Any, List[str]]:
    """Build the `kind` client with ``options()``; return (what it raised, unraisable errors).

    The half-built client is released (and any ``__del__`` run) before returning, with the
    interpreter's unraisable-exception hook recording what such a finaliser raised.
    """
    unraisable: List[str] = []
    previous = sys.unraisablehook

    def hook(info: Any) -> None:
        unraisable.append(f"{type(info.exc_value).__name__}: {info.exc_value} in {info.object}")

    sys.unraisablehook = hook
    try:
        try:
            client = CLIENTS[kind]("http://127.0.0.1:9", **options())
        except Exception as exc:
            raised: Any = exc
            exc.__traceback__ = None  # drops the frames holding the half-built client
        else:
            raised = None
            if kind == "sync":
                client.close()
            del client
        gc.collect()
    finally:
        sys.unraisablehook = previous
    return raised, unraisable


@pytest.mark.parametrize(
    ("options", "name"),
    [pytest.param(options, name, id=label) for label, options, name in BAD_CONSTRUCTOR_ARGUMENTS],
)
def test_bad_constructor_argument(
    client_kind: str, options: Callable[[], Dict[str, Any]], name: str
) -> None:
    raised, _ = construct(client_kind, options)

    assert isinstance(raised, InvalidInputError), raised
    assert isinstance(raised, (ValueError, TypeError))
    assert name in str(raised), str(raised)


def test_failed_constructor_is_silent(client_kind: str) -> None:
    raised, unraisable = construct(client_kind, lambda: {"max_retries": -1})

    assert isinstance(raised, InvalidInputError)
    assert unraisable == []


BAD_CREATE_ARGUMENTS: List[Tuple[str, Dict[str, Any], str]] = [
    ("model=123", {"model": 123, "messages": MESSAGES}, "model"),
    ("messages=str", {"model": "m", "messages": "Hello"}, "messages"),
    ("messages=[]", {"model": "m", "messages": []}, "messages"),
    ("api_key=123", {"model": "m", "messages": MESSAGES, "api_key": 123}, "api_key"),
    ("media=123", {"model": "m", "messages": MESSAGES, "media": 123}, "media"),
]


@pytest.mark.parametrize(
    ("arguments", "name"),
    [pytest.param(arguments, name, id=label) for label, arguments, name in BAD_CREATE_ARGUMENTS],
)
def test_bad_create_argument(
    client_kind: str, arguments: Dict[str, Any], name: str, silent_server: SilentServer
) -> None:
    client = CLIENTS[client_kind](silent_server.url)
    try:
        with pytest.raises(InvalidInputError) as caught:
            client.create(**arguments)
    finally:
        if client_kind == "sync":
            client.close()
    assert name in str(caught.value), str(caught.value)
    assert silent_server.connections() == 0  # raised before any network call


def test_legal_header_values_go_as_they_are(client_kind: str) -> None:
    # A tab, inner spaces, an empty value and every printable ASCII
    # character are legal; both clients send them byte for byte.
    headers = {
        "X-Tab": "a\tb",
        "X-Spaces": "a  b",
        "X-Empty": "",
        "X-Printable": "".join(map(chr, range(0x21, 0x7F))),
        "x-lower_case.name~": "1",
    }
    with BackendApiTestServer() as server:
        result = run_stream(client_kind, server.url, client_options={"headers": headers})
        (request,) = server.requests

    assert result.error is None
    for name, value in headers.items():
        assert request.headers[name] == value


# --------------------------------------------------------------------------- the doc


def _test_names(path: Path) -> List[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.startswith("test_")
    ]


def test_reliability_doc_names_existing_tests() -> None:
    """Every test named in docs/reliability.md exists, and every test here is named there."""
    doc = DOC.read_text(encoding="utf-8")
    listed: Dict[str, Optional[str]] = {}
    for line in doc.splitlines():
        if not line.lstrip().startswith("|"):
            continue
        for module, name in re.findall(
            r"`(?:(?:tests/)?(test_\w+\.py)::)?(test_\w+)(?:\[[^\]`]*\])?`", line
        ):
            listed[name] = module or None
    assert listed, f"no test names found in the tables of {DOC}"

    modules = {path.name: set(_test_names(path)) for path in Path(__file__).parent.glob("*.py")}
    everywhere = set().union(*modules.values())
    missing = sorted(
        name
        for name, module in listed.items()
        if name not in (modules.get(module, set()) if module else everywhere)
    )
    assert missing == [], f"{DOC.name} names tests that do not exist: {missing}"

    unlisted = sorted(set(_test_names(Path(__file__))) - set(listed))
    assert unlisted == [], f"tests of {Path(__file__).name} missing from {DOC.name}: {unlisted}"


def test_a_reading_of_the_environment_does_not_outlive_its_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A loop stopped before its reading expired must not hand it to the next loop."""
    environment = Environment()
    url = "http://backend.test/backend-api/v2/conversation"

    async def route() -> Any:
        loop = asyncio.get_running_loop()
        reading, fresh = environment.read(loop)
        if fresh:
            loop.call_soon(environment.expire)
        return reading.route(url, None, False)

    first = asyncio.new_event_loop()
    try:
        task = first.create_task(route())
        first.call_soon(first.stop)
        first.run_forever()  # one iteration: the reading is taken, its expiry never runs
        assert (task.result().proxy, task.result().headers) == (None, {})
    finally:
        first.close()
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
    found = asyncio.run(route())
    assert found.proxy == "http://proxy.test:3128"
    assert found.headers == {}
