"""The one seam for time: wall clock, monotonic clock and sleep.

Code never calls `datetime.now`, `time.monotonic` or `asyncio.sleep` directly;
it takes a `Clock`, so tests can drive time without patching. How long to wait
between retries (`full_jitter`) lives here too, so every retry loop backs off alike.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """What the rest of the code needs to know about time."""

    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for deadlines)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait this many seconds."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


def full_jitter(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Backoff before retry number `attempt` (0-based): uniform in [0, min(cap, base * 2**attempt)].

    Full jitter: callers that failed together do not come back together.
    """
    return rng.uniform(0.0, min(cap, base * 2**attempt))
