"""The test server: its routes, its event loop in a thread, and the site that counts connections."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections import deque
from collections.abc import Callable, Collection, Iterable
from typing import Any, final

from aiohttp import web

from ._files import Storage, add_file_routes
from ._info import InfoRoutes, add_info_routes
from ._providers import ProviderRegistry, json_document
from ._recording import RecordedRequest, record
from ._replies import Reply, error_document
from ._sending import send_reply

_CONVERSATION_PATH = "/backend-api/v2/conversation"
_VERSION = "8.8.6"
# g4f's built-in provider that picks another: every g4f server takes it, unlisted.
ANY_PROVIDER = "AnyProvider"


def _origin(host: str, ssl_context: ssl.SSLContext | None) -> str:
    """``scheme://host`` of a server on `host`, an IPv6 address in brackets."""
    host = f"[{host}]" if ":" in host else host
    scheme = "http" if ssl_context is None else "https"
    return f"{scheme}://{host}"


def _json_error(status: int, message: str) -> web.Response:
    return json_document(error_document(message), status=status)


class _CountingSite(web.BaseSite):
    """A TCP site like `web.TCPSite` that counts accepted connections.

    asyncio calls a server's protocol factory once per accepted connection; this site hands
    `loop.create_server` the runner's factory wrapped so that each call is reported to
    `on_connection` first.
    """

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        on_connection: Callable[[], None],
        *,
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._on_connection = on_connection

    @property
    def name(self) -> str:
        """The site's URL, as aiohttp names its sites."""
        return _origin(self._host, self._ssl_context)

    async def start(self) -> None:
        """Register the site with its runner and start listening."""
        await super().start()
        server = self._runner.server
        assert server is not None
        on_connection = self._on_connection

        def accept() -> asyncio.BaseProtocol:
            on_connection()
            return server()

        self._server = await asyncio.get_running_loop().create_server(
            accept, self._host, self._port, ssl=self._ssl_context
        )


@final
class BackendApiTestServer:
    """A Backend API server on loopback, running its own event loop in a background thread.

    Conversation requests get the queued replies in order (see `reply`), then
    `default_reply`. The server knows which providers exist, as g4f does: ``ScriptedProvider``,
    serving one model, ``scripted-1``, and those a test registers (`add_provider`, or the
    ``known_providers`` argument). A conversation request naming another provider gets g4f
    8.8.6's 404 ``{"error": {"message": "Provider not found"}}``; one naming none (or g4f's
    own ``AnyProvider``) is accepted, as g4f then picks a provider itself. ``GET
    /backend-api/v2/version``, ``/models``, ``/models/<provider>`` (``[]`` for an unknown
    provider, as g4f answers) and ``/providers`` respond like g4f 8.8.6 about those
    providers. ``GET /backend-api/v2/create?prompt=...`` responds with plain text, streamed:
    `create_text_reply`, or the prompt itself when that is None (an unknown provider: g4f's
    404 ``Model or provider not found``). ``POST /backend-api/v2/files/<bucket_id>`` takes a
    multipart upload of ``files`` parts and responds like g4f, ``{"bucket_id": ...,
    "files": [names of documents], "media": [{"name": ...} of images, audio and video]}``;
    the other bucket routes, media and ``create``'s parameters answer as g4f's do
    (`storage`). The provider and bookkeeping routes (``synthesize``, ``quota``,
    ``health``, ``oauth``, ``status``, ``stats``, ``usage``, ``log``) answer as g4f's do,
    scripted on `info`. Any other path gets 404. Every request is recorded (see
    `requests`). Conversation requests rejected with 400 or 404 leave the queued replies
    alone.

    Args:
        host: the address to listen on.
        port: the port to listen on; 0, the default, lets the system pick a free one.
        known_providers: names of more providers to know besides ``ScriptedProvider``, each
            serving no model (`add_provider` registers one with models).
        shutdown_timeout: how long `stop` lets open connections finish, in seconds.
        ssl_context: when given, the server speaks HTTPS with this server-side context
            (certificate and key loaded, e.g. with ``trustme``) and `url` starts with
            ``https://``.

    Use it as a context manager, or call `start` and `stop`::

        with BackendApiTestServer() as server:
            server.reply(Reply.http_error(500, "overloaded"), Reply.answer("Hi"))
            ...
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        port: int = 0,
        known_providers: Collection[str] | None = None,
        shutdown_timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        """The port asked for (0: any free one); `port` is the one bound."""
        self._providers = ProviderRegistry()
        for name in known_providers or ():
            self._providers.add(name)
        self.shutdown_timeout = shutdown_timeout
        #: Serves HTTPS with this context when set (see the ``ssl_context`` argument).
        self.ssl_context = ssl_context
        #: Sent in response to conversation requests once the queue filled by `reply` is empty.
        self.default_reply = Reply.answer("Hello from the test server")
        #: The text ``GET /backend-api/v2/create`` sends back; None echoes the ``prompt``.
        self.create_text_reply: str | None = None
        #: The buckets, media files and redirects of the routes in ``_files.py``.
        self.storage = Storage()
        #: What the provider and bookkeeping routes answer (quota, health, synthesize...) and
        #: the usage and log records they were sent: see `InfoRoutes`.
        self.info = InfoRoutes()
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
        self._connections_accepted = 0
        # The transport of each connection not lost yet, by its aiohttp handler: stop()
        # aborts those aiohttp's shutdown closed but left open (see _abort_open_transports).
        # Used on the server's loop only.
        self._open_transports: dict[web.RequestHandler, asyncio.Transport] = {}

    def add_provider(
        self, name: str, models: Iterable[str] = (), *, label: str | None = None
    ) -> None:
        """Know one more provider, as if it were installed on a g4f server.

        Conversation and ``create`` requests naming it are then answered, and ``/models``,
        ``/models/<name>`` and ``/providers`` list it. `models` are the names of its models,
        the first one its default; `label` is its display name (the name by default).
        Registering a name again replaces it. It may be called while the server runs.
        """
        self._providers.add(name, models, label)

    @property
    def known_providers(self) -> frozenset[str]:
        """The names of the providers the server knows (see `add_provider`)."""
        return self._providers.names()

    @property
    def connections_accepted(self) -> int:
        """How many TCP connections the server has accepted so far, whether or not they
        carried a request: sequential streams that share one keep-alive connection count 1.
        """
        with self._changed:
            return self._connections_accepted

    def _count_connection(self) -> None:
        with self._changed:
            self._connections_accepted += 1
            self._changed.notify_all()

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def url(self) -> str:
        """The base URL of the server, without a trailing slash, e.g. http://127.0.0.1:54321.

        It starts with ``https://`` when the server was given an ``ssl_context``.
        """
        return f"{_origin(self.host, self.ssl_context)}:{self.port}"

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

    def wait_for_connections(self, count: int, timeout: float | None = 5.0) -> bool:
        """Block until `count` connections have been accepted (see `connections_accepted`);
        False if `timeout` ran out first.
        """
        with self._changed:
            return self._changed.wait_for(lambda: self._connections_accepted >= count, timeout)

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
        self._track_transports(runner)
        try:
            await _CountingSite(
                runner,
                self.host,
                self._count_connection,
                port=self.requested_port,
                ssl_context=self.ssl_context,
            ).start()
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
        await self._abort_open_transports()

    def _track_transports(self, runner: web.AppRunner) -> None:
        """Keep the transport of each connection until it is lost, in `_open_transports`.

        aiohttp's server learns of each connection's transport from its handler, as the
        handler's manager (``connection_made``, ``connection_lost``); this hooks those two
        calls. The handler itself forgets its transport as soon as it closes it, which is
        before a TLS connection, or one with bytes still buffered, is over.
        """
        server = runner.server
        assert server is not None
        made, lost = server.connection_made, server.connection_lost
        transports = self._open_transports

        def connection_made(handler: web.RequestHandler, transport: asyncio.Transport) -> None:
            transports[handler] = transport
            made(handler, transport)

        def connection_lost(handler: web.RequestHandler, exc: BaseException | None = None) -> None:
            transports.pop(handler, None)
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    async def _abort_open_transports(self) -> None:
        """Abort the connections aiohttp's shutdown closed but that are not over yet.

        Closing a TLS connection sends a close_notify and waits for the client's before
        closing the socket; closing a plain one waits until the client has taken the bytes
        still buffered. A client that keeps its connection open (a keep-alive pool, a
        proxy's tunnel) or stops reading holds either up (asyncio gives a TLS shutdown 30
        seconds); the loop stops first and closes with the socket still open, and the
        garbage collector finds it later, in whatever code runs then: "unclosed
        transport" and "unclosed socket" ResourceWarnings. An aborted transport closes
        its socket on the loop's next iteration, which this waits for.
        """
        transports = list(self._open_transports.values())
        self._open_transports.clear()
        for transport in transports:
            transport.abort()
        if transports:
            await asyncio.sleep(0)  # runs the callbacks that close the sockets

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(_CONVERSATION_PATH, self._handle_conversation)
        app.router.add_get("/backend-api/v2/version", self._handle_version)
        app.router.add_get("/backend-api/v2/models", self._handle_models)
        app.router.add_get("/backend-api/v2/models/{provider}", self._handle_provider_models)
        app.router.add_get("/backend-api/v2/providers", self._handle_providers)
        add_file_routes(app, self)
        add_info_routes(app, self)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        return app

    async def _record(self, request: web.Request) -> RecordedRequest:
        recorded = await record(request)
        with self._changed:
            self._requests.append(recorded)
            self._changed.notify_all()
        return recorded

    async def _record_finished(self, request: web.Request) -> RecordedRequest:
        """Record a request whose response takes no waiting: the server is done with it."""
        recorded = await self._record(request)
        recorded.finished.set()
        return recorded

    async def _handle_simple(self, request: web.Request, document: Any) -> web.Response:
        await self._record_finished(request)
        return json_document(document)

    async def _handle_version(self, request: web.Request) -> web.Response:
        return await self._handle_simple(request, {"version": _VERSION, "latest_version": _VERSION})

    async def _handle_models(self, request: web.Request) -> web.Response:
        return await self._handle_simple(request, self._providers.all_models())

    async def _handle_providers(self, request: web.Request) -> web.Response:
        return await self._handle_simple(request, self._providers.provider_objects())

    def _rejects_provider(self, provider: Any) -> bool:
        """True when a request names a provider the server does not know.

        A request that names none, or g4f's own ``AnyProvider``, passes: g4f then picks a
        provider itself.
        """
        return bool(provider) and provider != ANY_PROVIDER and not self._providers.knows(provider)

    async def _handle_provider_models(self, request: web.Request) -> web.Response:
        provider = request.match_info["provider"]
        return await self._handle_simple(request, self._providers.provider_models(provider))

    async def _handle_unknown(self, request: web.Request) -> web.Response:
        await self._record_finished(request)
        raise web.HTTPNotFound()

    async def _handle_conversation(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            return await self._respond_to_conversation(request, recorded)
        except asyncio.CancelledError:
            # Cancelled either because the client left or because stop() is shutting down.
            if not self._stopping:
                recorded.disconnected.set()
            raise
        finally:
            self._handlers.discard(task)
            recorded.finished.set()

    async def _respond_to_conversation(
        self, request: web.Request, recorded: RecordedRequest
    ) -> web.StreamResponse:
        if recorded.json is None:
            return _json_error(400, "Invalid JSON data")
        provider = recorded.json.get("provider") if isinstance(recorded.json, dict) else None
        if self._rejects_provider(provider):
            return _json_error(404, "Provider not found")
        with self._changed:
            reply = self._replies.popleft() if self._replies else self.default_reply
        return await send_reply(request, reply, recorded)
