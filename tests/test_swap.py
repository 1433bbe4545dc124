"""The swap strategy end to end on the real adapters: successor, overlap, deletion, recovery.

Monite is the emulator; Vault is the emulator and OpenBao (unless a test is emulator_only).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import hvac
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rotator.cli.plan import how, plan_row
from rotator.config import HookSettings, VaultSettings
from rotator.hooks import Hooks
from rotator.metrics import Metrics
from rotator.policy import Force
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from rotator.secret import Secret
from rotator.vault import VaultStore
from tests.clocks import FakeClock
from tests.conftest import capture_audit
from tests.daemon_harness import run_rotator
from tests.fixtures_engine import EngineFactory
from tests.openbao import OpenBaoVault
from tests.receiver import Receiver, subscription_action
from tests.records import put_record

OVERLAP = timedelta(seconds=2)
PREFIX = "monite/webhooks"
URL = "https://consumer.example/hooks/monite"


def swap_engine(make_engine: EngineFactory, **rotation: Any) -> Any:
    return make_engine(strategy="swap", overlap=rotation.pop("overlap", OVERLAP), **rotation)


async def pass_the_overlap(vault: VaultEmulator, clock: FakeClock) -> None:
    """Let OVERLAP pass on Vault's clock and the engine's `clock` (really only on OpenBao).

    The engine's estimate of Vault's time is the lower of the last `created_time` and
    the last `Date` (whole seconds), each carried on its monotonic clock: both clocks
    must move, and a second more, before the overlap has ended in the engine's eyes.
    """
    seconds = OVERLAP.total_seconds() + 1.1
    if isinstance(vault, OpenBaoVault):
        await asyncio.sleep(seconds)  # OpenBao's clock is real
    else:
        vault.advance_time(seconds)
    clock.advance(seconds)


async def read(vault_settings: VaultSettings, subscription_id: str) -> Any:
    store = VaultStore(vault_settings)
    try:
        return await store.read(subscription_id)
    finally:
        store.close()


def names(captured: list[dict[str, Any]], prefix: str = "swap.") -> list[str]:
    return [e["event"] for e in captured if e["event"].startswith(prefix)]


async def seed_due(monite: MoniteEmulator, vault_settings: VaultSettings, url: str = URL) -> str:
    original = monite.seed(url=url, object_type="payable", event_types=("created", "updated"))
    await put_record(vault_settings, original, monite.current_secret(original), timedelta(days=31))
    return original


async def test_swap_commits_a_successor_then_deletes_the_original_after_the_overlap(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    make_engine: EngineFactory,
) -> None:
    """Swap: S created with O's triple and committed; O keeps its secret until the overlap ends."""
    original = await seed_due(monite, vault_settings)
    old_secret = monite.current_secret(original)
    clock = FakeClock(start=datetime.now(UTC))
    engine = swap_engine(make_engine, clock=clock)

    with capture_audit() as captured:
        first = await engine.run_cycle()
    assert first.ok
    (successor,) = set(monite.subscription_ids()) - {original}
    swapped = [(o.kind, o.reason, o.successor_id) for o in first.outcomes]
    assert [("swapped", "max_age_exceeded", successor)] == swapped
    assert ["swap.started", "swap.created", "swap.committed", "swap.linked"] == names(captured)
    o_record, s_record = await read(vault_settings, original), await read(vault_settings, successor)
    assert ("retiring", Secret(old_secret), successor) == (
        o_record.state,
        o_record.secret,
        o_record.successor_id,
    )
    assert old_secret == monite.current_secret(original)  # never regenerated
    assert 0 == monite.regenerate_count(original)
    assert ("active", Secret(monite.current_secret(successor))) == (
        s_record.state,
        s_record.secret,
    )
    assert (original, (original,), o_record.swap_id) == (
        s_record.predecessor_id,
        s_record.lineage,
        s_record.swap_id,
    )
    assert o_record.triple == s_record.triple
    assert s_record.created_time + OVERLAP == o_record.overlap_ends_at

    during = await engine.run_cycle()
    assert {original: "overlap", successor: "fresh"} == {
        o.subscription_id: o.reason for o in during.outcomes
    }
    await pass_the_overlap(vault, clock)
    with capture_audit() as captured:
        after = await engine.run_cycle()
    assert after.ok
    assert ["swap.overlap_ended", "swap.deleted", "swap.retired"] == names(captured)
    assert [successor] == monite.subscription_ids()
    retired = await read(vault_settings, original)
    assert ("retired", None, successor) == (retired.state, retired.secret, retired.successor_id)
    assert Secret(old_secret).fingerprint() == retired.retired_secret_fingerprint
    assert [] == after.orphans

    settled = await engine.run_cycle()
    assert [(successor, "fresh")] == [(o.subscription_id, o.reason) for o in settled.outcomes]


async def test_an_original_disabled_during_the_overlap_leaves_its_successor_disabled(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    make_engine: EngineFactory,
) -> None:
    """Q3: an operator disables O mid-overlap; O's deletion disables S too, once."""
    original = await seed_due(monite, vault_settings)
    clock = FakeClock(start=datetime.now(UTC))
    engine = swap_engine(make_engine, clock=clock)
    assert (await engine.run_cycle()).ok
    (successor,) = set(monite.subscription_ids()) - {original}
    subscription_action(monite, original, "disable")  # the operator, at Monite
    await pass_the_overlap(vault, clock)
    with capture_audit() as captured:
        after = await engine.run_cycle()
    assert after.ok
    assert [
        "swap.overlap_ended",
        "swap.successor_disabled",
        "swap.deleted",
        "swap.retired",
    ] == names(captured)
    assert ([successor], "disabled") == (
        monite.subscription_ids(),
        monite.subscription(successor)["status"],
    )
    assert "retired" == (await read(vault_settings, original)).state
    assert 2 == monite.request_count("disable")  # the operator's, then the rotator's: once


@pytest.mark.emulator_only("drops the create's answer and moves Vault's clock past the claim")
async def test_a_create_whose_answer_was_lost_is_found_and_deleted_by_recovery(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    make_engine: EngineFactory,
) -> None:
    """C4: the successor exists with a secret nobody knows; recovery deletes it and undoes O."""
    original = await seed_due(monite, vault_settings)
    bystander = monite.seed()  # an unrelated unmanaged subscription is adopted as usual
    monite.faults.drop_after_create = 1
    engine = swap_engine(make_engine)

    first = await engine.run_cycle()
    (orphan,) = set(monite.subscription_ids()) - {original, bystander}
    assert "create_doubtful" == next(
        o.reason for o in first.outcomes if o.subscription_id == original
    )
    assert "swapping" == (await read(vault_settings, original)).state

    # The orphan is listed with no record: nobody may adopt it while the intent stands.
    held = await engine.run_cycle()
    reasons = {o.subscription_id: o.reason for o in held.outcomes}
    assert ("claimed", "swap_successor_pending") == (reasons[original], reasons[orphan])
    # Vault's clock moves on; a fresh engine (replica) reads it, as a restarted daemon would.
    vault.advance_time(32)  # the claim's fence ends; one more claim ttl for a straggler
    engine = swap_engine(make_engine)
    settling = await engine.run_cycle()
    assert "swap_settling" == next(
        o.reason for o in settling.outcomes if o.subscription_id == original
    )
    assert 0 == monite.regenerate_count(orphan)

    vault.advance_time(31)
    engine = swap_engine(make_engine)
    with capture_audit() as captured:
        recovered = await engine.run_cycle()
    assert ["swap.orphan_deleted", "swap.recovered", "swap.released"] == names(captured)
    assert {original, bystander} == set(monite.subscription_ids())
    undone = await read(vault_settings, original)
    assert ("active", Secret(monite.current_secret(original)), 1, None) == (
        undone.state,
        undone.secret,
        undone.swap_failures,
        undone.swap_id,
    )
    assert recovered.ok

    # The next cycle swaps again, and this time it lands.
    again = await engine.run_cycle()
    assert ["swapped"] == [o.kind for o in again.outcomes if o.subscription_id == original]


async def test_a_refused_create_undoes_the_swap_and_counts_it(
    monite: MoniteEmulator, vault_settings: VaultSettings, make_engine: EngineFactory
) -> None:
    """A 4xx create applied nothing: O is `active` again at once, one failure counted."""
    original = await seed_due(monite, vault_settings)
    monite.faults.fail_create = 1
    monite.faults.error_status = 422
    engine = swap_engine(make_engine)
    report = await engine.run_cycle()
    assert [("failed", "create_refused")] == [(o.kind, o.reason) for o in report.outcomes]
    record = await read(vault_settings, original)
    assert ("active", 1, [original]) == (
        record.state,
        record.swap_failures,
        monite.subscription_ids(),
    )


async def test_after_three_failed_swaps_the_subscription_is_regenerated(
    monite: MoniteEmulator, vault_settings: VaultSettings, make_engine: EngineFactory
) -> None:
    """swap_failures = 3 falls back to regenerate: a secret is never left unrotated forever."""
    original = monite.seed(url=URL)
    await put_record(
        vault_settings,
        original,
        monite.current_secret(original),
        timedelta(days=31),
        swap_failures=3,
    )
    report = await swap_engine(make_engine).run_cycle()
    assert [("rotated", "max_age_exceeded")] == [(o.kind, o.reason) for o in report.outcomes]
    assert "swap_fallback" == report.decisions[0].strategy_reason
    assert 1 == monite.regenerate_count(original)


async def test_forced_regenerate_ends_an_overlap_at_once(
    monite: MoniteEmulator, vault_settings: VaultSettings, make_engine: EngineFactory
) -> None:
    """`rotate --force --strategy regenerate` on a retiring original deletes it now."""
    original = await seed_due(monite, vault_settings)
    engine = swap_engine(make_engine, overlap=timedelta(hours=1))
    await engine.run_cycle()
    (successor,) = set(monite.subscription_ids()) - {original}
    report = await engine.run_cycle(Force(ids=frozenset({original}), strategy="regenerate"))
    assert [successor] == monite.subscription_ids()
    assert "retired" == (await read(vault_settings, original)).state
    assert ("swapped", "forced") == next(
        (o.kind, o.reason) for o in report.outcomes if o.subscription_id == original
    )


async def test_disabled_and_unmanaged_subscriptions_regenerate_under_swap(
    monite: MoniteEmulator, vault_settings: VaultSettings, make_engine: EngineFactory
) -> None:
    """Swap only keeps a live secret valid: unmanaged ones have none, so they regenerate."""
    unmanaged = monite.seed(url=URL)
    report = await swap_engine(make_engine).run_cycle()
    assert [("rotated", "unmanaged")] == [(o.kind, o.reason) for o in report.outcomes]
    assert "unmanaged" == report.decisions[0].strategy_reason
    assert [unmanaged] == monite.subscription_ids()


async def test_plan_shows_the_strategy_and_the_phase_of_a_swap(
    monite: MoniteEmulator, vault_settings: VaultSettings, make_engine: EngineFactory
) -> None:
    """`plan` says a due secret would be swapped, then that its original is retiring."""
    original = await seed_due(monite, vault_settings)
    engine = swap_engine(make_engine, overlap=timedelta(hours=1))
    before = [plan_row(d) for d in (await engine.plan()).decisions]
    assert [("rotate", "swap", "swap")] == [(r["action"], r["strategy"], how(r)) for r in before]
    await engine.run_cycle()
    report = await engine.plan()
    rows = {
        r["subscription_id"]: r for r in (plan_row(d, report.vault_now) for d in report.decisions)
    }
    (successor,) = set(rows) - {original}
    swap = rows[original]["swap"]
    assert ("skip", "overlap", "retiring", successor) == (
        rows[original]["action"],
        rows[original]["reason"],
        swap["phase"],
        swap["successor_id"],
    )
    # `now` is a lower bound of Vault's time, so the estimate may run a second or two long.
    assert 3500 < swap["overlap_remaining_seconds"] < 3603
    assert how(rows[original]).startswith("retiring, ")
    assert ("successor", original) == (
        rows[successor]["swap"]["phase"],
        rows[successor]["swap"]["predecessor_id"],
    )


async def test_metrics_count_swap_steps_phases_and_duplicates(
    monite: MoniteEmulator, vault_settings: VaultSettings, make_engine: EngineFactory
) -> None:
    """rotator_swaps_total, rotator_swaps_in_flight and duplicates follow a swap's phases."""
    await seed_due(monite, vault_settings)
    engine = swap_engine(make_engine, overlap=timedelta(hours=1))
    metrics = Metrics()
    for _ in range(2):
        metrics.observe(await engine.run_cycle())
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }
    assert {
        "committed": 1.0,
        "retiring": 1.0,
        "swapping": 0.0,
        "duplicates": 1.0,
        "orphans": 0.0,
        "swapped outcomes": 1.0,
    } == {
        "committed": samples[("rotator_swaps_total", (("step", "committed"),))],
        "retiring": samples[("rotator_swaps_in_flight", (("phase", "retiring"),))],
        "swapping": samples[("rotator_swaps_in_flight", (("phase", "swapping"),))],
        "duplicates": samples[("rotator_swap_duplicates_alive", ())],
        "orphans": samples[("rotator_swap_orphans_alive", ())],
        "swapped outcomes": samples[("rotator_rotations_total", (("outcome", "swapped"),))],
    }


def test_rotate_help_names_the_emergency_strategy() -> None:
    """`rotate --help` says a swap keeps the old secret valid and how to kill a leaked one."""
    result = run_rotator("rotate", "--help")
    text = " ".join(result.stdout.split())
    assert 0 == result.returncode
    assert "--strategy {regenerate,swap}" in text
    assert "for a leaked secret use --strategy regenerate" in text


async def test_an_original_whose_record_was_lost_mid_swap_is_deleted_not_adopted(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    make_engine: EngineFactory,
) -> None:
    """M2: O's record deleted while retiring; S names O as predecessor, so O is deleted."""
    original = await seed_due(monite, vault_settings)
    engine = swap_engine(make_engine, overlap=timedelta(hours=1))
    await engine.run_cycle()
    (successor,) = set(monite.subscription_ids()) - {original}
    root = hvac.Client(url=vault.address, token=vault.root_token, timeout=10)
    root.secrets.kv.v2.delete_metadata_and_all_versions(
        path=f"{PREFIX}/{original}", mount_point="secret"
    )
    report = await swap_engine(make_engine, overlap=timedelta(hours=1)).run_cycle()
    assert ("swapped", "swap_predecessor") == next(
        (o.kind, o.reason) for o in report.outcomes if o.subscription_id == original
    )
    assert [successor] == monite.subscription_ids()
    assert 0 == monite.regenerate_count(original)
    retired = await read(vault_settings, original)
    assert ("retired", successor) == (retired.state, retired.successor_id)


async def test_hooks_hear_of_the_successor_and_of_the_retired_original(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    make_engine: EngineFactory,
) -> None:
    """swap.committed names S (path, version, predecessor, deadline); swap.retired names O."""
    original = await seed_due(monite, vault_settings)
    key = Secret("k" * 64)
    with Receiver(()) as consumer:
        hooks = Hooks(
            (HookSettings(url=consumer.url("/rotated"), secret=key),),
            vault_mount="secret",
            vault_prefix=PREFIX,
        )
        clock = FakeClock(start=datetime.now(UTC))
        engine = swap_engine(make_engine, hooks=hooks, clock=clock)
        await engine.run_cycle()
        await pass_the_overlap(vault, clock)
        await engine.run_cycle()
        await hooks.idle()
        await hooks.aclose(1)
        sent = [d.event for d in consumer.drain() if 200 == d.status]
    (successor,) = monite.subscription_ids()
    committed, retired = sent
    assert ("swap.committed", successor, f"{PREFIX}/{successor}", original) == (
        committed["event"],
        committed["subscription_id"],
        committed["vault_path"],
        committed["predecessor_id"],
    )
    assert Secret(monite.current_secret(successor)).fingerprint() == committed["secret_fingerprint"]
    assert committed["overlap_ends_at"].endswith("Z")
    assert ("swap.retired", original, successor) == (
        retired["event"],
        retired["subscription_id"],
        retired["successor_id"],
    )


async def test_a_delete_whose_answer_was_lost_still_retires_the_original(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    make_engine: EngineFactory,
) -> None:
    """The delete landed, its answer did not: the retried DELETE's 404 means gone; retire."""
    original = await seed_due(monite, vault_settings)
    clock = FakeClock(start=datetime.now(UTC))
    engine = swap_engine(make_engine, clock=clock)
    await engine.run_cycle()
    await pass_the_overlap(vault, clock)
    monite.faults.drop_after_delete = 1
    with capture_audit() as captured:
        report = await engine.run_cycle()
    assert report.ok
    (successor,) = monite.subscription_ids()
    deleted = [e for e in captured if e["event"] == "swap.deleted"]
    assert [(original, True)] == [(e["subscription_id"], e["already_gone"]) for e in deleted]
    assert "retired" == (await read(vault_settings, original)).state
    assert successor != original


async def test_two_replicas_racing_on_one_original_create_one_successor(
    monite: MoniteEmulator, vault_settings: VaultSettings, make_engine: EngineFactory
) -> None:
    """Both decide to swap O at once: the claim's CAS lets one create; the other conflicts."""
    originals = [await seed_due(monite, vault_settings, f"{URL}/{n}") for n in range(3)]
    first, second = (swap_engine(make_engine, owner=f"replica-{n}") for n in (1, 2))
    reports = await asyncio.gather(first.run_cycle(), second.run_cycle())
    outcomes = Counter((o.kind, o.reason) for report in reports for o in report.outcomes)
    # The loser either lost the CAS or, deciding later, already saw the winner's claim,
    # or (reading O only once the winner had linked it) O in its overlap.
    lost = {
        ("conflict", "claimed_elsewhere"),
        ("conflict", "record_replaced"),  # its fresh read of the start saw the winner's claim
        ("skipped", "claimed"),
        ("skipped", "overlap"),
    }
    assert (3, 3) == (
        outcomes[("swapped", "max_age_exceeded")],
        sum(n for key, n in outcomes.items() if key in lost),
    ), outcomes
    assert 3 == monite.request_count("create")
    successors = set(monite.subscription_ids()) - set(originals)
    records = [await read(vault_settings, s) for s in successors]
    assert sorted(originals) == sorted(r.predecessor_id for r in records)


async def test_twins_due_together_swap_one_at_a_time(
    monite: MoniteEmulator, vault_settings: VaultSettings, make_engine: EngineFactory
) -> None:
    """Three subscriptions with one triple: one swaps per cycle, the others back off unharmed."""
    twins = [await seed_due(monite, vault_settings) for _ in range(3)]
    engine = swap_engine(make_engine, overlap=timedelta(hours=1))
    per_cycle = []
    for _ in range(3):
        report = await engine.run_cycle()
        per_cycle.append(
            Counter((o.kind, o.reason) for o in report.outcomes if o.subscription_id in twins)
        )
    # A twin whose intent is unresolved holds the others back; once it is linked (often
    # within the same cycle), another may go. All three swap, none failed, none counted.
    swapped = ("swapped", "max_age_exceeded")
    assert 3 == sum(cycle[swapped] for cycle in per_cycle)
    assert [] == [key for cycle in per_cycle for key in cycle if key[0] == "failed"]
    records = [await read(vault_settings, t) for t in twins]
    assert [0, 0, 0] == [r.swap_failures for r in records]
    assert 6 == len(monite.subscription_ids())


async def test_the_overlap_each_original_really_had_is_measured(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_settings: VaultSettings,
    make_engine: EngineFactory,
) -> None:
    """rotator_swap_overlap_seconds: successor commit to original deleted, at least the overlap."""
    await seed_due(monite, vault_settings)
    clock = FakeClock(start=datetime.now(UTC))
    engine = swap_engine(make_engine, clock=clock)
    metrics = Metrics()
    metrics.observe(await engine.run_cycle())
    await pass_the_overlap(vault, clock)
    with capture_audit() as captured:
        metrics.observe(await engine.run_cycle())
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
        if s.name.startswith("rotator_swap_overlap_seconds_")
    }
    retired = next(e for e in captured if e["event"] == "swap.retired")
    assert 1.0 == samples["rotator_swap_overlap_seconds_count"]
    assert retired["overlap_seconds"] == round(samples["rotator_swap_overlap_seconds_sum"], 3)
    # The estimate of Vault's time is a lower bound: allow the one-second margin.
    assert OVERLAP.total_seconds() - 1 <= samples["rotator_swap_overlap_seconds_sum"] < 10
    metrics.observe(await engine.run_cycle())  # the next cycle reads the retired record
    retired_records = [
        s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
        if s.name == "rotator_retired_records"
    ]
    assert [1.0] == retired_records
