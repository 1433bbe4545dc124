"""The one retry wait every Monite retry uses."""

from __future__ import annotations

import random

from rotator.clock import BACKOFF_BASE, BACKOFF_CAP, RETRY_AFTER_CAP, retry_wait


def test_retry_after_is_honoured_and_capped() -> None:
    """A server's Retry-After is the wait, never more than RETRY_AFTER_CAP."""
    rng = random.Random(1)
    assert (7.0, 0.0, RETRY_AFTER_CAP) == (
        retry_wait(0, 7, rng=rng),
        retry_wait(3, 0.0, rng=rng),
        retry_wait(0, 10**9, rng=rng),
    )


def test_without_retry_after_the_wait_is_full_jitter_within_its_bounds() -> None:
    """No (or a negative) Retry-After: uniform in [0, min(cap, base * 2**attempt)]."""
    rng = random.Random(7)
    waits = [retry_wait(attempt, None, rng=rng) for attempt in range(12)]
    waits.append(retry_wait(0, -5.0, rng=rng))
    bounds = [min(BACKOFF_CAP, BACKOFF_BASE * 2**a) for a in range(12)] + [BACKOFF_BASE]
    assert [True] * 13 == [0.0 <= w <= b for w, b in zip(waits, bounds, strict=True)]
