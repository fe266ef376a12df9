"""Bytes a server sends on a kept-alive connection while no request is under way.

A server that answers twice (a late or repeated response) leaves the second answer on
the connection after the first was read whole. The connection goes back to the pool;
a client that reused it would read that stale answer as the answer to its next request,
a request the server has not even seen. Both clients must close such a connection and
send the next request on a new one.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import threading
import time
from typing import Any, List

import pytest
from loopback import LoopbackListener

from backendapi import AsyncBackendApiClient, BackendApiClient

pytestmark = pytest.mark.usefixtures("clean_network_env")

MESSAGES = [{"role": "user", "content": "Hi"}]
WAIT = 10.0  # seconds: a bound on every wait below, never reached when all is well


def answer(text: str) -> bytes:
    """A whole keep-alive response carrying one content event."""
    body = f"data: {json.dumps({'type': 'content', 'content': text})}\n\n".encode()
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class TwiceAnsweringServer(LoopbackListener):
    """Keeps connections alive; answers request N with "answer N". After the first
    answer it waits for `send_stale`, then sends a second, stale answer on the same
    connection ("stale"), unasked."""

    def __init__(self) -> None:
        self.send_stale = threading.Event()
        self.stale_sent = threading.Event()
        self._count = 0
        super().__init__("test-twice-answering-server")

    def serve(self, conn: socket.socket) -> None:
        with conn:
            self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buffer) < length:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            buffer = buffer[length:]
            with self._lock:
                self._count += 1
                number = self._count
            try:
                conn.sendall(answer(f"answer {number}"))
                if number == 1:
                    if not self.send_stale.wait(WAIT):
                        return
                    conn.sendall(answer("stale"))
                    self.stale_sent.set()
            except OSError:
                return


@pytest.fixture
def server() -> Any:
    listener = TwiceAnsweringServer()
    try:
        yield listener
    finally:
        listener.close()


def _pooled_sockets(client: BackendApiClient, url: str) -> List[socket.socket]:
    session = client._transport._session
    assert session is not None
    manager = session.get_adapter(url).poolmanager
    sockets = []
    for key in manager.pools.keys():  # noqa: SIM118 (the container refuses iteration)
        pool = manager.pools[key]
        sockets += [conn.sock for conn in list(pool.pool.queue) if conn and conn.sock]
    return sockets


def test_the_blocking_client_never_reads_a_stale_answer(server: TwiceAnsweringServer) -> None:
    with BackendApiClient(server.url, timeout=WAIT) as client:
        first = [event.content for event in client.create("m", MESSAGES)]
        server.send_stale.set()
        assert server.stale_sent.wait(WAIT)
        # The stale answer has reached the idle connection's socket.
        idle = _pooled_sockets(client, server.url)
        assert len(idle) == 1
        assert select.select(idle, [], [], WAIT)[0]

        second = [event.content for event in client.create("m", MESSAGES)]

    assert first == ["answer 1"]
    assert second == ["answer 2"]


async def _stale_bytes_arrived(client: AsyncBackendApiClient) -> None:
    """Return once the idle connection's protocol has received the stale answer."""
    own = client._transport._own.get(asyncio.get_running_loop())
    assert own is not None
    connector = own.session.connector
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        idle = [proto for conns in connector._conns.values() for proto, _ in conns]
        assert len(idle) == 1
        if idle[0]._buffer:  # aiohttp parsed the stale answer into it
            return
        await asyncio.sleep(0)  # lets the loop read the socket
    raise AssertionError("the stale answer never reached the client")


def test_the_async_client_never_reads_a_stale_answer(server: TwiceAnsweringServer) -> None:
    async def main() -> List[List[str]]:
        async with AsyncBackendApiClient(server.url, timeout=WAIT) as client:
            first = [event.content async for event in client.create("m", MESSAGES)]
            server.send_stale.set()
            assert await asyncio.to_thread(server.stale_sent.wait, WAIT)
            await _stale_bytes_arrived(client)
            second = [event.content async for event in client.create("m", MESSAGES)]
        return [first, second]

    first, second = asyncio.run(main())

    assert first == ["answer 1"]
    assert second == ["answer 2"]
