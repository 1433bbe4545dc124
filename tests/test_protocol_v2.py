"""The six ways protocol version 1 lost a secret, each replayed over HTTP against the emulators.

Each test drives the real Engine, MoniteClient and VaultStore. Time moves on
Vault's clock (`VaultEmulator.advance_time`), replicas' skew comes from the
injected clock, and a late regenerate is a straggler the Monite emulator
holds until the test releases it. The property every test ends on is rule
zero: a record that says `active` holds Monite's current secret. The tests
that need no virtual time run against OpenBao too (the `vault` fixture).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from rotator.clock import SystemClock
from rotator.config import MoniteSettings, RotationSettings, VaultSettings
from rotator.engine import CycleReport, Engine
from rotator.model import parse_time
from rotator.monite import MoniteClient
from rotator.policy import Force, Policy
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from rotator.vault import VaultStore
from tests.conftest import capture_audit
from tests.records import put_record

PREFIX = "monite/webhooks"
CLAIM_TTL = timedelta(seconds=30)
YEAR = timedelta(days=365)


class SkewedClock(SystemClock):
    """The real clock, with a wall clock off by `skew` (a host with a wrong time)."""

    def __init__(self, skew: timedelta) -> None:
        self.skew = skew

    def now(self) -> datetime:
        return super().now() + self.skew


class Scripted(httpx.AsyncHTTPTransport):
    """A real HTTP transport that runs `before(n)` ahead of the n-th regenerate request."""

    def __init__(self, before: Callable[[int], None]) -> None:
        super().__init__()
        self.before = before
        self.regenerates = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/regenerate_secret"):
            self.regenerates += 1
            self.before(self.regenerates)
        return await super().handle_async_request(request)


EngineFactory = Callable[..., Engine]


@pytest.fixture
async def replica(
    monite_settings: MoniteSettings, vault_settings: VaultSettings, vault: VaultEmulator
) -> AsyncIterator[EngineFactory]:
    """Builds replicas: each its own HTTP client, Vault store, clock and owner name."""
    opened: list[tuple[httpx.AsyncClient, VaultStore]] = []

    def factory(
        owner: str = "replica-a",
        *,
        skew: timedelta = timedelta(0),
        max_retries: int = 0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_claim_ttl: timedelta = timedelta(hours=1),
    ) -> Engine:
        http = httpx.AsyncClient(transport=transport)
        # The store carries Vault's time forward on the emulator's clock, so
        # `advance_time` reads as time passing (it would look like a jump otherwise).
        store = VaultStore(vault_settings, clock=vault.now)
        opened.append((http, store))
        clock = SkewedClock(skew)
        settings = monite_settings.model_copy(
            update={"timeout": timedelta(seconds=0.5), "max_retries": max_retries}
        )
        return Engine(
            monite=MoniteClient(http, settings, clock=clock),
            store=store,
            policy=Policy(max_age=timedelta(days=30)),
            rotation=RotationSettings(
                claim_ttl=CLAIM_TTL, max_claim_ttl=max_claim_ttl, concurrency=2
            ),
            owner=owner,
            clock=clock,
            max_retries=max_retries,
        )

    yield factory
    for http, store in opened:
        await http.aclose()
        store.close()


@pytest.fixture
def straggling(monite: MoniteEmulator) -> Iterator[MoniteEmulator]:
    """The Monite emulator; stragglers still held when the test ends are dropped."""
    yield monite
    monite.faults.straggle_regenerate = 0


def record(vault: VaultEmulator, sid: str) -> dict[str, Any]:
    found = vault.kv_read("secret", f"{PREFIX}/{sid}")
    assert found is not None
    return found[0]


def kinds(report: CycleReport) -> list[tuple[str, str]]:
    return [(o.kind, o.reason) for o in report.outcomes]


def assert_rule_zero(monite: MoniteEmulator, vault: VaultEmulator, sid: str) -> None:
    """A record that says `active` holds Monite's current secret."""
    data = record(vault, sid)
    if data["state"] == "active":
        assert monite.current_secret(sid) == data["secret"]


def past_fence(vault: VaultEmulator, sid: str) -> None:
    """Move Vault's clock past the record's claim or settling horizon (and the margin)."""
    found = vault.kv_read_full("secret", f"{PREFIX}/{sid}")
    assert found is not None
    data, _version, created_time = found
    created = parse_time(created_time)
    assert created is not None
    if data["claim_ttl_seconds"] is None:
        return  # no fence to wait for (`stale`, or `active`)
    ends = created + timedelta(seconds=float(data["claim_ttl_seconds"]))
    vault.advance_time((ends - datetime.fromtimestamp(vault.now(), UTC)).total_seconds() + 2)


async def converge(
    engine: Engine, monite: MoniteEmulator, vault: VaultEmulator, sid: str
) -> list[tuple[str, str]]:
    """Move Vault's clock past each fence and run a cycle, until the record is active; bounded."""
    seen: list[tuple[str, str]] = []
    for _ in range(6):
        past_fence(vault, sid)
        report = await engine.run_cycle()
        seen.extend(kinds(report))
        assert_rule_zero(monite, vault, sid)
        if record(vault, sid)["state"] == "active":
            return seen
    raise AssertionError(f"no convergence after 6 cycles: {seen}")


@pytest.mark.emulator_only("advances virtual time past 30s claim fences")
async def test_1_skewed_replica_never_takes_over_a_live_claim(
    straggling: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    replica: EngineFactory,
) -> None:
    """A replica whose clock runs a year ahead sees a live claim as live: no regenerate under it."""
    monite = straggling
    sid = monite.seed()
    await put_record(vault_settings, sid, monite.current_secret(sid), timedelta(days=40))
    a, b = replica("replica-a"), replica("replica-b", skew=YEAR)
    monite.faults.straggle_regenerate = 1
    first = await a.run_cycle()  # A's regenerate is in flight at Monite, its claim live
    assert [("failed", "monite_error")] == kinds(first)
    assert "rotating" == record(vault, sid)["state"]

    taken = await b.run_cycle()
    assert [("skipped", "claimed")] == kinds(taken)
    assert 0 == monite.regenerate_count(sid)

    assert 1 == monite.release_stragglers()  # A's regenerate lands after all
    seen = await converge(b, monite, vault, sid)
    assert ("recovered", "claim_expired") == seen[0]
    assert monite.current_secret(sid) == record(vault, sid)["secret"]
    # The skewed replica wrote times on Vault's clock, not its own.
    rotated_at = parse_time(record(vault, sid)["rotated_at"])
    assert rotated_at is not None
    assert abs(rotated_at - datetime.fromtimestamp(vault.now(), UTC)) < timedelta(hours=1)


@pytest.mark.emulator_only("advances virtual time past 30s claim fences")
async def test_2_regenerate_applied_late_leaves_the_record_settling_not_active(
    straggling: MoniteEmulator, vault: VaultEmulator, replica: EngineFactory
) -> None:
    """The only attempt times out, the recovery commits, then the late regenerate lands."""
    monite = straggling
    sid = monite.seed()
    engine = replica(max_retries=0)
    monite.faults.straggle_regenerate = 1
    with capture_audit() as captured:
        first = await engine.run_cycle()
        assert [("failed", "monite_error")] == kinds(first)
        past_fence(vault, sid)
        recovery = await engine.run_cycle()
        assert [("recovered", "claim_expired")] == kinds(recovery)
        assert "settling" == record(vault, sid)["state"]

        assert 1 == monite.release_stragglers()
        assert monite.current_secret(sid) != record(vault, sid)["secret"]
        assert "settling" == record(vault, sid)["state"]  # never `active` over a dead secret
        assert [("skipped", "settling")] == kinds(await engine.run_cycle())

        past_fence(vault, sid)
        settled = await engine.run_cycle()
    assert [("recovered", "settled")] == kinds(settled)
    assert "active" == record(vault, sid)["state"]
    assert monite.current_secret(sid) == record(vault, sid)["secret"]
    assert ["rotation.settling"] == [e["event"] for e in captured if e["event"].endswith("ling")]


@pytest.mark.emulator_only("advances virtual time past 30s claim fences")
async def test_3_refused_recovery_marks_the_record_stale(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    replica: EngineFactory,
) -> None:
    """A recovery refused by Monite (429, Retry-After past the claim) writes `stale`."""
    sid = monite.seed()
    await put_record(vault_settings, sid, monite.current_secret(sid), timedelta(days=1))
    monite.faults.drop_after_regenerate = 1  # applied at Monite, answer lost
    monite.faults.error_status = 429
    monite.faults.retry_after = 3600
    # Attempt 1 lands and its answer is lost; attempt 2 (the retry) and attempt 3
    # (the recovery) are refused with a Retry-After longer than the claim.
    refusals = {1: 0, 2: 1, 3: 1}

    def refuse_retry(n: int) -> None:
        monite.faults.fail_regenerate = refusals.get(n, 0)

    engine = replica(max_retries=2, transport=Scripted(refuse_retry))
    forced = await engine.run_cycle(Force(ids=frozenset({sid})))
    assert [("failed", "monite_error")] == kinds(forced)
    assert "rotating" == record(vault, sid)["state"]  # the claim stays: the secret may be dead
    assert monite.current_secret(sid) != record(vault, sid)["secret"]

    past_fence(vault, sid)
    refused = await engine.run_cycle()
    assert [("failed", "monite_refused")] == kinds(refused)
    assert "stale" == record(vault, sid)["state"]
    assert_rule_zero(monite, vault, sid)

    seen = await converge(engine, monite, vault, sid)
    assert ("recovered", "stale") == seen[0]
    assert monite.current_secret(sid) == record(vault, sid)["secret"]


@pytest.mark.emulator_only("advances virtual time past 30s claim fences")
async def test_4_not_found_after_a_possibly_applied_attempt_keeps_the_claim(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    replica: EngineFactory,
) -> None:
    """Attempt 1 applied and dropped, attempt 2 a gateway's 404: not "gone", the claim stays."""
    sid = monite.seed()
    await put_record(vault_settings, sid, monite.current_secret(sid), timedelta(days=40))

    def not_found_on_retry(n: int) -> None:
        if n == 1:
            monite.faults.drop_after_regenerate = 1
        elif n == 2:
            monite.faults.regenerate_not_found = 1

    engine = replica(max_retries=1, transport=Scripted(not_found_on_retry))
    with capture_audit() as captured:
        report = await engine.run_cycle()
    assert [("failed", "not_found_after_attempt")] == kinds(report)
    assert [] == [e for e in captured if e.get("reason") == "gone"]
    assert "rotating" == record(vault, sid)["state"]
    assert 1 == monite.regenerate_count(sid)

    seen = await converge(engine, monite, vault, sid)
    assert ("recovered", "claim_expired") == seen[0]
    assert monite.current_secret(sid) == record(vault, sid)["secret"]


async def test_4_first_attempt_not_found_is_confirmed_before_counting_as_gone(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    replica: EngineFactory,
) -> None:
    """A 404 on a first attempt for a subscription that exists is a refusal, not "gone"."""
    sid = monite.seed()
    await put_record(vault_settings, sid, monite.current_secret(sid), timedelta(days=40))
    before = record(vault, sid)
    monite.faults.regenerate_not_found = 1
    report = await replica().run_cycle()
    assert [("failed", "monite_refused")] == kinds(report)
    assert 1 == monite.request_count("get")
    assert before == record(vault, sid)  # the exact previous record, restored


async def test_5_record_deleted_mid_rotation_is_written_again(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    replica: EngineFactory,
) -> None:
    """Someone deletes the record's metadata after the claim: the commit writes it with cas=0."""
    sid = monite.seed()
    await put_record(vault_settings, sid, monite.current_secret(sid), timedelta(days=40))

    def delete_record(n: int) -> None:
        assert vault.kv_delete_metadata("secret", f"{PREFIX}/{sid}")

    engine = replica(transport=Scripted(delete_record))
    report = await engine.run_cycle()
    assert [("rotated", "max_age_exceeded")] == kinds(report)
    assert "active" == record(vault, sid)["state"]
    assert monite.current_secret(sid) == record(vault, sid)["secret"]
    assert 1 == vault.kv_versions("secret", f"{PREFIX}/{sid}")[-1]


@pytest.mark.emulator_only("advances virtual time past a 5 minute claim fence")
async def test_6_a_year_long_claim_fences_only_max_claim_ttl(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    replica: EngineFactory,
) -> None:
    """A v1 claim from a host a year ahead fences for max_claim_ttl; a malformed one not at all."""
    year_claim, broken = monite.seed(), monite.seed()
    for sid, expires in ((year_claim, datetime.now(UTC) + YEAR), (broken, None)):
        await put_record(
            vault_settings,
            sid,
            monite.current_secret(sid),
            timedelta(days=1),
            state="rotating",
            claimed_by="v1-host-a-year-ahead:1",
            claim_expires_at=expires,
        )
    engine = replica(max_claim_ttl=timedelta(minutes=5))
    first = {o.subscription_id: (o.kind, o.reason) for o in (await engine.run_cycle()).outcomes}
    assert ("skipped", "claimed") == first[year_claim]
    assert ("recovered", "claim_expired") == first[broken]

    vault.advance_time(timedelta(minutes=5, seconds=2).total_seconds())
    second = {o.subscription_id: (o.kind, o.reason) for o in (await engine.run_cycle()).outcomes}
    assert ("recovered", "claim_expired") == second[year_claim]
    assert ("recovered", "settled") == second[broken]
    assert "settling" == record(vault, year_claim)["state"]  # took over a claim: settle
    for sid in (year_claim, broken):
        assert monite.current_secret(sid) == record(vault, sid)["secret"]
