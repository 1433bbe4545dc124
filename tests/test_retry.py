"""The one retry primitive: bounded attempts, full-jitter waits on the injected clock, deadlines."""

from __future__ import annotations

import random

import pytest

from rotator.retry import RETRY_AFTER_CAP, Backoff, full_jitter, monite_backoff, retry
from tests.clocks import FakeClock


class Flaky(Exception):
    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("flaky")
        self.retry_after = retry_after


def failing(times: int, exc: Exception) -> tuple[list[int], object]:
    calls: list[int] = []

    async def attempt() -> str:
        calls.append(len(calls))
        if len(calls) <= times:
            raise exc
        return "done"

    return calls, attempt


async def test_retries_until_success_within_the_attempts() -> None:
    """Two failures then success: three calls, two waits, the answer returned."""
    clock = FakeClock(monotonic=0.0)
    calls, attempt = failing(2, Flaky())
    seen: list[int] = []
    result = await retry(
        attempt,  # type: ignore[arg-type]
        backoff=Backoff(attempts=3, base=1.0, cap=8.0),
        retryable=lambda exc: isinstance(exc, Flaky),
        clock=clock,
        rng=random.Random(1),
        on_retry=lambda n, exc, wait: seen.append(n),
    )
    assert ("done", 3, [1, 2], 2) == (result, len(calls), seen, len(clock.sleeps))


async def test_the_last_failure_is_raised_after_the_attempts() -> None:
    """Failing every time: exactly `attempts` calls, then the last exception itself."""
    error = Flaky()
    calls, attempt = failing(99, error)
    with pytest.raises(Flaky) as raised:
        await retry(
            attempt,  # type: ignore[arg-type]
            backoff=Backoff(attempts=4, base=0.5, cap=2.0),
            retryable=lambda exc: True,
            clock=FakeClock(monotonic=0.0),
            rng=random.Random(2),
        )
    assert (4, error) == (len(calls), raised.value)


async def test_a_permanent_error_is_not_retried() -> None:
    """An exception `retryable` refuses is raised at once, with no wait."""
    clock = FakeClock(monotonic=0.0)
    calls, attempt = failing(1, ValueError("permanent"))
    with pytest.raises(ValueError, match="permanent"):
        await retry(
            attempt,  # type: ignore[arg-type]
            backoff=Backoff(attempts=5, base=1.0, cap=8.0),
            retryable=lambda exc: isinstance(exc, Flaky),
            clock=clock,
            rng=random.Random(3),
        )
    assert (1, []) == (len(calls), clock.sleeps)


async def test_waits_never_cross_the_deadline() -> None:
    """With a deadline 2.5 s away, the waits add up to at most 2.5 s and the error surfaces."""
    clock = FakeClock(monotonic=0.0)
    calls, attempt = failing(99, Flaky(retry_after=1.0))
    with pytest.raises(Flaky):
        await retry(
            attempt,  # type: ignore[arg-type]
            backoff=Backoff(attempts=50, base=1.0, cap=8.0),
            retryable=lambda exc: True,
            clock=clock,
            rng=random.Random(4),
            deadline=2.5,
        )
    assert ([1.0, 1.0, 0.5], 4) == (clock.sleeps, len(calls))


async def test_a_whole_wait_that_would_cross_the_deadline_ends_the_retries() -> None:
    """With whole_wait, a 1 s Retry-After 1.5 s before the deadline is taken, the next is not."""
    clock = FakeClock(monotonic=0.0)
    calls, attempt = failing(99, Flaky(retry_after=1.0))
    with pytest.raises(Flaky):
        await retry(
            attempt,  # type: ignore[arg-type]
            backoff=Backoff(attempts=50, base=1.0, cap=8.0),
            retryable=lambda exc: True,
            clock=clock,
            rng=random.Random(7),
            deadline=1.5,
            whole_wait=True,
        )
    assert ([1.0], 2) == (clock.sleeps, len(calls))


def test_retry_after_replaces_the_backoff_but_is_capped() -> None:
    """A peer's Retry-After is the wait, up to the cap; a negative one is ignored."""
    backoff = Backoff(attempts=3, base=0.25, cap=8.0)
    rng = random.Random(5)
    assert (3.0, RETRY_AFTER_CAP) == (backoff.wait(0, rng, 3.0), backoff.wait(0, rng, 3600.0))
    assert 0.0 <= backoff.wait(0, rng, -1.0) <= 0.25


def test_full_jitter_stays_within_the_growing_bound() -> None:
    """Wait n is within [0, min(cap, base * 2**n)], even for a huge n."""
    rng = random.Random(6)
    bounds = [min(8.0, 0.25 * 2**n) for n in range(8)]
    waits = [full_jitter(n, base=0.25, cap=8.0, rng=rng) for n in range(8)]
    assert [True] * 8 == [0.0 <= w <= b for w, b in zip(waits, bounds, strict=True)]
    assert 0.0 <= full_jitter(10_000, base=0.25, cap=8.0, rng=rng) <= 8.0


def test_backoff_needs_one_attempt() -> None:
    """Zero attempts is a programming error, said at construction."""
    with pytest.raises(ValueError, match="at least 1"):
        Backoff(attempts=0, base=1.0, cap=1.0)


def test_monites_backoff_starts_at_a_quarter_second_and_caps_at_eight() -> None:
    """Every Monite retry waits within [0, min(8, 0.25 * 2**n)], and as often as asked."""
    backoff = monite_backoff(4)
    rng = random.Random(8)
    waits = [backoff.wait(n, rng) for n in range(12)]
    bounds = [min(8.0, 0.25 * 2**n) for n in range(12)]
    assert (4, [True] * 12) == (
        backoff.attempts,
        [0.0 <= w <= b for w, b in zip(waits, bounds, strict=True)],
    )
