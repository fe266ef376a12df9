"""The command line on a pseudo-terminal: start ``backendapi`` on one, read what it shows."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import subprocess
import sys
import time
from typing import Iterator, Tuple

from processes import child_env, ended

TIMEOUT = 20


def default_sigint() -> None:
    """In the child: SIGINT as Python expects it, even if the test runner ignores it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Terminal:
    """The master side of a pseudo-terminal: read until some text has appeared."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.seen = ""

    def read_until(self, text: str, timeout: float = TIMEOUT) -> str:
        """Wait until ``text`` appears; return what came before it and drop both."""
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} never appeared; the terminal shows {self.seen!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:  # EIO: the child closed its side
                    data = b""
                if not data:
                    raise AssertionError(f"{text!r} never appeared; EOF after {self.seen!r}")
                self.seen += data.decode("utf-8", "replace")
        before, _, self.seen = self.seen.partition(text)
        return before

    def write(self, text: str) -> None:
        """Type ``text``."""
        os.write(self.fd, text.encode())


@contextlib.contextmanager
def cli_in_a_terminal(*args: str, **env: str) -> Iterator[Tuple[subprocess.Popen[bytes], Terminal]]:
    """``backendapi *args`` on a pseudo-terminal (stdin, stdout and stderr); killed on the
    way out."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "backendapi", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=child_env(TERM="dumb", **env),
        preexec_fn=default_sigint,
        close_fds=True,
    )
    os.close(slave)
    try:
        with ended(process):
            yield process, Terminal(master)
    finally:
        os.close(master)


def interrupt_at_the_prompt(process: subprocess.Popen[bytes]) -> int:
    """Ctrl-C (SIGINT) at the prompt the test has just read; the exit status.

    CPython's ``input()`` over GNU readline can miss a SIGINT that arrives
    just as readline draws the prompt (or echoes a key): it acts on it only at
    the next signal, or the next key. A person never presses Ctrl-C in those
    microseconds; a test reacting to the prompt as it appears often does. So
    the signal is sent again while the process has not ended half a second
    after it. Extra ones are harmless: the chat ignores SIGINT once it ended.
    """
    for _ in range(20):
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(0.5)
        except subprocess.TimeoutExpired:
            continue
    return process.wait(TIMEOUT)
