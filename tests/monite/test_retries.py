"""MoniteClient retries: Retry-After, exhaustion, hangs, bad bodies, and Monite's request ids."""

from __future__ import annotations

import random
from datetime import timedelta

import httpx
import pytest

from rotator.config import MoniteSettings
from rotator.errors import (
    MoniteNotFound,
    MoniteUnavailable,
)
from rotator.monite import MoniteClient
from rotator.sandbox.monite import MoniteEmulator
from rotator.secret import Secret
from tests.conftest import capture_audit
from tests.monite.helpers import (
    UNKNOWN_ID,
    FakeClock,
    Leaks,
    answering,
    expect,
    make_client,
)


async def test_429_waits_for_retry_after(
    monite_credentials: tuple[str, str],
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
) -> None:
    """Past the gateway's rate limit, the 429 is retried after exactly its Retry-After."""
    clock = FakeClock(real_sleep=True)
    with MoniteEmulator(rate_limit=2, burst=3) as limited:
        limited.add_client(*monite_credentials)
        limited.seed(url="https://hooks.example.com/a")
        client = make_client(monite_http, monite_settings, clock, base_url=limited.base_url)
        for _ in range(3):
            assert 1 == len(await client.list_subscriptions())
        assert 1 == client.requests["list", 429]
        assert 3 == client.requests["list", 200]
        assert [1.0] == clock.sleeps
        await client.aclose()


async def test_503_carries_its_retry_after_to_the_caller(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock, leaks: Leaks
) -> None:
    """A regenerate's 503 is not retried here; its Retry-After reaches the protocol's retry."""
    sub_id = monite.seed(url="https://hooks.example.com/a")
    monite.faults.error_status = 503
    monite.faults.retry_after = 7
    monite.faults.fail_regenerate = 1
    error = await expect(MoniteUnavailable, client.regenerate_secret(sub_id), leaks)
    assert (503, 7.0, True) == (error.status, error.retry_after, error.may_have_applied)
    assert [] == clock.sleeps


async def test_retries_exhausted_raise_unavailable(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock, leaks: Leaks
) -> None:
    """A Monite that keeps failing costs 1 + max_retries attempts, then MoniteUnavailable."""
    monite.faults.error_rate = 1.0
    monite.faults.error_status = 502
    error = await expect(MoniteUnavailable, client.list_subscriptions(), leaks)
    assert 502 == error.status
    assert 4 == client.requests["list", 502]
    assert 4 == monite.request_count("list")
    assert 3 == len(clock.sleeps)
    assert "4 attempts" in str(error)


async def test_hang_times_out_and_retries(
    monite: MoniteEmulator,
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    clock: FakeClock,
) -> None:
    """A request Monite never answers times out after monite.timeout and is retried."""
    monite.seed(url="https://hooks.example.com/a")
    short = monite_settings.model_copy(update={"timeout": timedelta(seconds=0.2)})  # real time
    client = MoniteClient(monite_http, short, clock=clock, rng=random.Random(7))
    monite.faults.hang = 30.0
    clock.on_sleep = lambda: setattr(monite.faults, "hang", 0.0)
    assert 1 == len(await client.list_subscriptions())
    assert 1 == client.requests["list", 0]
    assert 1 == client.requests["list", 200]
    assert 1 == len(clock.sleeps)
    await client.aclose()


async def test_malformed_json_is_retried(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock
) -> None:
    """A 200 whose body is not JSON is retried like a transient failure."""
    monite.seed(url="https://hooks.example.com/a")
    monite.faults.malformed_json = 1
    assert 1 == len(await client.list_subscriptions())
    assert 2 == client.requests["list", 200]
    assert 1 == len(clock.sleeps)


async def test_failed_calls_name_monites_request_id(
    monite: MoniteEmulator, client: MoniteClient, leaks: Leaks
) -> None:
    """A refused call's message carries the x-request-id Monite sent with the refusal."""
    error = await expect(MoniteNotFound, client.regenerate_secret(UNKNOWN_ID), leaks)
    request_id = monite.request_ids("regenerate_secret", 404)[-1]
    assert (
        f"Monite regenerate_secret: HTTP 404: Webhook subscription not found "
        f"(request_id={request_id})"
    ) == str(error)


async def test_retries_log_each_request_id_and_the_error_names_the_last(
    monite: MoniteEmulator, client: MoniteClient, leaks: Leaks
) -> None:
    """Every monite.retry event holds its answer's request_id; the final error the last one."""
    monite.faults.error_rate = 1.0
    monite.faults.error_status = 502
    with capture_audit() as logs:
        error = await expect(MoniteUnavailable, client.list_subscriptions(), leaks)
    ids = monite.request_ids("list", 502)
    retries = [e for e in logs if e["event"] == "monite.retry"]
    assert ids[:3] == [e["request_id"] for e in retries]
    assert str(error).endswith(f"(request_id={ids[3]}; gave up after 4 attempts)")


@pytest.mark.parametrize(
    ("request_id", "shown"),
    [
        ("req-7f3c.01:a_B", "req-7f3c.01:a_B"),
        ("", None),
        ("two words", None),
        ("x" * 129, None),
        ("client-secret-value", None),
        ("tok-abc", None),
        ("echoed-in-body", None),
    ],
)
async def test_request_id_is_shown_only_when_safe(
    monite_settings: MoniteSettings, clock: FakeClock, request_id: str, shown: str | None
) -> None:
    """An x-request-id of an odd shape, holding a credential or echoed by the body is left out."""

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            404,
            json={"error": {"message": "gone", "echo": "echoed-in-body"}},
            headers={"x-request-id": request_id},
        )

    settings = monite_settings.model_copy(
        update={"client_secret": Secret("client-secret-value"), "max_retries": 0}
    )
    async with answering(refuse) as http:
        client = MoniteClient(http, settings, clock=clock, rng=random.Random(7))
        with pytest.raises(MoniteNotFound) as caught:
            await client.get_subscription(UNKNOWN_ID)
    suffix = "" if shown is None else f" (request_id={shown})"
    assert f"Monite get: HTTP 404: gone{suffix}" == str(caught.value)
