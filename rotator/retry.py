"""The one retry primitive: every loop in the product that tries again goes through `retry`.

Why our own and not stamina: every wait must be taken on the injected `Clock`
(so the simulation and the tests run retries in virtual time, and a daemon
stopping mid-wait is woken by its own clock), the commit loop has a deadline
on that clock's monotonic time rather than a fixed attempt count, and a
peer's `Retry-After` replaces the computed backoff. stamina sleeps on the
real clock and would need patching for all three.

Waits are full jitter ("exponential backoff and jitter", AWS Architecture
Blog): uniform in [0, min(cap, base * 2**n)], so callers that failed together
do not come back together. `exponential` is that bound, the one place of the
growth (the sandbox's delivery emulator waits it without jitter, as Monite
does). `retry_after_seconds` reads a peer's `Retry-After`, for every HTTP
caller alike (the Monite adapter and the URL hooks).
"""

from __future__ import annotations

import email.utils
import math
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from typing import TypeVar

from rotator.clock import Clock

T = TypeVar("T")

# A peer's Retry-After above this is not trusted: a misbehaving server could
# otherwise park a rotation (and the secret it holds in memory) for hours.
RETRY_AFTER_CAP = 60.0
# RFC 9110's delay-seconds is 1*DIGIT; a decimal fraction is taken too (the sandbox's
# Monite sends one for sub-second faults). ASCII digits only: float() would also take
# other scripts' digits, "1_0", "1e3", "-5" or "inf", none of which a peer means.
_DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


@dataclass(frozen=True)
class Backoff:
    """How many attempts, and the waits between them."""

    attempts: int  # in all, the first included; at least 1
    base: float  # the first wait is at most this (seconds)
    cap: float  # no wait is longer than this (seconds)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("Backoff.attempts must be at least 1")

    def wait(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        """The wait before retry number `retry` (0-based): the peer's Retry-After when it
        sent a usable one (capped), else full jitter."""
        if retry_after is not None and retry_after >= 0:
            return min(float(retry_after), RETRY_AFTER_CAP)
        return full_jitter(retry, base=self.base, cap=self.cap, rng=rng)


def monite_backoff(attempts: int) -> Backoff:
    """Monite's retries, the adapter's and the protocol's regenerate alike: the first
    waits up to 0.25 s, none longer than 8 s."""
    return Backoff(attempts=attempts, base=0.25, cap=8.0)


def exponential(retry: int, *, base: float, cap: float) -> float:
    """min(cap, base * 2**retry): the longest wait before retry number `retry` (0-based)."""
    # The exponent is clamped so a caller counting without bound never overflows a float.
    return float(min(cap, base * 2 ** min(retry, 62)))


def full_jitter(retry: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Uniform in [0, exponential(retry, base=base, cap=cap)]."""
    return rng.uniform(0.0, exponential(retry, base=base, cap=cap))


def retry_after_seconds(value: str | None, clock: Clock) -> float | None:
    """A `Retry-After` header's wait in seconds: delay-seconds ("120", or "0.25") or an
    HTTP-date (one in the past is 0); None when absent or unreadable.

    Not capped here: `Backoff.wait` and the rate limiter cap what they wait.
    The value is data from the network: nothing here raises on it.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text) is not None:
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # "-0000", or the asctime form: UTC with no zone given
            when = when.replace(tzinfo=UTC)
        seconds = (when - clock.now()).total_seconds()
    # A number of 309 digits or more is infinite as a float.
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _no_hint(exc: BaseException) -> float | None:
    return getattr(exc, "retry_after", None)


def _nothing(retry: int, exc: BaseException, wait: float) -> None:
    return None


async def retry(
    attempt: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff,
    retryable: Callable[[BaseException], bool],
    clock: Clock,
    rng: random.Random,
    on_retry: Callable[[int, BaseException, float], None] = _nothing,
    retry_after: Callable[[BaseException], float | None] = _no_hint,
    deadline: float | None = None,
    whole_wait: bool = False,
) -> T:
    """`await attempt()` until it returns, at most `backoff.attempts` times.

    An exception for which `retryable` is false, the last attempt's exception,
    and any exception once `deadline` (on `clock.monotonic()`) has passed are
    raised as they are. Before each retry `on_retry(n, exc, wait)` is called
    (n counts from 1; log there), then the wait is slept on `clock`, cut short
    so it never crosses `deadline`; with `whole_wait`, a wait that would cross
    it is not cut but ends the retries (the next attempt would start too late
    to be of use).
    """
    for n in range(backoff.attempts):
        try:
            return await attempt()
        except Exception as exc:
            if not retryable(exc) or n + 1 >= backoff.attempts:
                raise
            wait = backoff.wait(n, rng, retry_after(exc))
            if deadline is not None:
                remaining = deadline - clock.monotonic()
                if remaining <= 0 or (whole_wait and wait > remaining):
                    raise
                wait = min(wait, remaining)
            on_retry(n + 1, exc, wait)
            await clock.sleep(wait)
    raise AssertionError("unreachable: the last attempt returns or raises")
