"""The `Daemon`: its life from start to drain, one Engine at a time, and the cycle job.

Decisions that shape it (the others live with their modules: `preflight`,
`reload`, `probes`, `schedule`, `drain`):

- **Cycles run in a task of ours.** APScheduler's asyncio executor cancels
  running jobs on shutdown; a cancelled commit would lose a secret Monite has
  already replaced. So a job only starts the cycle task and waits on it
  through `asyncio.shield`, and shutdown drains that task (`drain.drain`,
  bounded by `rotation.shutdown_timeout`) after `engine.request_stop()` has
  stopped new rotations from starting. A drain that runs out of time exits 1.
- **An engine in use is never closed.** A reload that replaces or drops the
  engine retires it; the preflight check and the readiness probe that hold
  it finish on it, and the last one out closes it. A cycle holds the engine
  lock, so a swap waits for it.
- **An unexpected exception is a failure, said once.** `serve()` logs
  `daemon.failed` with the traceback and exits 70 (EX_SOFTWARE), never 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Awaitable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from rotator import __version__
from rotator.app import build_hooks, open_engine
from rotator.audit import (
    CYCLE_FAILED,
    DAEMON_DRAIN_TIMEOUT,
    DAEMON_FAILED,
    DAEMON_READY,
    DAEMON_STARTED,
    DAEMON_STOPPED,
    DAEMON_STOPPING,
)
from rotator.clock import Clock, SystemClock
from rotator.config import Settings
from rotator.daemon import probes
from rotator.daemon.drain import Flush, Stopped, drain, until_stopped
from rotator.daemon.handle import EngineFactory, EngineHandle, open_engine_stack
from rotator.daemon.preflight import Preflight
from rotator.daemon.probes import (
    READINESS_CACHE_SECONDS,
    READINESS_TIMEOUT_SECONDS,
    Phase,
    address_text,
)
from rotator.daemon.reload import reload
from rotator.daemon.schedule import CycleScheduler, cycle_limit, describe_schedule
from rotator.engine import CycleReport, Engine
from rotator.errors import ConfigError, DependencyError
from rotator.exitcodes import ExitCode, dependency_exit_code
from rotator.health import CachedProbe, HealthServer, Routes, Verdict
from rotator.hooks import Hooks
from rotator.metrics import CONTENT_TYPE, Metrics
from rotator.sdnotify import Notifier

log = structlog.get_logger("rotator.daemon")


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
        self._config_path = config_path
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._engine_factory: EngineFactory = engine_factory or (
            lambda s, hooks: open_engine(s, owner=owner, clock=self._clock, hooks=hooks)
        )
        self._notifier = notifier or Notifier(self._environ)
        self._clock = clock or SystemClock()
        self.metrics = metrics or Metrics(clock=self._clock)
        # The hooks outlive the engines a reload swaps in: a notice still being
        # retried is not cut short because the Monite, Vault or rotation settings changed.
        self._hooks = build_hooks(settings, clock=self._clock, observer=self.metrics)
        self._hooks_closing: set[asyncio.Task[None]] = set()  # replaced by a reload

        self._handle: EngineHandle | None = None
        self._retired: set[EngineHandle] = set()  # swapped out, closed once unused
        self._engine_generation = 0  # bumped by every swap
        self._engine_lock = asyncio.Lock()  # held by a cycle, and by an engine swap
        self._reload_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._phase: Phase = "starting"
        self._preflight = Preflight(
            acquire=self._acquire_engine,
            generation=lambda: self._engine_generation,
            notifier=self._notifier,
            clock=self._clock,
            rng=random.Random(),
        )
        self._schedule = CycleScheduler(self._clock)
        self._current: asyncio.Task[None] | None = None
        self._current_started = 0.0  # clock.monotonic() when _current began
        self._background: set[asyncio.Task[Any]] = set()
        self._health: HealthServer | None = None
        self.last_report: CycleReport | None = None
        self._probe = CachedProbe(
            lambda: probes.check_dependencies(self._handle),
            ttl=READINESS_CACHE_SECONDS,
            timeout=READINESS_TIMEOUT_SECONDS,
            clock=self._clock,
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

    async def reload(self) -> bool:
        """Apply the configuration as it is now (`rotator.daemon.reload`); True if applied."""
        return await reload(self)

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def _engine(self) -> Engine | None:
        return None if self._handle is None else self._handle.engine

    @property
    def scheduler(self) -> AsyncIOScheduler:
        """The APScheduler instance that runs cycles and claim checks, for inspection."""
        return self._schedule.scheduler

    @property
    def health_address(self) -> tuple[str, int] | None:
        return None if self._health is None else self._health.address

    # -- the life ---------------------------------------------------------------

    async def serve(self) -> int:
        """Run until stopped; returns the exit code. Raises DependencyError or ConfigError
        when the daemon cannot start at all (exit 69, 77 if credentials were refused, or
        78 in the CLI)."""
        code = ExitCode.OK
        try:
            self._health = await probes.bind_health(self._settings, self._routes(), self._clock)
            log.info(
                DAEMON_STARTED,
                version=__version__,
                pid=os.getpid(),
                schedule=describe_schedule(self._settings.schedule),
                health=address_text(self.health_address),
                systemd_notify=self._notifier.enabled,
                watchdog_seconds=self._notifier.watchdog_interval,
            )
            interval = self._notifier.watchdog_interval
            if interval is not None:
                watchdog = probes.watchdog(
                    interval, self._unhealthy_reason, self._notifier, self._clock
                )
                self._spawn(watchdog, "watchdog")
            if await self._run_preflight():
                self._schedule.start(self._cycle_job, self._settings.schedule)
                self._phase = "running"
                self._notifier.ready(status="ready; first cycle running")
                log.info(DAEMON_READY, schedule=describe_schedule(self._settings.schedule))
                await self._stop.wait()
            code = await self._drain()
        except DependencyError as exc:
            code = dependency_exit_code(exc)  # what the CLI exits with
            raise
        except ConfigError:
            code = ExitCode.CONFIG
            raise
        except Exception as exc:
            # A bug: say so once, with the traceback in the log (redacted like
            # every line), and fail the unit instead of a bare traceback.
            code = ExitCode.SOFTWARE
            log.exception(DAEMON_FAILED, error=type(exc).__name__, exit_code=int(code))
            self._notifier.status(f"failed: internal error ({type(exc).__name__})")
        finally:
            await self._cleanup()
            log.info(DAEMON_STOPPED, exit_code=int(code))
        return code

    async def _run_preflight(self) -> bool:
        """Wait until Monite and Vault answer (`rotator.daemon.preflight`). False when
        stopped first."""
        self._phase = "preflight"
        if self._stop.is_set():
            return False
        try:
            await until_stopped(self._preflight.run(), self._stop, self._clock)
        except Stopped:
            return False
        return True

    # -- the engine -------------------------------------------------------------

    async def _acquire_engine(self) -> EngineHandle:
        """The current engine (opened when there is none), acquired: the caller releases it."""
        async with self._engine_lock:
            handle = self._handle
            if handle is None:
                opened = await open_engine_stack(self._engine_factory, self._settings, self._hooks)
                handle = self._install(opened)
            handle.acquire()
            return handle

    def _install(self, opened: tuple[Engine, contextlib.AsyncExitStack]) -> EngineHandle:
        """Make `opened` the engine, on the current hooks, and count it in the metrics."""
        handle = self._handle = EngineHandle(*opened)
        # A reload may have replaced the hooks while this engine was opening.
        handle.engine.hooks = self._hooks
        self.metrics.attach(handle.engine)
        return handle

    async def _swap_engine(
        self, new: tuple[Engine, contextlib.AsyncExitStack] | None
    ) -> asyncio.Task[None] | None:
        """Replace the engine once no cycle runs; None drops it (the preflight opens one).

        Returns as soon as `new` is the engine (nothing awaited after that, so a
        cancelled caller knows `new` is installed), with the old engine's
        closing to await: closed now if nothing uses it, else by its last user
        (a preflight check or a readiness probe still running on it).
        """
        async with self._engine_lock:
            old = self._handle
            if new is None:
                self._handle = None
                self.metrics.attach(None)
            else:
                self._install(new)
            self._engine_generation += 1
        self._probe.invalidate()
        if old is None:
            return None
        self._retired = {h for h in self._retired if not h.closed}
        self._retired.add(old)
        return old.retire()

    def _replace_hooks(self, hooks: Hooks) -> None:
        """Send the notices of later commits to `hooks`; the old ones deliver what they
        hold within `rotation.shutdown_timeout`, and a drain waits for that."""
        old, self._hooks = self._hooks, hooks
        if self._engine is not None:
            self._engine.hooks = hooks
        grace = self._settings.rotation.shutdown_timeout.total_seconds()
        task = asyncio.ensure_future(old.aclose(grace))
        task.set_name("hooks-close")
        self._hooks_closing.add(task)
        task.add_done_callback(self._hooks_closing.discard)

    # -- cycles -----------------------------------------------------------------

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
            handle = self._handle
            if handle is None:
                # A reload dropped the engine just as the preflight passed: open
                # one on the current settings; the next cycle tries again if not.
                try:
                    opened = await open_engine_stack(
                        self._engine_factory, self._settings, self._hooks
                    )
                except DependencyError as exc:
                    log.error(CYCLE_FAILED, reason="dependency_unavailable", error=str(exc))
                    return
                handle = self._install(opened)
            engine = handle.engine
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
        if not self._stop.is_set():
            self._schedule.schedule_claim_check(
                self._cycle_job, report, self._settings.rotation.claim_ttl
            )

    # -- health -----------------------------------------------------------------

    def alive(self) -> bool:
        """The loop runs (we are here), the scheduler still schedules, no cycle is hung."""
        return self._unhealthy_reason() is None

    def _unhealthy_reason(self) -> str | None:
        current = self._current
        running_for = None
        if current is not None and not current.done():
            running_for = self._clock.monotonic() - self._current_started
        limit = self._cycle_limit or cycle_limit(self._settings)
        return probes.unhealthy_reason(
            self._phase, self._schedule, running_for, limit.total_seconds()
        )

    def _liveness(self) -> Verdict:
        return probes.liveness(self._phase, self._unhealthy_reason())

    async def _readiness(self) -> Verdict:
        return await probes.readiness(
            self._phase, self._preflight.error, self.last_report, self._probe
        )

    def _routes(self) -> Routes:
        return Routes(
            live=self._liveness,
            ready=self._readiness,
            metrics=self.metrics.render,
            metrics_content_type=CONTENT_TYPE,
        )

    # -- shutdown ---------------------------------------------------------------

    async def _drain(self) -> ExitCode:
        """Stop scheduling, stop new rotations, and wait (bounded) for those in flight."""
        self._phase = "stopping"
        engine = self._engine
        in_flight = engine.in_flight if engine is not None else 0
        log.info(DAEMON_STOPPING, in_flight=in_flight)
        self._notifier.stopping(status=f"stopping; {in_flight} rotation(s) in flight")
        self._schedule.stop()
        timeout = self._settings.rotation.shutdown_timeout.total_seconds()
        hooks = Flush(self._hooks, frozenset(self._hooks_closing))
        if await drain(engine, self._current, timeout, self._clock, hooks):
            return ExitCode.OK
        log.error(
            DAEMON_DRAIN_TIMEOUT,
            in_flight=engine.in_flight if engine is not None else 0,
            timeout_seconds=timeout,
            note="claims left behind are recovered after claim_ttl",
        )
        return ExitCode.FAILED

    async def _cleanup(self) -> None:
        self._stop.set()
        tasks = list(self._background)
        if self._current is not None and not self._current.done():
            tasks.append(self._current)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._schedule.stop()
        if self._health is not None:
            await self._health.close()
            self._health = None
        handles = [*self._retired, *([self._handle] if self._handle is not None else [])]
        self._handle, self._retired = None, set()
        for handle in handles:
            await handle.close_now()
        # After a drain these are closed already; after a failed start, nothing is pending.
        for task in self._hooks_closing:
            task.cancel()
        await asyncio.gather(*self._hooks_closing, return_exceptions=True)
        await self._hooks.aclose(0.0)
        self._notifier.close()

    def _spawn(self, work: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
