"""Seeding Vault records the way an earlier rotation would have left them, for engine tests."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from rotator.config import VaultSettings
from rotator.model import Record
from rotator.secret import Secret
from rotator.vault import VaultStore


async def put_record(
    vault_settings: VaultSettings, subscription_id: str, secret: str, age: timedelta, **extra: Any
) -> None:
    """Write a record as an earlier rotation would have left it."""
    store = VaultStore(vault_settings)
    try:
        record = Record(
            subscription_id=subscription_id,
            secret=Secret(secret),
            rotated_at=datetime.now(UTC) - age,
            **extra,
        )
        await store.write(record, cas=0)
    finally:
        store.close()


async def wait_for_version(
    vault: Any, subscription_id: str, version: int = 1, *, prefix: str = "monite/webhooks"
) -> bool:
    """Wait (up to about 4 s) until the record holds `version`, read as root; False if never.

    Works on the emulator and on OpenBao alike: a test that must act right after
    a rotation's claim lands polls the record itself instead of counting requests.
    """
    path = f"{prefix}/{subscription_id}"
    for _ in range(800):
        versions = await asyncio.to_thread(vault.kv_versions, "secret", path)
        if versions and versions[-1] >= version:
            return True
        await asyncio.sleep(0.005)
    return False
