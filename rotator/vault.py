"""Vault KV v2 record store (hvac, driven from the event loop in worker threads)."""
# STUB: interface fixed, body to be written.

from __future__ import annotations

from rotator.config import VaultSettings
from rotator.model import Record


class VaultStore:
    def __init__(self, settings: VaultSettings) -> None:
        self._settings = settings

    async def read(self, subscription_id: str) -> Record:
        raise NotImplementedError

    async def list_ids(self) -> list[str]:
        raise NotImplementedError

    async def write(self, record: Record, *, cas: int) -> Record:
        raise NotImplementedError

    async def check(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
