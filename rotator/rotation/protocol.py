"""The rotation protocol, version 2, for one subscription, step by step (docs/architecture.md).

Owns what happens between a decision to rotate and its outcome: claim,
regenerate, commit, settle, release. It talks only to the ports in
`rotator.ports` and the injected clock, so the same code runs on hvac and
httpx and in the simulation's virtual time.

Rule zero: a record says `active` only for a secret that is Monite's current
secret. Wherever this code cannot be sure, the record says `settling` or
`stale`, and the subscription is rotated again.

Between Monite's answer and the Vault commit, the new secret exists only in
this process: no branch after step 3 may drop it without saying so loudly.

Every step is a method here, in order. Beside it: the values passed between
steps (`_types`), the commit write's retry loop (`_commit`), and the timing
arithmetic, pure, in `rotator.policy`.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import structlog

from rotator import events, policy
from rotator.errors import (
    MoniteError,
    MoniteNotFound,
    MoniteProtocolError,
    VaultConflict,
    VaultError,
)
from rotator.model import Record, format_time
from rotator.policy import Decision
from rotator.reasons import OutcomeKind, Reason
from rotator.rotation._commit import (
    Committer,
    Start,
    check_start,
    read_back,
    secret_in_memory,
)
from rotator.rotation._monite_call import retry_monite_call
from rotator.rotation._types import (
    CommitFailed,
    Context,
    Doubt,
    Gone,
    Outcome,
    Refused,
    Superseded,
    Won,
)

log = structlog.get_logger("rotator.rotation")


async def rotate(ctx: Context, decision: Decision) -> Outcome:
    """Claim, regenerate, commit one subscription, steps 1 to 7 below; never raises."""
    return await _Rotation(ctx, decision).run()


class _Rotation:
    """One rotation of one subscription; its methods are the protocol's steps, in order."""

    def __init__(self, ctx: Context, decision: Decision) -> None:
        self.ctx = ctx
        self.decision = decision
        self.sub = decision.subscription
        self.start = decision.record  # step 1: the version we know (cache or read)
        self.rotation_id = uuid.uuid4().hex
        self.start_verified = False  # the version our claim replaced is `start` (see verify_start)
        self.protocol_error = False  # the last regenerate attempt failed with MoniteProtocolError
        self.log = log.bind(
            subscription_id=self.sub.id,
            object_type=self.sub.object_type,
            reason=decision.reason,
            age_seconds=None if decision.age is None else round(decision.age.total_seconds(), 3),
        )

    def outcome(self, kind: OutcomeKind, reason: str, **fields: Any) -> Outcome:
        return Outcome(self.sub.id, self.sub.object_type, kind, reason, **fields)

    def settle_for(self) -> timedelta:
        """How long a straggler may still land after this rotation (`policy.settle_for`)."""
        return policy.settle_for(
            self.start,
            start_verified=self.start_verified,
            claim_ttl=self.ctx.claim_ttl,
            max_claim_ttl=self.ctx.max_claim_ttl,
        )

    async def run(self) -> Outcome:
        try:
            claim = await self.claim()
            if isinstance(claim, Outcome):
                return claim
            result = await self.regenerate(claim)
            if isinstance(result, Won):
                return await self.commit(claim, result)
            return await self.give_back(claim, result)
        except Exception as exc:
            # A bug must cost one rotation, not the cycle: a claim left behind is
            # recovered when it expires.
            self.log.critical(
                events.ROTATION_FAILED, stage="unexpected", error=f"{type(exc).__name__}: {exc}"
            )
            return self.outcome(OutcomeKind.FAILED, Reason.INTERNAL_ERROR, error=str(exc))

    # -- step 2: claim -----------------------------------------------------------

    async def claim(self) -> Record | Outcome:
        """Write v+1 with cas=v, same secret, state=rotating; no regenerate unless it lands."""
        ctx = self.ctx
        # The claimant's own deadline is local monotonic time taken before the claim
        # is sent, so it ends before the claim's true expiry on Vault's clock.
        self.deadline = ctx.clock.monotonic() + ctx.claim_ttl.total_seconds()
        now = await ctx.store.vault_now()
        wanted = self.start.claimed(
            self.sub, rotation_id=self.rotation_id, owner=ctx.owner, ttl=ctx.claim_ttl, now=now
        )
        try:
            claimed = await ctx.store.write(wanted, cas=self.start.version)
        except VaultConflict:
            ctx.reread(self.sub.id)
            self.log.info(events.ROTATION_CONFLICT, stage="claim")
            return self.outcome(OutcomeKind.CONFLICT, Reason.CLAIMED_ELSEWHERE)
        except VaultError as exc:
            # The claim may have landed with its answer lost: if Vault shows it, go
            # on (the deadline was taken before the write); if not, nothing follows.
            landed = await read_back(ctx, self.sub.id)
            if landed is None or not landed.held_by(self.rotation_id):
                ctx.reread(self.sub.id)
                self.log.error(events.ROTATION_FAILED, stage="claim", error=str(exc))
                return self.outcome(OutcomeKind.FAILED, Reason.VAULT_ERROR, error=str(exc))
            claimed = landed
        ctx.remember(claimed)
        undone = await self.verify_start(claimed)
        if undone is not None:
            return undone
        # Vault's time at the claim, carried forward on the monotonic clock: the
        # commit's rotation time needs no Vault call while the secret is in memory.
        self.claimed_at = (claimed.created_time or now, ctx.clock.monotonic())
        self.log.info(
            events.ROTATION_CLAIMED,
            vault_version=claimed.version,
            rotation_id=self.rotation_id,
            claim_expires_at=format_time(claimed.fence_ends(ctx.max_claim_ttl)),
        )
        return claimed

    async def verify_start(self, claimed: Record) -> Outcome | None:
        """Check that the version our claim replaced is the record we decided on.

        `check_start` says why this matters. When it cannot be read, the start
        is not trusted: the commit settles and a release writes `stale`.
        """
        checked = await check_start(
            self.ctx, self.start, claimed, restore_window=self.settle_for(), log=self.log
        )
        self.start_verified = checked is Start.VERIFIED and self.start.exists
        if checked is Start.REPLACED:
            return self.outcome(OutcomeKind.CONFLICT, Reason.RECORD_REPLACED)
        return None

    # -- step 3: regenerate ------------------------------------------------------

    async def regenerate(self, claimed: Record) -> Won | Refused | Gone | Doubt:
        """Regenerate at Monite; each retry is a new regenerate and only the last counts."""
        ctx = self.ctx
        need = 2 * ctx.monite.request_timeout
        doubtful = False  # some attempt may have been applied at Monite

        async def attempt() -> Won | Refused | Gone | Doubt:
            nonlocal doubtful
            left = self.deadline - ctx.clock.monotonic()
            if left < need:
                message = (
                    f"the claim has {left:.1f}s left, a regenerate needs {need:.1f}s "
                    "(twice the request timeout)"
                )
                if doubtful:
                    return Doubt(message, Reason.CLAIM_TOO_SHORT)
                return Refused(message, Reason.CLAIM_TOO_SHORT)
            try:
                regenerated = await ctx.monite.regenerate_secret(
                    self.sub.id, send_by=self.deadline - need
                )
            except MoniteNotFound as exc:
                self.protocol_error = False
                if doubtful:
                    # The earlier attempt may have killed the secret; a gateway's 404
                    # proves nothing about it.
                    return Doubt(str(exc), Reason.NOT_FOUND_AFTER_ATTEMPT)
                if await self.confirmed_gone():
                    return Gone(str(exc))
                return Refused(str(exc), Reason.MONITE_REFUSED)
            except MoniteError as exc:
                doubtful = doubtful or exc.may_have_applied
                # Only an answer that may have replaced the secret counts: a redirect
                # loop or a token failure cannot have, and proves nothing about it.
                self.protocol_error = isinstance(exc, MoniteProtocolError) and exc.may_have_applied
                raise
            return Won(regenerated, doubtful)

        try:
            # A retry must leave a whole attempt's time before the claim ends.
            return await retry_monite_call(
                ctx,
                self.log,
                "regenerate_secret",
                attempt,
                retryable=lambda exc: isinstance(exc, MoniteError) and exc.retryable,
                deadline=self.deadline - need,
            )
        except MoniteError as exc:
            if doubtful:
                return Doubt(str(exc), Reason.MONITE_ERROR)
            return Refused(str(exc), Reason.MONITE_REFUSED)

    async def confirmed_gone(self) -> bool:
        """A first-attempt 404 counts as "gone" only when a GET says so too."""
        try:
            await self.ctx.monite.get_subscription(self.sub.id)
        except MoniteNotFound:
            return True
        except MoniteError:
            return False
        return False

    # -- step 4: commit ------------------------------------------------------------

    async def commit(self, claimed: Record, won: Won) -> Outcome:
        """Write v+2 with cas=v+1 and the new secret; retry Vault errors with it in memory only."""
        ctx = self.ctx
        received = ctx.clock.monotonic()
        fingerprint = won.regenerated.secret.fingerprint()
        settling = not policy.may_settle_active(
            self.start,
            start_verified=self.start_verified,
            doubtful=won.doubtful,
            claimed_at=self.claimed_at[0],
            claim_ttl=ctx.claim_ttl,
            max_claim_ttl=ctx.max_claim_ttl,
        )
        vault_time, local = self.claimed_at
        at = vault_time + timedelta(seconds=received - local)
        record = claimed.committed(
            won.regenerated,
            rotation_id=self.rotation_id,
            at=at,
            settle_for=self.settle_for() if settling else None,
        )
        committer = Committer(ctx, self.sub.id, self.rotation_id, self.log)
        try:
            with secret_in_memory(
                self.log,
                events.ROTATION_FAILED,
                rotation_id=self.rotation_id,
                secret_fingerprint=fingerprint,
                recovery_at=format_time(claimed.fence_ends(ctx.max_claim_ttl)),
            ):
                committed = await committer.write(
                    record, cas=claimed.version, fingerprint=fingerprint
                )
        except Exception as exc:  # a bug, logged above; a cancellation goes on up
            return self.outcome(
                OutcomeKind.FAILED,
                Reason.INTERNAL_ERROR,
                secret_fingerprint=fingerprint,
                error=str(exc),
            )
        if isinstance(committed, Superseded):
            return self.superseded(committed.current, fingerprint)  # step 5
        if isinstance(committed, CommitFailed):  # logged where the retries gave up
            return self.outcome(
                OutcomeKind.FAILED,
                Reason.COMMIT_FAILED,
                secret_fingerprint=fingerprint,
                error=committed.error,
            )
        exposure = ctx.clock.monotonic() - received
        if committed.state == "active":
            committed = await committer.verify(committed)
        # -- step 7: audit (hooks will follow the commit, never precede it) --
        ctx.remember(committed)
        recovery = self.decision.recovery
        self.log.info(
            events.ROTATION_RECOVERED if recovery else events.ROTATION_SUCCEEDED,
            vault_version=committed.version,
            rotation_id=self.rotation_id,
            secret_fingerprint=fingerprint,
            state=committed.state,
            exposure_ms=round(exposure * 1000, 3),
        )
        if committed.state == "settling":
            self.log.warning(
                events.ROTATION_SETTLING,
                vault_version=committed.version,
                rotation_id=self.rotation_id,
                doubtful_attempt=won.doubtful,
                started_from=self.start.state if self.start.exists else "absent",
                rotate_again_at=format_time(committed.fence_ends(ctx.max_claim_ttl)),
            )
        return self.outcome(
            OutcomeKind.RECOVERED if recovery else OutcomeKind.ROTATED,
            self.decision.reason,
            vault_version=committed.version,
            secret_fingerprint=fingerprint,
            exposure_seconds=exposure,
            rotated_at=committed.rotated_at,
        )

    # -- step 5: superseded ----------------------------------------------------------

    def superseded(self, current: Record, fingerprint: str) -> Outcome:
        """Another rotation took over our expired claim: Monite has replaced our secret."""
        self.log.error(
            events.ROTATION_SUPERSEDED,
            rotation_id=self.rotation_id,
            secret_fingerprint=fingerprint,
            vault_version=current.version,
            superseded_by=current.rotation_id,
            holder_state=current.state,
        )
        return self.outcome(
            OutcomeKind.CONFLICT,
            Reason.SUPERSEDED,
            vault_version=current.version,
            secret_fingerprint=fingerprint,
            error="superseded",
        )

    # -- step 6: give the claim back, or keep it -----------------------------------------

    async def give_back(self, claimed: Record, result: Refused | Gone | Doubt) -> Outcome:
        """After a refusal, restore the record (or mark it stale); after doubt, keep the claim."""
        ctx = self.ctx
        if isinstance(result, Doubt):
            # An attempt may have killed the old secret: the claim stays, and the
            # record is recovered (regenerated again) when it expires.
            self.log.error(
                events.ROTATION_FAILED,
                stage="regenerate",
                error=result.error,
                rotation_id=self.rotation_id,
                recovery_at=format_time(claimed.fence_ends(ctx.max_claim_ttl)),
            )
            return self.outcome(
                OutcomeKind.FAILED,
                result.reason,
                error=result.error,
                protocol_error=self.protocol_error,
            )
        start = self.start
        # Never write `active` from a release unless the previous record vouched
        # for its secret: the exact previous record (`active`, or `settling` with
        # its window), verified in Vault's history; otherwise `stale`, keeping the
        # longest window a straggler may still land in.
        if self.start_verified and start.state in ("active", "settling"):
            restored = start
        else:
            restored = claimed.stale(self.settle_for())
        try:
            ctx.remember(await ctx.store.write(restored, cas=claimed.version))
        except VaultError:
            ctx.reread(self.sub.id)  # the claim stays; recovery takes it over later
        self.log.info(events.ROTATION_RELEASED, rotation_id=self.rotation_id, state=restored.state)
        if isinstance(result, Gone):
            self.log.info(events.ROTATION_SKIPPED, reason=Reason.GONE, stage="regenerate")
            return self.outcome(OutcomeKind.SKIPPED, Reason.GONE, error=result.error)
        self.log.error(events.ROTATION_FAILED, stage="regenerate", error=result.error)
        return self.outcome(
            OutcomeKind.FAILED,
            result.reason,
            error=result.error,
            protocol_error=self.protocol_error,
        )
