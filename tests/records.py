"""Seeding Vault records the way an earlier rotation would have left them, for engine tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rotator.config import VaultSettings
from rotator.model import Record, Secret
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
