"""The pure decision core: which subscriptions to rotate now, and why.

Takes data and `now`, returns decisions; imports no I/O library (checked by
import-linter). Every decision carries a stable reason code (`rotator.reasons`),
which the engine audits and `rotator plan` prints.

Also the protocol's timing arithmetic (`rotator.rotation` calls it): whether a
commit may say `active`, and how long a straggler may still land: records and
ttls in, a judgement out, on the same fences the decisions read.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from rotator.model import (
    CLOCK_MARGIN,
    DEFAULT_CLAIM_TTL,
    DEFAULT_MAX_CLAIM_TTL,
    Record,
    Subscription,
    Triple,
)
from rotator.reasons import EXPLANATIONS, RECOVERY_REASONS, SWAP_PHASE_REASONS, Reason

Action = Literal["rotate", "skip"]
Strategy = Literal["regenerate", "swap"]

# After this many swaps of one subscription ended without a successor, it is
# regenerated instead (docs/swap.md, Q4): an outage beats a secret never rotated.
MAX_SWAP_FAILURES = 3
# Decisions that may swap: the old secret is alive and merely old (or forced).
_SWAPPABLE = frozenset(
    {Reason.MAX_AGE_EXCEEDED, Reason.AGE_UNKNOWN, Reason.ROTATED_IN_FUTURE, Reason.FORCED}
)

# A rotation time this far ahead of Vault's time was written on a wrong clock.
# Well above the estimate's own error (a `Date` header is whole seconds, a
# replica's estimate trails Vault's a little), far below any skew that matters.
FUTURE_TOLERANCE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Rule:
    """Overrides the default for matching subscriptions; the first matching rule wins.

    A rule matches when every matcher it sets matches: `object_type` exactly,
    `subscription_id` exactly, `url` as a shell-style glob (fnmatch, case-sensitive).
    """

    object_type: str | None = None
    subscription_id: str | None = None
    url: str | None = None
    max_age: timedelta | None = None
    skip: bool = False
    strategy: Strategy | None = None  # overrides rotation.strategy for what it matches

    def matches(self, subscription: Subscription, lineage: Sequence[str] = ()) -> bool:
        """`lineage`: the ids this subscription succeeded (swaps), so an id rule follows them."""
        if self.object_type is None and self.subscription_id is None and self.url is None:
            # A rule with no matchers is almost certainly a config mistake; letting it
            # match everything would silently override the whole policy.
            return False
        if self.object_type is not None and self.object_type != subscription.object_type:
            return False
        if self.subscription_id is not None and not (
            self.subscription_id == subscription.id or self.subscription_id in lineage
        ):
            return False
        return self.url is None or fnmatch.fnmatchcase(subscription.url, self.url)


@dataclass(frozen=True, slots=True)
class Policy:
    max_age: timedelta
    unmanaged: Literal["rotate", "skip"] = "rotate"
    include_disabled: bool = False
    rules: tuple[Rule, ...] = ()

    def rule_for(self, subscription: Subscription, lineage: Sequence[str] = ()) -> Rule | None:
        """The first rule that matches, or None."""
        return next((rule for rule in self.rules if rule.matches(subscription, lineage)), None)


@dataclass(frozen=True, slots=True)
class Force:
    """A forced rotation: ignore age for these ids, or for every subscription in scope."""

    ids: frozenset[str] = frozenset()
    all: bool = False
    strategy: Strategy | None = None  # `rotate --strategy`: overrides rotation.strategy


@dataclass(frozen=True, slots=True)
class Decision:
    subscription: Subscription
    record: Record  # version 0 when Vault has no record
    action: Action
    reason: Reason
    age: timedelta | None  # None when the secret age is unknown
    max_age: timedelta  # the effective limit after rules
    strategy: Strategy = "regenerate"  # how a rotation replaces the secret (docs/swap.md)
    strategy_reason: str | None = None  # why not the configured strategy, when it differs

    @property
    def swap_phase(self) -> bool:
        """True when this decision moves an existing swap on, whatever the strategy."""
        return self.reason in SWAP_PHASE_REASONS or (
            self.reason == Reason.FORCED and self.record.state in ("retiring", "deleting")
        )

    @property
    def recovery(self) -> bool:
        """True when the record may hold a dead secret: rotate whatever the policy says."""
        return self.reason in RECOVERY_REASONS

    @property
    def rotate(self) -> bool:
        return self.action == "rotate"

    @property
    def explanation(self) -> str:
        """The human sentence for `reason`."""
        return EXPLANATIONS[self.reason]


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


# Swap states that still need work after the original left Monite's listing.
_UNLISTED_SWAP_STATES = frozenset({"swapping", "retiring", "deleting"})
# The status of a subscription known only from its record: not listed by Monite.
UNLISTED = "unlisted"


def _unlisted(record: Record) -> Subscription:
    return Subscription(
        id=record.subscription_id,
        url=record.url or "",
        object_type=record.object_type or "",
        status=UNLISTED,
        event_types=record.event_types,
    )


@dataclass(frozen=True, slots=True)
class SwapFence:
    """What in-flight swaps say about record-less subscriptions (docs/swap.md, section 5).

    A subscription a swap may have created must not be taken under management
    by anyone but that swap: its secret is known only to the swap (or nobody).
    """

    intents: Mapping[Triple, frozenset[str]]
    successors: frozenset[str]
    # original -> successor, from successors' records: an original whose own
    # record was lost mid-swap (docs/swap.md, M2) is still known to be one.
    predecessors: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, records: Iterable[Record]) -> SwapFence:
        intents: dict[Triple, frozenset[str]] = {}
        successors: set[str] = set()
        predecessors: dict[str, str] = {}
        for record in records:
            if record.predecessor_id is not None and record.secret is not None:
                predecessors[record.predecessor_id] = record.subscription_id
            if record.state == "swapping":
                known = intents.get(record.triple, frozenset(record.swap_known_ids))
                intents[record.triple] = known & frozenset(record.swap_known_ids)
            if record.successor_id is not None and record.state != "retired":
                successors.add(record.successor_id)
        return cls(intents, frozenset(successors), predecessors)

    def holds(self, subscription: Subscription) -> bool:
        """True when an in-flight swap may have created `subscription`."""
        if subscription.id in self.successors:
            return True
        known = self.intents.get(subscription.triple)
        return known is not None and subscription.id not in known


def _with_strategy(decision: Decision, strategy: Strategy, fence: SwapFence) -> Decision:
    """Swap only an `active` secret that is merely old; say why not otherwise."""
    if strategy != "swap" or decision.action != "rotate" or decision.swap_phase:
        return decision
    record, sub = decision.record, decision.subscription
    why: Reason | None = None
    if decision.reason not in _SWAPPABLE:
        # A recovery may hold a dead secret and an unmanaged one has none to keep valid.
        why = decision.reason
    elif record.state != "active" or record.secret is None:
        why = Reason.STALE
    elif not sub.enabled:
        why = Reason.DISABLED
    elif record.swap_failures >= MAX_SWAP_FAILURES:
        why = Reason.SWAP_FALLBACK
    elif sub.id in fence.successors:
        why = Reason.PREDECESSOR_RETIRING
    if why is not None:
        return replace(decision, strategy_reason=why)
    return replace(decision, strategy="swap")


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


SWAP_RECORD_STATES = frozenset({"swapping", "retiring", "deleting", "retired"})


def _swap_decision(
    record: Record,
    subscription: Subscription,
    now: datetime,
    claim_limits: tuple[timedelta, timedelta],
    forced: bool,
    force: Force,
) -> tuple[Action, Reason]:
    """A record in a swap state: the swap's own phase decides, never the policy's age."""
    if record.state == "retired":
        # Listed after retirement (decide never sees an unlisted retired record): a
        # late create's straggler or list lag; delete it again.
        return "rotate", Reason.RETIRED_STILL_LISTED
    if record.state in ("swapping", "deleting") and record.fenced(now, *claim_limits):
        return "skip", Reason.CLAIMED
    if record.state == "swapping":
        due = swap_recovery_due(record, *claim_limits)
        if due is not None and now < due + CLOCK_MARGIN:
            return "skip", Reason.SWAP_SETTLING
        return "rotate", Reason.SWAP_CLAIM_EXPIRED
    if record.state == "deleting":
        return "rotate", Reason.DELETE_CLAIM_EXPIRED
    # retiring: a forced regenerate ends the overlap now (the secret dies with the original).
    if (forced or force.all) and force.strategy == "regenerate":
        return "rotate", Reason.FORCED
    if record.overlap_ends_at is None or now >= record.overlap_ends_at:
        return "rotate", Reason.OVERLAP_ENDED
    return "skip", Reason.OVERLAP


def swap_recovery_due(
    record: Record, max_claim_ttl: timedelta, claim_ttl: timedelta
) -> datetime | None:
    """When an expired `swapping` claim may be recovered: a create sent under it has landed.

    A create is sent before the claim's fence ends and lands within one more
    claim ttl (the straggler assumption of protocol v2), so recovery waits for
    `fence_ends + ttl`. None when the fence cannot be measured (recover now).
    """
    ends = record.fence_ends(max_claim_ttl, claim_ttl)
    if ends is None or record.created_time is None:
        return None
    return ends + (ends - record.created_time)


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


# -- how long a rotation settles (the protocol's timing, rotator.rotation) ------


def may_settle_active(
    start: Record,
    *,
    start_verified: bool,
    doubtful: bool,
    claimed_at: datetime,
    claim_ttl: timedelta,
    max_claim_ttl: timedelta,
) -> bool:
    """True when no other regenerate for this subscription can still land at Monite.

    The rotation's attempts are all accounted for (not `doubtful`), and the
    record it started from (`start_verified` in Vault's history) vouched for
    its secret: `active`, or `settling` whose horizon had passed at
    `claimed_at`, Vault's time of our claim. An absent record does not vouch:
    a record deleted while a rotation held its claim also looks absent, and
    that rotation's regenerate may still land.
    """
    if doubtful or not start_verified:
        return False
    if start.state == "active":
        return True
    if start.state == "settling":
        horizon = start.fence_ends(max_claim_ttl, floor=claim_ttl)
        return horizon is not None and claimed_at >= horizon
    return False  # took over an expired claim, or started from `stale`


def unseen_claim_window(claim_ttl: timedelta, max_claim_ttl: timedelta) -> timedelta:
    """How long a regenerate sent under a claim we cannot see may still land.

    Such a claim (its record deleted, or ours unverified) may have been
    written up to one claim ttl before ours and sent its last attempt a ttl
    later: two ttls from our commit cover it.
    """
    return min(2 * claim_ttl, max_claim_ttl)


def settle_for(
    start: Record, *, start_verified: bool, claim_ttl: timedelta, max_claim_ttl: timedelta
) -> timedelta:
    """How long a straggler may still land: the longest claim it could have been sent under.

    A start that cannot vouch (absent or unverified: perhaps deleted under a
    live claim) settles for `unseen_claim_window`. All replicas are assumed
    to share `rotation.claim_ttl`.
    """
    ttl = claim_ttl
    if not start_verified or start.secret is None:
        ttl = unseen_claim_window(claim_ttl, max_claim_ttl)
    ends = start.fence_ends(max_claim_ttl, floor=claim_ttl)  # already capped
    if ends is not None and start.created_time is not None:
        ttl = max(ttl, ends - start.created_time)
    if start.state == "stale" and start.claim_ttl_seconds is not None:
        ttl = max(ttl, timedelta(seconds=start.claim_ttl_seconds))
    return min(ttl, max_claim_ttl)
