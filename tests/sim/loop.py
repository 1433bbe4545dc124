"""A virtual-time asyncio event loop, and a per-replica `Clock` on it.

`VirtualLoop` is an `asyncio.BaseEventLoop` whose selector never blocks: when
the loop would wait for `timeout` seconds, the selector moves virtual time
forward by `timeout` and returns at once. `loop.time()` is virtual time, so
`asyncio.sleep`, `asyncio.timeout`, `call_later` and `call_at` all run in
virtual time, as fast as the CPU allows, and in the same order every run
(no threads, no file descriptors, no real I/O).

A wait with nothing scheduled (`select(None)`) can never end: that is a
deadlock, and it raises instead of hanging. A step budget bounds every run.
"""

from __future__ import annotations

import asyncio
import selectors
from datetime import UTC, datetime, timedelta
from typing import Any

# Virtual time 0 on every host's wall clock before skew (Vault adds its own offset).
EPOCH = datetime(2031, 3, 14, 9, 26, 53, tzinfo=UTC)


class Deadlock(RuntimeError):
    """The loop would wait forever: nothing is ready and nothing is scheduled."""


class StepBudgetExceeded(RuntimeError):
    """The loop ran more iterations than its budget: a livelock in virtual time."""


class _VirtualSelector(selectors.BaseSelector):
    """A selector with no file objects: `select(timeout)` advances virtual time."""

    def __init__(self, loop: VirtualLoop, max_steps: int) -> None:
        self._loop = loop
        self._max_steps = max_steps
        self.steps = 0

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        raise NotImplementedError("the virtual loop does no I/O")

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        raise NotImplementedError("the virtual loop does no I/O")

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.steps += 1
        if self.steps > self._max_steps:
            raise StepBudgetExceeded(f"more than {self._max_steps} loop steps")
        if timeout is None:
            raise Deadlock("nothing is ready and nothing is scheduled")
        if timeout > 0:
            self._loop.advance(timeout)
        return []

    def get_map(self) -> Any:
        return {}

    def close(self) -> None:
        return None


class VirtualLoop(asyncio.BaseEventLoop):
    """An event loop in virtual time: waiting costs no wall time."""

    def __init__(self, *, start: float = 0.0, max_steps: int = 5_000_000) -> None:
        super().__init__()
        self._now = start
        self._selector = _VirtualSelector(self, max_steps)
        # Timers within this of `time()` count as due; fixed, not the host's.
        self._clock_resolution = 1e-6

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move virtual time forward (the selector's 'wait')."""
        self._now += seconds

    @property
    def steps(self) -> int:
        return self._selector.steps

    def _process_events(self, event_list: Any) -> None:
        return None

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
        return EPOCH + timedelta(seconds=self._loop.time() + self.skew)

    def monotonic(self) -> float:
        return self._loop.time() + self.boot

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


__all__ = ["EPOCH", "Deadlock", "SimClock", "StepBudgetExceeded", "VirtualLoop"]
