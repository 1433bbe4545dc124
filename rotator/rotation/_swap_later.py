"""A swap after its create: recovery of an expired `swapping` claim, and steps 8 to 11.

Recovery finds the successor (and links) or the one subscription nobody knows
the secret of (deletes it, undoes). After the overlap: claim the deletion,
check the successor, delete the original at Monite, retire its record. See
docs/swap.md, sections 2 and 3.
"""

from __future__ import annotations

from rotator import events
from rotator.errors import MoniteError, MoniteNotFound, VaultError
from rotator.model import MAX_LINEAGE, SWAP_STATES, Record, Subscription, format_time
from rotator.reasons import OutcomeKind, Reason
from rotator.rotation._commit import (
    Start,
    write_over_claim,
)
from rotator.rotation._swap_base import Link, _SwapBase
from rotator.rotation._types import Outcome


class _SwapLater(_SwapBase):
    """The steps that run a claim ttl or an overlap after the create, in order."""

    # -- recovery of an expired `swapping` claim ------------------------------------------------

    async def recover(self) -> Outcome:
        """Take the claim over; find the successor (link) or the orphan (delete, undo)."""
        start = self.start
        claimed = await self.claim_intent(start.swap_known_ids)
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
        # Both delivered from the successor's commit (its deadline less the overlap,
        # on Vault's clock) until now: what the overlap really was.
        ends = start.overlap_ends_at
        overlap = None
        if ends is not None and start.state != "retired":
            overlap = max(0.0, (self.vault_time() - (ends - self.ctx.overlap)).total_seconds())
        self.log.info(
            events.SWAP_RETIRED,
            successor_id=start.successor_id,
            vault_version=retired.version,
            secret_fingerprint=retired.retired_secret_fingerprint,
            overlap_seconds=None if overlap is None else round(overlap, 3),
        )
        return self.outcome(
            OutcomeKind.SWAPPED,
            self.decision.reason,
            successor_id=start.successor_id,
            vault_version=retired.version,
            secret_fingerprint=retired.retired_secret_fingerprint,
            retired=True,
            overlap_seconds=overlap,
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
        # Only onto O's own successor: one that S's own swap replaced was not what
        # the operator disabled (they may have disabled a leftover O to end duplicates).
        if self.sub.disabled and at_monite.enabled and successor_id == claimed.successor_id:
            return await self.disable_successor(claimed, successor_id)
        return None

    async def disable_successor(self, claimed: Record, successor_id: str) -> Outcome | None:
        """Q3: an operator disabled O during the overlap; S, which replaces O, must not
        keep delivering what they turned off. None when O may now be deleted."""
        try:
            await self.ctx.monite.disable_subscription(
                successor_id, send_by=self.deadline - self.need
            )
        except MoniteNotFound:
            return await self.abort(claimed, Reason.SUCCESSOR_GONE, delete=None)
        except MoniteError as exc:
            if exc.retryable:
                # The claim stays: when it expires the deletion, and this, are taken over.
                self.log.error(events.SWAP_FAILED, stage="disable", error=str(exc))
                return self.outcome(OutcomeKind.FAILED, Reason.MONITE_ERROR, error=str(exc))
            # Refused for good (no permission, say): retrying would keep O forever.
            # O is still deleted, S still delivers: say so, loudly, and how to fix it.
            self.log.critical(
                events.SWAP_FAILED,
                stage="disable",
                successor_id=successor_id,
                error=str(exc),
                fix="the successor is still enabled: disable it by hand, and give the Monite "
                "client permission to disable webhook subscriptions",
            )
            return None
        self.log.warning(events.SWAP_SUCCESSOR_DISABLED, successor_id=successor_id)
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
