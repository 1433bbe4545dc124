"""A Monite that misbehaves: bodies we cannot parse, odd statuses and headers, reshaped answers.

Client tests answer from `httpx.MockTransport` (nothing leaves the process);
engine tests run the real Engine against the emulators on loopback, with a
transport that lets Monite apply a regenerate and then reshapes its answer.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rotator.config import MoniteSettings, RotationSettings, VaultSettings
from rotator.engine import CycleReport, Engine
from rotator.errors import (
    MoniteAuthError,
    MoniteError,
    MoniteProtocolError,
    MoniteRequestError,
    MoniteUnavailable,
)
from rotator.metrics import Metrics
from rotator.monite import MAX_SECRET_BYTES, MoniteClient
from rotator.policy import Force, Policy
from rotator.quarantine import QUARANTINE_AFTER
from rotator.ratelimit import RateLimiter
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from rotator.secret import Secret
from rotator.vault import VaultStore
from tests.clocks import FakeClock
from tests.conftest import capture_audit

PREFIX = "monite/webhooks"
SUB_ID = "6f1c1f8e-0000-4000-8000-00000000abcd"
NESTED = b"[" * 100_000 + b"]" * 100_000
CLAIM_TTL = timedelta(seconds=30)

Handler = Callable[[httpx.Request], httpx.Response]


def answer(handler: Handler) -> Handler:
    """A token for /auth/token, `handler` for everything else."""

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/token"):
            return httpx.Response(
                200, json={"access_token": "tok", "expires_in": 86400, "token_type": "Bearer"}
            )
        return handler(request)

    return route


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings() -> MoniteSettings:
    return MoniteSettings(
        base_url="http://127.0.0.1:9/v1",
        client_id="client-hostile",
        client_secret=Secret("client-secret-hostile-0123456789"),
        timeout=timedelta(seconds=2),
        max_retries=3,
    )


@pytest.fixture
async def mocked(
    settings: MoniteSettings, clock: FakeClock
) -> AsyncIterator[Callable[..., MoniteClient]]:
    opened: list[httpx.AsyncClient] = []

    def factory(handler: Handler, *, limiter: RateLimiter | None = None) -> MoniteClient:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        opened.append(http)
        return MoniteClient(http, settings, clock=clock, rng=random.Random(7), limiter=limiter)

    yield factory
    for http in opened:
        await http.aclose()


# -- bodies we cannot parse ------------------------------------------------------------


async def test_deeply_nested_list_body_is_a_protocol_error(
    mocked: Callable[..., MoniteClient],
) -> None:
    """JSON nested 100,000 deep on a listing is a MoniteProtocolError, not a RecursionError."""
    client = mocked(answer(lambda request: httpx.Response(200, content=NESTED)))
    with pytest.raises(MoniteError) as caught:
        await client.list_subscriptions()
    assert "MoniteProtocolError" == type(caught.value).__name__
    assert 4 == client.requests["list", 200]  # retried like any unreadable body


async def test_deeply_nested_regenerate_body_may_have_applied(
    mocked: Callable[..., MoniteClient],
) -> None:
    """A 200 regenerate answer nested too deeply to parse may have applied, and says so."""
    client = mocked(answer(lambda request: httpx.Response(200, content=NESTED)))
    with pytest.raises(MoniteError) as caught:
        await client.regenerate_secret(SUB_ID)
    assert (MoniteProtocolError, True) == (type(caught.value), caught.value.may_have_applied)


async def test_deeply_nested_error_body_keeps_the_status(
    mocked: Callable[..., MoniteClient],
) -> None:
    """A 503 whose error body is nested too deeply is still a 503 MoniteUnavailable."""
    client = mocked(answer(lambda request: httpx.Response(503, content=NESTED)))
    with pytest.raises(MoniteError) as caught:
        await client.regenerate_secret(SUB_ID)
    assert (MoniteUnavailable, 503) == (type(caught.value), caught.value.status)


# -- RateLimit-Reset ---------------------------------------------------------------------


async def test_rate_limit_reset_timestamp_pauses_until_then(
    mocked: Callable[..., MoniteClient], clock: FakeClock
) -> None:
    """`RateLimit-Reset` as Monite documents it (a Unix timestamp 3 s ahead) pauses 3 s, not 60."""

    def page(request: httpx.Request) -> httpx.Response:
        reset = int(clock.now().timestamp()) + 3
        headers = {"RateLimit-Remaining": "0", "RateLimit-Reset": str(reset)}
        return httpx.Response(
            200, json={"data": [], "next_pagination_token": None}, headers=headers
        )

    client = mocked(answer(page), limiter=RateLimiter(100.0, burst=10, clock=clock))
    await client.list_subscriptions()  # the token request, then the page that says "0 left"
    before = clock.monotonic()
    await client.list_subscriptions()
    assert 3.0 == clock.monotonic() - before


# -- statuses and shapes -------------------------------------------------------------------


async def test_non_string_pagination_token_is_a_protocol_error(
    mocked: Callable[..., MoniteClient],
) -> None:
    """A numeric next_pagination_token does not silently end the listing."""
    client = mocked(
        answer(lambda request: httpx.Response(200, json={"data": [], "next_pagination_token": 7}))
    )
    with pytest.raises(MoniteError) as caught:
        await client.list_subscriptions()
    assert (
        MoniteProtocolError,
        "Monite list: next_pagination_token is a number, not a string",
    ) == (type(caught.value), str(caught.value))


async def test_token_answered_400_keeps_the_credentials_hint(
    mocked: Callable[..., MoniteClient],
) -> None:
    """A 400 on the token request names the credentials to check and keeps Monite's message."""
    client = mocked(
        lambda request: httpx.Response(
            400, json={"error": {"message": "Invalid client credentials"}}
        )
    )
    with pytest.raises(MoniteError) as caught:
        await client.check()
    assert (
        MoniteAuthError,
        "Monite refused the token request (HTTP 400: Invalid client credentials); "
        "check monite.client_id and monite.client_secret",
    ) == (type(caught.value), str(caught.value))


@pytest.mark.parametrize("status", [408, 409])
async def test_regenerate_408_and_409_are_retryable_and_not_applied(
    mocked: Callable[..., MoniteClient], status: int
) -> None:
    """408 and 409 on regenerate are MoniteUnavailable: retryable, surely not applied."""
    client = mocked(
        answer(lambda request: httpx.Response(status, json={"error": {"message": "busy"}}))
    )
    with pytest.raises(MoniteError) as caught:
        await client.regenerate_secret(SUB_ID)
    error = caught.value
    assert (MoniteUnavailable, True, False) == (
        type(error),
        error.retryable,
        error.may_have_applied,
    )


async def test_html_404_on_list_points_at_the_base_url(
    mocked: Callable[..., MoniteClient],
) -> None:
    """A 404 HTML page for the listing says to check monite.base_url."""
    client = mocked(
        answer(
            lambda request: httpx.Response(
                404,
                content=b"<html><body>Not Found</body></html>",
                headers={"content-type": "text/html"},
            )
        )
    )
    with pytest.raises(MoniteError) as caught:
        await client.list_subscriptions()
    assert (
        MoniteRequestError,
        "Monite list: HTTP 404 with a body that is not Monite's JSON; check monite.base_url "
        "(for example https://api.sandbox.monite.com/v1)",
    ) == (type(caught.value), str(caught.value))


async def test_oversized_secret_is_a_protocol_error_without_the_value(
    mocked: Callable[..., MoniteClient],
) -> None:
    """A regenerate answer with a 1 MB secret is refused, and the message holds none of it."""
    huge = "w" * (1024 * 1024)
    body = {"id": SUB_ID, "url": "https://hooks.example.com/a", "status": "enabled"}
    client = mocked(answer(lambda request: httpx.Response(200, json={**body, "secret": huge})))
    with pytest.raises(MoniteError) as caught:
        await client.regenerate_secret(SUB_ID)
    assert (
        MoniteProtocolError,
        True,
        f"Monite regenerate_secret: the response's secret is longer than {MAX_SECRET_BYTES} bytes",
    ) == (type(caught.value), caught.value.may_have_applied, str(caught.value))


# -- reshaped regenerate answers: quarantine ------------------------------------------------


def _reshape(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    if kind == "no id":
        return {k: v for k, v in body.items() if k != "id"}
    if kind == "secret not a string":
        return {**body, "secret": {"value": "x"}}
    return {**body, "secret": "s" * (1024 * 1024)}  # a 1 MB secret


class Reshaping(httpx.AsyncHTTPTransport):
    """Real HTTP to the emulator (which applies each regenerate), then a reshaped answer."""

    def __init__(self, kind: str | None) -> None:
        super().__init__()
        self.kind = kind

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if self.kind is None or response.status_code != 200:
            return response
        if not request.url.path.endswith("/regenerate_secret"):
            return response
        body = json.loads(await response.aread())
        await response.aclose()
        return httpx.Response(200, json=_reshape(self.kind, body))


@pytest.fixture
async def reshaped_engine(
    monite_settings: MoniteSettings, vault_settings: VaultSettings, vault: VaultEmulator
) -> AsyncIterator[Callable[..., Engine]]:
    opened: list[tuple[httpx.AsyncClient, VaultStore]] = []

    def factory(kind: str | None, *, max_retries: int = 0) -> Engine:
        http = httpx.AsyncClient(transport=Reshaping(kind))
        store = VaultStore(vault_settings, clock=vault.now)
        opened.append((http, store))
        settings = monite_settings.model_copy(update={"max_retries": max_retries})
        return Engine(
            monite=MoniteClient(http, settings),
            store=store,
            policy=Policy(max_age=timedelta(days=30)),
            rotation=RotationSettings(claim_ttl=CLAIM_TTL, concurrency=2),
            owner="hostile-test",
            max_retries=max_retries,
        )

    yield factory
    for http, store in opened:
        await http.aclose()
        store.close()


def _kinds(report: CycleReport) -> list[tuple[str, str]]:
    return [(o.kind, o.reason) for o in report.outcomes]


@pytest.mark.parametrize("status", [408, 409])
async def test_rotation_retries_a_regenerate_answered_408_or_409(
    monite: MoniteEmulator, reshaped_engine: Callable[..., Engine], status: int
) -> None:
    """A regenerate Monite answers 408 or 409 once is tried again in the same rotation."""
    sid = monite.seed()
    monite.faults.error_status = status
    monite.faults.fail_regenerate = 1
    report = await reshaped_engine(None, max_retries=3).run_cycle()
    assert ([("rotated", "unmanaged")], 1) == (_kinds(report), monite.regenerate_count(sid))


@pytest.mark.emulator_only("advances virtual time past 30s claim fences")
@pytest.mark.parametrize("kind", ["no id", "secret not a string", "1 MB secret"])
async def test_reshaped_regenerate_answers_quarantine_the_subscription(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    reshaped_engine: Callable[..., Engine],
    kind: str,
) -> None:
    """After 3 unreadable regenerate answers a subscription is left alone: alerted, counted, kept.

    Each cycle runs after the last claim expired; the fourth regenerates nothing,
    skips the subscription as `quarantined`, leaves its claim in Vault and
    schedules no claim check for it. Forcing its id tries it once more.
    """
    sid = monite.seed()
    engine = reshaped_engine(kind)
    reports = []
    with capture_audit() as logged:
        for _ in range(QUARANTINE_AFTER + 1):
            reports.append(await engine.run_cycle())
            vault.advance_time(CLAIM_TTL.total_seconds() + 5)
    alerts = [
        (e["log_level"], e["stage"], e["protocol_failures"])
        for e in logged
        if e["event"] == "rotation.failed" and e.get("reason") == "quarantined"
    ]
    metrics = Metrics()
    metrics.observe(reports[-1])
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    [gauge] = families["rotator_quarantined_subscriptions"].samples
    found = vault.kv_read("secret", f"{PREFIX}/{sid}")
    assert found is not None
    assert [("failed", "monite_error")] == _kinds(reports[0])
    assert [("skipped", "quarantined")] == _kinds(reports[-1])
    assert QUARANTINE_AFTER == monite.regenerate_count(sid)
    assert [("critical", "regenerate", QUARANTINE_AFTER)] == alerts
    assert (1.0, [sid]) == (gauge.value, reports[-1].quarantined)
    assert ("rotating", None) == (found[0]["state"], reports[-1].next_check_in)
    forced = await engine.run_cycle(Force(ids=frozenset({sid})))
    assert [("failed", "monite_error")] == _kinds(forced)
    assert QUARANTINE_AFTER + 1 == monite.regenerate_count(sid)


@pytest.mark.emulator_only("advances virtual time past 30s claim fences")
async def test_quarantine_lifts_when_another_process_rotates_the_subscription(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    reshaped_engine: Callable[..., Engine],
) -> None:
    """A newer committed record (another replica, or `rotate --force` elsewhere) ends it."""
    sid = monite.seed()
    engine = reshaped_engine("no id")
    for _ in range(QUARANTINE_AFTER):
        await engine.run_cycle()
        vault.advance_time(CLAIM_TTL.total_seconds() + 5)
    assert [sid] == sorted(engine.quarantined)
    # Another process rotates it and commits (here written directly, as it would be).
    vault.kv_write(
        "secret",
        f"{PREFIX}/{sid}",
        {
            "secret": monite.current_secret(sid),
            "state": "active",
            "rotated_at": "2026-01-01T00:00:00Z",
        },
    )
    report = await engine.run_cycle()
    assert ([], []) == (report.quarantined, sorted(engine.quarantined))
