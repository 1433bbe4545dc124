"""Is the daemon alive, is it ready: `/healthz`, `/readyz`, and the systemd watchdog.

- **The watchdog proves progress, not just a loop.** `WATCHDOG=1` is sent
  (and `/healthz` answers 200) only while the scheduler runs, its cycle job
  is not stuck in the past, and the cycle in flight (if any) has not run
  longer than the cycle limit (`schedule.cycle_limit`). APScheduler alone
  cannot tell: with `max_instances=1` it skips the runs a hung cycle blocks
  and keeps moving `next_run_time` forward. A restart then is safe: claims
  left behind are recovered after `claim_ttl`.
- **Ready means the last cycle succeeded.** `/readyz` is 200 only when the
  last cycle ran with no failed rotation and Monite and Vault answer now (a
  probe cached for a few seconds, so probes cannot eat Monite's rate limit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal

import structlog

from rotator.audit import DAEMON_UNHEALTHY
from rotator.clock import Clock
from rotator.config import Settings
from rotator.daemon.handle import EngineHandle
from rotator.daemon.schedule import CycleScheduler
from rotator.engine import CycleReport, OutcomeKind
from rotator.errors import ConfigError, DependencyError
from rotator.health import CachedProbe, HealthServer, Routes, Verdict
from rotator.model import format_time
from rotator.sdnotify import Notifier

log = structlog.get_logger("rotator.daemon")

Phase = Literal["starting", "preflight", "running", "stopping"]

# Readiness probes reach Monite and Vault at most this often, whatever the probe rate.
READINESS_CACHE_SECONDS: Final = 3.0
READINESS_TIMEOUT_SECONDS: Final = 5.0


def unhealthy_reason(
    phase: Phase, scheduler: CycleScheduler, cycle_running_for: float | None, limit: float
) -> str | None:
    """Why the daemon counts as hung, or None. `cycle_running_for`: seconds the cycle in
    flight has run (None: no cycle in flight); `limit`: the cycle limit in seconds."""
    if phase != "running":
        return None  # starting, waiting for dependencies, or draining: all bounded
    if scheduler.stopped():
        return "scheduler stopped"
    if cycle_running_for is not None and cycle_running_for > limit:
        return f"cycle hung: running for {cycle_running_for:.0f}s, over the {limit:g}s limit"
    return None


def liveness(phase: Phase, reason: str | None) -> Verdict:
    return Verdict(reason is None, {"status": reason or "ok", "phase": phase})


async def readiness(
    phase: Phase, preflight_error: str | None, report: CycleReport | None, probe: CachedProbe
) -> Verdict:
    reasons: list[str] = []
    if phase == "preflight":
        reasons.append(f"waiting for Monite and Vault: {preflight_error or 'checking'}")
    elif phase == "stopping":
        reasons.append("shutting down")
    elif phase == "starting":
        reasons.append("starting")
    if report is None:
        reasons.append("no cycle has finished yet")
    elif report.error is not None:
        reasons.append(f"last cycle could not run: {report.error}")
    elif not report.ok:
        reasons.append(f"last cycle: {report.count(OutcomeKind.FAILED)} rotation(s) failed")
    if phase == "running":
        problem = await probe.result()
        if problem is not None:
            reasons.append(f"dependencies: {problem}")
    detail: dict[str, Any] = {"ready": not reasons, "phase": phase, "reasons": reasons}
    if report is not None:
        detail["last_cycle"] = {
            "run_id": report.run_id,
            "finished_at": format_time(report.finished_at),
            "summary": report.summary(),
        }
    return Verdict(not reasons, detail)


async def check_dependencies(handle: EngineHandle | None) -> None:
    """Monite and Vault answer on the current engine; raises DependencyError."""
    if handle is None:
        raise DependencyError("no connection to Monite and Vault yet")
    # Held until the check ends: a reload swapping the engine meanwhile
    # leaves this one open until then.
    engine = handle.acquire()
    try:
        await engine.check()
    finally:
        handle.release()


async def bind_health(settings: Settings, routes: Routes, clock: Clock) -> HealthServer | None:
    """The endpoint listening where the settings say (None when disabled); ConfigError
    with one line when it cannot listen there."""
    if not settings.health.enabled:
        return None
    server = HealthServer(routes, settings.health.host, settings.health.port, clock=clock)
    try:
        await server.start()
    except OSError as exc:
        raise ConfigError(
            f"health.listen {settings.health.listen}: cannot listen there "
            f"({exc.strerror or exc}); pick a free address or set health.enabled = false"
        ) from None
    return server


async def watchdog(
    interval: float, reason: Callable[[], str | None], notifier: Notifier, clock: Clock
) -> None:
    """WATCHDOG=1 every `interval` while healthy; withheld (said once) while not."""
    logged = False
    while True:
        why = reason()
        if why is None:
            notifier.watchdog()
            logged = False
        elif not logged:
            # Withholding WATCHDOG=1 lets systemd restart us; say why once.
            log.error(DAEMON_UNHEALTHY, reason=why)
            logged = True
        await clock.sleep(interval)


def address_text(address: tuple[str, int] | None) -> str:
    if address is None:
        return "disabled"
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
