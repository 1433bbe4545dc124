"""SIGHUP: apply the configuration as it is now, or keep the running one.

**A reload never makes things worse.** It re-reads the config with
`load_settings(path, environ)`. An invalid file, or new connection settings
that cannot reach Monite and Vault, leave everything as it was
(`config.reload_failed` with the one-line reason). A valid one applies as a
whole: policy, schedule, log level and the endpoint at once; Monite, Vault,
rotation settings by swapping in a new engine between cycles; [[hooks]] (and the
Vault path their notices name) by new hooks, the old ones getting
`rotation.shutdown_timeout` to deliver what they hold. An engine swapped in for
other settings keeps the hooks, and the notices they are still retrying.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog

from rotator.app import build_hooks, hooks_settings
from rotator.audit import (
    CONFIG_RELOAD_FAILED,
    CONFIG_RELOADED,
    CONFIG_SECRET_FILE_EXPOSED,
    configure_logging,
)
from rotator.config import ExposedFile, Settings, load_settings
from rotator.daemon.drain import Stopped, until_stopped
from rotator.daemon.handle import open_engine_stack
from rotator.daemon.probes import READINESS_TIMEOUT_SECONDS, address_text, bind_health
from rotator.daemon.schedule import describe_schedule
from rotator.engine import Engine
from rotator.errors import ConfigError, DependencyError
from rotator.health import HealthServer

if TYPE_CHECKING:
    from rotator.daemon.core import Daemon

log = structlog.get_logger("rotator.daemon")


async def reload(daemon: Daemon) -> bool:
    """Apply the configuration as it is now on disk and in the environment, or keep the old.

    True when the new settings were applied.
    """
    async with daemon._reload_lock:
        if daemon._stop.is_set():
            return False
        exposed: list[ExposedFile] = []
        try:
            new = load_settings(daemon._config_path, daemon._environ, exposed=exposed)
        except ConfigError as exc:
            return reload_failed(daemon, str(exc))
        except Exception as exc:  # a bug reading the file must not end the task unseen
            return reload_failed(
                daemon,
                f"reading the configuration failed unexpectedly ({type(exc).__name__}); "
                "check the file, and report this as a bug",
            )
        for exposed_file in exposed:
            log.warning(CONFIG_SECRET_FILE_EXPOSED, **exposed_file.audit_fields())
        return await _apply(daemon, new)


async def _apply(daemon: Daemon, new: Settings) -> bool:
    """Validate what `new` changes (a new engine must answer, a new endpoint must listen),
    then apply it as a whole; on any failure keep everything as it was."""
    old = daemon._settings
    rebuild = connection_settings(old) != connection_settings(new)
    hooks = daemon._hooks
    if hooks_settings(old) != hooks_settings(new):
        hooks = build_hooks(new, clock=daemon._clock, observer=daemon.metrics)
    new_engine: tuple[Engine, contextlib.AsyncExitStack] | None = None
    health: HealthServer | None = daemon._health
    swapped = False
    try:
        if rebuild and daemon.phase == "running":
            try:
                new_engine = await until_stopped(
                    open_engine_stack(daemon._engine_factory, new, hooks),
                    daemon._stop,
                    daemon._clock,
                )
                await until_stopped(
                    new_engine[0].check(),
                    daemon._stop,
                    daemon._clock,
                    READINESS_TIMEOUT_SECONDS * 2,
                )
            except Stopped:
                return False
            except (DependencyError, TimeoutError) as exc:
                reason = str(exc) or "no answer in time"
                return reload_failed(
                    daemon, f"the new settings cannot reach Monite and Vault: {reason}"
                )
        if new.health != old.health:
            try:
                health = await _rebind_health(daemon, new)
            except ConfigError as exc:
                return reload_failed(daemon, str(exc))
        # Everything is validated: apply as a whole from here on.
        daemon._settings = new
        if new.log != old.log:
            configure_logging(fmt=new.log.format, level=new.log.level, stream=sys.stdout)
        if health is not daemon._health:
            old_health, daemon._health = daemon._health, health
            if old_health is not None:
                await old_health.close()
        # The hooks first: the new engine already sends to them.
        if hooks is not daemon._hooks:
            daemon._replace_hooks(hooks)
        if rebuild:
            closing = await daemon._swap_engine(new_engine)
            swapped = True  # installed: from here the daemon closes it
            if closing is not None:
                await asyncio.shield(closing)
        elif daemon._engine is not None:
            daemon._engine.policy = new.policy
        if new.schedule != old.schedule:
            daemon._schedule.reschedule(new.schedule)
        changed = [
            name for name in type(new).model_fields if getattr(new, name) != getattr(old, name)
        ]
        log.info(
            CONFIG_RELOADED,
            changed=changed,
            schedule=describe_schedule(new.schedule),
            health=address_text(daemon.health_address),
        )
        return True
    finally:
        if new_engine is not None and not swapped:
            await new_engine[1].aclose()
        if hooks is not daemon._hooks:
            await hooks.aclose(0.0)  # never used: no commit reached them
        if health is not None and health is not daemon._health:
            await health.close()


def reload_failed(daemon: Daemon, reason: str) -> bool:
    log.error(CONFIG_RELOAD_FAILED, reason=reason, keeping="the running configuration")
    daemon._notifier.status(f"config reload failed, running on the previous one: {reason}")
    return False


async def _rebind_health(daemon: Daemon, new: Settings) -> HealthServer | None:
    old = daemon._settings.health
    if old.enabled and new.health.enabled and old.listen == new.health.listen:
        return daemon._health
    # The new address is bound before the old one closes, so a reload that
    # cannot listen leaves the endpoint where it was.
    return await bind_health(new, daemon._routes(), daemon._clock)


def connection_settings(settings: Settings) -> tuple[Any, ...]:
    """What a running engine is built from (its clients); the drain timeout and the
    hooks are the daemon's."""
    rotation = settings.rotation.model_copy(update={"shutdown_timeout": timedelta(0)})
    return (settings.monite, settings.vault, rotation)
