"""The cycle: list, decide, run the protocol for each due subscription, report.

- `_engine`: `Engine`, one cycle against one Monite account and one Vault
  prefix (wiring it to real clients is `rotator.app`'s job);
- `_report`: `CycleReport` (what a cycle did) and the forced-run helpers.
"""

from rotator.engine._engine import Engine
from rotator.engine._report import CycleReport, force_for, subscriptions_missing
from rotator.rotation import Outcome, OutcomeKind

__all__ = [
    "CycleReport",
    "Engine",
    "Outcome",
    "OutcomeKind",
    "force_for",
    "subscriptions_missing",
]
