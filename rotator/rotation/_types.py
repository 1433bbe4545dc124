"""The values one rotation takes and returns, and the typed results between its steps.

`Context` is what the engine hands in, `Outcome` what comes back. The step 3
results (`Won`, `Refused`, `Gone`, `Doubt`) and the commit write's
(`Superseded`, `CommitFailed`) are types rather than exceptions, so that each
step's caller in `protocol.py` branches on every case where it can be seen.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from rotator.clock import Clock
from rotator.model import Record, Regenerated
from rotator.ports import RecordStore, SubscriptionSource
from rotator.reasons import OutcomeKind, Reason


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one subscription in one cycle."""

    subscription_id: str
    object_type: str
    kind: OutcomeKind
    reason: str
    vault_version: int | None = None
    secret_fingerprint: str | None = None
    exposure_seconds: float | None = None  # Monite response to Vault commit
    # The committed record's `rotated_at` (Vault's time of Monite's answer), for the hooks.
    rotated_at: datetime | None = None
    error: str | None = None
    # The regenerate step ended on an answer of a shape we cannot read (a
    # MoniteProtocolError): the engine stops retrying a subscription that keeps doing this.
    protocol_error: bool = False
    # -- a swap (rotator.rotation.swap): the successor, and when the original goes --
    successor_id: str | None = None
    overlap_ends_at: datetime | None = None
    retired: bool = False  # the original was deleted and its record retired
    overlap_seconds: float | None = None  # retired: how long both subscriptions delivered
    # What this swap step came to, for rotator_swaps_total: committed, retired, undone, aborted.
    swap_step: str | None = None


@dataclass(frozen=True, slots=True)
class Context:
    """What one rotation needs from the engine: ports, clock, settings, and its cache."""

    store: RecordStore
    monite: SubscriptionSource
    clock: Clock
    owner: str
    claim_ttl: timedelta
    max_claim_ttl: timedelta
    commit_retry_for: timedelta
    max_retries: int
    rng: random.Random
    remember: Callable[[Record], None]  # a record we wrote or read: keep it in the cache
    reread: Callable[[str], None]  # the cached record may be wrong: read it next cycle
    overlap: timedelta = timedelta(minutes=15)  # swap: how long both subscriptions deliver


# -- typed results of step 3: regenerate --------------------------------------


@dataclass(frozen=True, slots=True)
class Won:
    """Monite answered with a new secret. `doubtful`: an earlier attempt may still land."""

    regenerated: Regenerated
    doubtful: bool


@dataclass(frozen=True, slots=True)
class Refused:
    """No attempt can have been applied: the old secret still works."""

    error: str
    reason: Reason


@dataclass(frozen=True, slots=True)
class Gone:
    """The subscription no longer exists (a first-attempt 404, confirmed with a GET)."""

    error: str


@dataclass(frozen=True, slots=True)
class Doubt:
    """An attempt may have been applied and no secret came back: keep the claim."""

    error: str
    reason: Reason


# -- typed results of the commit write (step 4), other than the written record --


@dataclass(frozen=True, slots=True)
class Superseded:
    """Step 5: another rotation took over our expired claim; `current` is its record."""

    current: Record


@dataclass(frozen=True, slots=True)
class CommitFailed:
    """`rotation.commit_retry_for` was spent without a commit: the new secret is lost (logged)."""

    error: str
