"""Generate the blocking client from the async one: ``backendapi/_async/`` -> ``backendapi/_sync/``.

Both clients are written once, as async code; this rewrites each source
file token by token (``async def`` -> ``def``, ``await x`` -> ``x``,
``AiohttpTransport`` -> ``RequestsTransport``...), then sorts its imports and
formats it with the pinned ruff, so that the generated file is exactly what
``make lint`` accepts. Docstrings and comments go through the same rules:
write them so that they read right both ways. Lines from ``# unasync: async
only`` to ``# unasync: end`` are left out of the blocking client (what only
the async one has, such as ``AsyncStream.__await__``).

    python scripts/unasync.py            # rewrite backendapi/_sync/
    python scripts/unasync.py --check    # exit 1 if a generated file is stale

``make unasync`` runs the first; ``make test`` runs the second (as a test),
so a change to the async source that was not regenerated fails CI.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

ROOT = Path(__file__).resolve().parent.parent

FILES = [
    ("backendapi/_async/client.py", "backendapi/_sync/client.py"),
    ("backendapi/_async/chat.py", "backendapi/_sync/chat.py"),
]
"""(source, generated) pairs, relative to the repository's root."""

# Applied in order, each to whole words only (see _rewrite); longer phrases first.
RULES: List[Tuple[str, str]] = [
    # Prose: what the async client says of itself that is not so of the blocking one.
    ("``aiohttp``: for asyncio applications", "``requests``: for scripts and notebooks"),
    ("an ``aiohttp.ClientSession``", "a ``requests.Session``"),
    # Syntax.
    ("async def", "def"),
    ("async for", "for"),
    ("async with", "with"),
    ("await ", ""),
    ("StopAsyncIteration", "StopIteration"),
    ("AsyncIterator", "Iterator"),
    ("__aenter__", "__enter__"),
    ("__aexit__", "__exit__"),
    ("__aiter__", "__iter__"),
    ("__anext__", "__next__"),
    ("aclose", "close"),
    # Names.
    ("AsyncBackendApiClient", "BackendApiClient"),
    ("AsyncStream", "Stream"),
    ("AsyncChat", "Chat"),
    ("AiohttpTransport", "RequestsTransport"),
    ("AiohttpResponse", "RequestsResponse"),
    ("_transports.aiohttp", "_transports.requests"),
    ("aiohttp.ClientSession", "requests.Session"),
    ("import aiohttp", "import requests"),
]

_PATTERNS = [
    (re.compile(r"(?<!\w)" + re.escape(old) + (r"(?!\w)" if old[-1:].isalnum() else "")), new)
    for old, new in RULES
]


def header(source: str) -> str:
    """The comment every generated file starts with."""
    return (
        f"# Generated from {source} by scripts/unasync.py: do not edit.\n"
        "# Regenerate with `make unasync`; `make test` fails while this file is stale.\n"
    )


ASYNC_ONLY = re.compile(r"\n[ \t]*# unasync: async only\n.*?\n[ \t]*# unasync: end\n", re.S)
"""A block the blocking client must not have (e.g. ``AsyncStream.__await__``): dropped whole."""


def _rewrite(text: str) -> str:
    text = ASYNC_ONLY.sub("\n", text)
    for pattern, new in _PATTERNS:
        text = pattern.sub(new, text)
    return text


def _ruff(args: List[str], text: str, filename: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--stdin-filename", filename, "-"],
        input=text,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"ruff {' '.join(args)} failed on {filename}:\n{done.stderr}")
    return done.stdout


def generate(source: str, target: str) -> str:
    """The text ``target`` should have, made from ``source``."""
    text = header(source) + _rewrite((ROOT / source).read_text(encoding="utf-8"))
    options = ["--line-length", "100", "--target-version", "py39"]
    text = _ruff(["check", *options, "--select", "I", "--fix", "--quiet"], text, target)
    return _ruff(["format", *options, "--quiet"], text, target)


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    args = parser.parse_args(argv)
    stale = []
    for source, target in FILES:
        expected = generate(source, target)
        path = ROOT / target
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == expected:
            continue
        if args.check:
            stale.append(target)
        else:
            path.write_text(expected, encoding="utf-8")
            print(f"wrote {target}")
    if stale:
        print(
            "stale generated files (run `make unasync`): " + ", ".join(stale),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
