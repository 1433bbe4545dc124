"""Fixtures of the MoniteClient tests: a fake clock, a leak collector and a client."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import httpx
import pytest

from rotator.config import MoniteSettings
from rotator.monite import MoniteClient
from tests.clocks import FakeClock
from tests.monite.helpers import Leaks


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def leaks(monite_settings: MoniteSettings) -> Leaks:
    return Leaks(monite_settings)


@pytest.fixture
async def client(
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    clock: FakeClock,
    leaks: Leaks,
) -> AsyncIterator[MoniteClient]:
    client = MoniteClient(monite_http, monite_settings, clock=clock, rng=random.Random(7))
    yield client
    leaks.watch(client)
    await client.aclose()
    assert [] == leaks.leaked()
