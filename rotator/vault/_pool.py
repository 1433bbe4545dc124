"""Talking to Vault from the event loop: per-thread hvac clients on a bounded worker pool.

Owns the hvac clients (one per worker thread, because hvac's Client is
synchronous and not thread-safe), the pool of `pool_size` worker threads that
drives them from the event loop, one call (the shared token put on the
client, the request run, its outcome counted and any failure translated by
`_errors.call_error`), and bounded retries of reads and lists through
`rotator.retry.retry`. Writes are never retried: a write whose answer was
lost may have been applied, and only the engine knows what is safe next.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import random
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import structlog

from rotator.clock import SystemClock
from rotator.config import VaultSettings
from rotator.errors import VaultRequestError, VaultUnavailable
from rotator.events import VAULT_CLIENT_CLOSE_FAILED, VAULT_RETRY
from rotator.retry import Backoff, retry
from rotator.vault._auth import Auth
from rotator.vault._errors import call_error, without_tracebacks
from rotator.vault._wire import client_options, no_request

log = structlog.get_logger("rotator.vault")

T = TypeVar("T")

_RETRY_BASE = 0.2  # seconds; the first wait is at most this, doubled per retry
_RETRY_CAP = 5.0  # seconds; no single wait is longer


class StoreClock:
    """The store's two time seams, `monotonic` and `sleep`, as the `Clock` `retry` takes.

    The store never judges anything on the local wall clock (claims are
    judged on Vault's), so `now` is the system's, only to complete the protocol.
    """

    def __init__(
        self, monotonic: Callable[[], float], sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        self._monotonic = monotonic
        self._sleep = sleep

    def now(self) -> datetime:
        return SystemClock().now()

    def monotonic(self) -> float:
        return self._monotonic()

    async def sleep(self, seconds: float) -> None:
        await self._sleep(seconds)


class _ThreadClient(threading.local):
    generation: int = -1
    client: Any = None


class Pool:
    """Runs requests against Vault on worker threads, each with its own hvac client."""

    def __init__(
        self,
        settings: VaultSettings,
        *,
        client_factory: Callable[[], Any] | None,
        clock: StoreClock,
        rng: random.Random,
    ) -> None:
        self._settings = settings
        self._factory: Callable[[], Any] = client_factory or self._default_client
        self._clock = clock
        self._rng = rng
        self.auth = Auth(settings, clock.monotonic)
        self._local = _ThreadClient()
        self._clients: list[Any] = []
        self._clients_lock = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._generation = 0
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()

    def _default_client(self) -> hvac.Client:
        return hvac.Client(**client_options(self._settings))

    def client(self) -> Any:
        """This thread's client; made on first use, and again after `close()`."""
        local = self._local
        if local.client is None or local.generation != self._generation:
            client = self._factory()
            with self._clients_lock:
                self._clients.append(client)
            local.client = client
            local.generation = self._generation
        return local.client

    async def _in_pool(self, run: Callable[[Callable[[Any], T]], T], fn: Callable[[Any], T]) -> T:
        """`run(fn)` on one of our `pool_size` worker threads, with the caller's log context."""
        with self._clients_lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self._settings.pool_size, thread_name_prefix="vault"
                )
            executor = self._executor
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(executor, context.run, run, fn)

    def close(self) -> None:
        """Close every client's HTTP session and the worker threads; later calls open new ones."""
        with self._clients_lock:
            clients, self._clients = self._clients, []
            executor, self._executor = self._executor, None
            self._generation += 1
        if executor is not None:
            executor.shutdown(wait=False)
        for client in clients:
            try:
                client.adapter.close()
            except Exception:  # a close that fails leaves nothing to clean up
                log.debug(VAULT_CLIENT_CLOSE_FAILED)

    def _authenticated(self, fn: Callable[[Any], T]) -> T:
        """`fn(client)` with the shared token; once more after a re-login if Vault refused it."""
        client = self.client()
        lease = self.auth.prepare(client)
        try:
            result = fn(client)
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized) as exc:
            if not self.auth.retry_after_refusal(client, lease, exc):
                raise
        else:
            return self._served(fn, result)
        # Outside the handler, so a second failure does not chain the first.
        self.auth.prepare(client)
        return self._served(fn, fn(client))

    def _served(self, fn: Callable[[Any], T], result: T) -> T:
        if fn is not no_request:  # only an answer from Vault proves the token works
            self.auth.served()
        return result

    async def call(
        self,
        operation: str,
        display_path: str,
        fn: Callable[[Any], T],
        *,
        auth: bool = True,
        carries_secret: bool = False,
    ) -> T:
        """Run `fn(client)` in a worker thread once; translate and count the outcome.

        `carries_secret`: the request body holds a secret, so no error text may
        quote the answer's body (see `translate_hvac_error`).
        """
        try:
            if auth:
                result = await self._in_pool(self._authenticated, fn)
            else:
                result = await self._in_pool(lambda f: f(self.client()), fn)
        except Exception as exc:
            error = call_error(
                exc,
                operation=operation,
                path=display_path,
                settings=self._settings,
                secrets=self.auth.secrets(),
                carries_secret=carries_secret,
            )
            # A 404 is an ordinary answer (no record yet), not a failure to count.
            missing = isinstance(error, VaultRequestError) and error.status == 404
            self.requests[(operation, "not_found" if missing else type(error).__name__)] += 1
            if error is exc:
                # Already ours (a failed login): keep its cause, drop the worker frames.
                cause = error.__cause__
                without_tracebacks(error)
                raise error from cause
            raise error from without_tracebacks(exc)
        self.requests[(operation, "ok")] += 1
        return result

    async def retrying(self, operation: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()`, tried again on VaultUnavailable up to `vault.max_retries` times, with
        capped, fully jittered exponential backoff on the store's clock."""

        def on_retry(n: int, exc: BaseException, wait: float) -> None:
            log.debug(
                VAULT_RETRY,
                operation=operation,
                retry=n,
                retry_in_seconds=round(wait, 2),
                error=str(exc),
            )

        return await retry(
            attempt,
            backoff=Backoff(
                attempts=max(0, self._settings.max_retries) + 1, base=_RETRY_BASE, cap=_RETRY_CAP
            ),
            retryable=lambda exc: isinstance(exc, VaultUnavailable),
            clock=self._clock,
            rng=self._rng,
            on_retry=on_retry,
            retry_after=lambda exc: None,  # Vault sends no Retry-After we act on
        )
