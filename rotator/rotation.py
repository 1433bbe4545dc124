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
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog

from rotator import events
from rotator.clock import Clock
from rotator.errors import (
    MoniteError,
    MoniteNotFound,
    MoniteProtocolError,
    VaultConflict,
    VaultError,
)
from rotator.model import Record, Regenerated, format_time
from rotator.policy import Decision
from rotator.ports import RecordStore, SubscriptionSource
from rotator.reasons import OutcomeKind, Reason
from rotator.retry import Backoff, monite_backoff, retry

__all__ = ["Context", "Outcome", "OutcomeKind", "rotate"]


log = structlog.get_logger("rotator.rotation")

# Commit retries: bounded by `rotation.commit_retry_for` (a deadline), not by a
# count; the count here only keeps the loop finite if the clock stood still.
_COMMIT_BACKOFF = Backoff(attempts=10_000, base=0.25, cap=10.0)


class _CommitFailed(Exception):
    """One commit attempt failed in a way another attempt may fix."""


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
    error: str | None = None
    # The regenerate step ended on an answer of a shape we cannot read (a
    # MoniteProtocolError): the engine stops retrying a subscription that keeps doing this.
    protocol_error: bool = False


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


# -- typed results of step 3 --------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Won:
    """Monite answered with a new secret. `doubtful`: an earlier attempt may still land."""

    regenerated: Regenerated
    doubtful: bool


@dataclass(frozen=True, slots=True)
class _Refused:
    """No attempt can have been applied: the old secret still works."""

    error: str
    reason: Reason


@dataclass(frozen=True, slots=True)
class _Gone:
    """The subscription no longer exists (a first-attempt 404, confirmed with a GET)."""

    error: str


@dataclass(frozen=True, slots=True)
class _Doubt:
    """An attempt may have been applied and no secret came back: keep the claim."""

    error: str
    reason: Reason


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
            age_seconds=_seconds(decision.age),
        )

    def outcome(self, kind: OutcomeKind, reason: str, **fields: Any) -> Outcome:
        return Outcome(self.sub.id, self.sub.object_type, kind, reason, **fields)

    async def run(self) -> Outcome:
        try:
            claim = await self.claim()
            if isinstance(claim, Outcome):
                return claim
            result = await self.regenerate(claim)
            if isinstance(result, _Won):
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
            landed = await self.read_back()
            if landed is None or not self.holds(landed):
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

    def holds(self, record: Record) -> bool:
        """True when `record` is this rotation's own claim."""
        return record.rotation_id == self.rotation_id and record.state == "rotating"

    async def verify_start(self, claimed: Record) -> Outcome | None:
        """Check that the version our claim replaced is the record we decided on.

        A cached record is the usual start, and after someone deletes a record's
        metadata Vault numbers its versions from 1 again: `cas=v` can then land
        on a different record at the same version, even another rotation's live
        claim. The version our claim replaced is still in Vault's history, so
        it is read back and compared by `created_time`. When it differs, the
        claim is undone (that record written back as it was) and nothing is
        regenerated. When it cannot be read, the start is not trusted: the
        commit settles and a release writes `stale`.
        """
        self.start_verified = False
        start = self.start
        if not start.exists:
            return None  # cas=0 created the record: nothing was replaced
        try:
            replaced = await self.ctx.store.read(self.sub.id, version=claimed.version - 1)
        except VaultError:
            return None
        if start.created_time is not None and replaced.created_time == start.created_time:
            self.start_verified = True
            return None
        # Someone else's record: put it back as it was (a record without data as
        # `stale`), and decide again from a fresh read next cycle.
        restore = replaced if replaced.secret is not None else replaced.stale(self.settle_for())
        with contextlib.suppress(VaultError):  # else our claim stays and expires
            self.ctx.remember(await self.ctx.store.write(restore, cas=claimed.version))
        self.ctx.reread(self.sub.id)
        self.log.warning(
            events.ROTATION_CONFLICT, stage="claim", error="the cached record was replaced"
        )
        return self.outcome(OutcomeKind.CONFLICT, Reason.RECORD_REPLACED)

    # -- step 3: regenerate ------------------------------------------------------

    async def regenerate(self, claimed: Record) -> _Won | _Refused | _Gone | _Doubt:
        """Regenerate at Monite; each retry is a new regenerate and only the last counts."""
        ctx = self.ctx
        need = 2 * ctx.monite.request_timeout
        doubtful = False  # some attempt may have been applied at Monite

        async def attempt() -> _Won | _Refused | _Gone | _Doubt:
            nonlocal doubtful
            left = self.deadline - ctx.clock.monotonic()
            if left < need:
                message = (
                    f"the claim has {left:.1f}s left, a regenerate needs {need:.1f}s "
                    "(twice the request timeout)"
                )
                if doubtful:
                    return _Doubt(message, Reason.CLAIM_TOO_SHORT)
                return _Refused(message, Reason.CLAIM_TOO_SHORT)
            try:
                regenerated = await ctx.monite.regenerate_secret(
                    self.sub.id, send_by=self.deadline - need
                )
            except MoniteNotFound as exc:
                self.protocol_error = False
                if doubtful:
                    # The earlier attempt may have killed the secret; a gateway's 404
                    # proves nothing about it.
                    return _Doubt(str(exc), Reason.NOT_FOUND_AFTER_ATTEMPT)
                if await self.confirmed_gone():
                    return _Gone(str(exc))
                return _Refused(str(exc), Reason.MONITE_REFUSED)
            except MoniteError as exc:
                doubtful = doubtful or exc.may_have_applied
                # Only an answer that may have replaced the secret counts: a redirect
                # loop or a token failure cannot have, and proves nothing about it.
                self.protocol_error = isinstance(exc, MoniteProtocolError) and exc.may_have_applied
                raise
            return _Won(regenerated, doubtful)

        def on_retry(retry: int, exc: BaseException, wait: float) -> None:
            self.log.info(
                events.MONITE_RETRY,
                operation="regenerate_secret",
                status=getattr(exc, "status", None),
                attempt=retry,
                retry_in_seconds=round(wait, 3),
                error=str(exc),
            )

        try:
            # A retry must leave a whole attempt's time before the claim ends.
            return await retry(
                attempt,
                backoff=monite_backoff(ctx.max_retries + 1),
                retryable=lambda exc: isinstance(exc, MoniteError) and exc.retryable,
                clock=ctx.clock,
                rng=ctx.rng,
                on_retry=on_retry,
                deadline=self.deadline - need,
                whole_wait=True,
            )
        except MoniteError as exc:
            if doubtful:
                return _Doubt(str(exc), Reason.MONITE_ERROR)
            return _Refused(str(exc), Reason.MONITE_REFUSED)

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

    def may_settle_active(self, claimed: Record, won: _Won) -> bool:
        """True when no other regenerate for this subscription can still land at Monite.

        This rotation's attempts are all accounted for, and the record it started
        from (verified in Vault's history) vouched for its secret: `active`, or
        `settling` whose horizon had passed when our claim was written. An absent
        record does not vouch: a record deleted while a rotation held its claim
        also looks absent, and that rotation's regenerate may still land.
        """
        if won.doubtful or not self.start_verified:
            return False
        start = self.start
        if start.state == "active":
            return True
        if start.state == "settling":
            horizon = start.fence_ends(self.ctx.max_claim_ttl, floor=self.ctx.claim_ttl)
            return horizon is not None and self.claimed_at[0] >= horizon
        return False  # took over an expired claim, or started from `stale`

    def unseen_claim_window(self) -> timedelta:
        """How long a regenerate sent under a claim we cannot see may still land.

        Such a claim (its record deleted, or ours unverified) may have been
        written up to one claim ttl before ours and sent its last attempt a ttl
        later: two ttls from our commit cover it.
        """
        return min(2 * self.ctx.claim_ttl, self.ctx.max_claim_ttl)

    def settle_for(self) -> timedelta:
        """How long a straggler may still land: the longest claim it could have been sent under.

        A start that cannot vouch (absent or unverified: perhaps deleted under a
        live claim) settles for `unseen_claim_window`. All replicas are assumed
        to share `rotation.claim_ttl`.
        """
        ctx = self.ctx
        start = self.start
        ttl = ctx.claim_ttl
        if not self.start_verified or start.secret is None:
            ttl = self.unseen_claim_window()
        ends = start.fence_ends(ctx.max_claim_ttl, floor=ctx.claim_ttl)  # already capped
        if ends is not None and start.created_time is not None:
            ttl = max(ttl, ends - start.created_time)
        if start.state == "stale" and start.claim_ttl_seconds is not None:
            ttl = max(ttl, timedelta(seconds=start.claim_ttl_seconds))
        return min(ttl, ctx.max_claim_ttl)

    async def commit(self, claimed: Record, won: _Won) -> Outcome:
        """Write v+2 with cas=v+1 and the new secret; retry Vault errors with it in memory only."""
        ctx = self.ctx
        received = ctx.clock.monotonic()
        fingerprint = won.regenerated.secret.fingerprint()
        settling = not self.may_settle_active(claimed, won)
        vault_time, local = self.claimed_at
        at = vault_time + timedelta(seconds=received - local)
        record = claimed.committed(
            won.regenerated,
            rotation_id=self.rotation_id,
            at=at,
            settle_for=self.settle_for() if settling else None,
        )
        try:
            committed = await self.write_commit(
                record, cas=claimed.version, fingerprint=fingerprint
            )
        except (asyncio.CancelledError, Exception) as exc:
            # Cancelled (a drain that ran out of time) or a bug: the secret dies with
            # this frame. Say which subscription; its claim is still in Vault, so
            # recovery rotates it when the claim expires.
            self.log.critical(
                events.ROTATION_FAILED,
                stage="commit",
                error=f"{type(exc).__name__}: {exc}",
                rotation_id=self.rotation_id,
                secret_fingerprint=fingerprint,
                recovery_at=format_time(claimed.fence_ends(ctx.max_claim_ttl)),
            )
            if isinstance(exc, asyncio.CancelledError):
                raise
            return self.outcome(
                OutcomeKind.FAILED,
                Reason.INTERNAL_ERROR,
                secret_fingerprint=fingerprint,
                error=str(exc),
            )
        exposure = ctx.clock.monotonic() - received
        if isinstance(committed, Outcome):
            return committed
        if committed.state == "active":
            committed = await self.verify_commit(committed)
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
        )

    async def verify_commit(self, committed: Record) -> Record:
        """Check that an `active` commit replaced our own claim, not a record recreated since.

        Outside the exposure window: the secret is in Vault already. When the
        version before ours is not our claim (the record was deleted and made
        again while we held the new secret), another rotation's regenerate may
        still land, so our commit is rewritten as `settling`.
        """
        ctx = self.ctx
        if committed.version == 1:
            return committed  # written with cas=0 over nothing: no claim was there to land
        try:
            replaced = await ctx.store.read(self.sub.id, version=committed.version - 1)
        except VaultError:
            return committed  # cannot tell; a failed read is no evidence of reuse
        if self.holds(replaced):
            return committed
        settling = committed.settling(self.unseen_claim_window(), owner=ctx.owner)
        try:
            written = await ctx.store.write(settling, cas=committed.version)
        except VaultError:
            ctx.reread(self.sub.id)
            return committed
        self.log.warning(
            events.ROTATION_CONFLICT, stage="commit", error="the record was replaced meanwhile"
        )
        return written

    async def write_commit(self, record: Record, *, cas: int, fingerprint: str) -> Record | Outcome:
        """The commit write and its retries; step 5 when the check-and-set fails."""
        ctx = self.ctx
        attempts = 0

        async def attempt() -> Record | Outcome:
            nonlocal cas, attempts
            attempts += 1
            try:
                return await ctx.store.write(record, cas=cas)
            except VaultConflict as exc:
                current = await self.read_back()
                if current is None:
                    raise _CommitFailed(
                        "check-and-set failed and the record could not be read back"
                    ) from exc
                if _is_ours(current, self.rotation_id, record):
                    return current  # our write landed and its answer was lost
                if not (current.rotation_id is None and current.secret is None):
                    return self.superseded(current, fingerprint)
                # The record is gone (metadata deleted, or its latest version
                # deleted): we hold the only copy, so write over what is there.
                cas = current.version
                raise _CommitFailed(
                    "the record vanished during the rotation; writing it again"
                ) from exc
            except VaultError as exc:
                raise _CommitFailed(str(exc)) from exc

        def on_retry(retry: int, exc: BaseException, wait: float) -> None:
            self.log.warning(
                events.ROTATION_COMMIT_RETRY,
                attempt=retry,
                retry_in_seconds=round(wait, 3),
                error=str(exc),
            )

        try:
            # The secret is in memory only: keep trying until commit_retry_for is
            # spent (the deadline bounds the loop), never hammering a Vault that is down.
            return await retry(
                attempt,
                backoff=_COMMIT_BACKOFF,
                retryable=lambda exc: isinstance(exc, _CommitFailed),
                clock=ctx.clock,
                rng=ctx.rng,
                on_retry=on_retry,
                deadline=ctx.clock.monotonic() + ctx.commit_retry_for.total_seconds(),
            )
        except _CommitFailed as exc:
            ctx.reread(self.sub.id)
            self.log.critical(
                events.ROTATION_FAILED,
                stage="commit",
                attempts=attempts,
                error=str(exc),
                rotation_id=self.rotation_id,
                secret_fingerprint=fingerprint,
            )
            return self.outcome(
                OutcomeKind.FAILED,
                Reason.COMMIT_FAILED,
                secret_fingerprint=fingerprint,
                error=str(exc),
            )

    async def read_back(self) -> Record | None:
        try:
            current = await self.ctx.store.read(self.sub.id)
        except VaultError:
            return None
        self.ctx.remember(current)
        return current

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

    async def give_back(self, claimed: Record, result: _Refused | _Gone | _Doubt) -> Outcome:
        """After a refusal, restore the record (or mark it stale); after doubt, keep the claim."""
        ctx = self.ctx
        if isinstance(result, _Doubt):
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
        if isinstance(result, _Gone):
            self.log.info(events.ROTATION_SKIPPED, reason=Reason.GONE, stage="regenerate")
            return self.outcome(OutcomeKind.SKIPPED, Reason.GONE, error=result.error)
        self.log.error(events.ROTATION_FAILED, stage="regenerate", error=result.error)
        return self.outcome(
            OutcomeKind.FAILED,
            result.reason,
            error=result.error,
            protocol_error=self.protocol_error,
        )


def _is_ours(current: Record, rotation_id: str, written: Record) -> bool:
    return (
        current.rotation_id == rotation_id
        and current.secret is not None
        and current.secret == written.secret
    )


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else round(value.total_seconds(), 3)
