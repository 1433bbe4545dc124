"""Shared by the MoniteClient tests: a fake clock, a leak collector, clients and answers."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from rotator.config import MoniteSettings
from rotator.monite import MoniteClient
from rotator.sandbox import ISSUED
from rotator.sandbox.monite import MoniteEmulator
from tests.clocks import FakeClock

E = TypeVar("E", bound=BaseException)


class Leaks:
    """Collects every message and repr a test produced; none may contain an issued secret.

    The emulator records every access token, webhook secret and client secret
    it hands out in `rotator.sandbox.ISSUED`.
    """

    def __init__(self, settings: MoniteSettings) -> None:
        self.extra_values: set[str] = {settings.client_secret.reveal()}
        self.texts: list[str] = []

    def watch(self, client: MoniteClient) -> None:
        self.texts.append(repr(client))

    def record(self, exc: BaseException) -> None:
        seen: BaseException | None = exc
        while seen is not None:
            self.texts.append(str(seen))
            self.texts.append(repr(seen))
            seen = seen.__cause__ or seen.__context__

    def leaked(self) -> list[str]:
        values = set(ISSUED) | self.extra_values
        return [v for v in values if v and any(v in text for text in self.texts)]


def make_client(
    http: httpx.AsyncClient, settings: MoniteSettings, clock: FakeClock, **update: Any
) -> MoniteClient:
    return MoniteClient(http, settings.model_copy(update=update), clock=clock, rng=random.Random(7))


async def expect(cls: type[E], awaitable: Awaitable[Any], leaks: Leaks) -> E:
    """Await, require `cls`, and keep its message for the leak check."""
    with pytest.raises(cls) as info:
        await awaitable
    leaks.record(info.value)
    return info.value


UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def seed_many(monite: MoniteEmulator, count: int) -> list[str]:
    return [monite.seed(url=f"https://hooks.example.com/{i}") for i in range(count)]


def answering(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    """An httpx client whose Monite is `handler` behind a working token endpoint."""

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/token"):
            return httpx.Response(
                200, json={"access_token": "tok-abc", "expires_in": 86400, "token_type": "Bearer"}
            )
        return handler(request)

    return httpx.AsyncClient(transport=httpx.MockTransport(route))
