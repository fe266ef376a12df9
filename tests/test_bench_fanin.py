"""The fan-in benchmark's machinery (``benchmarks/fanin.py``) at a tiny size.

Its figures are timings and belong to ``make bench``; this checks what they
are made of: the server paces every stream and the clients (the SDK's async
client and bare aiohttp, which need no extra dependency) report every event
of every stream, a lateness for each (never negative: one clock), the phases'
CPU times, RSS per stream, and file descriptors back where they started. The
server and the client processes are started and stopped by the benchmark
itself, on 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, List

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # the benchmarks package sits next to tests/, not in it
    sys.path.insert(0, ROOT)

from benchmarks import fanin  # noqa: E402

STREAMS, EVENTS, INTERVAL = 5, 3, 0.01
CLIENTS = ("sdk-async", "aiohttp")


@pytest.fixture(scope="module")
def report() -> Dict[str, Any]:
    lines: List[str] = []
    run = fanin.Run("tiny", STREAMS, EVENTS, INTERVAL, CLIENTS, repeats=1)
    result = fanin.bench(ROOT, quick=True, log=lines.append, runs=[run])
    fanin.print_report(result, log=lines.append)
    result["printed"] = lines
    return result


@pytest.mark.parametrize("client", CLIENTS)
def test_every_event_of_every_stream_arrives_with_its_lateness(
    report: Dict[str, Any], client: str
) -> None:
    raw = report["runs"]["tiny"]["raw"][client]
    assert len(raw) == 1
    result = raw[0]
    assert result["errors"] == 0, result["first_errors"]
    assert result["events"] == STREAMS * EVENTS
    assert result["streams_complete"] == STREAMS
    assert result["min_events"] == result["max_events"] == EVENTS
    assert result["chars"] == STREAMS * sum(len(fanin.TOKENS[i]) for i in range(EVENTS))
    assert result["warm_events"] == 2
    # The server held every event until the client had every head.
    assert result["all_open"] and result["early_events"] == 0
    assert result["late_count"] == result["events"]
    assert 0 <= result["late_min_ms"] <= result["late_p50_ms"] <= result["late_p99_ms"]
    assert result["late_p99_ms"] <= result["late_max_ms"]


@pytest.mark.parametrize("client", CLIENTS)
def test_phases_memory_and_file_descriptors_are_reported(
    report: Dict[str, Any], client: str
) -> None:
    result = report["runs"]["tiny"]["raw"][client][0]
    assert result["cpu_open"] > 0 and result["cpu_read"] > 0
    assert result["request_cpu_us"] == pytest.approx(result["cpu_open"] / STREAMS * 1e6)
    assert result["event_cpu_us"] == pytest.approx(result["cpu_read"] / result["events"] * 1e6)
    # Every stream ran its events' interval after all were open.
    assert result["wall_read"] >= (EVENTS - 1) * INTERVAL
    assert result["rss0"] > 0 and result["rss_first"] > 0 and result["stream_kib"] is not None
    # One connection per stream while all are open; none left once the client is closed.
    assert result["fds_open"] >= result["fds_before"] + STREAMS
    assert result["fds_after"] == result["fds_before"]
    assert sum(result["gc_collections"]) >= 0 and len(result["gc_longest_ms"]) == 3
    assert result["nofile"][1] >= result["nofile"][0]


def test_the_sdk_row_says_it_used_msgspec(report: Dict[str, Any]) -> None:
    rows = report["runs"]["tiny"]["clients"]
    assert rows["sdk-async"]["speedups"] == "msgspec"  # the test extra installs it
    assert rows["sdk-async"]["ok"] and rows["aiohttp"]["ok"]


def test_the_table_and_the_targets_are_printed(report: Dict[str, Any]) -> None:
    printed = "\n".join(report["printed"])
    assert fanin.LABELS["sdk-async"] in printed and fanin.LABELS["aiohttp"] in printed
    assert "CHECK FAILED" not in printed
    assert "RLIMIT_NOFILE" in printed
    verdicts = fanin.targets(report)
    # The six, the httpx one also like for like.
    assert len(verdicts) == 7
    # Only the runs of the full section have verdicts; these are all "not measured".
    assert all(met is None for _, met, _ in verdicts)
    assert fanin.targets(None) == []


def test_a_lost_event_or_a_leaked_descriptor_fails_the_check(report: Dict[str, Any]) -> None:
    good = report["runs"]["tiny"]["raw"]["aiohttp"][0]
    assert fanin.summarise([good])["ok"]
    lost = dict(good, events=good["events"] - 1, streams_complete=STREAMS - 1)
    leaked = dict(good, fds_after=good["fds_before"] + 1)
    early = dict(good, early_events=1)
    for bad in (lost, leaked, early):
        assert not fanin.summarise([bad])["ok"]
