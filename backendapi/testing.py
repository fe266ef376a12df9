"""A real Backend API server for tests.

`BackendApiTestServer` answers ``POST /backend-api/v2/conversation`` the way g4f 8.8.6 does,
but with scripted replies, so code using this SDK can be tested against real HTTP on loopback::

    from backendapi.testing import BackendApiTestServer, Reply

    with BackendApiTestServer() as server:
        server.reply(Reply.answer("Hi there", title="Greeting"))
        ...  # point the code under test at server.url
        assert server.requests[0].json["messages"][-1]["content"] == "Hello"

A reply is a list of events plus transport behaviour: SSE or NDJSON framing; chunked,
close-delimited or Content-Length bodies; pauses, points where the test decides when the
stream goes on (`Wait`), a stall until the client gives up (`Hold`), and a connection torn
down mid-body (`Cut`). Every request is recorded as a `RecordedRequest`.

With pytest, enable the ``backendapi_server`` fixture in your ``conftest.py``::

    pytest_plugins = ["backendapi.testing"]

and take it as an argument::

    from backendapi.testing import Reply

    def test_answer(backendapi_server):
        backendapi_server.default_reply = Reply.answer("Hi")
        ...

pytest is only needed for the fixture; the rest of the module works without it.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import deque
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, final

from aiohttp import web
from multidict import CIMultiDict

__all__ = [
    "STREAM_CONTENT_TYPE",
    "BackendApiTestServer",
    "Cut",
    "Hold",
    "Pause",
    "RecordedRequest",
    "Reply",
    "Wait",
]

#: What g4f 8.8.6 sends as the Content-Type of an event stream, whatever the framing.
STREAM_CONTENT_TYPE = "text/event-stream; charset=utf-8"

_CONVERSATION_PATH = "/backend-api/v2/conversation"
_VERSION = "8.8.6"
_PROVIDER = "ScriptedProvider"
_MODEL = "scripted-1"

# Splits an answer the way providers stream it: words, runs of whitespace, single symbols.
# The three alternatives cover every character, so the tokens always join back to the text.
_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")


@dataclass(frozen=True)
class Pause:
    """Make the server wait `seconds` before it sends the next item of a reply."""

    seconds: float


@dataclass(frozen=True)
class Wait:
    """Make the server wait until the test sets `event` before it sends the next item.

    Lets a test check what the client did with the events so far, without sleeping::

        release = threading.Event()
        server.reply(Reply([first_event, Wait(release), second_event]))
        ...  # assert the client has seen first_event
        release.set()
    """

    event: threading.Event


@dataclass(frozen=True)
class Hold:
    """Make the server stop sending and keep the connection open until the client closes it."""


@dataclass(frozen=True)
class Cut:
    """Make the server abort the TCP connection here, so the body ends before its proper end.

    Everything written before the cut reaches the client first. A chunked body then lacks its
    terminating zero-length chunk; a Content-Length body, whose length counts the items after
    the cut too, falls short of it.
    """


_FRAMINGS = ("sse", "ndjson")
_TRANSFERS = ("chunked", "close", "length")


@dataclass(frozen=True)
class Reply:
    """What the server answers to one conversation request.

    Attributes:
        events: sent in order. A mapping is one event, serialized with `json.dumps` (ASCII
            only, like g4f) and framed; bytes are written exactly as given, for malformed
            streams; `Pause`, `Wait`, `Hold` and `Cut` act on the transport.
        framing: ``"sse"`` (``event: <type>\\ndata: <json>\\n\\n``, g4f 8.x) or ``"ndjson"``
            (``<json>\\n``, g4f before December 2025).
        transfer: ``"chunked"`` (each write is one chunk), ``"close"`` (no length, the body
            ends when the server closes the connection, as behind some proxies) or
            ``"length"`` (Content-Length; the whole body is sent at once, after any pauses).
        status: the HTTP status. From 400 on, the body is `error` instead of the events.
        error: the body of an error reply: JSON-encoded unless it is str or bytes, which are
            sent as given (an HTML page from a proxy, say). ``None`` sends an empty body.
        content_type: overrides the Content-Type: by default `STREAM_CONTENT_TYPE` for
            streams, ``application/json`` for JSON errors, ``text/plain; charset=utf-8`` for
            str errors and ``application/octet-stream`` for bytes errors.
        headers: extra response headers.
        write_size: when set, each item's bytes are written in pieces of at most this size,
            to exercise the client's reassembly of events split across reads.
    """

    events: Sequence[Mapping[str, Any] | bytes | Pause | Wait | Hold | Cut] = ()
    framing: str = "sse"
    transfer: str = "chunked"
    status: int = 200
    error: Any | None = None
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    write_size: int | None = None

    def __post_init__(self) -> None:
        if self.framing not in _FRAMINGS:
            raise ValueError(f"framing must be one of {_FRAMINGS}, not {self.framing!r}")
        if self.transfer not in _TRANSFERS:
            raise ValueError(f"transfer must be one of {_TRANSFERS}, not {self.transfer!r}")
        if self.write_size is not None and self.write_size < 1:
            raise ValueError(f"write_size must be at least 1, not {self.write_size}")

    @classmethod
    def answer(
        cls,
        text: str,
        *,
        model: str = _MODEL,
        provider: str = _PROVIDER,
        reasoning: str | None = None,
        title: str | None = None,
        conversation: Mapping[str, Any] | None = None,
        prompt_tokens: int = 3,
        framing: str = "sse",
        transfer: str = "chunked",
    ) -> Reply:
        """A successful answer shaped like a g4f 8.8.6 transcript.

        Events: ``provider``; ``reasoning`` (if given); ``conversation`` with `conversation`
        stored under the provider's name (if given); `text` as ``content`` events of one
        word, whitespace run or symbol each; ``title`` (if given); ``usage`` counting those
        content events as completion tokens; ``finish`` with reason ``stop``.

        >>> [e["content"] for e in Reply.answer("Hi, you").events if e["type"] == "content"]
        ['Hi', ',', ' ', 'you']
        """
        events: list[dict[str, Any]] = [
            {
                "type": "provider",
                "provider": {
                    "name": provider,
                    "url": "http://127.0.0.1",
                    "label": provider,
                    "model": model,
                },
            }
        ]
        if reasoning is not None:
            events.append({"type": "reasoning", "token": reasoning})
        if conversation is not None:
            events.append({"type": "conversation", "conversation": {provider: conversation}})
        tokens = _TOKEN.findall(text)
        events.extend({"type": "content", "content": token} for token in tokens)
        if title is not None:
            events.append({"type": "title", "title": title})
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens + len(tokens),
        }
        events.append({"type": "usage", "usage": usage, "model": model, "provider": provider})
        events.append({"type": "finish", "finish": {"reason": "stop"}})
        return cls(events, framing=framing, transfer=transfer)

    @classmethod
    def http_error(cls, status: int, message: str) -> Reply:
        """An HTTP error with g4f's body, ``{"error": {"message": message}}``."""
        return cls(status=status, error={"error": {"message": message}})

    def _encode(self, item: Mapping[str, Any] | bytes) -> bytes:
        if isinstance(item, bytes):
            return item
        data = json.dumps(dict(item))
        if self.framing == "ndjson":
            return f"{data}\n".encode()
        event_type = item.get("type")
        event_line = "" if event_type is None else f"event: {event_type}\n"
        return f"{event_line}data: {data}\n\n".encode()

    def _pieces(self, item: Mapping[str, Any] | bytes) -> Iterator[bytes]:
        data = self._encode(item)
        size = self.write_size or len(data) or 1
        for start in range(0, len(data), size):
            yield data[start : start + size]


@dataclass
class RecordedRequest:
    """One request as the server received it.

    Attributes:
        method: the HTTP method.
        path: the URL path, without the query string.
        query: the query parameters (the last value wins when a name repeats).
        headers: the request headers, a `multidict.CIMultiDict`: lookups ignore case.
        body: the raw request body.
        json: the parsed JSON body; for a multipart/form-data body, the parsed ``json`` form
            field; ``None`` when there is none or it is not valid JSON (conversation requests
            are then answered with 400, as g4f does).
        disconnected: set when the client closed the connection while the reply was still
            being sent (during a `Pause`, `Wait` or `Hold`, or when a write failed).
        finished: set when the server is done with the request, for whatever reason.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: bytes
    json: Any
    disconnected: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


class _CloseDelimitedResponse(web.StreamResponse):
    """A response whose body ends when the server closes the connection.

    aiohttp chunks every HTTP/1.1 response without a Content-Length. It skips that step, and
    the Content-Length bookkeeping with it, for responses whose `_length_check` is false
    (its WebSocket and file responses use this), so the body goes out raw. Together with
    `force_close()`, which adds ``Connection: close`` and makes aiohttp close the connection
    once the handler returns, that gives a close-delimited body.
    """

    _length_check = False


def _parse_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:  # also covers UnicodeDecodeError
        return None


def _parse_body(content_type: str, body: bytes) -> Any:
    """The JSON document a conversation request carries, or None."""
    if not content_type.lower().startswith("multipart/form-data"):
        return _parse_json(body)
    # aiohttp parses multipart only from the unread request stream, and the raw body has been
    # read already to record it; the stdlib MIME parser reads form-data from bytes.
    header = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
    message = BytesParser(EmailMessage, policy=policy.HTTP).parsebytes(header + body)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "json":
            payload = part.get_payload(decode=True)
            return _parse_json(payload) if isinstance(payload, bytes) else None
    return None


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message}}, status=status)


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
        try:
            loop.call_soon_threadsafe(release)
        except RuntimeError:  # the loop is closed: the server stopped first
            pass

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


async def _act(request: web.BaseRequest, action: Pause | Wait | Hold | Cut) -> None:
    if isinstance(action, Pause):
        await asyncio.sleep(action.seconds)
    elif isinstance(action, Wait):
        await _wait_for_event(action.event)
    elif isinstance(action, Hold):
        # Never resolved: only the handler's cancellation, on disconnect or stop, ends it.
        await asyncio.get_running_loop().create_future()
    else:
        await _cut(request)


@final
class BackendApiTestServer:
    """A Backend API server on loopback, running its own event loop in a background thread.

    Conversation requests get the queued replies in order (see `reply`), then
    `default_reply`. ``GET /backend-api/v2/version``, ``/models`` and ``/providers`` answer
    like g4f 8.8.6 with one provider, ``ScriptedProvider``, serving one model,
    ``scripted-1``. Any other path gets 404. Every request is recorded (see `requests`).
    Conversation requests rejected with 400 or 404 leave the queued replies alone.

    Args:
        host: the address to listen on; the port is picked by the system.
        known_providers: when given, a conversation request naming a provider outside this
            collection gets g4f's 404 ``Provider not found``. Requests without a provider
            are accepted, as g4f then picks one itself.
        shutdown_timeout: how long `stop` lets open connections finish, in seconds.

    Use it as a context manager, or call `start` and `stop`::

        with BackendApiTestServer() as server:
            server.reply(Reply.http_error(500, "overloaded"), Reply.answer("Hi"))
            ...
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        known_providers: Collection[str] | None = None,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.known_providers = known_providers
        self.shutdown_timeout = shutdown_timeout
        #: Answers conversation requests once the queue filled by `reply` is empty.
        self.default_reply = Reply.answer("Hello from the test server")
        self._replies: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        # Guards _replies and _requests, and wakes wait_for_requests().
        self._changed = threading.Condition()
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._startup_error: BaseException | None = None
        # Conversation handlers still running, so that stop() can cancel a Hold() at once.
        self._handlers: set[asyncio.Task[Any]] = set()
        self._stopping = False

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def url(self) -> str:
        """The base URL of the server, without a trailing slash, e.g. http://127.0.0.1:54321."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, in arrival order."""
        with self._changed:
            return list(self._requests)

    def reply(self, *replies: Reply) -> None:
        """Queue replies: each conversation request takes the oldest one left."""
        with self._changed:
            self._replies.extend(replies)

    def wait_for_requests(self, count: int, timeout: float | None = 5.0) -> bool:
        """Block until `count` requests have been recorded; False if `timeout` ran out first."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._requests) >= count, timeout)

    def start(self) -> None:
        """Start listening; returns once the server accepts connections.

        Raises whatever prevented the server from starting, e.g. an address already in use.
        """
        if self._thread is not None:
            raise RuntimeError("the server is already started")
        self._stopping = False
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        thread = threading.Thread(
            target=self._run, args=(loop, ready), name="backendapi-test-server", daemon=True
        )
        thread.start()
        ready.wait()
        error, self._startup_error = self._startup_error, None
        if error is not None:
            thread.join()
            loop.close()
            raise error
        self._thread, self._loop = thread, loop

    def stop(self) -> None:
        """Stop the server, cancelling replies still being sent. Does nothing if not running."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        self._thread = self._loop = None
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            self._port = None

    def __enter__(self) -> BackendApiTestServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:
            self._startup_error = exc
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())

    async def _listen(self) -> None:
        runner = web.AppRunner(
            self._make_app(),
            # aiohttp >= 3.9 lets a handler run on after its client left; cancelling it is
            # how a handler blocked in Hold() or Wait() learns about the disconnect.
            handler_cancellation=True,
            shutdown_timeout=self.shutdown_timeout,
            access_log=None,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, 0).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def _shutdown(self) -> None:
        self._stopping = True
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        # aiohttp cancels the tasks of connections it force-closes without awaiting them; let
        # them finish now, or closing the loop reports them as destroyed while pending.
        current = asyncio.current_task()
        leftovers = [task for task in asyncio.all_tasks() if task is not current]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(_CONVERSATION_PATH, self._handle_conversation)
        app.router.add_get("/backend-api/v2/version", self._handle_version)
        app.router.add_get("/backend-api/v2/models", self._handle_models)
        app.router.add_get("/backend-api/v2/providers", self._handle_providers)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        return app

    async def _record(self, request: web.Request) -> RecordedRequest:
        body = await request.read()
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query.items()),
            headers=CIMultiDict(request.headers),
            body=body,
            json=_parse_body(request.headers.get("Content-Type", ""), body),
        )
        with self._changed:
            self._requests.append(recorded)
            self._changed.notify_all()
        return recorded

    async def _handle_simple(self, request: web.Request, answer: Any) -> web.Response:
        recorded = await self._record(request)
        recorded.finished.set()
        return web.json_response(answer)

    async def _handle_version(self, request: web.Request) -> web.Response:
        return await self._handle_simple(request, {"version": _VERSION, "latest_version": _VERSION})

    async def _handle_models(self, request: web.Request) -> web.Response:
        return await self._handle_simple(request, {_PROVIDER: [_MODEL]})

    async def _handle_providers(self, request: web.Request) -> web.Response:
        provider = {
            "name": _PROVIDER,
            "label": _PROVIDER,
            "parent": None,
            "image": 0,
            "audio": 0,
            "video": 0,
            "vision": False,
            "nodriver": False,
            "hf_space": False,
            "active_by_default": True,
            "auth": False,
            "login_url": None,
            "live": 0,
        }
        return await self._handle_simple(request, [provider])

    async def _handle_unknown(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        recorded.finished.set()
        raise web.HTTPNotFound()

    async def _handle_conversation(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            return await self._answer_conversation(request, recorded)
        except asyncio.CancelledError:
            # Cancelled either because the client left or because stop() is shutting down.
            if not self._stopping:
                recorded.disconnected.set()
            raise
        finally:
            self._handlers.discard(task)
            recorded.finished.set()

    async def _answer_conversation(
        self, request: web.Request, recorded: RecordedRequest
    ) -> web.StreamResponse:
        if recorded.json is None:
            return _json_error(400, "Invalid JSON data")
        provider = recorded.json.get("provider") if isinstance(recorded.json, dict) else None
        if provider and self.known_providers is not None and provider not in self.known_providers:
            return _json_error(404, "Provider not found")
        with self._changed:
            reply = self._replies.popleft() if self._replies else self.default_reply
        if reply.status >= 400:
            return self._error_response(reply)
        if reply.transfer == "length":
            return await self._send_whole(request, reply, recorded)
        return await self._send_stream(request, reply, recorded)

    @staticmethod
    def _error_response(reply: Reply) -> web.Response:
        error = reply.error
        if error is None:
            body, content_type = b"", "application/octet-stream"
        elif isinstance(error, bytes):
            body, content_type = error, "application/octet-stream"
        elif isinstance(error, str):
            body, content_type = error.encode(), "text/plain; charset=utf-8"
        else:
            body, content_type = json.dumps(error).encode(), "application/json"
        headers = {"Content-Type": reply.content_type or content_type, **reply.headers}
        return web.Response(status=reply.status, body=body, headers=headers)

    @staticmethod
    def _stream_headers(reply: Reply) -> dict[str, str]:
        return {"Content-Type": reply.content_type or STREAM_CONTENT_TYPE, **reply.headers}

    async def _send_stream(
        self, request: web.Request, reply: Reply, recorded: RecordedRequest
    ) -> web.StreamResponse:
        headers = self._stream_headers(reply)
        response: web.StreamResponse
        if reply.transfer == "close":
            response = _CloseDelimitedResponse(status=reply.status, headers=headers)
            response.force_close()
        else:
            response = web.StreamResponse(status=reply.status, headers=headers)
        await response.prepare(request)
        try:
            for item in reply.events:
                if isinstance(item, (Pause, Wait, Hold, Cut)):
                    await _act(request, item)
                    if isinstance(item, Cut):
                        break
                else:
                    for piece in reply._pieces(item):
                        await response.write(piece)
        except ConnectionResetError:
            # aiohttp notices the closed connection when finishing the response; raising
            # here instead would make it log the disconnect as a server error.
            recorded.disconnected.set()
        return response

    async def _send_whole(
        self, request: web.Request, reply: Reply, recorded: RecordedRequest
    ) -> web.StreamResponse:
        # Like a server or proxy that buffers the answer: the transport actions run first, and
        # a Cut only truncates the body, which still announces its full length.
        pieces: list[bytes] = []
        length = 0
        cut = False
        for item in reply.events:
            if isinstance(item, (Pause, Wait, Hold)):
                await _act(request, item)
            elif isinstance(item, Cut):
                cut = True
            else:
                for piece in reply._pieces(item):
                    length += len(piece)
                    if not cut:
                        pieces.append(piece)
        response = web.StreamResponse(status=reply.status, headers=self._stream_headers(reply))
        response.content_length = length
        await response.prepare(request)
        try:
            for piece in pieces:
                await response.write(piece)
            if cut:
                await _cut(request)
        except ConnectionResetError:
            recorded.disconnected.set()
        return response


try:
    import pytest
except ImportError:  # pytest is optional: without it there is just no fixture
    pass
else:

    @pytest.fixture
    def backendapi_server() -> Iterator[BackendApiTestServer]:
        """A started `BackendApiTestServer`, stopped after the test.

        Enable it with ``pytest_plugins = ["backendapi.testing"]`` in a ``conftest.py``.
        """
        with BackendApiTestServer() as server:
            yield server
