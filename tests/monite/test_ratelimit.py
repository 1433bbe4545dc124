"""The client-side rate limiter: pacing, global pauses, and no 429s against a limited Monite."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from rotator.clock import SystemClock
from rotator.config import MoniteSettings
from rotator.monite import MoniteClient, header_number, retry_after
from rotator.ratelimit import MAX_PAUSE_SECONDS, RateLimiter
from rotator.sandbox.monite import MoniteEmulator
from rotator.secret import Secret
from tests.clocks import FakeClock


async def test_requests_are_paced_at_the_rate_after_the_burst() -> None:
    """Twenty acquisitions at 10/s with burst 5 take 1.5 s of clock time."""
    clock = FakeClock(monotonic=0.0)
    limiter = RateLimiter(10.0, burst=5, clock=clock)
    await asyncio.gather(*(limiter.acquire() for _ in range(20)))
    assert 1.5 == round(clock.monotonic(), 6)


async def test_pause_holds_every_caller() -> None:
    """After a 429's Retry-After of 2 s, the next caller waits the full 2 s."""
    clock = FakeClock(monotonic=0.0)
    limiter = RateLimiter(100.0, burst=10, clock=clock)
    await limiter.acquire()
    limiter.pause(2.0)
    await limiter.acquire()
    assert 2.0 <= clock.monotonic() < 2.1


async def test_no_remaining_quota_waits_for_the_reset() -> None:
    """RateLimit-Remaining 0 with Reset 1 makes the next request wait a second."""
    clock = FakeClock(monotonic=0.0)
    limiter = RateLimiter(100.0, burst=10, clock=clock)
    first = await limiter.acquire()
    limiter.observe(first, remaining=0, reset=1.0)
    await limiter.acquire()
    assert 1.0 <= clock.monotonic() < 1.1


async def test_reset_given_as_a_timestamp_waits_until_then() -> None:
    """A RateLimit-Reset that is a Unix timestamp 2 s ahead pauses 2 s, not the 60 s cap."""
    clock = FakeClock(monotonic=0.0)
    limiter = RateLimiter(100.0, burst=10, clock=clock)
    first = await limiter.acquire()
    limiter.observe(first, remaining=0, reset=clock.now().timestamp() + 2)
    await limiter.acquire()
    assert 2.0 == clock.monotonic()


async def test_reported_spare_quota_is_used_less_what_was_sent_since() -> None:
    """Monite reporting 10 remaining lets 10 - 3 in flight - margin 2 = 5 more go at once."""
    clock = FakeClock(monotonic=0.0)
    limiter = RateLimiter(1.0, burst=1, clock=clock)
    sent = [await limiter.acquire() for _ in range(4)]  # 1 from the bucket, then 1/s
    assert 3.0 == clock.monotonic()
    limiter.observe(sent[0], remaining=10, reset=1.0)
    for _ in range(5):
        await limiter.acquire()
    assert 3.0 == clock.monotonic()
    await limiter.acquire()
    assert 4.0 == clock.monotonic()


async def test_older_answers_do_not_override_newer_ones() -> None:
    """An answer to an earlier request cannot restore spare quota a later answer took away."""
    clock = FakeClock(monotonic=0.0)
    limiter = RateLimiter(1.0, burst=1, clock=clock)
    a = await limiter.acquire()
    b = await limiter.acquire()
    limiter.observe(b, remaining=2, reset=1.0)  # spare 0 after the margin
    limiter.observe(a, remaining=30, reset=1.0)  # stale: ignored
    before = clock.monotonic()
    await limiter.acquire()
    assert 1.0 == clock.monotonic() - before


async def test_limited_client_never_meets_a_429(monite_settings: MoniteSettings) -> None:
    """Below Monite's limit, 40 concurrent regenerates all succeed with zero 429 answers."""
    with MoniteEmulator(rate_limit=20, burst=5) as monite:
        client_id, client_secret = monite.add_client()
        settings = monite_settings.model_copy(
            update={
                "base_url": monite.base_url,
                "client_id": client_id,
                "client_secret": Secret(client_secret),
            }
        )
        ids = [monite.seed() for _ in range(40)]
        async with httpx.AsyncClient() as http:
            limiter = RateLimiter(18.0, burst=1, clock=SystemClock())
            client = MoniteClient(http, settings, limiter=limiter)
            results = await asyncio.gather(*(client.regenerate_secret(sid) for sid in ids))
        assert 40 == len(results)
        assert 0 == sum(n for (op, status), n in client.requests.items() if status == 429)
        assert [1] * 40 == [monite.regenerate_count(sid) for sid in ids]


def test_hostile_rate_limit_headers_do_not_raise() -> None:
    """inf, nan and 1e999 in RateLimit headers, and a zone-less HTTP date, parse safely."""
    for value in ("inf", "nan", "1e999", "-inf"):
        response = httpx.Response(200, headers={"RateLimit-Remaining": value})
        assert header_number(response, "RateLimit-Remaining") is None
    dated = httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 -0000"})
    waited = retry_after(dated, SystemClock())
    assert waited is not None
    assert waited > 0


async def test_a_huge_retry_after_pauses_at_most_a_minute() -> None:
    """A Retry-After of a day is capped, so one answer cannot stall the daemon for hours."""

    clock = FakeClock(monotonic=0.0)
    limiter = RateLimiter(100.0, burst=5, clock=clock)
    limiter.pause(86400)
    await limiter.acquire()
    assert MAX_PAUSE_SECONDS == pytest.approx(clock.monotonic())
