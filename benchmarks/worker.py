"""One measurement in a fresh process: ``python -m benchmarks.worker '<json spec>'``.

The parent (``benchmarks.run``) starts one worker per measurement, so peak
memory and imported modules belong to that measurement alone, and the CPU
time read here (``time.process_time()``: user + system time of this process,
all its threads) never includes the server's. The worker prints one line,
``RESULT <json>``.

Each client imports its libraries and builds its session in ``setup()``,
before the clock starts; ``stream()`` sends one conversation request and
consumes every event the way the README (or the library's docs) suggests,
counting events and ``content`` characters so the parent can check that every
client saw the whole stream.

This file imports nothing from ``benchmarks``: the A/B section runs it as a
plain script (``python benchmarks/worker.py``), so that the ``backendapi`` it
imports is the one first on ``PYTHONPATH``, not the one next to it.

The SDK is used through its public API only (``BackendApiClient``,
``AsyncBackendApiClient``, ``create``, ``event.type``/``content``,
``stream.answer``, ``EventDecoder``...), never through its private modules,
whose names change: the same worker measures any version of the package. The
one exception is the memory diagnostic's patch (``_disable_answer``), which
checks that it took.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

PATH = "/backend-api/v2/conversation"
MESSAGES = [{"role": "user", "content": "Benchmark"}]


def request_body(kind: str) -> Dict[str, Any]:
    """What ``client.create("bench", MESSAGES, bench=kind)`` sends."""
    return {"model": "bench", "messages": MESSAGES, "media": None, "api_key": None, "bench": kind}


# --------------------------------------------------------------------------- memory


def rss_bytes() -> int:
    """The current resident set size."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize()


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM); False if not allowed here."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def peak_bytes() -> int:
    """The peak RSS since the last reset (VmHWM), else since the process started."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --------------------------------------------------------------------------- clients


class Client:
    """One way of reading the stream; subclasses fill in setup/stream/close."""

    framing = "sse"
    kind = "t"
    speedups = True
    """For the SDK's clients: whether its ``speedups`` extra may be used."""

    def setup(self, base_url: str, framing: str, kind: str) -> None:
        self.base_url = base_url
        self.url = base_url + PATH
        self.framing = framing
        self.kind = kind

    def stream(self) -> Tuple[int, int]:
        """Read one whole stream; return (events, content characters)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class AsyncClient(Client):
    """Runs its coroutines on one event loop created in setup()."""

    def setup(self, base_url: str, framing: str, kind: str) -> None:
        import asyncio

        super().setup(base_url, framing, kind)
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.asetup())

    async def asetup(self) -> None:
        pass

    async def astream(self) -> Tuple[int, int]:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass

    def stream(self) -> Tuple[int, int]:
        return self.loop.run_until_complete(self.astream())

    def close(self) -> None:
        self.loop.run_until_complete(self.aclose())
        self.loop.close()


class SdkSync(Client):
    """``BackendApiClient``, as in the README's quick start."""

    def setup(self, base_url: str, framing: str, kind: str) -> None:
        super().setup(base_url, framing, kind)
        from backendapi import BackendApiClient

        self.client = BackendApiClient(base_url)
        self.last: Any = None

    def stream(self) -> Tuple[int, int]:
        events = chars = 0
        with self.client.create("bench", MESSAGES, bench=self.kind) as stream:
            for event in stream:
                events += 1
                if event.type == "content":
                    chars += len(event.content)
        self.last = stream
        return events, chars

    def close(self) -> None:
        self.client.close()


class SdkAsync(AsyncClient):
    """``AsyncBackendApiClient``, as in the README's quick start."""

    async def asetup(self) -> None:
        from backendapi import AsyncBackendApiClient

        self.client = AsyncBackendApiClient(self.base_url)
        self.last: Any = None

    async def astream(self) -> Tuple[int, int]:
        events = chars = 0
        async with self.client.create("bench", MESSAGES, bench=self.kind) as stream:
            async for event in stream:
                events += 1
                if event.type == "content":
                    chars += len(event.content)
        self.last = stream
        return events, chars

    async def aclose(self) -> None:
        await self.client.aclose()


class SdkSyncPlain(SdkSync):
    """``BackendApiClient`` in pure Python (``BACKENDAPI_SPEEDUPS=0``): no msgspec."""

    speedups = False


class SdkAsyncPlain(SdkAsync):
    """``AsyncBackendApiClient`` in pure Python (``BACKENDAPI_SPEEDUPS=0``)."""

    speedups = False


class RequestsLines(Client):
    """``requests`` + ``iter_lines()`` (its default chunk_size, 512) + ``json.loads``.

    SSE is read the way a hand-written loop does: every ``data:`` line is JSON.
    """

    def setup(self, base_url: str, framing: str, kind: str) -> None:
        super().setup(base_url, framing, kind)
        import requests

        self.session = requests.Session()

    def stream(self) -> Tuple[int, int]:
        loads = json.loads
        events = chars = 0
        with self.session.post(
            self.url,
            json=request_body(self.kind),
            headers={"Accept": "text/event-stream"},
            stream=True,
        ) as response:
            response.raise_for_status()
            if self.framing == "ndjson":
                for line in response.iter_lines():
                    if line:
                        obj = loads(line)
                        events += 1
                        if obj["type"] == "content":
                            chars += len(obj["content"])
            else:
                for line in response.iter_lines():
                    if line.startswith(b"data:"):
                        obj = loads(line[5:])
                        events += 1
                        if obj["type"] == "content":
                            chars += len(obj["content"])
        return events, chars

    def close(self) -> None:
        self.session.close()


class AiohttpLines(AsyncClient):
    """``aiohttp`` + ``async for line in response.content`` + ``json.loads``."""

    async def asetup(self) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession()

    async def astream(self) -> Tuple[int, int]:
        loads = json.loads
        events = chars = 0
        async with self.session.post(
            self.url, json=request_body(self.kind), headers={"Accept": "text/event-stream"}
        ) as response:
            response.raise_for_status()
            if self.framing == "ndjson":
                async for line in response.content:
                    line = line.strip()
                    if line:
                        obj = loads(line)
                        events += 1
                        if obj["type"] == "content":
                            chars += len(obj["content"])
            else:
                async for line in response.content:
                    if line.startswith(b"data:"):
                        obj = loads(line[5:])
                        events += 1
                        if obj["type"] == "content":
                            chars += len(obj["content"])
        return events, chars

    async def aclose(self) -> None:
        await self.session.close()


class HttpxSse(Client):
    """``httpx`` + ``httpx-sse`` (``connect_sse`` / ``iter_sse``) + ``json.loads``.

    httpx-sse reads SSE only; for NDJSON this is ``httpx`` ``iter_lines()`` +
    ``json.loads``, the nearest thing with the same HTTP stack.
    """

    def setup(self, base_url: str, framing: str, kind: str) -> None:
        super().setup(base_url, framing, kind)
        import httpx
        from httpx_sse import connect_sse

        self.client = httpx.Client(timeout=60.0)
        self.connect_sse = connect_sse

    def stream(self) -> Tuple[int, int]:
        connect_sse = self.connect_sse
        loads = json.loads
        events = chars = 0
        body = request_body(self.kind)
        if self.framing == "ndjson":
            with self.client.stream(
                "POST", self.url, json=body, headers={"Accept": "text/event-stream"}
            ) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if line:
                        obj = loads(line)
                        events += 1
                        if obj["type"] == "content":
                            chars += len(obj["content"])
        else:
            with connect_sse(self.client, "POST", self.url, json=body) as source:
                source.response.raise_for_status()
                for sse in source.iter_sse():
                    obj = loads(sse.data)
                    events += 1
                    if obj["type"] == "content":
                        chars += len(obj["content"])
        return events, chars

    def close(self) -> None:
        self.client.close()


class HttpxSseAsync(AsyncClient):
    """``httpx.AsyncClient`` + ``aconnect_sse`` / ``aiter_sse`` (NDJSON: ``aiter_lines``)."""

    async def asetup(self) -> None:
        import httpx
        from httpx_sse import aconnect_sse

        self.client = httpx.AsyncClient(timeout=60.0)
        self.aconnect_sse = aconnect_sse

    async def astream(self) -> Tuple[int, int]:
        aconnect_sse = self.aconnect_sse
        loads = json.loads
        events = chars = 0
        body = request_body(self.kind)
        if self.framing == "ndjson":
            async with self.client.stream(
                "POST", self.url, json=body, headers={"Accept": "text/event-stream"}
            ) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if line:
                        obj = loads(line)
                        events += 1
                        if obj["type"] == "content":
                            chars += len(obj["content"])
        else:
            async with aconnect_sse(self.client, "POST", self.url, json=body) as source:
                source.response.raise_for_status()
                async for sse in source.aiter_sse():
                    obj = loads(sse.data)
                    events += 1
                    if obj["type"] == "content":
                        chars += len(obj["content"])
        return events, chars

    async def aclose(self) -> None:
        await self.client.aclose()


class SeedRawResponse:
    """gpt4free's ``RawResponse`` as the seed used it: keyword arguments become attributes."""

    def __init__(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            setattr(self, key, value)


class Seed(AsyncClient):
    """The seed's design: a session per call, ``json.loads`` per line, NDJSON only.

    ``async with ClientSession(headers=...)`` / ``session.post(json=...)`` /
    ``async for line in response.content`` /
    ``yield RawResponse(**json.loads(line))``, as in the seed's design note.
    """

    async def asetup(self) -> None:
        import aiohttp

        self.aiohttp = aiohttp

    async def _generate(self) -> Any:
        async with self.aiohttp.ClientSession(headers={"Accept": "text/event-stream"}) as session:
            response = await session.post(self.url, json=request_body(self.kind))
            async with response:
                response.raise_for_status()
                async for line in response.content:
                    yield SeedRawResponse(**json.loads(line))

    async def astream(self) -> Tuple[int, int]:
        events = chars = 0
        async for event in self._generate():
            events += 1
            if event.type == "content":
                chars += len(event.content)
        return events, chars


CLIENTS: Dict[str, Callable[[], Client]] = {
    "sdk-sync": SdkSync,
    "sdk-async": SdkAsync,
    "sdk-sync-plain": SdkSyncPlain,
    "sdk-async-plain": SdkAsyncPlain,
    "requests": RequestsLines,
    "aiohttp": AiohttpLines,
    "httpx-sse": HttpxSse,
    "httpx-sse-async": HttpxSseAsync,
    "seed": Seed,
}


# --------------------------------------------------------------------------- modes


def measure_stream(spec: Dict[str, Any]) -> Dict[str, Any]:
    """One stream through one client: wall time, CPU time, peak RSS above the start."""
    patched = _disable_answer() if spec.get("no_answer") else None
    client = CLIENTS[spec["client"]]()
    if not client.speedups:
        os.environ["BACKENDAPI_SPEEDUPS"] = "0"  # read once, when backendapi is imported
    client.setup(spec["base_url"], spec["framing"], spec.get("kind", "t"))
    gc.collect()
    rss0 = rss_bytes()
    exact_peak = reset_peak()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    events, chars = client.stream()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    peak = peak_bytes()
    result = {
        "events": events,
        "chars": chars,
        "wall": wall,
        "cpu": cpu,
        "rss0": rss0,
        "peak": peak,
        "peak_delta": max(0, peak - rss0),
        "peak_exact": exact_peak,
    }
    last = getattr(client, "last", None)
    if last is not None:
        result["answer_bytes"] = _answer_bytes(last.answer)
        result["speedups"] = speedups_used()
    if patched is not None:
        # The patch took only if the answer kept no text at all.
        result["patched"] = patched and last is not None and last.answer.text == ""
    client.close()
    return result


def speedups_used() -> Optional[str]:
    """The speedup the SDK ran with: ``"msgspec"`` if it loaded msgspec, else None.

    Read from ``sys.modules``, not from the SDK's private modules (their names
    change): nothing else in a worker imports msgspec, and the SDK imports it
    only when it uses it (never with ``BACKENDAPI_SPEEDUPS=0``).
    """
    return "msgspec" if "msgspec" in sys.modules else None


# The methods through which the streams feed ``backendapi.Answer``, as of this
# writing: ``add`` for one event, ``_add_contents`` for a run of content pieces.
_ANSWER_FEEDS = ("add", "_add_contents")


def _disable_answer() -> bool:
    """Diagnostic only: stop ``backendapi.Answer`` from keeping each event's text.

    The one place the worker reaches past the public API: it replaces the
    methods the streams feed an ``Answer`` through (``_ANSWER_FEEDS``) with
    no-ops, on the public class, importing no private module. Returns False,
    patching nothing, where the class no longer has them; the runner also
    checks after the stream (``answer_bytes`` must be that of an empty text)
    that the patch took, and reports the row as n/a if not.
    """
    from backendapi import Answer

    if not all(callable(getattr(Answer, name, None)) for name in _ANSWER_FEEDS):
        return False

    def ignore(self: Any, *args: Any) -> None:
        pass

    for name in _ANSWER_FEEDS:
        setattr(Answer, name, ignore)
    return True


def _answer_bytes(answer: Any) -> int:
    """Memory the stream's ``Answer`` holds for its text, measured as the joined text.

    ``sys.getsizeof(answer.text)``, read after the measurement: the public view
    of the content strings the answer keeps (held in a few thousand joined
    pieces while streaming; within a few hundred KiB of one string's size).
    """
    return sys.getsizeof(answer.text)


def measure_concurrency(spec: Dict[str, Any]) -> Dict[str, Any]:
    """One ``AsyncBackendApiClient`` (default settings): one big stream, then N small ones."""
    import asyncio
    import urllib.request

    from backendapi import AsyncBackendApiClient

    streams: int = spec["streams"]

    def stats() -> Dict[str, Any]:
        with urllib.request.urlopen(spec["stats_url"]) as answer:
            result: Dict[str, Any] = json.loads(answer.read())
            return result

    async def one(client: Any, kind: str, started: float, firsts: List[float]) -> int:
        events = 0
        async with client.create("bench", MESSAGES, bench=kind) as stream:
            async for event in stream:
                if not events:
                    firsts.append(time.perf_counter() - started)
                events += 1
                if event.type == "content":
                    len(event.content)
        return events

    async def bare(session: Any, url: str, body: bytes) -> int:
        # aiohttp's own part of a stream: the request and reading the body, no decoding.
        size = 0
        async with session.post(
            url, data=body, headers={"Content-Type": "application/json"}
        ) as response:
            while True:
                data = await response.content.readany()
                if not data:
                    return size
                size += len(data)

    async def bare_runs() -> List[Dict[str, float]]:
        import aiohttp

        url = spec["base_url"] + PATH
        body = json.dumps(request_body("c")).encode()
        runs: List[Dict[str, float]] = []
        connector = aiohttp.TCPConnector(limit=1000)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(bare(session, url, body) for _ in range(streams)))
            for _ in range(spec["runs"]):
                wall0, cpu0 = time.perf_counter(), time.process_time()
                await asyncio.gather(*(bare(session, url, body) for _ in range(streams)))
                runs.append(
                    {"wall": time.perf_counter() - wall0, "cpu": time.process_time() - cpu0}
                )
        return runs

    async def main() -> Dict[str, Any]:
        single: List[Dict[str, float]] = []
        many: List[Dict[str, Any]] = []
        sequential: List[Dict[str, float]] = []
        async with AsyncBackendApiClient(spec["base_url"]) as client:
            max_connections = client.max_connections  # the default setting
            for _ in range(spec["runs"]):
                wall0, cpu0 = time.perf_counter(), time.process_time()
                events = await one(client, "t", wall0, [])
                single.append(
                    {
                        "events": events,
                        "wall": time.perf_counter() - wall0,
                        "cpu": time.process_time() - cpu0,
                    }
                )
                before = stats()  # also resets the server's peak
                firsts: List[float] = []
                wall0, cpu0 = time.perf_counter(), time.process_time()
                counts = await asyncio.gather(
                    *(one(client, "c", wall0, firsts) for _ in range(streams))
                )
                wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
                after = stats()
                firsts.sort()
                many.append(
                    {
                        "events": sum(counts),
                        "min_events": min(counts),
                        "wall": wall,
                        "cpu": cpu,
                        "peak_connections": after["peak_connections"],
                        "new_connections": after["connections"] - before["connections"],
                        "first_event_median": firsts[len(firsts) // 2],
                        "first_event_max": firsts[-1],
                    }
                )
                # The same streams one after another on one connection: what the
                # requests cost without any concurrency (a diagnostic).
                wall0, cpu0 = time.perf_counter(), time.process_time()
                events = 0
                for _ in range(streams):
                    events += await one(client, "c", wall0, [])
                sequential.append(
                    {
                        "events": events,
                        "wall": time.perf_counter() - wall0,
                        "cpu": time.process_time() - cpu0,
                    }
                )
        return {
            "single": single,
            "many": many,
            "sequential": sequential,
            "bare": await bare_runs(),
            "max_connections": max_connections,
        }

    return asyncio.run(main())


def measure_decode(spec: Dict[str, Any]) -> Dict[str, Any]:
    """One big event fed to ``EventDecoder`` in small pieces vs ``json.loads`` on it."""
    import base64
    import os

    from backendapi import EventDecoder

    size: int = spec["size"]
    piece: int = spec["piece"]
    prefix, suffix = b'{"type": "content", "content": "', b'"}'
    room = size - len(prefix) - len(suffix)
    payload = base64.b64encode(os.urandom(room * 3 // 4 + 3))[:room]
    event = prefix + payload + suffix
    del payload
    assert len(event) == size
    framed = {
        "ndjson": event + b"\n",
        "sse": b"event: content\ndata: " + event + b"\n\n",
    }
    limit = size + (1 << 20)  # the measurement is about speed, not the size limit
    times: Dict[str, List[float]] = {"json": [], "ndjson": [], "sse": []}
    for _ in range(spec["runs"]):
        gc.collect()
        start = time.perf_counter()
        obj = json.loads(event)
        times["json"].append(time.perf_counter() - start)
        assert len(obj["content"]) == room
        del obj
        for framing, data in framed.items():
            pieces = [data[i : i + piece] for i in range(0, len(data), piece)]
            gc.collect()
            decoder = EventDecoder(max_event_size=limit)
            out = []
            start = time.perf_counter()
            for part in pieces:
                out.extend(decoder.feed(part))
            out.extend(decoder.close())
            times[framing].append(time.perf_counter() - start)
            assert len(out) == 1 and len(out[0].content) == room
            del out, pieces, decoder
    return {"times": times, "pieces": -(-len(framed["ndjson"]) // piece), "limit": limit}


def _check_tree(spec: Dict[str, Any]) -> str:
    """``backendapi.__file__``; exits if it is not inside the tree ``spec["tree"]``."""
    import backendapi

    where = os.path.realpath(backendapi.__file__)
    tree = os.path.realpath(spec["tree"])
    if os.path.commonpath([where, tree]) != tree:
        sys.exit(
            f"A/B worker: backendapi was imported from {where}, not from the tree under "
            f"test, {tree} (PYTHONPATH={os.environ.get('PYTHONPATH', '')!r})"
        )
    return where


def measure_ab(spec: Dict[str, Any]) -> Dict[str, Any]:
    """CPU per event of one SDK client, imported from the tree ``spec["tree"]``.

    For the A/B section (``benchmarks.ab``), which runs this file as a script
    with that tree first on ``PYTHONPATH``; the worker refuses to measure a
    ``backendapi`` imported from anywhere else. One small warm-up stream first
    (the connection, whatever the SDK does on first use, such as importing
    msgspec), then ``spec["streams"]`` whole streams of ``spec["kind"]``, each
    timed with ``time.process_time()``.
    """
    client = CLIENTS[spec["client"]]()
    if not client.speedups:
        os.environ["BACKENDAPI_SPEEDUPS"] = "0"  # read once, when backendapi is imported
    client.setup(spec["base_url"], spec["framing"], "c")
    where = _check_tree(spec)
    client.stream()
    client.kind = spec["kind"]
    streams: List[Dict[str, Any]] = []
    for _ in range(spec["streams"]):
        gc.collect()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        events, chars = client.stream()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        streams.append({"events": events, "chars": chars, "cpu": cpu, "wall": wall})
    client.close()
    return {"file": where, "speedups": speedups_used(), "streams": streams}


def part_boundary() -> None:
    """Ends one part of a callgrind profile: the A/B instruction counts run the
    worker under ``valgrind --tool=callgrind --dump-before=getppid``, which writes
    the counts so far to a file and starts from zero whenever libc's ``getppid``
    is entered (nothing else in a worker calls it)."""
    os.getppid()


def measure_ab_instructions(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Streams of SDK clients, a callgrind part each (``benchmarks.ab``).

    Run under callgrind, as a script, with the tree ``spec["tree"]`` first on
    ``PYTHONPATH`` (checked, as in ``measure_ab``). ``spec["phases"]`` is a list
    of ``{"client", "framing", "base_url", "kinds"}``, clients that all run with
    msgspec or all without (``BACKENDAPI_SPEEDUPS`` is read at import). A client
    per phase, all set up (imports, the client, its event loop) before the first
    part boundary; then each phase's streams, one per kind, in order, each
    between two part boundaries (:func:`part_boundary`), after a
    ``gc.collect()`` and with the stream and its answer freed before its part
    ends. So callgrind writes one part for start-up, one per stream (everything
    the process executed for it, in all threads: the request, every read, every
    event, the consumer's loop) and one for the close and exit.
    """
    phases = spec["phases"]
    clients: List[Client] = [CLIENTS[phase["client"]]() for phase in phases]
    if len({client.speedups for client in clients}) != 1:
        sys.exit("A/B worker: clients with and without speedups in one process")
    if not clients[0].speedups:
        os.environ["BACKENDAPI_SPEEDUPS"] = "0"  # read once, when backendapi is imported
    for client, phase in zip(clients, phases):
        client.setup(phase["base_url"], phase["framing"], phase["kinds"][0])
    where = _check_tree(spec)
    streams: List[Dict[str, Any]] = []
    for client, phase in zip(clients, phases):
        for kind in phase["kinds"]:
            client.kind = kind
            gc.collect()
            part_boundary()
            events, chars = client.stream()
            client.last = None  # type: ignore[attr-defined]  # freed within this part
            streams.append({"kind": kind, "events": events, "chars": chars})
    speedups = speedups_used()
    gc.collect()
    part_boundary()
    for client in clients:
        client.close()
    return {"file": where, "speedups": speedups, "streams": streams}


def measure_profile(spec: Dict[str, Any]) -> Dict[str, Any]:
    """cProfile of one stream through ``BackendApiClient``; the top lines by tottime."""
    import cProfile
    import io
    import pstats

    client = SdkSync()
    client.setup(spec["base_url"], spec["framing"], "t")
    profile = cProfile.Profile()
    profile.enable()
    events, _ = client.stream()
    profile.disable()
    client.close()
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text).strip_dirs().sort_stats("tottime")
    stats.print_stats(spec.get("top", 15))
    return {"events": events, "text": text.getvalue()}


NOTEBOOK_CELL = """
import json, statistics, time
from IPython.display import Markdown, display
from backendapi import BackendApiClient
from backendapi.notebook import show_stream

# Every display message the kernel sends (a new output or an update) is a redraw.
redraws = 0
publisher = get_ipython().display_pub
_publish = publisher.publish

def counting_publish(*args, **kwargs):
    global redraws
    redraws += 1
    return _publish(*args, **kwargs)

publisher.publish = counting_publish
client = BackendApiClient(URL)
messages = [{"role": "user", "content": "Benchmark"}]

def complete():
    return client.complete("bench", messages, bench=KIND)

def view():
    return show_stream(client.create("bench", messages, bench=KIND))

def per_event():
    # show_stream as it was before issue 15: the whole Markdown redrawn on every content event.
    handle = display(Markdown(""), display_id=True)
    with client.create("bench", messages, bench=KIND) as stream:
        for event in stream:
            if event.type == "content":
                handle.update(Markdown(stream.answer.text))
    handle.update(Markdown(stream.answer.text))
    return stream.answer

rows = {"complete": complete, "show_stream": view, "per_event": per_event}
times = {name: [] for name in rows}
counts = {name: [] for name in rows}
chars = set()
for run in range(WARMUP + RUNS):
    for name, function in rows.items():  # interleaved, so drift hits every row alike
        if name == "per_event" and run >= WARMUP + PER_EVENT_RUNS:
            continue
        before = redraws
        started = time.perf_counter()
        answer = function()
        elapsed = time.perf_counter() - started
        chars.add(len(answer.text))
        if run >= WARMUP:
            times[name].append(elapsed)
            counts[name].append(redraws - before)
client.close()
result = {"times": times, "redraws": counts, "chars": sorted(chars)}
print("RESULT " + json.dumps(result), flush=True)
"""


def measure_notebook(spec: Dict[str, Any]) -> Dict[str, Any]:
    """``complete()`` vs ``show_stream()`` on one answer, timed inside a real Jupyter kernel.

    The kernel (this interpreter's ipykernel, started by nbclient) runs
    `NOTEBOOK_CELL`: each row in turn, interleaved, ``runs`` times after a
    warm-up; display messages go out through the kernel's own IOPub socket to
    nbclient, as in Jupyter.
    """
    import nbformat
    from nbclient import NotebookClient

    setup = (
        f"URL = {spec['base_url']!r}\nKIND = {spec['kind']!r}\n"
        f"RUNS = {spec['runs']}\nWARMUP = 1\nPER_EVENT_RUNS = {spec['per_event_runs']}\n"
    )
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(setup + NOTEBOOK_CELL)]
    # This interpreter's kernelspec first, so that the kernel runs this tree's backendapi.
    own = os.path.join(sys.prefix, "share", "jupyter")
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = own if not old else os.pathsep.join([own, old])
    NotebookClient(notebook, timeout=600, kernel_name="python3").execute()
    text = "".join(
        output.get("text", "")
        for output in notebook.cells[0].outputs
        if output.output_type == "stream"
    )
    lines = [x for x in text.splitlines() if x.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"the notebook cell printed no result: {notebook.cells[0].outputs}")
    line = lines[0]
    result: Dict[str, Any] = json.loads(line[len("RESULT ") :])
    return result


MODES: Dict[str, Callable[[Dict[str, Any]], Dict[str, Any]]] = {
    "notebook": measure_notebook,
    "stream": measure_stream,
    "concurrency": measure_concurrency,
    "decode": measure_decode,
    "profile": measure_profile,
    "ab": measure_ab,
    "ab-instructions": measure_ab_instructions,
}


def main(argv: Optional[List[str]] = None) -> None:
    spec = json.loads((argv or sys.argv[1:])[0])
    result = MODES[spec["mode"]](spec)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
