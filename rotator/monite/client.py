"""MoniteClient: owns the operations the rotator asks of Monite, and which may be retried.

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
gone already). How one request is sent, authenticated and retried is
`rotator.monite._transport`'s.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import httpx

from rotator.clock import Clock, SystemClock
from rotator.config import MoniteSettings
from rotator.errors import MoniteNotFound
from rotator.model import Created, Regenerated, Subscription
from rotator.monite._errors import HTTPX_ERRORS
from rotator.monite._pages import list_all
from rotator.monite._parse import (
    Page,
    parse_created,
    parse_deleted,
    parse_page,
    parse_regenerated,
    parse_single,
)
from rotator.monite._token import Token
from rotator.monite._transport import Transport
from rotator.monite._urls import path_id, without_userinfo
from rotator.ratelimit import RateLimiter


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
        self._settings = settings
        self._display_url = without_userinfo(settings.base_url.rstrip("/"))
        self._transport = Transport(
            http,
            settings,
            clock=clock or SystemClock(),
            rng=rng or random.Random(),
            limiter=limiter,
        )
        self._tokens = self._transport.tokens
        self._call = self._transport.call
        self.requests = self._transport.requests

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
        return self._transport.timeout_s

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
        with self._transport.checking():
            await self._tokens.get()
            await self._list(limit=1, max_pages=1, follow=False)

    async def aclose(self) -> None:
        """Revoke the token, best effort. The injected httpx client stays open."""
        token = self._tokens.take()
        if token is None:
            return
        try:
            response = await self._http.post(
                f"{self._transport.base}/auth/revoke",
                json={
                    "client_id": self._settings.client_id,
                    "client_secret": self._settings.client_secret.reveal(),
                    "token": token.value.reveal(),
                },
                headers=self._transport.headers(token),
                timeout=self._transport.timeout,
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
