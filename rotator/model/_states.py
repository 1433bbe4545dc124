"""The record states, which of them fence, and the protocol's claim-time constants."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

RecordState = Literal[
    "active", "rotating", "settling", "stale", "swapping", "retiring", "deleting", "retired"
]
# The states of a swap (docs/swap.md): on the original's record only.
SWAP_STATES: frozenset[str] = frozenset({"swapping", "retiring", "deleting", "retired"})
# States whose version holds a claim or horizon measured from `created_time`.
FENCED_STATES: frozenset[str] = frozenset({"rotating", "settling", "swapping", "deleting"})
# A successor's lineage keeps at most this many ancestors (rules follow it).
MAX_LINEAGE = 64

# How much a judgement of Vault's time leaves to doubt: `Date` headers are
# whole seconds, and a claim must never look expired a moment early.
CLOCK_MARGIN = timedelta(seconds=1)
# No claim fences a record longer than this, whatever the record says
# (`rotation.max_claim_ttl`): a writer with a wild clock or ttl cannot lock it out.
DEFAULT_MAX_CLAIM_TTL = timedelta(hours=1)
DEFAULT_CLAIM_TTL = timedelta(minutes=2)  # `rotation.claim_ttl`

RECORD_STATES: tuple[RecordState, ...] = (
    "active",
    "rotating",
    "settling",
    "stale",
    "swapping",
    "retiring",
    "deleting",
    "retired",
)
