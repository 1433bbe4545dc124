"""The pure decision core: which subscriptions to rotate now, and why.

Takes data and `now`, returns decisions; imports no I/O library (checked by
import-linter). Every decision carries a stable reason code (`rotator.reasons`),
which the engine audits and `rotator plan` prints. The public face; behind it:
`_types` (rules, policy, force, decision), `_decide` (the decision and what the
cycle reports beside it), `_swap` (the policy's part in a swap), `_timing`
(the protocol's timing arithmetic).
"""

from rotator.policy._decide import decide, lost_rules, next_claim_expiry, orphans
from rotator.policy._swap import (
    MAX_SWAP_FAILURES,
    SWAP_RECORD_STATES,
    UNLISTED,
    SwapFence,
    swap_recovery_due,
)
from rotator.policy._timing import may_settle_active, settle_for, unseen_claim_window
from rotator.policy._types import (
    FUTURE_TOLERANCE,
    Action,
    Decision,
    Force,
    Policy,
    Rule,
    Strategy,
)

__all__ = [
    "FUTURE_TOLERANCE",
    "MAX_SWAP_FAILURES",
    "SWAP_RECORD_STATES",
    "UNLISTED",
    "Action",
    "Decision",
    "Force",
    "Policy",
    "Rule",
    "Strategy",
    "SwapFence",
    "decide",
    "lost_rules",
    "may_settle_active",
    "next_claim_expiry",
    "orphans",
    "settle_for",
    "swap_recovery_due",
    "unseen_claim_window",
]
