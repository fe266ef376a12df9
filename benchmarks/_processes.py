"""What the benchmark's servers and orchestrators share: standard library only, so that a
client process that imports it (``benchmarks.fanin``) measures nothing more than before.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any, Dict, Sequence


class ConnectionServer:
    """An asyncio server's connection loop with counters: connections accepted, open now,
    most open at once. A subclass answers one request in :meth:`_one`."""

    def __init__(self) -> None:
        self.connections = 0
        self.open = 0
        self.peak = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection: requests one after another until one says to close."""
        self.connections += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is to be closed."""
        raise NotImplementedError


def run_for_result(
    args: Sequence[str], cwd: str, what: str, timeout: float = 600.0
) -> Dict[str, Any]:
    """Run ``python ARGS`` in ``cwd``; return the JSON of its ``RESULT <json>`` line, or raise
    with ``what`` and the end of its stderr."""
    completed = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            result: Dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    raise RuntimeError(f"{what} failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}")
