"""The engine's in-memory copy of the Vault records: what a steady cycle reads instead of Vault.

Filled by one read per record on the first cycle, updated by our own writes
(`remember`), refreshed in full every `rotation.cache_refresh`, and re-read
one record at a time where a rotation found it changed (`mark_stale`). A stale
entry is harmless: the claim's check-and-set fails and the record is re-read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import timedelta

import structlog

from rotator import audit
from rotator.clock import Clock
from rotator.errors import VaultError
from rotator.model import Record
from rotator.ports import RecordStore
from rotator.reasons import Reason

log = structlog.get_logger("rotator.engine")


class RecordCache:
    """Records by subscription id, with the ids to read again before they are trusted."""

    def __init__(
        self, store: RecordStore, clock: Clock, *, refresh: timedelta, concurrency: int
    ) -> None:
        self._store = store
        self._clock = clock
        self._refresh = refresh
        self._concurrency = concurrency
        self._records: dict[str, Record] = {}
        self._loaded_at: float | None = None  # monotonic
        self._stale: set[str] = set()

    def get(self, subscription_id: str) -> Record | None:
        return self._records.get(subscription_id)

    def __contains__(self, subscription_id: object) -> bool:
        return subscription_id in self._records

    def remember(self, record: Record) -> None:
        """Take a record as Vault holds it now (after our own read or write)."""
        if record.exists:
            self._records[record.subscription_id] = record
        else:
            self._records.pop(record.subscription_id, None)

    def mark_stale(self, subscription_id: str) -> None:
        """Read this record again before the next cycle trusts it."""
        self._stale.add(subscription_id)

    async def load(self, also_read: Iterable[str] = ()) -> tuple[dict[str, Record], set[str]]:
        """The records, reading Vault only when the cache is cold, old or marked stale.

        `also_read` are ids to read again this time whatever the cache says.
        Also returns the ids whose record could not be read: one bad record (a
        path the policy denies, say) costs that subscription a cycle, not every
        subscription.
        """
        self._stale.update(also_read)
        now = self._clock.monotonic()
        if self._loaded_at is None or now - self._loaded_at >= self._refresh.total_seconds():
            ids = await self._store.list_ids()
            self._records = {}
            self._stale = set(ids)
            self._loaded_at = now
        unreadable: set[str] = set()
        if self._stale:
            stale = sorted(self._stale)
            self._stale.clear()
            unreadable = await self._read(stale)
        return dict(self._records), unreadable

    async def _read(self, ids: Sequence[str]) -> set[str]:
        gate = asyncio.Semaphore(self._concurrency)

        async def read(subscription_id: str) -> Record:
            async with gate:
                return await self._store.read(subscription_id)

        results = await asyncio.gather(*(read(i) for i in ids), return_exceptions=True)
        unreadable: set[str] = set()
        for subscription_id, result in zip(ids, results, strict=True):
            if isinstance(result, VaultError):
                unreadable.add(subscription_id)
                self._stale.add(subscription_id)  # try again next cycle
                log.error(
                    audit.ROTATION_FAILED,
                    subscription_id=subscription_id,
                    stage="read",
                    reason=Reason.VAULT_UNREADABLE,
                    error=str(result),
                )
            elif isinstance(result, BaseException):
                raise result
            else:
                self.remember(result)
        return unreadable
