"""`make_engine`: an Engine on the real MoniteClient and VaultStore, against the test's backends.

Registered in `tests/conftest.py` (`pytest_plugins`), so any test may ask for `make_engine`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from rotator.clock import Clock, SystemClock
from rotator.config import MoniteSettings, RotationSettings, VaultSettings
from rotator.engine import Engine
from rotator.hooks import Hooks
from rotator.monite import MoniteClient
from rotator.policy import Policy
from rotator.vault import VaultStore

MAX_AGE = timedelta(days=30)

EngineFactory = Callable[..., Engine]


@pytest.fixture
async def make_engine(
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    vault_settings: VaultSettings,
) -> AsyncIterator[EngineFactory]:
    """Builds engines (claim ttl 30 s, concurrency 4 unless told); closes their stores after."""
    stores: list[VaultStore] = []

    def factory(
        policy: Policy | None = None,
        *,
        owner: str = "test-rotator",
        claim_ttl: timedelta = timedelta(seconds=30),
        commit_retry_for: timedelta = timedelta(seconds=10),
        store: VaultStore | None = None,
        clock: Clock | None = None,
        hooks: Hooks | None = None,
        **rotation: Any,
    ) -> Engine:
        clock = clock or SystemClock()
        store = store or VaultStore(vault_settings, clock=clock.monotonic, sleep=clock.sleep)
        stores.append(store)
        return Engine(
            monite=MoniteClient(monite_http, monite_settings, clock=clock),
            store=store,
            policy=policy or Policy(max_age=MAX_AGE),
            rotation=RotationSettings(
                claim_ttl=claim_ttl,
                concurrency=4,
                commit_retry_for=commit_retry_for,
                **rotation,
            ),
            owner=owner,
            clock=clock,
            hooks=hooks,
        )

    yield factory
    for store in stores:
        store.close()
