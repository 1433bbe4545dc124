"""The decision: which subscriptions to rotate now, and why, one `Decision` each.

Also what the cycle reports beside it: orphaned records, id rules that match
nothing any more, and when the next record falls due.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from rotator.model import (
    CLOCK_MARGIN,
    DEFAULT_CLAIM_TTL,
    DEFAULT_MAX_CLAIM_TTL,
    Record,
    Subscription,
)
from rotator.policy._swap import (
    _UNLISTED_SWAP_STATES,
    SWAP_RECORD_STATES,
    SwapFence,
    _swap_decision,
    _unlisted,
    _with_strategy,
    swap_recovery_due,
)
from rotator.policy._types import FUTURE_TOLERANCE, Action, Decision, Force, Policy, Strategy
from rotator.reasons import Reason


def decide(
    subscriptions: Iterable[Subscription],
    records: Mapping[str, Record],
    policy: Policy,
    now: datetime,
    force: Force | None = None,
    *,
    max_claim_ttl: timedelta = DEFAULT_MAX_CLAIM_TTL,
    claim_ttl: timedelta = DEFAULT_CLAIM_TTL,
    strategy: Strategy = "regenerate",
) -> list[Decision]:
    """One decision per subscription id, rotations first (see `_order`).

    `now` is Vault's time (the clock every record's `created_time` is on).
    `claim_ttl` is our own: the shortest a version-1 claim is taken to last.
    A record in a swap state whose subscription is no longer listed still gets
    a decision (its original may be deleted already); a `retired` one does not.
    """
    force = force or Force()
    fence = SwapFence.of(records.values())
    limits = (max_claim_ttl, claim_ttl)
    seen: set[str] = set()
    decisions: list[Decision] = []
    for subscription in subscriptions:
        if subscription.id in seen:
            continue
        seen.add(subscription.id)
        record = records.get(subscription.id) or Record(subscription_id=subscription.id)
        decision = _decide_one(subscription, record, policy, now, force, limits, fence)
        rule = policy.rule_for(subscription, record.lineage)
        ruled = rule.strategy if rule is not None else None
        decisions.append(_with_strategy(decision, force.strategy or ruled or strategy, fence))
    for record in records.values():
        if record.subscription_id in seen or record.state not in _UNLISTED_SWAP_STATES:
            continue
        decision = _decide_one(_unlisted(record), record, policy, now, force, limits, fence)
        decisions.append(_with_strategy(decision, force.strategy or strategy, fence))
    decisions.sort(key=_order)
    return decisions


def _decide_one(
    subscription: Subscription,
    record: Record,
    policy: Policy,
    now: datetime,
    force: Force,
    claim_limits: tuple[timedelta, timedelta],
    fence: SwapFence,
) -> Decision:
    rule = policy.rule_for(subscription, record.lineage)
    max_age = rule.max_age if rule is not None and rule.max_age is not None else policy.max_age
    age = record.age(now)

    def decision(action: Action, reason: Reason) -> Decision:
        return Decision(subscription, record, action, reason, age, max_age)

    # The order of these checks is the protocol: a live claim fences everything,
    # even a forced rotation, and a record that may hold a dead secret overrides
    # every policy, because rule zero says it must not stay marked current.
    fenced = record.fenced(now, *claim_limits)
    forced = subscription.id in force.ids
    if record.state in SWAP_RECORD_STATES:
        return decision(*_swap_decision(record, subscription, now, claim_limits, forced, force))
    if not record.exists and subscription.id in fence.predecessors:
        lost = replace(
            record,
            state="retiring",
            successor_id=fence.predecessors[subscription.id],
            url=subscription.url,
            object_type=subscription.object_type,
            event_types=subscription.event_types,
        )
        return Decision(subscription, lost, "rotate", Reason.SWAP_PREDECESSOR, None, max_age)
    if not record.exists and fence.holds(subscription):
        return decision("skip", Reason.SWAP_SUCCESSOR_PENDING)
    if record.state == "rotating":
        return (
            decision("skip", Reason.CLAIMED) if fenced else decision("rotate", Reason.CLAIM_EXPIRED)
        )
    if record.state == "stale":
        return decision("rotate", Reason.STALE)
    if record.state == "settling":
        if not fenced:
            return decision("rotate", Reason.SETTLED)
        if not forced and not force.all:
            return decision("skip", Reason.SETTLING)
    if forced:
        return decision("rotate", Reason.FORCED)
    if not subscription.status_known:
        # Not "disabled": include_disabled says nothing about a status nobody has seen.
        return decision("skip", Reason.UNKNOWN_STATUS)
    if not subscription.enabled and not policy.include_disabled:
        return decision("skip", Reason.DISABLED)
    if rule is not None and rule.skip:
        return decision("skip", Reason.RULE_SKIP)
    if force.all:
        return decision("rotate", Reason.FORCED)
    if not record.exists or record.secret is None:
        if policy.unmanaged == "rotate":
            return decision("rotate", Reason.UNMANAGED)
        return decision("skip", Reason.UNMANAGED_SKIP)
    if age is None:
        # A hand-edited record without rotated_at: treat the unknown age as too old.
        return decision("rotate", Reason.AGE_UNKNOWN)
    if age < -FUTURE_TOLERANCE:
        return decision("rotate", Reason.ROTATED_IN_FUTURE)
    if age >= max_age:
        return decision("rotate", Reason.MAX_AGE_EXCEEDED)
    return decision("skip", Reason.FRESH)


def _order(decision: Decision) -> tuple[bool, bool, bool, timedelta, str]:
    # Rotations before skips; among rotations recoveries first (their secret may
    # already be lost), then oldest first with unknown age as oldest, so a cycle
    # cut short still did the most urgent work.
    if decision.action == "skip":
        return (True, False, False, timedelta(0), decision.subscription.id)
    age = decision.age
    return (
        False,
        not decision.recovery,
        age is not None,
        -age if age is not None else timedelta(0),
        decision.subscription.id,
    )


def lost_rules(
    policy: Policy, subscriptions: Iterable[Subscription], records: Mapping[str, Record]
) -> list[str]:
    """Sentences for id rules that match nothing listed, not even through a swap's lineage."""
    listed = {s.id for s in subscriptions}
    descended = {
        ancestor for r in records.values() if r.subscription_id in listed for ancestor in r.lineage
    }
    return [
        f"rule {n} names subscription {rule.subscription_id}, which Monite no longer lists "
        "and no successor descends from (lineage cut or record deleted); match it by url "
        "or object_type instead"
        for n, rule in enumerate(policy.rules, start=1)
        if rule.subscription_id is not None
        and rule.subscription_id not in listed
        and rule.subscription_id not in descended
    ]


def orphans(subscriptions: Iterable[Subscription], record_ids: Collection[str]) -> list[str]:
    """Record ids whose subscription no longer exists at Monite, sorted."""
    live = {subscription.id for subscription in subscriptions}
    return sorted(set(record_ids) - live)


def next_claim_expiry(
    records: Iterable[Record],
    now: datetime,
    max_claim_ttl: timedelta = DEFAULT_MAX_CLAIM_TTL,
    claim_ttl: timedelta = DEFAULT_CLAIM_TTL,
) -> datetime | None:
    """When the daemon should next look for a record to recover, on Vault's clock, or None.

    The earliest end of a claim or settling horizon, plus the clock margin and
    the one second a `Date` header may lag, so the record is surely due by
    then; never earlier than `now`. A record that is due already (an expired
    claim, `stale`) means "check at once".
    """
    ends: list[datetime] = []
    for record in records:
        if record.state == "stale":
            ends.append(now)
        elif record.state == "swapping":
            due = swap_recovery_due(record, max_claim_ttl, claim_ttl)
            ends.append(now if due is None else due + 2 * CLOCK_MARGIN)
        elif record.state == "retiring":
            overlap_end = record.overlap_ends_at
            ends.append(now if overlap_end is None else overlap_end + 2 * CLOCK_MARGIN)
        elif record.state in ("rotating", "settling", "deleting"):
            end = record.fence_ends(max_claim_ttl, claim_ttl)
            ends.append(now if end is None else end + 2 * CLOCK_MARGIN)
    if not ends:
        return None
    return max(min(ends), now)
