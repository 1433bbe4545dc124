"""The shutdown drain, one implementation for the daemon and for `run --once`/`rotate --force`.

A cycle is never cut between regenerate and commit by a signal: draining
stops new rotations (`engine.request_stop()`), then waits, bounded by
`rotation.shutdown_timeout`, for those in flight to commit. Only when that
runs out is the cycle cancelled; claims left behind are recovered after
`claim_ttl`. The hooks then get what is left of the same budget to deliver
their pending notices (`Hooks.aclose`), together with hooks a reload replaced
and that are still delivering: a notice never delays a commit, and no hook
stretches the drain past `rotation.shutdown_timeout`, but for the reaping of a
command hook killed at the deadline (at most `REAP_LIMIT`, 2 s, within the
systemd unit's and the Pod's stop timeouts). Waits are taken on the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from rotator.clock import Clock
from rotator.engine import Engine
from rotator.hooks import Hooks

T = TypeVar("T")


@dataclass(frozen=True)
class Flush:
    """The hooks a drain closes: the current ones, and the closing of those a reload replaced."""

    hooks: Hooks
    closing: frozenset[asyncio.Task[None]] = frozenset()


class Stopped(Exception):
    """Raised by `until_stopped` when the stop event comes before the work is done."""


async def until_stopped(
    work: Awaitable[T], stop: asyncio.Event, clock: Clock, limit: float | None = None
) -> T:
    """`work`, unless `stop` is set first (Stopped) or `limit` seconds pass on `clock`
    (TimeoutError); the work is cancelled then."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    waiters: set[asyncio.Future[Any]] = {stopper}
    timer = None if limit is None else asyncio.ensure_future(clock.sleep(limit))
    if timer is not None:
        waiters.add(timer)
    try:
        done, _ = await asyncio.wait({task, *waiters}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # cancelled while waiting: so is the work
        task.cancel()
        raise
    finally:
        for waiter in waiters:
            waiter.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    if stopper in done:
        raise Stopped
    raise TimeoutError


async def drain(
    engine: Engine | None,
    cycle: asyncio.Future[Any] | None,
    grace: float,
    clock: Clock,
    hooks: Flush | None = None,
) -> bool:
    """Start no new rotation and give the cycle in flight `grace` seconds to finish,
    then the hooks what is left of it to deliver their notices.

    `hooks`: the daemon's; without them, the engine's own. True when no rotation
    is left running; False when the time ran out, and the cycle has been
    cancelled. Hooks never change the answer.
    """
    deadline = clock.monotonic() + grace
    if engine is not None:
        engine.request_stop()
    finished = await _finish(cycle, grace, clock)
    if hooks is None and engine is not None and engine.hooks is not None:
        hooks = Flush(engine.hooks)
    if hooks is not None:
        left = max(0.0, deadline - clock.monotonic())
        await asyncio.gather(
            hooks.hooks.aclose(left), *(_finish(task, left, clock) for task in hooks.closing)
        )
    return finished


async def _finish(cycle: asyncio.Future[Any] | None, grace: float, clock: Clock) -> bool:
    if cycle is None or cycle.done():
        return True
    timer = asyncio.ensure_future(clock.sleep(grace))
    try:
        await asyncio.wait({cycle, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
    if cycle.done():
        return True
    cycle.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await cycle
    return False
