"""One rotation cycle: list, decide, claim, regenerate, commit, audit.

Wiring the engine to real clients from settings is `rotator.app`'s job.

Owns the cycle around the protocol (rotator.rotation); the record cache is
`rotator.cache`'s and the quarantine `rotator.quarantine`'s. The rule that
shapes every branch here: between Monite's regenerate response and
the Vault commit, the new secret exists only in this process, so nothing may
drop it (no early return, no unbounded wait, no log of its value).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import structlog

from rotator import audit
from rotator.cache import RecordCache
from rotator.clock import Clock, SystemClock
from rotator.config import RotationSettings
from rotator.engine._report import CycleReport, describe_force
from rotator.errors import (
    DependencyError,
    MoniteAuthError,
    MoniteError,
    VaultAuthError,
)
from rotator.hooks import Hooks
from rotator.model import Record, Subscription, format_time
from rotator.policy import (
    Decision,
    Force,
    Policy,
    SwapFence,
    decide,
    lost_rules,
    next_claim_expiry,
    orphans,
)
from rotator.ports import RecordStore, SubscriptionSource
from rotator.quarantine import Quarantine
from rotator.reasons import Reason
from rotator.rotation import Context, Outcome, OutcomeKind, rotate, swap
from rotator.vault import VaultSetup

log = structlog.get_logger("rotator.engine")


class Engine:
    """Runs cycles against one Monite account and one Vault prefix.

    Keeps a cache of the Vault records (`rotator.cache`), so a steady cycle
    makes no Vault request.
    """

    def __init__(
        self,
        *,
        monite: SubscriptionSource,
        store: RecordStore,
        policy: Policy,
        rotation: RotationSettings,
        owner: str,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        max_retries: int = 3,
        hooks: Hooks | None = None,
    ) -> None:
        self._monite = monite
        self._store = store
        self.policy = policy
        self._rotation = rotation
        self._owner = owner
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._cache = RecordCache(
            store, self._clock, refresh=rotation.cache_refresh, concurrency=rotation.concurrency
        )
        self._quarantine = Quarantine()
        self._in_flight = 0
        self._stopping = False
        # What open_engine's verification found of Vault (None for an engine built by hand).
        self.vault_setup: VaultSetup | None = None
        # Told of every commit; never waited on (rotator.hooks).
        self.hooks = hooks
        self._context = Context(
            store=store,
            monite=monite,
            clock=self._clock,
            owner=owner,
            claim_ttl=rotation.claim_ttl,
            max_claim_ttl=rotation.max_claim_ttl,
            commit_retry_for=rotation.commit_retry_for,
            max_retries=max_retries,
            rng=self._rng,
            remember=self._cache.remember,
            reread=self._cache.mark_stale,
            overlap=rotation.overlap,
        )
        # The cycle's listing and what Vault's records say of swaps, for `rotator.rotation.swap`.
        self._listing: Sequence[Subscription] = ()
        self._fence = SwapFence.of(())

    @property
    def monite(self) -> SubscriptionSource:
        return self._monite

    @property
    def store(self) -> RecordStore:
        return self._store

    @property
    def in_flight(self) -> int:
        """Rotations between claim and the end of their commit."""
        return self._in_flight

    @property
    def quarantined(self) -> frozenset[str]:
        """Subscriptions this process no longer regenerates (`rotator.quarantine`)."""
        return self._quarantine.ids

    def request_stop(self) -> None:
        """Start no new rotation; those already claimed run on to their commit."""
        self._stopping = True

    async def check(self) -> None:
        """Authenticate to Monite and Vault and read once from each; raises DependencyError."""
        await self._monite.check()
        await self._store.check()

    def _decide(
        self,
        report: CycleReport,
        subscriptions: Sequence[Subscription],
        records: dict[str, Record],
        unreadable: set[str],
        now: datetime,
        force: Force | None,
    ) -> None:
        readable = [s for s in subscriptions if s.id not in unreadable]
        report.decisions = decide(
            readable,
            records,
            self.policy,
            now,
            force,
            max_claim_ttl=self._rotation.max_claim_ttl,
            claim_ttl=self._rotation.claim_ttl,
            strategy=self._rotation.strategy,
        )
        # A retired record, or a swap record still at work, is no orphan.
        decided = {d.subscription.id for d in report.decisions}
        kept = {i for i, r in records.items() if r.state != "retired" and i not in decided}
        report.retired = sum(1 for r in records.values() if r.state == "retired")
        report.orphans = orphans(subscriptions, kept | unreadable)
        report.lost_rules = lost_rules(self.policy, subscriptions, records)
        self._listing = subscriptions
        self._fence = SwapFence.of(records.values())

    def _next_check(self, report: CycleReport, records: Iterable[Record], now: datetime) -> None:
        expiry = next_claim_expiry(
            records, now, self._rotation.max_claim_ttl, self._rotation.claim_ttl
        )
        report.next_claim_expiry = expiry
        report.next_check_in = None if expiry is None else expiry - now

    async def plan(self, force: Force | None = None) -> CycleReport:
        """What a cycle would do now, and why. Reads only; writes nothing."""
        report = CycleReport(run_id=_new_id(), started_at=self._clock.now())
        subscriptions = await self._monite.list_subscriptions()
        records, unreadable = await self._cache.load(also_read=self._quarantine.ids)
        now = report.vault_now = await self._vault_now(records.values())
        report.unreadable = sorted(s.id for s in subscriptions if s.id in unreadable)
        self._decide(report, subscriptions, records, unreadable, now, force)
        self._next_check(report, (d.record for d in report.decisions), now)
        report.finished_at = self._clock.now()
        return report

    async def run_cycle(self, force: Force | None = None) -> CycleReport:
        """One cycle. Never raises for a dependency failure: the report says what failed."""
        started = self._clock.monotonic()
        report = CycleReport(run_id=_new_id(), started_at=self._clock.now())
        with structlog.contextvars.bound_contextvars(run_id=report.run_id):
            log.info(audit.CYCLE_STARTED, forced=describe_force(force))
            try:
                subscriptions = await self._monite.list_subscriptions()
                # Quarantined records are read every cycle, to see another process rotate them.
                records, unreadable = await self._cache.load(also_read=self._quarantine.ids)
                now = report.vault_now = await self._vault_now(records.values())
            except DependencyError as exc:
                report.error = str(exc)
                report.refused = isinstance(exc, MoniteAuthError | VaultAuthError)
                report.finished_at = self._clock.now()
                log.error(audit.CYCLE_FAILED, reason=_reason_of(exc), error=str(exc))
                return report

            self._decide(report, subscriptions, records, unreadable, now, force)
            for sub in subscriptions:
                if sub.id in unreadable:
                    report.unreadable.append(sub.id)
                    report.outcomes.append(
                        Outcome(
                            sub.id, sub.object_type, OutcomeKind.FAILED, Reason.VAULT_UNREADABLE
                        )
                    )
            for orphan_id in report.orphans:
                log.warning(audit.SUBSCRIPTION_ORPHANED, subscription_id=orphan_id)

            due = [d for d in report.decisions if d.action == "rotate"]
            for decision in report.decisions:
                if decision.action == "skip":
                    report.outcomes.append(self._skipped(decision))
            # An id forced by name is someone asking to try again.
            retry = force.ids if force is not None else frozenset()
            self._quarantine.lift_rotated_elsewhere(self._cache)
            held = {
                d.subscription.id
                for d in due
                if d.subscription.id in self._quarantine and d.subscription.id not in retry
            }
            for decision in due:
                if decision.subscription.id in held:
                    report.outcomes.append(self._skipped(decision, reason=Reason.QUARANTINED))
            due = [d for d in due if d.subscription.id not in held]
            # A forced rotation is someone asking now: the cap does not apply. Nor
            # does it to a swap's later steps: ending an overlap ends duplicates.
            cap = 0 if force is not None else self._rotation.max_rotations_per_cycle
            capped = [d for d in due if not d.swap_phase]
            if cap and len(capped) > cap:
                # Decisions come oldest first, so the cap defers the freshest of the due.
                deferred = {id(d) for d in capped[cap:]}
                for decision in capped[cap:]:
                    report.outcomes.append(self._skipped(decision, reason=Reason.DEFERRED))
                due = [d for d in due if id(d) not in deferred]

            semaphore = asyncio.Semaphore(self._rotation.concurrency)

            async def bounded(decision: Decision) -> Outcome:
                async with semaphore:
                    if self._stopping:
                        sub = decision.subscription
                        log.info(
                            audit.ROTATION_SKIPPED,
                            subscription_id=sub.id,
                            object_type=sub.object_type,
                            reason=Reason.SHUTTING_DOWN,
                        )
                        return Outcome(
                            sub.id, sub.object_type, OutcomeKind.SKIPPED, Reason.SHUTTING_DOWN
                        )
                    return await self.rotate(decision)

            report.outcomes.extend(await asyncio.gather(*(bounded(d) for d in due)))
            # Orphans and quarantined subscriptions are not rotated, so their claims
            # must not schedule checks.
            listed = [
                record
                for d in report.decisions
                if (record := self._cache.get(d.subscription.id)) is not None
                and d.subscription.id not in self._quarantine
            ]
            self._next_check(report, listed, now)
            report.quarantined = sorted(self._quarantine.ids)
            report.finished_at = self._clock.now()
            log.info(
                audit.CYCLE_FINISHED,
                rotated=report.count(OutcomeKind.ROTATED),
                recovered=report.count(OutcomeKind.RECOVERED),
                failed=report.count(OutcomeKind.FAILED),
                conflicts=report.count(OutcomeKind.CONFLICT),
                skipped=report.count(OutcomeKind.SKIPPED),
                orphaned=len(report.orphans),
                subscriptions=len(report.decisions),
                duration_seconds=round(self._clock.monotonic() - started, 3),
                next_claim_expiry=format_time(report.next_claim_expiry),
            )
        return report

    async def _vault_now(self, records: Iterable[Record]) -> datetime:
        """The cycle's `now`, read once: Vault's time, the clock of every created_time.

        Carried forward from Vault's last answer on the monotonic clock; asked
        afresh (one `sys/health` call) only when a claim or horizon is to be
        judged, so a steady cycle still makes no Vault request.
        """
        judging = any(r.state != "active" for r in records)
        return await self._store.vault_now(refresh=judging)

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
        return Outcome(sub.id, sub.object_type, OutcomeKind.SKIPPED, reason)

    async def rotate(self, decision: Decision) -> Outcome:
        """Run the protocol (`rotator.rotation`) for one subscription; never raises."""
        self._in_flight += 1
        try:
            if decision.strategy == "swap" or decision.swap_phase:
                outcome = await swap(self._context, decision, self._listing, self._fence.successors)
            elif decision.strategy_reason == Reason.SWAP_FALLBACK:
                sub = decision.subscription
                log.warning(
                    audit.SWAP_FALLBACK,
                    subscription_id=sub.id,
                    object_type=sub.object_type,
                    swap_failures=decision.record.swap_failures,
                )
                outcome = await rotate(self._context, decision)
            elif await self._adoption_fenced(decision):
                outcome = self._skipped(decision, reason=Reason.SWAP_SUCCESSOR_PENDING)
            else:
                outcome = await rotate(self._context, decision)
        finally:
            self._in_flight -= 1
        self._quarantine.count(outcome, self._cache)
        if self.hooks is not None:
            self.hooks.committed(outcome)  # enqueues only: never delays or fails the rotation
        return outcome

    async def _adoption_fenced(self, decision: Decision) -> bool:
        """Before adopting a record-less subscription, re-read its twins' records uncached.

        A swap writes its intent before its create, and the create comes before
        any listing that shows the successor: a fresh read of the twins sees
        the intent whenever the listing saw the successor (docs/swap.md, section 5).
        """
        if decision.record.exists:
            return False
        # Read whatever this replica's strategy: another replica, a rule or a
        # `rotate --strategy swap` may be swapping. Only twins cost a read, and
        # a subscription is adopted once.
        sub = decision.subscription
        twins = [t for t in self._listing if t.id != sub.id and t.triple == sub.triple]
        fresh: list[Record] = []
        for twin in twins:
            try:
                fresh.append(await self._store.read(twin.id))
            except DependencyError:
                return True  # cannot tell: adopting later is harmless, adopting a successor is not
        return SwapFence.of(fresh).holds(sub)


def _new_id() -> str:
    return uuid.uuid4().hex


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else round(value.total_seconds(), 3)


def _reason_of(exc: Exception) -> Reason:
    return Reason.MONITE_ERROR if isinstance(exc, MoniteError) else Reason.VAULT_ERROR
