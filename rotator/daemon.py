"""`rotator run`: the scheduler, signals, preflight, reloads and the shutdown drain.

Owns the daemon's life: preflight until Monite and Vault answer, then
`READY=1`; cycles on an APScheduler 3.x `AsyncIOScheduler`; a one-off check
at the earliest claim expiry a cycle saw; SIGHUP reloads; SIGTERM/SIGINT
drains; the health/metrics endpoint and the systemd watchdog.

Decisions that shape it:

- **Cycles run in a task of ours.** APScheduler's asyncio executor cancels
  running jobs on shutdown; a cancelled commit would lose a secret Monite has
  already replaced. So a job only starts the cycle task and waits on it
  through `asyncio.shield`, and shutdown waits for that task (bounded by
  `rotation.shutdown_timeout`) after `engine.request_stop()` has stopped new
  rotations from starting. A drain that runs out of time exits 1.
- **Preflight retries, except a failure nobody can wait out.** Until the
  engine opens (which verifies Vault: namespace, login, a KV v2 mount, the
  capabilities rotation needs) and `engine.check()` passes, the daemon
  retries with capped, jittered backoff (each attempt bounded) until
  SIGTERM: Vault sealed or Monite down at boot must not crash-loop the unit.
  But when the *first* attempt fails with an error that is not retryable
  (credentials refused, a permission missing, an answer that is not
  Monite's), it exits at once (77 when credentials or a permission were
  refused, 69 otherwise): waiting cannot fix a token or a base URL that are
  wrong, the fix is a new config or secret, which a restart picks up, and a
  failed unit is what an operator looks at. A setting Vault shows wrong (no
  such namespace or mount, a mount that is not KV v2) exits 78 at any
  attempt, even after Vault was first found sealed or unreachable.
- **A reload never makes things worse.** SIGHUP re-reads the config with
  `load_settings(path, environ)`. An invalid file, or new connection settings
  that cannot reach Monite and Vault, leave everything as it was
  (`config.reload_failed` with the one-line reason). A valid one applies as a
  whole: policy, schedule, log level and the endpoint at once; Monite, Vault
  and rotation settings by swapping in a new engine between cycles.
- **The watchdog proves progress, not just a loop.** `WATCHDOG=1` is sent
  (and `/healthz` answers 200) only while the scheduler runs, its cycle job
  is not stuck in the past, and the cycle in flight (if any) has not run
  longer than the cycle limit. APScheduler alone cannot tell: with
  `max_instances=1` it skips the runs a hung cycle blocks and keeps moving
  `next_run_time` forward. The limit is the longest a healthy cycle can
  take, doubled: one Monite call per list page and per rotation
  (`max_pages + max_pages × page_size`, or the per-cycle cap) at
  `monite.rate_limit`, times 2 for retries and backoffs, plus
  `rotation.commit_retry_for` (a commit may be retried that long) and
  10 × `rotation.claim_ttl` for Vault; never less than `CYCLE_LIMIT_FLOOR`
  (1 hour). With the defaults that is about 2.5 hours. A restart then is
  safe: claims left behind are recovered after `claim_ttl`.
- **An engine in use is never closed.** A reload that replaces or drops the
  engine retires it; the preflight check and the readiness probe that hold
  it finish on it, and the last one out closes it. A cycle holds the engine
  lock, so a swap waits for it.
- **An unexpected exception is a failure, said once.** `serve()` logs
  `daemon.failed` with the traceback and exits 70 (EX_SOFTWARE), never 0.
- **Ready means the last cycle succeeded.** `/readyz` is 200 only when the
  last cycle ran with no failed rotation and Monite and Vault answer now (a
  probe cached for a few seconds, so probes cannot eat Monite's rate limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from rotator import __version__
from rotator.audit import (
    CONFIG_RELOAD_FAILED,
    CONFIG_RELOADED,
    CONFIG_SECRET_FILE_EXPOSED,
    CYCLE_FAILED,
    DAEMON_CLAIM_CHECK,
    DAEMON_DRAIN_TIMEOUT,
    DAEMON_FAILED,
    DAEMON_PREFLIGHT_FAILED,
    DAEMON_READY,
    DAEMON_STARTED,
    DAEMON_STOPPED,
    DAEMON_STOPPING,
    DAEMON_UNHEALTHY,
    configure_logging,
)
from rotator.clock import Clock, SystemClock
from rotator.config import ExposedFile, ScheduleSettings, Settings, cron_trigger, load_settings
from rotator.engine import CycleReport, Engine, open_engine
from rotator.errors import (
    ConfigError,
    DependencyError,
    MoniteAuthError,
    VaultAuthError,
    VaultConfigError,
)
from rotator.health import CachedProbe, HealthServer, Routes, Verdict
from rotator.metrics import CONTENT_TYPE, Metrics
from rotator.model import format_time
from rotator.sdnotify import Notifier

log = structlog.get_logger("rotator.daemon")


EXIT_OK: Final = 0
EXIT_DRAIN_TIMEOUT: Final = 1
EXIT_SOFTWARE: Final = 70  # sysexits EX_SOFTWARE: an unexpected exception (a bug)

CYCLE_JOB: Final = "cycle"
CLAIM_CHECK_JOB: Final = "claim-check"

# A host that slept through its slot still runs the catch-up cycle when it wakes.
MISFIRE_GRACE_SECONDS: Final = 7 * 24 * 3600
# The claim check runs this long after the expiry, so the claim has surely run out.
CLAIM_CHECK_DELAY: Final = timedelta(seconds=1)
PREFLIGHT_ATTEMPT_SECONDS: Final = 30.0
PREFLIGHT_BACKOFF_CAP_SECONDS: Final = 60.0
# Readiness probes reach Monite and Vault at most this often, whatever the probe rate.
READINESS_CACHE_SECONDS: Final = 3.0
READINESS_TIMEOUT_SECONDS: Final = 5.0
# A cycle job whose next run is this far in the past means the scheduler stopped working.
SCHEDULER_STALE: Final = timedelta(minutes=2)
# A cycle running longer than its limit (see cycle_limit) is hung; never less than this.
CYCLE_LIMIT_FLOOR: Final = timedelta(hours=1)

Phase = Literal["starting", "preflight", "running", "stopping"]
EngineFactory = Callable[[Settings], contextlib.AbstractAsyncContextManager[Engine]]
T = TypeVar("T")


# ---------------------------------------------------------------------------
# Triggers
# ---------------------------------------------------------------------------


def build_trigger(schedule: ScheduleSettings) -> BaseTrigger:
    """The cycle job's trigger: an interval or a crontab line, with the configured jitter."""
    jitter = int(schedule.jitter.total_seconds()) or None
    if schedule.cron is not None:
        return cron_trigger(schedule.cron, jitter=jitter)
    assert schedule.interval is not None
    return IntervalTrigger(seconds=schedule.interval.total_seconds(), jitter=jitter, timezone=UTC)


def cycle_limit(settings: Settings) -> timedelta:
    """The longest a healthy cycle can run; one running longer is hung (module docstring)."""
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


# ---------------------------------------------------------------------------
# The daemon
# ---------------------------------------------------------------------------


class _Stopped(Exception):
    """Raised inside the daemon when SIGTERM arrives while it waits for something."""


class _EngineHandle:
    """An open engine and its exit stack, closed only once retired and no longer used.

    `acquire()`/`release()` bracket a check that runs outside the engine lock
    (the preflight, the readiness probe): a reload that retires the engine
    meanwhile leaves it open until the last user releases it.
    """

    def __init__(self, engine: Engine, stack: contextlib.AsyncExitStack) -> None:
        self.engine = engine
        self._stack = stack
        self._users = 0
        self._retired = False
        self._closing: asyncio.Task[None] | None = None

    def acquire(self) -> Engine:
        self._users += 1
        return self.engine

    def release(self) -> None:
        self._users -= 1
        if self._retired and self._users == 0:
            self._close()

    @property
    def closed(self) -> bool:
        return self._closing is not None and self._closing.done()

    def retire(self) -> asyncio.Task[None] | None:
        """No new users from now on; closes at once if unused. The closing task, if started."""
        self._retired = True
        return self._close() if self._users == 0 else None

    async def close_now(self) -> None:
        """Close whoever still uses it (shutdown: the users have been cancelled)."""
        self._retired = True
        await asyncio.shield(self._close())

    def _close(self) -> asyncio.Task[None]:
        if self._closing is None:
            self._closing = asyncio.create_task(self._aclose(), name="engine-close")
        return self._closing

    async def _aclose(self) -> None:
        try:
            await self._stack.aclose()
        except Exception as exc:  # nothing is left to use; say so and carry on
            log.warning(
                DAEMON_UNHEALTHY, reason="closing an engine failed", error=type(exc).__name__
            )


class Daemon:
    """Schedules cycles on one Engine at a time, and drains them on stop."""

    def __init__(
        self,
        settings: Settings,
        *,
        owner: str,
        config_path: Path | None = None,
        environ: Mapping[str, str] | None = None,
        engine_factory: EngineFactory | None = None,
        notifier: Notifier | None = None,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        cycle_limit: timedelta | None = None,
    ) -> None:
        """`cycle_limit`: how long a cycle may run before the daemon counts as hung;
        default `cycle_limit(settings)` (tests pass a short one)."""
        self._settings = settings
        self._cycle_limit = cycle_limit
        self._owner = owner
        self._config_path = config_path
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._engine_factory: EngineFactory = engine_factory or (
            lambda s: open_engine(s, owner=owner)
        )
        self._notifier = notifier or Notifier(self._environ)
        self.metrics = metrics or Metrics()
        self._clock = clock or SystemClock()
        self._rng = random.Random()

        self._handle: _EngineHandle | None = None
        self._retired: set[_EngineHandle] = set()  # swapped out, closed once unused
        self._engine_generation = 0  # bumped by every swap
        self._engine_lock = asyncio.Lock()  # held by a cycle, and by an engine swap
        self._reload_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._phase: Phase = "starting"
        self._preflight_error: str | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._scheduler_stopping = False
        self._current: asyncio.Task[None] | None = None
        self._current_started = 0.0  # clock.monotonic() when _current began
        self._background: set[asyncio.Task[Any]] = set()
        self._health: HealthServer | None = None
        self._immediate_checks = 0
        self._unhealthy_logged = False
        self.last_report: CycleReport | None = None
        self._probe = CachedProbe(
            self._check_dependencies,
            ttl=READINESS_CACHE_SECONDS,
            timeout=READINESS_TIMEOUT_SECONDS,
        )

    # -- control (called from signal handlers on the loop) ------------------

    def stop(self) -> None:
        """Begin the shutdown: no new cycle or rotation, drain what is in flight."""
        if self._stop.is_set():
            log.info(DAEMON_STOPPING, note="already stopping; still draining")
        self._stop.set()

    def request_reload(self) -> None:
        """Re-read the configuration (SIGHUP)."""
        self._spawn(self.reload(), "config-reload")

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def _engine(self) -> Engine | None:
        return None if self._handle is None else self._handle.engine

    @property
    def health_address(self) -> tuple[str, int] | None:
        return None if self._health is None else self._health.address

    # -- the life ---------------------------------------------------------------

    async def serve(self) -> int:
        """Run until stopped; returns the exit code. Raises DependencyError or ConfigError
        when the daemon cannot start at all (exit 69, 77 if credentials were refused, or
        78 in the CLI)."""
        code = EXIT_OK
        try:
            await self._start_health(self._settings)
            log.info(
                DAEMON_STARTED,
                version=__version__,
                pid=os.getpid(),
                schedule=describe_schedule(self._settings.schedule),
                health=_address_text(self.health_address),
                systemd_notify=self._notifier.enabled,
                watchdog_seconds=self._notifier.watchdog_interval,
            )
            if self._notifier.watchdog_interval is not None:
                self._spawn(self._watchdog(self._notifier.watchdog_interval), "watchdog")
            if await self._preflight():
                self._start_scheduler()
                self._phase = "running"
                self._notifier.ready(status="ready; first cycle running")
                log.info(DAEMON_READY, schedule=describe_schedule(self._settings.schedule))
                await self._stop.wait()
            code = await self._drain()
        except DependencyError as exc:
            # The CLI's exit code: 78 for a setting Vault showed wrong, 77 when our
            # credentials or a permission were refused, else 69.
            if isinstance(exc, VaultConfigError):
                code = 78
            else:
                code = 77 if isinstance(exc, MoniteAuthError | VaultAuthError) else 69
            raise
        except ConfigError:
            code = 78
            raise
        except Exception as exc:
            # A bug: say so once, with the traceback in the log (redacted like
            # every line), and fail the unit instead of a bare traceback.
            code = EXIT_SOFTWARE
            log.exception(DAEMON_FAILED, error=type(exc).__name__, exit_code=code)
            self._notifier.status(f"failed: internal error ({type(exc).__name__})")
        finally:
            await self._cleanup()
            log.info(DAEMON_STOPPED, exit_code=code)
        return code

    async def _preflight(self) -> bool:
        """Wait until Monite and Vault answer. False when stopped first."""
        self._phase = "preflight"
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            generation = self._engine_generation
            try:
                await self._until_stopped(self._preflight_attempt(), None)
            except _Stopped:
                return False
            except (DependencyError, TimeoutError):
                if generation != self._engine_generation:
                    # A reload replaced the settings during the attempt: this
                    # answer is about the old ones. Try the new ones at once.
                    attempt = 0
                    continue
                if not self._preflight_failed(attempt, sys.exc_info()[1]):
                    raise
            else:
                if generation != self._engine_generation:
                    attempt = 0
                    continue  # passed on settings a reload has since replaced
                self._preflight_error = None
                return True
            delay = self._rng.uniform(0.5, 1.0) * min(
                PREFLIGHT_BACKOFF_CAP_SECONDS, 2.0 ** min(attempt, 10)
            )
            log.warning(
                DAEMON_PREFLIGHT_FAILED,
                attempt=attempt,
                error=self._preflight_error,
                retry_in_seconds=round(delay, 1),
            )
            self._notifier.status(f"waiting for Monite and Vault: {self._preflight_error}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
        return False

    def _preflight_failed(self, attempt: int, exc: BaseException | None) -> bool:
        """Record a failed attempt; False when it is fatal (the caller re-raises)."""
        if isinstance(exc, DependencyError):
            # A setting Vault's answer shows wrong (no such namespace or mount, a
            # mount that is not KV v2) stays wrong however long we wait.
            if (attempt == 1 and not exc.retryable) or isinstance(exc, VaultConfigError):
                self._notifier.status(f"cannot start: {exc}")
                log.error(DAEMON_PREFLIGHT_FAILED, attempt=attempt, error=str(exc), fatal=True)
                return False
            self._preflight_error = str(exc)
        else:
            self._preflight_error = (
                f"Monite and Vault did not answer within {PREFLIGHT_ATTEMPT_SECONDS:g}s"
            )
        return True

    async def _preflight_attempt(self) -> None:
        """Open the engine if there is none (which verifies Vault), and check it; each step
        bounded. The engine stays open between attempts."""
        handle = await asyncio.wait_for(self._acquire_engine(), timeout=PREFLIGHT_ATTEMPT_SECONDS)
        try:
            await asyncio.wait_for(handle.engine.check(), timeout=PREFLIGHT_ATTEMPT_SECONDS)
        finally:
            handle.release()

    async def _acquire_engine(self) -> _EngineHandle:
        """The current engine (opened when there is none), acquired: the caller releases it."""
        async with self._engine_lock:
            if self._handle is None:
                self._handle = _EngineHandle(*await self._open_engine(self._settings))
                self.metrics.attach(self._handle.engine)
            self._handle.acquire()
            return self._handle

    async def _open_engine(self, settings: Settings) -> tuple[Engine, contextlib.AsyncExitStack]:
        stack = contextlib.AsyncExitStack()
        try:
            engine = await stack.enter_async_context(self._engine_factory(settings))
        except BaseException:
            await stack.aclose()
            raise
        return engine, stack

    async def _until_stopped(self, work: Awaitable[T], limit: float | None) -> T:
        """`work`, unless SIGTERM comes first (_Stopped) or `limit` seconds pass (TimeoutError)."""
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            done, _ = await asyncio.wait(
                {task, stopper}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopper.cancel()
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        if stopper in done:
            raise _Stopped
        raise TimeoutError

    # -- scheduling -------------------------------------------------------------

    def _start_scheduler(self) -> None:
        scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": MISFIRE_GRACE_SECONDS,
            },
        )
        scheduler.add_job(
            self._cycle_job,
            build_trigger(self._settings.schedule),
            id=CYCLE_JOB,
            name="rotation cycle",
            next_run_time=self._clock.now(),
        )
        scheduler.start()
        self._scheduler = scheduler

    async def _cycle_job(self) -> None:
        """What APScheduler runs: start a cycle in our own task and wait for it, shielded."""
        if self._stop.is_set():
            return
        if self._current is not None and not self._current.done():
            # The claim check and the regular cycle met; the running cycle covers both.
            return
        self._current_started = self._clock.monotonic()
        self._current = asyncio.create_task(self._run_cycle(), name="rotation-cycle")
        try:
            await asyncio.shield(self._current)
        except asyncio.CancelledError:
            # The scheduler's executor cancels jobs on shutdown; the cycle task
            # carries on, and _drain waits for it. Nothing to report here.
            return

    async def _run_cycle(self) -> None:
        async with self._engine_lock:
            if self._handle is None:
                # A reload dropped the engine just as the preflight passed: open
                # one on the current settings; the next cycle tries again if not.
                try:
                    self._handle = _EngineHandle(*await self._open_engine(self._settings))
                except DependencyError as exc:
                    log.error(CYCLE_FAILED, reason="dependency_unavailable", error=str(exc))
                    return
                self.metrics.attach(self._handle.engine)
            engine = self._handle.engine
            try:
                report = await engine.run_cycle()
            except Exception as exc:
                # run_cycle reports dependency failures itself; this is a bug.
                log.exception(CYCLE_FAILED, reason="internal_error", error=type(exc).__name__)
                return
        self._after_cycle(report)

    def _after_cycle(self, report: CycleReport) -> None:
        self.last_report = report
        self.metrics.observe(report)
        finished = report.finished_at or report.started_at
        self._notifier.status(f"last cycle {finished:%Y-%m-%dT%H:%M:%SZ}: {report.summary()}")
        self._schedule_claim_check(report)

    def _schedule_claim_check(self, report: CycleReport) -> None:
        """A one-off cycle just after the earliest claim expiry, so recovery takes ~claim_ttl."""
        scheduler = self._scheduler
        if report.error is not None or scheduler is None or self._stop.is_set():
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
            backoff = min(
                self._settings.rotation.claim_ttl.total_seconds(),
                2.0**self._immediate_checks,
            )
            run_at = now + timedelta(seconds=backoff)
        else:
            self._immediate_checks = 0
            run_at = now + due_in + CLAIM_CHECK_DELAY
        cycle = scheduler.get_job(CYCLE_JOB)
        if cycle is not None and cycle.next_run_time is not None and cycle.next_run_time <= run_at:
            _remove_job(scheduler, CLAIM_CHECK_JOB)  # the regular cycle comes first anyway
            return
        scheduler.add_job(
            self._cycle_job,
            DateTrigger(run_date=run_at, timezone=UTC),
            id=CLAIM_CHECK_JOB,
            name="claim expiry check",
            replace_existing=True,
        )
        log.info(DAEMON_CLAIM_CHECK, run_id=report.run_id, run_at=format_time(run_at))

    # -- health -----------------------------------------------------------------

    def alive(self) -> bool:
        """The loop runs (we are here), the scheduler still schedules, no cycle is hung."""
        return self._unhealthy_reason() is None

    def _unhealthy_reason(self) -> str | None:
        if self._phase != "running":
            return None  # starting, waiting for dependencies, or draining: all bounded
        scheduler = self._scheduler
        if scheduler is None or not scheduler.running:
            return "scheduler stopped"
        job = scheduler.get_job(CYCLE_JOB)
        if job is None:
            return "scheduler stopped"
        next_run: datetime | None = job.next_run_time
        if next_run is not None and next_run <= self._clock.now() - SCHEDULER_STALE:
            return "scheduler stopped"
        current = self._current
        if current is not None and not current.done():
            limit = (self._cycle_limit or cycle_limit(self._settings)).total_seconds()
            running = self._clock.monotonic() - self._current_started
            if running > limit:
                return f"cycle hung: running for {running:.0f}s, over the {limit:g}s limit"
        return None

    def _liveness(self) -> Verdict:
        reason = self._unhealthy_reason()
        return Verdict(reason is None, {"status": reason or "ok", "phase": self._phase})

    async def _readiness(self) -> Verdict:
        reasons: list[str] = []
        if self._phase == "preflight":
            reasons.append(f"waiting for Monite and Vault: {self._preflight_error or 'checking'}")
        elif self._phase == "stopping":
            reasons.append("shutting down")
        elif self._phase == "starting":
            reasons.append("starting")
        report = self.last_report
        if report is None:
            reasons.append("no cycle has finished yet")
        elif report.error is not None:
            reasons.append(f"last cycle could not run: {report.error}")
        elif not report.ok:
            reasons.append(f"last cycle: {report.count('failed')} rotation(s) failed")
        if self._phase == "running":
            problem = await self._probe.result()
            if problem is not None:
                reasons.append(f"dependencies: {problem}")
        detail: dict[str, Any] = {"ready": not reasons, "phase": self._phase, "reasons": reasons}
        if report is not None:
            detail["last_cycle"] = {
                "run_id": report.run_id,
                "finished_at": format_time(report.finished_at),
                "summary": report.summary(),
            }
        return Verdict(not reasons, detail)

    async def _check_dependencies(self) -> None:
        handle = self._handle
        if handle is None:
            raise DependencyError("no connection to Monite and Vault yet")
        # Held until the check ends: a reload swapping the engine meanwhile
        # leaves this one open until then.
        engine = handle.acquire()
        try:
            await engine.check()
        finally:
            handle.release()

    def _routes(self) -> Routes:
        return Routes(
            live=self._liveness,
            ready=self._readiness,
            metrics=self.metrics.render,
            metrics_content_type=CONTENT_TYPE,
        )

    async def _start_health(self, settings: Settings) -> None:
        self._health = await self._bind_health(settings)

    async def _bind_health(self, settings: Settings) -> HealthServer | None:
        if not settings.health.enabled:
            return None
        server = HealthServer(self._routes(), settings.health.host, settings.health.port)
        try:
            await server.start()
        except OSError as exc:
            raise ConfigError(
                f"health.listen {settings.health.listen}: cannot listen there "
                f"({exc.strerror or exc}); pick a free address or set health.enabled = false"
            ) from None
        return server

    async def _watchdog(self, interval: float) -> None:
        while True:
            reason = self._unhealthy_reason()
            if reason is None:
                self._notifier.watchdog()
                self._unhealthy_logged = False
            elif not self._unhealthy_logged:
                # Withholding WATCHDOG=1 lets systemd restart us; say why once.
                log.error(DAEMON_UNHEALTHY, reason=reason)
                self._unhealthy_logged = True
            await asyncio.sleep(interval)

    # -- reload -----------------------------------------------------------------

    async def reload(self) -> bool:
        """Apply the configuration as it is now on disk and in the environment, or keep the old.

        True when the new settings were applied.
        """
        async with self._reload_lock:
            if self._stop.is_set():
                return False
            exposed: list[ExposedFile] = []
            try:
                new = load_settings(self._config_path, self._environ, exposed=exposed)
            except ConfigError as exc:
                return self._reload_failed(str(exc))
            except Exception as exc:  # a bug reading the file must not end the task unseen
                return self._reload_failed(
                    f"reading the configuration failed unexpectedly ({type(exc).__name__}); "
                    "check the file, and report this as a bug"
                )
            for exposed_file in exposed:
                log.warning(CONFIG_SECRET_FILE_EXPOSED, **exposed_file.audit_fields())
            old = self._settings
            rebuild = _connection_settings(old) != _connection_settings(new)
            new_engine: tuple[Engine, contextlib.AsyncExitStack] | None = None
            health: HealthServer | None = self._health
            swapped = False
            try:
                if rebuild and self._phase == "running":
                    try:
                        new_engine = await self._until_stopped(self._open_engine(new), None)
                        await self._until_stopped(
                            new_engine[0].check(), READINESS_TIMEOUT_SECONDS * 2
                        )
                    except _Stopped:
                        return False
                    except (DependencyError, TimeoutError) as exc:
                        reason = str(exc) or "no answer in time"
                        return self._reload_failed(
                            f"the new settings cannot reach Monite and Vault: {reason}"
                        )
                if new.health != old.health:
                    try:
                        health = await self._rebind_health(new)
                    except ConfigError as exc:
                        return self._reload_failed(str(exc))
                # Everything is validated: apply as a whole from here on.
                self._settings = new
                if new.log != old.log:
                    configure_logging(fmt=new.log.format, level=new.log.level, stream=sys.stdout)
                if health is not self._health:
                    old_health, self._health = self._health, health
                    if old_health is not None:
                        await old_health.close()
                if rebuild:
                    await self._swap_engine(new_engine)
                    swapped = True
                elif self._engine is not None:
                    self._engine.policy = new.policy
                if new.schedule != old.schedule and self._scheduler is not None:
                    self._scheduler.reschedule_job(CYCLE_JOB, trigger=build_trigger(new.schedule))
                changed = [
                    name
                    for name in type(new).model_fields
                    if getattr(new, name) != getattr(old, name)
                ]
                log.info(
                    CONFIG_RELOADED,
                    changed=changed,
                    schedule=describe_schedule(new.schedule),
                    health=_address_text(self.health_address),
                )
                return True
            finally:
                if new_engine is not None and not swapped:
                    await new_engine[1].aclose()
                if health is not None and health is not self._health:
                    await health.close()

    def _reload_failed(self, reason: str) -> bool:
        log.error(CONFIG_RELOAD_FAILED, reason=reason, keeping="the running configuration")
        self._notifier.status(f"config reload failed, running on the previous one: {reason}")
        return False

    async def _rebind_health(self, new: Settings) -> HealthServer | None:
        old = self._settings.health
        if old.enabled and new.health.enabled and old.listen == new.health.listen:
            return self._health
        # The new address is bound before the old one closes, so a reload that
        # cannot listen leaves the endpoint where it was.
        return await self._bind_health(new)

    async def _swap_engine(self, new: tuple[Engine, contextlib.AsyncExitStack] | None) -> None:
        """Replace the engine once no cycle runs; None drops it (the preflight opens one).

        The old engine is closed now if nothing uses it, else by its last user
        (a preflight check or a readiness probe still running on it).
        """
        async with self._engine_lock:
            old = self._handle
            self._handle = None if new is None else _EngineHandle(*new)
            self._engine_generation += 1
            self.metrics.attach(self._engine)
        self._probe.invalidate()
        if old is None:
            return
        self._retired = {h for h in self._retired if not h.closed}
        self._retired.add(old)
        closing = old.retire()
        if closing is not None:
            await asyncio.shield(closing)

    # -- shutdown ---------------------------------------------------------------

    async def _drain(self) -> int:
        """Stop scheduling, stop new rotations, and wait (bounded) for those in flight."""
        self._phase = "stopping"
        engine = self._engine
        in_flight = engine.in_flight if engine is not None else 0
        log.info(DAEMON_STOPPING, in_flight=in_flight)
        self._notifier.stopping(status=f"stopping; {in_flight} rotation(s) in flight")
        self._stop_scheduler()
        if engine is not None:
            engine.request_stop()
        current = self._current
        if current is None or current.done():
            return EXIT_OK
        timeout = self._settings.rotation.shutdown_timeout.total_seconds()
        done, _ = await asyncio.wait({current}, timeout=timeout)
        if done:
            return EXIT_OK
        log.error(
            DAEMON_DRAIN_TIMEOUT,
            in_flight=engine.in_flight if engine is not None else 0,
            timeout_seconds=timeout,
            note="claims left behind are recovered after claim_ttl",
        )
        return EXIT_DRAIN_TIMEOUT

    def _stop_scheduler(self) -> None:
        # AsyncIOScheduler.shutdown only queues the work on the loop, and `running`
        # stays true until then: a second call would fail inside that callback.
        scheduler = self._scheduler
        if scheduler is not None and scheduler.running and not self._scheduler_stopping:
            self._scheduler_stopping = True
            scheduler.shutdown(wait=False)

    async def _cleanup(self) -> None:
        self._stop.set()
        tasks = list(self._background)
        if self._current is not None and not self._current.done():
            tasks.append(self._current)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._stop_scheduler()
        if self._health is not None:
            await self._health.close()
            self._health = None
        handles = [*self._retired, *([self._handle] if self._handle is not None else [])]
        self._handle, self._retired = None, set()
        for handle in handles:
            await handle.close_now()
        self._notifier.close()

    def _spawn(self, work: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _connection_settings(settings: Settings) -> tuple[Any, ...]:
    """What a running engine is built from; the drain timeout is the daemon's alone."""
    rotation = settings.rotation.model_copy(update={"shutdown_timeout": timedelta(0)})
    return (settings.monite, settings.vault, rotation)


def _remove_job(scheduler: AsyncIOScheduler, job_id: str) -> None:
    if scheduler.get_job(job_id) is not None:
        scheduler.remove_job(job_id)


def _address_text(address: tuple[str, int] | None) -> str:
    if address is None:
        return "disabled"
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _signals(daemon: Daemon) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    handlers = {
        signal.SIGTERM: daemon.stop,
        signal.SIGINT: daemon.stop,
        signal.SIGHUP: daemon.request_reload,
    }
    for signum, handler in handlers.items():
        loop.add_signal_handler(signum, handler)
    try:
        yield
    finally:
        for signum in handlers:
            loop.remove_signal_handler(signum)


async def _serve(
    settings: Settings, owner: str, config_path: Path | None, environ: Mapping[str, str]
) -> int:
    daemon = Daemon(settings, owner=owner, config_path=config_path, environ=environ)
    async with _signals(daemon):
        return await daemon.serve()


def run_daemon(
    settings: Settings,
    *,
    owner: str,
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code (0, or 1 when the drain timed out).

    Raises DependencyError when the first preflight fails for good (the CLI
    exits 77 if credentials were refused, else 69); returns 78 with one line on
    stderr when the endpoint cannot listen.
    """
    try:
        return asyncio.run(
            _serve(settings, owner, config_path, os.environ if environ is None else environ)
        )
    except ConfigError as exc:
        print(f"rotator: config error: {exc}", file=sys.stderr)
        return 78
