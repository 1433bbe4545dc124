"""The client-side rate limiter every Monite request passes through.

A token bucket shared by all callers of one MoniteClient, set below Monite's
own limit so steady work never meets a 429. When Monite still says stop (a
429 with `Retry-After`, or `RateLimit-Remaining: 0`), every caller pauses at
once instead of each one discovering the limit on its own.
"""

from __future__ import annotations

import asyncio

from rotator.clock import Clock


class RateLimiter:
    """Token bucket: `rate` requests per second on average, at most `burst` at once."""

    def __init__(self, rate: float, *, burst: int = 1, clock: Clock) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock.monotonic()
        self._paused_until = 0.0
        # FIFO: a caller that waits longest goes first, so no rotation starves.
        self._turn = asyncio.Lock()
        self.waited_seconds = 0.0  # total time callers spent waiting, for benchmarks

    async def acquire(self) -> None:
        """Wait until a request may be sent."""
        async with self._turn:
            while True:
                now = self._clock.monotonic()
                if now < self._paused_until:
                    await self._wait(self._paused_until - now)
                    continue
                refill = (now - self._updated) * self.rate
                self._tokens = min(float(self.burst), self._tokens + refill)
                self._updated = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await self._wait((1.0 - self._tokens) / self.rate)
                if self._clock.monotonic() >= self._paused_until:
                    # We slept exactly our deficit: the token is ours. Taking it here
                    # rather than re-measuring avoids chasing float rounding forever.
                    self._tokens = 0.0
                    self._updated = self._clock.monotonic()
                    return

    def pause(self, seconds: float) -> None:
        """Hold every caller for `seconds` (Monite said 429 + Retry-After)."""
        until = self._clock.monotonic() + max(0.0, seconds)
        self._paused_until = max(self._paused_until, until)
        self._tokens = 0.0

    def observe(self, remaining: int | None, reset_seconds: float | None) -> None:
        """Follow Monite's `RateLimit-Remaining`/`-Reset`: nothing left means wait for the reset."""
        if remaining is not None and remaining <= 0 and reset_seconds is not None:
            self.pause(reset_seconds)

    async def _wait(self, seconds: float) -> None:
        self.waited_seconds += seconds
        await self._clock.sleep(seconds)
