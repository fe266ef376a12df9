"""The incremental event decoder: bytes in, :class:`RawResponse` events out.

It owns no I/O. Both clients pump whatever the network hands them into
:meth:`EventDecoder.feed` and :meth:`EventDecoder.close`; the same class reads
both framings of the Backend API, line by line, without being told which:

* SSE (g4f 8.x): ``event: <type>`` / ``data: <json>`` / blank line;
* NDJSON (older g4f and its copies): one JSON object per line.

A line that starts with ``{`` is an NDJSON event; anything else is read as an
SSE field, so the two may even be mixed in one stream.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from .._errors import DecodeError, EventTooLargeError, IncompleteStreamError, excerpt
from .._events import RawResponse
from . import parsing
from .parsing import MAX_EVENT_DEPTH

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "MAX_EVENT_DEPTH", "EventDecoder", "decode"]

DEFAULT_MAX_EVENT_SIZE = 64 * 1024 * 1024
"""Default limit, in bytes, on one event (a line, or an SSE event's data lines)."""

Bytes = Union[bytes, bytearray, memoryview]
_Line = Union[bytes, bytearray]

_LF = 0x0A
_OPEN_BRACE = 0x7B
_COLON = 0x3A
_SPACE = 0x20
_BIG_LINE = 1 << 20  # bytes: a line this long is decoded on its own
_BOM = b"\xef\xbb\xbf"
# Unknown SSE fields are ignored, as the SSE standard says, but only when they
# look like field names: an HTML page or plain text must not vanish silently.
_FIELD_NAME = re.compile(rb"[A-Za-z][A-Za-z0-9_-]*")
# Whole regular SSE events, each at the start of a line: an "event:" line, then
# one "data: " line, then the blank line; or the "data: " line alone. The group
# is the payload.
_SSE_NAMED = re.compile(r"^event:[^\n]*\ndata: ([^\n]*)\n\n", re.MULTILINE)
_SSE_DATA = re.compile(r"^data: ([^\n]*)\n\n", re.MULTILINE)
# A feed that is exactly one event: an SSE event of one "data: " line (maybe after an
# "event:" line), or one NDJSON line; _SSE_NAMED's and _SSE_DATA's forms, whole.
_ONE_EVENT = re.compile(r"(?:(?:event:[^\n]*\n)?data: ([^\n]*)\n|(\{[^\n]*))\n")
_BARE_FIELDS = frozenset({b"data", b"event", b"id", b"retry"})


class EventDecoder:
    """Turn a Backend API byte stream, cut into any pieces, into events.

    >>> decoder = EventDecoder()
    >>> decoder.feed(b'event: content\\ndata: {"type": "content", "content": "Hi"}\\n')
    []
    >>> decoder.feed(b"\\n")
    [RawResponse(type='content', content='Hi')]
    >>> decoder.close()
    []

    Line ends may be ``\\n``, ``\\r\\n`` or ``\\r``, split anywhere; UTF-8 is
    decoded per complete line, so a character split across two pieces and
    U+2028 inside a string are both safe.

    The work is linear in the bytes fed (the goal h11 states for its buffer):
    the buffer remembers how far it has already been searched for a line end,
    so a long event arriving in small pieces is never rescanned from its
    start, and consumed lines are cut off the front in O(1).

    Speed: a feed of ``\n``-ended lines (the usual case) takes a fast path:
    one ``\r`` search, one backward search for its last ``\n``, one UTF-8
    decode and one split of all its complete lines, then a tight loop that
    gives NDJSON lines and SSE ``data:`` payloads straight to the stdlib's JSON
    scanner. Anything else (``\r`` line ends, invalid UTF-8, an ``id:`` line,
    JSON that is not a whole event object...) goes through the per-line path,
    from the first line concerned on, so results and errors are the same.

    An SSE event spread over many ``data:`` lines (pretty-printed JSON) is
    linear too: the data lines already read are kept as they are, and only
    joined once, at the blank line that ends the event.

    Errors: :class:`DecodeError` for a line that is neither JSON nor an SSE
    field, or JSON that is not an event object; :class:`DecodeError` too for
    an event whose JSON nests objects and arrays more than
    :data:`MAX_EVENT_DEPTH` (100) levels deep (the event's own object is level
    1), the same limit with or without msgspec and however deep the caller's
    own stack is; :class:`EventTooLargeError` once one event passes
    ``max_event_size`` bytes; :class:`IncompleteStreamError` from
    :meth:`close` when the stream stopped in the middle of an event. The
    events before a bad one are always handed out first.
    """

    def __init__(self, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        if isinstance(max_event_size, bool) or not isinstance(max_event_size, int):
            raise TypeError(f"max_event_size must be an int, not {type(max_event_size).__name__}")
        if max_event_size <= 0:
            raise ValueError(f"max_event_size must be positive, got {max_event_size}")
        self.max_event_size = max_event_size
        """The size limit, in bytes, of one event."""
        self.last_event_id: Optional[str] = None
        """The last SSE ``id:`` seen, if any."""
        self.retry: Optional[int] = None
        """The last SSE ``retry:`` value (milliseconds), if any."""
        self.bytes_fed = 0
        """How many bytes :meth:`feed` has been given."""
        # Invariant: _buf holds exactly the unterminated tail of the stream, and
        # no line end occurs in _buf[:_scanned].
        self._buf = bytearray()
        self._scanned = 0
        self._skip_lf = False  # the last line ended in "\r": a "\n" next belongs to it
        self._at_start = True
        self._data: List[bytes] = []  # data: lines of the SSE event being read
        self._data_size = 0
        self._event_name: Optional[str] = None
        self._done = False
        self._closed = False
        # A decode error found after other events of the same feed() waits here,
        # so those events are still handed out first, whatever way TCP cut the bytes.
        self._error: Optional[Union[DecodeError, IncompleteStreamError]] = None
        # StreamCore sets this: every event is then handed out as its bare dict,
        # and the stream wraps each in a RawResponse as it hands it out.
        self._raw_dicts = False
        self._too_deep = False  # set when an event is refused for nesting too deep
        # The type of an event object without a "type" field (a bucket's progress
        # events name theirs "action"); None: such an event is a DecodeError.
        self._type_of: Optional[Callable[[Dict[str, Any]], Optional[str]]] = None

    @property
    def done(self) -> bool:
        """True once ``data: [DONE]`` ended the stream; later bytes are ignored."""
        return self._done

    @property
    def error_pending(self) -> bool:
        """True when a decode error waits behind the events last returned.

        :meth:`feed` hands out the events completed before a bad line first;
        the next call to :meth:`feed` (even with ``b""``) or :meth:`close`
        raises the error.
        """
        return self._error is not None

    def feed(self, data: Bytes) -> List[RawResponse]:
        """Add bytes from the network; return the events they complete, in order.

        Raises :class:`DecodeError` for bad bytes, but only once the events
        completed before them were returned (see :attr:`error_pending`).
        """
        if self._error is not None:
            self._raise_held_error()
        if self._closed:
            raise RuntimeError("EventDecoder.feed() called after close()")
        if self._done or not data:
            return []
        self.bytes_fed += len(data)
        if (
            data.__class__ is bytes
            and not self._buf
            and not self._data
            and self._event_name is None
            and not self._skip_lf
            and len(data) <= self.max_event_size
            and b"\r" not in data
        ):
            # One whole event alone, nothing held before it: a model's token as it
            # arrives, one per network read. Parsed at once; anything else about it
            # (no such event, a BOM, bad UTF-8, JSON that is no event) goes the usual way.
            try:
                match = _ONE_EVENT.fullmatch(str(data, "utf-8"))
            except UnicodeDecodeError:
                match = None
            if match is not None:
                found = parsing.parse_events([match[match.lastindex]])  # type: ignore[index]
                if found is not None:
                    self._at_start = False
                    if self._raw_dicts:  # StreamCore's: the dicts, as _fast hands them out
                        return found  # type: ignore[return-value]
                    return [RawResponse._adopt(found[0])]
        events: List[RawResponse] = []
        try:
            self._feed(data, events)
        except DecodeError as exc:
            if not events:
                raise
            self._error = exc
        return events

    def _feed(self, data: Bytes, events: List[Any]) -> None:
        buf = self._buf
        if self._skip_lf:
            self._skip_lf = False
            if data[0] == _LF:
                data = data[1:]
        buf += data
        end = len(buf)
        start = 0
        scan = self._scanned
        # Each byte is searched once for "\n" and once for "\r": lf is only
        # looked up again once consumed, and the "\r" search stops at lf.
        lf = buf.find(b"\n", scan)
        cr = -2  # not searched yet
        if lf < 0:
            # No "\n": the usual piece of a long line. Only a "\r" can end one.
            cr = buf.find(b"\r", scan)
            if cr < 0:
                self._scanned = end
                if end > self.max_event_size - self._data_size:
                    self._check_tail(buf)
                return
        else:
            # The fast path, for the usual "\n"-only stream: one "\r" search of
            # the new bytes, one backward search for the last "\n" (which stops
            # at it), one UTF-8 decode and one split of all complete lines.
            cr = buf.find(b"\r", scan)
            if cr < 0:
                last = buf.rfind(b"\n", lf)
                if self._data:
                    # An SSE event's data lines are held from earlier feeds: its next
                    # lines are read one by one, up to its end, and added to them.
                    # Held lines are never decoded again, so an event of many data
                    # lines (pretty-printed JSON) in small pieces costs linear time.
                    done = self._finish_held(buf, lf, last, events)
                    if self._done:
                        self._buf = bytearray()
                        self._scanned = 0
                        return
                    del buf[:done]
                    end = len(buf)
                    last -= done
                    scan = 0  # no "\r" anywhere in buf, as searched above
                    lf = buf.find(b"\n", 0, last + 1) if last >= 0 else -1
                    if lf < 0:
                        self._scanned = len(buf)
                        if len(buf) > self.max_event_size - self._data_size:
                            self._check_tail(buf)
                        return
                # Within the size limit whatever the lines are: no check needed.
                if self._data_size + last + 2 <= self.max_event_size and self._fast(
                    buf, lf, last, events
                ):
                    if self._done:
                        self._buf = bytearray()
                        self._scanned = 0
                        return
                    del buf[: last + 1]
                    self._scanned = len(buf)
                    if len(buf) > self.max_event_size - self._data_size:
                        self._check_tail(buf)
                    return
                cr = -1
            elif cr > lf:
                cr = -1  # none before lf, the first "\r" search of the loop below
        while True:
            if 0 <= lf < scan:
                lf = buf.find(b"\n", scan)
            if cr == -2:
                cr = buf.find(b"\r", scan, end if lf < 0 else lf)
            if cr >= 0:
                line_end = cr
                if cr + 1 < end:
                    scan = cr + 2 if buf[cr + 1] == _LF else cr + 1
                else:
                    scan = end
                    self._skip_lf = True
            elif lf >= 0:
                line_end = lf
                scan = lf + 1
            else:
                break
            cr = -2
            self._line(buf[start:line_end], events)
            start = scan
            if self._done:
                self._buf = bytearray()
                self._scanned = 0
                return
        if start:
            del buf[:start]
        self._scanned = len(buf)
        if len(buf) > self.max_event_size - self._data_size:
            self._check_tail(buf)

    def _finish_held(self, buf: bytearray, lf: int, last: int, events: List[Any]) -> int:
        """Read lines, per line, until the SSE event held is dispatched; return where they end.

        ``buf[:last + 1]`` holds complete ``\\n``-ended lines (no ``\\r``), the first
        ending at ``lf``. Stops after the line that ends the event, or at ``last + 1``.
        """
        start = 0
        while True:
            self._line(buf[start:lf], events)
            start = lf + 1
            if self._done or not self._data or start > last:
                return start
            lf = buf.find(b"\n", start, last + 1)

    def _check_tail(self, buf: bytearray) -> None:
        # The unterminated line may already hold more than one event may.
        partial = len(buf)
        if buf.startswith(b"data:"):
            partial -= 6 if buf[5:6] == b" " else 5
        self._check_size(self._joined_size(partial))

    def _fast(self, buf: bytearray, lf: int, last: int, events: List[Any]) -> bool:
        """Decode the complete lines ``buf[:last]`` (``\n``-only) at once.

        Returns False, having changed nothing, when they are not valid UTF-8:
        the per-line path then reads them and reports what is wrong. Any line
        it does not expect, or an event that does not parse into an object
        with a ``type``, goes to the per-line path too, so every error is
        raised exactly as that path raises it.

        The regular part of a feed, whole NDJSON lines or whole SSE events of
        an ``event:`` and a ``data:`` line (or a ``data:`` line alone), is
        parsed as one batch (:func:`parsing.parse_events`); the lines around it,
        and any batch that is not regular, go through the line loop
        (:meth:`_loop`).
        """
        alone = False
        parts: List[str] = []  # no data lines are held (see _finish_held)
        try:
            with memoryview(buf) as view:
                if lf >= _BIG_LINE and not self._at_start and buf.startswith(b"data:"):
                    # A long data line (inline media), the end of many feeds:
                    # decode its value alone, so that neither a split nor the
                    # slice after "data:" copies it again.
                    value = str(view[6 if buf[5] == _SPACE else 5 : lf], "utf-8")
                    text = str(view[lf + 1 : last + 1], "utf-8")
                    parts.append(value)
                else:
                    # One line alone (the end of a long one) is decoded without
                    # its "\n", so that no slice copies it again: no batch to make.
                    alone = lf == last
                    text = str(view[: last if alone else last + 1], "utf-8")
                    if self._at_start and text[:1] == "\ufeff":
                        text = text[1:]  # the BOM, as _line drops it
        except UnicodeDecodeError:
            return False
        self._at_start = False
        name = self._event_name
        if alone:
            state = self._read_lines([text], parts, name, events)
            if state is not None:
                if state[0] or state[1] is not None:
                    self._store(*state)
                else:
                    self._event_name = None  # _store([], None): no data lines are held
            return True
        # text: whole lines, each ended by "\n" (none at all after a long data line).
        start = 0
        if parts or name is not None:
            # An SSE event is under way: the loop reads it up to its blank line.
            if text[:1] == "\n":
                start = 1
            else:
                blank = text.find("\n\n")
                start = len(text) if blank < 0 else blank + 2
            state = self._read_lines(_lines(text, 0, start), parts, name, events)
            if state is None:
                self._per_line(_lines(text, start, len(text)), 0, events)
                return True
            parts, name = state
        # A blank line ended any event under way, unless the text ran out first.
        stop = start if parts or name is not None else self._batch(text, start, events)
        if stop == len(text) and not parts and name is None:
            # All read as one batch (one whole event per read): no data lines held.
            self._event_name = None
            return True
        state = self._read_lines(_lines(text, stop, len(text)), parts, name, events)
        if state is not None:
            self._store(*state)
        return True

    def _batch(self, text: str, start: int, events: List[Any]) -> int:
        """Parse the regular events from ``text[start:]`` on as one batch; return where they end.

        ``start`` is at a line start, with no SSE event under way.
        """
        if text.startswith("{", start):
            found = parsing.parse_events(_lines(text, start, len(text)))
            if found is None:
                return start
            events.extend(found if self._raw_dicts else map(RawResponse._adopt, found))
            return len(text)
        if not (text.startswith("event:", start) or text.startswith("data:", start)):
            return start
        end = text.rfind("\n\n", start) + 2
        if end <= start + 1:
            return start
        pattern, newlines = (_SSE_NAMED, 3) if text.startswith("e", start) else (_SSE_DATA, 2)
        payloads = pattern.findall(text, start, end)
        # Every "\n" is in a match and each match is whole lines: the matches
        # are the whole of text[start:end].
        if newlines * len(payloads) != text.count("\n", start, end):
            return start
        found = parsing.parse_events(payloads)
        if found is None:
            return start
        events.extend(found if self._raw_dicts else map(RawResponse._adopt, found))
        return end

    def _read_lines(
        self, lines: List[str], parts: List[str], name: Optional[str], events: List[Any]
    ) -> Optional[Tuple[List[str], Optional[str]]]:
        """Read ``lines`` with the loop; return the SSE state after them.

        None when the loop left some of them to the per-line path, which then
        read them (and owns the state).
        """
        done, parts, name = self._loop(lines, parts, name, events)
        if done == len(lines):
            return parts, name
        self._store(parts, name)
        self._per_line(lines, done, events)
        return None

    def _loop(
        self, lines: List[str], parts: List[str], name: Optional[str], events: List[Any]
    ) -> Tuple[int, List[str], Optional[str]]:
        """Read ``lines`` in a tight loop, until one it does not expect.

        ``parts`` (the data values of the SSE event under way) and ``name``
        (its ``event:``) are the state before; returns the index of the first
        line left alone (``len(lines)`` if none) and the state after.
        """
        scan = parsing.scan_once
        shallow = parsing.SHALLOW
        too_deep = parsing.too_deep
        adopt = RawResponse._adopt
        raw = self._raw_dicts
        append = events.append
        index = 0
        for line in lines:
            if not line:
                if parts:
                    payload = parts[0] if len(parts) == 1 else "\n".join(parts)
                    try:
                        obj, stop = scan(payload, 0)
                    except (StopIteration, ValueError, RecursionError):
                        break
                    if stop != len(payload) or obj.__class__ is not dict or "type" not in obj:
                        break
                    if stop > shallow and too_deep(payload, obj):
                        break
                    append(obj if raw else adopt(obj))
                    parts = []
                name = None
            elif line[0] == "{":
                try:
                    obj, stop = scan(line, 0)
                except (StopIteration, ValueError, RecursionError):
                    break
                if stop != len(line) or obj.__class__ is not dict or "type" not in obj:
                    break
                if stop > shallow and too_deep(line, obj):
                    break
                append(obj if raw else adopt(obj))
            elif line.startswith("data:"):
                parts.append(line[6:] if line[5:6] == " " else line[5:])
            elif line.startswith("event:"):
                name = line[7:] if line[6:7] == " " else line[6:]
            elif line[0] != ":":
                break
            index += 1
        return index, parts, name

    def _store(self, parts: List[str], name: Optional[str]) -> None:
        data = [value.encode("utf-8") for value in parts]
        self._data = data
        self._data_size = sum(map(len, data)) + len(data) - 1 if data else 0
        self._event_name = name

    def _per_line(self, lines: List[str], start: int, events: List[Any]) -> None:
        """The per-line path for ``lines[start:]``: what the loop left alone."""
        for index in range(start, len(lines)):
            if self._done:
                break
            self._line(lines[index].encode("utf-8"), events)

    def _raise_held_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            self._done = True  # nothing after a bad line can be trusted
            raise error

    def close(self) -> List[RawResponse]:
        """Signal the end of the stream; return any last event.

        Raises :class:`IncompleteStreamError` when the stream stopped inside an
        event: an unterminated line that is not a whole JSON object, or SSE
        ``data:`` lines not yet ended by their blank line. A whole last NDJSON
        line after such data lines is returned first; the error is then held
        (:attr:`error_pending`) and raised by the next ``close()`` or ``feed()``.
        """
        if self._closed:
            self._raise_held_error()
            return []
        self._closed = True
        self._raise_held_error()
        events: List[RawResponse] = []
        if self._done:
            return events
        rest = bytes(self._buf)
        self._buf = bytearray()
        if self._at_start and rest.startswith(_BOM):
            rest = rest[len(_BOM) :]  # as _line drops it from a first line that has its end
        if rest:
            stripped = rest.lstrip(b" \t")
            if stripped[:1] == b"{":
                self._too_deep = False
                try:
                    self._line(rest, events)
                except DecodeError:
                    if self._too_deep:  # whole or not, too deep: not a mere cut
                        raise
                    raise IncompleteStreamError(
                        f"stream ended in the middle of an event: {excerpt(rest)}"
                    ) from None
            elif rest[:1] != b":":
                raise IncompleteStreamError(
                    f"stream ended in the middle of a line: {excerpt(rest)}"
                )
        if self._data:
            error = IncompleteStreamError(
                "stream ended before the blank line that completes an SSE event: "
                + excerpt(b"\n".join(self._data))
            )
            if not events:
                raise error
            # A last NDJSON line after the SSE event's data lines: it is handed out
            # first, as it is when it has its newline, and the error comes after it.
            self._error = error
        return events

    def _line(self, line: _Line, events: List[RawResponse]) -> None:
        if self._at_start:
            self._at_start = False
            if line[:3] == _BOM:
                line = line[3:]
        if not line:
            if self._data or self._event_name is not None:
                self._dispatch(events)
            return
        first = line[0]
        if first == _OPEN_BRACE or (first in b" \t" and line.lstrip(b" \t")[:1] == b"{"):
            self._check_size(len(line))
            events.append(self._parse(line, None))
            return
        if first == _COLON:
            return  # an SSE comment, such as a keep-alive
        colon = line.find(b":")
        if colon < 0:
            name, value = bytes(line), b""
            if name not in _BARE_FIELDS:
                raise DecodeError(f"line is neither JSON nor an SSE field: {excerpt(line)}")
        else:
            name = bytes(line[:colon])
            value = bytes(line[colon + 2 if line[colon + 1 : colon + 2] == b" " else colon + 1 :])
        if name == b"data":
            size = self._joined_size(len(value))
            self._check_size(size)
            self._data.append(value)
            self._data_size = size
        elif name == b"event":
            self._event_name = self._text(value, line)
        elif name == b"id":
            if b"\0" not in value:
                self.last_event_id = self._text(value, line)
        elif name == b"retry":
            if value.isdigit():
                self.retry = int(value)
        elif not _FIELD_NAME.fullmatch(name):
            raise DecodeError(f"line is neither JSON nor an SSE field: {excerpt(line)}")

    def _dispatch(self, events: List[RawResponse]) -> None:
        data, name = self._data, self._event_name
        self._data, self._data_size, self._event_name = [], 0, None
        if not data:
            return  # an SSE event with no data is not dispatched
        payload = data[0] if len(data) == 1 else b"\n".join(data)
        if payload == b"[DONE]":
            self._done = True
            return
        events.append(self._parse(payload, name))

    def _parse(self, payload: _Line, event_name: Optional[str]) -> Any:
        """The event's dict (with ``_raw_dicts``), else its :class:`RawResponse`."""
        try:
            obj: Any = parsing.loads(payload)
        except parsing.NestingError:
            self._too_deep = True
            raise DecodeError(
                f"event nests deeper than {MAX_EVENT_DEPTH} levels of JSON objects and arrays: "
                + excerpt(payload)
            ) from None
        except ValueError as exc:  # UnicodeDecodeError is a ValueError too
            raise DecodeError(f"event is not valid JSON ({exc}): {excerpt(payload)}") from None
        if not isinstance(obj, dict):
            raise DecodeError(f"event is not a JSON object: {excerpt(payload)}")
        if "type" not in obj:
            if not event_name and self._type_of is not None:
                event_name = self._type_of(obj)
            if not event_name:
                raise DecodeError(f"event has no 'type' field: {excerpt(payload)}")
            obj = {"type": event_name, **obj}
        return obj if self._raw_dicts else RawResponse._adopt(obj)

    def _text(self, value: bytes, line: _Line) -> str:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError(f"SSE field is not valid UTF-8: {excerpt(line)}") from None

    def _joined_size(self, value_size: int) -> int:
        """The pending SSE event's payload size once one more data value is added."""
        return self._data_size + (1 if self._data else 0) + value_size

    def _check_size(self, size: int) -> None:
        """``size``: bytes of one event's payload (a JSON line, or joined data lines)."""
        if size > self.max_event_size:
            raise EventTooLargeError(
                f"event exceeds max_event_size of {self.max_event_size} bytes "
                f"(at least {size} bytes received)"
            )


def _lines(text: str, start: int, stop: int) -> List[str]:
    """The lines of ``text[start:stop]``, which is empty or ends with ``"\\n"``."""
    return text[start : stop - 1].split("\n") if stop > start else []


def decode(data: Bytes, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> List[RawResponse]:
    """Decode a whole byte stream at once; see :class:`EventDecoder`.

    >>> decode(b'{"type": "title", "title": "Greeting"}\\n')
    [RawResponse(type='title', title='Greeting')]
    """
    decoder = EventDecoder(max_event_size=max_event_size)
    return decoder.feed(data) + decoder.close()
