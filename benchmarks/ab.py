"""The A/B section: this tree (A) against an earlier commit (B), in one run.

``python -m benchmarks --only ab [--ab-base REV]`` (also part of a full run).

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


def bench_ab(
    base_url: Any, args: argparse.Namespace, base: Dict[str, str], a_label: str
) -> Dict[str, Any]:
    """Run the A/B section; ``base_url(framing, transfer)`` names the server's streams."""
    rounds: int = args.ab_rounds
    streams = 1 if args.quick else STREAMS_PER_WORKER
    started = time.perf_counter()
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
        f"per tree and row, A and B alternating; {ab['seconds']:.0f} s =="
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
    return out
