"""What a cycle did, and what a forced run asks for: `CycleReport`, `force_for`.

Owned apart from the cycle itself (`rotator.engine._engine`) because the CLI,
the daemon, the metrics and the demo read reports without running cycles.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rotator.policy import Decision, Force, Strategy
from rotator.rotation import Outcome, OutcomeKind


@dataclass(slots=True)
class CycleReport:
    """The result of one cycle, for the CLI's exit code, the daemon and the demo."""

    run_id: str
    started_at: datetime
    decisions: list[Decision] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # listed, record not readable
    next_claim_expiry: datetime | None = None  # on Vault's clock
    next_check_in: timedelta | None = None  # from the cycle's start: when a record falls due
    vault_now: datetime | None = None  # the cycle's `now`, on Vault's clock
    quarantined: list[str] = field(default_factory=list)  # left alone after protocol failures
    lost_rules: list[str] = field(default_factory=list)  # id rules that match nothing any more
    retired: int = 0  # records kept `retired` after their original's deletion
    finished_at: datetime | None = None
    error: str | None = None  # set when the cycle itself could not run
    refused: bool = False  # ...because Monite or Vault refused our credentials (exit 77)

    def count(self, kind: OutcomeKind) -> int:
        return sum(1 for o in self.outcomes if o.kind == kind)

    @property
    def ok(self) -> bool:
        """True when the cycle ran and no rotation failed."""
        return self.error is None and self.count(OutcomeKind.FAILED) == 0

    def summary(self) -> str:
        """One line for humans: the same counts cycle.finished logs."""
        if self.error is not None:
            return f"cycle failed: {self.error}"
        counts = {kind: self.count(kind) for kind in OutcomeKind}
        return (
            f"{counts[OutcomeKind.ROTATED]} rotated, {counts[OutcomeKind.SWAPPED]} swapped, "
            f"{counts[OutcomeKind.RECOVERED]} recovered, "
            f"{counts[OutcomeKind.FAILED]} failed, {counts[OutcomeKind.CONFLICT]} conflicts, "
            f"{counts[OutcomeKind.SKIPPED]} skipped, {len(self.orphans)} orphaned"
        )


def describe_force(force: Force | None) -> str | list[str] | None:
    """How cycle.started names a forced run: "all", the ids, or None."""
    if force is None:
        return None
    return "all" if force.all else sorted(force.ids)


def force_for(
    ids: Sequence[str] | None, everything: bool, strategy: Strategy | None = None
) -> Force:
    """The Force a `rotate --force [--strategy]` invocation asks for."""
    return Force(ids=frozenset(ids or ()), all=everything, strategy=strategy)


def subscriptions_missing(report: CycleReport, ids: Iterable[str]) -> list[str]:
    """Forced ids that Monite did not list (mistyped or deleted)."""
    listed = {d.subscription.id for d in report.decisions}
    return sorted(set(ids) - listed)
