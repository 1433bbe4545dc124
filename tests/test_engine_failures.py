"""The cycle when things go wrong: refusals, races, bugs and cancellations mid-rotation,
unreadable records, and what the age gauge leaves out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rotator.config import VaultSettings
from rotator.engine import Engine
from rotator.metrics import Metrics
from rotator.model import Record
from rotator.policy import Force
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from rotator.secret import Secret
from rotator.vault import VaultStore
from tests.clocks import FakeClock
from tests.conftest import capture_audit
from tests.records import put_record, wait_for_version

PREFIX = "monite/webhooks"


class _BrokenCommitStore(VaultStore):
    """A store with a bug in its second write of one subscription (the commit)."""

    def __init__(self, settings: VaultSettings, broken_id: str) -> None:
        super().__init__(settings)
        self.broken_id = broken_id
        self.writes = 0

    async def write(self, record: Record, *, cas: int) -> Record:
        if record.subscription_id == self.broken_id and record.state in ("active", "settling"):
            raise ValueError("a bug in the commit path")
        return await super().write(record, cas=cas)


def _record(vault: VaultEmulator, sid: str) -> dict[str, Any]:
    found = vault.kv_read("secret", f"{PREFIX}/{sid}")
    assert found is not None
    return found[0]


async def test_refused_regenerate_gives_the_claim_back(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    make_engine: Callable[..., Engine],
) -> None:
    """A regenerate Monite refuses (4xx) destroyed nothing: the claim is released, not left.

    An active record is restored exactly; a subscription with no record before
    gets a `stale` one (a release never writes `active`), due again at once.
    """
    sid, managed = monite.seed(), monite.seed()
    await put_record(vault_settings, managed, monite.current_secret(managed), timedelta(days=40))
    before = _record(vault, managed)
    monite.faults.error_status = 400
    monite.faults.fail_regenerate = 10
    report = await make_engine().run_cycle()
    assert {("failed", "monite_refused")} == {(o.kind, o.reason) for o in report.outcomes}
    assert 0 == monite.regenerate_count(sid) + monite.regenerate_count(managed)
    assert before == _record(vault, managed)
    assert "stale" == _record(vault, sid)["state"]
    assert report.next_check_in is not None
    assert timedelta(0) >= report.next_check_in


async def test_regenerate_that_may_have_applied_keeps_the_claim(
    monite: MoniteEmulator, vault: VaultEmulator, make_engine: Callable[..., Engine]
) -> None:
    """A 5xx may come after Monite changed the secret: the claim stays for recovery."""
    sid = monite.seed()
    monite.faults.error_status = 500
    monite.faults.fail_regenerate = 10
    # The regenerate's retries back off in virtual time.
    report = await make_engine(clock=FakeClock(start=datetime.now(UTC))).run_cycle()
    assert [("failed", "monite_error")] == [(o.kind, o.reason) for o in report.outcomes]
    assert "rotating" == _record(vault, sid)["state"]
    assert report.next_claim_expiry is not None


async def test_subscription_deleted_mid_cycle_is_skipped_not_failed(
    monite: MoniteEmulator, vault: VaultEmulator, make_engine: Callable[..., Engine]
) -> None:
    """A subscription deleted after listing is skipped as gone (confirmed by a GET), claim released.

    It had no record, so the release writes `stale` (never `active`): the
    record is an orphan from now on and is reported as one.
    """
    sid = monite.seed()
    engine = make_engine()
    plan = await engine.plan()
    monite.remove(sid)
    outcome = await engine.rotate(plan.decisions[0])
    assert ("skipped", "gone") == (outcome.kind, outcome.reason)
    assert "stale" == _record(vault, sid)["state"]
    assert 1 == monite.request_count("get")
    assert [sid] == (await engine.run_cycle()).orphans


async def test_a_bug_in_one_rotation_does_not_stop_the_others(
    monite: MoniteEmulator, vault_settings: VaultSettings, make_engine: Callable[..., Engine]
) -> None:
    """An unexpected exception costs one rotation (logged critical), the rest of the cycle runs."""
    broken, fine = monite.seed(), monite.seed()
    engine = make_engine(store=_BrokenCommitStore(vault_settings, broken))
    with capture_audit() as captured:
        report = await engine.run_cycle()
    outcomes = {o.subscription_id: (o.kind, o.reason) for o in report.outcomes}
    assert {broken: ("failed", "internal_error"), fine: ("rotated", "unmanaged")} == outcomes
    critical = [e for e in captured if e["log_level"] == "critical"]
    assert [broken] == [e["subscription_id"] for e in critical]
    assert critical[0]["secret_fingerprint"]
    assert "cycle.finished" == captured[-1]["event"]


async def test_cancelled_commit_names_the_subscription_it_drops(
    monite: MoniteEmulator, vault: VaultEmulator, make_engine: Callable[..., Engine]
) -> None:
    """Cancelling a rotation that holds a new secret logs which one, critically, then re-raises."""
    sid = monite.seed()
    engine = make_engine(commit_retry_for=timedelta(minutes=5))
    plan = await engine.plan()
    monite.faults.latency = 0.2

    async def seal_after_claim() -> None:
        if await wait_for_version(vault, sid, 1):
            vault.seal()

    try:
        with capture_audit() as captured:
            sealing = asyncio.ensure_future(seal_after_claim())
            rotation = asyncio.ensure_future(engine.rotate(plan.decisions[0]))
            for _ in range(400):  # until the commit is being retried
                if any(e["event"] == "rotation.commit_retry" for e in captured):
                    break
                await asyncio.sleep(0.01)
            rotation.cancel()
            with pytest.raises(asyncio.CancelledError):
                await rotation
            await sealing
    finally:
        vault.unseal()
    [dropped] = [e for e in captured if e["log_level"] == "critical"]
    assert (sid, "commit") == (dropped["subscription_id"], dropped["stage"])
    assert dropped["recovery_at"]


async def test_forced_rotation_ignores_the_per_cycle_cap(
    monite: MoniteEmulator, make_engine: Callable[..., Engine]
) -> None:
    """rotate --force --all rotates everything even with max_rotations_per_cycle set."""
    ids = [monite.seed() for _ in range(3)]
    report = await make_engine(max_rotations_per_cycle=1).run_cycle(Force(all=True))
    assert 3 == report.count("rotated")
    assert [1, 1, 1] == [monite.regenerate_count(sid) for sid in ids]


async def test_orphaned_claims_schedule_no_checks(
    monite: MoniteEmulator, vault_settings: VaultSettings, make_engine: Callable[..., Engine]
) -> None:
    """A claim on a record whose subscription is gone does not schedule claim checks."""
    await put_record(
        vault_settings,
        "6f1c1f8e-0000-4000-8000-00000000abcd",
        "orphaned-secret-0001",
        timedelta(0),
        state="rotating",
        claimed_by="gone-host:1",
        claim_expires_at=datetime.now(UTC) + timedelta(minutes=1),
    )
    report = await make_engine().run_cycle()
    assert 1 == len(report.orphans)
    assert report.next_claim_expiry is None


async def test_age_gauge_leaves_out_subscriptions_skipped_on_purpose(
    monite: MoniteEmulator, vault_settings: VaultSettings, make_engine: Callable[..., Engine]
) -> None:
    """A disabled subscription's old secret does not drive the oldest-age gauge."""
    old_disabled = monite.seed(status="disabled")
    await put_record(
        vault_settings, old_disabled, monite.current_secret(old_disabled), timedelta(days=400)
    )
    monite.seed()  # rotated now, age ~0
    report = await make_engine().run_cycle()
    metrics = Metrics()
    metrics.observe(report)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    [sample] = families["rotator_oldest_managed_secret_age_seconds"].samples
    assert sample.value < 60


async def test_one_unreadable_record_costs_only_its_subscription(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    make_engine: Callable[..., Engine],
) -> None:
    """A record the policy cannot read fails that subscription; the others still rotate."""
    blocked, fine = monite.seed(), monite.seed()
    for sid in (blocked, fine):
        await put_record(vault_settings, sid, monite.current_secret(sid), timedelta(days=45))
    vault.put_policy(
        "deny-one", f'path "secret/data/{PREFIX}/{blocked}" {{\n  capabilities = ["deny"]\n}}\n'
    )
    token = vault.create_token(policies=["rotator", "deny-one"])
    denied = VaultStore(vault_settings.model_copy(update={"token": Secret(token)}))
    report = await make_engine(store=denied).run_cycle()
    outcomes = {o.subscription_id: (o.kind, o.reason) for o in report.outcomes}
    assert {blocked: ("failed", "vault_unreadable"), fine: ("rotated", "max_age_exceeded")} == (
        outcomes
    )
    assert [blocked] == report.unreadable
    assert [] == report.orphans
    assert 0 == monite.regenerate_count(blocked)
