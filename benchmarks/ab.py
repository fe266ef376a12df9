"""The A/B section: this tree (A) against an earlier commit (B), in one run.

``python -m benchmarks --only ab [--ab-base REV] [--ab-instructions]`` (also part of
a full run, without the instruction counts).

* B is ``git archive REV`` unpacked into a temporary directory; where its
  tree has C sources, they are built in place (``setup.py build_ext
  --inplace``), as ``pip install`` builds them on a machine with a compiler.
  The header says whether that worked. A is this tree as it is on disk
  (uncommitted changes included), with whatever extension modules its install
  built.
* Every measurement runs ``benchmarks/worker.py`` (this tree's, for A and B
  alike) as a script in a fresh process, with the tree under test first on
  ``PYTHONPATH``; the worker checks that ``backendapi.__file__`` is inside that
  tree and refuses to measure otherwise.
* Workloads: ``BackendApiClient`` and ``AsyncBackendApiClient``, SSE and
  NDJSON (chunked), with msgspec and with ``BACKENDAPI_SPEEDUPS=0``: the
  throughput section's single stream of ``--events`` events from the same
  server. The figure is CPU time of the worker process per event
  (``time.process_time()``: user + system), over whole streams after a small
  warm-up stream.
* Rounds: each round measures every row once for A and once for B, A first in
  half of the pairs and B first in the others (swapped from round to round), so
  drift and noise on the machine hit both alike. A row's A and B are medians
  over the rounds; "paired" is the median of the per-round ratios A/B.

Instructions per event (``--ab-instructions``; opt-in, not part of a default
run, as it takes several minutes more: 3.5 to 9.5 on the shared 2-core VM,
with its load). CPU time moves by up to ~30 % from one process to the next
there; the number of instructions a process executes hardly moves. Every row
above is counted for A and for B under ``valgrind --tool=callgrind`` (output
files in the section's temporary directory, ``PYTHONHASHSEED=0``), in two read
patterns (``IR_PATTERNS``), each as a warm-up stream and then streams of N1
and N2 events:

* *many/read*: the chunked body above (16 KiB chunks); N1, N2 = 5,000 and
  25,000. Under valgrind the client runs ~50 times slower than the server, so
  its reads find data waiting: a whole 16 KiB chunk per ``read1()`` for the
  blocking client, up to 256 KiB per socket read for the async one;
* *one/read*: the server's ``paced`` transfer (``benchmarks.server``): one
  event per chunk, each written only once the client has read the one before
  (the kernel's socket queues, ``NETLINK_SOCK_DIAG``) and its process sleeps
  waiting for more (``/proc/PID/stat``). Every read carries exactly one event,
  and the async client's event loop runs the same iterations for every event
  (without the second condition it found the next event already there, or
  not, as the timing fell, which moved its count by 2 %); nothing sleeps in the
  client. N1, N2 = 500 and 1,500 (an event costs 10-15 times as much here).

One callgrind worker per tree and speedups setting (so four, ``IR_JOBS`` at a
time) reads all the streams of its four rows (``measure_ab_instructions``):
start-up under valgrind (imports of requests, aiohttp, msgspec...) costs more
than all of a row's counted streams. The worker calls libc's ``getppid()``
between streams and callgrind dumps its counts there
(``--dump-before=getppid``), so each stream is counted on its own, from its
request to its last event; a row's figure is (instructions of its N2 stream
- those of its N1 stream) / (N2 - N1).

Included: everything the worker process executes in user space for the extra
events: the SDK, msgspec or ``json``, the HTTP library's reads
(requests/urllib3/http.client, or aiohttp and the asyncio loop), the
interpreter, libc, and the worker's own loop over the events. Not included:
start-up and imports, what a stream costs whatever its length (the request,
the answer's head: they cancel in the difference), the kernel's side of the
reads (a system call counts only its user-space wrapper), the server.
Instructions are not time: cache misses, branch mispredictions and page
faults cost none, so a change that trades instructions for memory traffic
goes unseen. The streams go through a real socket and the SDK's public API,
not a fake response object planted in the client: the same worker then
measures any version of the package (the object a fake response replaces is
private and differs between trees), and how the SDK reads (read sizes, calls
per read) is part of its own path. The price: the HTTP library's work per
read, the same for A and B, is in both figures, which pulls the one/read
ratios towards 1.00 (it is most of an event's cost there).

In runs where A and B were the same code, the ratios strayed from 1.00 by at
most 0.5 % for the blocking client and 1.5 % for the async one (aiohttp's
timers: a read-timeout handle rescheduled on every read, housekeeping on the
clock). Verdicts: the limits above (``LIMIT_SPEEDUPS``, ``LIMIT_PLAIN``) on
the ratio A/B.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "worker.py")

# The commit before the restructure (the optional C extension removed, the clients
# rewritten, the sync client generated from the async one): the default B.
AB_BASE = "c8d97e6"

LIMIT_SPEEDUPS = 1.10
"""A's CPU per event at most this times B's, with msgspec."""
LIMIT_PLAIN = 1.05
"""A's CPU per event at most this times B's, with ``BACKENDAPI_SPEEDUPS=0``."""

VERDICT_ON = "paired"
"""The figure the verdicts compare with the limits: ``"paired"`` (the median of the
per-round ratios) or ``"ratio"`` (the ratio of the medians). Paired: the load on the
shared VM shifts whole rounds, which the per-round ratios cancel; in runs where A and
B were the same code, the paired figure strayed from 1.00 by up to 5-12 %, the ratio
of the medians by up to 9-21 %."""

STREAMS_PER_WORKER = 1
"""Timed streams in each worker process (its figure is their median). On the noisy
2-core VM, a process's CPU per event moves by up to 30 % from one process to the
next and a few streams in one process move together, so a run's time goes to
more rounds (``--ab-rounds``, 6 by default) rather than more streams."""

# (worker client, framing, label); the "-plain" clients run with BACKENDAPI_SPEEDUPS=0.
ROWS: Sequence[Tuple[str, str, str]] = (
    ("sdk-sync", "sse", "BackendApiClient, SSE, msgspec"),
    ("sdk-async", "sse", "AsyncBackendApiClient, SSE, msgspec"),
    ("sdk-sync", "ndjson", "BackendApiClient, NDJSON, msgspec"),
    ("sdk-async", "ndjson", "AsyncBackendApiClient, NDJSON, msgspec"),
    ("sdk-sync-plain", "sse", "BackendApiClient, SSE, no speedups"),
    ("sdk-async-plain", "sse", "AsyncBackendApiClient, SSE, no speedups"),
    ("sdk-sync-plain", "ndjson", "BackendApiClient, NDJSON, no speedups"),
    ("sdk-async-plain", "ndjson", "AsyncBackendApiClient, NDJSON, no speedups"),
)
TRANSFER = "chunked"

IR_PATTERNS: Sequence[Tuple[str, str, int, Tuple[int, int], str]] = (
    ("many", TRANSFER, 1_000, (5_000, 25_000), "many/read"),
    ("one", "paced", 200, (500, 1_500), "one/read"),
)
"""The read patterns of ``--ab-instructions``: (name, the server's transfer, events
of the warm-up stream, (N1, N2) events of the two counted streams, label). The
paced transfer is ``benchmarks.server``'s: one event per chunk and per read."""
IR_JOBS = 2
"""Callgrind workers at a time (instruction counts do not mind sharing the CPUs)."""
CALLGRIND_MARKER = "getppid"
"""The function callgrind dumps its counts before (``worker.part_boundary``)."""


def instruction_counts() -> List[int]:
    """The event counts the server must have ``n<count>`` bodies for."""
    return sorted({n for _, _, warmup, counts, _ in IR_PATTERNS for n in (warmup, *counts)})


class BaseRevisionError(Exception):
    """The base revision cannot be used (not found, no git, not a checkout)."""


def log(message: str = "") -> None:
    print(message, flush=True)


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True, check=False)


def resolve(rev: str) -> Dict[str, str]:
    """The commit ``rev`` names in this repository: full hash, short hash, subject.

    Raises :class:`BaseRevisionError`, saying why, where there is none.
    """
    try:
        found = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except OSError as exc:
        raise BaseRevisionError(
            f"cannot run git ({exc}); the A/B section needs git and this repository's history"
        ) from exc
    if found.returncode != 0:
        if _git("rev-parse", "--is-inside-work-tree").returncode != 0:
            raise BaseRevisionError(
                f"{ROOT} is not a git checkout, so the base revision {rev!r} cannot be "
                "found; run the A/B section from a clone of the repository"
            )
        hint = ""
        if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
            hint = " This clone is shallow: `git fetch --unshallow` fetches the history."
        raise BaseRevisionError(
            f"the base revision {rev!r} is not a commit in this repository ({ROOT}).{hint} "
            "Name another with --ab-base REV, or leave the A/B section out (--only)."
        )
    commit = found.stdout.strip()
    described = _git("log", "-1", "--format=%h%x00%s", commit).stdout.strip().split("\0")
    return {
        "rev": rev,
        "commit": commit,
        "short": described[0] if described[0] else commit[:7],
        "subject": described[1] if len(described) > 1 else "",
    }


@contextlib.contextmanager
def scratch() -> Iterator[str]:
    """A temporary directory, removed afterwards whatever happens."""
    path = tempfile.mkdtemp(prefix="bench-ab-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def materialise(commit: str, into: str) -> str:
    """The tree of ``commit``, unpacked into the new directory ``into/base``."""
    tree = os.path.join(into, "base")
    os.mkdir(tree)
    archive = subprocess.run(
        ["git", "-C", ROOT, "archive", "--format=tar", commit], capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise BaseRevisionError(
            f"git archive {commit} failed: {archive.stderr.decode(errors='replace').strip()}"
        )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.12+, and security releases before
            tar.extractall(tree, filter="data")
        else:
            tar.extractall(tree)  # our own git archive, no untrusted paths
    if not os.path.isfile(os.path.join(tree, "backendapi", "__init__.py")):
        raise BaseRevisionError(f"the tree of {commit} has no backendapi/__init__.py")
    return tree


def same_package(commit: str) -> bool:
    """Whether this tree's ``backendapi/`` is exactly ``commit``'s (untracked files too)."""
    changed = _git("diff", "--quiet", commit, "--", "backendapi").returncode != 0
    untracked = _git("ls-files", "--others", "--exclude-standard", "--", "backendapi").stdout
    return not changed and not untracked.strip()


def extension_modules(tree: str) -> List[str]:
    """The compiled modules in the tree's ``backendapi`` package, by file name."""
    found = []
    for pattern in ("*.so", "*.pyd"):
        found += glob.glob(os.path.join(tree, "backendapi", "**", pattern), recursive=True)
    return sorted(os.path.relpath(path, tree) for path in found)


def build_extensions(tree: str) -> str:
    """Build the tree's C extension in place, if it has one; say what came of it."""
    sources = glob.glob(os.path.join(tree, "backendapi", "**", "*.c"), recursive=True)
    if not sources:
        return "none: no C sources in backendapi/ (pure Python)"
    names = ", ".join(os.path.relpath(path, tree) for path in sorted(sources))
    if not os.path.isfile(os.path.join(tree, "setup.py")):
        return f"NOT BUILT: {names} but no setup.py"
    started = time.perf_counter()
    built = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    seconds = time.perf_counter() - started
    modules = extension_modules(tree)
    if built.returncode != 0 or not modules:
        # setup.py may declare the extension optional: the build then "succeeds" without it.
        lines = [x for x in (built.stderr + built.stdout).splitlines() if x.strip()]
        why = lines[-1].strip() if lines else f"exit {built.returncode}"
        return f"NOT BUILT from {names} (setup.py build_ext --inplace: {why}); B is pure Python"
    return (
        f"built in place from {names} (setup.py build_ext --inplace, {seconds:.1f} s): "
        + ", ".join(modules)
    )


def run_worker(tree: str, spec: Dict[str, Any], pycache: str) -> Dict[str, Any]:
    """One A/B worker: this tree's worker.py, with ``tree`` first on PYTHONPATH."""
    env = dict(os.environ)
    # The worker sets BACKENDAPI_SPEEDUPS=0 itself for the rows without speedups.
    env.pop("BACKENDAPI_SPEEDUPS", None)
    # One bytecode cache for every worker: imports (untimed) stay short.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = pycache
    env["PYTHONPATH"] = os.pathsep.join(x for x in (tree, env.get("PYTHONPATH")) if x)
    spec = dict(spec, mode="ab", tree=tree)
    # Run as a script: its directory (benchmarks/) leads sys.path, not this tree's root,
    # so `import backendapi` finds the tree on PYTHONPATH first.
    completed = subprocess.run(
        [sys.executable, WORKER, json.dumps(spec)],
        cwd=os.path.dirname(pycache),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            result: Dict[str, Any] = json.loads(line[len("RESULT ") :])
            where = result["file"]
            if os.path.commonpath([where, os.path.realpath(tree)]) != os.path.realpath(tree):
                raise RuntimeError(f"A/B worker measured {where}, not the tree {tree}")
            return result
    raise RuntimeError(
        f"A/B worker {spec['client']}/{spec['framing']} on {tree} failed "
        f"(exit {completed.returncode}):\n{completed.stderr[-3000:]}"
    )


def valgrind_missing() -> Optional[str]:
    """Why ``--ab-instructions`` cannot run here, or None if it can."""
    if shutil.which("valgrind") is None:
        return (
            "valgrind is not installed (no valgrind on PATH); install it (e.g. apt-get "
            "install valgrind) to count instructions"
        )
    return None


def callgrind_parts(out: str) -> List[int]:
    """The instruction counts of a callgrind run's parts, in order: the dumps
    ``out.1``, ``out.2``... then the final one, ``out``."""
    dumps = glob.glob(glob.escape(out) + ".*")
    numbered = sorted((int(p.rsplit(".", 1)[1]), p) for p in dumps if p.rsplit(".", 1)[1].isdigit())
    parts = []
    for path in [p for _, p in numbered] + [out]:
        total = None
        with open(path) as profile:
            for line in profile:
                if line.startswith(("totals:", "summary:")):
                    total = int(line.split()[1])
                    if line.startswith("totals:"):
                        break
        if total is None:
            raise RuntimeError(f"no totals in the callgrind output {path}")
        parts.append(total)
    return parts


def run_callgrind(
    tree: str, spec: Dict[str, Any], pycache: str, out_dir: str
) -> Tuple[Dict[str, Any], List[int]]:
    """``run_worker``'s worker under callgrind; its result and its parts' counts."""
    env = dict(os.environ)
    env.pop("BACKENDAPI_SPEEDUPS", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = pycache
    env["PYTHONHASHSEED"] = "0"  # the same dict and set layouts in every run
    env["PYTHONPATH"] = os.pathsep.join(x for x in (tree, env.get("PYTHONPATH")) if x)
    spec = dict(spec, mode="ab-instructions", tree=tree)
    os.makedirs(out_dir)
    out = os.path.join(out_dir, "callgrind.out")
    completed = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            f"--dump-before={CALLGRIND_MARKER}",
            "--dump-line=no",
            sys.executable,
            WORKER,
            json.dumps(spec),
        ],
        cwd=os.path.dirname(pycache),
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    result: Optional[Dict[str, Any]] = None
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
    if result is None or completed.returncode != 0:
        raise RuntimeError(
            f"A/B callgrind worker on {tree} failed "
            f"(exit {completed.returncode}):\n{completed.stderr[-3000:]}"
        )
    where = result["file"]
    if os.path.commonpath([where, os.path.realpath(tree)]) != os.path.realpath(tree):
        raise RuntimeError(f"A/B worker measured {where}, not the tree {tree}")
    parts = callgrind_parts(out)
    shutil.rmtree(out_dir, ignore_errors=True)
    # A part for start-up, one per stream, one for the close and exit.
    if len(parts) != len(result["streams"]) + 2:
        raise RuntimeError(
            f"callgrind wrote {len(parts)} parts for {len(result['streams'])} streams, not "
            f"{len(result['streams']) + 2}: something else in the worker calls "
            f"{CALLGRIND_MARKER}(), or this valgrind does not dump before it"
        )
    return result, parts[1:-1]


def bench_instructions(
    base_url: Any, trees: Dict[str, str], pycache: str, tmp: str
) -> Dict[str, Any]:
    """Instructions per event of every row, A and B, for each read pattern.

    One callgrind worker per tree and speedups setting (msgspec, or none), which
    reads every stream of its rows (BackendApiClient and AsyncBackendApiClient,
    SSE and NDJSON) for every pattern: start-up under valgrind costs more than
    all the counted streams of a row. ``IR_JOBS`` workers at a time.
    """
    from concurrent.futures import ThreadPoolExecutor

    from benchmarks.bodies import content_chars
    from benchmarks.server import paced_unsupported

    started = time.perf_counter()
    notes = []
    patterns = list(IR_PATTERNS)
    why = paced_unsupported()
    if why is not None:
        patterns = [p for p in patterns if p[1] != "paced"]
        notes.append(f"one event per read: skipped, the server cannot pace a stream: {why}")
        log(f"  ab: {notes[-1]}")
    version = subprocess.run(
        ["valgrind", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    groups = [
        [row for row in ROWS if row[0].endswith("-plain") == plain] for plain in (False, True)
    ]
    jobs = [(side, group) for group in groups for side in trees]

    def run(number: int, side: str, group: Sequence[Tuple[str, str, str]]) -> Dict[Any, List[int]]:
        tree = trees[side]
        plain = group[0][0].endswith("-plain")
        phases = [
            {
                "client": client,
                "framing": framing,
                "base_url": base_url(framing, transfer),
                "kinds": [f"n{n}" for n in (warmup, *counts)],
            }
            for client, framing, _ in group
            for _, transfer, warmup, counts, _ in patterns
        ]
        log(
            f"  ab: instructions, {side} {'without speedups' if plain else 'with msgspec'}: "
            f"{len(phases) * 3} streams under callgrind ..."
        )
        result, parts = run_callgrind(
            tree, {"phases": phases}, pycache, os.path.join(tmp, f"callgrind-{number}")
        )
        wanted = None if plain else "msgspec"
        if result["speedups"] != wanted:
            raise RuntimeError(
                f"A/B instructions on {tree}: ran with speedups {result['speedups']!r}, "
                f"not {wanted!r} (make bench installs msgspec)"
            )
        for stream in result["streams"]:
            count = int(stream["kind"][1:])
            if stream["events"] != count or stream["chars"] != content_chars(count):
                raise RuntimeError(
                    f"A/B instructions on {tree}: {stream['events']} events and "
                    f"{stream['chars']} characters, not {count} and {content_chars(count)}"
                )
        found = {}
        index = 0
        for _, _, label in group:
            for name, *_ in patterns:
                # The phase's warm-up stream, then N1, then N2.
                found[label, name] = parts[index + 1 : index + 3]
                index += 3
        return found

    figures: Dict[Tuple[str, str, str], List[int]] = {}
    with ThreadPoolExecutor(max_workers=IR_JOBS) as pool:
        futures = [pool.submit(run, n, side, group) for n, (side, group) in enumerate(jobs)]
        for (side, _), future in zip(jobs, futures):
            for (label, name), value in future.result().items():
                figures[label, name, side] = value
    rows = []
    for client, framing, label in ROWS:
        plain = client.endswith("-plain")
        for name, transfer, _, (n1, n2), pattern in patterns:
            a_streams, b_streams = figures[label, name, "A"], figures[label, name, "B"]
            a = (a_streams[1] - a_streams[0]) / (n2 - n1)
            b = (b_streams[1] - b_streams[0]) / (n2 - n1)
            rows.append(
                {
                    "label": label,
                    "client": client,
                    "framing": framing,
                    "speedups": None if plain else "msgspec",
                    "limit": LIMIT_PLAIN if plain else LIMIT_SPEEDUPS,
                    "pattern": name,
                    "pattern_label": pattern,
                    "transfer": transfer,
                    "counts": [n1, n2],
                    "a": a,
                    "b": b,
                    "ratio": a / b,
                    # Instructions of the whole N1 and N2 streams.
                    "a_streams": a_streams,
                    "b_streams": b_streams,
                }
            )
    return {
        "skipped": None,
        "valgrind": version,
        "patterns": [
            {"name": n, "transfer": t, "warmup": w, "counts": list(c), "label": x}
            for n, t, w, c, x in patterns
        ],
        "processes": len(jobs),
        "rows": rows,
        "notes": notes,
        "seconds": time.perf_counter() - started,
    }


def bench_ab(
    base_url: Any, args: argparse.Namespace, base: Dict[str, str], a_label: str
) -> Dict[str, Any]:
    """Run the A/B section; ``base_url(framing, transfer)`` names the server's streams."""
    rounds: int = args.ab_rounds
    streams = 1 if args.quick else STREAMS_PER_WORKER
    started = time.perf_counter()
    count_instructions = bool(getattr(args, "ab_instructions", False))
    no_valgrind = valgrind_missing() if count_instructions else None
    if no_valgrind is not None:
        log(f"  ab: --ab-instructions skipped: {no_valgrind}")
    with scratch() as tmp:
        log(f"  ab: unpacking {base['short']} (git archive) into {tmp} ...")
        b_tree = materialise(base["commit"], tmp)
        built = build_extensions(b_tree)
        b_extensions = extension_modules(b_tree)
        log(f"  ab: B's C extension: {built}")
        pycache = os.path.join(tmp, "pycache")
        trees = {"A": ROOT, "B": b_tree}
        expected_chars: Optional[int] = None

        def measure(tree: str, client: str, framing: str, count: int) -> List[float]:
            nonlocal expected_chars
            result = run_worker(
                tree,
                {
                    "client": client,
                    "framing": framing,
                    "kind": "t",
                    "streams": count,
                    "base_url": base_url(framing, TRANSFER),
                },
                pycache,
            )
            wanted = None if client.endswith("-plain") else "msgspec"
            if result["speedups"] != wanted:
                raise RuntimeError(
                    f"A/B {client}/{framing} on {tree}: ran with speedups "
                    f"{result['speedups']!r}, not {wanted!r} (make bench installs msgspec)"
                )
            for stream in result["streams"]:
                if stream["events"] != args.events:
                    raise RuntimeError(
                        f"A/B {client}/{framing} on {tree}: {stream['events']} events, "
                        f"not {args.events}"
                    )
                if expected_chars is None:
                    expected_chars = stream["chars"]
                elif stream["chars"] != expected_chars:
                    raise RuntimeError(f"A/B {client}/{framing}: {stream['chars']} characters")
            return [s["cpu"] / s["events"] for s in result["streams"]]

        # Untimed: checks both trees import as they should and fills the bytecode cache.
        for tree in trees.values():
            for client in ("sdk-sync", "sdk-async"):
                measure(tree, client, "sse", 0)
        per_round: Dict[str, Dict[str, List[float]]] = {
            label: {"A": [], "B": []} for _, _, label in ROWS
        }
        for number in range(rounds):
            log(f"  ab: round {number + 1} of {rounds} ...")
            for index, (client, framing, label) in enumerate(ROWS):
                order = ("A", "B") if (number + index) % 2 == 0 else ("B", "A")
                for side in order:
                    cpu = measure(trees[side], client, framing, streams)
                    per_round[label][side].append(statistics.median(cpu))
        rounds_seconds = time.perf_counter() - started
        instructions: Optional[Dict[str, Any]] = None
        if count_instructions and no_valgrind is None:
            instructions = bench_instructions(base_url, trees, pycache, tmp)
        elif count_instructions:
            instructions = {"skipped": no_valgrind, "rows": []}
    rows = []
    for client, framing, label in ROWS:
        a, b = per_round[label]["A"], per_round[label]["B"]
        ratios = [x / y for x, y in zip(a, b)]
        plain = client.endswith("-plain")
        rows.append(
            {
                "label": label,
                "client": client,
                "framing": framing,
                "speedups": None if plain else "msgspec",
                "limit": LIMIT_PLAIN if plain else LIMIT_SPEEDUPS,
                "a_us": statistics.median(a) * 1e6,
                "b_us": statistics.median(b) * 1e6,
                "ratio": statistics.median(a) / statistics.median(b),
                "paired": statistics.median(ratios),
                "ratios": ratios,
                "a_rounds_us": [x * 1e6 for x in a],
                "b_rounds_us": [x * 1e6 for x in b],
            }
        )
    return {
        "base": base,
        "same": same_package(base["commit"]),
        "a": a_label,
        "a_tree": ROOT,
        "a_extensions": extension_modules(ROOT),
        "b_build": built,
        "b_extensions": b_extensions,
        "rounds": rounds,
        "events": args.events,
        "streams_per_worker": streams,
        "transfer": TRANSFER,
        "rows": rows,
        "verdict_on": VERDICT_ON,
        "instructions": instructions,
        "rounds_seconds": rounds_seconds,
        "seconds": time.perf_counter() - started,
    }


def print_ab(ab: Optional[Dict[str, Any]]) -> None:
    if ab is None:
        return
    base = ab["base"]
    log("")
    log(
        f"== A/B: CPU per event, this tree (A) vs {base['short']} (B); "
        f"{ab['events']:,} events per stream, {ab['rounds']} round(s), each a fresh process "
        f"per tree and row, A and B alternating; {ab['rounds_seconds']:.0f} s =="
    )
    extensions = ", ".join(ab["a_extensions"]) or "none"
    log(f"A: {ab['a_tree']} at {ab['a']}; extension modules in backendapi/: {extensions}")
    log(f"B: {base['short']} {base['subject']!r} (--ab-base {base['rev']}), git archive")
    log(f"   into a temporary directory; its C extension: {ab['b_build']}")
    if ab["same"]:
        b_modules = [os.path.basename(x) for x in ab["b_extensions"]]
        if sorted(os.path.basename(x) for x in ab["a_extensions"]) == sorted(b_modules):
            log(
                f"A's backendapi/ is identical to {base['short']}'s, extension modules "
                "included: the ratios below measure the noise of the method, nothing else"
            )
        else:
            log(
                f"A's backendapi/ sources are identical to {base['short']}'s, but not its "
                "extension modules: the ratios below measure that difference"
            )
    streams = ab["streams_per_worker"]
    log(
        "us/ev = CPU time (user+system) of the worker process per event, over "
        + ("one whole stream" if streams == 1 else f"{streams} whole streams (median)")
        + f" ({TRANSFER}) after a small warm-up one;"
    )
    log(
        "A, B = medians over rounds; A/B = their ratio; paired = median of the per-round "
        f"ratios A/B, [lowest-highest]; the verdicts are on the {VERDICT_ON} figure"
    )
    header = (
        f"{'row':<42}{'A us/ev':>9}{'B us/ev':>9}{'A/B':>7}{'paired':>8}{'per round':>14}  verdict"
    )
    log(header)
    log("-" * len(header))
    for row in ab["rows"]:
        low, high = min(row["ratios"]), max(row["ratios"])
        verdict = "ok" if row[VERDICT_ON] <= row["limit"] else "OVER"
        log(
            f"{row['label']:<42}{row['a_us']:>9.3f}{row['b_us']:>9.3f}{row['ratio']:>7.3f}"
            f"{row['paired']:>8.3f}{f'[{low:.2f}-{high:.2f}]':>14}  "
            f"{verdict} (<= {row['limit']:.2f})"
        )
    if ab["b_build"].startswith("NOT BUILT"):
        log(
            "Note: B ran without its C extension, so its figures are not those of a pip "
            "install on a machine with a compiler."
        )
    print_instructions(ab)


def print_instructions(ab: Dict[str, Any]) -> None:
    """The ``--ab-instructions`` table, if it ran."""
    ir = ab.get("instructions")
    if ir is None:
        return
    base = ab["base"]
    log("")
    if ir["skipped"]:
        log(f"== A/B: instructions per event: skipped: {ir['skipped']} ==")
        return
    log(
        f"== A/B: instructions per event (callgrind), this tree (A) vs {base['short']} (B); "
        f"{ir['processes']} worker processes under valgrind; {ir['seconds']:.0f} s =="
    )
    log(
        "Ir/ev = instructions the worker process executed per extra event: (those of a "
        "stream of N2 events - those of one of N1) / (N2 - N1),"
    )
    log(
        "each stream counted on its own after a warm-up one (start-up, imports and what a "
        "stream costs whatever its length are left out);"
    )
    for pattern in ir["patterns"]:
        n1, n2 = pattern["counts"]
        what = "one event per chunk, each sent once the client has read the last and waits"
        if pattern["transfer"] == ab["transfer"]:
            what = f"the {ab['transfer']} body above (16 KiB chunks), data waiting at every read"
        log(f"{pattern['label']}: {what}; N1, N2 = {n1:,}, {n2:,}")
    log(f"A/B = A's Ir/ev over B's; {ir['valgrind']}, PYTHONHASHSEED=0")
    for note in ir["notes"]:
        log(f"Note: {note}")
    header = f"{'row':<44}{'reads':<10}{'A Ir/ev':>10}{'B Ir/ev':>10}{'A/B':>8}  verdict"
    log(header)
    log("-" * len(header))
    previous = None
    for row in ir["rows"]:
        label = row["label"] if row["label"] != previous else ""
        previous = row["label"]
        verdict = "ok" if row["ratio"] <= row["limit"] else "OVER"
        log(
            f"{label:<44}{row['pattern_label']:<10}{row['a']:>10,.0f}{row['b']:>10,.0f}"
            f"{row['ratio']:>8.3f}  {verdict} (<= {row['limit']:.2f})"
        )


def targets(ab: Optional[Dict[str, Any]]) -> List[Tuple[str, Optional[bool], str]]:
    """The A/B verdicts, as ``benchmarks.run.targets`` lists them."""
    if ab is None:
        return []
    out: List[Tuple[str, Optional[bool], str]] = []
    other = "ratio" if VERDICT_ON == "paired" else "paired"
    for speedups, limit, what in (
        ("msgspec", LIMIT_SPEEDUPS, "with msgspec"),
        (None, LIMIT_PLAIN, "with BACKENDAPI_SPEEDUPS=0"),
    ):
        rows = [r for r in ab["rows"] if r["speedups"] == speedups]
        if not rows:
            continue
        out.append(
            (
                f"CPU per event <= {limit:.2f}x {ab['base']['short']}'s (A/B), {what}, "
                "both clients, both framings",
                all(r[VERDICT_ON] <= limit for r in rows),
                (
                    "paired A/B (ratio of the medians) "
                    if VERDICT_ON == "paired"
                    else "ratio of the medians A/B (paired) "
                )
                + ", ".join(
                    f"{r['client'].replace('-plain', '')} {r['framing']}: "
                    f"{r[VERDICT_ON]:.3f} ({r[other]:.3f})"
                    for r in rows
                ),
            )
        )
    ir = ab.get("instructions")
    if ir is not None and ir["skipped"]:
        out.append((f"instructions per event (A/B, {ab['base']['short']})", None, ir["skipped"]))
    elif ir is not None:
        patterns = " and ".join(p["label"] for p in ir["patterns"])
        for speedups, limit, what in (
            ("msgspec", LIMIT_SPEEDUPS, "with msgspec"),
            (None, LIMIT_PLAIN, "with BACKENDAPI_SPEEDUPS=0"),
        ):
            rows = [r for r in ir["rows"] if r["speedups"] == speedups]
            out.append(
                (
                    f"instructions per event <= {limit:.2f}x {ab['base']['short']}'s (A/B, "
                    f"callgrind), {what}, both clients, both framings, {patterns}",
                    all(r["ratio"] <= limit for r in rows),
                    "A/B "
                    + ", ".join(
                        f"{r['client'].replace('-plain', '')} {r['framing']} "
                        f"{r['pattern_label']}: {r['ratio']:.3f}"
                        for r in rows
                    ),
                )
            )
    return out
