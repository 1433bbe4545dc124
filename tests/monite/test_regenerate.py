"""regenerate_secret and get_subscription: one attempt; may a failure have applied."""

from __future__ import annotations

import random

import httpx
import pytest

from rotator.config import MoniteSettings
from rotator.errors import (
    MoniteError,
    MoniteNotFound,
    MoniteProtocolError,
    MoniteUnavailable,
)
from rotator.monite import MoniteClient
from rotator.sandbox.monite import MoniteEmulator
from tests.monite.helpers import (
    FakeClock,
    Leaks,
    answering,
    expect,
)


async def test_regenerate_returns_the_current_secret(
    monite: MoniteEmulator, client: MoniteClient, leaks: Leaks
) -> None:
    """The secret returned is the one Monite now signs with."""
    sub_id = monite.seed(url="https://hooks.example.com/a")
    result = await client.regenerate_secret(sub_id)
    assert monite.current_secret(sub_id) == result.secret.reveal()
    assert sub_id == result.subscription.id
    assert 1 == monite.regenerate_count(sub_id)
    assert "secret" not in result.subscription.extra


async def test_regenerate_is_one_attempt_and_a_dropped_answer_may_have_applied(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock, leaks: Leaks
) -> None:
    """The adapter never retries a regenerate; a lost answer says it may have been applied."""
    sub_id = monite.seed(url="https://hooks.example.com/a")
    monite.faults.drop_after_regenerate = 1
    error = await expect(MoniteUnavailable, client.regenerate_secret(sub_id), leaks)
    assert error.may_have_applied
    assert 1 == monite.regenerate_count(sub_id)
    assert [] == clock.sleeps


@pytest.mark.parametrize(
    ("status", "applied"), [(429, False), (500, True), (503, True), (400, False)]
)
async def test_regenerate_error_says_whether_it_may_have_applied(
    monite: MoniteEmulator,
    client: MoniteClient,
    leaks: Leaks,
    status: int,
    applied: bool,
) -> None:
    """A 429 or 4xx was refused; a 5xx may come after Monite made the change."""
    sub_id = monite.seed(url="https://hooks.example.com/a")
    monite.faults.error_status = status
    monite.faults.fail_regenerate = 1
    error = await expect(MoniteError, client.regenerate_secret(sub_id), leaks)
    assert (status, applied) == (error.status, error.may_have_applied)
    assert 1 == monite.request_count("regenerate_secret")


async def test_regenerate_not_sent_after_its_send_deadline(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock, leaks: Leaks
) -> None:
    """A send deadline already past means nothing is sent, and nothing may have applied."""
    sub_id = monite.seed(url="https://hooks.example.com/a")
    error = await expect(
        MoniteUnavailable, client.regenerate_secret(sub_id, send_by=clock.monotonic() - 1), leaks
    )
    assert not error.may_have_applied
    assert 0 == monite.request_count("regenerate_secret")


async def test_regenerate_unknown_id_is_not_found(
    monite: MoniteEmulator, client: MoniteClient, leaks: Leaks
) -> None:
    """A 404 is MoniteNotFound, with no retry."""
    missing = "00000000-0000-4000-8000-000000000000"
    error = await expect(MoniteNotFound, client.regenerate_secret(missing), leaks)
    assert 404 == error.status
    assert 1 == monite.request_count("regenerate_secret")


async def test_get_unknown_id_is_not_found(
    monite: MoniteEmulator, client: MoniteClient, leaks: Leaks
) -> None:
    """get_subscription of an id Monite does not know is MoniteNotFound, with no retry."""
    error = await expect(
        MoniteNotFound, client.get_subscription("00000000-0000-4000-8000-000000000001"), leaks
    )
    assert 404 == error.status
    assert 1 == monite.request_count("get")


async def test_malformed_regenerate_answer_may_have_applied(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock
) -> None:
    """A regenerate answer cut short was applied: a retryable error that may have applied."""
    sub_id = monite.seed(url="https://hooks.example.com/a")
    monite.faults.malformed_json = 1
    with pytest.raises(MoniteProtocolError) as caught:
        await client.regenerate_secret(sub_id)
    assert (True, True) == (caught.value.retryable, caught.value.may_have_applied)
    assert 1 == monite.regenerate_count(sub_id)


async def test_regenerate_answer_without_secret_is_retryable(
    monite_settings: MoniteSettings, clock: FakeClock
) -> None:
    """A regenerate answer missing its secret is a protocol error the caller may retry."""
    answer = {"id": "a", "url": "https://x", "secret": ""}
    async with answering(lambda request: httpx.Response(200, json=answer)) as http:
        client = MoniteClient(http, monite_settings, clock=clock, rng=random.Random(7))
        with pytest.raises(MoniteProtocolError) as caught:
            await client.regenerate_secret("a")
    assert (
        "Monite regenerate_secret: the response has no secret",
        True,
        True,
        1,
    ) == (
        str(caught.value),
        caught.value.retryable,
        caught.value.may_have_applied,
        client.requests["regenerate_secret", 200],
    )
