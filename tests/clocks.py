"""The one fake clock of the test suite: virtual time, moved only by sleeps and by the test.

It is a `rotator.clock.Clock`: `now()` (wall, UTC), `monotonic()` and `sleep()`.
By default a sleep returns at once (after yielding to the event loop) and moves
both clocks by its length; `sleeps` records each one, and `on_sleep` lets a
test change the world between attempts. `advance` moves time without sleeping.

With `manual=True` a sleep instead waits until the test's `advance` moves time
past its end, as a real sleep waits for real time: what races a timer (a
bounded wait, a drain's grace, the watchdog's interval) keeps its meaning, and
the test decides when each timer fires (`pending` shows the sleeps waiting).
The daemon runs on a manual clock; code that only retries runs on the default.
(The simulation in tests/sim has its own scheduler-driven clock.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

START = datetime(2024, 6, 1, tzinfo=UTC)


class FakeClock:
    """Wall and monotonic time that move only when code sleeps or a test advances them."""

    def __init__(
        self,
        *,
        start: datetime = START,
        monotonic: float = 1000.0,
        real_sleep: bool = False,
        manual: bool = False,
    ) -> None:
        self.mono = monotonic
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[], None] | None = None
        self._start = start
        self._origin = monotonic
        self._real_sleep = real_sleep
        self._manual = manual
        self._waiting: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.mono - self._origin)

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self._manual:
            if seconds > 0:
                woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                entry = (self.mono + seconds, woken)
                self._waiting.append(entry)
                try:
                    await woken
                finally:
                    if entry in self._waiting:
                        self._waiting.remove(entry)
            else:
                await asyncio.sleep(0)
            return
        self.mono += max(0.0, seconds)
        if self.on_sleep is not None:
            self.on_sleep()
        # Yield like a real sleep, so other tasks run; really wait only when asked.
        await asyncio.sleep(seconds if self._real_sleep else 0)

    def pending(self) -> list[float]:
        """How far ahead of now each sleep still waiting ends (manual clocks), soonest first."""
        return sorted(end - self.mono for end, _ in self._waiting)

    def advance(self, seconds: float) -> None:
        """Move time on; on a manual clock, wake every sleep that has now run its length."""
        self.mono += seconds
        for end, woken in list(self._waiting):
            if end <= self.mono and not woken.done():
                woken.set_result(None)
