"""What the policy is made of and what it answers: rules, the policy, a force, a decision."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from rotator.model import (
    Record,
    Subscription,
)
from rotator.reasons import EXPLANATIONS, RECOVERY_REASONS, SWAP_PHASE_REASONS, Reason

Action = Literal["rotate", "skip"]
Strategy = Literal["regenerate", "swap"]
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
