"""What the benchmark's servers and orchestrators share: standard library only, so that a
client process that imports it (``benchmarks.fanin``) measures nothing more than before.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from typing import Any, Dict, Optional, Sequence, Tuple


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

    @staticmethod
    async def read_request(reader: asyncio.StreamReader) -> Optional[Tuple[str, bytes, bytes]]:
        """The next request whole: its path (no query), head and body (Content-Length or
        chunked); None when the connection ended before one."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        target = lines[0].split(" ")[1].split("?")[0]
        length = 0
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        body = await _read_chunked(reader) if chunked else await reader.readexactly(length)
        return target, head, body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def get_json(url: str) -> Dict[str, Any]:
    """GET ``url`` (a benchmark server's ``/stats``) and parse its JSON."""
    with urllib.request.urlopen(url) as answer:
        result: Dict[str, Any] = json.loads(answer.read())
        return result


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Terminate ``process``, kill it if it has not ended within 10 s, and reap it."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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
