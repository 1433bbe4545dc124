"""An open engine shared by the cycle, the preflight, probes and reloads; closed once unused."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from rotator.audit import DAEMON_UNHEALTHY
from rotator.config import Settings
from rotator.engine import Engine
from rotator.hooks import Hooks

log = structlog.get_logger("rotator.daemon")

# An engine for these settings, using the daemon's hooks (which outlive it).
EngineFactory = Callable[[Settings, Hooks], contextlib.AbstractAsyncContextManager[Engine]]


async def open_engine_stack(
    factory: EngineFactory, settings: Settings, hooks: Hooks
) -> tuple[Engine, contextlib.AsyncExitStack]:
    """An engine from `factory`, with the exit stack that closes it (not the hooks)."""
    stack = contextlib.AsyncExitStack()
    try:
        engine = await stack.enter_async_context(factory(settings, hooks))
    except BaseException:
        await stack.aclose()
        raise
    return engine, stack


class EngineHandle:
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
