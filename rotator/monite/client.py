"""MoniteClient: owns the requests to Monite, their retries and the rate limit they follow.

Everything the rotator says to Monite goes through `MoniteClient`, on an
`httpx.AsyncClient` the caller injects (and closes). Listing follows
pagination; every call but `regenerate_secret` and `create_subscription` is
retried with `rotator.retry` (capped exponential backoff with full jitter on
the injected clock, honouring `Retry-After`) on 429, 5xx, timeouts, dropped
connections and unparseable bodies, and re-authenticates once on 401.
`regenerate_secret` and `create_subscription` are one attempt: each retry is a
new regenerate (or a second subscription), and only the rotation protocol
(`rotator.rotation`) can judge whether another may start; every failure says
whether it may have applied. `delete_subscription` and `disable_subscription`
are retried: doing either twice is harmless (for a delete, a 404 means it is
gone already).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import httpx
import structlog

from rotator import events
from rotator.clock import Clock, SystemClock
from rotator.config import MoniteSettings
from rotator.errors import MoniteError, MoniteNotFound, MoniteUnavailable
from rotator.model import Created, Regenerated, Subscription
from rotator.monite import _errors, _response
from rotator.monite._errors import HTTPX_ERRORS, Failed, Failure
from rotator.monite._pages import list_all
from rotator.monite._parse import (
    Page,
    parse_created,
    parse_deleted,
    parse_page,
    parse_regenerated,
    parse_single,
    parse_success,
)
from rotator.monite._token import Token, Tokens, parse_token
from rotator.monite._urls import host_of, path_id, without_userinfo
from rotator.ratelimit import RateLimiter
from rotator.retry import monite_backoff, retry

log = structlog.get_logger("rotator.monite")

# Inside `check` (start-up, `rotator check`) a retry is not news: the one-line
# error or the "ok" that follows says everything, so retries are logged at debug.
_checking: contextvars.ContextVar[bool] = contextvars.ContextVar("checking", default=False)

T = TypeVar("T")


class MoniteClient:
    """Talks to Monite's partner-level webhook subscription API.

    `requests` counts every HTTP exchange by (operation, status), with status 0
    for a transport failure, for the metrics endpoint.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: MoniteSettings,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._http = http
        self._limiter = limiter
        self._settings = settings
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._base = settings.base_url.rstrip("/")
        self._host = host_of(self._base)
        self._display_url = without_userinfo(self._base)
        self._timeout_s = settings.timeout.total_seconds()
        self._timeout = httpx.Timeout(self._timeout_s)
        self._tokens = Tokens(self._clock, self._fetch_token)
        self.requests: collections.Counter[tuple[str, int]] = collections.Counter()

    def __repr__(self) -> str:
        # Deliberately no credentials and no token: reprs end up in logs and tracebacks.
        token = "cached" if self._tokens.current is not None else "none"
        return (
            f"MoniteClient(base_url={self._display_url!r}, "
            f"api_version={self._settings.api_version!r}, token={token})"
        )

    # ------------------------------------------------------------------ API

    async def list_subscriptions(self) -> list[Subscription]:
        """Every webhook subscription, following pagination tokens to the end."""
        return await self._list(limit=self._settings.page_size, max_pages=self._settings.max_pages)

    async def get_subscription(self, subscription_id: str) -> Subscription:
        """One subscription by id; MoniteNotFound when Monite does not know it."""
        return await self._call(
            "get",
            "GET",
            f"/webhook_subscriptions/{path_id(subscription_id)}",
            parse=lambda body: parse_single(body, "get"),
        )

    @property
    def request_timeout(self) -> float:
        """Seconds one request may take, whole exchange included."""
        return self._timeout_s

    @property
    def access_token(self) -> Token | None:
        """The OAuth token now cached (its value a `Secret`); None before one is fetched.

        Also None after Monite refused it, until the next request fetches another.
        """
        return self._tokens.current

    async def regenerate_secret(
        self, subscription_id: str, *, send_by: float | None = None
    ) -> Regenerated:
        """One regenerate attempt, never retried: the new secret's only copy, or a MoniteError.

        The error's `may_have_applied` says whether Monite may have killed the
        old secret anyway. `send_by` is a `clock.monotonic()` instant after
        which the request is not sent (waiting for a token or the rate limiter
        can take long): a MoniteUnavailable that was surely not applied.
        """
        return await self._call(
            "regenerate_secret",
            "POST",
            f"/webhook_subscriptions/{path_id(subscription_id)}/regenerate_secret",
            parse=parse_regenerated,
            retries=0,
            send_by=send_by,
        )

    async def create_subscription(
        self,
        url: str,
        object_type: str,
        event_types: Sequence[str],
        *,
        send_by: float | None = None,
    ) -> Created:
        """One create attempt, never retried: the new subscription and its secret's only copy.

        Monite shows the secret in this answer only. An empty `event_types`
        subscribes to every event of `object_type`, as Monite documents. A
        failure that `may_have_applied` may hide a subscription that exists: it
        is not `retryable`, since another attempt would create a second one
        (list the subscriptions to find it). `send_by` as for `regenerate_secret`.
        """
        return await self._call(
            "create",
            "POST",
            "/webhook_subscriptions",
            json_body={"url": url, "object_type": object_type, "event_types": list(event_types)},
            parse=parse_created,
            retries=0,
            send_by=send_by,
            repeatable=False,
        )

    async def delete_subscription(
        self, subscription_id: str, *, send_by: float | None = None
    ) -> bool:
        """Delete a subscription: True when Monite deleted it now, False when it was gone already.

        Retried like every call but regenerate and create (deleting twice is
        harmless), so after a lost answer the retry's 404 reads as gone already.
        `send_by` is checked before every attempt, as for `regenerate_secret`.
        """
        try:
            await self._call(
                "delete",
                "DELETE",
                f"/webhook_subscriptions/{path_id(subscription_id)}",
                parse=parse_deleted,
                send_by=send_by,
            )
        except MoniteNotFound:
            return False
        return True

    async def disable_subscription(
        self, subscription_id: str, *, send_by: float | None = None
    ) -> Subscription:
        """Disable a subscription (`POST …/disable`); the subscription as Monite now has it.

        Retried like every call but regenerate and create: disabling twice is harmless.
        """
        return await self._call(
            "disable",
            "POST",
            f"/webhook_subscriptions/{path_id(subscription_id)}/disable",
            parse=lambda body: parse_single(body, "disable"),
            send_by=send_by,
        )

    async def check(self) -> None:
        """Prove the credentials work and listing is allowed: a token and one small page."""
        reset = _checking.set(True)
        try:
            await self._tokens.get()
            await self._list(limit=1, max_pages=1, follow=False)
        finally:
            _checking.reset(reset)

    async def aclose(self) -> None:
        """Revoke the token, best effort. The injected httpx client stays open."""
        token = self._tokens.take()
        if token is None:
            return
        try:
            response = await self._http.post(
                f"{self._base}/auth/revoke",
                json={
                    "client_id": self._settings.client_id,
                    "client_secret": self._settings.client_secret.reveal(),
                    "token": token.value.reveal(),
                },
                headers=self._headers(token),
                timeout=self._timeout,
            )
        except (*HTTPX_ERRORS, OSError):
            # Shutting down: a token Monite could not revoke simply expires.
            self.requests["revoke", 0] += 1
            return
        self.requests["revoke", response.status_code] += 1

    # ---------------------------------------------------------------- listing

    async def _list(self, *, limit: int, max_pages: int, follow: bool = True) -> list[Subscription]:
        async def fetch(params: dict[str, str | int]) -> Page:
            return await self._call(
                "list", "GET", "/webhook_subscriptions", params=params, parse=parse_page
            )

        return await list_all(fetch, limit=limit, max_pages=max_pages, follow=follow)

    # ------------------------------------------------------------------ token

    async def _fetch_token(self) -> Token:
        return await self._call(
            "token",
            "POST",
            "/auth/token",
            json_body={
                "grant_type": "client_credentials",
                "client_id": self._settings.client_id,
                "client_secret": self._settings.client_secret.reveal(),
            },
            parse=lambda body: parse_token(body, self._clock.monotonic()),
            auth=False,
        )

    # ---------------------------------------------------------- request loop

    def _headers(self, token: Token | None) -> dict[str, str]:
        headers = {"x-monite-version": self._settings.api_version, "Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token.value.reveal()}"
        return headers

    async def _call(
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
        max_retries = self._settings.max_retries if retries is None else retries
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
                    self._tokens.drop(token)
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
            return await self._tokens.get()
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
            async with asyncio.timeout(self._timeout_s):
                response = await self._http.request(
                    method,
                    f"{self._base}{path}",
                    params=params,
                    json=json_body,
                    headers=self._headers(token),
                    timeout=self._timeout,
                )
        except (*HTTPX_ERRORS, TimeoutError) as exc:
            self.requests[operation, 0] += 1
            failure = _errors.for_exception(
                exc, operation=operation, host=self._host, base_url=self._base, clock=self._clock
            )
            raise Failed(failure, request_id=None, cause=exc) from None
        self.requests[operation, response.status_code] += 1
        return response

    def _answer(self, operation: str, response: httpx.Response, parse: Callable[[Any], T]) -> T:
        """The parsed answer of a 2xx, or a `Failed` attempt naming the answer's request id."""
        if not 200 <= response.status_code < 300:
            raise self._failed(
                response,
                _errors.for_response(operation, response, self._clock, self._credentials()),
            )
        answer = parse_success(operation, response, parse)
        if isinstance(answer, Failure):
            raise self._failed(response, answer)
        return answer

    def _failed(self, response: httpx.Response, failure: Failure) -> Failed:
        # Read only on failure: a success never needs it.
        return Failed(
            failure,
            request_id=_response.request_id(response, self._credentials()),
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

    def _credentials(self) -> tuple[str, ...]:
        token = self._tokens.current
        return (
            self._settings.client_secret.reveal(),
            token.value.reveal() if token is not None else "",
        )
