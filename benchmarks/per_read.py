"""A quick fan-in for profiling the one-event-per-read path (issue 13), not a benchmark section.

``python -m benchmarks.per_read CLIENT [--streams N] [--events E] [--interval S]
[--profile FILE] [--repeat R]``

A server process (raw asyncio, this module run with ``--serve``) holds every
stream open and writes one event per chunk to each stream every ``--interval``
seconds; the client, in this process, reads ``--streams`` streams at once:

* ``sdk-async``: ``AsyncBackendApiClient``, one task per stream;
* ``aiohttp``: bare aiohttp, ``async for line in response.content`` + ``json.loads``;
* ``sdk-sync``: ``BackendApiClient``, one thread per stream;
* ``requests``: ``requests`` + ``iter_lines`` + ``json.loads``, one thread per stream.

With ``--memory`` it instead reads once, after a warm-up of one stream only,
and prints the peak RSS growth over the read per stream (``/proc/self/status``
sampled every 20 ms; the imports and lazy set-up come before the base).

It prints CPU microseconds per event (``time.process_time()`` over the whole
read, the requests included) and, with ``--profile``, writes a cProfile of it.
Requests carry a conversation of a few KB, as a web app's do. Figures move by up
to 30 % between processes on a shared VM: compare runs side by side, several times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List

CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant. " * 20},
    *(
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"Message {i}: " + "words " * 60}
        for i in range(8)
    ),
]


def _event(index: int) -> bytes:
    """One chunk: one SSE event as g4f writes it (an ``event:`` line, a ``data:`` line)."""
    data = json.dumps({"type": "content", "content": f" tok{index}"}).encode()
    body = b"event: content\ndata: " + data + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(body), body)


async def _serve(events: int, interval: float) -> None:
    streams: List[asyncio.StreamWriter] = []
    started = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
                return
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            done = asyncio.get_running_loop().create_future()
            streams.append(writer)
            writer.done = done  # type: ignore[attr-defined]
            started.set()
            await done

    async def pump() -> None:
        while not streams:  # a request that came late is served by the next pump
            started.clear()
            await started.wait()
        await asyncio.sleep(0.5)  # the other streams' requests come in meanwhile
        batch = list(streams)
        streams.clear()
        for index in range(events):
            for writer in batch:
                writer.write(_event(index))
            await asyncio.sleep(interval)
        for writer in batch:
            writer.write(b"0\r\n\r\n")
            writer.done.set_result(None)  # type: ignore[attr-defined]

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    while True:
        await pump()


def _cpu() -> float:
    return time.process_time()


def _rss() -> int:
    """This process's resident set, in bytes (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class _PeakRss:
    """The highest RSS seen while it runs (a thread sampling every 20 ms)."""

    def __init__(self) -> None:
        self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _rss())


async def _sdk_async(url: str, streams: int) -> int:
    from backendapi import AsyncBackendApiClient

    async with AsyncBackendApiClient(url, max_connections=streams + 10) as client:

        async def one() -> int:
            count = 0
            async for event in client.create("gpt-4o", CONVERSATION):
                count += event.type == "content"
            return count

        return sum(await asyncio.gather(*(one() for _ in range(streams))))


async def _aiohttp(url: str, streams: int) -> int:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=streams + 10)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> int:
            count = 0
            body = {"model": "gpt-4o", "messages": CONVERSATION}
            async with session.post(url + "/backend-api/v2/conversation", json=body) as response:
                async for line in response.content:
                    if line.startswith(b"data: "):
                        count += json.loads(line[6:])["type"] == "content"
            return count

        return sum(await asyncio.gather(*(one() for _ in range(streams))))


TIMEOUT: Any = None
"""``requests``' timeout (``--requests-timeout``): by default none, as ``requests``' own."""

PROFILES: List[Any] = []
"""With ``--profile``, the blocking clients' threads each profile themselves (CPU time of
the thread, ``time.thread_time``), and the profiles are merged."""
PROFILE_THREADS = False


def _threads(url: str, streams: int, kind: str) -> int:
    counts: List[int] = []
    if kind == "sdk-sync":
        from backendapi import BackendApiClient

        client: Any = BackendApiClient(url, max_connections=streams + 10)

        def one() -> None:
            count = 0
            for event in client.create("gpt-4o", CONVERSATION):
                count += event.type == "content"
            counts.append(count)

    else:
        import requests

        client = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=streams + 10)
        client.mount("http://", adapter)

        def one() -> None:
            count = 0
            body = {"model": "gpt-4o", "messages": CONVERSATION}
            with client.post(
                url + "/backend-api/v2/conversation", json=body, stream=True, timeout=TIMEOUT
            ) as response:
                for line in response.iter_lines():
                    if line.startswith(b"data: "):
                        count += json.loads(line[6:])["type"] == "content"
            counts.append(count)

    def profiled() -> None:
        if not PROFILE_THREADS:
            one()
            return
        import cProfile

        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
        try:
            one()
        finally:
            profiler.disable()
            PROFILES.append(profiler)

    threads = [threading.Thread(target=profiled) for _ in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    return sum(counts)


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "client", nargs="?", choices=["sdk-async", "aiohttp", "sdk-sync", "requests"]
    )
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", metavar="FILE")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument(
        "--requests-timeout",
        type=float,
        help="a read timeout for the requests client (a socket with a timeout polls "
        "before each recv, as the SDK's, which has a read timeout by default)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.requests_timeout is not None:
        global TIMEOUT
        TIMEOUT = (10.0, args.requests_timeout)
    if args.serve:
        asyncio.run(_serve(args.events, args.interval))
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.per_read", "--serve", "--events", str(args.events),
         "--interval", str(args.interval)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}"

        def once(streams: int = args.streams) -> int:
            if args.client in ("sdk-async", "aiohttp"):
                reader = _sdk_async if args.client == "sdk-async" else _aiohttp
                return asyncio.run(reader(url, streams))
            return _threads(url, streams, args.client)

        if args.memory:
            once(1)  # imports and lazy set-up (the decoder's parser...) before the base
            base = _rss()
            peak = _PeakRss()
            events = once()
            grown = peak.stop() - base
            assert events == args.streams * args.events, events
            print(
                f"{args.client}: {args.streams} streams: peak RSS growth "
                f"{grown / args.streams / 1024:.1f} KiB per stream"
            )
            return
        once()  # warm-up: imports, first connections
        profiler = None
        if args.profile and args.client in ("sdk-sync", "requests"):
            global PROFILE_THREADS
            PROFILE_THREADS = True
        elif args.profile:
            import cProfile

            profiler = cProfile.Profile()
        results: Dict[str, List[float]] = {"cpu_us_per_event": []}
        for _ in range(args.repeat):
            start = _cpu()
            if profiler is not None:
                profiler.enable()
            events = once()
            if profiler is not None:
                profiler.disable()
            used = _cpu() - start
            assert events == args.streams * args.events, events
            results["cpu_us_per_event"].append(used / events * 1e6)
        print(
            f"{args.client}: {args.streams} streams x {args.events} events every "
            f"{args.interval} s: CPU per event "
            + ", ".join(f"{value:.1f}" for value in results["cpu_us_per_event"])
            + " us"
        )
        if profiler is not None:
            profiler.dump_stats(args.profile)
        elif PROFILES:
            import pstats

            stats = pstats.Stats(PROFILES[0])
            for other in PROFILES[1:]:
                stats.add(other)
            stats.dump_stats(args.profile)
    finally:
        server.kill()
        server.wait()
    del soft


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main(sys.argv[1:])
