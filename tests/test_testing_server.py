"""The test server, checked byte by byte over raw sockets and http.client."""

from __future__ import annotations

import gc
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from leaks import recorded_leaks
from loopback import TLSSetup
from scripted import CONVERSATION_PATH, FINISH, FIRST, WAIT

from backendapi.testing import (
    STREAM_CONTENT_TYPE,
    BackendApiTestServer,
    Cut,
    Hold,
    Pause,
    RecordedRequest,
    Reply,
    Wait,
)

DATA = Path(__file__).parent / "data"
FIRST_SSE = b'event: content\ndata: {"type": "content", "content": "Hello"}\n\n'
FINISH_SSE = b'event: finish\ndata: {"type": "finish", "finish": {"reason": "stop"}}\n\n'


class RawConnection:
    """A client that shows the response exactly as it travels, framing included."""

    def __init__(self, server: BackendApiTestServer) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=WAIT)
        self.buffer = b""

    def post(self, body: bytes, content_type: str = "application/json") -> None:
        self.sock.sendall(
            f"POST {CONVERSATION_PATH} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.buffer += data

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._fill()
        end = self.buffer.index(marker) + len(marker)
        data, self.buffer = self.buffer[:end], self.buffer[end:]
        return data

    def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_to_close(self) -> bytes:
        try:
            while True:
                self._fill()
        except EOFError:
            data, self.buffer = self.buffer, b""
            return data

    def read_head(self) -> tuple[int, dict[str, str]]:
        status_line, *lines = self.read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        headers = {}
        for line in filter(None, lines):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), headers

    def read_chunk(self) -> bytes:
        """One chunk's data; b"" for the terminating chunk."""
        size = int(self.read_until(b"\r\n"), 16)
        data = self.read_exactly(size)
        assert self.read_exactly(2) == b"\r\n"
        return data

    def read_chunks(self) -> list[bytes]:
        """All chunks up to the terminating one, which must be there."""
        chunks = []
        while chunk := self.read_chunk():
            chunks.append(chunk)
        return chunks


@contextmanager
def connect(server: BackendApiTestServer) -> Iterator[RawConnection]:
    conn = RawConnection(server)
    try:
        yield conn
    finally:
        conn.sock.close()


def post(server: BackendApiTestServer, payload: Any = None) -> tuple[int, dict[str, str], bytes]:
    """Post one conversation request and read the whole (chunked) answer."""
    with connect(server) as conn:
        conn.post(json.dumps(payload or {"model": "", "messages": []}).encode())
        status, headers = conn.read_head()
        if headers.get("transfer-encoding") == "chunked":
            body = b"".join(conn.read_chunks())
        else:
            body = conn.read_exactly(int(headers["content-length"]))
        return status, headers, body


def get_json(server: BackendApiTestServer, path: str) -> tuple[int, Any]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=WAIT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def content_of(sse_body: bytes) -> str:
    """The answer text carried by the content events of an SSE body."""
    lines = sse_body.split(b"\n")
    events = [json.loads(line[len(b"data: ") :]) for line in lines if line.startswith(b"data: ")]
    return "".join(event["content"] for event in events if event["type"] == "content")


def last_request(server: BackendApiTestServer) -> RecordedRequest:
    assert server.wait_for_requests(1, WAIT)
    return server.requests[-1]


# Framing


@pytest.mark.parametrize("name", ["conversation", "provider-error"])
def test_sse_framing_reproduces_the_g4f_transcript(
    backendapi_server: BackendApiTestServer, name: str
) -> None:
    ndjson = (DATA / f"g4f-pre-2025-12-{name}.ndjson").read_bytes()
    events = [json.loads(line) for line in ndjson.splitlines()]
    backendapi_server.reply(Reply(events))
    status, headers, body = post(backendapi_server)
    assert status == 200
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert body == (DATA / f"g4f-8.8.6-{name}.sse").read_bytes()


@pytest.mark.parametrize("name", ["conversation", "provider-error"])
def test_ndjson_framing_reproduces_the_old_g4f_transcript(
    backendapi_server: BackendApiTestServer, name: str
) -> None:
    ndjson = (DATA / f"g4f-pre-2025-12-{name}.ndjson").read_bytes()
    events = [json.loads(line) for line in ndjson.splitlines()]
    backendapi_server.reply(Reply(events, framing="ndjson"))
    status, headers, body = post(backendapi_server)
    assert (status, headers["content-type"]) == (200, STREAM_CONTENT_TYPE)
    assert body == ndjson


def test_event_without_type_gets_only_a_data_line(backendapi_server: BackendApiTestServer) -> None:
    backendapi_server.reply(Reply([{"content": "x"}]))
    assert post(backendapi_server)[2] == b'data: {"content": "x"}\n\n'


def test_bytes_items_are_written_as_given(backendapi_server: BackendApiTestServer) -> None:
    backendapi_server.reply(Reply([b": keep-alive\r\n", FIRST, b"data: {not json\n\n"]))
    assert post(backendapi_server)[2] == b": keep-alive\r\n" + FIRST_SSE + b"data: {not json\n\n"


# Transfer encodings


def test_chunked_sends_each_item_as_one_chunk(backendapi_server: BackendApiTestServer) -> None:
    backendapi_server.reply(Reply([FIRST, FINISH]))
    with connect(backendapi_server) as conn:
        conn.post(b"{}")
        _, headers = conn.read_head()
        assert headers["transfer-encoding"] == "chunked"
        assert "content-length" not in headers
        assert conn.read_chunks() == [FIRST_SSE, FINISH_SSE]


def test_write_size_splits_items_into_chunks(backendapi_server: BackendApiTestServer) -> None:
    backendapi_server.reply(Reply([FIRST, FINISH], write_size=7))
    with connect(backendapi_server) as conn:
        conn.post(b"{}")
        conn.read_head()
        chunks = conn.read_chunks()
    # Each item is split on its own: no chunk holds the end of one and the start of the next.
    expected = [item[i : i + 7] for item in (FIRST_SSE, FINISH_SSE) for i in range(0, len(item), 7)]
    assert chunks == expected


def test_close_delimited_body_has_no_length_and_ends_at_close(
    backendapi_server: BackendApiTestServer,
) -> None:
    backendapi_server.reply(Reply([FIRST, Pause(0.01), FINISH], transfer="close"))
    with connect(backendapi_server) as conn:
        conn.post(b"{}")
        status, headers = conn.read_head()
        assert status == 200
        assert "content-length" not in headers
        assert "transfer-encoding" not in headers
        assert headers["connection"] == "close"
        assert conn.read_to_close() == FIRST_SSE + FINISH_SSE


def test_length_sends_the_whole_body_with_content_length(
    backendapi_server: BackendApiTestServer,
) -> None:
    backendapi_server.reply(Reply([FIRST, FINISH], framing="ndjson", transfer="length"))
    _, headers, body = post(backendapi_server)
    assert "transfer-encoding" not in headers
    assert int(headers["content-length"]) == len(body)
    assert body == json.dumps(FIRST).encode() + b"\n" + json.dumps(FINISH).encode() + b"\n"


# Scripted transport behaviour


def test_cut_leaves_a_chunked_body_without_its_last_chunk(
    backendapi_server: BackendApiTestServer,
) -> None:
    backendapi_server.reply(Reply([FIRST, Cut(), FINISH]))
    with connect(backendapi_server) as conn:
        conn.post(b"{}")
        conn.read_head()
        assert conn.read_chunk() == FIRST_SSE
        with pytest.raises(EOFError):
            conn.read_chunk()
        assert conn.buffer == b""
    # The server cut the connection itself: that is no client disconnect.
    request = last_request(backendapi_server)
    assert request.finished.wait(WAIT)
    assert not request.disconnected.is_set()


def test_cut_leaves_a_length_body_short(backendapi_server: BackendApiTestServer) -> None:
    backendapi_server.reply(Reply([FIRST, Cut(), FINISH], transfer="length"))
    with connect(backendapi_server) as conn:
        conn.post(b"{}")
        _, headers = conn.read_head()
        assert int(headers["content-length"]) == len(FIRST_SSE) + len(FINISH_SSE)
        assert conn.read_to_close() == FIRST_SSE


def test_wait_holds_the_rest_back_until_the_test_releases_it(
    backendapi_server: BackendApiTestServer,
) -> None:
    release = threading.Event()
    backendapi_server.reply(Reply([FIRST, Wait(release), FINISH]))
    with connect(backendapi_server) as conn:
        conn.post(b"{}")
        conn.read_head()
        # Only reachable if the first event is sent while the second is still held back.
        assert conn.read_chunk() == FIRST_SSE
        request = last_request(backendapi_server)
        assert not request.finished.is_set()
        release.set()
        assert conn.read_chunks() == [FINISH_SSE]
    assert request.finished.wait(WAIT)


def test_pause_delays_the_next_item(backendapi_server: BackendApiTestServer) -> None:
    backendapi_server.reply(Reply([FIRST, Pause(0.2), FINISH]))
    with connect(backendapi_server) as conn:
        conn.post(b"{}")
        conn.read_head()
        assert conn.read_chunk() == FIRST_SSE
        first_arrived = time.monotonic()
        assert conn.read_chunks() == [FINISH_SSE]
        assert time.monotonic() - first_arrived >= 0.15


def test_client_closing_during_hold_sets_disconnected(
    backendapi_server: BackendApiTestServer,
) -> None:
    backendapi_server.reply(Reply([FIRST, Hold(), FINISH]))
    with connect(backendapi_server) as conn:
        conn.post(b"{}")
        conn.read_head()
        assert conn.read_chunk() == FIRST_SSE
        request = last_request(backendapi_server)
        assert not request.disconnected.is_set()
        assert not request.finished.is_set()
    assert request.disconnected.wait(WAIT)
    assert request.finished.wait(WAIT)


def test_client_closing_during_wait_sets_disconnected(
    backendapi_server: BackendApiTestServer,
) -> None:
    never = threading.Event()
    backendapi_server.reply(Reply([Wait(never), FIRST]))
    with connect(backendapi_server) as conn:
        conn.post(b"{}")
        assert conn.read_head()[0] == 200
    request = last_request(backendapi_server)
    assert request.disconnected.wait(WAIT)
    never.set()  # lets the helper thread of Wait end


def test_stop_during_hold_returns_at_once_without_a_disconnect() -> None:
    # A Hold() left to the shutdown timeout would make stop() take 60 seconds.
    server = BackendApiTestServer(shutdown_timeout=60)
    with server, connect(server) as conn:
        server.reply(Reply([FIRST, Hold()]))
        conn.post(b"{}")
        conn.read_head()
        assert conn.read_chunk() == FIRST_SSE
        stopper = threading.Thread(target=server.stop, daemon=True)
        stopper.start()
        stopper.join(WAIT)
        assert not stopper.is_alive()
        request = server.requests[-1]
        assert request.finished.is_set()
        assert not request.disconnected.is_set()
        with pytest.raises(EOFError):
            conn.read_chunk()


@pytest.mark.parametrize("closed_first", [True, False], ids=["closed-first", "left-open"])
def test_stop_closes_a_connection_that_carried_no_request(closed_first: bool) -> None:
    # pytest turns a ResourceWarning (an unclosed transport) into an error, here
    # and when the garbage collector finds one later.
    server = BackendApiTestServer()
    server.start()
    sock = socket.create_connection((server.host, server.port), timeout=WAIT)
    try:
        assert server.wait_for_connections(1, WAIT)
        assert server.connections_accepted == 1
        if closed_first:
            sock.close()
        server.stop()
        if not closed_first:
            # The server closed its end: the client reads the end of the stream.
            assert sock.recv(1) == b""
    finally:
        sock.close()
        server.stop()
    gc.collect()
    assert server.requests == []


def test_stop_closes_a_tls_connection_the_client_keeps_open(tls: TLSSetup) -> None:
    # Closing a TLS connection waits for the client's close_notify; a client that keeps
    # its connection (a keep-alive pool, or a proxy's tunnel whose other end has not
    # closed yet) never sends one. The server's loop stopped with the socket open, and the
    # garbage collector found it in whatever test ran later: "unclosed transport".
    with recorded_leaks() as leaks:
        server = BackendApiTestServer(ssl_context=tls.server_context)
        with server:
            raw = socket.create_connection((server.host, server.port), timeout=WAIT)
            context = tls.private_ca_context()
            with context.wrap_socket(raw, server_hostname=server.host) as conn:
                conn.sendall(b"GET /backend-api/v2/version HTTP/1.1\r\nHost: test\r\n\r\n")
                answer = b""
                while b'"latest_version"' not in answer:  # the whole small JSON body
                    answer += conn.recv(65536)
                assert answer.startswith(b"HTTP/1.1 200 ")
                server.stop()  # the connection is kept alive, and the client still holds it
                assert conn.recv(1) == b""  # the server closed its end
    assert leaks == []


def test_stop_closes_a_connection_whose_client_stopped_reading() -> None:
    # Closing a plain connection waits until the client has taken the bytes still
    # buffered; this client takes none. A small receive window, set before connecting,
    # leaves most of the 16 MB event in the server's buffer.
    with recorded_leaks() as leaks:
        server = BackendApiTestServer()
        with server:
            server.reply(Reply([b"x" * (16 << 20), Hold()]))
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.settimeout(WAIT)
                sock.connect((server.host, server.port))
                sock.sendall(
                    f"POST {CONVERSATION_PATH} HTTP/1.1\r\nHost: test\r\n"
                    "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".encode()
                )
                assert sock.recv(12) == b"HTTP/1.1 200"
                server.stop()
    assert leaks == []


def test_wait_for_connections_times_out_without_one(
    backendapi_server: BackendApiTestServer,
) -> None:
    assert backendapi_server.wait_for_connections(1, 0.05) is False
    assert backendapi_server.connections_accepted == 0


# Conversation requests


def test_requests_are_recorded(backendapi_server: BackendApiTestServer) -> None:
    payload = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "api_key": "k"}
    body = json.dumps(payload).encode()
    connection = http.client.HTTPConnection(
        backendapi_server.host, backendapi_server.port, timeout=WAIT
    )
    try:
        connection.request(
            "POST",
            f"{CONVERSATION_PATH}?user=me",
            body=body,
            headers={"Content-Type": "application/json", "X-Custom": "yes"},
        )
        assert connection.getresponse().read()
    finally:
        connection.close()
    request = last_request(backendapi_server)
    assert (request.method, request.path, request.query) == (
        "POST",
        CONVERSATION_PATH,
        {"user": "me"},
    )
    assert request.body == body
    assert request.json == payload
    assert request.headers["x-custom"] == request.headers["X-CUSTOM"] == "yes"
    assert request.finished.wait(WAIT)
    assert not request.disconnected.is_set()


def test_multipart_body_is_parsed_from_the_json_field(
    backendapi_server: BackendApiTestServer,
) -> None:
    payload = {"model": "m", "messages": [{"role": "user", "content": "Look"}]}
    body = (
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="json"\r\n\r\n'
        + json.dumps(payload).encode()
        + b"\r\n--XyZ\r\n"
        b'Content-Disposition: form-data; name="files"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
        b"\x89PNG\r\n--XyZ--\r\n"
    )
    with connect(backendapi_server) as conn:
        conn.post(body, content_type="multipart/form-data; boundary=XyZ")
        assert conn.read_head()[0] == 200
    assert last_request(backendapi_server).json == payload


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"\xff\xfe", "application/json"),
        (
            b'--B\r\nContent-Disposition: form-data; name="other"\r\n\r\n{}\r\n--B--\r\n',
            "multipart/form-data; boundary=B",
        ),
    ],
)
def test_invalid_json_gets_400(
    backendapi_server: BackendApiTestServer, body: bytes, content_type: str
) -> None:
    backendapi_server.reply(Reply.answer("queued"))
    with connect(backendapi_server) as conn:
        conn.post(body, content_type)
        status, headers = conn.read_head()
        answer = json.loads(conn.read_exactly(int(headers["content-length"])))
    assert status == 400
    assert answer == {"error": {"message": "Invalid JSON data"}}
    assert last_request(backendapi_server).json is None
    # A rejected request does not use up a queued reply.
    assert content_of(post(backendapi_server)[2]) == "queued"


def test_unknown_provider_gets_404() -> None:
    with BackendApiTestServer(known_providers={"OpenaiChat"}) as server:
        status, _, body = post(server, {"provider": "Nope", "messages": []})
        assert (status, json.loads(body)) == (404, {"error": {"message": "Provider not found"}})
        assert post(server, {"provider": "OpenaiChat", "messages": []})[0] == 200
        assert post(server, {"provider": "ScriptedProvider", "messages": []})[0] == 200
        assert post(server, {"provider": "AnyProvider", "messages": []})[0] == 200
        assert post(server, {"messages": []})[0] == 200


def test_replies_are_used_in_order_then_the_default(
    backendapi_server: BackendApiTestServer,
) -> None:
    backendapi_server.reply(Reply([{"type": "content", "content": "one"}]))
    backendapi_server.reply(Reply([{"type": "content", "content": "two"}]), Reply([b"three"]))
    assert content_of(post(backendapi_server)[2]) == "one"
    assert content_of(post(backendapi_server)[2]) == "two"
    assert post(backendapi_server)[2] == b"three"
    assert content_of(post(backendapi_server)[2]) == "Hello from the test server"
    assert content_of(post(backendapi_server)[2]) == "Hello from the test server"
    backendapi_server.default_reply = Reply([b"default"])
    assert post(backendapi_server)[2] == b"default"
    assert post(backendapi_server)[2] == b"default"


def test_http_error_reply_has_g4f_body(backendapi_server: BackendApiTestServer) -> None:
    backendapi_server.reply(Reply.http_error(403, "Invalid or missing secret"))
    status, headers, body = post(backendapi_server)
    assert status == 403
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": {"message": "Invalid or missing secret"}}


def test_error_reply_sends_text_as_given(backendapi_server: BackendApiTestServer) -> None:
    page = "<html><body>502 Bad Gateway</body></html>"
    backendapi_server.reply(
        Reply(status=502, error=page, content_type="text/html", headers={"Retry-After": "3"})
    )
    status, headers, body = post(backendapi_server)
    assert (status, headers["content-type"], headers["retry-after"]) == (502, "text/html", "3")
    assert body == page.encode()


def test_extra_headers_and_content_type_on_streams(
    backendapi_server: BackendApiTestServer,
) -> None:
    backendapi_server.reply(
        Reply([FIRST], content_type="application/x-ndjson", headers={"X-Accel-Buffering": "no"})
    )
    _, headers, _ = post(backendapi_server)
    assert headers["content-type"] == "application/x-ndjson"
    assert headers["x-accel-buffering"] == "no"


# Replies


def test_answer_looks_like_a_g4f_transcript() -> None:
    reply = Reply.answer("Hi, wörld!", reasoning="hmm", title="T", conversation={"id": "c1"})
    types = [event["type"] for event in reply.events if isinstance(event, dict)]
    assert types[:3] == ["provider", "reasoning", "conversation"]
    assert types[-3:] == ["title", "usage", "finish"]
    contents = [e["content"] for e in reply.events if isinstance(e, dict) and "content" in e]
    assert contents == ["Hi", ",", " ", "wörld", "!"]
    usage = next(e for e in reply.events if isinstance(e, dict) and e["type"] == "usage")
    assert usage["usage"]["completion_tokens"] == len(contents)
    assert usage["usage"]["total_tokens"] == usage["usage"]["prompt_tokens"] + len(contents)
    conversation = next(e for e in reply.events if isinstance(e, dict) and "conversation" in e)
    assert conversation["conversation"] == {"ScriptedProvider": {"id": "c1"}}


@pytest.mark.parametrize("options", [{"framing": "json"}, {"transfer": "gzip"}, {"write_size": 0}])
def test_reply_rejects_unknown_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Reply([FIRST], **options)


# Other endpoints


def test_version_models_and_providers(backendapi_server: BackendApiTestServer) -> None:
    assert get_json(backendapi_server, "/backend-api/v2/version") == (
        200,
        {"version": "8.8.6", "latest_version": "8.8.6"},
    )
    assert get_json(backendapi_server, "/backend-api/v2/models") == (
        200,
        {"ScriptedProvider": ["scripted-1"]},
    )
    status, providers = get_json(backendapi_server, "/backend-api/v2/providers")
    assert status == 200
    assert [provider["name"] for provider in providers] == ["ScriptedProvider"]
    assert {"label", "auth", "vision"} <= set(providers[0])
    assert [r.path for r in backendapi_server.requests] == [
        "/backend-api/v2/version",
        "/backend-api/v2/models",
        "/backend-api/v2/providers",
    ]


def test_unknown_path_is_recorded_and_gets_404(backendapi_server: BackendApiTestServer) -> None:
    connection = http.client.HTTPConnection(
        backendapi_server.host, backendapi_server.port, timeout=WAIT
    )
    try:
        connection.request("GET", "/v1/chat/completions")
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 404
    assert last_request(backendapi_server).path == "/v1/chat/completions"


# Lifecycle


def test_fixture_gives_a_running_server(backendapi_server: BackendApiTestServer) -> None:
    assert backendapi_server.url == f"http://127.0.0.1:{backendapi_server.port}"
    assert post(backendapi_server)[0] == 200


def test_host_option() -> None:
    with BackendApiTestServer(host="127.0.0.2") as server:
        assert server.url.startswith("http://127.0.0.2:")
        with connect(server) as conn:
            assert conn.sock.getpeername()[0] == "127.0.0.2"
            conn.post(b"{}")
            assert conn.read_head()[0] == 200


def test_startup_error_is_raised_by_start() -> None:
    threads = threading.active_count()
    server = BackendApiTestServer(host="192.0.2.1")  # TEST-NET-1: not an address of this host
    with pytest.raises(OSError):
        server.start()
    assert threading.active_count() == threads
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url


def test_stop_is_idempotent_and_closes_the_port() -> None:
    server = BackendApiTestServer()
    server.start()
    address = (server.host, server.port)
    server.stop()
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=WAIT).close()


def test_wait_for_requests_times_out(backendapi_server: BackendApiTestServer) -> None:
    assert not backendapi_server.wait_for_requests(1, timeout=0.01)
    post(backendapi_server)
    assert backendapi_server.wait_for_requests(1, timeout=0)


# Other endpoints: create, models/<provider>, files


def request(
    server: BackendApiTestServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=WAIT)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        answer = {name.lower(): value for name, value in response.getheaders()}
        return response.status, answer, response.read()
    finally:
        connection.close()


def multipart(*parts: tuple[str, str | None, str | None, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body of (name, filename, content type, data) parts."""
    out = b""
    for name, filename, content_type, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--XyZ\r\nContent-Disposition: {disposition}\r\n".encode()
        if content_type is not None:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    return out + b"--XyZ--\r\n", "multipart/form-data; boundary=XyZ"


def test_create_echoes_the_prompt_as_streamed_plain_text(
    backendapi_server: BackendApiTestServer,
) -> None:
    backendapi_server.add_provider("P")
    with connect(backendapi_server) as conn:
        conn.sock.sendall(
            b"GET /backend-api/v2/create?prompt=Hello%2C+w%C3%B6rld&model=m&provider=P"
            b" HTTP/1.1\r\nHost: test\r\n\r\n"
        )
        status, headers = conn.read_head()
        assert (status, headers["content-type"]) == (200, "text/plain; charset=utf-8")
        assert headers["transfer-encoding"] == "chunked"
        # Streamed the way providers stream: one word, symbol or space per chunk.
        assert conn.read_chunks() == [b"Hello", b",", b" ", "wörld".encode()]
    recorded = last_request(backendapi_server)
    assert (recorded.method, recorded.path) == ("GET", "/backend-api/v2/create")
    assert recorded.query == {"prompt": "Hello, wörld", "model": "m", "provider": "P"}


def test_create_text_reply_is_scriptable(backendapi_server: BackendApiTestServer) -> None:
    backendapi_server.create_text_reply = "Scripted answer"
    status, headers, body = request(backendapi_server, "GET", "/backend-api/v2/create?prompt=x")
    assert (status, body) == (200, b"Scripted answer")
    assert headers["content-type"] == "text/plain; charset=utf-8"


def test_create_without_prompt_gets_g4fs_500(backendapi_server: BackendApiTestServer) -> None:
    # g4f checks no prompt: its provider fails on none, which the route reports so.
    status, _, body = request(backendapi_server, "GET", "/backend-api/v2/create?model=m")
    message = "An error occurred during request generation"
    assert (status, json.loads(body)) == (500, {"error": {"message": message}})


def test_create_with_an_unknown_provider_gets_404() -> None:
    with BackendApiTestServer(known_providers={"OpenaiChat"}) as server:
        status, _, body = request(server, "GET", "/backend-api/v2/create?prompt=x&provider=Nope")
        assert status == 404
        assert json.loads(body) == {"error": {"message": "Model or provider not found"}}
        path = "/backend-api/v2/create?prompt=x&provider=OpenaiChat"
        assert request(server, "GET", path)[:3:2] == (200, b"x")


def test_models_of_a_provider(backendapi_server: BackendApiTestServer) -> None:
    status, models = get_json(backendapi_server, "/backend-api/v2/models/ScriptedProvider")
    assert status == 200
    assert [model["id"] for model in models] == ["scripted-1"]
    assert {"default", "vision", "image", "tags"} <= set(models[0])
    assert last_request(backendapi_server).path == "/backend-api/v2/models/ScriptedProvider"


def test_models_of_an_unknown_provider_are_an_empty_list() -> None:
    with BackendApiTestServer(known_providers={"OpenaiChat"}) as server:
        assert get_json(server, "/backend-api/v2/models/Nope") == (200, [])
        assert get_json(server, "/backend-api/v2/models/OpenaiChat") == (200, [])
        status, models = get_json(server, "/backend-api/v2/models/ScriptedProvider")
        assert (status, [model["id"] for model in models]) == (200, ["scripted-1"])


def test_files_upload_is_recorded_and_answered_like_g4f(
    backendapi_server: BackendApiTestServer,
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + b"--XyZ\r\n"  # boundary look-alike
    body, content_type = multipart(
        ("files", "notes.txt", "text/plain", b"line one\r\nline two\r\n"),
        ("files", "cat.png", "image/png", png),
    )
    status, _, answer = request(
        backendapi_server,
        "POST",
        "/backend-api/v2/files/bucket-1",
        body,
        {"Content-Type": content_type},
    )
    assert status == 200
    assert json.loads(answer) == {
        "bucket_id": "bucket-1",
        "files": ["notes.txt"],
        "media": [{"name": "cat.png"}],
    }
    recorded = last_request(backendapi_server)
    assert recorded.path == "/backend-api/v2/files/bucket-1"
    assert [(f.name, f.filename, f.content_type, f.data) for f in recorded.files] == [
        ("files", "notes.txt", "text/plain", b"line one\r\nline two\r\n"),
        ("files", "cat.png", "image/png", png),
    ]
    assert recorded.form == {}


def test_multipart_conversation_records_files_and_media_urls(
    backendapi_server: BackendApiTestServer,
) -> None:
    payload = {"model": "m", "messages": [{"role": "user", "content": "Look"}]}
    audio = bytes(range(256)) * 4
    body, content_type = multipart(
        ("json", None, None, json.dumps(payload).encode()),
        ("media_url", None, None, b"https://example.com/a.png"),
        ("files", "a.wav", "audio/wav", audio),
        ("media_url", None, "text/plain; charset=utf-8", "https://example.com/ü.png".encode()),
        ("files", "", None, b""),
    )
    with connect(backendapi_server) as conn:
        conn.post(body, content_type=content_type)
        assert conn.read_head()[0] == 200
    recorded = last_request(backendapi_server)
    assert recorded.json == payload
    assert recorded.form == {
        "json": [json.dumps(payload)],
        "media_url": ["https://example.com/a.png", "https://example.com/ü.png"],
    }
    assert recorded.media_urls == ["https://example.com/a.png", "https://example.com/ü.png"]
    assert [(f.name, f.filename, f.content_type, f.data) for f in recorded.files] == [
        ("files", "a.wav", "audio/wav", audio),
        ("files", "", "", b""),
    ]


def test_json_requests_have_no_form_or_files(backendapi_server: BackendApiTestServer) -> None:
    post(backendapi_server)
    recorded = last_request(backendapi_server)
    assert (recorded.form, recorded.files, recorded.media_urls) == ({}, [], [])


def test_server_listens_on_the_port_asked_for() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    with BackendApiTestServer(port=free_port) as server:
        assert server.port == free_port
        assert server.url == f"http://127.0.0.1:{free_port}"
        connection = http.client.HTTPConnection("127.0.0.1", free_port, timeout=5)
        try:
            connection.request("GET", "/backend-api/v2/version")
            assert json.loads(connection.getresponse().read())["version"] == "8.8.6"
        finally:
            connection.close()
