"""Fan-in: many slow streams read at once through one client (``--only fanin``).

What a web app that relays its users' conversations does: hold hundreds or
thousands of streams open in one process, each delivering a model's tokens a
few dozen times a second, so that every network read carries one event. Here
the per-read and per-request costs decide, not the decoder's speed on a bulk
body (the ``throughput`` section).

Three parts, each in its own process:

* **the server** (``python -m benchmarks.fanin serve``): raw ``asyncio``
  sockets, in the style of ``benchmarks.server``. It reads each request whole
  (head and body: a realistic conversation of about 4 KB, :data:`CONVERSATION`),
  answers with a chunked SSE head at once and then holds the stream: the
  request's ``"fanin"`` field names a *group* of ``n`` streams, and no event is
  written to any of them until all ``n`` requests of the group have arrived
  and the client, holding every head, has said so (``POST /start/<group>``),
  so the client's opening phase carries no event (see below). Then it writes
  one event (``event: content``/``data: {"type": "content", "content": ...,
  "sent": <time.time()>}``, g4f's framing, one HTTP chunk per event) to each
  stream every ``interval`` seconds, staggered so that the writes are spread
  evenly over the interval (one every ``interval / n`` seconds), then the last
  chunk; the connection stays open for the next request. ``GET /stats``
  answers the server's CPU seconds and counters.
* **the clients** (``python -m benchmarks.fanin client '<json spec>'``), a
  fresh process per measurement, public API only: ``AsyncBackendApiClient``
  (``async with client.create(...) as stream`` / ``async for event in
  stream``), bare ``aiohttp`` (``async for line in response.content`` +
  ``json.loads``), ``httpx`` + ``httpx-sse`` (``aconnect_sse`` /
  ``aiter_sse`` + ``json.loads``), and, one thread per stream,
  ``BackendApiClient`` and ``requests`` + ``iter_lines`` + ``json.loads``;
  and, as an extra row, bare aiohttp with the SDK's default timeouts as
  ``sock_connect``/``sock_read`` (what a read timeout costs). Each reads
  ``n`` concurrent streams through one client (one session). Per event the
  consumer does the same small work in every client: the lateness
  (``time.time()`` minus the event's ``sent``), a count, the content's length.
* **the orchestration** (:func:`bench`, :func:`print_report`,
  :func:`targets`), called by ``benchmarks.run``.

A client process, after its imports, its client/session and one warm-up
stream of two events (whatever the libraries do on first use, such as the
SDK importing msgspec, happens there), measures:

* the *opening phase*: from starting the ``n`` streams until every one of them
  has its response head; its CPU time / ``n`` is the **CPU per request beyond
  its events** (building and sending the request with its conversation,
  connecting, reading the head; no event arrives in this phase, the server
  holds them: the client counts any that do);
* the *reading phase*: from there until every stream has ended; its CPU time /
  events is the **CPU per event** (each event's read, decoding, the library's
  and the consumer's per-event work, and, spread over the events, each
  stream's end);
* the **lateness** of every event: receive time minus send time (both
  ``time.time()``, one machine), p50 and p99;
* the **RSS per open stream**: RSS once every stream has received its first
  event, minus RSS before the streams were opened, / ``n``;
* **file descriptors**: before the client was created, while all streams are
  open, and after the client is closed;
* per stream, the events it got and any error.

CPU time is ``time.process_time()`` (user + system, all threads) of the
client process only.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from benchmarks._processes import ConnectionServer, get_json, run_for_result, stop_process

PATH = "/backend-api/v2/conversation"

CONVERSATION: List[Dict[str, str]] = [
    {
        "role": "system",
        "content": (
            "You are a careful assistant for a small bookshop's web site. Answer in the "
            "customer's language, keep answers short unless asked for detail, never invent "
            "stock levels or prices, and say so when you do not know. Orders, refunds and "
            "account questions go to the shop's staff: give the contact form's address, "
            "https://example.org/contact, instead of handling them yourself."
        ),
    },
    {
        "role": "user",
        "content": (
            "Hi! I'm looking for a present for my niece, she's 14 and reads a lot of "
            "fantasy. She already has the usual big series. Anything less well known?"
        ),
    },
    {
        "role": "assistant",
        "content": (
            "Happy to help. A few that fans of the big series often like but may not have "
            "met yet:\n\n1. *The Girl Who Drank the Moon* by Kelly Barnhill - a witch, a "
            "swamp monster and a tiny dragon; warm and funny, with a serious core.\n"
            "2. *Nevermoor* by Jessica Townsend - a cursed girl escapes to a magical city; "
            "the first of a series, light and inventive.\n3. *Howl's Moving Castle* by "
            "Diana Wynne Jones - older, but witty and still fresh.\n\nWould she rather have "
            "something standalone or the start of a series?"
        ),
    },
    {
        "role": "user",
        "content": (
            "Standalone would be better, her birthday is next week and I don't want to "
            "start her on something she then can't finish. Is Howl's Moving Castle okay for "
            "her age? I only know the film."
        ),
    },
    {
        "role": "assistant",
        "content": (
            "Yes, it suits 14 well: it is written for younger readers but has enough wit "
            "that adults enjoy it too. It does have two sequels, but each stands on its own, "
            "so she can stop after the first without missing an ending. The book differs "
            "quite a lot from the film: Sophie's curse, the war and several characters are "
            "handled differently, which many readers find a nice surprise after seeing it."
        ),
    },
    {
        "role": "user",
        "content": (
            "Sounds good. Do you have it in stock? And is there a nice hardback edition? "
            "Budget is around 20 euros, maybe 25 if it's really pretty."
        ),
    },
    {
        "role": "assistant",
        "content": (
            "I can't see the shop's stock or prices from here, so I don't want to guess. "
            "The staff can check both for you through the contact form at "
            "https://example.org/contact - mention the title and that you would like a "
            "hardback for a present; they can also tell you whether one can be ordered in "
            "before next week. Gift wrapping is usually possible if you ask."
        ),
    },
    {
        "role": "user",
        "content": (
            "Okay, I'll ask them. One more thing: she also likes writing her own stories. "
            "Is there a book about writing fantasy that isn't too dry, something a teenager "
            "would actually read? Ideally with exercises, not just theory. And not too long, "
            "she has school too, ha."
        ),
    },
    {
        "role": "assistant",
        "content": (
            "A couple of lively ones:\n\n- *Spilling Ink* by Anne Mazer and Ellen Potter - "
            'written for young writers, short chapters, lots of small "try this" '
            "exercises.\n- *Wonderbook* by Jeff VanderMeer - a big illustrated book on "
            "writing imaginative fiction; more of a browse than a course, but very "
            "inspiring.\n\nFor a 14-year-old who wants something practical and not too long, "
            "*Spilling Ink* is the safer pick."
        ),
    },
    {
        "role": "user",
        "content": (
            "Perfect, thank you. Could you write me a short note to put in the book? "
            "Something like: happy birthday, I hope this gives you ideas for your own "
            "worlds. Two or three sentences, friendly, not cheesy. Her name is Mila."
        ),
    },
]
"""The conversation every request carries: 10 messages, about 4 KB as JSON."""

TOKENS = (
    " the",
    " Happy",
    " birthday",
    ",",
    " Mila",
    "!",
    " I",
    " hope",
    " this",
    " book",
    " gives",
    " you",
    " ideas",
    " for",
    " worlds",
    " of",
    " your",
    " own",
    ".",
    " \u2728",
)
"""Token-sized pieces of text, as a model streams them (the last one is not ASCII)."""

HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
LAST_CHUNK = b"0\r\n\r\n"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

START_DELAY = 0.05
"""Seconds between a group's start (every request in, and the client's signal
that it has every head: ``POST /start/<run>``) and its first event."""

GROUP_WAIT = 120.0
"""A group that never fills starts with the streams it has after this many seconds."""

MiB = 1 << 20


# --------------------------------------------------------------------------- limits


def raise_nofile() -> Tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; return (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_fds() -> int:
    """The number of file descriptors this process holds open."""
    return len(os.listdir("/proc/self/fd")) - 1  # less the one listdir opens


def rss_bytes() -> int:
    """The current resident set size."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize()


# --------------------------------------------------------------------------- server


def event_chunk(index: int, sent: float) -> bytes:
    """One content event as one HTTP chunk, carrying its send time."""
    data = json.dumps({"type": "content", "content": TOKENS[index % len(TOKENS)], "sent": sent})
    payload = f"event: content\ndata: {data}\n\n".encode()
    return b"%x\r\n%b\r\n" % (len(payload), payload)


class Group:
    """The ``n`` streams of one measurement; events start once all have arrived."""

    def __init__(self, size: int, events: int, interval: float) -> None:
        self.size = size
        self.events = events
        self.interval = interval
        self.streams: List[Tuple[asyncio.Transport, asyncio.Future[None]]] = []
        self.signalled = False
        self.started = False
        self.timer: Optional[asyncio.TimerHandle] = None

    def add(self, transport: asyncio.Transport, done: asyncio.Future[None]) -> None:
        self.streams.append((transport, done))
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(GROUP_WAIT, self.start)
        if self.signalled and len(self.streams) >= self.size:
            self.start()

    def signal(self) -> None:
        """The client has every head: start once every stream is here."""
        self.signalled = True
        if len(self.streams) >= self.size:
            self.start()

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        if self.timer is not None:
            self.timer.cancel()
        task = asyncio.get_running_loop().create_task(self.run())
        task.add_done_callback(_keep)
        _TASKS.add(task)

    async def run(self) -> None:
        """Event ``k`` of stream ``j`` at ``t0 + (k + j / n) * interval``: one write every
        ``interval / n`` seconds, in that order, stamped when written."""
        streams = self.streams
        count = len(streams)
        total = count * self.events
        step = self.interval / count
        last = self.events - 1
        now = time.time
        t0 = now() + START_DELAY
        position = 0
        while position < total:
            due = min(total, int((now() - t0) / step) + 1)
            while position < due:
                index, which = divmod(position, count)
                transport, done = streams[which]
                position += 1
                if transport.is_closing():
                    if not done.done():
                        done.set_result(None)
                    continue
                chunk = event_chunk(index, now())
                if index == last:
                    transport.write(chunk + LAST_CHUNK)
                    done.set_result(None)
                else:
                    transport.write(chunk)
            if position < total:
                await asyncio.sleep(max(0.0, t0 + position * step - now()))


_TASKS: Set[asyncio.Task[None]] = set()


def _keep(task: asyncio.Task[None]) -> None:
    _TASKS.discard(task)
    if not task.cancelled() and task.exception() is not None:
        print(f"fan-in server: a group failed: {task.exception()!r}", file=sys.stderr)


class FaninServer(ConnectionServer):
    """Serves grouped, paced streams; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.groups: Dict[str, Group] = {}
        self.streams = 0
        self.request_bytes = 0
        self.nofile = (0, 0)

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        request = await self.read_request(reader)
        if request is None:
            return False
        target, head, body = request
        self.request_bytes += len(head) + len(body)
        if target == "/stats":
            self._stats(writer)
            return True
        if target.startswith("/start/"):
            key = target[len("/start/") :]
            group = self.groups.get(key)
            if group is None:
                writer.write(NOT_FOUND)
            else:
                group.signal()
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            return True
        if not target.endswith(PATH):
            writer.write(NOT_FOUND)
            return True
        try:
            spec = json.loads(body)["fanin"]
            key, size = str(spec["run"]), int(spec["n"])
            events, interval = int(spec["events"]), float(spec["interval"])
        except (ValueError, KeyError, TypeError):
            writer.write(BAD_REQUEST)
            return False
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(size, events, interval)
        self.streams += 1
        writer.write(HEAD)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        group.add(writer.transport, done)  # type: ignore[arg-type]
        await done
        if group.started and all(f.done() for _, f in group.streams):
            self.groups.pop(key, None)
        return True

    def _stats(self, writer: asyncio.StreamWriter) -> None:
        stats = {
            "cpu": time.process_time(),
            "connections": self.connections,
            "open": self.open,
            "peak": self.peak,
            "streams": self.streams,
            "request_bytes": self.request_bytes,
            "nofile": list(self.nofile),
        }
        self.peak = self.open
        data = json.dumps(stats).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(data) + data
        )


async def _serve(port: int) -> None:
    server = FaninServer()
    server.nofile = raise_nofile()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", port, backlog=8192)
    bound = listener.sockets[0].getsockname()[1]
    print(f"PORT {bound} NOFILE {server.nofile[0]} {server.nofile[1]}", flush=True)
    async with listener:
        await listener.serve_forever()


class ServerProcess:
    """The fan-in server in its own process (``python -m benchmarks.fanin serve``)."""

    def __init__(self, cwd: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fanin", "serve"],
            cwd=cwd,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if not line or line[0] != "PORT":
            self.stop()
            raise RuntimeError(f"fan-in server did not start: {line!r}")
        self.port = int(line[1])
        self.nofile = (int(line[3]), int(line[4]))
        self.base_url = f"http://127.0.0.1:{self.port}"

    def stats(self) -> Dict[str, Any]:
        return get_json(self.base_url + "/stats")

    def stop(self) -> None:
        stop_process(self.process)
        if self.process.stdout is not None:
            self.process.stdout.close()


# --------------------------------------------------------------------------- clients


class State:
    """What the streams of one measurement share: counters, snapshots, latenesses."""

    def __init__(self, count: int, start_url: str) -> None:
        self.count = count
        self.start_url = start_url
        self.opened = 0
        self.firsts = 0
        self.early = 0  # events received before every stream was open
        self.cpu_open = 0.0
        self.wall_open = 0.0
        self.rss_open = 0
        self.rss_first = 0
        self.fds_open = 0
        self.late: List[float] = []
        self.lock = threading.Lock()
        self.all_open = threading.Event()

    def open(self) -> None:
        with self.lock:
            self.opened += 1
            if self.opened == self.count:
                self.cpu_open = time.process_time()
                self.wall_open = time.perf_counter()
                self.rss_open = rss_bytes()
                self.fds_open = open_fds()
                self.all_open.set()
                # Tell the server to start the events: a blocking call, on the event
                # loop's thread too, at a moment when no event is due yet.
                signal = urllib.request.Request(self.start_url, method="POST", data=b"")
                with urllib.request.urlopen(signal, timeout=60) as answer:
                    answer.read()

    def first(self) -> None:
        with self.lock:
            if self.opened < self.count:
                self.early += 1
            self.firsts += 1
            if self.firsts == self.count:
                self.rss_first = rss_bytes()


class GcClock:
    """The garbage collector's work while installed: collections per generation and
    the longest pause, through ``gc.callbacks`` (a diagnostic of lateness)."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.longest = [0.0, 0.0, 0.0]
        self.total = 0.0
        self.started = 0.0

    def __call__(self, phase: str, info: Dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        pause = time.perf_counter() - self.started
        generation = info["generation"]
        self.collections[generation] += 1
        self.longest[generation] = max(self.longest[generation], pause)
        self.total += pause

    def figures(self) -> Dict[str, Any]:
        return {
            "gc_collections": self.collections,
            "gc_longest_ms": [x * 1e3 for x in self.longest],
            "gc_total_ms": self.total * 1e3,
        }


Outcome = Tuple[int, int, Optional[str]]
"""One stream's (events, content characters, error or None)."""


def request_body(params: Dict[str, Any]) -> Dict[str, Any]:
    """What ``client.create("bench", CONVERSATION, fanin=params)`` sends."""
    return {
        "model": "bench",
        "messages": CONVERSATION,
        "media": None,
        "api_key": None,
        "fanin": params,
    }


class AsyncReader:
    """One way of reading streams on one event loop; subclasses fill in the three steps."""

    threads = False

    async def open(self, base_url: str, limit: int) -> None:
        raise NotImplementedError

    async def stream(self, params: Dict[str, Any], state: State) -> Outcome:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class SdkAsync(AsyncReader):
    """``AsyncBackendApiClient``, as in the README's quick start."""

    async def open(self, base_url: str, limit: int) -> None:
        from backendapi import AsyncBackendApiClient

        self.client = AsyncBackendApiClient(base_url, max_connections=limit)

    async def stream(self, params: Dict[str, Any], state: State) -> Outcome:
        late = state.late.append
        now = time.time
        events = chars = 0
        async with self.client.create("bench", CONVERSATION, fanin=params) as stream:
            state.open()
            async for event in stream:
                late(now() - event.sent)
                events += 1
                if events == 1:
                    state.first()
                if event.type == "content":
                    chars += len(event.content)
        return events, chars, None

    async def close(self) -> None:
        await self.client.aclose()


class AiohttpLines(AsyncReader):
    """Bare ``aiohttp``: ``async for line in response.content`` + ``json.loads``."""

    async def open(self, base_url: str, limit: int) -> None:
        import aiohttp

        self.url = base_url + PATH
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit))

    async def stream(self, params: Dict[str, Any], state: State) -> Outcome:
        late = state.late.append
        now = time.time
        loads = json.loads
        events = chars = 0
        async with self.session.post(
            self.url, json=request_body(params), headers={"Accept": "text/event-stream"}
        ) as response:
            response.raise_for_status()
            state.open()
            async for line in response.content:
                if line.startswith(b"data:"):
                    obj = loads(line[5:])
                    late(now() - obj["sent"])
                    events += 1
                    if events == 1:
                        state.first()
                    if obj["type"] == "content":
                        chars += len(obj["content"])
        return events, chars, None

    async def close(self) -> None:
        await self.session.close()


class AiohttpLinesReadTimeout(AiohttpLines):
    """Bare ``aiohttp`` as above with the SDK's default timeouts (``connect=10, read=600``,
    no total) as aiohttp's ``sock_connect``/``sock_read``: a diagnostic row, what the
    read timeout costs (aiohttp re-arms a timer on every read)."""

    async def open(self, base_url: str, limit: int) -> None:
        import aiohttp

        self.url = base_url + PATH
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=600)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit), timeout=timeout
        )


class HttpxSseAsync(AsyncReader):
    """``httpx.AsyncClient`` + ``httpx-sse`` (``aconnect_sse`` / ``aiter_sse``) + ``json.loads``."""

    async def open(self, base_url: str, limit: int) -> None:
        import httpx
        from httpx_sse import aconnect_sse

        self.url = base_url + PATH
        self.aconnect_sse = aconnect_sse
        self.client = httpx.AsyncClient(
            timeout=600.0,
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
        )

    async def stream(self, params: Dict[str, Any], state: State) -> Outcome:
        late = state.late.append
        now = time.time
        loads = json.loads
        events = chars = 0
        async with self.aconnect_sse(
            self.client, "POST", self.url, json=request_body(params)
        ) as source:
            source.response.raise_for_status()
            state.open()
            async for sse in source.aiter_sse():
                obj = loads(sse.data)
                late(now() - obj["sent"])
                events += 1
                if events == 1:
                    state.first()
                if obj["type"] == "content":
                    chars += len(obj["content"])
        return events, chars, None

    async def close(self) -> None:
        await self.client.aclose()


class ThreadReader:
    """One way of reading streams, one thread per stream, through one shared client."""

    threads = True

    def open(self, base_url: str, limit: int) -> None:
        raise NotImplementedError

    def stream(self, params: Dict[str, Any], state: State) -> Outcome:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SdkSync(ThreadReader):
    """``BackendApiClient``, shared by the threads (the README says it may be)."""

    def open(self, base_url: str, limit: int) -> None:
        from backendapi import BackendApiClient

        self.client = BackendApiClient(base_url, max_connections=limit)

    def stream(self, params: Dict[str, Any], state: State) -> Outcome:
        late = state.late.append
        now = time.time
        events = chars = 0
        with self.client.create("bench", CONVERSATION, fanin=params) as stream:
            state.open()
            for event in stream:
                late(now() - event.sent)
                events += 1
                if events == 1:
                    state.first()
                if event.type == "content":
                    chars += len(event.content)
        return events, chars, None

    def close(self) -> None:
        self.client.close()


class RequestsLines(ThreadReader):
    """``requests`` (one ``Session``, its pool as large as the threads) + ``iter_lines``
    + ``json.loads``."""

    timeout: Optional[Tuple[float, float]] = None
    """requests' ``timeout``: none here, as most hand-written ``requests`` loops send it."""

    def open(self, base_url: str, limit: int) -> None:
        import requests
        from requests.adapters import HTTPAdapter

        self.url = base_url + PATH
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=limit)
        self.session.mount("http://", adapter)

    def stream(self, params: Dict[str, Any], state: State) -> Outcome:
        late = state.late.append
        now = time.time
        loads = json.loads
        events = chars = 0
        with self.session.post(
            self.url,
            json=request_body(params),
            headers={"Accept": "text/event-stream"},
            stream=True,
            timeout=self.timeout,
        ) as response:
            response.raise_for_status()
            state.open()
            for line in response.iter_lines():
                if line.startswith(b"data:"):
                    obj = loads(line[5:])
                    late(now() - obj["sent"])
                    events += 1
                    if events == 1:
                        state.first()
                    if obj["type"] == "content":
                        chars += len(obj["content"])
        return events, chars, None

    def close(self) -> None:
        self.session.close()


class RequestsLinesReadTimeout(RequestsLines):
    """``requests`` as above with the SDK's default timeouts (``connect=10, read=600``): a
    diagnostic row, what a read timeout costs a thread (CPython waits for the socket with
    ``poll()`` before each ``recv`` on a socket that has a timeout)."""

    timeout = (10, 600)


READERS: Dict[str, Callable[[], Any]] = {
    "sdk-async": SdkAsync,
    "aiohttp": AiohttpLines,
    "aiohttp-read-timeout": AiohttpLinesReadTimeout,
    "httpx-sse-async": HttpxSseAsync,
    "sdk-sync": SdkSync,
    "requests": RequestsLines,
    "requests-read-timeout": RequestsLinesReadTimeout,
}
LABELS = {
    "sdk-async": "AsyncBackendApiClient",
    "aiohttp": "aiohttp lines + json.loads",
    "aiohttp-read-timeout": "  the same, sock_read=600 (extra)",
    "httpx-sse-async": "httpx + httpx-sse (async)",
    "sdk-sync": "BackendApiClient, threads",
    "requests": "requests iter_lines+json, threads",
    "requests-read-timeout": "  the same, read timeout (extra)",
}


def _start_url(spec: Dict[str, Any], run: str) -> str:
    return f"{spec['base_url']}/start/{run}"


def _error(exc: BaseException) -> Outcome:
    return 0, 0, f"{type(exc).__name__}: {exc}"[:300]


async def _measure_async(reader: AsyncReader, spec: Dict[str, Any]) -> Dict[str, Any]:
    count, run = spec["n"], spec["run"]
    params = {"run": run, "n": count, "events": spec["events"], "interval": spec["interval"]}
    fds0 = open_fds()
    await reader.open(spec["base_url"], spec["limit"])
    warm = State(1, _start_url(spec, run + "-warm"))
    warm_params = {"run": run + "-warm", "n": 1, "events": 2, "interval": 0.001}
    warm_outcome = await reader.stream(warm_params, warm)

    async def one() -> Outcome:
        try:
            return await reader.stream(params, state)
        except Exception as exc:  # reported per stream, never raised
            return _error(exc)

    state = State(count, _start_url(spec, run))
    gc.collect()
    rss0 = rss_bytes()
    clock = GcClock()
    gc.callbacks.append(clock)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    outcomes = await asyncio.gather(*(one() for _ in range(count)))
    cpu1, wall1 = time.process_time(), time.perf_counter()
    gc.callbacks.remove(clock)
    await reader.close()
    fds_closed = open_fds()
    await asyncio.sleep(0)  # transports close their sockets on the next loop iteration
    await asyncio.sleep(0)
    return _result(
        spec, state, outcomes, warm_outcome, fds0, fds_closed, rss0, cpu0, wall0, cpu1, wall1, clock
    )


def _measure_threads(reader: ThreadReader, spec: Dict[str, Any]) -> Dict[str, Any]:
    count, run = spec["n"], spec["run"]
    params = {"run": run, "n": count, "events": spec["events"], "interval": spec["interval"]}
    fds0 = open_fds()
    reader.open(spec["base_url"], spec["limit"])
    warm_params = {"run": run + "-warm", "n": 1, "events": 2, "interval": 0.001}
    warm_outcome = reader.stream(warm_params, State(1, _start_url(spec, run + "-warm")))
    state = State(count, _start_url(spec, run))
    outcomes: List[Outcome] = [(0, 0, "never ran")] * count

    def one(index: int) -> None:
        try:
            outcomes[index] = reader.stream(params, state)
        except Exception as exc:  # reported per stream, never raised
            outcomes[index] = _error(exc)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    gc.collect()
    rss0 = rss_bytes()
    clock = GcClock()
    gc.callbacks.append(clock)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu1, wall1 = time.process_time(), time.perf_counter()
    gc.callbacks.remove(clock)
    reader.close()
    fds_closed = open_fds()
    return _result(
        spec, state, outcomes, warm_outcome, fds0, fds_closed, rss0, cpu0, wall0, cpu1, wall1, clock
    )


def _result(
    spec: Dict[str, Any],
    state: State,
    outcomes: Sequence[Outcome],
    warm: Outcome,
    fds0: int,
    fds_closed: int,
    rss0: int,
    cpu0: float,
    wall0: float,
    cpu1: float,
    wall1: float,
    clock: GcClock,
) -> Dict[str, Any]:
    fds_end = open_fds()
    counts = [events for events, _, _ in outcomes]
    errors = [error for _, _, error in outcomes if error]
    events = sum(counts)
    opened = state.opened == state.count
    late = sorted(state.late)
    cpu_open = (state.cpu_open if opened else cpu1) - cpu0
    cpu_read = cpu1 - state.cpu_open if opened else 0.0
    return {
        "client": spec["client"],
        "n": spec["n"],
        "events_per_stream": spec["events"],
        "interval": spec["interval"],
        "limit": spec["limit"],
        "events": events,
        "chars": sum(chars for _, chars, _ in outcomes),
        "streams_complete": sum(1 for c in counts if c == spec["events"]),
        "min_events": min(counts) if counts else 0,
        "max_events": max(counts) if counts else 0,
        "errors": len(errors),
        "first_errors": sorted(set(errors))[:3],
        "warm_events": warm[0],
        "early_events": state.early,
        "all_open": opened,
        "cpu_open": cpu_open,
        "cpu_read": cpu_read,
        "request_cpu_us": cpu_open / spec["n"] * 1e6,
        "event_cpu_us": cpu_read / events * 1e6 if events else None,
        "wall_open": (state.wall_open if opened else wall1) - wall0,
        "wall_read": wall1 - state.wall_open if opened else 0.0,
        "late_p50_ms": _quantile(late, 0.50) * 1e3,
        "late_p99_ms": _quantile(late, 0.99) * 1e3,
        "late_max_ms": late[-1] * 1e3 if late else None,
        "late_min_ms": late[0] * 1e3 if late else None,
        "late_count": len(late),
        "rss0": rss0,
        "rss_open": state.rss_open,
        "rss_first": state.rss_first,
        "stream_kib": (state.rss_first - rss0) / spec["n"] / 1024 if state.rss_first else None,
        "fds_before": fds0,
        "fds_open": state.fds_open,
        "fds_closed": fds_closed,
        "fds_after": fds_end,
        "speedups": "msgspec" if "msgspec" in sys.modules else None,
        **clock.figures(),
    }


def _quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def measure(spec: Dict[str, Any]) -> Dict[str, Any]:
    """One measurement (a fresh process's whole life): ``spec`` names the client,
    ``base_url``, ``n`` streams of ``events`` events every ``interval`` seconds, the
    group's ``run`` id and the client's connection ``limit``."""
    nofile = raise_nofile()
    reader = READERS[spec["client"]]()
    if reader.threads:
        result = _measure_threads(reader, spec)
    else:
        loop = asyncio.new_event_loop()
        try:
            result = loop.run_until_complete(_measure_async(reader, spec))
        finally:
            loop.close()
    result["nofile"] = list(nofile)
    return result


# --------------------------------------------------------------------------- orchestration


class Run:
    """One row group of the table: ``n`` streams, ``events`` each, one every ``interval`` s."""

    def __init__(
        self,
        name: str,
        n: int,
        events: int,
        interval: float,
        clients: Sequence[str],
        repeats: int,
        limit: Optional[int] = None,
        reference: Optional[str] = None,
    ) -> None:
        self.name = name
        self.n = n
        self.events = events
        self.interval = interval
        self.clients = tuple(clients)
        self.repeats = repeats
        self.limit = limit or max(1000, n)
        """The client's connection limit: the SDK's default (1,000) unless ``n`` is more."""
        self.reference = reference or self.clients[-1]
        """The client the others are compared with (the ``x`` columns)."""


def plan(quick: bool, repeats: Optional[int] = None) -> List[Run]:
    """The runs of a full section (or of a ``--quick`` smoke run)."""
    if quick:
        r = repeats or 1
        return [
            Run(
                "n1000",
                40,
                5,
                0.02,
                ("sdk-async", "aiohttp", "aiohttp-read-timeout"),
                r,
                reference="aiohttp",
            ),
            Run("n500", 20, 5, 0.02, ("sdk-async", "aiohttp"), r),
            Run("httpx", 10, 5, 0.02, ("sdk-async", "httpx-sse-async"), r),
            Run("blocking", 10, 5, 0.02, ("sdk-sync", "requests"), r),
            Run("n5000", 200, 3, 0.05, ("sdk-async",), 1, limit=200),
        ]
    r = repeats or 3
    return [
        Run(
            "n1000",
            1000,
            60,
            0.05,
            ("sdk-async", "aiohttp", "aiohttp-read-timeout"),
            r,
            reference="aiohttp",
        ),
        Run(
            "n500",
            500,
            60,
            0.05,
            ("sdk-async", "aiohttp", "aiohttp-read-timeout"),
            r,
            reference="aiohttp",
        ),
        Run("httpx", 100, 60, 0.05, ("sdk-async", "httpx-sse-async"), r),
        Run(
            "blocking",
            200,
            60,
            0.05,
            ("sdk-sync", "requests", "requests-read-timeout"),
            r,
            reference="requests",
        ),
        Run("n5000", 5000, 20, 0.5, ("sdk-async", "aiohttp"), 1, limit=5000),
    ]


def run_client(cwd: str, spec: Dict[str, Any], timeout: float = 600.0) -> Dict[str, Any]:
    """One measurement in a fresh ``python -m benchmarks.fanin client`` process."""
    return run_for_result(
        ["-m", "benchmarks.fanin", "client", json.dumps(spec)],
        cwd,
        f"fan-in client {spec['client']}",
        timeout,
    )


def measure_run(
    server: ServerProcess, cwd: str, run: Run, repeat: int, client: str, serial: int
) -> Dict[str, Any]:
    """One client process of ``run``, with the server's CPU time over it."""
    spec = {
        "client": client,
        "base_url": server.base_url,
        "n": run.n,
        "events": run.events,
        "interval": run.interval,
        "limit": run.limit,
        "run": f"{run.name}-{client}-{repeat}-{serial}",
    }
    before = server.stats()["cpu"]
    result = run_client(cwd, spec)
    result["server_cpu"] = server.stats()["cpu"] - before
    return result


SUMMED = (
    "event_cpu_us",
    "request_cpu_us",
    "late_p50_ms",
    "late_p99_ms",
    "stream_kib",
    "wall_read",
    "wall_open",
    "server_cpu",
)


def summarise(results: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """The medians of one client's repeats, and the worst of its checks."""
    row: Dict[str, Any] = {"repeats": len(results)}
    for name in SUMMED:
        values = [r[name] for r in results if r.get(name) is not None]
        row[name] = statistics.median(values) if values else None
        row[name + "_all"] = values
    first = results[0]
    for name in ("n", "events_per_stream", "interval", "limit", "nofile", "speedups"):
        row[name] = first[name]
    expected = first["n"] * first["events_per_stream"]
    row["ok"] = all(
        r["errors"] == 0
        and r["events"] == expected
        and r["streams_complete"] == r["n"]
        and r["late_count"] == r["events"]
        and r["fds_after"] == r["fds_before"]
        and r["early_events"] == 0
        for r in results
    )
    for name in ("errors", "early_events"):
        row[name] = max(r[name] for r in results)
    row["min_events"] = min(r["min_events"] for r in results)
    row["max_events"] = max(r["max_events"] for r in results)
    row["events"] = min(r["events"] for r in results)
    row["expected"] = expected
    row["first_errors"] = sorted({e for r in results for e in r["first_errors"]})[:3]
    row["late_min_ms"] = min(r["late_min_ms"] for r in results if r["late_min_ms"] is not None)
    row["late_max_ms"] = max(r["late_max_ms"] for r in results if r["late_max_ms"] is not None)
    row["fds"] = sorted({(r["fds_before"], r["fds_open"], r["fds_after"]) for r in results})
    row["fds_closed"] = sorted({r["fds_closed"] for r in results})
    row["gc"] = [
        (r["gc_collections"], r["gc_longest_ms"][2], r["gc_total_ms"])
        for r in results
        if "gc_collections" in r
    ]
    row["server_cpu_per_event_us"] = (
        row["server_cpu"] / expected * 1e6 if row["server_cpu"] is not None else None
    )
    return row


def bench(
    cwd: str,
    quick: bool,
    repeats: Optional[int] = None,
    log: Callable[[str], None] = print,
    runs: Optional[Sequence[Run]] = None,
) -> Dict[str, Any]:
    """Every run of :func:`plan` (or ``runs``): the clients of a run alternate within
    each repeat, so drift hits them alike. Returns the summaries by run and client."""
    runs = list(runs) if runs is not None else plan(quick, repeats)
    server = ServerProcess(cwd)
    report: Dict[str, Any] = {"server_nofile": list(server.nofile), "runs": {}}
    started = time.perf_counter()
    serial = 0
    try:
        for run in runs:
            log(
                f"  fanin: {run.n:,} streams x {run.events} events every {run.interval * 1000:.0f} "
                f"ms, {', '.join(run.clients)}, {run.repeats} repeat(s) ..."
            )
            results: Dict[str, List[Dict[str, Any]]] = {c: [] for c in run.clients}
            for repeat in range(run.repeats):
                for client in run.clients:
                    serial += 1
                    results[client].append(measure_run(server, cwd, run, repeat, client, serial))
            report["runs"][run.name] = {
                "n": run.n,
                "events": run.events,
                "interval": run.interval,
                "limit": run.limit,
                "repeats": run.repeats,
                "reference": run.reference,
                "clients": {c: summarise(rs) for c, rs in results.items()},
                "raw": results,
            }
    finally:
        server.stop()
    report["seconds"] = time.perf_counter() - started
    return report


TARGET_CPU_AIOHTTP = 1.10
TARGET_CPU_HTTPX = 0.25
TARGET_LATENESS = 1.2
TARGET_MEMORY = 1.2
TARGET_CPU_BLOCKING = 1.10


def _figure(report: Dict[str, Any], run: str, client: str, name: str) -> Optional[float]:
    row = report["runs"].get(run, {}).get("clients", {}).get(client)
    return None if row is None else row.get(name)


def targets(report: Optional[Dict[str, Any]]) -> List[Tuple[str, Optional[bool], str]]:
    """Each fan-in target: (description, met or None when not measured, the figures)."""
    if not report:
        return []
    out: List[Tuple[str, Optional[bool], str]] = []

    def n(run: str) -> str:
        """The run's N as measured (a --quick run's is small)."""
        count = report["runs"].get(run, {}).get("n") if report else None
        return "?" if count is None else f"{count:,}"

    def compare(
        description: str,
        run: str,
        a: str,
        b: str,
        name: str,
        goal: float,
        run_b: Optional[str] = None,
    ) -> None:
        """``a`` in ``run`` against ``b`` in ``run_b`` (the same run unless given)."""
        run_b = run_b or run
        x, y = _figure(report, run, a, name), _figure(report, run_b, b, name)
        n = report["runs"].get(run, {}).get("n")
        n_b = report["runs"].get(run_b, {}).get("n")
        if x is None or y is None or not y:
            out.append((description, None, "not measured"))
            return
        where = f"N={n:,}" if n == n_b else f"N={n:,} against N={n_b:,}"
        out.append((description, x / y <= goal, f"{x / y:.2f}x ({x:.1f} against {y:.1f}, {where})"))

    compare(
        f"async client CPU/event <= {TARGET_CPU_AIOHTTP}x bare aiohttp, N={n('n1000')}",
        "n1000",
        "sdk-async",
        "aiohttp",
        "event_cpu_us",
        TARGET_CPU_AIOHTTP,
    )
    # The issue's reading: httpx runs "at a smaller N if it cannot keep up; ratios are per
    # event", so the SDK's figure at N=1,000 against httpx's at the N it sustains. At that
    # same smaller N the SDK costs more per event (each event wakes the loop alone), so
    # the like-for-like ratio is printed as well, as a stricter target.
    compare(
        f"async client CPU/event <= {TARGET_CPU_HTTPX}x httpx + httpx-sse "
        f"(N={n('n1000')}; httpx at the N it sustains)",
        "n1000",
        "sdk-async",
        "httpx-sse-async",
        "event_cpu_us",
        TARGET_CPU_HTTPX,
        run_b="httpx",
    )
    compare(
        f"  the same, stricter: both at httpx's N <= {TARGET_CPU_HTTPX}x",
        "httpx",
        "sdk-async",
        "httpx-sse-async",
        "event_cpu_us",
        TARGET_CPU_HTTPX,
    )
    compare(
        f"async client p99 lateness <= {TARGET_LATENESS}x bare aiohttp's, N={n('n500')}",
        "n500",
        "sdk-async",
        "aiohttp",
        "late_p99_ms",
        TARGET_LATENESS,
    )
    compare(
        f"async client memory per open stream <= {TARGET_MEMORY}x bare aiohttp's, N={n('n1000')}",
        "n1000",
        "sdk-async",
        "aiohttp",
        "stream_kib",
        TARGET_MEMORY,
    )
    big = report["runs"].get("n5000", {}).get("clients", {}).get("sdk-async")
    if big is None:
        out.append(("5,000 streams through one async client", None, "not measured"))
    else:
        fds = ", ".join(f"{b}->{o}->{a}" for b, o, a in big["fds"])
        out.append(
            (
                f"{big['n']:,} streams held open and read to the end through one async client",
                big["ok"],
                f"{big['events']:,} of {big['expected']:,} events, {big['errors']} errors, "
                f"fds before->open->after {fds}",
            )
        )
    compare(
        f"blocking client CPU/event <= {TARGET_CPU_BLOCKING}x requests+iter_lines+json.loads, "
        f"a thread per stream, N={n('blocking')}",
        "blocking",
        "sdk-sync",
        "requests",
        "event_cpu_us",
        TARGET_CPU_BLOCKING,
    )
    return out


def print_report(report: Optional[Dict[str, Any]], log: Callable[[str], None] = print) -> None:
    """The fan-in tables."""
    if not report:
        return
    log("")
    log(
        "== Fan-in: N concurrent slow streams (one event per read) through one client, "
        "each client in a fresh process; medians of the repeats =="
    )
    log(
        "CPU us/ev: client CPU over the reading phase / events; req us: CPU of the opening "
        "phase (requests sent, heads read, no event yet) / N; late: receive - send time; "
        "KiB/str: RSS once every stream has its first event, minus RSS before opening, / N; "
        "fds: before -> all open -> after close; x: / the run's reference (bare aiohttp, httpx, "
        "requests)."
    )
    header = (
        f"{'client':<34}{'CPU us/ev':>10}{'x':>6}{'req us':>8}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'x':>6}{'KiB/str':>9}{'x':>6}{'events':>12}  fds"
    )
    for name, run in report["runs"].items():
        clients = run["clients"]
        reference = clients[run.get("reference") or list(clients)[-1]]
        rate = 1 / run["interval"]
        log("")
        log(
            f"{run['n']:,} streams x {run['events']} events at {rate:g}/s "
            f"({run['events'] * run['interval']:.1f} s of events per stream), "
            f"{run['repeats']} repeat(s), client connection limit {run['limit']:,} [{name}]"
        )
        log(header)
        log("-" * len(header))
        for client, row in clients.items():
            fds = ",".join(f"{b}->{o}->{a}" for b, o, a in row["fds"])
            log(
                f"{LABELS[client]:<34}{_num(row['event_cpu_us']):>10}"
                f"{_ratio(row['event_cpu_us'], reference['event_cpu_us']):>6}"
                f"{_num(row['request_cpu_us']):>8}{_num(row['late_p50_ms'], 1):>8}"
                f"{_num(row['late_p99_ms'], 1):>8}"
                f"{_ratio(row['late_p99_ms'], reference['late_p99_ms']):>6}"
                f"{_num(row['stream_kib'], 1):>9}"
                f"{_ratio(row['stream_kib'], reference['stream_kib']):>6}"
                f"{row['events']:>12,}  {fds}"
            )
        for client, row in clients.items():
            cpus = ", ".join(f"{v:.1f}" for v in row["event_cpu_us_all"])
            p99s = ", ".join(f"{v:.1f}" for v in row["late_p99_ms_all"])
            notes = [
                f"CPU us/ev {cpus}",
                f"p99 ms {p99s}",
                f"reading phase {_num(row['wall_read'], 2)} s",
                f"server CPU {_num(row['server_cpu_per_event_us'], 1)} us/ev",
                "gc collections gen0/1/2 (longest full one, all pauses) "
                + ", ".join(
                    f"{'/'.join(str(c) for c in counts)} ({longest:.1f}, {total:.0f} ms)"
                    for counts, longest, total in row["gc"]
                ),
            ]
            if row["speedups"] or client.startswith("sdk"):
                notes.append(f"speedups: {row['speedups'] or 'none'}")
            if not row["ok"]:
                notes.append(
                    f"CHECK FAILED: events per stream {row['min_events']}-{row['max_events']} "
                    f"of {run['events']}, {row['errors']} errors {row['first_errors']}, "
                    f"{row['early_events']} events before all were open, fds {row['fds']}"
                )
            log(f"  {LABELS[client]}: " + "; ".join(notes))
    nofile = {
        tuple(r["nofile"]) for run in report["runs"].values() for r in run["clients"].values()
    }
    log("")
    log(
        "RLIMIT_NOFILE soft limit raised to the hard limit: server "
        f"{report['server_nofile'][0]} -> {report['server_nofile'][1]}, clients "
        + ", ".join(f"{a} -> {b}" for a, b in sorted(nofile))
        + f"; fan-in section {report['seconds']:.0f} s"
    )


def _num(value: Optional[float], digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(value: Optional[float], reference: Optional[float]) -> str:
    if value is None or not reference:
        return "-"
    return f"{value / reference:.2f}"


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["serve"]:
        port = int(args[1]) if len(args) > 1 else 0
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(port))
    elif args[:1] == ["client"] and len(args) == 2:
        print("RESULT " + json.dumps(measure(json.loads(args[1]))), flush=True)
    else:
        sys.exit("usage: python -m benchmarks.fanin serve [PORT] | client '<json spec>'")


if __name__ == "__main__":
    main()
