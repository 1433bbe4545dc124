"""A Monite call of the protocol (regenerate, create), retried within the claim.

Both protocols retry their one non-idempotent Monite call the same way: the
Monite backoff for `monite.max_retries`, whole waits only, stopping where a
whole attempt would no longer fit before the claim ends, and one
`monite.retry` line per retry. What may be retried is the step's own rule.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from structlog.typing import FilteringBoundLogger

from rotator import events
from rotator.retry import monite_backoff, retry
from rotator.rotation._types import Context

T = TypeVar("T")


async def retry_monite_call(
    ctx: Context,
    log: FilteringBoundLogger,
    operation: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    retryable: Callable[[BaseException], bool],
    deadline: float,
) -> T:
    """`attempt()` until it succeeds, is not `retryable`, or `deadline` (monotonic) nears."""

    def on_retry(retry_no: int, exc: BaseException, wait: float) -> None:
        log.info(
            events.MONITE_RETRY,
            operation=operation,
            status=getattr(exc, "status", None),
            attempt=retry_no,
            retry_in_seconds=round(wait, 3),
            error=str(exc),
        )

    return await retry(
        attempt,
        backoff=monite_backoff(ctx.max_retries + 1),
        retryable=retryable,
        clock=ctx.clock,
        rng=ctx.rng,
        on_retry=on_retry,
        deadline=deadline,
        whole_wait=True,
    )
