"""The client-side rate limiter every Monite request passes through.

A token bucket shared by all callers of one MoniteClient, set just below
Monite's own limit so steady work never meets a 429. Monite's
`RateLimit-Remaining` header adds what our own pacing cannot know: how much
of Monite's bucket is still unspent (its initial burst, or the gap between its
refill and our rate). That spare is used, less what we sent since the answer
that reported it and a small margin. When Monite says stop (a 429 with
`Retry-After`, or nothing remaining), every caller pauses at once instead of
each one discovering the limit on its own.
"""

from __future__ import annotations

import asyncio

from rotator.clock import Clock

# Requests of Monite's reported spare we leave unused: another client of the
# same account, or a refill we counted too early, must not tip us into a 429.
SPARE_MARGIN = 2
# The longest pause one answer can impose: a Retry-After or reset of hours must
# not stall the daemon.
MAX_PAUSE_SECONDS = 60.0
# Monite documents `RateLimit-Reset` as the Unix time the quota resets; some
# gateways send the seconds until then. A value above a day is a timestamp.
RESET_TIMESTAMP_ABOVE = 86400.0


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
        self._sent = 0  # sequence number of the last request let through
        self._spare = 0  # of Monite's reported remaining quota, what we may still use
        self._spare_as_of = 0  # the request whose answer reported it
        # FIFO: a caller that waits longest goes first, so no rotation starves.
        self._turn = asyncio.Lock()
        self.waited_seconds = 0.0  # total time callers spent waiting, for benchmarks

    async def acquire(self) -> int:
        """Wait until a request may be sent; returns its sequence number for `observe`."""
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
                    return self._send()
                if self._spare >= 1:
                    self._spare -= 1
                    return self._send()
                wait = (1.0 - self._tokens) / self.rate
                await self._wait(wait)
                if self._clock.monotonic() >= self._paused_until:
                    # We slept our deficit: the token is ours. Take it as of the planned
                    # wake-up, not the actual one, so a sleep that overran refills the
                    # bucket instead of slowing the pace (and no float rounding is chased).
                    self._tokens = 0.0
                    self._updated = now + wait
                    return self._send()

    def pause(self, seconds: float) -> None:
        """Hold every caller for `seconds` (Monite said 429 + Retry-After)."""
        until = self._clock.monotonic() + min(max(0.0, seconds), MAX_PAUSE_SECONDS)
        self._paused_until = max(self._paused_until, until)
        self._tokens = 0.0
        self._spare = 0

    def observe(self, sequence: int, remaining: int | None, reset: float | None) -> None:
        """Follow Monite's `RateLimit-Remaining`/`-Reset` from the answer to request `sequence`.

        `reset` is the header as sent: a Unix timestamp (Monite's documented form)
        or, when no more than a day, the seconds until the reset.
        """
        if remaining is None:
            return
        if remaining <= 0:
            if reset is not None:
                self.pause(self.seconds_until(reset))
            return
        if sequence <= self._spare_as_of:
            return  # an older answer than the one we already follow
        self._spare_as_of = sequence
        # Everything sent after that request has spent Monite's quota too.
        self._spare = max(0, remaining - (self._sent - sequence) - SPARE_MARGIN)

    def seconds_until(self, reset: float) -> float:
        """Seconds to wait for a `RateLimit-Reset` value, read as a timestamp or as seconds."""
        if reset > RESET_TIMESTAMP_ABOVE:
            # On the injected clock, like every other reading of the wall clock.
            return max(0.0, reset - self._clock.now().timestamp())
        return max(0.0, reset)

    def _send(self) -> int:
        self._sent += 1
        return self._sent

    async def _wait(self, seconds: float) -> None:
        self.waited_seconds += seconds
        await self._clock.sleep(seconds)
