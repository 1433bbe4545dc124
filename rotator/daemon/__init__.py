"""`rotator run`: the scheduler, signals, preflight, reloads and the shutdown drain.

Owns the daemon's life: preflight until Monite and Vault answer, then
`READY=1`; cycles on an APScheduler 3.x `AsyncIOScheduler`; a one-off check
at the earliest claim expiry a cycle saw; SIGHUP reloads; SIGTERM/SIGINT
drains; the health/metrics endpoint and the systemd watchdog.

One module per concern, each with the decisions that shape it:

- `core`: the `Daemon` (its life, the engine it runs on, the cycle job);
- `preflight`: waiting for Monite and Vault before the first cycle;
- `schedule`: triggers, the scheduler, the claim check, the cycle limit;
- `probes`: liveness, readiness and the systemd watchdog;
- `reload`: SIGHUP;
- `drain`: the shutdown drain, shared with `run --once` and `rotate --force`;
- `handle`: an open engine, closed once its last user is done;
- `entry`: `run_daemon`, the loop and the signal handlers.
"""

from rotator.daemon.core import Daemon
from rotator.daemon.drain import drain
from rotator.daemon.entry import run_daemon
from rotator.daemon.preflight import PREFLIGHT_ATTEMPT_SECONDS
from rotator.daemon.probes import READINESS_CACHE_SECONDS, READINESS_TIMEOUT_SECONDS
from rotator.daemon.schedule import (
    CYCLE_LIMIT_FLOOR,
    build_trigger,
    cycle_limit,
    describe_schedule,
)
from rotator.exitcodes import ExitCode

__all__ = [
    "CYCLE_LIMIT_FLOOR",
    "PREFLIGHT_ATTEMPT_SECONDS",
    "READINESS_CACHE_SECONDS",
    "READINESS_TIMEOUT_SECONDS",
    "Daemon",
    "ExitCode",
    "build_trigger",
    "cycle_limit",
    "describe_schedule",
    "drain",
    "run_daemon",
]
