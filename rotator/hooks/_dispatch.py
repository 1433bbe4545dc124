"""`Hooks`: one queue and one worker per hook, off the rotation's critical path.

`notify` only enqueues (it never waits and never raises), so a slow or
failing hook can neither delay nor fail a rotation. Each hook's worker sends
its notices one at a time, in commit order; hooks run concurrently. An attempt
that fails is retried with `rotator.retry` on the injected clock, a bounded
number of times; then `hook.failed` says which notice that hook missed.
`aclose(grace)` delivers what is pending within the caller's budget (the
daemon's drain, or the end of a one-shot command); a notice still pending
when that runs out is logged as `hook.failed`, never dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import httpx
import structlog

from rotator import events
from rotator.clock import Clock, SystemClock
from rotator.config import HookSettings, hook_names
from rotator.hooks import _send
from rotator.hooks._notice import Notice
from rotator.model import format_time
from rotator.reasons import OutcomeKind
from rotator.retry import Backoff, retry
from rotator.rotation import Outcome
from rotator.signature import sign

log = structlog.get_logger("rotator.hooks")

# Five attempts in all; waits of full jitter up to 0.5, 1, 2, 4 s (or a 429/503's
# Retry-After): a consumer restarting within seconds still gets the notice.
HOOK_BACKOFF: Final = Backoff(attempts=5, base=0.5, cap=8.0)
# Notices waiting per hook. A commit is minutes apart at most Monite rate limits,
# so this is hours of a consumer being down; past it each notice is `hook.failed`.
QUEUE_LIMIT: Final = 10_000


class HookObserver(Protocol):
    """Who counts deliveries (`rotator.metrics.Metrics`): called from the workers."""

    def hook_delivered(self, hook: str, latency_seconds: float) -> None: ...

    def hook_failed(self, hook: str) -> None: ...


class _Nobody:
    def hook_delivered(self, hook: str, latency_seconds: float) -> None:
        return None

    def hook_failed(self, hook: str) -> None:
        return None


@dataclass(frozen=True, slots=True)
class _Pending:
    notice: Notice
    committed: float  # clock.monotonic() when the engine reported the commit


@dataclass(slots=True)
class _Worker:
    hook: HookSettings
    name: str
    queue: asyncio.Queue[_Pending | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_LIMIT)
    )
    task: asyncio.Task[None] | None = None
    pending: int = 0  # queued or in hand


def _fields(name: str, notice: Notice) -> dict[str, Any]:
    return {
        "hook": name,
        "notice": notice.event,
        "subscription_id": notice.subscription_id,
        "vault_version": notice.vault_version,
        "run_id": notice.run_id,
    }


class Hooks:
    """Sends a `Notice` after every commit to each configured hook."""

    def __init__(
        self,
        hooks: Sequence[HookSettings],
        *,
        vault_mount: str,
        vault_prefix: str,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        observer: HookObserver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        environ: Mapping[str, str] | None = None,
        backoff: Backoff = HOOK_BACKOFF,
    ) -> None:
        """`transport` is for the URL hooks' HTTP client (tests); `environ` is where a
        command's `CHILD_ENV` variables come from (default: this process's)."""
        self._workers = [
            _Worker(hook, name) for hook, name in zip(hooks, hook_names(hooks), strict=True)
        ]
        self._mount = vault_mount.strip("/")
        self._prefix = vault_prefix.strip("/")
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._observer: HookObserver = observer or _Nobody()
        self._transport = transport
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._backoff = backoff
        self._http: httpx.AsyncClient | None = None
        self._closed = False

    @property
    def names(self) -> list[str]:
        """Each hook's name in logs and metrics (`rotator.config.hook_names`: its `name`,
        or argv[0], or the URL's scheme://host[:port] with "/…" for a path, and "#i"
        where hooks without a name share one)."""
        return [worker.name for worker in self._workers]

    @property
    def pending(self) -> int:
        """Notices queued and not yet delivered or given up on, over all hooks."""
        return sum(w.pending for w in self._workers)

    # -- enqueue -------------------------------------------------------------------

    def committed(self, outcome: Outcome) -> None:
        """Notify the hooks of a rotation's outcome when it committed a new secret."""
        if not self._workers:
            return
        try:
            if outcome.kind not in (
                OutcomeKind.ROTATED,
                OutcomeKind.RECOVERED,
                OutcomeKind.SWAPPED,
            ):
                return
            if outcome.vault_version is None or outcome.secret_fingerprint is None:
                return
            path = outcome.subscription_id
            swap: dict[str, str | None] = {}
            if outcome.kind == OutcomeKind.SWAPPED and outcome.retired:
                event = events.SWAP_RETIRED
                swap = {"successor_id": outcome.successor_id}
            elif outcome.kind == OutcomeKind.SWAPPED and outcome.successor_id is not None:
                # The notice is about the successor's record: that is what to load.
                event = events.SWAP_COMMITTED
                path = outcome.successor_id
                swap = {
                    "predecessor_id": outcome.subscription_id,
                    "overlap_ends_at": format_time(outcome.overlap_ends_at),
                }
            elif outcome.kind == OutcomeKind.RECOVERED:
                event = events.ROTATION_RECOVERED
            else:
                event = events.ROTATION_SUCCEEDED
            notice = Notice(
                event=event,
                subscription_id=path,
                object_type=outcome.object_type or None,
                vault_mount=self._mount,
                vault_path=f"{self._prefix}/{path}" if self._prefix else path,
                vault_version=outcome.vault_version,
                secret_fingerprint=outcome.secret_fingerprint,
                # The record's own time (Vault's, of Monite's answer), as the README says.
                rotated_at=format_time(outcome.rotated_at or self._clock.now()) or "",
                run_id=structlog.contextvars.get_contextvars().get("run_id"),
                **swap,
            )
        except Exception as exc:  # a bug here must not touch the rotation
            log.error(
                events.HOOK_FAILED,
                subscription_id=outcome.subscription_id,
                vault_version=outcome.vault_version,
                reason=f"internal error building the notice: {type(exc).__name__}",
            )
            return
        self.notify(notice)

    def notify(self, notice: Notice) -> None:
        """Queue `notice` for every hook; returns at once and never raises."""
        committed = self._clock.monotonic()
        for worker in self._workers:
            try:
                if self._closed:
                    self._missed(worker, notice, "the hooks were closed (shutting down)")
                    continue
                self._start(worker)
                worker.queue.put_nowait(_Pending(notice, committed))
                worker.pending += 1
            except asyncio.QueueFull:
                self._missed(worker, notice, f"queue full: {QUEUE_LIMIT} notices pending")
            except Exception as exc:
                self._missed(worker, notice, f"internal error: {type(exc).__name__}")

    def _missed(self, worker: _Worker, notice: Notice, reason: str) -> None:
        with contextlib.suppress(Exception):
            log.error(events.HOOK_FAILED, **_fields(worker.name, notice), attempts=0, reason=reason)
            self._observer.hook_failed(worker.name)

    def _start(self, worker: _Worker) -> None:
        if worker.task is None:
            # A context of its own: the worker outlives the cycle whose run_id
            # is bound now, so each event names its notice's run_id itself.
            worker.task = asyncio.get_running_loop().create_task(
                self._work(worker), name=f"hook {worker.name}", context=contextvars.Context()
            )

    # -- deliver -------------------------------------------------------------------

    async def _work(self, worker: _Worker) -> None:
        # Ends at the None aclose queues after the last notice, or when cancelled.
        while (pending := await worker.queue.get()) is not None:
            try:
                await self._deliver(worker, pending)
            except asyncio.CancelledError:
                self._missed(worker, pending.notice, "the daemon stopped before it was delivered")
                raise
            except Exception as exc:  # a bug: say so, and serve the next notice
                self._missed(worker, pending.notice, f"internal error: {type(exc).__name__}")
            finally:
                worker.pending -= 1
                worker.queue.task_done()
        worker.queue.task_done()

    async def _deliver(self, worker: _Worker, pending: _Pending) -> None:
        hook, notice = worker.hook, pending.notice
        body = notice.to_json()
        timeout = hook.timeout.total_seconds()
        attempts = 0

        async def attempt() -> dict[str, Any]:
            nonlocal attempts
            attempts += 1
            signature = None
            if hook.secret is not None:
                # Signed afresh each attempt: a retry must not look like a replay.
                now = int(self._clock.now().timestamp())
                signature = sign(hook.secret.reveal(), body, timestamp=now)
            if hook.url is not None:
                return await _send.post(
                    self._client(), hook.url, body, signature, timeout, self._clock
                )
            if hook.command is None:  # HookSettings holds one of the two
                raise _send.Undelivered("neither url nor command is set")
            return await _send.run(hook.command, body, signature, timeout, self._environ)

        def on_retry(number: int, exc: BaseException, wait: float) -> None:
            log.debug(
                events.HOOK_RETRY,
                **_fields(worker.name, notice),
                attempt=number,
                retry_in_seconds=round(wait, 3),
                reason=getattr(exc, "reason", type(exc).__name__),
            )

        try:
            result = await retry(
                attempt,
                backoff=self._backoff,
                retryable=lambda exc: isinstance(exc, _send.Undelivered),
                clock=self._clock,
                rng=self._rng,
                on_retry=on_retry,
                retry_after=lambda exc: getattr(exc, "retry_after", None),
            )
        except _send.Undelivered as exc:
            log.error(
                events.HOOK_FAILED,
                **_fields(worker.name, notice),
                attempts=attempts,
                reason=exc.reason,
                **exc.output,
            )
            self._observer.hook_failed(worker.name)
            return
        latency = max(0.0, self._clock.monotonic() - pending.committed)
        log.info(
            events.HOOK_DELIVERED,
            **_fields(worker.name, notice),
            attempts=attempts,
            latency_ms=round(latency * 1000, 3),
            **result,
        )
        self._observer.hook_delivered(worker.name, latency)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            # Redirects are not followed: a notice goes where it was configured to.
            self._http = httpx.AsyncClient(transport=self._transport, follow_redirects=False)
        return self._http

    # -- close ---------------------------------------------------------------------

    async def idle(self) -> None:
        """Wait until every notice queued so far is delivered or given up on (tests)."""
        await asyncio.gather(*(w.queue.join() for w in self._workers if w.task is not None))

    async def aclose(self, grace: float) -> None:
        """Deliver what is pending within `grace` seconds (on the clock), then stop.

        Each notice still pending after that is logged as `hook.failed`. Notices
        queued later are refused (logged the same way). Safe to call twice.
        """
        if self._closed:
            return
        self._closed = True
        tasks = [w.task for w in self._workers if w.task is not None]
        for worker in self._workers:
            if worker.task is not None:
                with contextlib.suppress(asyncio.QueueFull):  # then the deadline ends it
                    worker.queue.put_nowait(None)
        try:
            if tasks:
                finished: asyncio.Future[Any] = asyncio.gather(*tasks, return_exceptions=True)
                timer: asyncio.Future[Any] = asyncio.ensure_future(
                    self._clock.sleep(max(0.0, grace))
                )
                try:
                    await asyncio.wait({finished, timer}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    timer.cancel()
                    for task in tasks:
                        task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await finished
        finally:
            # Also when this close is itself cancelled (a drain out of time): every
            # notice left is logged, never dropped unseen.
            for worker in self._workers:
                while not worker.queue.empty():  # bounded: nothing adds to a closed queue
                    left = worker.queue.get_nowait()
                    if left is not None:
                        worker.pending -= 1
                        self._missed(
                            worker, left.notice, "the daemon stopped before it was delivered"
                        )
            if self._http is not None:
                http, self._http = self._http, None
                with contextlib.suppress(Exception):
                    await asyncio.shield(http.aclose())
