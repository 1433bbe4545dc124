"""When cycles run: the trigger, the scheduler, the one-off claim check, the cycle limit.

APScheduler 3.x `AsyncIOScheduler`, one cycle job (`max_instances=1`,
`coalesce=True`, a large misfire grace, first run at start), plus a one-off
check at the earliest claim expiry a cycle saw, so recovery takes about
`claim_ttl`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Final

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from rotator.audit import DAEMON_CLAIM_CHECK
from rotator.clock import Clock
from rotator.config import ScheduleSettings, Settings, cron_trigger
from rotator.engine import CycleReport
from rotator.model import format_time

log = structlog.get_logger("rotator.daemon")

CYCLE_JOB: Final = "cycle"
CLAIM_CHECK_JOB: Final = "claim-check"

# A host that slept through its slot still runs the catch-up cycle when it wakes.
MISFIRE_GRACE_SECONDS: Final = 7 * 24 * 3600
# The claim check runs this long after the expiry, so the claim has surely run out.
CLAIM_CHECK_DELAY: Final = timedelta(seconds=1)
# A cycle job whose next run is this far in the past means the scheduler stopped working.
SCHEDULER_STALE: Final = timedelta(minutes=2)
# A cycle running longer than its limit (see cycle_limit) is hung; never less than this.
CYCLE_LIMIT_FLOOR: Final = timedelta(hours=1)

Job = Callable[[], Awaitable[None]]


def build_trigger(schedule: ScheduleSettings) -> BaseTrigger:
    """The cycle job's trigger: an interval or a crontab line, with the configured jitter."""
    jitter = int(schedule.jitter.total_seconds()) or None
    if schedule.cron is not None:
        return cron_trigger(schedule.cron, jitter=jitter)
    assert schedule.interval is not None
    return IntervalTrigger(seconds=schedule.interval.total_seconds(), jitter=jitter, timezone=UTC)


def cycle_limit(settings: Settings) -> timedelta:
    """The longest a healthy cycle can run; one running longer is hung.

    One Monite call per list page and per rotation (`max_pages + max_pages ×
    page_size`, or the per-cycle cap) at `monite.rate_limit`, times 2 for
    retries and backoffs, plus `rotation.commit_retry_for` and 10 ×
    `rotation.claim_ttl` for Vault; never less than CYCLE_LIMIT_FLOOR.
    """
    monite, rotation = settings.monite, settings.rotation
    pages = monite.max_pages
    rotations = rotation.max_rotations_per_cycle or pages * monite.page_size
    calls = timedelta(seconds=(pages + rotations) / monite.rate_limit)
    limit = 2 * calls + rotation.commit_retry_for + 10 * rotation.claim_ttl
    return max(CYCLE_LIMIT_FLOOR, limit)


def describe_schedule(schedule: ScheduleSettings) -> str:
    jitter = f" (jitter {schedule.jitter.total_seconds():g}s)" if schedule.jitter else ""
    if schedule.cron is not None:
        return f"cron {schedule.cron} UTC{jitter}"
    assert schedule.interval is not None
    return f"every {schedule.interval.total_seconds():g}s{jitter}"


class CycleScheduler:
    """The daemon's AsyncIOScheduler: the cycle job and the one-off claim check."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.scheduler: AsyncIOScheduler | None = None
        self._stopping = False
        self._immediate_checks = 0

    def start(self, job: Job, schedule: ScheduleSettings) -> None:
        scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": MISFIRE_GRACE_SECONDS,
            },
        )
        scheduler.add_job(
            job,
            build_trigger(schedule),
            id=CYCLE_JOB,
            name="rotation cycle",
            next_run_time=self._clock.now(),
        )
        scheduler.start()
        self.scheduler = scheduler

    def reschedule(self, schedule: ScheduleSettings) -> None:
        if self.scheduler is not None:
            self.scheduler.reschedule_job(CYCLE_JOB, trigger=build_trigger(schedule))

    def stop(self) -> None:
        # AsyncIOScheduler.shutdown only queues the work on the loop, and `running`
        # stays true until then: a second call would fail inside that callback.
        scheduler = self.scheduler
        if scheduler is not None and scheduler.running and not self._stopping:
            self._stopping = True
            scheduler.shutdown(wait=False)

    def stopped(self) -> bool:
        """True when the scheduler no longer schedules: shut down, its cycle job gone, or
        that job's next run stuck in the past."""
        scheduler = self.scheduler
        if scheduler is None or not scheduler.running:
            return True
        job = scheduler.get_job(CYCLE_JOB)
        if job is None:
            return True
        next_run: datetime | None = job.next_run_time
        return next_run is not None and next_run <= self._clock.now() - SCHEDULER_STALE

    def schedule_claim_check(self, job: Job, report: CycleReport, claim_ttl: timedelta) -> None:
        """A one-off cycle just after the earliest claim expiry, so recovery takes ~claim_ttl.

        Not `rotator.retry`: this is no loop of awaited attempts but the next
        run of a scheduler job, computed once per cycle and deterministic.
        """
        scheduler = self.scheduler
        if report.error is not None or scheduler is None:
            return
        # Claims are judged on Vault's clock; the scheduler runs on ours, so the
        # check is scheduled by the delay the cycle measured on Vault's clock.
        due_in = report.next_check_in
        if due_in is None:
            self._immediate_checks = 0
            _remove_job(scheduler, CLAIM_CHECK_JOB)
            return
        now = self._clock.now()
        if due_in <= timedelta(0):
            # Due already and this cycle did not clear it (its takeover failed):
            # back off rather than cycle in a tight loop.
            self._immediate_checks += 1
            backoff = min(claim_ttl.total_seconds(), 2.0**self._immediate_checks)
            run_at = now + timedelta(seconds=backoff)
        else:
            self._immediate_checks = 0
            run_at = now + due_in + CLAIM_CHECK_DELAY
        cycle = scheduler.get_job(CYCLE_JOB)
        if cycle is not None and cycle.next_run_time is not None and cycle.next_run_time <= run_at:
            _remove_job(scheduler, CLAIM_CHECK_JOB)  # the regular cycle comes first anyway
            return
        scheduler.add_job(
            job,
            DateTrigger(run_date=run_at, timezone=UTC),
            id=CLAIM_CHECK_JOB,
            name="claim expiry check",
            replace_existing=True,
        )
        log.info(DAEMON_CLAIM_CHECK, run_id=report.run_id, run_at=format_time(run_at))


def _remove_job(scheduler: AsyncIOScheduler, job_id: str) -> None:
    if scheduler.get_job(job_id) is not None:
        scheduler.remove_job(job_id)
