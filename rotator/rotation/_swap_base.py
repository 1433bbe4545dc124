"""What every step of a swap shares: its state, claims, checks, the link and the undo.

`_SwapBase` holds one swap's context and the small operations the steps in
`swap.py` (steps 1 to 6) and `_swap_later.py` (recovery, steps 8 to 11) are
built from: writing a claim (and the intent), Vault's time carried from it,
the checks of what a claim replaced and of the swap's start, the twin check
(step 3), the link (step 6) and the undo. See docs/swap.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import structlog

from rotator import events, policy
from rotator.errors import VaultConflict, VaultError
from rotator.model import SWAP_STATES, Record, Subscription, format_time
from rotator.policy import Decision
from rotator.reasons import OutcomeKind, Reason
from rotator.rotation._commit import (
    Start,
    check_start,
    read_back,
    write_over_claim,
)
from rotator.rotation._types import Context, Outcome

log = structlog.get_logger("rotator.rotation")


class Link(Enum):
    """What step 6 came to."""

    LINKED = "linked"  # O is `retiring`, its deadline written
    DEFERRED = "deferred"  # not now: O's claim stays, and its recovery links S
    TAKEN = "taken"  # another rotation owns O's record: no link, both deliver


class _SwapBase:
    """One swap of one original: its context and the operations its steps share."""

    def __init__(
        self,
        ctx: Context,
        decision: Decision,
        listing: Sequence[Subscription],
        successors: frozenset[str],
    ) -> None:
        self.ctx = ctx
        self.decision = decision
        self.sub = decision.subscription
        self.start = decision.record
        self.listing = listing
        self.successors = successors
        self.rotation_id = uuid.uuid4().hex
        # A swap in flight keeps its id across takeovers; a new one (even of a
        # successor, which carries its parent's id) gets its own.
        resumed = self.start.state in SWAP_STATES and self.start.swap_id is not None
        self.swap_id = self.start.swap_id if resumed and self.start.swap_id else uuid.uuid4().hex
        # True once this process verified the `active` start of its own swap.
        self.vouched = False
        self.need = 2 * ctx.monite.request_timeout
        self.deadline = 0.0
        # Vault's time at our claim and the monotonic time then: later times need no call.
        self.claimed_at: tuple[datetime, float] | None = None
        self.log = log.bind(
            subscription_id=self.sub.id,
            object_type=self.sub.object_type,
            reason=decision.reason,
            swap_id=self.swap_id,
        )

    def outcome(self, kind: OutcomeKind, reason: str, **fields: Any) -> Outcome:
        return Outcome(self.sub.id, self.sub.object_type, kind, reason, **fields)

    async def claim_intent(self, known: tuple[str, ...]) -> Record | Outcome:
        """Step 2 (or a takeover of it): the claim plus the intent, `swapping`."""
        return await self.claim(
            lambda now: self.start.swap_claimed(
                self.sub,
                rotation_id=self.rotation_id,
                owner=self.ctx.owner,
                ttl=self.ctx.claim_ttl,
                now=now,
                swap_id=self.swap_id,
                known_ids=known,
            )
        )

    async def claim(self, build: Any) -> Record | Outcome:
        """Write `build(now)` with cas on the start's version; the deadline is taken first."""
        ctx = self.ctx
        self.deadline = ctx.clock.monotonic() + ctx.claim_ttl.total_seconds()
        now = await ctx.store.vault_now()
        wanted: Record = build(now)
        try:
            claimed = await ctx.store.write(wanted, cas=self.start.version)
        except VaultConflict:
            ctx.reread(self.sub.id)
            self.log.info(events.ROTATION_CONFLICT, stage="swap_claim")
            return self.outcome(OutcomeKind.CONFLICT, Reason.CLAIMED_ELSEWHERE)
        except VaultError as exc:
            landed = await read_back(ctx, self.sub.id)
            if landed is None or not landed.held_by(self.rotation_id):
                ctx.reread(self.sub.id)
                self.log.error(events.SWAP_FAILED, stage="claim", error=str(exc))
                return self.outcome(OutcomeKind.FAILED, Reason.VAULT_ERROR, error=str(exc))
            claimed = landed
        ctx.remember(claimed)
        self.claimed_at = (claimed.created_time or now, ctx.clock.monotonic())
        return claimed

    def vault_time(self) -> datetime:
        """Vault's time now, carried from our claim on the monotonic clock (no Vault call)."""
        assert self.claimed_at is not None, "only after a claim"
        vault_time, local = self.claimed_at
        return vault_time + timedelta(seconds=self.ctx.clock.monotonic() - local)

    async def check_start(self, claimed: Record) -> Start:
        """v2's check of the version our claim replaced (`check_start`); restores another's."""
        window = policy.unseen_claim_window(self.ctx.claim_ttl, self.ctx.max_claim_ttl)
        return await check_start(self.ctx, self.start, claimed, restore_window=window, log=self.log)

    async def start_vouched(self, claimed: Record) -> bool:
        """May `claimed`'s secret be written back `active`? Only if the swap's start proves it."""
        if self.vouched:
            return True
        if claimed.swap_start_version is None:
            return False
        try:
            start = await self.ctx.store.read(self.sub.id, version=claimed.swap_start_version)
        except VaultError:
            return False
        return claimed.vouched_by(start)

    # -- step 3: a twin that is swapping first ---------------------------------------------

    async def twin_busy(self, claimed: Record) -> str | None:
        """The id of a twin (same triple) whose swap intent is older than ours, if any.

        Ordered by when each intent was first written (`intent_at`, Vault's
        time, kept across takeovers): a recovery that takes over an older
        intent renews its `created_time`, and must still come first.
        """
        ours = (claimed.intent_at, self.sub.id)
        for twin in self.listing:
            if twin.id == self.sub.id or twin.triple != self.sub.triple:
                continue
            record = await self.ctx.store.read(twin.id)  # VaultError: the caller cannot tell
            theirs = record.intent_at
            if record.state != "swapping" or theirs is None:
                continue
            if ours[0] is None or (theirs, twin.id) < ours:
                return twin.id
        return None

    async def link(self, claimed: Record, successor_id: str, overlap_ends: datetime) -> Link:
        """Step 6: O becomes `retiring`; when it cannot, say who will (`Link`)."""
        ctx = self.ctx
        linked = claimed.linked(successor_id, overlap_ends)
        try:
            written = await write_over_claim(ctx, linked, claimed, log=self.log)
        except VaultConflict:
            current = await read_back(ctx, self.sub.id)
            if current is None or (current.state == "swapping" and current.swap_id == self.swap_id):
                # Our claim was taken over: that recovery finds S by its swap id and links.
                self.log.info(events.ROTATION_CONFLICT, stage="link", successor_id=successor_id)
                return Link.DEFERRED
            if current.secret is not None or current.rotation_id is not None:
                # Another rotation owns O's record now (it was deleted and adopted):
                # O will not be retired, and both subscriptions deliver.
                self.log.critical(
                    events.SWAP_DUPLICATE_SUSPECTED,
                    successor_id=successor_id,
                    holder=current.rotation_id,
                    holder_state=current.state,
                )
                return Link.TAKEN
            try:  # O's record vanished (M1): write it again from memory
                written = await ctx.store.write(linked, cas=current.version)
            except VaultError as exc:
                self.log.error(events.SWAP_FAILED, stage="link", error=str(exc))
                ctx.reread(self.sub.id)
                return Link.DEFERRED
        except VaultError as exc:
            self.log.error(events.SWAP_FAILED, stage="link", error=str(exc))
            ctx.reread(self.sub.id)
            return Link.DEFERRED
        ctx.remember(written)
        self.log.info(
            events.SWAP_LINKED,
            successor_id=successor_id,
            vault_version=written.version,
            overlap_ends_at=format_time(overlap_ends),
        )
        return Link.LINKED

    # -- undo: the swap ends without a successor -------------------------------------------------

    async def undo(
        self,
        claimed: Record,
        reason: Reason,
        *,
        failed: bool,
        kind: OutcomeKind | None = None,
        **fields: Any,
    ) -> Outcome:
        """Write O back `active`, its secret never touched; `failed` counts toward fallback.

        `active` only when the swap's start proves the secret (`start_vouched`):
        otherwise `stale`, and protocol v2 regenerates it, as rule zero asks.
        """
        undone = await self.restored(claimed, failed=failed)
        try:
            await write_over_claim(self.ctx, undone, claimed, log=self.log)
        except VaultError:
            self.ctx.reread(self.sub.id)  # the claim stays; recovery undoes it
        self.log.info(
            events.SWAP_RELEASED,
            reason=reason,
            rotation_id=self.rotation_id,
            state=undone.state,
            **fields,
        )
        if kind is None:
            kind = OutcomeKind.FAILED if failed else OutcomeKind.SKIPPED
        return self.outcome(kind, reason, error=fields.get("error"), swap_step="undone")

    async def restored(self, claimed: Record, *, failed: bool) -> Record:
        """The original as a swap that ended without a successor leaves it."""
        undone = claimed.swap_undone(failed=failed)
        if await self.start_vouched(claimed):
            return undone
        window = policy.unseen_claim_window(self.ctx.claim_ttl, self.ctx.max_claim_ttl)
        return undone.stale(window)
