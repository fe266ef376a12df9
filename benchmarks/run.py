"""Run the benchmark suite and print its tables: ``make bench`` / ``python -m benchmarks``.

The server (``benchmarks.server``) runs in its own process, built once with
every body it will send; each measurement runs in a fresh
``benchmarks.worker`` process (see there for what is timed and how). This
process only orchestrates, takes medians and prints.

Sections (``--only`` picks some):

* ``throughput``: a stream of ``--events`` small content events in both
  framings (SSE, NDJSON) and both transfers (chunked, close-delimited), read by
  both SDK clients and the hand-written alternatives; events/s, CPU seconds,
  peak RSS, each also as a ratio to httpx + httpx-sse;
* ``decode``: one 64 MiB event fed to ``EventDecoder`` in 4 KiB pieces vs
  ``json.loads`` on the same bytes;
* ``memory``: peak RSS while streaming 256 MiB of small events through each
  SDK client;
* ``concurrency``: 500 concurrent streams through one ``AsyncBackendApiClient``
  vs one stream;
* ``imports``: what ``import backendapi`` + ``BackendApiClient`` imports and
  costs, vs ``import requests``;
* ``profile``: cProfile of ``BackendApiClient`` on the SSE chunked stream;
* ``ab``: CPU per event of both SDK clients (SSE and NDJSON, with msgspec and
  without), this tree against an earlier commit (``--ab-base``), in
  alternating fresh processes; with ``--ab-instructions`` (opt-in, slow) also
  instructions per event under callgrind, many events per read and one event
  per read: see ``benchmarks.ab``;
* ``notebook``: ``backendapi.notebook.show_stream`` on a 3,000-event answer
  inside a real Jupyter kernel (nbclient + ipykernel), as a ratio to
  ``complete()`` on the same answer, with a redraw per event (the view
  before issue 15) for comparison;
* ``fanin``: N concurrent slow streams (one event per network read, 20
  events/s each) through one client, each client in a fresh process against a
  server that paces every stream: CPU per event, CPU per request, lateness
  p50/p99, RSS per open stream and file descriptors, for
  ``AsyncBackendApiClient`` against bare aiohttp (N = 1,000 and 500) and httpx +
  httpx-sse (N = 100), 5,000 streams at 2 events/s, and ``BackendApiClient``
  with a thread per stream against requests (N = 200): see
  ``benchmarks.fanin``. ``--quick`` makes it a smoke run of a few seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from benchmarks import ab, fanin
from benchmarks._processes import get_json, run_for_result, stop_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMINGS = ("sse", "ndjson")
TRANSFERS = ("chunked", "close")
REFERENCE = "httpx-sse"
SECTIONS = (
    "throughput",
    "decode",
    "memory",
    "concurrency",
    "imports",
    "profile",
    "ab",
    "notebook",
    "fanin",
)
NO_SERVER = ("decode", "fanin")
"""Sections that need no ``benchmarks.server`` (the fan-in section starts its own)."""
MiB = 1 << 20

# (worker name, label, label for the NDJSON framing if different)
CLIENTS: Sequence[Tuple[str, str]] = (
    ("sdk-sync", "BackendApiClient"),
    ("sdk-async", "AsyncBackendApiClient"),
    ("sdk-sync-plain", "BackendApiClient, no speedups"),
    ("sdk-async-plain", "AsyncBackendApi.., no speedups"),
    ("requests", "requests iter_lines+json"),
    ("aiohttp", "aiohttp line iter+json"),
    ("httpx-sse", "httpx + httpx-sse (ref)"),
    ("httpx-sse-async", "httpx async + httpx-sse"),
    ("seed", "seed (aiohttp, json/line)"),
)
NDJSON_LABELS = {
    "httpx-sse": "httpx iter_lines+json (ref)*",
    "httpx-sse-async": "httpx async aiter_lines*",
}
LIBRARIES = (
    "backendapi",
    "requests",
    "urllib3",
    "aiohttp",
    "multidict",
    "yarl",
    "httpx",
    "httpx-sse",
    "httpcore",
    "h11",
    "anyio",
    "msgspec",
)
SDK_ROWS = {
    "sdk-sync": "msgspec",
    "sdk-async": "msgspec",
    "sdk-sync-plain": None,
    "sdk-async-plain": None,
}
"""The SDK's rows and the speedup each must have run with (msgspec, or none:
``BACKENDAPI_SPEEDUPS=0``)."""

TARGET_THROUGHPUT = 1.1
TARGET_THROUGHPUT_SPEEDUPS = 2.0
TARGET_SEED = 1.8
TARGET_DECODE = 2.0
TARGET_MEMORY_MIB = 50.0
TARGET_CONCURRENCY = 0.8
TARGET_IMPORT = 1.2
TARGET_NOTEBOOK = 1.5
NOTEBOOK_EVENTS = 3000
"""The answer the notebook section shows: 3,000 content events (about 16 KB of text)."""


# --------------------------------------------------------------------------- plumbing


def log(message: str = "") -> None:
    print(message, flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio(value: float, reference: float) -> Optional[float]:
    return value / reference if reference > 0 else None


def fmt_ratio(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def run_worker(spec: Dict[str, Any], timeout: float = 600.0) -> Dict[str, Any]:
    """Run one measurement in a fresh ``python -m benchmarks.worker`` process."""
    return run_for_result(
        ["-m", "benchmarks.worker", json.dumps(spec)],
        ROOT,
        f"worker {spec.get('mode')}/{spec.get('client')}",
        timeout,
    )


class Server:
    """The benchmark server in its own process."""

    def __init__(
        self, events: int, small_events: int, mem_bytes: int, counts: Sequence[int] = ()
    ) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.server",
                "--events",
                str(events),
                "--small-events",
                str(small_events),
                "--mem-bytes",
                str(mem_bytes),
                "--counts",
                ",".join(str(n) for n in counts),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.process.kill()
            raise RuntimeError(f"benchmark server did not start: {line!r}")
        self.port = int(line.split()[1])

    def base_url(self, framing: str, transfer: str) -> str:
        return f"http://127.0.0.1:{self.port}/{framing}/{transfer}"

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stats"

    def stats(self) -> Dict[str, Any]:
        return get_json(self.stats_url)

    def stop(self) -> None:
        stop_process(self.process)


# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def code_version() -> str:
    """The git commit measured, and whether backendapi/ had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "backendapi"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return head + (" + uncommitted changes in backendapi/" if dirty else "")


def machine() -> Dict[str, Any]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    return {
        "code": code_version(),
        "nproc": nproc,
        "cpu": cpu_model(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "versions": versions,
    }


# --------------------------------------------------------------------------- sections


@dataclass
class Figures:
    """Medians of one client on one stream."""

    events_per_s: float
    cpu: float
    peak_mib: float
    runs: int
    server_cpu: float
    answer_mib: Optional[float] = None


@dataclass
class Report:
    """Everything measured, for the tables, the targets and ``--json``."""

    args: Dict[str, Any]
    machine: Dict[str, Any]
    throughput: Dict[str, Dict[str, Figures]] = field(default_factory=dict)
    decode: Optional[Dict[str, Any]] = None
    memory: Optional[Dict[str, Any]] = None
    concurrency: Optional[Dict[str, Any]] = None
    imports: Optional[Dict[str, Any]] = None
    profile: Optional[str] = None
    ab: Optional[Dict[str, Any]] = None
    notebook: Optional[Dict[str, Any]] = None
    fanin: Optional[Dict[str, Any]] = None
    seconds: float = 0.0
    load: List[float] = field(default_factory=list)


def bench_throughput(server: Server, args: argparse.Namespace, report: Report) -> None:
    runs: Dict[Tuple[str, str, str], List[Dict[str, Any]]] = {}
    server_cpu: Dict[Tuple[str, str, str], List[float]] = {}
    expected_chars = None
    for run in range(args.runs):
        log(f"  throughput: run {run + 1} of {args.runs} ...")
        for framing in FRAMINGS:
            for transfer in TRANSFERS:
                for name, _ in CLIENTS:
                    if name == "seed" and framing == "sse":
                        continue
                    key = (framing, transfer, name)
                    before = server.stats()["cpu"]
                    result = run_worker(
                        {
                            "mode": "stream",
                            "client": name,
                            "framing": framing,
                            "base_url": server.base_url(framing, transfer),
                        }
                    )
                    server_cpu.setdefault(key, []).append(server.stats()["cpu"] - before)
                    if name in SDK_ROWS and result.get("speedups") != SDK_ROWS[name]:
                        raise RuntimeError(
                            f"{key}: ran with speedups {result.get('speedups')!r}, "
                            f"not {SDK_ROWS[name]!r} (make bench installs msgspec)"
                        )
                    if result["events"] != args.events:
                        raise RuntimeError(f"{key}: {result['events']} events, not {args.events}")
                    if expected_chars is None:
                        expected_chars = result["chars"]
                    elif result["chars"] != expected_chars:
                        raise RuntimeError(f"{key}: {result['chars']} characters of content")
                    runs.setdefault(key, []).append(result)
    for (framing, transfer, name), results in runs.items():
        answers = [r["answer_bytes"] / MiB for r in results if "answer_bytes" in r]
        report.throughput.setdefault(f"{framing}/{transfer}", {})[name] = Figures(
            events_per_s=median([r["events"] / r["wall"] for r in results]),
            cpu=median([r["cpu"] for r in results]),
            peak_mib=median([r["peak_delta"] / MiB for r in results]),
            runs=len(results),
            server_cpu=median(server_cpu[framing, transfer, name]),
            answer_mib=median(answers) if answers else None,
        )


def bench_decode(args: argparse.Namespace, report: Report) -> None:
    log(f"  decode: one {args.decode_mib} MiB event, {args.runs} run(s) ...")
    result = run_worker(
        {"mode": "decode", "size": args.decode_mib * MiB, "piece": 4096, "runs": args.runs}
    )
    times = {name: median(values) for name, values in result["times"].items()}
    report.decode = {
        "size_mib": args.decode_mib,
        "pieces": result["pieces"],
        "runs": args.runs,
        "json": times["json"],
        "ndjson": times["ndjson"],
        "sse": times["sse"],
        "limit": result["limit"],
    }


def bench_memory(server: Server, args: argparse.Namespace, report: Report) -> None:
    framing, transfer = "sse", "chunked"
    expected = server.stats()["mem_events"][framing]
    rows = {}
    for name, no_answer in (
        ("sdk-sync", False),
        ("sdk-async", False),
        ("httpx-sse", False),
        ("sdk-sync", True),
    ):
        label = dict(CLIENTS)[name] + (" (Answer.add patched out)" if no_answer else "")
        log(f"  memory: {args.mem_mib} MiB through {label} ...")
        result = run_worker(
            {
                "mode": "stream",
                "client": name,
                "framing": framing,
                "kind": "m",
                "no_answer": no_answer,
                "base_url": server.base_url(framing, transfer),
            }
        )
        if result["events"] != expected:
            raise RuntimeError(f"memory {label}: {result['events']} events, not {expected}")
        if no_answer and not result.get("patched"):
            # The SDK no longer feeds Answer through the methods the worker patches.
            log(f"  memory: {label}: the patch did not take; row left out")
            rows[label] = {"client": name, "no_answer": True, "skipped": True}
            continue
        rows[label] = {
            "client": name,
            "no_answer": no_answer,
            "events": result["events"],
            "events_per_s": result["events"] / result["wall"],
            "peak_mib": result["peak_delta"] / MiB,
            "rss0_mib": result["rss0"] / MiB,
            "answer_mib": result["answer_bytes"] / MiB if "answer_bytes" in result else None,
            "exact": result["peak_exact"],
        }
    report.memory = {"framing": framing, "transfer": transfer, "mib": args.mem_mib, "rows": rows}


def bench_concurrency(server: Server, args: argparse.Namespace, report: Report) -> None:
    log(f"  concurrency: {args.streams} streams vs 1, {args.runs} run(s) ...")
    result = run_worker(
        {
            "mode": "concurrency",
            "streams": args.streams,
            "runs": args.runs,
            "base_url": server.base_url("sse", "chunked"),
            "stats_url": server.stats_url,
        }
    )
    small = max(1, args.events // args.streams)
    for run in result["many"]:
        if run["events"] != small * args.streams:
            raise RuntimeError(f"concurrency: {run['events']} events")
    single = median([r["events"] / r["wall"] for r in result["single"]])
    single_cpu_per_event = median([r["cpu"] / r["events"] for r in result["single"]])
    many = median([r["events"] / r["wall"] for r in result["many"]])
    report.concurrency = {
        "streams": args.streams,
        "events_per_stream": small,
        "single_events": result["single"][0]["events"],
        "runs": args.runs,
        "single": single,
        "many": many,
        "ratio": many / single,
        "max_connections": result["max_connections"],
        "peak_connections": max(r["peak_connections"] for r in result["many"]),
        "new_connections": max(r["new_connections"] for r in result["many"]),
        "first_event_median": median([r["first_event_median"] for r in result["many"]]),
        "first_event_max": median([r["first_event_max"] for r in result["many"]]),
        "wall_many": median([r["wall"] for r in result["many"]]),
        # Extra, not the target's figure: each run's concurrent events/s over the median
        # single stream, with the connections the server accepted for it.
        "per_run": [
            (r["events"] / r["wall"] / single, r["new_connections"]) for r in result["many"]
        ],
        # The same streams through a bare aiohttp session that only reads the bodies:
        # what aiohttp's requests cost, with no decoding at all.
        "bare_wall": median([r["wall"] for r in result["bare"]]),
        # The same streams one after another through the client: what the requests
        # cost with no concurrency at all.
        "sequential": median([r["events"] / r["wall"] for r in result.get("sequential", [])])
        if result.get("sequential")
        else None,
        # CPU per request beyond its events (at the single stream's CPU per event),
        # one after another and concurrently.
        "request_cpu": {
            name: median(
                [
                    (r["cpu"] - r["events"] * single_cpu_per_event) / args.streams
                    for r in result[name]
                ]
            )
            for name in ("sequential", "many")
            if result.get(name)
        },
        "single_wall": median([r["wall"] for r in result["single"]]),
    }


IMPORT_SDK = """\
import time
start = time.perf_counter()
import backendapi
elapsed = time.perf_counter() - start
import sys
client = backendapi.BackendApiClient(sys.argv[1])
events = sum(1 for _ in client.create("bench", [{"role": "user", "content": "x"}], bench="c"))
client.close()
heavy = [m for m in ("aiohttp", "multidict", "yarl", "asyncio") if m in sys.modules]
print("RESULT", elapsed, events, ",".join(heavy) or "-")
"""
IMPORT_REQUESTS = """\
import time
start = time.perf_counter()
import requests
elapsed = time.perf_counter() - start
print("RESULT", elapsed, 0, "-")
"""


def _python_c(code: str, *argv: str, pycache: str) -> Tuple[float, int, str]:
    # Installed packages import from bytecode (pip compiles it). With
    # PYTHONDONTWRITEBYTECODE set (as on the bench machine), backendapi, installed
    # in editable mode, was compiled from source on every import while requests
    # loaded its .pyc files: both now use one bytecode cache, filled by a first
    # untimed run.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = pycache
    completed = subprocess.run(
        [sys.executable, "-c", code, *argv],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    line = next(x for x in completed.stdout.splitlines() if x.startswith("RESULT "))
    _, elapsed, events, heavy = line.split()
    return float(elapsed), int(events), heavy


def bench_imports(server: Server, args: argparse.Namespace, report: Report) -> None:
    log(f"  imports: {args.import_runs} fresh interpreters each ...")
    sdk: List[float] = []
    plain: List[float] = []
    heavy = set()
    events = 0
    url = server.base_url("sse", "chunked")
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as pycache:
        _python_c(IMPORT_SDK, url, pycache=pycache)  # fills the bytecode cache
        _python_c(IMPORT_REQUESTS, pycache=pycache)
        for _ in range(args.import_runs):  # interleaved, so drift hits both alike
            elapsed, events, modules = _python_c(IMPORT_SDK, url, pycache=pycache)
            sdk.append(elapsed)
            heavy.add(modules)
            plain.append(_python_c(IMPORT_REQUESTS, pycache=pycache)[0])
    report.imports = {
        "runs": args.import_runs,
        "backendapi": median(sdk),
        "requests": median(plain),
        "ratio": median(sdk) / median(plain),
        "events": events,
        "modules": sorted(heavy),
        "aiohttp": any("aiohttp" in m for m in heavy),
    }


def bench_profile(server: Server, args: argparse.Namespace, report: Report) -> None:
    log("  profile: BackendApiClient, SSE chunked, under cProfile ...")
    result = run_worker(
        {"mode": "profile", "framing": "sse", "base_url": server.base_url("sse", "chunked")}
    )
    lines = result["text"].strip("\n").splitlines()
    start = next((i for i, x in enumerate(lines) if x.strip().startswith("ncalls")), 0)
    report.profile = "\n".join([lines[0].strip(), "", *lines[start:]])


def bench_ab(
    server: Server, args: argparse.Namespace, report: Report, base: Optional[Dict[str, str]]
) -> None:
    assert base is not None
    log(
        f"  ab: this tree vs {base['short']}, {args.ab_rounds} round(s)"
        + (", then instruction counts" if args.ab_instructions else "")
        + " ..."
    )
    report.ab = ab.bench_ab(server.base_url, args, base, report.machine["code"])


def bench_notebook(server: Server, args: argparse.Namespace, report: Report) -> None:
    per_event_runs = min(args.runs, 3)
    log(
        f"  notebook: a {NOTEBOOK_EVENTS:,}-event answer in a Jupyter kernel, "
        f"{args.runs} run(s) ({per_event_runs} of the redraw per event) ..."
    )
    result = run_worker(
        {
            "mode": "notebook",
            "base_url": server.base_url("sse", "chunked"),
            "kind": f"n{NOTEBOOK_EVENTS}",
            "runs": args.runs,
            "per_event_runs": per_event_runs,
        }
    )
    if len(result["chars"]) != 1:
        raise RuntimeError(f"notebook: answers of different lengths {result['chars']}")
    times = {name: median(values) for name, values in result["times"].items()}
    report.notebook = {
        "events": NOTEBOOK_EVENTS,
        "chars": result["chars"][0],
        "runs": args.runs,
        "per_event_runs": per_event_runs,
        "times": times,
        "redraws": {name: max(values) for name, values in result["redraws"].items()},
        "ratio": times["show_stream"] / times["complete"],
        "per_event_ratio": times["per_event"] / times["complete"],
    }


def bench_fanin(args: argparse.Namespace, report: Report) -> None:
    report.fanin = fanin.bench(ROOT, args.quick, args.fanin_repeats, log=log)


# --------------------------------------------------------------------------- output


def print_machine(report: Report) -> None:
    m = report.machine
    log(f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['python']}, {m['platform']}")
    log(f"Code: {m['code']}")
    log("Libraries: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))


def print_throughput(report: Report, args: argparse.Namespace) -> None:
    log("")
    log(
        f"== Throughput: {args.events:,} small content events per stream; "
        f"median of {args.runs} run(s), each client in a fresh process =="
    )
    log("x = the figure divided by the reference's (httpx + httpx-sse) from the same run;")
    log("CPU s = user+system time of the client process; peak MiB = peak RSS above the RSS")
    log("just before the request (after imports and client construction).")
    header = f"{'client':<30}{'events/s':>11}{'x':>7}{'CPU s':>8}{'x':>7}{'peak MiB':>10}{'x':>7}"
    for block, rows in report.throughput.items():
        framing, transfer = block.split("/")
        ref = rows[REFERENCE]
        log("")
        log(
            f"{framing.upper()}, {transfer} (server CPU per stream: {ref.server_cpu * 1000:.1f} ms)"
        )
        log(header)
        log("-" * len(header))
        for name, label in CLIENTS:
            if framing == "ndjson":
                label = NDJSON_LABELS.get(name, label)
            fig = rows.get(name)
            if fig is None:
                log(f"{label:<30}{'n/a: the seed cannot decode SSE':>50}")
                continue
            log(
                f"{label:<30}{fig.events_per_s:>11,.0f}"
                f"{fmt_ratio(ratio(fig.events_per_s, ref.events_per_s)):>7}"
                f"{fig.cpu:>8.3f}{fmt_ratio(ratio(fig.cpu, ref.cpu)):>7}"
                f"{fig.peak_mib:>10.1f}{fmt_ratio(ratio(fig.peak_mib, ref.peak_mib)):>7}"
            )
    log("")
    log("* httpx-sse reads SSE only: for NDJSON the httpx rows are httpx iter_lines + json.loads.")
    sdk = report.throughput.get("sse/chunked", {}).get("sdk-sync")
    if sdk is not None and sdk.answer_mib is not None:
        log(
            f"The SDK clients' peak includes their Answer (stream.answer), which keeps every "
            f"content string: {sdk.answer_mib:.1f} MiB of text here."
        )


def print_decode(report: Report) -> None:
    d = report.decode
    if d is None:
        return
    log("")
    log(
        f"== One {d['size_mib']} MiB event, fed to EventDecoder in 4 KiB pieces "
        f"({d['pieces']:,} feeds); median of {d['runs']} run(s) =="
    )
    log(f"json.loads on the event's bytes        {d['json']:8.3f} s     1.00")
    for framing in ("ndjson", "sse"):
        log(
            f"EventDecoder, {framing:<6} framing          {d[framing]:8.3f} s"
            f"{d[framing] / d['json']:9.2f}"
        )


def print_memory(report: Report) -> None:
    mem = report.memory
    if mem is None:
        return
    log("")
    log(
        f"== Peak memory streaming {mem['mib']} MiB of small events "
        f"({mem['framing'].upper()}, {mem['transfer']}); one run each =="
    )
    log("peak = peak RSS (VmHWM) above the RSS just before the request")
    header = (
        f"{'client':<46}{'events':>11}{'events/s':>11}{'peak MiB':>10}{'x':>8}{'Answer MiB':>12}"
    )
    log(header)
    log("-" * len(header))
    ref = next(r for r in mem["rows"].values() if r["client"] == REFERENCE)["peak_mib"]
    for label, row in mem["rows"].items():
        if row.get("skipped"):
            log(f"{label:<46}{'n/a: Answer is fed through other methods now':>52}")
            continue
        answer = "-" if row["answer_mib"] is None else f"{row['answer_mib']:.1f}"
        log(
            f"{label:<46}{row['events']:>11,}{row['events_per_s']:>11,.0f}"
            f"{row['peak_mib']:>10.1f}{fmt_ratio(ratio(row['peak_mib'], ref)):>8}{answer:>12}"
        )
    log("'Answer MiB': the size of the stream's answer text at the end (stream.answer.text).")
    log("The patched-out row is a diagnostic, not a client a user can run.")


def print_concurrency(report: Report) -> None:
    c = report.concurrency
    if c is None:
        return
    log("")
    log(
        f"== {c['streams']} concurrent streams ({c['events_per_stream']} events each) through one "
        f"AsyncBackendApiClient vs one stream of {c['single_events']:,}; median of {c['runs']} =="
    )
    log(f"single stream        {c['single']:>11,.0f} events/s")
    log(f"{c['streams']} concurrent       {c['many']:>11,.0f} events/s   x {c['ratio']:.2f}")
    log(
        f"client setting: max_connections={c['max_connections']} (the default); "
        f"the server saw up to {c['peak_connections']} connections open at once "
        f"({c['new_connections']} new ones for the {c['streams']} streams)"
    )
    log(
        f"time to first event: median {c['first_event_median']:.3f} s, "
        f"last stream {c['first_event_max']:.3f} s (all {c['streams']} took {c['wall_many']:.3f} s)"
    )
    if c.get("per_run"):
        runs = ", ".join(f"x {r:.2f} ({new} new connections)" for r, new in c["per_run"])
        log(f"extra, not the target's figure: each run / single-stream median: {runs}")
    if c.get("sequential"):
        log(
            f"extra: the same {c['streams']} streams one after another through the client: "
            f"{c['sequential']:,.0f} events/s, x {c['sequential'] / c['single']:.2f} (what the "
            f"requests cost without concurrency; concurrent / one after another: "
            f"x {c['many'] / c['sequential']:.2f})"
        )
    request_cpu = c.get("request_cpu") or {}
    if "sequential" in request_cpu and "many" in request_cpu:
        log(
            f"extra: CPU per request beyond its events (at the single stream's CPU per event): "
            f"{request_cpu['sequential'] * 1e6:.0f} us one after another, "
            f"{request_cpu['many'] * 1e6:.0f} us concurrently"
        )
    if c.get("bare_wall"):
        ceiling = c["single_wall"] / (c["single_wall"] + c["bare_wall"])
        log(
            f"aiohttp alone (session.post + readany, no decoding), the same {c['streams']} "
            f"streams: {c['bare_wall']:.3f} s; the single stream's events take "
            f"{c['single_wall']:.3f} s, so a client on aiohttp whose per-event cost is that "
            f"stream's gets at most about x {ceiling:.2f} (single / (single + aiohttp alone))"
        )


def print_imports(report: Report) -> None:
    imp = report.imports
    if imp is None:
        return
    log("")
    log(f"== Imports: fresh interpreter each, median of {imp['runs']} ==")
    log(f"import requests                         {imp['requests'] * 1000:7.1f} ms   1.00")
    log(
        f"import backendapi                       {imp['backendapi'] * 1000:7.1f} ms"
        f"{imp['ratio']:7.2f}"
    )
    log(
        f"after import backendapi + a BackendApiClient stream ({imp['events']} events): "
        f"aiohttp imported: {'YES' if imp['aiohttp'] else 'no'}; "
        f"of aiohttp/multidict/yarl/asyncio: {', '.join(imp['modules'])}"
    )


def print_profile(report: Report) -> None:
    if report.profile is None:
        return
    log("")
    log("== cProfile: BackendApiClient, SSE chunked stream, top 15 by tottime ==")
    log(report.profile)


def print_notebook(report: Report) -> None:
    nb = report.notebook
    if nb is None:
        return
    log("")
    log(
        f"== Notebook view: a {nb['events']:,}-event answer ({nb['chars']:,} characters, SSE, "
        f"chunked) in a Jupyter kernel; median of {nb['runs']} run(s) =="
    )
    times, redraws = nb["times"], nb["redraws"]
    rows = (
        ("client.complete()", "complete", ""),
        ("show_stream()", "show_stream", f"{redraws['show_stream']} redraw(s)"),
        (
            "a redraw per event (before)",
            "per_event",
            f"{redraws['per_event']:,} redraws, median of {nb['per_event_runs']}",
        ),
    )
    for label, name, note in rows:
        log(
            f"{label:<30}{times[name] * 1000:9.1f} ms"
            f"{times[name] / times['complete']:8.2f}   {note}"
        )


def targets(report: Report) -> List[Tuple[str, Optional[bool], str]]:
    """Each target: (description, met or None when not measured, the figures)."""
    out: List[Tuple[str, Optional[bool], str]] = []
    if report.throughput:

        def ratios(names: Sequence[str], reference: str) -> List[Tuple[float, str]]:
            found = []
            for block, rows in report.throughput.items():
                if reference in rows:
                    for name in names:
                        ratio = rows[name].events_per_s / rows[reference].events_per_s
                        found.append((ratio, f"{name} {block}"))
            return found

        def target(description: str, found: List[Tuple[float, str]], goal: float) -> None:
            if found:
                out.append(
                    (
                        description,
                        min(found)[0] >= goal,
                        "ratios " + ", ".join(f"{n}: {r:.2f}" for r, n in found),
                    )
                )

        target(
            f"events/s >= {TARGET_THROUGHPUT}x httpx+httpx-sse, both clients, both framings, "
            "without speedups (pure Python)",
            ratios(("sdk-sync-plain", "sdk-async-plain"), REFERENCE),
            TARGET_THROUGHPUT,
        )
        target(
            f"events/s >= {TARGET_THROUGHPUT_SPEEDUPS}x httpx+httpx-sse, both clients, "
            "both framings, with speedups (msgspec)",
            ratios(("sdk-sync", "sdk-async"), REFERENCE),
            TARGET_THROUGHPUT_SPEEDUPS,
        )
        target(
            f"events/s >= {TARGET_SEED}x the seed's design (NDJSON), with speedups",
            ratios(("sdk-sync", "sdk-async"), "seed"),
            TARGET_SEED,
        )
    if report.decode:
        d = report.decode
        worst_decode = max(d["ndjson"], d["sse"]) / d["json"]
        out.append(
            (
                f"{d['size_mib']} MiB event decode <= {TARGET_DECODE}x json.loads",
                worst_decode <= TARGET_DECODE,
                f"ndjson {d['ndjson'] / d['json']:.2f}x, sse {d['sse'] / d['json']:.2f}x",
            )
        )
    if report.memory:
        rows = [
            r
            for r in report.memory["rows"].values()
            if r["client"].startswith("sdk") and not r["no_answer"]
        ]
        out.append(
            (
                f"peak memory streaming {report.memory['mib']} MiB < {TARGET_MEMORY_MIB:.0f} MiB "
                "above baseline",
                all(r["peak_mib"] < TARGET_MEMORY_MIB for r in rows),
                ", ".join(f"{r['client']}: {r['peak_mib']:.1f} MiB" for r in rows),
            )
        )
    if report.concurrency:
        c = report.concurrency
        out.append(
            (
                f"{c['streams']} concurrent streams >= {TARGET_CONCURRENCY}x "
                "single-stream events/s",
                c["ratio"] >= TARGET_CONCURRENCY,
                f"{c['ratio']:.2f}x",
            )
        )
    if report.imports:
        imp = report.imports
        out.append(
            (
                f"import cost <= {TARGET_IMPORT}x import requests, no aiohttp",
                imp["ratio"] <= TARGET_IMPORT and not imp["aiohttp"],
                f"{imp['ratio']:.2f}x, aiohttp {'imported' if imp['aiohttp'] else 'not imported'}",
            )
        )
    if report.notebook:
        nb = report.notebook
        out.append(
            (
                f"show_stream on a {nb['events']:,}-event answer <= {TARGET_NOTEBOOK}x complete()",
                nb["ratio"] <= TARGET_NOTEBOOK,
                f"{nb['ratio']:.2f}x ({nb['redraws']['show_stream']} redraws; a redraw per event: "
                f"{nb['per_event_ratio']:.1f}x)",
            )
        )
    out += ab.targets(report.ab)
    out += fanin.targets(report.fanin)
    return out


def print_targets(report: Report) -> None:
    log("")
    log("== Targets ==")
    if report.args.get("quick"):
        log(
            "(a --quick smoke run: small streams, one run each; the verdicts mean "
            "something only for the full run)"
        )
    for description, met, figures in targets(report):
        verdict = "n/a    " if met is None else ("MET    " if met else "NOT MET")
        log(f"{verdict} {description}: {figures}")


# --------------------------------------------------------------------------- main


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="The backendapi benchmark suite."
    )
    parser.add_argument("--events", type=int, default=None, help="events per stream (200000)")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (5)")
    parser.add_argument("--streams", type=int, default=500, help="concurrent streams (500)")
    parser.add_argument("--mem-mib", type=int, default=None, help="memory-test body (256)")
    parser.add_argument("--decode-mib", type=int, default=None, help="big event size (64)")
    parser.add_argument("--import-runs", type=int, default=None, help="imports timed (9)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small and once")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to PATH")
    parser.add_argument(
        "--ab-base",
        metavar="REV",
        default=ab.AB_BASE,
        help=f"the ab section's B: a commit of this repository ({ab.AB_BASE}, the commit "
        "before the restructure)",
    )
    parser.add_argument("--ab-rounds", type=int, default=None, help="ab section rounds (6)")
    parser.add_argument(
        "--fanin-repeats",
        type=int,
        default=None,
        help="fanin section: repeats of each client process (3; the 5,000-stream run: 1)",
    )
    parser.add_argument(
        "--ab-instructions",
        action="store_true",
        help="ab section: also count instructions per event under callgrind (valgrind), "
        "A and B, many events per read and one event per read: steady where CPU time is "
        "not, but slow (3.5-10 more minutes on 2 shared cores), so not part of a default run",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "events": (200_000, 20_000),
        "runs": (5, 1),
        "mem_mib": (256, 16),
        "decode_mib": (64, 8),
        "import_runs": (9, 3),
        "ab_rounds": (6, 1),
        "fanin_repeats": (3, 1),
    }
    for name, (full, smoke) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, smoke if quick else full)
    if args.ab_rounds < 1:
        parser.error("--ab-rounds must be at least 1")
    if args.fanin_repeats < 1:
        parser.error("--fanin-repeats must be at least 1")
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    return args


def _terminate(signum: int, frame: Any) -> None:
    # SIGTERM ends the run as Ctrl-C does: the server stops, temporary trees go.
    raise SystemExit(128 + signum)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    base: Optional[Dict[str, str]] = None
    if "ab" in args.only:
        try:  # before anything runs: a base that cannot be found fails at once
            base = ab.resolve(args.ab_base)
        except ab.BaseRevisionError as exc:
            print(f"python -m benchmarks: --ab-base {args.ab_base}: {exc}", file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    report = Report(args=vars(args), machine=machine())
    report.load = [os.getloadavg()[0]]
    print_machine(report)
    log("Running (the server and every client each in their own process) ...")
    small = max(1, args.events // args.streams)
    counts = ab.instruction_counts() if "ab" in args.only and args.ab_instructions else []
    if "notebook" in args.only:
        counts = sorted({*counts, NOTEBOOK_EVENTS})
    server: Any = None
    if set(args.only) - set(NO_SERVER):
        server = Server(args.events, small, args.mem_mib * MiB, counts)
    steps: Dict[str, Callable[[], None]] = {
        "throughput": lambda: bench_throughput(server, args, report),
        "decode": lambda: bench_decode(args, report),
        "memory": lambda: bench_memory(server, args, report),
        "concurrency": lambda: bench_concurrency(server, args, report),
        "imports": lambda: bench_imports(server, args, report),
        "profile": lambda: bench_profile(server, args, report),
        "ab": lambda: bench_ab(server, args, report, base),
        "notebook": lambda: bench_notebook(server, args, report),
        "fanin": lambda: bench_fanin(args, report),
    }
    try:
        if server is not None:
            # One throwaway run, so the first measured process does not pay for cold caches.
            run_worker(
                {
                    "mode": "stream",
                    "client": "sdk-sync",
                    "framing": "sse",
                    "kind": "c",
                    "base_url": server.base_url("sse", "chunked"),
                }
            )
        for section in SECTIONS:
            if section in args.only:
                steps[section]()
    finally:
        if server is not None:
            server.stop()
    report.seconds = time.perf_counter() - started
    report.load.append(os.getloadavg()[0])
    if report.throughput:
        print_throughput(report, args)
    print_decode(report)
    print_memory(report)
    print_concurrency(report)
    print_imports(report)
    print_profile(report)
    ab.print_ab(report.ab)
    print_notebook(report)
    fanin.print_report(report.fanin, log)
    print_targets(report)
    log("")
    log(
        f"Total time: {report.seconds:.0f} s; 1-minute load average {report.load[0]:.2f} at the "
        f"start, {report.load[-1]:.2f} at the end (other work on the machine slows the "
        "wall-clock figures: events/s)"
    )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(_jsonable(report), out, indent=2, default=lambda o: o.__dict__)
    return 0


def _jsonable(report: Report) -> Dict[str, Any]:
    data = dict(report.__dict__)
    data["throughput"] = {
        block: {name: fig.__dict__ for name, fig in rows.items()}
        for block, rows in report.throughput.items()
    }
    data["targets"] = [
        {"target": t, "met": met, "figures": figs} for t, met, figs in targets(report)
    ]
    return data


if __name__ == "__main__":
    sys.exit(main())
