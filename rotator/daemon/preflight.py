"""Before the first cycle: wait until Monite and Vault answer.

**Preflight retries, except a failure nobody can wait out.** Until the
engine opens (which verifies Vault: namespace, login, a KV v2 mount, the
capabilities rotation needs) and `engine.check()` passes, the daemon retries
with capped, jittered backoff (each attempt bounded) until SIGTERM: Vault
sealed or Monite down at boot must not crash-loop the unit. But when the
*first* attempt fails with an error that is not retryable (credentials
refused, a permission missing, an answer that is not Monite's), it fails at
once (exit 77 when credentials or a permission were refused, 69 otherwise):
waiting cannot fix a token or a base URL that are wrong, the fix is a new
config or secret, which a restart picks up, and a failed unit is what an
operator looks at. A setting Vault shows wrong (no such namespace or mount, a
mount that is not KV v2) exits 78 at any attempt, even after Vault was first
found sealed or unreachable.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Awaitable, Callable
from typing import Final

import structlog

from rotator.audit import DAEMON_PREFLIGHT_FAILED
from rotator.clock import Clock
from rotator.daemon.handle import EngineHandle
from rotator.errors import DependencyError, VaultConfigError
from rotator.health import within
from rotator.retry import Backoff, retry
from rotator.sdnotify import Notifier

log = structlog.get_logger("rotator.daemon")

PREFLIGHT_ATTEMPT_SECONDS: Final = 30.0
# Retries until stopped (the caller cancels `run` on SIGTERM): the attempt count
# only has to be larger than any boot can last.
PREFLIGHT_BACKOFF: Final = Backoff(attempts=sys.maxsize, base=2.0, cap=60.0)


class _Superseded(Exception):
    """A reload replaced the engine during an attempt: its answer is about the old settings."""


class Preflight:
    """Retries opening and checking the engine; `error` says why the last attempt failed."""

    def __init__(
        self,
        *,
        acquire: Callable[[], Awaitable[EngineHandle]],
        generation: Callable[[], int],
        notifier: Notifier,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        """`acquire`: the current engine, opened when there is none, acquired for the
        caller to release; `generation`: bumped by every engine swap."""
        self._acquire = acquire
        self._generation = generation
        self._notifier = notifier
        self._clock = clock
        self._rng = rng
        self._attempt = 0
        self.error: str | None = None

    async def run(self) -> None:
        """Return once Monite and Vault answer; raise the DependencyError nobody can wait
        out. Runs until cancelled otherwise."""
        while True:
            # A reload during an attempt starts over at once, with a fresh backoff.
            self._attempt = 0
            try:
                await retry(
                    self._try_once,
                    backoff=PREFLIGHT_BACKOFF,
                    retryable=self._failed,
                    clock=self._clock,
                    rng=self._rng,
                    on_retry=self._waiting,
                    retry_after=lambda _: None,
                )
            except _Superseded:
                continue
            self.error = None
            return

    async def _try_once(self) -> None:
        """Open the engine if there is none (which verifies Vault), and check it; each step
        bounded. The engine stays open between attempts."""
        self._attempt += 1
        generation = self._generation()
        try:
            handle = await within(self._acquire(), PREFLIGHT_ATTEMPT_SECONDS, self._clock)
            try:
                await within(handle.engine.check(), PREFLIGHT_ATTEMPT_SECONDS, self._clock)
            finally:
                handle.release()
        except (DependencyError, TimeoutError):
            if generation != self._generation():
                raise _Superseded from None
            raise
        if generation != self._generation():
            raise _Superseded  # passed on settings a reload has since replaced

    def _failed(self, exc: BaseException) -> bool:
        """Record a failed attempt; False when it is fatal (or not a preflight failure)."""
        if isinstance(exc, DependencyError):
            # A setting Vault's answer shows wrong (no such namespace or mount, a
            # mount that is not KV v2) stays wrong however long we wait.
            if (self._attempt == 1 and not exc.retryable) or isinstance(exc, VaultConfigError):
                self._notifier.status(f"cannot start: {exc}")
                log.error(
                    DAEMON_PREFLIGHT_FAILED, attempt=self._attempt, error=str(exc), fatal=True
                )
                return False
            self.error = str(exc)
            return True
        if isinstance(exc, TimeoutError):
            self.error = f"Monite and Vault did not answer within {PREFLIGHT_ATTEMPT_SECONDS:g}s"
            return True
        return False

    def _waiting(self, _: int, __: BaseException, wait: float) -> None:
        log.warning(
            DAEMON_PREFLIGHT_FAILED,
            attempt=self._attempt,
            error=self.error,
            retry_in_seconds=round(wait, 1),
        )
        self._notifier.status(f"waiting for Monite and Vault: {self.error}")
