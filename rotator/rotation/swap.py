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

from collections.abc import Sequence

from rotator import events
from rotator.errors import MoniteError, VaultError
from rotator.model import Created, Record, Subscription, format_time
from rotator.policy import Decision
from rotator.reasons import OutcomeKind, Reason
from rotator.rotation._commit import (
    Committer,
    Start,
    secret_in_memory,
)
from rotator.rotation._monite_call import retry_monite_call
from rotator.rotation._swap_base import Link
from rotator.rotation._swap_later import _SwapLater
from rotator.rotation._types import CommitFailed, Context, Outcome, Superseded


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


class _Swap(_SwapLater):
    """One swap step sequence of one original: steps 1 to 6 here, in order.

    Shared operations (claims, checks, link, undo) are in `_swap_base`; the
    recovery and steps 8 to 11 in `_swap_later`.
    """

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
            # this subscription gone and revive its original), and a regenerate
            # would make consumers reject: wait. The original delivers meanwhile.
            self.log.info(events.ROTATION_SKIPPED, reason=Reason.PREDECESSOR_RETIRING)
            return self.outcome(OutcomeKind.SKIPPED, Reason.PREDECESSOR_RETIRING)
        moved = await self.start_moved()
        if moved is not None:
            return moved
        known = tuple(
            sorted({s.id for s in self.listing if s.triple == self.sub.triple} | {self.sub.id})
        )
        claimed = await self.claim_intent(known)
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

        try:
            created = await retry_monite_call(
                ctx,
                self.log,
                "create_subscription",
                attempt,
                retryable=lambda exc: (
                    isinstance(exc, MoniteError) and exc.retryable and not exc.may_have_applied
                ),
                deadline=self.deadline - self.need,
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


__all__ = ["swap"]
