"""The blocking transport's own connections: what http.client does not do below urllib3.

The client's own ``requests.Session`` mounts pools (:func:`use_own_connections`)
whose connections make :class:`FinalResponse`\\ s, and so do the pools of a
caller's session's ``HTTPAdapter`` (:func:`final_responses_below`). They

* skip informational responses (``102 Processing``, ``103 Early Hints``):
  http.client skips ``100 Continue`` alone and takes any other 1xx for the
  answer, leaving the real one unread on a connection that goes back to the
  pool, where the next call would read it;
* keep the call's total timeout (:func:`call_deadline`) at every read of the
  socket: urllib3 and http.client loop inside one read (a head, a
  chunk-size line, a gzip body of empty blocks dribbled a byte at a time
  each arrive well within the read timeout), so a check between reads
  would never come;
* take the chunk-size lines the async client's parser (llhttp) takes and
  refuse the others as it does: http.client cuts a line at its ``;`` and
  reads the rest with ``int(x, 16)``, which also takes `` 2c``, ``+2c``,
  ``0x2c``, ``2_c`` and any extension at all;
* read what ends a chunk's data as llhttp does (CRLF or a bare LF; anything
  else is refused): http.client throws the two bytes after the data away
  unread, which takes ``XY`` and breaks on a bare LF;
* read the trailer section as llhttp does (fields, their count and size, the
  empty line ending the section): http.client takes any line as a field and
  a body ending anywhere in the section for a whole one;
* on Linux, wait for a plain TCP socket's bytes with the kernel's receive
  timeout (``SO_RCVTIMEO``) rather than Python's: a Python socket with a
  timeout polls before every ``recv`` (two system calls a read, the GIL
  released twice), a fifth of a one-event read's CPU. The expiry is raised as
  the same ``socket.timeout`` (http.client's own reader would have returned no
  bytes, which reads as the end of a close-delimited body), and the socket's
  timeout is given back once the response is done.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import io
import re
import socket
import struct
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, NoReturn, Optional, Tuple

from requests.adapters import HTTPAdapter
from urllib3 import PoolManager

from .body import MAX_FIELD_SIZE, MAX_FIELDS

__all__ = [
    "FinalResponse",
    "call_deadline",
    "close_abandoned_responses",
    "final_responses_below",
    "use_own_connections",
]

_calls = threading.local()

_MAX_LINE: int = http.client._MAXLINE  # type: ignore[attr-defined]

# The chunk-size lines llhttp takes, with the leniencies aiohttp turns on outside Python's
# dev mode: hex digits, spaces or tabs, then the line's end or extensions, each a ";"
# without spaces around it or around "=", a name of token characters and maybe "=" and a
# value of token characters ending maybe in a quoted string; an empty name is fine, but not
# a ";" right before the CR. A bare LF after the size itself wants a second LF (read apart).
_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_TOKEN = _TCHAR + b"*"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x20-\x7e\x80-\xff])*"'
_CHUNK_SIZE_LINE = re.compile(
    rb"([0-9A-Fa-f]+)[ \t]*(?:(\r?\n)|(?:;(?!\r)%s(?:=%s(?:%s)?)?)+\r?\n)"
    % (_TOKEN, _TOKEN, _QUOTED)
)
# The usual chunk-size line (hex digits alone, within the size llhttp takes), first and
# after the CRLF ending a chunk's data: FinalResponse.read_data's, a subset of the above.
_FIRST_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})\r\n")
_NEXT_SIZE = re.compile(rb"\r\n([0-9A-Fa-f]{1,15})\r\n")
# Ends that make a line llhttp would still take out of any start of one (a cut line).
_LINE_ENDS = (b"\n", b"\r\n", b"a\r\n", b'"\r\n', b'a"\r\n')
_MAX_CHUNK_SIZE = 2**64 - 1


@contextlib.contextmanager
def call_deadline(deadline: Optional[float]) -> Iterator[None]:
    """Within the block, responses of this thread keep ``deadline`` (``time.monotonic()``)."""
    _calls.deadline = deadline
    try:
        yield
    finally:
        _calls.deadline = None


# Whether the kernel's receive timeout can stand for Python's (see the module docstring):
# Linux, whose SO_RCVTIMEO takes a struct timeval of two longs.
_KERNEL_TIMEOUT = sys.platform.startswith("linux")


class FinalResponse(http.client.HTTPResponse):
    """http.client's response, skipping informational ones and keeping the call's deadline."""

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        deadline: Optional[float] = getattr(_calls, "deadline", None)
        if deadline is not None:
            sock = _Opened(io.BufferedReader(_DeadlineReader(sock, deadline)))
        elif _KERNEL_TIMEOUT and type(sock) is socket.socket:  # not TLS, not SOCKS
            timeout = sock.gettimeout()  # the read timeout, set by urllib3
            if timeout:
                sock = _Opened(io.BufferedReader(_KernelTimeoutReader(sock, timeout)))
        super().__init__(sock, *args, **kwargs)

    def read_data(self, amt: int) -> bytes:
        """At most ``amt`` bytes of a chunked body's data, as ``read1`` would return them,
        when the framing ahead is in its usual form; ``b""`` when it is not (or no data
        is left): then ``read1`` reads on, by every rule above.

        The usual form is a chunk-size line of hex digits alone and its CRLF, after the
        CRLF ending the chunk before; it waits for bytes as ``read1`` does (one read
        of the socket when none are buffered) and consumes only what it hands out
        and the framing before it.
        """
        left = self.chunk_left
        fp = self.fp
        if fp is None or not self.chunked or self._method == "HEAD":  # type: ignore[attr-defined]
            return b""
        if left:  # within a chunk's data
            data: bytes = fp.read1(left if left < amt else amt)  # no min(): a call a read
            self.chunk_left = left - len(data)  # nothing read: the end, read1's to report
            return data
        buffered = fp.peek()
        match = (_FIRST_SIZE if left is None else _NEXT_SIZE).match(buffered)
        if match is None:
            return b""
        size = int(match.group(1), 16)
        if not size:
            return b""  # the last chunk: the trailer section and the end are read1's
        start = match.end()
        take = len(buffered) - start
        if take > size:  # not min(): a call a read
            take = size
        if take > amt:
            take = amt
        if take <= 0:  # the size line alone is here: consume it, then wait for data
            fp.read(start)
            self.chunk_left = size
            return self.read_data(amt)
        end = start + take
        if take < size:
            self.chunk_left = size - take
        elif buffered[end : end + 2] == b"\r\n":
            # The CRLF ending the chunk's data is here too: read, as before a first chunk.
            self.chunk_left = None
            return fp.read(end + 2)[start:end]
        else:
            self.chunk_left = 0
        return fp.read(end)[start:]

    def _read_status(self) -> Tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not 100 <= status < 200 or status == 101:
                return version, status, reason
            # An informational response: its headers (bounded as the answer's are)
            # are dropped, the answer comes after them.
            http.client.parse_headers(self.fp)

    def _get_chunk_left(self) -> Optional[int]:
        # http.client's, but for the end of a chunk's data and the trailer section, read
        # in the try: a ValueError is its word for broken framing.
        chunk_left: Optional[int] = self.chunk_left
        if not chunk_left:  # None before the first chunk, 0 after a chunk's data
            try:
                if chunk_left is not None:  # the CRLF or bare LF after a chunk's data
                    end = self.fp.read(1)
                    if end == b"\r":
                        end = self.fp.read(1)
                    if end != b"\n":
                        self._refuse_chunk_end(end)
                chunk_left = self._read_next_chunk_size()
                if chunk_left == 0:
                    self._read_and_discard_trailer()
            except ValueError as exc:
                self._drop()
                raise http.client.IncompleteRead(b"") from exc
            if chunk_left == 0:
                self._close_conn()  # type: ignore[attr-defined]
                chunk_left = None
            self.chunk_left = chunk_left
        return chunk_left

    def _refuse_chunk_end(self, end: bytes) -> NoReturn:
        """End the body at what follows a chunk's data (after a CR, if one came) when it is
        no LF: refused as llhttp does, or cut short if the body ended there."""
        if end:
            raise ValueError(f"invalid end of chunk data: {end!r}")
        self._drop()
        raise http.client.IncompleteRead(b"", 1)

    def _read_and_discard_trailer(self) -> None:
        # Each line keeps http.client's bound of 64 KiB. llhttp bounds a field's name and
        # value only: a line a few bytes longer (or with many spaces before its value) it
        # would take is refused here.
        section = _TrailerSection(len(self.msg))
        while True:
            line = self.fp.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                raise ValueError("trailer line too long")
            if line.endswith(b"\n"):
                if section.take(line):
                    return
            elif section.could_go_on(line):
                self._drop()
                raise http.client.IncompleteRead(b"")
            else:
                raise ValueError(f"invalid trailer line: {line[:40]!r}")

    def _drop(self) -> None:
        """Close the response's file, if still open: its connection is not reused."""
        if self.fp is not None:
            self._close_conn()  # type: ignore[attr-defined]

    def _read_next_chunk_size(self) -> int:
        line = self.fp.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("chunk size")
        match = _CHUNK_SIZE_LINE.fullmatch(line)
        size = None if match is None else int(match.group(1), 16)  # _size(), written out
        if match is None or size is None or size > _MAX_CHUNK_SIZE:
            self._refuse_chunk_size(line, cut=not line.endswith(b"\n") and _cut_short(line))
        if match.group(2) == b"\n":
            after = self.fp.read(1)
            if after != b"\n":
                self._refuse_chunk_size(line + after, cut=not after)
        return size

    def _refuse_chunk_size(self, line: bytes, cut: bool) -> NoReturn:
        """End the body at a chunk-size line llhttp refuses: with a ValueError, which
        http.client reports as a chunk size that is no number; with an IncompleteRead
        when the body ended in a line that could still have been taken."""
        self._drop()
        if cut:
            raise http.client.IncompleteRead(b"")
        raise ValueError(f"invalid chunk-size line: {line[:40]!r}")


# A trailer field's start: its name, of token characters, the colon and the spaces or tabs
# before its value; then the value's bytes on that line and its end.
_FIELD_START = re.compile(rb"(%s+):[ \t]*" % _TCHAR)
_SPACES = re.compile(rb"[ \t]*")
_VALUE_LINE = re.compile(rb"([^\r\n]*)\r?\n")


class _TrailerSection:
    """The trailer section after a last chunk, line by line, as llhttp and aiohttp read it.

    A line is a field (a name, a colon, a value of any bytes but CR and LF, ended by CRLF
    or LF), a continuation of the field before it (obs-fold: a line beginning with a space
    or a tab) or the empty line that ends the section. A CR alone right after a colon
    (and its spaces) ends the field, empty, as if it ended the line. aiohttp counts a
    field once the next one begins: against :data:`MAX_FIELDS` with the head's fields,
    and refusing a NUL in its value; its name and value together (the value from its
    first byte that is no space or tab, continuations and trailing spaces included) stay
    within :data:`MAX_FIELD_SIZE` bytes.
    """

    __slots__ = ("fields", "nul", "size", "started")

    def __init__(self, head_fields: int) -> None:
        self.fields = head_fields
        self.size: Optional[int] = None  # of the field being read; None before the first
        self.started = False  # whether its value has begun
        self.nul = False  # whether its value holds a NUL

    def take(self, line: bytes) -> bool:
        """Read ``line`` (a whole line, its LF included): True when it ends the section.
        Raises ValueError where llhttp or aiohttp would refuse it."""
        start = 0
        while True:
            if len(line) - start <= 2 and line[start:] in (b"\r\n", b"\n"):
                return True
            if line[start] in b" \t":
                if self.size is None:
                    raise ValueError("a continuation line before any trailer field")
                if self.started:
                    self._add(_value(line, start))
                    return False
                start = _SPACES.match(line, start).end()  # type: ignore[union-attr]
            else:
                field = _FIELD_START.match(line, start)
                if field is None:
                    raise ValueError(f"invalid trailer field: {line[start : start + 40]!r}")
                self._begin(field.end(1) - start)
                start = field.end()
            if line[start] == 13 and line[start + 1] != 10:
                start += 1  # a CR alone before the value: llhttp ends the field there
                continue
            value = _value(line, start)
            if value:
                self.started = True
                self._add(value)
            return False

    def could_go_on(self, line: bytes) -> bool:
        """Whether ``line``, the body's last bytes, begins a section llhttp could still take."""
        for end in (b"\n", b":\n"):
            section = _TrailerSection(self.fields)
            section.size, section.started, section.nul = self.size, self.started, self.nul
            try:
                section.take(line + end)
            except ValueError:
                continue
            return True
        return False

    def _begin(self, name: int) -> None:
        if self.size is not None:
            self.fields += 1
            if self.nul:
                raise ValueError("a NUL in a trailer field")
            if self.fields > MAX_FIELDS:
                raise ValueError("too many header and trailer fields")
        self.size, self.started, self.nul = name, False, False

    def _add(self, value: bytes) -> None:
        assert self.size is not None
        self.size += len(value)
        if self.size > MAX_FIELD_SIZE:
            raise ValueError("a trailer field too long")
        if b"\x00" in value:
            self.nul = True


def _value(line: bytes, start: int) -> bytes:
    """The value bytes of ``line`` from ``start`` to its end, which must be CRLF or LF."""
    value = _VALUE_LINE.fullmatch(line, start)
    if value is None:
        raise ValueError(f"invalid trailer value: {line[start : start + 40]!r}")
    return value.group(1)


def _size(match: Optional[re.Match[bytes]]) -> Optional[int]:
    """The size a chunk-size line announces, or None when llhttp refuses it."""
    if match is None:
        return None
    size = int(match.group(1), 16)
    return size if size <= _MAX_CHUNK_SIZE else None


def _cut_short(line: bytes) -> bool:
    """Whether ``line``, the body's last bytes, begins a chunk-size line llhttp takes."""
    return any(_size(_CHUNK_SIZE_LINE.fullmatch(line + end)) is not None for end in _LINE_ENDS)


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


class _KernelTimeoutReader(io.RawIOBase):
    """A plain TCP socket's bytes, each read bounded by the kernel's receive timeout.

    While the response is read the socket is in blocking mode with ``SO_RCVTIMEO`` at the
    read timeout: one ``recv`` a read instead of a ``poll`` and a ``recv``. Closing (the
    body read to its end, or the response closed) gives the socket its timeout back, so
    a connection that goes back to the pool sends the next request as before.
    """

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        super().__init__()
        # The socket's own raw file: it keeps the socket open while the response is
        # read, even once its connection is closed (as http.client's file does).
        self._file = sock.makefile("rb", buffering=0)
        self._sock = sock
        self._timeout = timeout
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout))

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return self._sock.recv_into(buffer)
        except BlockingIOError:  # EAGAIN: SO_RCVTIMEO ran out
            raise socket.timeout("timed out") from None

    def close(self) -> None:
        if not self.closed:
            sock = self._sock
            if sock.fileno() != -1:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _NO_TIMEVAL)
                    sock.settimeout(self._timeout)
            self._file.close()
        super().close()


def _timeval(seconds: float) -> bytes:
    """``seconds`` as the ``struct timeval`` of ``SO_RCVTIMEO``."""
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


_NO_TIMEVAL = _timeval(0)  # SO_RCVTIMEO's "no timeout"


def use_own_connections(manager: Any) -> None:
    """Have a urllib3 ``PoolManager`` (or ``ProxyManager``) hand out connections whose
    responses are :class:`FinalResponse`\\ s: in the pools it will make, and in those it
    holds, whose connections (idle, or in use and back later) get them when next taken.
    """
    if getattr(manager, "_final_responses", False):
        return
    # urllib3 makes a manager's pools under this lock: no pool is made between the steps.
    with manager.pools.lock:
        classes: Dict[str, type] = manager.pool_classes_by_scheme
        manager.pool_classes_by_scheme = {
            scheme: _own_pool_class(pool_class) for scheme, pool_class in classes.items()
        }
        for key in manager.pools.keys():  # noqa: SIM118 (the container refuses iteration)
            pool = manager.pools[key]
            pool_class: type = type(pool)
            pool.__class__ = _own_pool_class(pool_class)
        manager._final_responses = True


_adopting = threading.Lock()


def final_responses_below(session: Any, url: str) -> bool:
    """Whether ``session`` (a caller's ``requests.Session``) makes :class:`FinalResponse`\\ s
    for ``url``: it does once the adapter it uses for ``url`` is an ``HTTPAdapter`` (or a
    subclass), whose pool managers this sets up (:func:`use_own_connections`) the first
    time; the proxies' managers too, those made already and those requests makes later.

    Outside the client's calls no deadline applies (:func:`call_deadline`), so the
    caller's own requests on the session only see the 1xx skipped. Another adapter
    (a ``requests.adapters.BaseAdapter`` of the caller's) is left as it is.
    """
    adapter = session.get_adapter(url)
    if getattr(getattr(adapter, "poolmanager", None), "_final_responses", False):
        return True
    if not isinstance(adapter, HTTPAdapter) or not isinstance(adapter.poolmanager, PoolManager):
        return False
    with _adopting:
        managers = adapter.proxy_manager
        if not isinstance(managers, _OwnManagers):
            adapter.proxy_manager = managers = _OwnManagers(managers)
            for manager in managers.values():
                use_own_connections(manager)
        use_own_connections(adapter.poolmanager)  # marks it: the check above, next time
    return True


class _OwnManagers(Dict[str, Any]):
    """An ``HTTPAdapter``'s ``proxy_manager``: requests makes a proxy's manager on its
    first use and stores it here, where :func:`use_own_connections` sets it up."""

    def __setitem__(self, proxy: str, manager: Any) -> None:
        if isinstance(manager, PoolManager):
            use_own_connections(manager)
        super().__setitem__(proxy, manager)


@functools.cache
def _own_pool_class(pool_class: type) -> type:
    """``pool_class`` whose connections make :class:`FinalResponse`\\ s (SOCKS pools too).

    Each connection it hands out, new or pooled, gets them (http.client and urllib3's
    proxy tunnel read a connection's ``response_class`` at each response). A subclass
    adding methods only, so that a pool made before can be given it as its class.
    """
    if getattr(pool_class, "_final_responses", False):
        return pool_class

    get_conn = pool_class._get_conn  # type: ignore[attr-defined]

    def _get_conn(self: Any, *args: Any, **kwargs: Any) -> Any:
        connection = get_conn(self, *args, **kwargs)
        connection.response_class = FinalResponse
        return connection

    return type(
        pool_class.__name__, (pool_class,), {"_get_conn": _get_conn, "_final_responses": True}
    )


def close_abandoned_responses(exc: BaseException) -> None:
    """Close the http.client responses an exception's frames still hold.

    When urllib3 refuses a response's head after http.client read it (two
    unlike Content-Lengths), nobody closes http.client's response, whose file
    keeps the socket open until the exception is collected. Its frames are the
    only reference left, so it is closed from there.
    """
    chain: List[BaseException] = []
    seen: Optional[BaseException] = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for link in chain:
        tb = link.__traceback__
        while tb is not None:
            for value in tb.tb_frame.f_locals.values():
                if isinstance(value, http.client.HTTPResponse):
                    value.close()
            tb = tb.tb_next
