"""One logical request to Monite: owns its token, its retries and the rate limit it follows.

`Transport.call` sends one operation: it fetches (and shares) the OAuth token,
waits for the rate limiter, re-authenticates once on 401, retries with
`rotator.retry` (capped exponential backoff with full jitter on the injected
clock, honouring `Retry-After`) what may succeed next time, and maps what
fails to `rotator.errors` once, with notes. Which operations may be retried at
all is the client's call (`retries=0`, `repeatable=False`); see
`rotator.monite.client`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any, TypeVar

import httpx
import structlog

from rotator import events
from rotator.clock import Clock
from rotator.config import MoniteSettings
from rotator.errors import MoniteError, MoniteUnavailable
from rotator.monite import _errors, _response
from rotator.monite._errors import HTTPX_ERRORS, Failed, Failure
from rotator.monite._parse import parse_success
from rotator.monite._token import Token, Tokens, parse_token
from rotator.monite._urls import host_of
from rotator.ratelimit import RateLimiter
from rotator.retry import monite_backoff, retry

log = structlog.get_logger("rotator.monite")

# Inside `check` (start-up, `rotator check`) a retry is not news: the one-line
# error or the "ok" that follows says everything, so retries are logged at debug.
_checking: contextvars.ContextVar[bool] = contextvars.ContextVar("checking", default=False)

T = TypeVar("T")


class Transport:
    """Sends requests to Monite; `requests` counts every exchange by (operation, status).

    Status 0 counts a transport failure. The injected httpx client stays the caller's.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: MoniteSettings,
        *,
        clock: Clock,
        rng: random.Random,
        limiter: RateLimiter | None,
    ) -> None:
        self.http = http
        self.settings = settings
        self.base = settings.base_url.rstrip("/")
        self.timeout_s = settings.timeout.total_seconds()
        self.timeout = httpx.Timeout(self.timeout_s)
        self.tokens = Tokens(clock, self._fetch_token)
        self.requests: collections.Counter[tuple[str, int]] = collections.Counter()
        self._clock = clock
        self._rng = rng
        self._limiter = limiter
        self._host = host_of(self.base)

    @contextlib.contextmanager
    def checking(self) -> Iterator[None]:
        """Within: retries are logged at debug (a start-up check says what came of them)."""
        reset = _checking.set(True)
        try:
            yield
        finally:
            _checking.reset(reset)

    async def _fetch_token(self) -> Token:
        return await self.call(
            "token",
            "POST",
            "/auth/token",
            json_body={
                "grant_type": "client_credentials",
                "client_id": self.settings.client_id,
                "client_secret": self.settings.client_secret.reveal(),
            },
            parse=lambda body: parse_token(body, self._clock.monotonic()),
            auth=False,
        )

    def headers(self, token: Token | None) -> dict[str, str]:
        headers = {"x-monite-version": self.settings.api_version, "Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token.value.reveal()}"
        return headers

    async def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        parse: Callable[[Any], T],
        params: Mapping[str, str | int] | None = None,
        json_body: Mapping[str, Any] | None = None,
        auth: bool = True,
        retries: int | None = None,
        send_by: float | None = None,
        repeatable: bool = True,
    ) -> T:
        """One logical request: re-auth once on 401, retry what may succeed next time.

        `repeatable=False` marks a request that acts again each time it is sent (a
        create): a failure that may have applied is then never retryable.
        """
        max_retries = self.settings.max_retries if retries is None else retries
        backoff = monite_backoff(max_retries + 1)
        reauthed = False  # one fresh token per logical request, whichever attempt needs it

        async def attempt() -> T:
            nonlocal reauthed
            while True:
                token = await self._token_for(operation) if auth else None
                sequence = await self._limiter.acquire() if self._limiter is not None else 0
                if send_by is not None and self._clock.monotonic() > send_by:
                    raise MoniteUnavailable(
                        f"Monite {operation}: not sent, its send deadline passed while waiting "
                        "for a token or the rate limiter"
                    )
                response = await self._exchange(operation, method, path, params, json_body, token)
                self._follow_rate_limit(response, sequence)
                if response.status_code == 401 and token is not None and not reauthed:
                    # The token expired or was revoked early: one fresh token, one more try.
                    reauthed = True
                    self.tokens.drop(token)
                    continue
                return self._answer(operation, response, parse)

        def on_retry(n: int, exc: BaseException, wait: float) -> None:
            assert isinstance(exc, Failed)
            (log.debug if _checking.get() else log.info)(
                events.MONITE_RETRY,
                operation=operation,
                status=exc.failure.status,
                attempt=n,
                retry_in_seconds=round(wait, 3),
                error=exc.failure.message,
                request_id=exc.request_id,
            )

        try:
            return await retry(
                attempt,
                backoff=backoff,
                retryable=lambda exc: (
                    isinstance(exc, Failed)
                    and exc.retryable
                    and (repeatable or not exc.failure.may_have_applied)
                ),
                clock=self._clock,
                rng=self._rng,
                on_retry=on_retry,
            )
        except Failed as exc:
            failed = exc
        failure = failed.failure if repeatable else replace(failed.failure, repeatable=False)
        # Built once, notes included, and raised outside the handler: no chained context.
        notes = () if failed.request_id is None else (f"request_id={failed.request_id}",)
        if failure.retryable and max_retries > 0:
            notes = (*notes, f"gave up after {backoff.attempts} attempts")
        if not repeatable and failure.may_have_applied:
            notes = (*notes, "it may have been applied: repeating it may apply it twice")
        raise failure.error(notes) from failed.cause

    async def _token_for(self, operation: str) -> Token:
        try:
            return await self.tokens.get()
        except MoniteError as exc:
            if not exc.may_have_applied:
                raise
            # The token request may have reached Monite; this request never did.
            raise MoniteUnavailable(
                f"Monite {operation}: not sent, the token request failed ({exc})",
                status=exc.status,
            ) from exc

    async def _exchange(
        self,
        operation: str,
        method: str,
        path: str,
        params: Mapping[str, str | int] | None,
        json_body: Mapping[str, Any] | None,
        token: Token | None,
    ) -> httpx.Response:
        """Send one request; a transport failure is a `Failed` attempt."""
        try:
            # httpx times each phase separately; the outer cap makes `timeout` a bound on
            # the whole exchange, which is what the claim deadline arithmetic relies on.
            async with asyncio.timeout(self.timeout_s):
                response = await self.http.request(
                    method,
                    f"{self.base}{path}",
                    params=params,
                    json=json_body,
                    headers=self.headers(token),
                    timeout=self.timeout,
                )
        except (*HTTPX_ERRORS, TimeoutError) as exc:
            self.requests[operation, 0] += 1
            failure = _errors.for_exception(
                exc, operation=operation, host=self._host, base_url=self.base, clock=self._clock
            )
            raise Failed(failure, request_id=None, cause=exc) from None
        self.requests[operation, response.status_code] += 1
        return response

    def _answer(self, operation: str, response: httpx.Response, parse: Callable[[Any], T]) -> T:
        """The parsed answer of a 2xx, or a `Failed` attempt naming the answer's request id."""
        if not 200 <= response.status_code < 300:
            raise self._failed(
                response,
                _errors.for_response(operation, response, self._clock, self.credentials()),
            )
        answer = parse_success(operation, response, parse)
        if isinstance(answer, Failure):
            raise self._failed(response, answer)
        return answer

    def _failed(self, response: httpx.Response, failure: Failure) -> Failed:
        # Read only on failure: a success never needs it.
        return Failed(
            failure,
            request_id=_response.request_id(response, self.credentials()),
            cause=None,
        )

    def _follow_rate_limit(self, response: httpx.Response, sequence: int) -> None:
        if self._limiter is None:
            return
        if response.status_code == 429:
            # Everyone waits, not just the caller that hit the limit.
            self._limiter.pause(_response.retry_after(response, self._clock) or 1.0)
            return
        self._limiter.observe(
            sequence,
            _response.header_number(response, "RateLimit-Remaining"),
            _response.header_number(response, "RateLimit-Reset"),
        )

    def credentials(self) -> tuple[str, ...]:
        token = self.tokens.current
        return (
            self.settings.client_secret.reveal(),
            token.value.reveal() if token is not None else "",
        )
