"""Monite API client (httpx.AsyncClient injected): token, listing, regenerate."""
# STUB: interface fixed, body to be written.

from __future__ import annotations

import httpx

from rotator.clock import Clock, SystemClock
from rotator.config import MoniteSettings
from rotator.model import Regenerated, Subscription


class MoniteClient:
    def __init__(
        self, http: httpx.AsyncClient, settings: MoniteSettings, *, clock: Clock | None = None
    ) -> None:
        self._http = http
        self._settings = settings
        self._clock = clock or SystemClock()

    async def list_subscriptions(self) -> list[Subscription]:
        raise NotImplementedError

    async def get_subscription(self, subscription_id: str) -> Subscription:
        raise NotImplementedError

    async def regenerate_secret(
        self, subscription_id: str, *, deadline: float | None = None
    ) -> Regenerated:
        raise NotImplementedError

    async def check(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError
