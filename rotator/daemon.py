"""`rotator run`: the scheduler loop, signal handling and the shutdown drain.

APScheduler 3.x runs one cycle job. Its asyncio executor cancels running jobs
on shutdown, so each cycle runs in a task of ours behind `asyncio.shield`, and
SIGTERM waits for that task (bounded) instead of letting a secret die mid-commit.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from rotator.config import ScheduleSettings, Settings
from rotator.engine import CycleReport, Engine, open_engine

log = structlog.get_logger("rotator.daemon")

# A host that slept through its slot still runs the catch-up cycle when it wakes.
MISFIRE_GRACE_SECONDS = 24 * 3600


def build_trigger(schedule: ScheduleSettings) -> BaseTrigger:
    jitter = int(schedule.jitter.total_seconds()) or None
    if schedule.cron is not None:
        return CronTrigger.from_crontab(schedule.cron, timezone=UTC)
    assert schedule.interval is not None
    return IntervalTrigger(seconds=schedule.interval.total_seconds(), jitter=jitter, timezone=UTC)


class Daemon:
    """Schedules cycles on one Engine and drains them on stop."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._current: asyncio.Task[CycleReport] | None = None
        self.last_report: CycleReport | None = None
        self._stopped = asyncio.Event()

    async def _cycle(self) -> None:
        if self._current is not None and not self._current.done():
            return
        self._current = asyncio.create_task(self._engine.run_cycle())
        self.last_report = await asyncio.shield(self._current)

    def stop(self) -> None:
        self._stopped.set()

    async def serve(self) -> int:
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            self._cycle,
            build_trigger(self._settings.schedule),
            id="cycle",
            name="rotation cycle",
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=MISFIRE_GRACE_SECONDS,
        )
        scheduler.start()
        log.info("daemon.started", schedule=_describe(self._settings.schedule))
        await self._stopped.wait()
        log.info("daemon.stopping", in_flight=self._engine.in_flight)
        self._engine.request_stop()
        scheduler.shutdown(wait=False)
        if self._current is not None and not self._current.done():
            timeout = self._settings.rotation.shutdown_timeout.total_seconds()
            done, _ = await asyncio.wait({self._current}, timeout=timeout)
            if not done:
                log.error("daemon.drain_timeout", in_flight=self._engine.in_flight)
                return 1
        log.info("daemon.stopped")
        return 0


def _describe(schedule: ScheduleSettings) -> str:
    if schedule.cron is not None:
        return f"cron {schedule.cron}"
    assert schedule.interval is not None
    return f"every {schedule.interval.total_seconds():g}s"


async def _serve(settings: Settings, owner: str) -> int:
    loop = asyncio.get_running_loop()
    async with open_engine(settings, owner=owner) as engine:
        daemon = Daemon(engine, settings)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, daemon.stop)
        return await daemon.serve()


def run_daemon(settings: Settings, *, owner: str) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    return asyncio.run(_serve(settings, owner))
