"""The swap strategy (protocol version 3) for one original subscription, step by step.

See docs/swap.md for the design, its crash table and what protects each step.

Owns what happens between a decision to swap (or to move a swap on) and its
outcome: claim with the intent, check for a busy twin, create the successor,
commit its secret, link the original, and, after the overlap, claim the
deletion, check the successor, delete the original and retire its record.
Recovery of an expired `swapping` claim finds the successor or deletes the
one subscription nobody knows the secret of, then goes on or undoes.

Rule zero holds: the original's secret is never touched by a swap, so its
record may say `active` again whenever a swap is undone. A successor is
committed `active` because its secret is the only one Monite ever issued for
it, and its `cas=0` write proves nobody else claimed it.

Every step is written to Vault before it is taken; every create and delete
runs under a live claim judged on Vault's clock, as in `protocol.py`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import structlog

from rotator import events, policy
from rotator.errors import MoniteError, MoniteNotFound, VaultConflict, VaultError
from rotator.model import MAX_LINEAGE, SWAP_STATES, Created, Record, Subscription, format_time
from rotator.policy import Decision
from rotator.reasons import OutcomeKind, Reason
from rotator.retry import monite_backoff, retry
from rotator.rotation._commit import (
    Committer,
    Start,
    check_start,
    read_back,
    secret_in_memory,
    write_over_claim,
)
from rotator.rotation._types import CommitFailed, Context, Outcome, Superseded
from rotator.rotation.protocol import rotate

log = structlog.get_logger("rotator.rotation")


async def swap(
    ctx: Context,
    decision: Decision,
    listing: Sequence[Subscription],
    successors: frozenset[str] = frozenset(),
) -> Outcome:
    """Start, recover or finish one swap; never raises.

    `listing` is the cycle's listing (the snapshot the intent records);
    `successors` the ids that records in Vault name as a successor.
    """
    return await _Swap(ctx, decision, listing, successors).run()


class Link(Enum):
    """What step 6 came to."""

    LINKED = "linked"  # O is `retiring`, its deadline written
    DEFERRED = "deferred"  # not now: O's claim stays, and its recovery links S
    TAKEN = "taken"  # another rotation owns O's record: no link, both deliver


class _Swap:
    """One swap step sequence of one original; its methods are the steps, in order."""

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

    async def run(self) -> Outcome:
        try:
            state = self.start.state
            if state in ("retiring", "deleting", "retired"):
                return await self.finish()
            if state == "swapping":
                return await self.recover()
            return await self.begin()
        except Exception as exc:
            # A bug costs one swap, never the cycle: a claim left behind is recovered.
            self.log.critical(
                events.SWAP_FAILED, stage="unexpected", error=f"{type(exc).__name__}: {exc}"
            )
            return self.outcome(OutcomeKind.FAILED, Reason.INTERNAL_ERROR, error=str(exc))

    # -- steps 1 and 2: snapshot, claim with the intent ----------------------------------

    async def begin(self) -> Outcome:
        """Steps 1 to 6: a new swap of an `active` original."""
        if not await self.predecessor_retired():
            # A second swap would race the first one's step 9 (which may then see
            # this subscription gone and revive its original): regenerate instead.
            # The original still delivers every event with a valid secret.
            self.log.info(events.SWAP_FALLBACK, why=Reason.PREDECESSOR_RETIRING)
            fallback = replace(
                self.decision, strategy="regenerate", strategy_reason=Reason.PREDECESSOR_RETIRING
            )
            return await rotate(self.ctx, fallback)
        moved = await self.start_moved()
        if moved is not None:
            return moved
        known = tuple(
            sorted({s.id for s in self.listing if s.triple == self.sub.triple} | {self.sub.id})
        )
        claimed = await self.claim(
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
        if isinstance(claimed, Outcome):
            return claimed
        checked = await self.check_start(claimed)
        if checked is Start.REPLACED:
            return self.outcome(OutcomeKind.CONFLICT, Reason.RECORD_REPLACED)
        if checked is Start.UNVERIFIED:
            return await self.undo(claimed, Reason.VAULT_ERROR, failed=False)
        self.vouched = True
        self.log.info(
            events.SWAP_STARTED,
            vault_version=claimed.version,
            rotation_id=self.rotation_id,
            known_ids=len(known),
            claim_expires_at=format_time(claimed.fence_ends(self.ctx.max_claim_ttl)),
        )
        try:
            busy = await self.twin_busy(claimed)  # step 3
        except VaultError:
            busy = "unreadable"  # cannot tell: back off rather than race an unseen intent
        if busy is not None:
            return await self.undo(claimed, Reason.SWAP_TWIN_BUSY, failed=False, twin=busy)
        created = await self.create(claimed)  # step 4
        if isinstance(created, Outcome):
            return created
        return await self.commit_successor(claimed, created)  # steps 5 and 6

    async def start_moved(self) -> Outcome | None:
        """None when the cached start is still Vault's latest version (read uncached).

        A record deleted and made again reuses version numbers: a claim built on
        a stale cache could land and copy a dead secret into `swapping` until the
        start check undoes it. Reading first shrinks that to a race of one request.
        """
        try:
            latest = await self.ctx.store.read(self.sub.id)
        except VaultError as exc:
            self.log.error(events.SWAP_FAILED, stage="claim", error=str(exc))
            return self.outcome(OutcomeKind.FAILED, Reason.VAULT_ERROR, error=str(exc))
        if (latest.version, latest.created_time) == (self.start.version, self.start.created_time):
            return None
        self.ctx.remember(latest)
        self.log.info(events.ROTATION_CONFLICT, stage="swap_claim", error="the record moved on")
        return self.outcome(OutcomeKind.CONFLICT, Reason.RECORD_REPLACED)

    async def predecessor_retired(self) -> bool:
        """True unless this subscription is a successor whose original is not yet retired.

        Read uncached: the cycle's records may miss the original (unreadable, or
        a stale cache), and on doubt the answer is no.
        """
        predecessor = self.start.predecessor_id
        if predecessor is None:
            return True
        try:
            record = await self.ctx.store.read(predecessor)
        except VaultError:
            return False
        return not record.exists or record.state == "retired" or record.successor_id != self.sub.id

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

    # -- step 4: create the successor ------------------------------------------------------

    async def create(self, claimed: Record) -> Created | Outcome:
        """One create that may have been applied, at most; retried only when surely not applied."""
        ctx = self.ctx
        sub = self.sub

        async def attempt() -> Created | None:
            if self.deadline - ctx.clock.monotonic() < self.need:
                return None
            return await ctx.monite.create_subscription(
                sub.url, sub.object_type, sub.event_types, send_by=self.deadline - self.need
            )

        def on_retry(attempt_no: int, exc: BaseException, wait: float) -> None:
            self.log.info(
                events.MONITE_RETRY,
                operation="create_subscription",
                status=getattr(exc, "status", None),
                attempt=attempt_no,
                retry_in_seconds=round(wait, 3),
                error=str(exc),
            )

        try:
            created = await retry(
                attempt,
                backoff=monite_backoff(ctx.max_retries + 1),
                retryable=lambda exc: (
                    isinstance(exc, MoniteError) and exc.retryable and not exc.may_have_applied
                ),
                clock=ctx.clock,
                rng=ctx.rng,
                on_retry=on_retry,
                deadline=self.deadline - self.need,
                whole_wait=True,
            )
        except MoniteError as exc:
            if exc.may_have_applied:
                # A subscription may exist whose secret nobody knows: keep the claim;
                # recovery finds it by the intent and deletes it.
                self.log.error(
                    events.SWAP_FAILED,
                    stage="create",
                    error=str(exc),
                    rotation_id=self.rotation_id,
                    recovery_at=format_time(claimed.fence_ends(ctx.max_claim_ttl)),
                )
                return self.outcome(OutcomeKind.FAILED, Reason.CREATE_DOUBTFUL, error=str(exc))
            return await self.undo(claimed, Reason.CREATE_REFUSED, failed=True, error=str(exc))
        if created is None:
            return await self.undo(claimed, Reason.CLAIM_TOO_SHORT, failed=False)
        self.log.info(
            events.SWAP_CREATED,
            successor_id=created.subscription.id,
            secret_fingerprint=created.secret.fingerprint(),
            rotation_id=self.rotation_id,
        )
        return created

    # -- steps 5 and 6: commit the successor, link the original --------------------------------

    async def commit_successor(self, claimed: Record, created: Created) -> Outcome:
        """Write S v1 with cas=0 (its secret is in memory only), then link O to it."""
        ctx = self.ctx
        successor_id = created.subscription.id
        fingerprint = created.secret.fingerprint()
        received = ctx.clock.monotonic()
        # No Vault call while the secret is in memory only: a failing one would drop it.
        at = self.vault_time()
        record = claimed.successor(
            created, rotation_id=self.rotation_id, at=at, overlap=ctx.overlap
        )
        committer = Committer(ctx, successor_id, self.rotation_id, self.log)
        try:
            with secret_in_memory(
                self.log,
                events.SWAP_FAILED,
                successor_id=successor_id,
                rotation_id=self.rotation_id,
                secret_fingerprint=fingerprint,
                recovery_at=format_time(claimed.fence_ends(ctx.max_claim_ttl)),
            ):
                committed = await committer.write(record, cas=0, fingerprint=fingerprint)
        except Exception as exc:  # a bug, logged above; recovery deletes S as an orphan
            return self.outcome(OutcomeKind.FAILED, Reason.INTERNAL_ERROR, error=str(exc))
        if isinstance(committed, CommitFailed):
            return await self.commit_failed(claimed, successor_id, fingerprint, committed.error)
        exposure = ctx.clock.monotonic() - received
        if isinstance(committed, Superseded):
            # An adopter claimed S first: its own regenerate puts S's current secret
            # in Vault; ours is dead. S is still O's successor.
            self.log.warning(
                events.SWAP_SUCCESSOR_ADOPTED,
                successor_id=successor_id,
                secret_fingerprint=fingerprint,
                holder=committed.current.rotation_id,
            )
            overlap_from = at
        else:
            ctx.remember(committed)
            overlap_from = committed.created_time or at
            self.log.info(
                events.SWAP_COMMITTED,
                successor_id=successor_id,
                vault_version=committed.version,
                secret_fingerprint=fingerprint,
                exposure_ms=round(exposure * 1000, 3),
            )
        overlap_ends = overlap_from + ctx.overlap
        linked = await self.link(claimed, successor_id, overlap_ends)
        if linked is Link.TAKEN:
            return self.outcome(
                OutcomeKind.FAILED,
                Reason.DUPLICATE_SUSPECTED,
                successor_id=successor_id,
                swap_step="aborted",
            )
        if isinstance(committed, Superseded):
            return self.outcome(
                OutcomeKind.SWAPPED,
                self.decision.reason,
                successor_id=successor_id,
                swap_step="committed",
            )
        return self.outcome(
            OutcomeKind.SWAPPED,
            self.decision.reason,
            successor_id=successor_id,
            vault_version=committed.version,
            secret_fingerprint=fingerprint,
            exposure_seconds=exposure,
            rotated_at=committed.rotated_at,
            overlap_ends_at=overlap_ends if linked is Link.LINKED else None,
            swap_step="committed",
        )

    async def commit_failed(
        self, claimed: Record, successor_id: str, fingerprint: str, error: str
    ) -> Outcome:
        """Vault took no commit: delete S while our claim still covers it, then undo (C10)."""
        ctx = self.ctx
        if self.deadline - ctx.clock.monotonic() >= self.need:
            try:
                await ctx.monite.delete_subscription(
                    successor_id, send_by=self.deadline - self.need
                )
            except MoniteError as exc:
                self.log.critical(
                    events.SWAP_FAILED,
                    stage="commit",
                    successor_id=successor_id,
                    secret_fingerprint=fingerprint,
                    error=f"{error}; deleting the successor failed too: {exc}",
                )
                return self.outcome(OutcomeKind.FAILED, Reason.COMMIT_FAILED, error=error)
            self.log.warning(events.SWAP_ORPHAN_DELETED, successor_id=successor_id, stage="commit")
            return await self.undo(claimed, Reason.COMMIT_FAILED, failed=True, error=error)
        # Too late to delete under our claim: recovery finds S as the orphan.
        self.log.critical(
            events.SWAP_FAILED,
            stage="commit",
            successor_id=successor_id,
            secret_fingerprint=fingerprint,
            error=error,
            recovery_at=format_time(claimed.fence_ends(ctx.max_claim_ttl)),
        )
        return self.outcome(OutcomeKind.FAILED, Reason.COMMIT_FAILED, error=error)

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

    # -- recovery of an expired `swapping` claim ------------------------------------------------

    async def recover(self) -> Outcome:
        """Take the claim over; find the successor (link) or the orphan (delete, undo)."""
        start = self.start
        claimed = await self.claim(
            lambda now: start.swap_claimed(
                self.sub,
                rotation_id=self.rotation_id,
                owner=self.ctx.owner,
                ttl=self.ctx.claim_ttl,
                now=now,
                swap_id=self.swap_id,
                known_ids=start.swap_known_ids,
            )
        )
        if isinstance(claimed, Outcome):
            return claimed
        checked = await self.check_start(claimed)
        if checked is Start.REPLACED:
            return self.outcome(OutcomeKind.CONFLICT, Reason.RECORD_REPLACED)
        if checked is Start.UNVERIFIED:
            # Never delete anything on a record we cannot vouch for: try again later.
            self.log.error(events.SWAP_FAILED, stage="recover", error="takeover not verified")
            return self.outcome(OutcomeKind.FAILED, Reason.VAULT_ERROR)
        try:
            busy = await self.twin_busy(claimed)
        except VaultError as exc:
            self.log.error(events.SWAP_FAILED, stage="recover", error=str(exc))
            return self.outcome(OutcomeKind.FAILED, Reason.VAULT_ERROR, error=str(exc))
        if busy is not None:
            # An older intent on this triple was there at our step 3, so this swap
            # backed off before creating anything (its release did not land): the
            # candidates are that intent's to judge. Nothing is deleted here.
            return await self.undo(
                claimed, Reason.SWAP_TWIN_BUSY, failed=False, kind=OutcomeKind.SKIPPED, twin=busy
            )
        known = set(start.swap_known_ids) | {self.sub.id}
        candidates: list[str] = []
        managed: list[str] = []
        for other in self.listing:
            if other.id in known or other.triple != start.triple:
                continue
            try:
                record = await self.ctx.store.read(other.id)
            except VaultError as exc:
                self.log.error(events.SWAP_FAILED, stage="recover", error=str(exc))
                return self.outcome(OutcomeKind.FAILED, Reason.VAULT_ERROR, error=str(exc))
            if record.swap_id == self.swap_id and record.predecessor_id == self.sub.id:
                return await self.resume_link(claimed, record)
            if not record.exists and other.id not in self.successors:
                candidates.append(other.id)
            elif record.secret is not None:
                managed.append(other.id)
        if managed:
            # Created after the intent and already managed: our successor adopted
            # before its commit, or a twin someone made meanwhile. Both deliver.
            self.log.warning(events.SWAP_DUPLICATE_SUSPECTED, others=sorted(managed))
        if len(candidates) > 1:
            self.log.critical(events.SWAP_ORPHAN_AMBIGUOUS, candidates=sorted(candidates))
            return await self.undo(claimed, Reason.ORPHAN_AMBIGUOUS, failed=True)
        if candidates:
            orphan = candidates[0]
            try:
                deleted = await self.ctx.monite.delete_subscription(
                    orphan, send_by=self.deadline - self.need
                )
            except MoniteError as exc:
                self.log.error(
                    events.SWAP_FAILED, stage="orphan_delete", successor_id=orphan, error=str(exc)
                )
                return self.outcome(OutcomeKind.FAILED, Reason.MONITE_ERROR, error=str(exc))
            if not deleted:
                # Someone removed it first: most likely an older twin intent's own
                # recovery, and this swap had backed off before creating anything.
                self.log.info(events.SWAP_RECOVERED, phase="undone", orphan_already_gone=orphan)
                return await self.undo(
                    claimed, Reason.SWAP_CLAIM_EXPIRED, failed=False, kind=OutcomeKind.SKIPPED
                )
            self.log.warning(events.SWAP_ORPHAN_DELETED, successor_id=orphan)
        self.log.info(events.SWAP_RECOVERED, phase="undone", orphans_deleted=len(candidates))
        # The record is repaired: a skip, not a failure of this cycle; the count goes on.
        return await self.undo(
            claimed, Reason.SWAP_CLAIM_EXPIRED, failed=True, kind=OutcomeKind.SKIPPED
        )

    async def resume_link(self, claimed: Record, successor: Record) -> Outcome:
        """C9: the successor was committed before the crash; link O to it now."""
        overlap_from = successor.created_time
        if successor.version > 1:
            try:
                overlap_from = (
                    await self.ctx.store.read(successor.subscription_id, version=1)
                ).created_time
            except VaultError:
                overlap_from = None
        if overlap_from is None:
            overlap_from = self.vault_time()  # later than S's creation: a longer overlap, safe
        overlap_ends = overlap_from + self.ctx.overlap
        linked = await self.link(claimed, successor.subscription_id, overlap_ends)
        if linked is Link.TAKEN:
            return self.outcome(
                OutcomeKind.FAILED,
                Reason.DUPLICATE_SUSPECTED,
                successor_id=successor.subscription_id,
                swap_step="aborted",
            )
        self.log.info(
            events.SWAP_RECOVERED, phase="committed", successor_id=successor.subscription_id
        )
        return self.outcome(
            OutcomeKind.SWAPPED,
            self.decision.reason,
            successor_id=successor.subscription_id,
            vault_version=successor.version,
            secret_fingerprint=(
                successor.secret.fingerprint() if successor.secret is not None else None
            ),
            rotated_at=successor.rotated_at,
            overlap_ends_at=overlap_ends if linked is Link.LINKED else None,
            swap_step="committed",
        )

    # -- steps 8 to 11: after the overlap, delete the original and retire its record ----------

    async def finish(self) -> Outcome:
        """Claim the deletion, check the successor, delete O at Monite, retire its record."""
        start = self.start
        claimed = await self.claim(
            lambda now: start.delete_claimed(
                rotation_id=self.rotation_id, owner=self.ctx.owner, ttl=self.ctx.claim_ttl, now=now
            )
        )
        if isinstance(claimed, Outcome):
            return claimed
        checked = await self.check_start(claimed)
        if checked is Start.REPLACED:
            return self.outcome(OutcomeKind.CONFLICT, Reason.RECORD_REPLACED)
        if checked is Start.UNVERIFIED:  # the claim stays; its takeover tries again
            self.log.error(events.SWAP_FAILED, stage="delete", error="claim not verified")
            return self.outcome(OutcomeKind.FAILED, Reason.VAULT_ERROR)
        self.log.info(
            events.SWAP_OVERLAP_ENDED,
            successor_id=start.successor_id,
            vault_version=claimed.version,
            overlap_ends_at=format_time(start.overlap_ends_at),
        )
        if start.state != "retired":  # a retired original was checked before
            problem = await self.successor_problem(claimed)  # step 9
            if problem is not None:
                return problem
        try:  # step 10
            deleted = await self.ctx.monite.delete_subscription(
                self.sub.id, send_by=self.deadline - self.need
            )
        except MoniteError as exc:
            # The claim stays; when it expires the deletion is taken over.
            self.log.error(events.SWAP_FAILED, stage="delete", error=str(exc))
            return self.outcome(OutcomeKind.FAILED, Reason.MONITE_ERROR, error=str(exc))
        self.log.info(
            events.SWAP_DELETED, successor_id=start.successor_id, already_gone=not deleted
        )
        try:  # step 11
            retired = await write_over_claim(
                self.ctx, claimed.retired(self.vault_time()), claimed, log=self.log
            )
        except VaultError as exc:
            self.ctx.reread(self.sub.id)
            self.log.error(events.SWAP_FAILED, stage="retire", error=str(exc))
            return self.outcome(OutcomeKind.FAILED, Reason.VAULT_ERROR, error=str(exc))
        self.ctx.remember(retired)
        self.log.info(
            events.SWAP_RETIRED,
            successor_id=start.successor_id,
            vault_version=retired.version,
            secret_fingerprint=retired.retired_secret_fingerprint,
        )
        return self.outcome(
            OutcomeKind.SWAPPED,
            self.decision.reason,
            successor_id=start.successor_id,
            vault_version=retired.version,
            secret_fingerprint=retired.retired_secret_fingerprint,
            retired=True,
            # Deleting a retired original again (list lag, a straggler) is no new step.
            swap_step="retired" if start.state != "retired" else None,
        )

    async def successor_problem(self, claimed: Record) -> Outcome | None:
        """Step 9: S must exist at Monite with O's triple and its secret in Vault; else abort.

        S may have been swapped in turn (by a replica that did not see O still
        retiring): the check follows the chain of successors to the newest.
        """
        ctx = self.ctx
        successor_id = claimed.successor_id
        if successor_id is None:
            return await self.abort(claimed, Reason.SUCCESSOR_GONE, delete=None)
        try:
            record = await ctx.store.read(successor_id)
            for _ in range(MAX_LINEAGE):
                if record.state not in SWAP_STATES or record.successor_id is None:
                    break
                if record.state != "retired":
                    break  # S is still delivering beside its own successor: S counts
                successor_id = record.successor_id
                record = await ctx.store.read(successor_id)
        except VaultError as exc:
            self.log.error(events.SWAP_FAILED, stage="check", error=str(exc))
            return self.outcome(OutcomeKind.FAILED, Reason.VAULT_ERROR, error=str(exc))
        try:
            at_monite: Subscription | None = await ctx.monite.get_subscription(successor_id)
        except MoniteNotFound:
            at_monite = None
        except MoniteError as exc:
            self.log.error(events.SWAP_FAILED, stage="check", error=str(exc))
            return self.outcome(OutcomeKind.FAILED, Reason.MONITE_ERROR, error=str(exc))
        if at_monite is None:
            return await self.abort(claimed, Reason.SUCCESSOR_GONE, delete=None)
        if record.secret is None:
            # Nobody can know S's secret: delete S rather than leave it delivering,
            # but only while O delivers. If O is gone already (a delete that landed
            # late), deleting S would leave nothing: retire O; S, record-less, is
            # adopted and regenerated. If Monite cannot say, keep the claim.
            try:
                await ctx.monite.get_subscription(self.sub.id)
            except MoniteNotFound:
                return None
            except MoniteError as exc:
                self.log.error(events.SWAP_FAILED, stage="check", error=str(exc))
                return self.outcome(OutcomeKind.FAILED, Reason.MONITE_ERROR, error=str(exc))
            return await self.abort(claimed, Reason.SUCCESSOR_GONE, delete=successor_id)
        if at_monite.triple != claimed.triple:
            return await self.abort(claimed, Reason.SUCCESSOR_DIVERGED, delete=None)
        return None

    async def abort(self, claimed: Record, reason: Reason, *, delete: str | None) -> Outcome:
        """O is never deleted unless S exists with its secret in Vault: O goes back to `active`."""
        if delete is not None:
            try:
                await self.ctx.monite.delete_subscription(delete, send_by=self.deadline - self.need)
            except MoniteError as exc:
                self.log.error(events.SWAP_FAILED, stage="abort", error=str(exc))
                return self.outcome(OutcomeKind.FAILED, Reason.MONITE_ERROR, error=str(exc))
        level = "critical" if reason == Reason.SUCCESSOR_DIVERGED else "error"
        getattr(self.log, level)(
            events.SWAP_ABORTED, abort_reason=reason, successor_id=claimed.successor_id
        )
        restored = await self.restored(claimed, failed=True)
        try:
            await write_over_claim(self.ctx, restored, claimed, log=self.log)
        except VaultError:
            self.ctx.reread(self.sub.id)
        return self.outcome(OutcomeKind.FAILED, reason, swap_step="aborted")


__all__ = ["swap"]
