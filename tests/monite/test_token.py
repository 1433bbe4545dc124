"""MoniteClient's access token: cached, shared, refreshed before expiry and after a 401, revoked."""

from __future__ import annotations

import asyncio

import httpx

from rotator.config import MoniteSettings
from rotator.errors import (
    MoniteAuthError,
)
from rotator.monite import MoniteClient
from rotator.sandbox.monite import MoniteEmulator
from rotator.secret import Secret
from tests.monite.helpers import (
    FakeClock,
    Leaks,
    expect,
    make_client,
)


async def test_token_is_cached_across_requests(
    monite: MoniteEmulator, client: MoniteClient
) -> None:
    """Many requests share one token fetch."""
    sub_id = monite.seed(url="https://hooks.example.com/a")
    await client.list_subscriptions()
    await client.get_subscription(sub_id)
    await client.regenerate_secret(sub_id)
    await client.list_subscriptions()
    assert 1 == monite.request_count("token")


async def test_token_refreshed_after_401(monite: MoniteEmulator, client: MoniteClient) -> None:
    """A token Monite stopped accepting costs one 401, one new token and then succeeds."""
    monite.seed(url="https://hooks.example.com/a")
    await client.list_subscriptions()
    monite.expire_tokens()
    assert 1 == len(await client.list_subscriptions())
    assert 2 == monite.request_count("token")
    assert 1 == client.requests["list", 401]
    assert 2 == client.requests["list", 200]


async def test_token_refreshed_before_it_expires(
    monite: MoniteEmulator, client: MoniteClient, clock: FakeClock
) -> None:
    """Close to its expiry the token is replaced without waiting for a 401."""
    await client.list_subscriptions()
    token = client.access_token
    assert token is not None
    clock.advance(token.refresh_at - clock.monotonic() + 1)
    await client.list_subscriptions()
    assert 2 == monite.request_count("token")
    assert 0 == client.requests["list", 401]


async def test_bad_credentials_raise_auth_error(
    monite: MoniteEmulator,
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    clock: FakeClock,
    leaks: Leaks,
) -> None:
    """A refused client secret is MoniteAuthError naming the keys to check, not their values."""
    wrong = Secret("definitely-not-the-secret")
    leaks.extra_values.add(wrong.reveal())
    client = make_client(monite_http, monite_settings, clock, client_secret=wrong)
    error = await expect(MoniteAuthError, client.list_subscriptions(), leaks)
    assert "client_secret" in str(error)
    assert 0 == monite.request_count("list")


async def test_concurrent_callers_share_one_token_fetch(
    monite: MoniteEmulator, client: MoniteClient
) -> None:
    """Ten calls started together fetch one token between them."""
    monite.seed(url="https://hooks.example.com/a")
    results = await asyncio.gather(*(client.list_subscriptions() for _ in range(10)))
    assert [1] * 10 == [len(r) for r in results]
    assert 1 == monite.request_count("token")


async def test_aclose_revokes_token_and_keeps_http_client_open(
    monite: MoniteEmulator, monite_http: httpx.AsyncClient, client: MoniteClient
) -> None:
    """aclose() revokes the token at Monite and leaves the injected httpx client usable."""
    await client.check()
    await client.aclose()
    assert 1 == monite.request_count("revoke")
    assert False is monite_http.is_closed
    assert "token=none" in repr(client)
