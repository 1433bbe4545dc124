"""The one seam for time: wall clock, monotonic clock and sleep.

Code never calls `datetime.now`, `time.monotonic` or `asyncio.sleep` directly;
it takes a `Clock`, so tests can drive time without patching. How long to wait
between retries is `rotator.retry`'s, which sleeps on this clock.
"""

from __future__ import annotations

import asyncio
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


# CLOCK_BOOTTIME keeps counting while the host is suspended; CLOCK_MONOTONIC
# does not, and a claimant's deadline must not stretch over a suspend.
_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        if _BOOTTIME is not None:
            return time.clock_gettime(_BOOTTIME)
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

    The estimate is meant as a lower bound of Vault's time: judging a claim
    with a lower bound can only make it look younger, never expired early.
    Two sources are kept apart. `created_time` of a version is Vault's own
    clock at a write, exact and never later than now: the newest one seen
    wins. A `Date` header is whatever answered (a standby node, a proxy that
    rewrites it), truncated to whole seconds: the latest one replaces the
    last, so a wrong clock that answered once is forgotten at the next
    refresh. The estimate is the lower of the two.
    """

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._created: tuple[datetime, float] | None = None
        self._date: tuple[datetime, float] | None = None

    def observe(self, created_time: datetime | None) -> None:
        """Learn from the `created_time` of a version just written; never moves back.

        Never from a version read back: its time is long past, and would hold
        the estimate back for good.
        """
        if created_time is None:
            return
        current = self._carry(self._created)
        if current is None or created_time > current:
            self._created = (created_time, self._monotonic())

    def observe_date(self, date: datetime | None) -> None:
        """Learn from a `Date` header (whole seconds); it replaces the previous one."""
        if date is not None:
            self._date = (date, self._monotonic())

    def now(self) -> datetime | None:
        """The server's time now (a lower bound), or None before the first observation."""
        estimates = [e for e in (self._carry(self._created), self._carry(self._date)) if e]
        return min(estimates) if estimates else None

    def _carry(self, anchor: tuple[datetime, float] | None) -> datetime | None:
        if anchor is None:
            return None
        seen, at = anchor
        return seen + timedelta(seconds=max(0.0, self._monotonic() - at))
