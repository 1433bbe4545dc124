"""A virtual-time asyncio event loop, and a per-replica `Clock` on it.

`VirtualLoop` is an `asyncio.BaseEventLoop` that never blocks: when the loop
would wait for `timeout` seconds, it moves virtual time forward by `timeout`
and goes on at once. `loop.time()` is virtual time, so `asyncio.sleep`,
`asyncio.timeout`, `call_later` and `call_at` all run in virtual time, as fast
as the CPU allows, and in the same order every run (no threads, no file
descriptors, no real I/O).

A wait with nothing scheduled can never end: that is a deadlock, and it
raises instead of hanging. A step budget bounds every run.

A scenario runs about a thousand loop iterations and as many callbacks, so the
loop's iteration and its handles are asyncio's own made lean: no selector, no
debug checks, the same heap of timers in the same order, so a run is the same
event for event.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import heapq
from asyncio import base_events
from asyncio.events import Handle, TimerHandle
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVarTuple, Unpack

# Virtual time 0 on every host's wall clock before skew (Vault adds its own offset).
EPOCH = datetime(2031, 3, 14, 9, 26, 53, tzinfo=UTC)

# asyncio's own limits for its iteration (the stubs leave them out).
_MIN_SCHEDULED_TIMER_HANDLES: int = base_events._MIN_SCHEDULED_TIMER_HANDLES  # type: ignore[attr-defined]
_MIN_CANCELLED_TIMER_HANDLES_FRACTION: float = (
    base_events._MIN_CANCELLED_TIMER_HANDLES_FRACTION  # type: ignore[attr-defined]
)
_MAXIMUM_SELECT_TIMEOUT: float = base_events.MAXIMUM_SELECT_TIMEOUT  # type: ignore[attr-defined]

_Ts = TypeVarTuple("_Ts")


class Deadlock(RuntimeError):
    """The loop would wait forever: nothing is ready and nothing is scheduled."""


class StepBudgetExceeded(RuntimeError):
    """The loop ran more iterations than its budget: a livelock in virtual time."""


class _Handle(Handle):
    """`asyncio.Handle` built without asking the loop for its debug flag."""

    __slots__ = ()

    def __init__(
        self,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: VirtualLoop,
        context: contextvars.Context | None,
    ) -> None:
        _fill(self, callback, args, loop, context)


def _fill(
    handle: Handle,
    callback: Callable[..., object],
    args: tuple[Any, ...],
    loop: VirtualLoop,
    context: contextvars.Context | None,
) -> None:
    """What `Handle.__init__` sets, less its look at the loop's debug flag."""
    handle._context = contextvars.copy_context() if context is None else context  # type: ignore[attr-defined]
    handle._loop = loop  # type: ignore[attr-defined]
    handle._callback = callback  # type: ignore[attr-defined]
    handle._args = args
    handle._cancelled = False
    handle._repr = None  # type: ignore[attr-defined]
    handle._source_traceback = None  # type: ignore[attr-defined]


class _Timer(TimerHandle):
    """`asyncio.TimerHandle` the same way; `<` skips the type check: the heap holds only these."""

    __slots__ = ()
    _loop: VirtualLoop
    _when: float
    _scheduled: bool

    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: VirtualLoop,
        context: contextvars.Context | None,
    ) -> None:
        _fill(self, callback, args, loop, context)
        self._when = when
        self._scheduled = False

    def __lt__(self, other: TimerHandle) -> bool:
        return self._when < other._when  # type: ignore[attr-defined,no-any-return]

    def cancel(self) -> None:
        # asyncio.sleep cancels its timer even after it fired: keep that cheap.
        if not self._cancelled:
            if self._scheduled:
                self._loop._timer_cancelled_count += 1
            self._cancelled = True
            self._callback = None  # type: ignore[assignment]
            self._args = None  # type: ignore[assignment]


class VirtualLoop(asyncio.BaseEventLoop):
    """An event loop in virtual time: waiting costs no wall time."""

    # BaseEventLoop's own state (the stubs leave it out).
    _closed: bool
    _stopping: bool
    _ready: collections.deque[Handle]
    _scheduled: list[_Timer]
    _timer_cancelled_count: int

    def __init__(self, *, start: float = 0.0, max_steps: int = 5_000_000) -> None:
        super().__init__()
        self._now = start
        self._max_steps = max_steps
        self._steps = 0
        # Timers within this of `time()` count as due; fixed, not the host's.
        self._clock_resolution = 1e-6

    def time(self) -> float:
        return self._now

    @property
    def steps(self) -> int:
        return self._steps

    def call_soon(
        self,
        callback: Callable[[Unpack[_Ts]], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> Handle:
        if self._closed:
            raise RuntimeError("Event loop is closed")
        handle = _Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_later(
        self,
        delay: float,
        callback: Callable[[Unpack[_Ts]], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> TimerHandle:
        if delay is None:
            raise TypeError("delay must not be None")
        return self.call_at(self._now + delay, callback, *args, context=context)

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[_Ts]], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> TimerHandle:
        if when is None:
            raise TypeError("when cannot be None")
        if self._closed:
            raise RuntimeError("Event loop is closed")
        timer = _Timer(when, callback, args, self, context)
        heapq.heappush(self._scheduled, timer)
        timer._scheduled = True
        return timer

    def _run_once(self) -> None:
        """`BaseEventLoop._run_once`, over and over until `stop()` (which `run_forever` checks
        after every iteration), where the wait for I/O moves virtual time instead."""
        scheduled = self._scheduled
        ready = self._ready
        popleft = ready.popleft
        heappop = heapq.heappop
        while True:
            count = len(scheduled)
            if (
                count > _MIN_SCHEDULED_TIMER_HANDLES
                and self._timer_cancelled_count / count > _MIN_CANCELLED_TIMER_HANDLES_FRACTION
            ):
                kept = []
                for timer in scheduled:
                    if timer._cancelled:
                        timer._scheduled = False
                    else:
                        kept.append(timer)
                heapq.heapify(kept)
                self._scheduled = scheduled = kept
                self._timer_cancelled_count = 0
            else:
                while scheduled and scheduled[0]._cancelled:
                    self._timer_cancelled_count -= 1
                    timer = heappop(scheduled)
                    timer._scheduled = False

            self._steps += 1
            if self._steps > self._max_steps:
                raise StepBudgetExceeded(f"more than {self._max_steps} loop steps")
            if not (ready or self._stopping):
                if not scheduled:
                    raise Deadlock("nothing is ready and nothing is scheduled")
                wait = scheduled[0]._when - self._now
                if wait > 0:
                    self._now += min(wait, _MAXIMUM_SELECT_TIMEOUT)

            end_time = self._now + self._clock_resolution
            while scheduled:
                if scheduled[0]._when >= end_time:
                    break
                timer = heappop(scheduled)
                timer._scheduled = False
                ready.append(timer)

            for _ in range(len(ready)):
                handle = popleft()
                if not handle._cancelled:
                    handle._run()
            if self._stopping:
                return

    def _write_to_self(self) -> None:
        # Only other threads need waking; nothing here runs in another thread.
        return None


class SimClock:
    """`rotator.clock.Clock` for one host: loop time, with the host's wall-clock skew.

    `monotonic()` is loop time plus the host's boot offset (monotonic clocks of
    different hosts share no origin); `now()` is EPOCH + loop time + skew, a
    wall clock that may be wrong by seconds or a year either way.
    """

    def __init__(self, loop: VirtualLoop, *, skew: float, boot: float = 0.0) -> None:
        self._loop = loop
        self.skew = skew
        self.boot = boot

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self._loop._now + self.skew)

    def monotonic(self) -> float:
        return self._loop._now + self.boot

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


__all__ = ["EPOCH", "Deadlock", "SimClock", "StepBudgetExceeded", "VirtualLoop"]
