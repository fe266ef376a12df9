"""The blocking transport's own connections: what http.client does not do below urllib3.

The client's own ``requests.Session`` mounts pools (:func:`use_own_connections`)
whose connections make :class:`FinalResponse`\\ s, which

* skip informational responses (``102 Processing``, ``103 Early Hints``):
  http.client skips ``100 Continue`` alone and takes any other 1xx for the
  answer, leaving the real one unread on a connection that goes back to the
  pool, where the next call would read it;
* keep the call's total timeout (:func:`call_deadline`) at every read of the
  socket: urllib3 and http.client loop inside one read (a head, a
  chunk-size line, a gzip body of empty blocks dribbled a byte at a time
  each arrive well within the read timeout), so a check between reads
  would never come.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import io
import socket
import threading
import time
from typing import Any, Dict, Iterator, Optional, Tuple

__all__ = ["FinalResponse", "call_deadline", "use_own_connections"]

_calls = threading.local()


@contextlib.contextmanager
def call_deadline(deadline: Optional[float]) -> Iterator[None]:
    """Within the block, responses of this thread keep ``deadline`` (``time.monotonic()``)."""
    _calls.deadline = deadline
    try:
        yield
    finally:
        _calls.deadline = None


class FinalResponse(http.client.HTTPResponse):
    """http.client's response, skipping informational ones and keeping the call's deadline."""

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        deadline: Optional[float] = getattr(_calls, "deadline", None)
        if deadline is not None:
            sock = _Opened(io.BufferedReader(_DeadlineReader(sock, deadline)))
        super().__init__(sock, *args, **kwargs)

    def _read_status(self) -> Tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not 100 <= status < 200 or status == 101:
                return version, status, reason
            # An informational response: its headers (bounded as the answer's are)
            # are dropped, the answer comes after them.
            http.client.parse_headers(self.fp)


class _Opened:
    """Stands for the socket in ``HTTPResponse.__init__``, whose ``makefile`` gives ``file``."""

    def __init__(self, file: io.BufferedReader) -> None:
        self._file = file

    def makefile(self, mode: str) -> io.BufferedReader:
        return self._file


class _DeadlineReader(io.RawIOBase):
    """The socket's bytes; before each read its timeout becomes at most the time left."""

    def __init__(self, sock: Any, deadline: float) -> None:
        super().__init__()
        # The socket's own raw file: it keeps the socket open while the response is
        # read, even once its connection is closed (as http.client's file does).
        self._file = sock.makefile("rb", buffering=0)
        self._sock = sock
        self._read_timeout: Optional[float] = sock.gettimeout()  # the read timeout, set by urllib3
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> Optional[int]:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("the total timeout ran out")
        read = self._read_timeout
        self._sock.settimeout(left if read is None or left < read else read)
        result: Optional[int] = self._file.readinto(buffer)
        return result

    def close(self) -> None:
        self._file.close()
        super().close()


def use_own_connections(manager: Any) -> None:
    """Have a urllib3 ``PoolManager`` (or ``ProxyManager``) make pools of
    connections whose responses are :class:`FinalResponse`\\ s.

    Called on a new manager, before it made any pool.
    """
    classes: Dict[str, type] = manager.pool_classes_by_scheme
    manager.pool_classes_by_scheme = {
        scheme: _own_pool_class(pool_class) for scheme, pool_class in classes.items()
    }


@functools.cache
def _own_pool_class(pool_class: type) -> type:
    """``pool_class`` whose connections make :class:`FinalResponse`\\ s (SOCKS pools too)."""
    if getattr(pool_class, "_final_responses", False):
        return pool_class
    base = pool_class.ConnectionCls  # type: ignore[attr-defined]
    connection_class = type(base.__name__, (base,), {"response_class": FinalResponse})
    return type(
        pool_class.__name__,
        (pool_class,),
        {"ConnectionCls": connection_class, "_final_responses": True},
    )
