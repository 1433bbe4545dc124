"""The commit write of step 4, its retries and its check, while the new secret is in memory only.

Owns the loop that writes the commit until `rotation.commit_retry_for` is
spent, what a failed check-and-set means (our own write landed with its
answer lost; another rotation took over, `Superseded`, step 5; or the record
vanished and is written again), and the check that an `active` commit
replaced our own claim. Which record to write, and what each result means for
the rotation, stays in `protocol.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

from structlog.typing import FilteringBoundLogger

from rotator import events, policy
from rotator.errors import VaultConflict, VaultError
from rotator.model import Record
from rotator.retry import Backoff, retry
from rotator.rotation._types import CommitFailed, Context, Superseded

# Commit retries: bounded by `rotation.commit_retry_for` (a deadline), not by a
# count; the count here only keeps the loop finite if the clock stood still.
_COMMIT_BACKOFF = Backoff(attempts=10_000, base=0.25, cap=10.0)


class _AttemptFailed(Exception):
    """One commit attempt failed in a way another attempt may fix."""


@dataclass(frozen=True, slots=True)
class Committer:
    """The commit of one rotation: its subscription, its rotation id, its bound log."""

    ctx: Context
    subscription_id: str
    rotation_id: str
    log: FilteringBoundLogger

    async def write(
        self, record: Record, *, cas: int, fingerprint: str
    ) -> Record | Superseded | CommitFailed:
        """Write `record` with check-and-set `cas`; retry Vault errors until the deadline."""
        ctx = self.ctx
        attempts = 0

        async def attempt() -> Record | Superseded:
            nonlocal cas, attempts
            attempts += 1
            try:
                return await ctx.store.write(record, cas=cas)
            except VaultConflict as exc:
                current = await read_back(ctx, self.subscription_id)
                if current is None:
                    raise _AttemptFailed(
                        "check-and-set failed and the record could not be read back"
                    ) from exc
                if _is_ours(current, self.rotation_id, record):
                    return current  # our write landed and its answer was lost
                if not (current.rotation_id is None and current.secret is None):
                    return Superseded(current)
                # The record is gone (metadata deleted, or its latest version
                # deleted): we hold the only copy, so write over what is there.
                cas = current.version
                raise _AttemptFailed(
                    "the record vanished during the rotation; writing it again"
                ) from exc
            except VaultError as exc:
                raise _AttemptFailed(str(exc)) from exc

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
                retryable=lambda exc: isinstance(exc, _AttemptFailed),
                clock=ctx.clock,
                rng=ctx.rng,
                on_retry=on_retry,
                deadline=ctx.clock.monotonic() + ctx.commit_retry_for.total_seconds(),
            )
        except _AttemptFailed as exc:
            # The deadline is spent and the new secret dies with this rotation: say so.
            ctx.reread(self.subscription_id)
            self.log.critical(
                events.ROTATION_FAILED,
                stage="commit",
                attempts=attempts,
                error=str(exc),
                rotation_id=self.rotation_id,
                secret_fingerprint=fingerprint,
            )
            return CommitFailed(str(exc))

    async def verify(self, committed: Record) -> Record:
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
            replaced = await ctx.store.read(self.subscription_id, version=committed.version - 1)
        except VaultError:
            return committed  # cannot tell; a failed read is no evidence of reuse
        if replaced.held_by(self.rotation_id):
            return committed
        window = policy.unseen_claim_window(ctx.claim_ttl, ctx.max_claim_ttl)
        settling = committed.settling(window, owner=ctx.owner)
        try:
            written = await ctx.store.write(settling, cas=committed.version)
        except VaultError:
            ctx.reread(self.subscription_id)
            return committed
        self.log.warning(
            events.ROTATION_CONFLICT, stage="commit", error="the record was replaced meanwhile"
        )
        return written


async def read_back(ctx: Context, subscription_id: str) -> Record | None:
    """The latest record, kept in the cache; None when Vault cannot be read."""
    try:
        current = await ctx.store.read(subscription_id)
    except VaultError:
        return None
    ctx.remember(current)
    return current


def _is_ours(current: Record, rotation_id: str, written: Record) -> bool:
    return (
        current.rotation_id == rotation_id
        and current.secret is not None
        and current.secret == written.secret
    )


class Start(Enum):
    """What the version a claim replaced says about the record a decision was made on."""

    VERIFIED = "verified"  # it is that record: the decision's view of the secret holds
    UNVERIFIED = "unverified"  # it could not be read: nothing can be vouched for
    REPLACED = "replaced"  # someone else's record: it was put back, and the claim undone


async def check_start(
    ctx: Context,
    start: Record,
    claimed: Record,
    *,
    restore_window: timedelta,
    log: FilteringBoundLogger,
) -> Start:
    """Compare the version our claim replaced with `start`, by `created_time`.

    A cached record is the usual start, and after someone deletes a record's
    metadata Vault numbers its versions from 1 again: `cas=v` can then land
    on a different record at the same version, even another rotation's live
    claim. The version our claim replaced is still in Vault's history. When it
    differs, it is written back as it was (a version without data as `stale`
    for `restore_window`) and the caller undoes nothing else.
    """
    if not start.exists:
        return Start.VERIFIED  # cas=0 created the record: nothing was replaced
    try:
        replaced = await ctx.store.read(start.subscription_id, version=claimed.version - 1)
    except VaultError:
        return Start.UNVERIFIED
    if start.created_time is not None and replaced.created_time == start.created_time:
        return Start.VERIFIED
    restore = replaced if replaced.secret is not None else replaced.stale(restore_window)
    with contextlib.suppress(VaultError):  # else our claim stays and expires
        ctx.remember(await ctx.store.write(restore, cas=claimed.version))
    ctx.reread(start.subscription_id)
    log.warning(events.ROTATION_CONFLICT, stage="claim", error="the cached record was replaced")
    return Start.REPLACED


@contextlib.contextmanager
def secret_in_memory(log: FilteringBoundLogger, event: str, **fields: Any) -> Iterator[None]:
    """Say loudly which secret dies if the block ends by cancellation or a bug.

    Around a commit while a new secret is held in this process only: a drain
    that ran out of time cancels it, and the secret dies with the frame. The
    claim is still in Vault, so recovery deals with the subscription later.
    """
    try:
        yield
    except (asyncio.CancelledError, Exception) as exc:
        log.critical(event, stage="commit", error=f"{type(exc).__name__}: {exc}", **fields)
        raise


async def write_over_claim(
    ctx: Context, record: Record, claimed: Record, *, log: FilteringBoundLogger
) -> Record:
    """Write `record` with `cas` on our claim, then check it replaced our claim.

    A record deleted while we held its claim is numbered from 1 again, and
    someone else's rotation may bring it back to our claim's version: `cas`
    then lands on their record. The version we replaced is read back from
    history; if it is not our claim, it is written back as it was (a version
    without data as `stale`) and VaultConflict is raised, as if `cas` had
    failed. A failed read is no evidence of reuse: the write stands.
    """
    written = await ctx.store.write(record, cas=claimed.version)
    rotation_id = claimed.rotation_id or ""
    try:
        replaced = await ctx.store.read(record.subscription_id, version=claimed.version)
    except VaultError:
        ctx.remember(written)
        return written
    if replaced.held_by(rotation_id):
        ctx.remember(written)
        return written
    window = policy.unseen_claim_window(ctx.claim_ttl, ctx.max_claim_ttl)
    restore = replaced if replaced.secret is not None else replaced.stale(window)
    with contextlib.suppress(VaultError):
        ctx.remember(await ctx.store.write(restore, cas=written.version))
    ctx.reread(record.subscription_id)
    log.warning(
        events.ROTATION_CONFLICT, stage=record.state, error="the record was replaced meanwhile"
    )
    raise VaultConflict("the record was deleted and made again while we held its claim")
