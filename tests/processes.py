"""Child processes of the tests (the command line, the examples): their environment, and
how each one ends, whatever the test did with it."""

from __future__ import annotations

import contextlib
import os
import subprocess
from typing import Any, Dict, Iterator


def child_env(**extra: str) -> Dict[str, str]:
    """The environment without any BACKENDAPI_* setting of the caller's, with UTF-8 standard
    streams, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKENDAPI_")}
    env["PYTHONIOENCODING"] = "utf-8"
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
