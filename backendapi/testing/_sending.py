"""Sending bodies over an aiohttp connection: a scripted reply, with its transport actions
between the writes, and the create endpoint's plain text."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

from aiohttp import web

from ._recording import RecordedRequest
from ._replies import Cut, Hold, Pause, Reply, Wait, split_tokens
from ._wire import body_steps, error_body, stream_headers

_TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"


async def send_reply(
    request: web.Request, reply: Reply, recorded: RecordedRequest
) -> web.StreamResponse:
    """Send `reply` in response to `request`.

    A write that finds the connection gone sets ``recorded.disconnected``; a client that
    leaves during a `Pause`, `Wait` or `Hold` cancels the handler instead.
    """
    if reply.reset:
        await _reset(request)
    if reply.status >= 400:
        body, headers = error_body(reply)
        return web.Response(status=reply.status, body=body, headers=headers)
    if reply.transfer == "length":
        return await _send_whole(request, reply, recorded)
    return await _send_stream(request, reply, recorded)


async def send_text(
    request: web.Request, text: str, recorded: RecordedRequest
) -> web.StreamResponse:
    """Stream `text` as plain text, a token a write, as g4f's create endpoint does.

    A write that finds the connection gone sets ``recorded.disconnected``.
    """
    response = web.StreamResponse(headers={"Content-Type": _TEXT_CONTENT_TYPE})
    await response.prepare(request)
    with _noting_disconnect(recorded):
        for token in split_tokens(text):
            await response.write(token.encode("utf-8"))
    return response


@contextlib.contextmanager
def _noting_disconnect(recorded: RecordedRequest) -> Iterator[None]:
    """Set ``recorded.disconnected`` when a write finds the connection gone, and go on."""
    try:
        yield
    except ConnectionResetError:
        # aiohttp notices the closed connection when finishing the response; raising
        # here instead would make it log the disconnect as a server error.
        recorded.disconnected.set()


class _CloseDelimitedResponse(web.StreamResponse):
    """A response whose body ends when the server closes the connection.

    aiohttp chunks every HTTP/1.1 response without a Content-Length. It skips that step, and
    the Content-Length bookkeeping with it, for responses whose `_length_check` is false
    (its WebSocket and file responses use this), so the body goes out raw. Together with
    `force_close()`, which adds ``Connection: close`` and makes aiohttp close the connection
    once the handler returns, that gives a close-delimited body.
    """

    _length_check = False


async def _send_stream(
    request: web.Request, reply: Reply, recorded: RecordedRequest
) -> web.StreamResponse:
    headers = stream_headers(reply)
    response: web.StreamResponse
    if reply.transfer == "close":
        response = _CloseDelimitedResponse(status=reply.status, headers=headers)
        response.force_close()
    else:
        response = web.StreamResponse(status=reply.status, headers=headers)
    await response.prepare(request)
    with _noting_disconnect(recorded):
        for step in body_steps(reply):
            if isinstance(step, bytes):
                await response.write(step)
            else:
                await _act(request, step)
                if isinstance(step, Cut):
                    break  # the rest of the body, the gzip trailer included, never comes
    return response


async def _send_whole(
    request: web.Request, reply: Reply, recorded: RecordedRequest
) -> web.StreamResponse:
    # Like a server or proxy that buffers the response: the transport actions run first, and
    # a Cut only truncates the body, which still announces its full length.
    pieces: list[bytes] = []
    length = 0
    cut = False
    for step in body_steps(reply):
        if isinstance(step, bytes):
            length += len(step)
            if not cut:
                pieces.append(step)
        elif isinstance(step, Cut):
            cut = True
        else:
            await _act(request, step)
    response = web.StreamResponse(status=reply.status, headers=stream_headers(reply))
    response.content_length = length
    await response.prepare(request)
    with _noting_disconnect(recorded):
        for piece in pieces:
            await response.write(piece)
        if cut:
            await _cut(request)
    return response


async def _act(request: web.BaseRequest, action: Pause | Wait | Hold | Cut) -> None:
    if isinstance(action, Pause):
        await asyncio.sleep(action.seconds)
    elif isinstance(action, Wait):
        await _wait_for_event(action.event)
    elif isinstance(action, Hold):
        await _hold()
    else:
        await _cut(request)


async def _hold() -> None:
    # Never resolved: only the handler's cancellation, on disconnect or stop, ends it.
    await asyncio.get_running_loop().create_future()


async def _wait_for_event(event: threading.Event) -> None:
    """Wait for a threading.Event without blocking the event loop."""
    if event.is_set():
        return
    loop = asyncio.get_running_loop()
    released: asyncio.Future[None] = loop.create_future()

    def release() -> None:
        if not released.done():  # the handler may have been cancelled meanwhile
            released.set_result(None)

    def wait_then_release() -> None:
        event.wait()
        # RuntimeError: the loop is closed, the server stopped first.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(release)

    # A daemon thread rather than the loop's executor: an event the test never sets would
    # otherwise keep a worker thread busy that loop and interpreter shutdown both wait for.
    threading.Thread(target=wait_then_release, name="backendapi-wait", daemon=True).start()
    await released


async def _cut(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is None:
        return
    # abort() discards whatever the transport still buffers; lowering the high-water mark to
    # zero makes drain() wait until all of it has gone to the kernel, so the cut is exact.
    transport.set_write_buffer_limits(high=0)
    await request.writer.drain()
    transport.abort()


async def _reset(request: web.BaseRequest) -> None:
    """Abort the connection with a TCP reset, then wait like `Hold` until cancelled.

    A zero ``SO_LINGER`` timeout makes closing the socket send RST instead of FIN, and
    discard anything not yet sent. aiohttp cancels the handler once it notices the lost
    connection (or `BackendApiTestServer.stop` does).
    """
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    await _hold()
