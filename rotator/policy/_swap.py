"""The policy's part in a swap (docs/swap.md): swap states' decisions, the fence, the strategy.

Which strategy a rotation takes and why; what a record in a swap state
decides whatever its age; which record-less subscriptions a swap may have
created (the adoption fence); when an expired swap claim may be recovered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from rotator.model import (
    CLOCK_MARGIN,
    Record,
    Subscription,
    Triple,
)
from rotator.policy._types import Action, Decision, Force, Strategy
from rotator.reasons import Reason

# After this many swaps of one subscription ended without a successor, it is
# regenerated instead (docs/swap.md, Q4): an outage beats a secret never rotated.
MAX_SWAP_FAILURES = 3
# Decisions that may swap: the old secret is alive and merely old (or forced).
_SWAPPABLE = frozenset(
    {Reason.MAX_AGE_EXCEEDED, Reason.AGE_UNKNOWN, Reason.ROTATED_IN_FUTURE, Reason.FORCED}
)


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
        # A second swap would race the first one's step 9, and a regenerate would
        # make consumers reject: wait (the original still delivers every event).
        return replace(decision, action="skip", reason=Reason.PREDECESSOR_RETIRING)
    if why is not None:
        return replace(decision, strategy_reason=why)
    return replace(decision, strategy="swap")


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
