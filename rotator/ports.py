"""The small ports the rotation protocol talks to: a record store and a subscription source.

The protocol (`rotator.rotation`) and the cycle (`rotator.engine`) depend on
these, not on hvac or httpx, so the same code runs on the real adapters
(`rotator.vault.VaultStore`, `rotator.monite.MoniteClient`) and on the
in-memory models of the simulation in virtual time (`tests/sim`).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from rotator.model import Created, Record, Regenerated, Subscription


class RecordStore(Protocol):
    """Vault KV v2 as the protocol sees it: versioned records written with check-and-set."""

    requests: collections.Counter[tuple[str, str]]  # (operation, outcome), for metrics

    async def read(self, subscription_id: str, *, version: int | None = None) -> Record:
        """The latest version (or `version`) with its `created_time`; version 0 when none.

        A version that was deleted or destroyed reads as a record without data.
        """
        ...

    async def write(self, record: Record, *, cas: int) -> Record:
        """Write as the version after `cas`; VaultConflict when someone moved first.

        Returns the record at its new version and `created_time`. Never retried
        inside: an error may hide a write that was applied.
        """
        ...

    async def list_ids(self) -> list[str]:
        """Subscription ids that have a record."""
        ...

    async def vault_now(self, *, refresh: bool = False) -> datetime:
        """Vault's current time, a lower bound: the one clock claims are judged on."""
        ...

    async def check(self) -> None:
        """Reachable, unsealed, and the credentials work; raises VaultError."""
        ...


class SubscriptionSource(Protocol):
    """Monite's webhook subscriptions as the protocol sees them."""

    requests: collections.Counter[tuple[str, int]]  # (operation, HTTP status), for metrics

    @property
    def request_timeout(self) -> float:
        """Seconds one request may take; no regenerate starts with less than twice this left."""
        ...

    async def list_subscriptions(self) -> list[Subscription]:
        """Every subscription (never with a secret)."""
        ...

    async def get_subscription(self, subscription_id: str) -> Subscription:
        """One subscription; MoniteNotFound when Monite does not know it."""
        ...

    async def regenerate_secret(
        self, subscription_id: str, *, send_by: float | None = None
    ) -> Regenerated:
        """One attempt, never retried; a MoniteError says whether it may have applied."""
        ...

    async def create_subscription(
        self,
        url: str,
        object_type: str,
        event_types: Sequence[str],
        *,
        send_by: float | None = None,
    ) -> Created:
        """One attempt, never retried: the new subscription and its secret's only copy.

        A MoniteError whose `may_have_applied` is True may hide a subscription
        that was created; it is then not `retryable` (another create makes another).
        """
        ...

    async def delete_subscription(
        self, subscription_id: str, *, send_by: float | None = None
    ) -> bool:
        """True when deleted now, False when it was already gone; retried inside."""
        ...

    async def disable_subscription(
        self, subscription_id: str, *, send_by: float | None = None
    ) -> Subscription:
        """Stop a subscription's deliveries; retried inside. MoniteNotFound when it is gone."""
        ...

    async def check(self) -> None:
        """The credentials work and listing is allowed; raises MoniteError."""
        ...


__all__ = ["RecordStore", "SubscriptionSource"]
