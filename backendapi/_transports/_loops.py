"""What the asyncio transport needs of asyncio itself, whatever its HTTP library.

* :class:`ReadDeadline` ends each wait for body bytes at the read timeout (or
  the total timeout's deadline), whatever the library's reader does, with one
  timer per response moved on lazily: about 1 µs per wait, where
  ``asyncio.timeout`` (a timer set and cancelled per wait) doubles the cost of
  a small read.
* :class:`LoopResponse`: a response bounded so, which closing its session
  interrupts (a library may leave a reader of a closed connection waiting).
* :class:`LoopSession` and :class:`LoopSessions` keep a session per event loop.
  A session, its connections and their timers belong to the loop they were made
  on, and one client may serve several loops: one after the other
  (``asyncio.run`` again, as scripts and notebooks do) or at once (a thread
  each). Each session is closed on its own loop; a forked child leaves its
  parent's alone (see ``TransportBase._forked``).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import (
    Any,
    AsyncGenerator,
    Awaitable,
    Callable,
    Dict,
    Generic,
    List,
    Mapping,
    Optional,
    Set,
    Tuple,
    TypeVar,
)

from . import Failure, ResponseHead, TransportBase, TransportError

__all__ = ["LoopResponse", "LoopSession", "LoopSessions", "ReadDeadline"]

SessionT = TypeVar("SessionT")
OwnT = TypeVar("OwnT", bound="LoopSession[Any]")
T = TypeVar("T")

# Task.uncancel() (3.11+) withdraws the cancellation that ended a wait past its deadline.
_UNCANCEL = hasattr(asyncio.Task, "uncancel")


class ReadDeadline:
    """The deadline of each wait for one response's body bytes, on the running loop.

    Around each wait: :meth:`start`, then on ``CancelledError`` :meth:`check`,
    and :meth:`stop` when the wait is over; :meth:`close` with the response.
    """

    __slots__ = (
        "_cancelling",
        "_deadline",
        "_expired",
        "_expires",
        "_loop",
        "_read_timeout",
        "_task",
        "_timer",
    )

    def __init__(self, read_timeout: Optional[float], remaining: Optional[float]) -> None:
        """``remaining``: seconds left of the total timeout from now; either may be None."""
        self._loop = asyncio.get_running_loop()
        self._read_timeout = read_timeout
        self._deadline = None if remaining is None else time.monotonic() + remaining
        self._timer: Optional[asyncio.TimerHandle] = None
        self._expires = 0.0
        self._task: Optional[asyncio.Task[Any]] = None
        self._cancelling = 0
        self._expired = False

    def start(self) -> None:
        """Bound the wait the current task is about to make (past the total timeout: raise)."""
        limit = self._read_timeout
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TransportError(Failure.READ_TIMEOUT, "the total timeout ran out")
            limit = left if limit is None else min(limit, left)
        if limit is None:
            return  # no timeout: nothing to bound
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._cancelling = task.cancelling() if _UNCANCEL else 0
        self._expires = self._loop.time() + limit
        if self._timer is None:
            # A timer set earlier goes off at an earlier deadline, and then moves on.
            self._timer = self._loop.call_at(self._expires, self._expire)

    def check(self) -> None:
        """On the wait's ``CancelledError``: raise the read timeout's failure if the
        deadline cancelled it (and nobody else did); else return, to let it go on."""
        task = self._task
        if not self._expired or task is None:
            return
        self._expired = False
        if _UNCANCEL and task.uncancel() > self._cancelling:
            return  # cancelled by someone else too
        raise TransportError(Failure.READ_TIMEOUT, "no data before the deadline")

    def stop(self) -> None:
        """The wait is over (the timer stays, and finds nothing to do)."""
        self._task = None

    def close(self) -> None:
        """No more waits: the timer goes."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        task = self._task
        if task is None:
            return  # not waiting: the next wait sets the timer again
        if self._loop.time() < self._expires:
            self._timer = self._loop.call_at(self._expires, self._expire)
            return
        self._expired = True
        task.cancel()


class LoopResponse(ResponseHead):
    """A response of an asyncio transport: its waits' deadline, and its place among its
    session's live responses. A transport's subclass waits for body bytes between
    ``self._deadline``'s ``start()`` and ``stop()`` (see :class:`ReadDeadline`)."""

    __slots__ = ("_deadline", "_live")

    def __init__(
        self,
        head: Tuple[int, str, Mapping[str, str]],
        deadline: ReadDeadline,
        own: Optional[LoopSession[Any]],
    ) -> None:
        """``head``: status, reason, headers; ``own``: the own session it came through
        (None: a caller's session, whose responses the transport does not interrupt)."""
        super().__init__(*head)
        self._deadline = deadline
        self._live: Optional[Set[LoopResponse]] = None if own is None else own.live
        if self._live is not None:
            self._live.add(self)

    def interrupt(self) -> None:
        """Make the read in progress (or the next) fail: the session is being closed."""
        raise NotImplementedError

    def _done(self) -> None:
        """The response is closed: out of the live ones, and no more deadline."""
        if self._live is not None:
            self._live.discard(self)
        self._deadline.close()


class LoopSession(Generic[SessionT]):
    """A library's session made for the running event loop; a transport's subclass
    says how to close it without awaiting (:meth:`close_now`) and how to leave it
    to a parent process (:meth:`abandon`)."""

    __slots__ = ("_closer", "_closing", "live", "loop", "session")

    def __init__(self, session: SessionT) -> None:
        self.loop = asyncio.get_running_loop()
        self.session = session
        self.live: Set[LoopResponse] = set()
        """Its responses not closed yet."""
        self._closer: Optional[AsyncGenerator[None, None]] = None
        self._closing: Optional[asyncio.Future[None]] = None

    async def start(self, close: Callable[[], Awaitable[Any]], pid: int) -> None:
        """Have ``close`` called on this loop before it stops (asyncio.run shuts down the
        live async generators; a collected one is finalised on its loop), or by
        :meth:`aclose`: in process ``pid`` only."""
        closer = _close_at_loop_end(close, pid)
        await closer.__anext__()  # never suspends
        self._closer = closer

    async def aclose(self) -> None:
        """Close the session, from its own loop."""
        self._interrupt()
        closer, self._closer = self._closer, None
        if closer is not None:
            await closer.aclose()

    def release(self) -> None:
        """Close the session from any thread, without waiting: on its loop if that loop
        runs in another thread, else here and now."""
        loop = self.loop
        if loop.is_running() and _running_loop() is not loop:
            try:
                loop.call_soon_threadsafe(self._close_on_loop)
                return
            except RuntimeError:  # closed meanwhile: nothing runs there any more
                pass
        self._closer = None
        if not loop.is_closed():
            self._interrupt()
        self.close_now()

    def close_now(self) -> None:
        """Release the session's connections without awaiting: its loop is gone, or not
        running, or this thread's (a finaliser cannot await)."""
        raise NotImplementedError

    def abandon(self) -> None:
        """Leave the session to the process it was made in (this is a forked child):
        nothing of it may be closed here, not even when it is collected."""
        raise NotImplementedError

    def _close_on_loop(self) -> None:
        self._interrupt()
        closer, self._closer = self._closer, None
        if closer is not None:
            self._closing = asyncio.ensure_future(closer.aclose(), loop=self.loop)

    def _interrupt(self) -> None:
        # Reads in progress fail now: a library may forget a connection's reader as it
        # closes it (aiohttp does), leaving it to wait until its deadline, or for ever.
        for response in list(self.live):
            response.interrupt()


class LoopSessions(Generic[OwnT]):
    """A transport's own sessions, one per event loop; safe to share between threads."""

    def __init__(self) -> None:
        self._by_loop: Dict[asyncio.AbstractEventLoop, OwnT] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._shared: Any = None

    def shared(self, make: Callable[[], T]) -> T:
        """The one object every loop's session shares (a cookie jar), made on first use."""
        with self._lock:
            if self._shared is None:
                self._shared = make()
            return self._shared  # type: ignore[no-any-return]

    def get(self, loop: asyncio.AbstractEventLoop) -> Optional[OwnT]:
        """``loop``'s session, or None."""
        return self._by_loop.get(loop)

    def prepare(self, loop: asyncio.AbstractEventLoop, forked: bool) -> Optional[OwnT]:
        """``loop``'s session, or None when one must be made for it: then the sessions
        of loops closed since are closed (asyncio.run closes its own; a loop closed
        without ``shutdown_asyncgens`` does not). ``forked``: every session is the
        parent's, and abandoned."""
        if forked:
            self._lock = threading.Lock()  # a thread of the parent's may have held it
        with self._lock:
            if forked:
                self._abandon(list(self._by_loop.values()))
                self._by_loop = {}
            own = self._by_loop.get(loop)
            if own is not None:
                return own
            gone = [self._by_loop.pop(key) for key in list(self._by_loop) if key.is_closed()]
        for own in gone:
            own.release()
        return None

    def add(self, own: OwnT) -> bool:
        """Keep ``own`` for its loop; False, keeping nothing, once the sessions are closed."""
        with self._lock:
            if self._closed:
                return False
            self._by_loop[own.loop] = own
            return True

    async def aclose(self, forked: bool) -> None:
        """Close every session: the running loop's here, the others as
        :meth:`LoopSession.release` does; in a forked child, abandon them."""
        if forked:
            self._lock = threading.Lock()  # a thread of the parent's may have held it
        with self._lock:
            self._closed = True
            owned, self._by_loop = self._by_loop, {}
        if forked:
            self._abandon(list(owned.values()))
            return
        here = owned.pop(asyncio.get_running_loop(), None)
        for own in owned.values():
            own.release()
        if here is not None:
            await here.aclose()

    def finalise(self, forked: bool) -> None:
        """Release every session without awaiting (the transport is being collected)."""
        owned = list(self._by_loop.values())
        if forked:
            self._abandon(owned)
            return
        for own in owned:
            own.release()

    @staticmethod
    def _abandon(owned: List[OwnT]) -> None:
        for own in owned:
            own.abandon()
        TransportBase._abandon(owned)


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    """This thread's running loop, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _close_at_loop_end(
    close: Callable[[], Awaitable[Any]], pid: int
) -> AsyncGenerator[None, None]:
    """Suspended once started; calls ``close`` when the generator is closed, in process
    ``pid`` only (a forked child would close its parent's connections)."""
    try:
        yield
    finally:
        if os.getpid() == pid:
            await close()
