"""The one retry primitive: bounded attempts, full-jitter waits on the injected clock, deadlines."""

from __future__ import annotations

import random

import httpx
import pytest

from rotator.monite import retry_after
from rotator.retry import (
    RETRY_AFTER_CAP,
    Backoff,
    exponential,
    full_jitter,
    monite_backoff,
    retry,
    retry_after_seconds,
)
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


def test_exponential_doubles_from_the_base_up_to_the_cap() -> None:
    """The bound before retry n is base * 2**n up to the cap, and a huge n does not overflow."""
    assert [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0] == [
        exponential(n, base=0.25, cap=8.0) for n in (0, 1, 2, 3, 4, 5, 6, 10_000)
    ]


@pytest.mark.parametrize(
    ("value", "seconds"), [("120", 120.0), (" 7 ", 7.0), ("0", 0.0), ("0.25", 0.25)]
)
def test_retry_after_reads_delay_seconds(value: str, seconds: float) -> None:
    """Delay-seconds (whole, or with a decimal fraction) is that many seconds."""
    assert seconds == retry_after_seconds(value, FakeClock())


@pytest.mark.parametrize(
    "value",
    [
        "Sat, 01 Jun 2024 00:00:30 GMT",  # IMF-fixdate
        "Saturday, 01-Jun-24 00:00:30 GMT",  # RFC 850
        "Sat Jun  1 00:00:30 2024",  # asctime: no zone, so UTC
        "Sat, 01 Jun 2024 00:00:30 -0000",  # "no zone information": UTC
        "Sat, 01 Jun 2024 02:00:30 +0200",
    ],
)
def test_retry_after_reads_every_http_date_form_on_the_clock(value: str) -> None:
    """An HTTP-date in any of its three forms is the seconds from the clock's now to it."""
    clock = FakeClock()  # now: 2024-06-01T00:00:00Z
    assert 30.0 == retry_after_seconds(value, clock)


def test_a_retry_after_date_in_the_past_is_no_wait() -> None:
    """A date already past means "now": zero, never a negative wait."""
    assert 0.0 == retry_after_seconds("Fri, 31 May 2024 23:00:00 GMT", FakeClock())


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "soon",
        "-3",
        "+3",
        "1e3",
        "inf",
        "nan",
        "1_000",
        "0x10",
        ".5",
        "1.",
        "3 seconds",
        "\u0663",  # ARABIC-INDIC DIGIT THREE: a digit to str.isdigit and float, not to HTTP
        "9" * 400,  # infinite as a float
        "Sat, 01 Jun 99999 00:00:30 GMT",
        "Sat, 31 Feb 2024 00:00:30 GMT",
    ],
)
def test_retry_after_that_is_absent_or_unreadable_is_none(value: str | None) -> None:
    """Absent, negative, exponent, non-ASCII, infinite or impossible-date values are None."""
    assert None is retry_after_seconds(value, FakeClock())


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5", 5.0), ("Sat, 01 Jun 2024 00:00:30 GMT", 30.0), ("-3", None), ("1e3", None)],
)
def test_monite_reads_retry_after_with_the_shared_parser(value: str, seconds: float | None) -> None:
    """The Monite adapter's retry_after answers exactly what the shared parser does."""
    response = httpx.Response(429, headers={"Retry-After": value})
    assert seconds == retry_after(response, FakeClock())
