"""One rotation cycle: list, decide, claim, regenerate, commit, audit.

Owns the rotation protocol of DESIGN.md and the in-memory record cache. The
rule that shapes every branch here: between Monite's regenerate response and
the Vault commit, the new secret exists only in this process, so nothing may
drop it (no early return, no unbounded wait, no log of its value).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx
import structlog

from rotator import audit
from rotator.clock import Clock, SystemClock, full_jitter
from rotator.config import RotationSettings, Settings
from rotator.errors import (
    DependencyError,
    MoniteError,
    MoniteNotFound,
    RotationAborted,
    VaultConflict,
    VaultError,
)
from rotator.model import Record, Regenerated, format_time
from rotator.monite import MoniteClient
from rotator.policy import Decision, Force, Policy, decide, next_claim_expiry, orphans
from rotator.ratelimit import RateLimiter
from rotator.vault import VaultStore, read_monite_credentials

OutcomeKind = Literal["rotated", "recovered", "skipped", "failed", "conflict"]

log = structlog.get_logger("rotator.engine")


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


@dataclass(slots=True)
class CycleReport:
    """The result of one cycle, for the CLI's exit code, the daemon and the demo."""

    run_id: str
    started_at: datetime
    decisions: list[Decision] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # listed, record not readable
    next_claim_expiry: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None  # set when the cycle itself could not run

    def count(self, kind: OutcomeKind) -> int:
        return sum(1 for o in self.outcomes if o.kind == kind)

    @property
    def ok(self) -> bool:
        """True when the cycle ran and no rotation failed."""
        return self.error is None and self.count("failed") == 0

    def summary(self) -> str:
        """One line for humans: the same counts cycle.finished logs."""
        if self.error is not None:
            return f"cycle failed: {self.error}"
        return (
            f"{self.count('rotated')} rotated, {self.count('recovered')} recovered, "
            f"{self.count('failed')} failed, {self.count('conflict')} conflicts, "
            f"{self.count('skipped')} skipped, {len(self.orphans)} orphaned"
        )


class Engine:
    """Runs cycles against one Monite account and one Vault prefix.

    Keeps a cache of Vault records: filled by one read per record on the first
    cycle, updated by our own writes, refreshed in full every `cache_ttl`.
    A stale entry is harmless: the claim's check-and-set fails and the record
    is re-read.
    """

    def __init__(
        self,
        *,
        monite: MoniteClient,
        store: VaultStore,
        policy: Policy,
        rotation: RotationSettings,
        owner: str,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._monite = monite
        self._store = store
        self.policy = policy
        self._rotation = rotation
        self._owner = owner
        self._clock = clock or SystemClock()
        self._cache_ttl = rotation.cache_refresh
        self._rng = rng or random.Random()
        self._records: dict[str, Record] = {}
        self._cache_loaded_at: datetime | None = None
        self._stale: set[str] = set()
        self._in_flight = 0
        self._stopping = False

    @property
    def monite(self) -> MoniteClient:
        return self._monite

    @property
    def store(self) -> VaultStore:
        return self._store

    @property
    def in_flight(self) -> int:
        """Rotations between claim and the end of their commit."""
        return self._in_flight

    def request_stop(self) -> None:
        """Start no new rotation; those already claimed run on to their commit."""
        self._stopping = True

    async def check(self) -> None:
        """Authenticate to Monite and Vault and read once from each; raises DependencyError."""
        await self._monite.check()
        await self._store.check()

    async def plan(self, force: Force | None = None) -> CycleReport:
        """What a cycle would do now, and why. Reads only; writes nothing."""
        now = self._clock.now()
        report = CycleReport(run_id=_new_id(), started_at=now)
        subscriptions = await self._monite.list_subscriptions()
        records, unreadable = await self._load_records(now)
        readable = [s for s in subscriptions if s.id not in unreadable]
        report.unreadable = sorted(s.id for s in subscriptions if s.id in unreadable)
        report.decisions = decide(readable, records, self.policy, now, force)
        report.orphans = orphans(subscriptions, records.keys() | unreadable)
        report.next_claim_expiry = next_claim_expiry((d.record for d in report.decisions), now)
        report.finished_at = self._clock.now()
        return report

    async def run_cycle(self, force: Force | None = None) -> CycleReport:
        """One cycle. Never raises for a dependency failure: the report says what failed."""
        now = self._clock.now()
        report = CycleReport(run_id=_new_id(), started_at=now)
        with structlog.contextvars.bound_contextvars(run_id=report.run_id):
            log.info(audit.CYCLE_STARTED, forced=_describe_force(force))
            try:
                subscriptions = await self._monite.list_subscriptions()
                records, unreadable = await self._load_records(now)
            except DependencyError as exc:
                report.error = str(exc)
                report.finished_at = self._clock.now()
                log.error(audit.CYCLE_FAILED, reason=_reason_of(exc), error=str(exc))
                return report

            readable = [s for s in subscriptions if s.id not in unreadable]
            report.decisions = decide(readable, records, self.policy, now, force)
            report.orphans = orphans(subscriptions, records.keys() | unreadable)
            for sub in subscriptions:
                if sub.id in unreadable:
                    report.unreadable.append(sub.id)
                    report.outcomes.append(
                        Outcome(sub.id, sub.object_type, "failed", "vault_unreadable")
                    )
            for orphan_id in report.orphans:
                log.warning(audit.SUBSCRIPTION_ORPHANED, subscription_id=orphan_id)

            due = [d for d in report.decisions if d.action == "rotate"]
            for decision in report.decisions:
                if decision.action == "skip":
                    report.outcomes.append(self._skipped(decision))
            # A forced rotation is someone asking now: the cap does not apply.
            cap = 0 if force is not None else self._rotation.max_rotations_per_cycle
            if cap and len(due) > cap:
                # Decisions come oldest first, so the cap defers the freshest of the due.
                for decision in due[cap:]:
                    report.outcomes.append(self._skipped(decision, reason="deferred"))
                due = due[:cap]

            semaphore = asyncio.Semaphore(self._rotation.concurrency)

            async def bounded(decision: Decision) -> Outcome:
                async with semaphore:
                    if self._stopping:
                        sub = decision.subscription
                        log.info(
                            audit.ROTATION_SKIPPED,
                            subscription_id=sub.id,
                            object_type=sub.object_type,
                            reason="shutting_down",
                        )
                        return Outcome(sub.id, sub.object_type, "skipped", "shutting_down")
                    return await self.rotate(decision, now)

            report.outcomes.extend(await asyncio.gather(*(bounded(d) for d in due)))
            # Orphans are never rotated, so their claims must not schedule checks.
            listed = [
                self._records[d.subscription.id]
                for d in report.decisions
                if d.subscription.id in self._records
            ]
            report.next_claim_expiry = next_claim_expiry(listed, now)
            report.finished_at = self._clock.now()
            log.info(
                audit.CYCLE_FINISHED,
                rotated=report.count("rotated"),
                recovered=report.count("recovered"),
                failed=report.count("failed"),
                conflicts=report.count("conflict"),
                skipped=report.count("skipped"),
                orphaned=len(report.orphans),
                subscriptions=len(report.decisions),
                duration_seconds=round((report.finished_at - now).total_seconds(), 3),
                next_claim_expiry=format_time(report.next_claim_expiry),
            )
        return report

    async def _load_records(self, now: datetime) -> tuple[dict[str, Record], set[str]]:
        """The cached records, reading Vault only when the cache is cold, old or marked stale.

        Also returns the ids whose record could not be read this time: one bad
        record (a path the policy denies, say) costs that subscription a cycle,
        not every subscription.
        """
        expired = self._cache_loaded_at is None or now - self._cache_loaded_at >= self._cache_ttl
        if expired:
            ids = await self._store.list_ids()
            self._records = {}
            self._stale = set(ids)
            self._cache_loaded_at = now
        unreadable: set[str] = set()
        if self._stale:
            stale, self._stale = sorted(self._stale), set()
            unreadable = await self._read_into_cache(stale)
        return dict(self._records), unreadable

    async def _read_into_cache(self, ids: Sequence[str]) -> set[str]:
        gate = asyncio.Semaphore(self._rotation.concurrency)

        async def read(subscription_id: str) -> Record:
            async with gate:
                return await self._store.read(subscription_id)

        results = await asyncio.gather(*(read(i) for i in ids), return_exceptions=True)
        unreadable: set[str] = set()
        for subscription_id, result in zip(ids, results, strict=True):
            if isinstance(result, VaultError):
                unreadable.add(subscription_id)
                self._stale.add(subscription_id)  # try again next cycle
                log.error(
                    audit.ROTATION_FAILED,
                    subscription_id=subscription_id,
                    stage="read",
                    reason="vault_unreadable",
                    error=str(result),
                )
            elif isinstance(result, BaseException):
                raise result
            else:
                self._remember(result)
        return unreadable

    def _remember(self, record: Record) -> None:
        if record.exists:
            self._records[record.subscription_id] = record
        else:
            self._records.pop(record.subscription_id, None)

    def _skipped(self, decision: Decision, reason: str | None = None) -> Outcome:
        sub = decision.subscription
        reason = reason or decision.reason
        log.info(
            audit.ROTATION_SKIPPED,
            subscription_id=sub.id,
            object_type=sub.object_type,
            reason=reason,
            age_seconds=_seconds(decision.age),
            vault_version=decision.record.version or None,
        )
        if decision.reason == "unmanaged_skip":
            log.warning(audit.SUBSCRIPTION_UNMANAGED, subscription_id=sub.id)
        return Outcome(sub.id, sub.object_type, "skipped", reason)

    async def rotate(self, decision: Decision, now: datetime) -> Outcome:
        """Claim, regenerate, commit one subscription. Returns its outcome; never raises."""
        self._in_flight += 1
        try:
            return await self._rotate(decision, now)
        except Exception as exc:
            # A bug must cost one rotation, not the cycle: the claim (if any) stays
            # and the record is recovered when it expires.
            sub = decision.subscription
            log.critical(
                audit.ROTATION_FAILED,
                subscription_id=sub.id,
                object_type=sub.object_type,
                reason=decision.reason,
                stage="unexpected",
                error=f"{type(exc).__name__}: {exc}",
            )
            return Outcome(sub.id, sub.object_type, "failed", "internal_error", error=str(exc))
        finally:
            self._in_flight -= 1

    async def _rotate(self, decision: Decision, now: datetime) -> Outcome:
        sub, record = decision.subscription, decision.record
        fields = {
            "subscription_id": sub.id,
            "object_type": sub.object_type,
            "reason": decision.reason,
            "age_seconds": _seconds(decision.age),
        }
        rotation_id = _new_id()

        # 1. Claim. A failure here has destroyed nothing: no regenerate follows.
        deadline = self._clock.monotonic() + self._rotation.claim_ttl.total_seconds()
        expires_at = self._clock.now() + self._rotation.claim_ttl
        claim = record.claimed(
            sub, rotation_id=rotation_id, owner=self._owner, expires_at=expires_at
        )
        try:
            claimed = await self._store.write(claim, cas=record.version)
        except VaultConflict:
            self._stale.add(sub.id)
            log.info(audit.ROTATION_CONFLICT, **fields, stage="claim")
            return Outcome(sub.id, sub.object_type, "conflict", "claimed_elsewhere")
        except VaultError as exc:
            # The claim may have landed even though its answer was lost: re-read next cycle.
            self._stale.add(sub.id)
            log.error(audit.ROTATION_FAILED, **fields, stage="claim", error=str(exc))
            return Outcome(sub.id, sub.object_type, "failed", "vault_error", error=str(exc))
        self._remember(claimed)
        log.info(
            audit.ROTATION_CLAIMED,
            **fields,
            vault_version=claimed.version,
            rotation_id=rotation_id,
            claim_expires_at=format_time(expires_at),
        )

        # 2. Regenerate. From here on the old secret may be dead.
        try:
            regenerated = await self._monite.regenerate_secret(sub.id, deadline=deadline)
        except RotationAborted as exc:
            await self._release(claimed)
            log.error(audit.ROTATION_FAILED, **fields, stage="regenerate", error=str(exc))
            return Outcome(sub.id, sub.object_type, "failed", exc.reason, error=str(exc))
        except MoniteNotFound as exc:
            # Deleted between listing and regenerating: a harmless race, not a failure.
            await self._release(claimed)
            log.info(audit.ROTATION_SKIPPED, **{**fields, "reason": "gone"}, stage="regenerate")
            return Outcome(sub.id, sub.object_type, "skipped", "gone", error=str(exc))
        except MoniteError as exc:
            # Ambiguous: Monite may have applied it. The claim stays, so the record is
            # recovered (regenerated again) when the claim expires.
            log.error(
                audit.ROTATION_FAILED,
                **fields,
                stage="regenerate",
                error=str(exc),
                recovery_at=format_time(expires_at),
            )
            return Outcome(sub.id, sub.object_type, "failed", "monite_error", error=str(exc))
        received = self._clock.monotonic()

        # 3. Commit, holding the only copy of the secret in memory until Vault has it.
        try:
            committed, conflict_error = await self._commit(
                claimed, regenerated, rotation_id, fields
            )
        except (asyncio.CancelledError, Exception) as exc:
            # Cancelled (a drain that ran out of time) or a bug: the secret dies with
            # this frame. Say which subscription, so people know what to expect; its
            # claim is still in Vault, so recovery rotates it when the claim expires.
            log.critical(
                audit.ROTATION_FAILED,
                **fields,
                stage="commit",
                error=f"{type(exc).__name__}: {exc}",
                rotation_id=rotation_id,
                secret_fingerprint=regenerated.secret.fingerprint(),
                recovery_at=format_time(expires_at),
            )
            if isinstance(exc, asyncio.CancelledError):
                raise
            return Outcome(
                sub.id,
                sub.object_type,
                "failed",
                "internal_error",
                secret_fingerprint=regenerated.secret.fingerprint(),
                error=str(exc),
            )
        exposure = self._clock.monotonic() - received
        fingerprint = regenerated.secret.fingerprint()
        if committed is None:
            kind: OutcomeKind = "conflict" if conflict_error == "superseded" else "failed"
            return Outcome(
                sub.id,
                sub.object_type,
                kind,
                "commit_" + (conflict_error or "failed"),
                secret_fingerprint=fingerprint,
                exposure_seconds=exposure,
                error=conflict_error,
            )
        self._remember(committed)
        event = audit.ROTATION_RECOVERED if decision.recovery else audit.ROTATION_SUCCEEDED
        log.info(
            event,
            **fields,
            vault_version=committed.version,
            rotation_id=rotation_id,
            secret_fingerprint=fingerprint,
            exposure_ms=round(exposure * 1000, 3),
        )
        if committed.state == "rotating":
            log.warning(
                audit.ROTATION_SETTLING,
                **fields,
                vault_version=committed.version,
                rotation_id=rotation_id,
                uncertain_attempts=regenerated.uncertain_attempts,
                rotate_again_at=format_time(committed.claim_expires_at),
            )
        return Outcome(
            sub.id,
            sub.object_type,
            "recovered" if decision.recovery else "rotated",
            decision.reason,
            vault_version=committed.version,
            secret_fingerprint=fingerprint,
            exposure_seconds=exposure,
        )

    async def _commit(
        self,
        claimed: Record,
        regenerated: Regenerated,
        rotation_id: str,
        fields: Mapping[str, Any],
    ) -> tuple[Record | None, str | None]:
        """Write the new secret with cas=claim version, retrying Vault errors for a bounded time.

        Returns (record, None) on success, (None, "superseded") when a newer claim
        took the record over, (None, "failed") when Vault stayed unavailable.
        """
        now = self._clock.now()
        record = claimed.committed(regenerated, rotation_id=rotation_id, at=now)
        if regenerated.uncertain_attempts:
            record = record.settling(owner=self._owner, until=now + self._rotation.claim_ttl)
        give_up_at = self._clock.monotonic() + self._rotation.commit_retry_for.total_seconds()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._store.write(record, cas=claimed.version), None
            except VaultConflict:
                # Either our own write landed and its answer was lost, or the claim
                # expired and a newer rotation owns the record: the newer holder wins.
                current = await self._read_quietly(claimed.subscription_id)
                if current is None:
                    # We cannot tell whether our own write landed; the claim decides.
                    log.error(
                        audit.ROTATION_FAILED,
                        **fields,
                        stage="commit",
                        error="check-and-set failed and the record could not be read back",
                        secret_fingerprint=regenerated.secret.fingerprint(),
                    )
                    return None, "unknown"
                if _is_ours(current, rotation_id, regenerated):
                    return current, None
                self._remember(current)
                log.error(
                    audit.ROTATION_CONFLICT,
                    **fields,
                    stage="commit",
                    secret_fingerprint=regenerated.secret.fingerprint(),
                )
                return None, "superseded"
            except VaultError as exc:
                remaining = give_up_at - self._clock.monotonic()
                if remaining <= 0:
                    self._stale.add(claimed.subscription_id)
                    log.critical(
                        audit.ROTATION_FAILED,
                        **fields,
                        stage="commit",
                        attempts=attempt,
                        error=str(exc),
                        secret_fingerprint=regenerated.secret.fingerprint(),
                    )
                    return None, "failed"
                delay = min(remaining, full_jitter(attempt, base=0.25, cap=10.0, rng=self._rng))
                log.warning(
                    audit.ROTATION_COMMIT_RETRY,
                    **fields,
                    attempt=attempt,
                    retry_in_seconds=round(delay, 3),
                    error=str(exc),
                )
                await self._clock.sleep(delay)

    async def _read_quietly(self, subscription_id: str) -> Record | None:
        try:
            return await self._store.read(subscription_id)
        except VaultError:
            self._stale.add(subscription_id)
            return None

    async def _release(self, claimed: Record) -> None:
        """Give a claim back when we know Monite was not asked to regenerate."""
        released = claimed.released()
        try:
            self._remember(await self._store.write(released, cas=claimed.version))
        except VaultError:
            self._stale.add(claimed.subscription_id)


def _is_ours(record: Record, rotation_id: str, regenerated: Regenerated) -> bool:
    return (
        record.rotation_id == rotation_id
        and record.secret is not None
        and record.secret == regenerated.secret
    )


def _new_id() -> str:
    return uuid.uuid4().hex


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else round(value.total_seconds(), 3)


def _reason_of(exc: Exception) -> str:
    return "monite_error" if isinstance(exc, MoniteError) else "vault_error"


def _describe_force(force: Force | None) -> str | list[str] | None:
    if force is None:
        return None
    return "all" if force.all else sorted(force.ids)


def owner_identity(hostname: str, pid: int) -> str:
    """The default claim owner: enough to find the process that holds a claim."""
    return f"{hostname}:{pid}"


@contextlib.asynccontextmanager
async def open_engine(
    settings: Settings,
    *,
    owner: str,
    clock: Clock | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Engine]:
    """Wire an Engine to real clients from settings, and close them afterwards.

    With `monite.credentials_path` set, the Monite client id and secret are read
    from Vault first (a VaultError if they cannot be).
    """
    clock = clock or SystemClock()
    store = VaultStore(settings.vault)
    try:
        monite_settings = settings.monite
        if monite_settings.credentials_path is not None:
            client_id, client_secret = await read_monite_credentials(
                store, monite_settings.credentials_path
            )
            monite_settings = monite_settings.model_copy(
                update={"client_id": client_id, "client_secret": client_secret}
            )
        async with httpx.AsyncClient(transport=transport, follow_redirects=False) as http:
            limiter = RateLimiter(
                monite_settings.rate_limit, burst=monite_settings.rate_burst, clock=clock
            )
            monite = MoniteClient(http, monite_settings, clock=clock, limiter=limiter)
            try:
                yield Engine(
                    monite=monite,
                    store=store,
                    policy=settings.policy,
                    rotation=settings.rotation,
                    owner=settings.rotation.owner or owner,
                    clock=clock,
                )
            finally:
                with contextlib.suppress(Exception):
                    await monite.aclose()
    finally:
        store.close()


def force_for(ids: Sequence[str] | None, everything: bool) -> Force:
    """The Force a `rotate --force` invocation asks for."""
    return Force(ids=frozenset(ids or ()), all=everything)


def subscriptions_missing(report: CycleReport, ids: Iterable[str]) -> list[str]:
    """Forced ids that Monite did not list (mistyped or deleted)."""
    listed = {d.subscription.id for d in report.decisions}
    return sorted(set(ids) - listed)


__all__ = [
    "CycleReport",
    "Engine",
    "Outcome",
    "force_for",
    "open_engine",
    "owner_identity",
    "subscriptions_missing",
]
