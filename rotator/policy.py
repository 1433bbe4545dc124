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
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from rotator.model import (
    CLOCK_MARGIN,
    DEFAULT_CLAIM_TTL,
    DEFAULT_MAX_CLAIM_TTL,
    Record,
    Subscription,
)
from rotator.reasons import EXPLANATIONS, RECOVERY_REASONS, Reason

Action = Literal["rotate", "skip"]

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

    def matches(self, subscription: Subscription) -> bool:
        if self.object_type is None and self.subscription_id is None and self.url is None:
            # A rule with no matchers is almost certainly a config mistake; letting it
            # match everything would silently override the whole policy.
            return False
        if self.object_type is not None and self.object_type != subscription.object_type:
            return False
        if self.subscription_id is not None and self.subscription_id != subscription.id:
            return False
        return self.url is None or fnmatch.fnmatchcase(subscription.url, self.url)


@dataclass(frozen=True, slots=True)
class Policy:
    max_age: timedelta
    unmanaged: Literal["rotate", "skip"] = "rotate"
    include_disabled: bool = False
    rules: tuple[Rule, ...] = ()

    def rule_for(self, subscription: Subscription) -> Rule | None:
        """The first rule that matches, or None."""
        return next((rule for rule in self.rules if rule.matches(subscription)), None)


@dataclass(frozen=True, slots=True)
class Force:
    """A forced rotation: ignore age for these ids, or for every subscription in scope."""

    ids: frozenset[str] = frozenset()
    all: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    subscription: Subscription
    record: Record  # version 0 when Vault has no record
    action: Action
    reason: Reason
    age: timedelta | None  # None when the secret age is unknown
    max_age: timedelta  # the effective limit after rules

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
) -> list[Decision]:
    """One decision per subscription id, rotations first (see `_order`).

    `now` is Vault's time (the clock every record's `created_time` is on).
    `claim_ttl` is our own: the shortest a version-1 claim is taken to last.
    """
    force = force or Force()
    seen: set[str] = set()
    decisions: list[Decision] = []
    for subscription in subscriptions:
        if subscription.id in seen:
            continue
        seen.add(subscription.id)
        record = records.get(subscription.id) or Record(subscription_id=subscription.id)
        decisions.append(
            _decide_one(subscription, record, policy, now, force, (max_claim_ttl, claim_ttl))
        )
    decisions.sort(key=_order)
    return decisions


def _decide_one(
    subscription: Subscription,
    record: Record,
    policy: Policy,
    now: datetime,
    force: Force,
    claim_limits: tuple[timedelta, timedelta],
) -> Decision:
    rule = policy.rule_for(subscription)
    max_age = rule.max_age if rule is not None and rule.max_age is not None else policy.max_age
    age = record.age(now)

    def decision(action: Action, reason: Reason) -> Decision:
        return Decision(subscription, record, action, reason, age, max_age)

    # The order of these checks is the protocol: a live claim fences everything,
    # even a forced rotation, and a record that may hold a dead secret overrides
    # every policy, because rule zero says it must not stay marked current.
    fenced = record.fenced(now, *claim_limits)
    forced = subscription.id in force.ids
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
        elif record.state in ("rotating", "settling"):
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
