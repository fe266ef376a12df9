"""Relay a Backend API answer to your own web clients as Server-Sent Events.

An aiohttp.web application: ``GET /ask?q=...`` asks the Backend API server and
streams each piece of the answer to the browser as it arrives::

    data: The

    data:  sky

    ...
    event: done
    data:

One ``AsyncBackendApiClient`` (one connection pool) serves every request: it is
created when the app starts (``on_startup``) and closed when it stops
(``on_cleanup``). A browser reads the stream with
``new EventSource("/ask?q=hello")``.

Run it against a server (``--base-url``, else ``BACKENDAPI_BASE_URL``)::

    python examples/web_relay.py --base-url http://localhost:8080 --port 8081
    curl -N 'http://127.0.0.1:8081/ask?q=Why%20is%20the%20sky%20blue%3F'

It prints its own URL on the first line once it listens (``--port 0`` lets
the system pick a free port) and stops on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import List, Optional

from aiohttp import web

from backendapi import AsyncBackendApiClient, BackendApiError

CLIENT = web.AppKey("client", AsyncBackendApiClient)
SETTINGS = web.AppKey("settings", dict)


def sse(data: str, event: Optional[str] = None) -> bytes:
    """One SSE event; a newline inside ``data`` becomes a second ``data:`` line."""
    lines = [f"event: {event}"] if event else []
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


async def ask(request: web.Request) -> web.StreamResponse:
    """``GET /ask?q=...``: the answer to ``q``, as it arrives, one SSE event per piece."""
    question = request.query.get("q", "").strip()
    if not question:
        raise web.HTTPBadRequest(text="ask something: /ask?q=...")
    client = request.app[CLIENT]
    settings = request.app[SETTINGS]
    messages = [{"role": "user", "content": question}]
    options = {"provider": settings["provider"]} if settings["provider"] else {}
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
    )
    try:
        # Leaving the block, also when our own client went away (the handler is then
        # cancelled), closes the upstream stream and releases its connection.
        async with client.create(settings["model"], messages, **options) as stream:
            await response.prepare(request)
            async for event in stream:
                if event.type == "content" and event.get("content"):
                    await response.write(sse(event.content))
    except BackendApiError as exc:
        if not response.prepared:
            # Nothing sent yet (the server refused, or could not be reached): a plain 502.
            raise web.HTTPBadGateway(text=f"upstream error: {exc}") from None
        await response.write(sse(json.dumps({"message": str(exc)}), event="error"))
    else:
        await response.write(sse("", event="done"))
    await response.write_eof()
    return response


def create_app(
    base_url: Optional[str] = None, *, model: str = "", provider: Optional[str] = None
) -> web.Application:
    """The relay app; ``base_url`` None means ``BACKENDAPI_BASE_URL``."""
    app = web.Application()
    app[SETTINGS] = {"model": model, "provider": provider}

    async def on_startup(app: web.Application) -> None:
        app[CLIENT] = AsyncBackendApiClient(base_url)

    async def on_cleanup(app: web.Application) -> None:
        await app[CLIENT].aclose()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/ask", ask)
    return app


async def serve(app: web.Application, host: str, port: int) -> None:
    """Listen until SIGINT or SIGTERM; print the URL once listening."""
    # handler_cancellation: when a browser goes away mid-answer, its handler is cancelled,
    # which closes the upstream stream at once (aiohttp >= 3.9 leaves it running otherwise).
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()  # runs on_startup
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        print(f"http://{bound_host}:{bound_port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()  # runs on_cleanup


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", help="the Backend API server (default: $BACKENDAPI_BASE_URL)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="0: the system picks one")
    parser.add_argument("--model", default="", help="model id (default: the server picks)")
    parser.add_argument("--provider", help="provider name")
    args = parser.parse_args(argv)
    app = create_app(args.base_url, model=args.model, provider=args.provider)
    asyncio.run(serve(app, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
