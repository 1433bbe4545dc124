"""The one seam for time: wall clock, monotonic clock and sleep.

Code never calls `datetime.now`, `time.monotonic` or `asyncio.sleep` directly;
it takes a `Clock`, so tests can drive time without patching. How long to wait
between retries (`full_jitter`) lives here too, so every retry loop backs off alike.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
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


class ServerClock:
    """Another party's clock (Vault's), as seen in its own responses.

    Claims are judged on Vault's time so that no host's wall clock can fence a
    record for a year or take over a live claim. Vault tells its time in every
    KV v2 write (`created_time`) and in its `Date` header; between answers the
    estimate advances with the local monotonic clock, which measures intervals
    faithfully even when the host's wall clock is wrong.

    The estimate is a lower bound of Vault's time: an observation is at most
    the time Vault answered, and a `Date` header is truncated to the second
    (callers pass `resolution=1`, which is added to every judgement's margin).
    Judging a claim with a lower bound can only make it look younger, never
    expired early.
    """

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._anchor: tuple[datetime, float] | None = None

    def observe(self, server_time: datetime | None) -> None:
        """Learn from a time the server reported; older observations never move it back."""
        if server_time is None:
            return
        local = self._monotonic()
        current = self.now()
        if current is None or server_time > current:
            self._anchor = (server_time, local)

    def now(self) -> datetime | None:
        """The server's time now (a lower bound), or None before the first observation."""
        if self._anchor is None:
            return None
        seen, at = self._anchor
        return seen + timedelta(seconds=max(0.0, self._monotonic() - at))


def full_jitter(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Backoff before retry number `attempt` (0-based): uniform in [0, min(cap, base * 2**attempt)].

    Full jitter: callers that failed together do not come back together.
    """
    return rng.uniform(0.0, min(cap, base * 2**attempt))
