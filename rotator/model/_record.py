"""`Record`: one subscription's record in Vault KV v2, and its regenerate transitions.

Its swap transitions are in `_swap` (inherited); reading and writing the KV v2
`data` object is here too. Pure: no I/O library.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from rotator.model._data import record_data, record_fields
from rotator.model._states import (
    CLOCK_MARGIN,
    FENCED_STATES,
    MAX_LINEAGE,
    RecordState,
)
from rotator.model._subscription import Created, Regenerated, Subscription, Triple, triple
from rotator.secret import Secret


@dataclass(frozen=True, slots=True)
class Record:
    """One subscription's record in Vault KV v2, at a known version.

    `version` is the KV version this record was read or written at; 0 means no
    record exists (a check-and-set write with cas=0 creates it).
    `created_time` is Vault's own time for that version (from KV metadata, never
    stored in the data): claims and settling horizons are measured from it.

    States (protocol version 2, rotator.rotation; the README lists them):
    - `active`: `secret` is Monite's current secret.
    - `rotating`: a claim is held until `created_time + claim_ttl`.
    - `settling`: committed, but an earlier regenerate may still land at
      Monite until `created_time + claim_ttl`; rotated once more after that.
    - `stale`: the secret may be dead; rotate at once.

    Swap states (protocol version 3, `rotator.rotation.swap`, docs/swap.md),
    all on the original's record, whose `secret` stays valid until `retired`:
    - `swapping`: a claim plus the intent to create a successor.
    - `retiring`: the successor is committed; both deliver until `overlap_ends_at`.
    - `deleting`: a claim under which the original is deleted at Monite.
    - `retired`: terminal, kept for audit; no secret, never current.
    """

    subscription_id: str
    version: int = 0
    secret: Secret | None = None
    rotated_at: datetime | None = None
    state: RecordState = "active"
    rotation_id: str | None = None
    claimed_by: str | None = None
    claim_ttl_seconds: float | None = None
    claim_expires_at: datetime | None = None  # informational (the writer's estimate)
    url: str | None = None
    object_type: str | None = None
    event_types: tuple[str, ...] = ()
    # -- swap fields (docs/swap.md, section 1); absent on a v2 record --
    swap_id: str | None = None
    swap_known_ids: tuple[str, ...] = ()
    swap_started_at: datetime | None = None
    # Vault's `created_time` of the swap's first intent, kept by every takeover
    # (which gets a newer `created_time`): twins are ordered by it.
    swap_intent_at: datetime | None = None
    swap_failures: int = 0
    # The `active` version the swap started from, so an undo can prove, from
    # Vault's history, that the secret it writes back is still that one.
    swap_start_version: int | None = None
    swap_start_created_time: datetime | None = None
    successor_id: str | None = None
    overlap_ends_at: datetime | None = None
    retired_at: datetime | None = None
    retired_secret_fingerprint: str | None = None
    predecessor_id: str | None = None
    overlap_seconds: float | None = None
    lineage: tuple[str, ...] = ()
    created_time: datetime | None = field(default=None, compare=False)

    @property
    def triple(self) -> Triple:
        return triple(self.url, self.object_type, self.event_types)

    @property
    def exists(self) -> bool:
        return self.version > 0

    def age(self, now: datetime) -> timedelta | None:
        """How old the stored secret is, or None when we never rotated it."""
        if self.rotated_at is None or self.secret is None:
            return None
        return now - self.rotated_at

    def fence_ends(self, cap: timedelta, floor: timedelta = timedelta(0)) -> datetime | None:
        """When this version's claim or settling horizon ends, on Vault's clock.

        `created_time + claim_ttl`, the ttl capped at `cap` whatever the record
        says. None when the record holds no fence, or when its fence cannot be
        measured (missing or unparseable fields): such a fence counts as over.
        A record written by protocol version 1 has no `claim_ttl_seconds`; its
        ttl is read as `claim_expires_at - created_time` (a wall clock of that
        host), at least `floor` (our own claim ttl: a v1 host whose clock runs
        behind must not shorten its claim), still capped.
        """
        if self.state not in FENCED_STATES or self.created_time is None:
            return None
        ttl = self.claim_ttl_seconds
        if ttl is None and self.claim_expires_at is not None:
            measured = (self.claim_expires_at - self.created_time).total_seconds()
            ttl = max(measured, floor.total_seconds())
        if ttl is None or not math.isfinite(ttl) or ttl <= 0:
            return None
        return self.created_time + min(timedelta(seconds=ttl), cap)

    def fenced(self, now: datetime, cap: timedelta, floor: timedelta = timedelta(0)) -> bool:
        """True while a claim or settling horizon still holds at Vault time `now`."""
        ends = self.fence_ends(cap, floor)
        return ends is not None and now < ends + CLOCK_MARGIN

    def held_by(self, rotation_id: str) -> bool:
        """True when this version is the claim of rotation `rotation_id`."""
        return self.rotation_id == rotation_id and self.state in (
            "rotating",
            "swapping",
            "deleting",
        )

    def claimed(
        self,
        subscription: Subscription,
        *,
        rotation_id: str,
        owner: str,
        ttl: timedelta,
        now: datetime,
    ) -> Record:
        """The claim write: same secret, state=rotating, fenced for `ttl` from its created_time."""
        return replace(
            self,
            state="rotating",
            rotation_id=rotation_id,
            claimed_by=owner,
            claim_ttl_seconds=ttl.total_seconds(),
            claim_expires_at=now + ttl,
            url=subscription.url,
            object_type=subscription.object_type,
            event_types=subscription.event_types,
        )

    def committed(
        self,
        regenerated: Regenerated,
        *,
        rotation_id: str,
        at: datetime,
        settle_for: timedelta | None,
    ) -> Record:
        """The commit write: the new secret, `active`, or `settling` for `settle_for`."""
        sub = regenerated.subscription
        active = replace(
            self,
            secret=regenerated.secret,
            rotated_at=at,
            state="active",
            rotation_id=rotation_id,
            claimed_by=None,
            claim_ttl_seconds=None,
            claim_expires_at=None,
            url=sub.url,
            object_type=sub.object_type,
            event_types=sub.event_types,
            swap_failures=0,  # a new secret: a later swap starts counting afresh
        )
        if settle_for is None:
            return active
        return active.settling(settle_for, owner=self.claimed_by)

    def settling(self, window: timedelta, *, owner: str | None) -> Record:
        """This secret, rotated once more when `window` has passed (a straggler may land)."""
        return replace(
            self,
            state="settling",
            claimed_by=owner,
            claim_ttl_seconds=window.total_seconds(),
            claim_expires_at=self.rotated_at + window if self.rotated_at is not None else None,
        )

    def stale(self, window: timedelta | None = None) -> Record:
        """The claim given back over a secret that may be dead: rotate it at once.

        `window` is kept as `claim_ttl_seconds`: how long a regenerate sent under
        an earlier claim may still land, so the next rotation settles that long.
        """
        return replace(
            self,
            state="stale",
            claimed_by=None,
            claim_ttl_seconds=window.total_seconds() if window is not None else None,
            claim_expires_at=None,
        )

    # -- swap transitions (protocol version 3, rotator.rotation.swap) --------------

    def swap_claimed(
        self,
        subscription: Subscription,
        *,
        rotation_id: str,
        owner: str,
        ttl: timedelta,
        now: datetime,
        swap_id: str,
        known_ids: tuple[str, ...],
    ) -> Record:
        """The claim and the intent to create a successor: `swapping`, secret untouched."""
        resumed = self.state == "swapping" and swap_id == self.swap_id
        return replace(
            self.claimed(subscription, rotation_id=rotation_id, owner=owner, ttl=ttl, now=now),
            state="swapping",
            swap_id=swap_id,
            swap_known_ids=known_ids,
            swap_started_at=self.swap_started_at if resumed else now,
            swap_intent_at=(self.swap_intent_at or self.created_time) if resumed else None,
            # A takeover keeps the start the intent recorded; a new swap starts from us.
            swap_start_version=self.swap_start_version if resumed else self.version,
            swap_start_created_time=(
                self.swap_start_created_time if resumed else self.created_time
            ),
            successor_id=None,
            overlap_ends_at=None,
        )

    def swap_undone(self, *, failed: bool = True) -> Record:
        """The swap ended without a successor: `active` again, its secret never touched.

        `failed` counts it toward the fallback to regenerate (policy.MAX_SWAP_FAILURES).
        """
        return replace(
            self,
            state="active",
            claimed_by=None,
            claim_ttl_seconds=None,
            claim_expires_at=None,
            swap_id=None,
            swap_known_ids=(),
            swap_started_at=None,
            swap_intent_at=None,
            swap_start_version=None,
            swap_start_created_time=None,
            swap_failures=self.swap_failures + 1 if failed else self.swap_failures,
            successor_id=None,
            overlap_ends_at=None,
        )

    def linked(self, successor_id: str, overlap_ends_at: datetime) -> Record:
        """The successor is committed: both deliver until `overlap_ends_at`; no claim."""
        return replace(
            self,
            state="retiring",
            claimed_by=None,
            claim_ttl_seconds=None,
            claim_expires_at=None,
            successor_id=successor_id,
            overlap_ends_at=overlap_ends_at,
            swap_failures=0,
        )

    def delete_claimed(
        self, *, rotation_id: str, owner: str, ttl: timedelta, now: datetime
    ) -> Record:
        """The claim under which the original is deleted at Monite."""
        return replace(
            self,
            state="deleting",
            rotation_id=rotation_id,
            claimed_by=owner,
            claim_ttl_seconds=ttl.total_seconds(),
            claim_expires_at=now + ttl,
        )

    def retired(self, now: datetime) -> Record:
        """Terminal: the original is deleted; its secret leaves the latest version."""
        fingerprint = self.secret.fingerprint() if self.secret is not None else None
        return replace(
            self,
            secret=None,
            state="retired",
            claimed_by=None,
            claim_ttl_seconds=None,
            claim_expires_at=None,
            retired_at=now,
            retired_secret_fingerprint=fingerprint or self.retired_secret_fingerprint,
        )

    def successor(
        self,
        created: Created,
        *,
        rotation_id: str,
        at: datetime,
        overlap: timedelta,
    ) -> Record:
        """The successor's first record: `active`, the create's secret, linked to this one."""
        sub = created.subscription
        return Record(
            subscription_id=sub.id,
            secret=created.secret,
            rotated_at=at,
            state="active",
            rotation_id=rotation_id,
            url=sub.url,
            object_type=sub.object_type,
            event_types=sub.event_types,
            swap_id=self.swap_id,
            predecessor_id=self.subscription_id,
            overlap_seconds=overlap.total_seconds(),
            lineage=(*self.lineage, self.subscription_id)[-MAX_LINEAGE:],
        )

    @property
    def intent_at(self) -> datetime | None:
        """When this swap's intent was first written, on Vault's clock (None: unknown)."""
        return self.swap_intent_at or self.created_time

    def vouched_by(self, start: Record) -> bool:
        """True when `start` (read from history) is the `active` version this swap began from.

        Then the secret this record carries is that version's, which nothing
        but a swap of this subscription could have replaced (and swaps never
        regenerate): writing it back as `active` keeps rule zero.
        """
        return (
            self.swap_start_created_time is not None
            and start.created_time == self.swap_start_created_time
            and start.state == "active"
            and start.secret is not None
            and start.secret == self.secret
        )

    def at_version(self, version: int, created_time: datetime | None = None) -> Record:
        return replace(self, version=version, created_time=created_time)

    def to_vault(self) -> dict[str, Any]:
        """The KV v2 `data` object, field names as the README's "What lands in Vault" gives."""
        return record_data(self)

    @classmethod
    def from_vault(
        cls,
        subscription_id: str,
        data: Mapping[str, Any],
        version: int,
        created_time: datetime | None = None,
    ) -> Record:
        """Parse a KV v2 `data` object, tolerating missing or foreign fields (`record_fields`)."""
        return cls(
            subscription_id=subscription_id,
            version=version,
            created_time=created_time,
            **record_fields(data),
        )
