"""Child processes of the tests (the command line, the examples): their environment, and
how each one ends, whatever the test did with it."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import tempfile
from typing import Any, Dict, Iterator

TEST_HOME = tempfile.mkdtemp(prefix="backendapi-home-")
"""``BACKENDAPI_HOME`` of the tests and their children: the command line records every
chat in a database there, never in the user's data directory."""
atexit.register(shutil.rmtree, TEST_HOME, ignore_errors=True)


def child_env(**extra: str) -> Dict[str, str]:
    """The environment without any BACKENDAPI_* setting of the caller's, with UTF-8 standard
    streams and ``BACKENDAPI_HOME`` at `TEST_HOME`, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKENDAPI_")}
    env["PYTHONIOENCODING"] = "utf-8"
    env["BACKENDAPI_HOME"] = TEST_HOME
    env.update(extra)
    return env


@contextlib.contextmanager
def ended(process: subprocess.Popen[Any]) -> Iterator[subprocess.Popen[Any]]:
    """Yield ``process``; on the way out kill it (if it still runs), reap it and close the
    pipes it was given."""
    try:
        yield process
    finally:
        process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
