"""The I/O-free half of a stream: bytes in, events out, the answer gathered.

A client's stream (``backendapi._async.client.AsyncStream`` and the
``Stream`` generated from it) only opens a response, reads its bytes and
closes it; :class:`StreamCore` decides what those bytes mean and
:class:`StreamState` holds what both keep of one stream.
"""

from __future__ import annotations

import json
import logging
import time
from itertools import repeat
from operator import itemgetter
from typing import (
    Any,
    Callable,
    Dict,
    Generic,
    Iterator,
    List,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

from .._answer import Answer
from .._errors import (
    AuthenticationError,
    DecodeError,
    IncompleteStreamError,
    StreamError,
    excerpt,
)
from .._events import RawResponse, _set_fields, _string_type
from .._events import _new as _new_event
from .._transports import ResponseHead
from .decoder import EventDecoder
from .exchange import Exchange
from .request import PreparedRequest

__all__ = ["StreamCore", "StreamState"]

logger = logging.getLogger("backendapi")

_TYPE = itemgetter("type")
_CONTENT = itemgetter("content")
_STR = repeat(str)


def _content_pieces(items: List[Dict[str, Any]]) -> Optional[List[Any]]:
    """The ``content`` of each item if every one is a plain content piece, else None.

    A plain content piece is a ``"content"`` event whose other keys mean nothing to
    the answer: no ``"urls"`` (media) and no ``"data"`` (audio), so the answer may
    take a run of them as one text. A lone one may carry a server's own keys (a
    timestamp); in a batch of several, each must have just ``"type"`` and
    ``"content"`` (a key count checked for all at once), or the batch goes event by
    event (the same answer, more slowly).
    """
    if len(items) == 1:
        # One event per network read, as a model's tokens arrive: no maps to set up.
        data = items[0]
        if data["type"] != "content" or "content" not in data:
            return None
        if len(data) == 2 or ("urls" not in data and "data" not in data):
            return [data["content"]]
        return None
    # Every decoded event has a "type", so a key count of 2 per item on
    # average with each holding "content" means exactly those two keys each.
    if list(map(_TYPE, items)).count("content") != len(items):
        return None
    if sum(map(len, items)) != 2 * len(items):
        return None
    try:
        return list(map(_CONTENT, items))
    except KeyError:  # a content event without content
        return None


def _wrap(data: Dict[str, Any]) -> RawResponse:
    """A RawResponse over one of the decoder's dicts (adopted, not copied)."""
    event: RawResponse = _new_event(RawResponse)
    _set_fields(event, data)
    return event


FEED_SIZE = 32 * 1024
"""Most bytes fed to the decoder at once (a network read is cut in slices)."""


class StreamCore(Exchange):
    """The I/O-free half of a stream: decoding, the batch of events, error events.

    A client's stream pumps bytes in with :meth:`absorb` and hands events out
    of :attr:`taking`, the iterator over the current batch (the events one
    network read completed, as the decoder's dicts: the stream wraps each in
    a :class:`RawResponse` as it hands it out, so a batch of them never waits
    as garbage-collector work); when it runs dry, :meth:`next_event` starts
    the next batch, and ``finished`` tells the stream when to stop reading.

    The answer counts a batch's events lazily, when it is read or the batch is
    used up: the events handed out so far are ``len(batch)`` minus what
    ``taking`` has left, so handing an event out needs no bookkeeping.
    """

    def __init__(
        self, request: PreparedRequest, max_event_size: int, secrets: Tuple[str, ...]
    ) -> None:
        super().__init__(request, secrets)
        self.finished = False
        self.eof = False
        """True once the body was read to its end."""
        self.answer = Answer()
        """Everything yielded so far, gathered."""
        self.answer._catch_up = self._count_taken
        if self.secrets:
            self.answer._redact = self.redact_json
        self.on_complete: List[Callable[[Answer], None]] = []
        """Called once with the answer when the stream ends without error."""
        self.on_end: List[Callable[[str, Answer], None]] = []
        """Called once with the outcome and the answer however the stream ends, after
        :attr:`on_complete`; while a stream fails, the exception is being handled."""
        self.taking: Iterator[Dict[str, Any]] = iter(())
        """The events (dicts) of the current batch not yet handed out."""
        self._decoder = EventDecoder(max_event_size=max_event_size)
        self._decoder._raw_dicts = True  # the stream wraps each as it hands it out
        self._batch: List[Dict[str, Any]] = []
        # The batch's contents when every event in it is a plain content piece
        # (the usual case), so the answer takes a run of them at once.
        self._contents: Optional[List[Any]] = None
        self._counted = 0  # events of _batch already in the answer
        self._fatal: Optional[Dict[str, Any]] = None  # an error/auth event after the batch
        # What is left of the last chunk read: it is fed to the decoder in slices
        # of FEED_SIZE as the events before are taken (see absorb).
        self._rest: Optional[memoryview] = None

    @property
    def events_yielded(self) -> int:
        """Events handed out so far (every one of them went to the answer)."""
        return self.answer.events

    @property
    def bytes_received(self) -> int:
        """Body bytes fed to the decoder so far."""
        return self._decoder.bytes_fed

    def absorb(self, chunk: bytes) -> Optional[RawResponse]:
        """Feed bytes from the network; an empty chunk means the body ended.

        Returns the first event of the new batch, as :meth:`next_event` would,
        or None: then call :meth:`next_event` (something may be held: a slice
        of a big read, an error). Call it only once :attr:`taking` ran dry and
        :meth:`next_event` returned None.
        """
        decoder = self._decoder
        try:
            if chunk:
                if len(chunk) > FEED_SIZE:
                    # A big read is decoded a slice at a time, as its events are
                    # taken: 6,500 small events of one 256 KiB async read, decoded at
                    # once, are handed out more slowly than 32 KiB slices of them.
                    self._rest = memoryview(chunk)
                    self._feed_rest()
                else:
                    # The decoder has _raw_dicts set: its events are the bare dicts.
                    items: List[Dict[str, Any]] = decoder.feed(chunk)  # type: ignore[assignment]
                    if len(items) == 1 and not decoder._done:
                        # One event per network read, as a model's tokens arrive. A plain
                        # content piece (see _content_pieces) is handed out now: the
                        # answer takes it now, and no batch is left to count.
                        data = items[0]
                        if data["type"] == "content":
                            content = data.get("content")
                            if content.__class__ is str and (
                                len(data) == 2 or ("urls" not in data and "data" not in data)
                            ):
                                if self._batch:  # handed out whole: count it, and drop it
                                    self._count_taken()
                                    self._batch = []
                                self.answer._add_text(content, 1)
                                event: RawResponse = _new_event(RawResponse)
                                _set_fields(event, data)
                                return event
                    self._start_batch(items)
                    if decoder._done:
                        self.finished = True
                        self._rest = None
            else:
                self.finished = self.eof = True
                self._start_batch(decoder.close())  # type: ignore[arg-type]
        except (DecodeError, IncompleteStreamError) as error:  # it may quote the key
            self.scrub(error)
            raise
        for data in self.taking:
            event = _new_event(RawResponse)
            _set_fields(event, data)
            return event
        return None

    def _feed(self, data: Union[bytes, memoryview]) -> None:
        self._start_batch(self._decoder.feed(data))  # type: ignore[arg-type]
        if self._decoder._done:
            self.finished = True
            self._rest = None

    def _feed_rest(self) -> None:
        rest = self._rest
        assert rest is not None
        if len(rest) > FEED_SIZE:
            self._rest = rest[FEED_SIZE:]
            rest = rest[:FEED_SIZE]
        else:
            self._rest = None
        self._feed(rest)

    def _start_batch(self, items: List[Dict[str, Any]]) -> None:
        """Make the decoder's new events (dicts, each with a "type") the batch."""
        if self._batch:
            self._count_taken()
        # Plain content pieces (the usual batch): the answer takes their text at once.
        # One event per network read, as a model's tokens arrive, is checked here.
        contents = _content_pieces(items)
        if contents is None:
            types = list(map(_TYPE, items))
            if not all(map(isinstance, types, _STR)):
                for data in items:
                    _string_type(data)
            if "error" in types or "auth" in types:
                # Everything before it is handed out first; nothing after it ever is.
                cut = min(types.index(kind) for kind in ("error", "auth") if kind in types)
                self._fatal = items[cut]
                del items[cut:]
                self._rest = None
        self._contents = contents
        self._batch = items
        self._counted = 0
        self.taking = iter(items)

    def _count_taken(self) -> None:
        """Add the events handed out since the last count to the answer."""
        batch = self._batch
        if not batch:
            return
        taken = len(batch) - self.taking.__length_hint__()  # type: ignore[attr-defined]
        counted = self._counted
        if taken > counted:
            self._counted = taken
            if self._contents is not None:
                try:
                    self.answer._add_contents(self._contents[counted:taken])
                    return
                except TypeError:  # a content that is no string: one at a time
                    self._contents = None
            for data in batch[counted:taken]:
                self.answer.add(_wrap(data))

    def next_event(self) -> Optional[RawResponse]:
        """Start the next batch and return its first event; None when bytes are needed.

        Raises :class:`StreamError` (or :class:`AuthenticationError`) at a
        fatal ``error`` or ``auth`` event, after all earlier events were
        handed out, and a held :class:`DecodeError` likewise.
        """
        for data in self.taking:
            event: RawResponse = _new_event(RawResponse)
            _set_fields(event, data)
            return event
        while True:
            # Raising, the stream ends (end() counts what was taken).
            if self._fatal is not None:
                data, self._fatal = self._fatal, None
                self.finished = True
                raise self._event_error(_wrap(data))
            try:
                if self._decoder._error is not None:
                    self.finished = True
                    self._decoder.feed(b"")  # raises the decode error held behind the events
                if self._rest is None:
                    return None
                self._feed_rest()
            except (DecodeError, IncompleteStreamError) as error:  # it may quote the key
                self.scrub(error)
                raise
            for data in self.taking:
                return _wrap(data)

    def end(self, outcome: str) -> None:
        """Note that the stream ended (``"completed"``, ``"closed"``, ``"failed"``...).

        Events decoded but not yet taken are dropped: nothing comes out of a
        stream after it was closed.
        """
        self._count_taken()
        self.answer._catch_up = None
        self.finished = True
        self._batch.clear()  # in place: an iterator a loop holds over it is done too
        self._contents = None
        self.taking = iter(())
        self._fatal = None
        self._rest = None
        if outcome == "completed":
            callbacks, self.on_complete = self.on_complete, []
            for callback in callbacks:
                callback(self.answer)
        if self.on_end:
            ended, self.on_end = self.on_end, []
            for end in ended:
                end(outcome, self.answer)

    def _event_error(self, event: RawResponse) -> StreamError:
        """The exception for a fatal ``error`` or ``auth`` event, the key hidden in its values.

        Its ``message`` is the event's ``message``, whole; else its error's
        name (or that error's JSON); else the whole event's JSON.
        """
        data = self.redact_json(event.get_dict())
        message = data.get("message")
        name = data.get("error") if event.type == "error" else data.get("auth")
        if not isinstance(message, str) or not message:
            if isinstance(name, str) and name:
                message = name
            else:
                shown = data if name is None or name == "" else name
                message = self.redact(json.dumps(shown, ensure_ascii=False, default=str))
        cls = AuthenticationError if event.type == "auth" else StreamError
        return cls(message, event=RawResponse(data), url=self.request.url)

    @staticmethod
    def is_not_a_stream(content_type: str) -> bool:
        """True when a 200 response is plainly no event stream (a proxy's HTML page)."""
        return content_type.lower().startswith(("text/html", "application/xhtml"))

    def content_type_error(self, content_type: str, head: bytes) -> DecodeError:
        """The error for a response :meth:`is_not_a_stream` rejected."""
        # Redacted before it is quoted: the quotation escapes what it shows.
        start = self.redact(head.decode("utf-8", "backslashreplace"))
        return DecodeError(
            self.redact(
                f"expected an event stream from {self.request.url}, got Content-Type "
                f"{content_type!r}; the body starts {excerpt(start)}"
            )
        )

    def log_end(self, outcome: str) -> None:
        """Log a one-line summary of the finished stream."""
        if not logger.isEnabledFor(logging.DEBUG):
            return  # its figures are not even worked out
        seconds = 0.0 if self.started is None else time.monotonic() - self.started
        logger.debug(
            "stream %s %s: %d events, %d bytes, %.3f s",
            self.request.url,
            outcome,
            self.events_yielded,
            self.bytes_received,
            seconds,
        )


ClientT = TypeVar("ClientT")
ResponseT = TypeVar("ResponseT", bound=ResponseHead)


class StreamState(Generic[ClientT, ResponseT]):
    """What a stream keeps, blocking or async: its client, core, response, and its end."""

    def __init__(self, client: ClientT, core: StreamCore) -> None:
        self._client = client
        self._core = core
        self._response: Optional[ResponseT] = None
        self._status: Optional[int] = None  # the response's, kept once it is released
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once the stream ended or was closed."""
        return self._closed

    @property
    def answer(self) -> Answer:
        """Everything yielded so far, gathered: text, usage, title, conversation..."""
        return self._core.answer

    @property
    def status_code(self) -> Optional[int]:
        """The HTTP status of the response, once the request was sent; kept after the end."""
        response = self._response
        return self._status if response is None else response.status

    def __del__(self) -> None:
        # A stream dropped mid-way must not keep its socket open.
        if not self._closed and self._response is not None:
            self._end("abandoned")

    def _end(self, outcome: str) -> None:
        if self._closed:
            return
        self._closed = True
        response, self._response = self._response, None
        if response is not None:
            self._status = response.status
        try:
            self._core.end(outcome)
        finally:
            if response is not None:
                # Read to its end, the connection goes back to the pool; else it is
                # closed, so the server sees the client go.
                response.close()
                self._core.log_end(outcome)
