"""Fixtures for the Monite emulator: a started emulator, its credentials, settings, an HTTP client.

Owned by the emulator's author; every test that talks to Monite builds on these.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest

from rotator.config import MoniteSettings
from rotator.sandbox.monite import MoniteEmulator
from rotator.secret import Secret
from tests.sandbox import SSL_CONTEXT


@pytest.fixture
def monite() -> Iterator[MoniteEmulator]:
    """A started emulator with one registered client; its rate limit stays out of the way."""
    emulator = MoniteEmulator(rate_limit=1000)
    emulator.add_client()
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def monite_credentials(monite: MoniteEmulator) -> tuple[str, str]:
    """(client_id, client_secret) of the client registered on `monite`."""
    return monite.credentials


@pytest.fixture
def monite_settings(monite: MoniteEmulator, monite_credentials: tuple[str, str]) -> MoniteSettings:
    """Client settings pointing at `monite`, with a short timeout so fault tests stay fast."""
    client_id, client_secret = monite_credentials
    return MoniteSettings(
        base_url=monite.base_url,
        client_id=client_id,
        client_secret=Secret(client_secret),
        timeout=timedelta(seconds=2),
        max_retries=3,
    )


@pytest.fixture
async def monite_http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain httpx.AsyncClient, closed after the test."""
    async with httpx.AsyncClient(verify=SSL_CONTEXT) as client:
        yield client
