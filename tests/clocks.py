"""The one fake clock of the test suite: virtual time, moved only by sleeps and by the test.

It is a `rotator.clock.Clock`: `now()` (wall, UTC), `monotonic()` and `sleep()`.
A sleep returns at once (after yielding to the event loop) and moves both
clocks by its length; `sleeps` records each one, and `on_sleep` lets a test
change the world between attempts. `advance` moves time without sleeping.
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
        self, *, start: datetime = START, monotonic: float = 1000.0, real_sleep: bool = False
    ) -> None:
        self.mono = monotonic
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[], None] | None = None
        self._start = start
        self._origin = monotonic
        self._real_sleep = real_sleep

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.mono - self._origin)

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.mono += max(0.0, seconds)
        if self.on_sleep is not None:
            self.on_sleep()
        # Yield like a real sleep, so other tasks run; really wait only when asked.
        await asyncio.sleep(seconds if self._real_sleep else 0)

    def advance(self, seconds: float) -> None:
        self.mono += seconds
