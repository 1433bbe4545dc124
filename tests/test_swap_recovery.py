"""The swap protocol where Vault's history decides: undo, recovery, takeover, adoption.

Regression tests for the swap review (docs/swap.md): each scenario runs the
real `swap`/`rotate` on the in-memory fakes of `tests.swap_fakes`, where KV v2
numbers a key's versions from 1 again after its metadata is deleted, so a
check-and-set write can land on someone else's record. Rule zero throughout:
an `active` record carries Monite's current secret.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rotator.engine import CycleReport
from rotator.errors import MoniteNotFound, MoniteRequestError, MoniteUnavailable
from rotator.metrics import Metrics
from rotator.model import Record, Subscription
from rotator.policy import UNLISTED, Decision, Strategy
from rotator.reasons import Reason
from rotator.rotation import Context, Outcome, rotate, swap
from tests.clocks import FakeClock
from tests.conftest import capture_audit
from tests.swap_fakes import FakeMonite, KvStore

CLAIM_TTL = timedelta(minutes=2)
OVERLAP = timedelta(minutes=15)
ORIGINAL = "sub-o"

Events = list[dict[str, Any]]


class World:
    """One Vault, one Monite and one clock, with the original seeded `active` at version 1."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.store = KvStore(self.clock)
        self.monite = FakeMonite()
        self.monite.seed(ORIGINAL)
        sub = self.monite.subscriptions[ORIGINAL]
        self.store.put(
            Record(
                ORIGINAL,
                secret=self.monite.current(ORIGINAL),
                rotated_at=self.clock.now(),
                url=sub.url,
                object_type=sub.object_type,
                event_types=sub.event_types,
            )
        )

    def context(self) -> Context:
        return Context(
            store=self.store,
            monite=self.monite,
            clock=self.clock,
            owner="replica-a",
            claim_ttl=CLAIM_TTL,
            max_claim_ttl=timedelta(hours=1),
            commit_retry_for=timedelta(minutes=10),
            max_retries=3,
            rng=random.Random(1),
            remember=lambda record: None,
            reread=lambda subscription_id: None,
            overlap=OVERLAP,
        )

    def decision(
        self,
        record: Record,
        reason: Reason = Reason.MAX_AGE_EXCEEDED,
        strategy: Strategy = "swap",
    ) -> Decision:
        listed = self.monite.subscriptions.get(record.subscription_id)
        return Decision(
            listed or policy_unlisted(record),
            record,
            "rotate",
            reason,
            None,
            timedelta(days=30),
            strategy=strategy,
        )

    async def swap(self, record: Record, reason: Reason = Reason.MAX_AGE_EXCEEDED) -> Outcome:
        """One swap step from `record` (a cached or freshly read start) on today's listing."""
        listing = await self.monite.list_subscriptions()
        return await swap(self.context(), self.decision(record, reason), listing)

    async def adopt(self, subscription_id: str, *, commit: bool) -> Record:
        """Another replica adopts the key as unmanaged: claim with cas=0, regenerate, commit?"""
        sub = self.monite.subscriptions[subscription_id]
        claim = await self.store.write(
            Record(subscription_id).claimed(
                sub, rotation_id="r2", owner="replica-b", ttl=CLAIM_TTL, now=self.clock.now()
            ),
            cas=0,
        )
        regenerated = await self.monite.regenerate_secret(subscription_id)
        if not commit:
            return claim
        committed = claim.committed(
            regenerated, rotation_id="r2", at=self.clock.now(), settle_for=CLAIM_TTL
        )
        return await self.store.write(committed, cas=claim.version)

    def assert_rule_zero(self, subscription_id: str) -> None:
        """Rule zero: a latest record that says `active` carries Monite's current secret."""
        latest = self.store.latest(subscription_id)
        if latest.state == "active":
            assert self.monite.current(subscription_id) == latest.secret


def policy_unlisted(record: Record) -> Subscription:
    """The subscription as the policy sees a swap record Monite no longer lists."""
    return Subscription(
        record.subscription_id,
        record.url or "",
        record.object_type or "",
        UNLISTED,
        record.event_types,
    )


def swap_events(captured: Events) -> list[tuple[str, str]]:
    """(event, level) of the swap and conflict events, in order."""
    return [
        (e["event"], e["log_level"])
        for e in captured
        if e["event"].startswith(("swap.", "rotation.conflict"))
    ]


def the(captured: Events, name: str) -> dict[str, Any]:
    """The one captured event called `name`."""
    (event,) = [e for e in captured if e["event"] == name]
    return event


# -- a successor commit cancelled by the drain -------------------------------------------------


async def test_a_successor_commit_cancelled_mid_write_is_logged_critical() -> None:
    """A drain that cancels the successor's commit logs swap.failed critical for the lost secret."""
    world = World()
    reached, never = asyncio.Event(), asyncio.Event()

    async def hang() -> None:
        reached.set()
        await never.wait()  # Vault never answers the successor's commit

    world.store.interpose(lambda r: r.predecessor_id == ORIGINAL, hang)
    with capture_audit() as captured:
        task = asyncio.create_task(world.swap(world.store.latest(ORIGINAL)))
        await reached.wait()
        task.cancel()  # the drain's shutdown_timeout ran out
        with pytest.raises(asyncio.CancelledError):
            await task

    (successor,) = set(world.monite.subscriptions) - {ORIGINAL}
    assert [
        ("swap.started", "info"),
        ("swap.created", "info"),
        ("swap.failed", "critical"),
    ] == swap_events(captured)
    failed = the(captured, "swap.failed")
    assert ("commit", successor, world.monite.current(successor).fingerprint()) == (
        failed["stage"],
        failed["successor_id"],
        failed["secret_fingerprint"],
    )
    assert failed["error"].startswith("CancelledError")
    assert the(captured, "swap.started")["rotation_id"] == failed["rotation_id"]  # same swap
    # The claim stays for recovery, which finds the successor nobody knows the secret of.
    assert "swapping" == world.store.latest(ORIGINAL).state
    assert False is world.store.latest(successor).exists
    world.assert_rule_zero(ORIGINAL)


# -- a claim that landed on a recreated record, then its recovery ------------------------------


async def test_recovery_of_a_claim_on_a_recreated_record_writes_stale_not_active() -> None:
    """A claim left on an adopter's recreated record is recovered `stale`, never `active`."""
    world = World()
    cached = world.store.latest(ORIGINAL)  # replica A's cache (and its fresh read): v1 active

    async def delete_and_adopt() -> None:
        # Between A's read of the start and its claim, the one race left:
        world.clock.advance(10)
        world.store.delete_metadata(ORIGINAL)  # an operator deletes the record's metadata
        await world.adopt(ORIGINAL, commit=False)  # replica B: v1 claim, regenerated
        world.store.refuse = lambda r: r.state == "stale"  # the restore of B's record fails

    world.store.interpose(
        lambda r: r.subscription_id == ORIGINAL and r.state == "swapping", delete_and_adopt
    )
    with capture_audit() as captured:
        first = await world.swap(cached)  # cas=1 lands on B's claim
    assert ("conflict", "record_replaced") == (first.kind, first.reason)
    assert [("rotation.conflict", "warning")] == swap_events(captured)
    left = world.store.latest(ORIGINAL)
    assert ("swapping", 2) == (left.state, left.version)  # our claim, over a dead secret

    world.store.refuse = lambda r: False
    world.clock.advance(600)
    with capture_audit() as captured:
        recovered = await world.swap(left, Reason.SWAP_CLAIM_EXPIRED)

    assert ("skipped", "swap_claim_expired", "undone") == (
        recovered.kind,
        recovered.reason,
        recovered.swap_step,
    )
    assert [("swap.recovered", "info"), ("swap.released", "info")] == swap_events(captured)
    assert ("undone", 0) == (
        the(captured, "swap.recovered")["phase"],
        the(captured, "swap.recovered")["orphans_deleted"],
    )
    assert "stale" == the(captured, "swap.released")["state"]
    final = world.store.latest(ORIGINAL)
    assert ("stale", 4, None) == (final.state, final.version, final.swap_id)
    assert (ORIGINAL, 1) in world.store.history_reads  # the start was looked up, and refused
    assert [] == [v.version for v in world.store.versions[ORIGINAL] if v.state == "active"]
    world.assert_rule_zero(ORIGINAL)


# -- recovery from a cached intent whose cas lands on an adopter's record ----------------------


async def test_recovery_from_a_cached_intent_restores_the_adopters_record() -> None:
    """Recovery whose claim lands on an adopter's recreated record puts that record back."""
    world = World()
    start = world.store.latest(ORIGINAL)
    sub = world.monite.subscriptions[ORIGINAL]
    # A swap claims the intent (v2, in every replica's cache), then its process dies.
    cached = world.store.put(
        start.swap_claimed(
            sub,
            rotation_id="dead",
            owner="replica-c",
            ttl=CLAIM_TTL,
            now=world.clock.now(),
            swap_id="swap-dead",
            known_ids=(ORIGINAL,),
        )
    )
    world.clock.advance(30)
    world.store.delete_metadata(ORIGINAL)
    adopted = await world.adopt(ORIGINAL, commit=True)  # v1 claim, v2 settling, new secret
    world.clock.advance(600)

    with capture_audit() as captured:
        outcome = await world.swap(cached, Reason.SWAP_CLAIM_EXPIRED)

    assert ("conflict", "record_replaced") == (outcome.kind, outcome.reason)
    assert [("rotation.conflict", "warning")] == swap_events(captured)
    assert "claim" == the(captured, "rotation.conflict")["stage"]
    final = world.store.latest(ORIGINAL)
    assert (4, "settling", "r2", world.monite.current(ORIGINAL)) == (
        final.version,
        final.state,
        final.rotation_id,
        final.secret,
    )
    assert adopted.created_time != final.created_time  # written again, as it was
    assert [] == [v.version for v in world.store.versions[ORIGINAL] if v.state == "active"]
    world.assert_rule_zero(ORIGINAL)


# -- a successor's own swap, and the fallback to regenerate ------------------------------------


async def test_a_successors_own_swap_gets_its_own_swap_id_and_start_time() -> None:
    """The successor carries its parent's swap id; its own swap starts a new id and time."""
    world = World()
    first = await world.swap(world.store.latest(ORIGINAL))
    assert first.successor_id is not None
    successor = first.successor_id
    parent = world.store.latest(ORIGINAL)
    inherited = world.store.latest(successor)
    assert ("retiring", "active") == (parent.state, inherited.state)
    assert parent.swap_id == inherited.swap_id

    world.clock.advance(3600)
    world.store.put(replace(parent, state="retired", secret=None))  # O is gone by now
    started = world.clock.now()
    with capture_audit() as captured:
        second = await world.swap(inherited)

    assert "swapped" == second.kind
    (intent,) = [v for v in world.store.versions[successor] if v.state == "swapping"]
    assert intent.swap_id is not None
    assert parent.swap_id != intent.swap_id
    assert started == intent.swap_started_at
    assert (inherited.version, inherited.created_time) == (
        intent.swap_start_version,
        intent.swap_start_created_time,
    )
    assert intent.swap_id == the(captured, "swap.started")["swap_id"]
    assert second.successor_id is not None
    assert intent.swap_id == world.store.latest(second.successor_id).swap_id
    world.assert_rule_zero(successor)
    world.assert_rule_zero(second.successor_id)


async def test_a_fallback_regenerate_resets_the_swap_failure_count() -> None:
    """After swap_failures reached the fallback, the regenerated record counts from 0 again."""
    world = World()
    start = world.store.latest(ORIGINAL)
    failing = world.store.put(replace(start, swap_failures=3))

    outcome = await rotate(world.context(), world.decision(failing, strategy="regenerate"))

    assert "rotated" == outcome.kind
    final = world.store.latest(ORIGINAL)
    assert ("active", 0) == (final.state, final.swap_failures)
    world.assert_rule_zero(ORIGINAL)


# -- a link refused because another rotation adopted the original's record ---------------------


async def test_a_link_refused_by_an_adopters_record_reports_duplicate_suspected() -> None:
    """O's record deleted and adopted mid-swap: no link, duplicate_suspected, a failed outcome."""
    world = World()

    async def delete_and_adopt() -> None:
        world.store.delete_metadata(ORIGINAL)  # an operator deletes O's record mid-swap
        await world.adopt(ORIGINAL, commit=False)  # replica B's claim lands at v1

    world.store.interpose(
        lambda r: r.subscription_id == ORIGINAL and r.state == "retiring", delete_and_adopt
    )
    with capture_audit() as captured:
        outcome = await world.swap(world.store.latest(ORIGINAL))

    (successor,) = set(world.monite.subscriptions) - {ORIGINAL}
    assert ("failed", "duplicate_suspected", successor, "aborted", None) == (
        outcome.kind,
        outcome.reason,
        outcome.successor_id,
        outcome.swap_step,
        outcome.overlap_ends_at,
    )
    assert [
        ("swap.started", "info"),
        ("swap.created", "info"),
        ("swap.committed", "info"),
        ("swap.duplicate_suspected", "critical"),
    ] == swap_events(captured)
    suspected = the(captured, "swap.duplicate_suspected")
    assert (successor, "r2", "rotating") == (
        suspected["successor_id"],
        suspected["holder"],
        suspected["holder_state"],
    )
    # B's claim is untouched, so its commit (cas=1) lands; both subscriptions deliver.
    claim = world.store.latest(ORIGINAL)
    assert (1, "rotating", "r2") == (claim.version, claim.state, claim.rotation_id)
    assert {ORIGINAL, successor} == set(world.monite.subscriptions)
    world.assert_rule_zero(successor)
    assert "active" == world.store.latest(successor).state


# -- undo: when the secret may be written back `active` ----------------------------------------


async def test_a_refused_create_after_a_verified_start_undoes_active_without_history() -> None:
    """Begin-path undo after a verified start: `active` with no history read beyond the check."""
    world = World()
    world.monite.refuse_create = MoniteRequestError("422 Unprocessable Entity", status=422)

    with capture_audit() as captured:
        outcome = await world.swap(world.store.latest(ORIGINAL))

    assert ("failed", "create_refused", "undone") == (
        outcome.kind,
        outcome.reason,
        outcome.swap_step,
    )
    assert [("swap.started", "info"), ("swap.released", "info")] == swap_events(captured)
    assert "active" == the(captured, "swap.released")["state"]
    # check_start's read of v1, then the undo's check that it replaced our claim (v2):
    # the start itself is not read again.
    assert [(ORIGINAL, 1), (ORIGINAL, 2)] == world.store.history_reads
    final = world.store.latest(ORIGINAL)
    assert ("active", 3, 1, None, None) == (
        final.state,
        final.version,
        final.swap_failures,
        final.swap_start_version,
        final.swap_id,
    )
    world.assert_rule_zero(ORIGINAL)


async def test_recovery_undo_writes_active_when_history_still_holds_the_start() -> None:
    """Recovery undo: the start version in history matches the intent, so `active` again."""
    world = World()
    start = world.store.latest(ORIGINAL)
    world.monite.lose_create = MoniteUnavailable(
        "timed out after sending", may_have_applied=True, retryable=False
    )
    doubtful = await world.swap(start)
    assert ("failed", "create_doubtful") == (doubtful.kind, doubtful.reason)
    intent = world.store.latest(ORIGINAL)
    assert ("swapping", 1, start.created_time) == (
        intent.state,
        intent.swap_start_version,
        intent.swap_start_created_time,
    )
    (orphan,) = set(world.monite.subscriptions) - {ORIGINAL}

    world.clock.advance(3600)
    world.store.history_reads.clear()
    with capture_audit() as captured:
        recovered = await world.swap(intent, Reason.SWAP_CLAIM_EXPIRED)

    assert ("skipped", "swap_claim_expired", "undone") == (
        recovered.kind,
        recovered.reason,
        recovered.swap_step,
    )
    assert [
        ("swap.orphan_deleted", "warning"),
        ("swap.recovered", "info"),
        ("swap.released", "info"),
    ] == swap_events(captured)
    assert orphan == the(captured, "swap.orphan_deleted")["successor_id"]
    assert "active" == the(captured, "swap.released")["state"]
    # The takeover's check, the start, and the undo's check that it replaced our claim.
    assert [(ORIGINAL, 2), (ORIGINAL, 1), (ORIGINAL, 3)] == world.store.history_reads
    assert [ORIGINAL] == list(world.monite.subscriptions)
    final = world.store.latest(ORIGINAL)
    assert ("active", 4, 1, None, None) == (
        final.state,
        final.version,
        final.swap_failures,
        final.swap_start_version,
        final.swap_start_created_time,
    )
    world.assert_rule_zero(ORIGINAL)


@pytest.mark.parametrize(
    ("written_state", "refuse_create", "expected"),
    [
        ("active", True, ("failed", "create_refused")),
        ("retiring", False, ("failed", "duplicate_suspected")),
    ],
    ids=["undo", "link"],
)
async def test_a_write_over_our_claim_that_lands_on_a_recreated_record_is_put_back(
    written_state: str, refuse_create: bool, expected: tuple[str, str]
) -> None:
    """Record deleted and adopted up to our claim's version: our cas lands, then is undone."""
    world = World()
    if refuse_create:
        world.monite.refuse_create = MoniteRequestError("422", status=422)

    async def delete_and_adopt() -> None:
        world.clock.advance(5)
        world.store.delete_metadata(ORIGINAL)  # an operator deletes O's record mid-swap
        await world.adopt(ORIGINAL, commit=True)  # another replica: claim, regenerate, commit

    world.store.interpose(
        lambda r: r.subscription_id == ORIGINAL and r.state == written_state, delete_and_adopt
    )
    outcome = await world.swap(world.store.latest(ORIGINAL))
    final = world.store.latest(ORIGINAL)
    assert expected == (outcome.kind, outcome.reason)
    assert ("settling", "r2") == (final.state, final.rotation_id)  # the adopter's, restored
    world.assert_rule_zero(ORIGINAL)


# -- found by the simulation (tests/sim, seeds 227, 243, 497) ------------------------------


async def swapped_and_due(world: World) -> tuple[Record, str]:
    """O swapped to S and linked; the clock past the overlap: O is due to be deleted."""
    outcome = await world.swap(world.store.latest(ORIGINAL))
    assert ("swapped", "retiring") == (outcome.kind, world.store.latest(ORIGINAL).state)
    assert outcome.successor_id is not None
    world.clock.advance(OVERLAP.total_seconds() + 1)
    return world.store.latest(ORIGINAL), outcome.successor_id


async def swapped_in_turn(world: World, successor: str, newest: str) -> None:
    """Another replica swapped S and finished: S is retired and deleted, `newest` delivers."""
    s_record = world.store.latest(successor)
    world.monite.seed(newest)
    world.store.put(replace(s_record, state="retired", secret=None, successor_id=newest))
    await world.monite.delete_subscription(successor)
    world.store.put(
        Record(
            newest,
            secret=world.monite.current(newest),
            rotated_at=world.clock.now(),
            url=s_record.url,
            object_type=s_record.object_type,
            event_types=s_record.event_types,
            predecessor_id=successor,
        )
    )


async def test_step_9_follows_a_successor_that_was_swapped_in_turn() -> None:
    """Seed 227: S swapped and retired before O's deletion; O is deleted, not revived."""
    world = World()
    retiring, successor = await swapped_and_due(world)
    await swapped_in_turn(world, successor, "sub-s2")
    outcome = await world.swap(retiring, Reason.OVERLAP_ENDED)
    assert ("swapped", True) == (outcome.kind, outcome.retired)
    assert ORIGINAL not in world.monite.subscriptions
    assert "retired" == world.store.latest(ORIGINAL).state


async def test_an_original_already_gone_is_retired_and_its_recordless_successor_kept() -> None:
    """Seed 243: O's delete landed, S's record was deleted: S is kept (to be adopted), O retired."""
    world = World()
    retiring, successor = await swapped_and_due(world)
    world.store.delete_metadata(successor)  # an operator deletes S's record
    await world.monite.delete_subscription(ORIGINAL)  # O's earlier delete landed late
    outcome = await world.swap(retiring, Reason.OVERLAP_ENDED)
    assert ("swapped", "retired") == (outcome.kind, world.store.latest(ORIGINAL).state)
    assert [successor] == list(world.monite.subscriptions)


async def test_a_successor_whose_original_is_not_retired_waits() -> None:
    """Seed 624: S's own swap while O is still retiring would race O's step 9: S waits."""
    world = World()
    first = await world.swap(world.store.latest(ORIGINAL))
    assert first.successor_id is not None
    successor = world.store.latest(first.successor_id)
    second = await world.swap(successor)  # its original is `retiring`
    assert ("skipped", "predecessor_retiring") == (second.kind, second.reason)
    assert 0 == len(world.monite.subscriptions) - 2  # nothing created, nothing regenerated
    assert "retiring" == world.store.latest(ORIGINAL).state
    world.assert_rule_zero(first.successor_id)


async def test_a_successor_that_cannot_be_disabled_keeps_the_original_and_its_claim() -> None:
    """Q3: O disabled mid-overlap, S's disable refused: O is not deleted, the claim waits."""
    world = World()
    retiring, successor = await swapped_and_due(world)
    subscriptions = world.monite.subscriptions
    subscriptions[ORIGINAL] = replace(subscriptions[ORIGINAL], status="disabled")
    world.monite.refuse_disable = MoniteUnavailable("Monite disable: 503", status=503)
    outcome = await world.swap(retiring, Reason.OVERLAP_ENDED)
    assert ("failed", "monite_error") == (outcome.kind, outcome.reason)
    assert (True, "enabled", "deleting") == (
        ORIGINAL in subscriptions,
        subscriptions[successor].status,
        world.store.latest(ORIGINAL).state,
    )
    world.clock.advance(CLAIM_TTL.total_seconds() + 1)  # the claim expires: a takeover
    again = await world.swap(world.store.latest(ORIGINAL), Reason.CLAIM_EXPIRED)
    assert ("swapped", "disabled", "retired") == (
        again.kind,
        subscriptions[successor].status,
        world.store.latest(ORIGINAL).state,
    )


async def test_two_recordless_twins_after_a_lost_create_are_reported_and_kept() -> None:
    """Two subscriptions may be the lost successor: none is deleted, O undone, the metric counts."""
    world = World()
    world.monite.lose_create = MoniteUnavailable(
        "timed out after sending", may_have_applied=True, retryable=False
    )
    doubtful = await world.swap(world.store.latest(ORIGINAL))
    assert "create_doubtful" == doubtful.reason
    o = world.monite.subscriptions[ORIGINAL]
    twin = world.monite.seed(
        "sub-by-hand", url=o.url, object_type=o.object_type, event_types=o.event_types
    )
    world.clock.advance(3600)
    with capture_audit() as captured:
        recovered = await world.swap(world.store.latest(ORIGINAL), Reason.SWAP_CLAIM_EXPIRED)
    (orphan,) = set(world.monite.subscriptions) - {ORIGINAL, twin}
    assert ("failed", "orphan_ambiguous", "undone") == (
        recovered.kind,
        recovered.reason,
        recovered.swap_step,
    )
    assert ("critical", sorted([orphan, twin])) == (
        the(captured, "swap.orphan_ambiguous")["log_level"],
        the(captured, "swap.orphan_ambiguous")["candidates"],
    )
    assert {ORIGINAL, orphan, twin} == set(world.monite.subscriptions)
    assert ("active", 1) == (
        world.store.latest(ORIGINAL).state,
        world.store.latest(ORIGINAL).swap_failures,
    )
    metrics = Metrics()
    metrics.observe(CycleReport("run", world.clock.now(), outcomes=[recovered]))
    counted = [
        s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
        if s.name == "rotator_swap_orphans_ambiguous_total"
    ]
    assert [1.0] == counted


def disable_original(world: World) -> None:
    """The operator disables O at Monite (what the next cycle's listing shows)."""
    subscriptions = world.monite.subscriptions
    subscriptions[ORIGINAL] = replace(subscriptions[ORIGINAL], status="disabled")


async def test_a_disable_refused_for_good_still_deletes_the_original_and_says_so() -> None:
    """Q3: a 403 on S's disable would hold O forever: O is deleted, a critical line says why."""
    world = World()
    retiring, successor = await swapped_and_due(world)
    disable_original(world)
    world.monite.refuse_disable = MoniteRequestError("Monite disable: HTTP 403", status=403)
    with capture_audit() as captured:
        outcome = await world.swap(retiring, Reason.OVERLAP_ENDED)
    failed = the(captured, "swap.failed")
    assert ("swapped", "retired", "enabled", False) == (
        outcome.kind,
        world.store.latest(ORIGINAL).state,
        world.monite.subscriptions[successor].status,
        ORIGINAL in world.monite.subscriptions,
    )
    assert ("critical", "disable", successor) == (
        failed["log_level"],
        failed["stage"],
        failed["successor_id"],
    )
    assert "permission to disable webhook subscriptions" in failed["fix"]


async def test_a_successor_gone_at_its_disable_aborts_at_once() -> None:
    """Q3: S answers 404 to its disable: the swap aborts now, O stays, no claim is left."""
    world = World()
    retiring, _ = await swapped_and_due(world)
    disable_original(world)
    world.monite.refuse_disable = MoniteNotFound("Monite disable: HTTP 404", status=404)
    outcome = await world.swap(retiring, Reason.OVERLAP_ENDED)
    assert ("failed", "successor_gone", True, "active") == (
        outcome.kind,
        outcome.reason,
        ORIGINAL in world.monite.subscriptions,
        world.store.latest(ORIGINAL).state,
    )


async def test_a_disable_is_not_copied_past_a_successor_swapped_in_turn() -> None:
    """Q3: S retired and S2 delivers: disabling a leftover O leaves S2 enabled, O deleted."""
    world = World()
    retiring, successor = await swapped_and_due(world)
    await swapped_in_turn(world, successor, "sub-s2")
    disable_original(world)
    outcome = await world.swap(retiring, Reason.OVERLAP_ENDED)
    assert ("swapped", "enabled", False) == (
        outcome.kind,
        world.monite.subscriptions["sub-s2"].status,
        ORIGINAL in world.monite.subscriptions,
    )
