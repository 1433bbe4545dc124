"""The rotation protocol end to end: real MoniteClient and VaultStore over HTTP.

Monite is the emulator; Vault is the emulator and OpenBao (unless a test is emulator_only).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from rotator.clock import Clock, SystemClock
from rotator.config import MoniteSettings, RotationSettings, VaultSettings
from rotator.engine import Engine
from rotator.model import Record
from rotator.monite import MoniteClient
from rotator.policy import Force, Policy
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from rotator.secret import Secret
from rotator.vault import VaultStore
from tests.clocks import FakeClock
from tests.conftest import capture_audit
from tests.fixtures_engine import EngineFactory
from tests.openbao import OpenBaoVault
from tests.records import put_record, wait_for_version

MAX_AGE = timedelta(days=30)
PREFIX = "monite/webhooks"


def vault_secret(vault: VaultEmulator, subscription_id: str) -> str | None:
    found = vault.kv_read("secret", f"{PREFIX}/{subscription_id}")
    if found is None:
        return None
    data, _version = found
    secret = data.get("secret")
    return secret if isinstance(secret, str) else None


def vault_version(vault: VaultEmulator, subscription_id: str) -> int | None:
    found = vault.kv_read("secret", f"{PREFIX}/{subscription_id}")
    return None if found is None else found[1]


def vault_now(vault: VaultEmulator) -> datetime:
    """The Vault emulator's clock now (real time plus what a test advanced it by)."""
    return datetime.fromtimestamp(vault.now(), UTC)


def events(captured: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in captured if e["event"] == name]


async def test_cycle_rotates_exactly_the_due_subscriptions(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    make_engine: EngineFactory,
) -> None:
    """After a cycle every due secret in Vault equals Monite's, and nothing not due was touched."""
    old = monite.seed(object_type="payable")
    fresh = monite.seed(object_type="receivable")
    unmanaged = monite.seed(object_type="counterpart")
    disabled = monite.seed(object_type="payable", status="disabled")
    await put_record(vault_settings, old, monite.current_secret(old), timedelta(days=31))
    await put_record(vault_settings, fresh, monite.current_secret(fresh), timedelta(days=1))
    await put_record(vault_settings, disabled, monite.current_secret(disabled), timedelta(days=90))
    fresh_secret, disabled_secret = monite.current_secret(fresh), monite.current_secret(disabled)

    with capture_audit() as captured:
        report = await make_engine().run_cycle()

    assert report.ok
    for sid in (old, unmanaged):
        assert monite.current_secret(sid) == vault_secret(vault, sid)
        assert 1 == monite.regenerate_count(sid)
    # Seeded at v1, claimed at v2, committed at v3; the unmanaged one starts at v1.
    assert 3 == vault_version(vault, old)
    assert 2 == vault_version(vault, unmanaged)
    assert 0 == monite.regenerate_count(fresh)
    assert 0 == monite.regenerate_count(disabled)
    assert fresh_secret == vault_secret(vault, fresh)
    assert disabled_secret == vault_secret(vault, disabled)
    assert 1 == vault_version(vault, fresh)
    succeeded = {e["subscription_id"]: e for e in events(captured, "rotation.succeeded")}
    assert {old, unmanaged} == set(succeeded)
    assert "max_age_exceeded" == succeeded[old]["reason"]
    assert "unmanaged" == succeeded[unmanaged]["reason"]
    skipped = {e["subscription_id"]: e["reason"] for e in events(captured, "rotation.skipped")}
    assert {fresh: "fresh", disabled: "disabled"} == skipped
    assert 2 == len(events(captured, "rotation.claimed"))
    assert ["cycle.started"] == [e["event"] for e in captured[:1]]
    assert "cycle.finished" == captured[-1]["event"]
    assert {report.run_id} == {e["run_id"] for e in captured}


async def test_second_cycle_changes_nothing(
    monite: MoniteEmulator, vault: VaultEmulator, make_engine: EngineFactory
) -> None:
    """A cycle right after a rotation finds everything fresh and regenerates nothing."""
    ids = [monite.seed() for _ in range(3)]
    engine = make_engine()
    await engine.run_cycle()
    versions = [vault_version(vault, sid) for sid in ids]
    with capture_audit() as captured:
        report = await engine.run_cycle()
    assert 3 == report.count("skipped")
    assert [1, 1, 1] == [monite.regenerate_count(sid) for sid in ids]
    assert versions == [vault_version(vault, sid) for sid in ids]
    assert [] == events(captured, "rotation.claimed")


async def test_forced_rotation_of_one_id(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    make_engine: EngineFactory,
) -> None:
    """rotate --force --id rotates that fresh subscription and no other."""
    target, other = monite.seed(), monite.seed()
    for sid in (target, other):
        await put_record(vault_settings, sid, monite.current_secret(sid), timedelta(hours=1))
    report = await make_engine().run_cycle(Force(ids=frozenset({target})))
    assert 1 == report.count("rotated")
    assert 1 == monite.regenerate_count(target)
    assert 0 == monite.regenerate_count(other)
    assert monite.current_secret(target) == vault_secret(vault, target)
    assert [("rotated", "forced")] == [
        (o.kind, o.reason) for o in report.outcomes if o.subscription_id == target
    ]


async def test_forced_rotation_of_all(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    make_engine: EngineFactory,
) -> None:
    """rotate --force --all rotates every enabled subscription however fresh."""
    ids = [monite.seed() for _ in range(5)]
    for sid in ids:
        await put_record(vault_settings, sid, monite.current_secret(sid), timedelta(minutes=5))
    report = await make_engine().run_cycle(Force(all=True))
    assert 5 == report.count("rotated")
    for sid in ids:
        assert 1 == monite.regenerate_count(sid)
        assert monite.current_secret(sid) == vault_secret(vault, sid)


async def test_live_claim_of_another_rotator_stops_regeneration(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    make_engine: EngineFactory,
) -> None:
    """A live claim held by someone else is never regenerated under, even when forced."""
    sid = monite.seed()
    await put_record(
        vault_settings,
        sid,
        monite.current_secret(sid),
        timedelta(days=60),
        state="rotating",
        claimed_by="other-host:42",
        claim_expires_at=datetime.now(UTC) + timedelta(minutes=2),
    )
    report = await make_engine().run_cycle(Force(ids=frozenset({sid})))
    assert 0 == monite.regenerate_count(sid)
    assert [("skipped", "claimed")] == [(o.kind, o.reason) for o in report.outcomes]
    assert 1 == vault_version(vault, sid)


async def test_claim_race_second_rotator_loses_and_does_not_regenerate(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    make_engine: EngineFactory,
) -> None:
    """Two rotators decide on the same record; the CAS claim lets exactly one regenerate."""
    sid = monite.seed()
    await put_record(vault_settings, sid, monite.current_secret(sid), timedelta(days=40))
    first, second = make_engine(owner="a"), make_engine(owner="b")
    # Both read the same version before either claims.
    plan_a, plan_b = await first.plan(), await second.plan()
    assert ["rotate"] == [d.action for d in plan_a.decisions]
    assert ["rotate"] == [d.action for d in plan_b.decisions]
    outcome_a = await first.rotate(plan_a.decisions[0])
    outcome_b = await second.rotate(plan_b.decisions[0])
    assert ("rotated", "conflict") == (outcome_a.kind, outcome_b.kind)
    assert 1 == monite.regenerate_count(sid)
    assert monite.current_secret(sid) == vault_secret(vault, sid)


async def test_dropped_connection_after_regenerate_applied_converges(
    monite: MoniteEmulator, vault: VaultEmulator, make_engine: EngineFactory
) -> None:
    """Monite applies a regenerate but the answer is lost: the retry's secret lands in Vault."""
    sid = monite.seed()
    monite.faults.drop_after_regenerate = 1
    report = await make_engine().run_cycle()
    assert report.ok
    assert 2 == monite.regenerate_count(sid)
    assert monite.current_secret(sid) == vault_secret(vault, sid)


@pytest.mark.emulator_only("injects write failures (faults.fail_writes) after the claim")
async def test_transient_vault_failure_at_commit_is_retried_in_memory(
    monite: MoniteEmulator, vault: VaultEmulator, make_engine: EngineFactory
) -> None:
    """Vault fails the commit twice; the secret held in memory is committed on a later try."""
    sid = monite.seed()
    monite.faults.latency = 0.3
    clock = FakeClock(start=datetime.now(UTC))  # the commit's retries back off in virtual time

    async def break_commit_after_claim() -> None:
        for _ in range(200):
            if vault.request_count("kv_write") >= 1:
                vault.faults.fail_writes = 2
                return
            await asyncio.sleep(0.005)

    with capture_audit() as captured:
        _, report = await asyncio.gather(
            break_commit_after_claim(), make_engine(clock=clock).run_cycle()
        )
    assert report.ok
    assert 1 == monite.regenerate_count(sid)
    assert monite.current_secret(sid) == vault_secret(vault, sid)
    assert 2 == len(events(captured, "rotation.commit_retry"))


async def test_vault_down_through_commit_is_recovered_after_claim_expiry(
    monite: MoniteEmulator, vault: VaultEmulator, make_engine: EngineFactory
) -> None:
    """Vault sealed past the commit deadline: after the claim expires a new rotation recovers.

    On the emulator in virtual time; on OpenBao, whose clock is real, in real time (the
    suite's one real wait for a claim to expire on a real Vault).
    """
    sid = monite.seed()
    monite.faults.latency = 0.3
    real = isinstance(vault, OpenBaoVault)
    clock: Clock = SystemClock() if real else FakeClock(start=datetime.now(UTC))
    engine = make_engine(
        claim_ttl=timedelta(seconds=4.5), commit_retry_for=timedelta(seconds=0.5), clock=clock
    )

    async def seal_after_claim() -> None:
        if await wait_for_version(vault, sid, 1):
            vault.seal()

    try:
        _, first = await asyncio.gather(seal_after_claim(), engine.run_cycle())
    finally:
        vault.unseal()
    monite.faults.latency = 0.0  # it only held the regenerate open for the seal
    assert [("failed", "commit_failed")] == [(o.kind, o.reason) for o in first.outcomes]
    assert monite.current_secret(sid) != vault_secret(vault, sid)

    # Until the claim expires, the record is fenced.
    fenced = await engine.run_cycle()
    assert [("skipped", "claimed")] == [(o.kind, o.reason) for o in fenced.outcomes]
    assert first.next_claim_expiry is not None
    if isinstance(clock, FakeClock):
        # Past the expiry on Vault's clock, measured from Vault's time now.
        wait = (first.next_claim_expiry - vault_now(vault)).total_seconds() + 0.1
        clock.advance(wait)
        vault.advance_time(wait)
    else:
        wait = (first.next_claim_expiry - datetime.now(UTC)).total_seconds()
        await asyncio.sleep(max(0.0, wait) + 0.1)

    with capture_audit() as captured:
        recovered = await engine.run_cycle()
    assert [("recovered", "claim_expired")] == [(o.kind, o.reason) for o in recovered.outcomes]
    assert monite.current_secret(sid) == vault_secret(vault, sid)
    assert [sid] == [e["subscription_id"] for e in events(captured, "rotation.recovered")]


async def test_vault_unavailable_before_claim_means_no_regenerate(
    monite: MoniteEmulator, vault: VaultEmulator, make_engine: EngineFactory
) -> None:
    """When Vault cannot take the claim, Monite is never asked to regenerate."""
    sid = monite.seed()
    clock = FakeClock(start=datetime.now(UTC))
    engine = make_engine(clock=clock)  # Vault's retries back off in virtual time
    await engine.plan()  # warm the cache, so the cycle's first Vault call is the claim
    vault.seal()
    try:
        report = await engine.run_cycle()
    finally:
        vault.unseal()
    assert [("failed", "vault_error")] == [(o.kind, o.reason) for o in report.outcomes]
    assert 0 == monite.regenerate_count(sid)
    assert [] != clock.sleeps


async def test_monite_unreachable_fails_the_cycle_cleanly(
    monite: MoniteEmulator, make_engine: EngineFactory
) -> None:
    """A listing that keeps failing ends the cycle with an error report, not an exception."""
    monite.seed()
    monite.faults.error_rate = 1.0
    clock = FakeClock(start=datetime.now(UTC))  # the listing's retries back off in virtual time
    report = await make_engine(clock=clock).run_cycle()
    assert report.error is not None
    assert not report.ok
    assert [] == report.outcomes
    assert [] != clock.sleeps


async def test_orphaned_records_are_reported(
    monite: MoniteEmulator, vault_settings: VaultSettings, make_engine: EngineFactory
) -> None:
    """A Vault record whose subscription Monite no longer lists is reported as an orphan."""
    orphan = "6f1c1f8e-0000-4000-8000-000000000001"
    await put_record(vault_settings, orphan, "old-secret-value-1234", timedelta(days=1))
    with capture_audit() as captured:
        report = await make_engine().run_cycle()
    assert [orphan] == report.orphans
    assert [orphan] == [e["subscription_id"] for e in events(captured, "subscription.orphaned")]


async def test_audit_events_carry_fingerprint_not_secret(
    monite: MoniteEmulator, make_engine: EngineFactory
) -> None:
    """rotation.succeeded carries the secret's fingerprint and version, never the secret."""
    sid = monite.seed()
    with capture_audit() as captured:
        await make_engine().run_cycle()
    [event] = events(captured, "rotation.succeeded")
    expected = Secret(monite.current_secret(sid)).fingerprint()
    assert expected == event["secret_fingerprint"]
    assert 2 == event["vault_version"]
    assert monite.current_secret(sid) not in repr(captured)


async def test_steady_state_cycle_reads_nothing_from_vault(
    monite: MoniteEmulator,
    vault_settings: VaultSettings,
    make_engine: EngineFactory,
) -> None:
    """Once the cache is warm, a cycle with nothing due makes no Vault request at all."""
    for _ in range(5):
        sid = monite.seed()
        await put_record(vault_settings, sid, monite.current_secret(sid), timedelta(days=1))
    store = VaultStore(vault_settings)
    engine = make_engine(store=store)
    await engine.run_cycle()  # cold: lists and reads the five records
    before = store.requests.total()  # every request the store sends is counted here
    report = await engine.run_cycle()
    assert 5 == report.count("skipped")
    assert 0 == store.requests.total() - before


async def test_cache_is_read_again_after_cache_refresh(
    monite: MoniteEmulator, vault_settings: VaultSettings, make_engine: EngineFactory
) -> None:
    """With cache_refresh elapsed, the next cycle lists and reads every record again."""
    ids = [monite.seed() for _ in range(3)]
    store = VaultStore(vault_settings)
    engine = make_engine(store=store, cache_refresh=timedelta(milliseconds=1))
    await engine.run_cycle()
    await asyncio.sleep(0.01)
    before_list, before_read = store.requests[("list", "ok")], store.requests[("read", "ok")]
    await engine.run_cycle()
    assert 1 == store.requests[("list", "ok")] - before_list
    assert len(ids) == store.requests[("read", "ok")] - before_read


async def test_stale_cache_is_harmless(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    make_engine: EngineFactory,
) -> None:
    """A record changed behind the cache's back loses the claim, is re-read, then rotated."""
    sid = monite.seed()
    engine = make_engine()
    await engine.run_cycle()
    # Another writer (say, a second replica) moves the record on and makes it old.
    store = VaultStore(vault_settings)
    try:
        current = await store.read(sid)
        aged = Record(
            subscription_id=sid,
            secret=current.secret,
            rotated_at=datetime.now(UTC) - timedelta(days=45),
        )
        await store.write(aged, cas=current.version)
    finally:
        store.close()
    # Our cache still says fresh: nothing happens, and no regenerate is attempted.
    fresh = await engine.run_cycle(Force(ids=frozenset({sid})))
    assert [("conflict", "claimed_elsewhere")] == [(o.kind, o.reason) for o in fresh.outcomes]
    assert 1 == monite.regenerate_count(sid)
    # The conflict marked the record stale: the next cycle reads it and rotates it.
    again = await engine.run_cycle()
    assert [("rotated", "max_age_exceeded")] == [(o.kind, o.reason) for o in again.outcomes]
    assert monite.current_secret(sid) == vault_secret(vault, sid)


async def test_max_rotations_per_cycle_defers_the_freshest(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    make_engine: EngineFactory,
) -> None:
    """With a cap of 2, the two oldest due secrets rotate now and the third waits a cycle."""
    ages = {monite.seed(): timedelta(days=days) for days in (31, 60, 45)}
    for sid, age in ages.items():
        await put_record(vault_settings, sid, monite.current_secret(sid), age)
    engine = make_engine(max_rotations_per_cycle=2)
    first = await engine.run_cycle()
    rotated = {o.subscription_id for o in first.outcomes if o.kind == "rotated"}
    deferred = [o.subscription_id for o in first.outcomes if o.reason == "deferred"]
    newest = min(ages, key=ages.__getitem__)
    assert set(ages) - {newest} == rotated
    assert [newest] == deferred
    second = await engine.run_cycle()
    assert [newest] == [o.subscription_id for o in second.outcomes if o.kind == "rotated"]
    for sid in ages:
        assert monite.current_secret(sid) == vault_secret(vault, sid)


@pytest.mark.emulator_only("injects Vault latency and counts Vault writes to time a straggler")
async def test_regenerate_applied_after_its_retry_is_rotated_again(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    vault_settings: VaultSettings,
) -> None:
    """An attempt Monite applies after its retry leaves the record claimed, then recovered."""
    sid = monite.seed()
    clock = FakeClock(start=datetime.now(UTC))  # the HTTP timeout stays real
    store = VaultStore(vault_settings, clock=clock.monotonic, sleep=clock.sleep)
    engine = Engine(
        monite=MoniteClient(
            monite_http,
            monite_settings.model_copy(update={"timeout": timedelta(seconds=0.4)}),
            clock=clock,
        ),
        store=store,
        policy=Policy(max_age=MAX_AGE),
        rotation=RotationSettings(claim_ttl=timedelta(seconds=2), concurrency=1),
        owner="test-rotator",
        clock=clock,
    )

    async def straggle_once() -> None:
        # The first regenerate stalls past the client timeout; Monite applies it late.
        # Vault's latency holds the claim long enough to switch the stall on after listing.
        vault.faults.latency = 0.2
        for _ in range(400):
            if vault.request_count("kv_write") >= 1:
                monite.faults.hang = 0.7
                vault.faults.latency = 0.0
                break
            await asyncio.sleep(0.005)
        for _ in range(400):
            if monite.request_count("regenerate_secret") >= 1:
                await asyncio.sleep(0.1)
                monite.faults.hang = 0.0
                return
            await asyncio.sleep(0.005)

    try:
        with capture_audit() as captured:
            _, first = await asyncio.gather(straggle_once(), engine.run_cycle())
        assert [("rotated", "unmanaged")] == [(o.kind, o.reason) for o in first.outcomes]
        for _ in range(200):  # until the straggler has landed at Monite
            if monite.regenerate_count(sid) == 2:
                break
            await asyncio.sleep(0.01)
        assert 2 == monite.regenerate_count(sid)
        assert monite.current_secret(sid) != vault_secret(vault, sid)
        found = vault.kv_read("secret", f"{PREFIX}/{sid}")
        assert found is not None
        assert "settling" == found[0]["state"]
        [settling] = events(captured, "rotation.settling")
        assert settling["doubtful_attempt"] is True

        assert first.next_claim_expiry is not None
        wait = (first.next_claim_expiry - vault_now(vault)).total_seconds() + 0.05
        clock.advance(wait)
        vault.advance_time(wait)
        again = await engine.run_cycle()
        assert [("recovered", "settled")] == [(o.kind, o.reason) for o in again.outcomes]
        assert monite.current_secret(sid) == vault_secret(vault, sid)
    finally:
        store.close()
