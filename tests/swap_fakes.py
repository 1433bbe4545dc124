"""In-memory Vault KV v2 and Monite, just enough to drive one swap step by step.

`KvStore` (`rotator.ports.RecordStore`) models what the swap protocol leans on:
a check-and-set write lands only on the current version (`cas=0`: no record
yet); every version keeps Vault's `created_time` (the fake clock's time) and
stays readable by number; deleting a key's metadata forgets every version, and
the next write is version 1 again, so `cas=v` can land on a different record.
A test may run an action just before a matching write (`interpose`), refuse
writes (`refuse`) and take history reads down (`history_down`).

`FakeMonite` (`rotator.ports.SubscriptionSource`): subscriptions and the current
secret of each; create, delete, get and regenerate, one attempt per call. A
create may be refused (nothing applied) or lose its answer (applied).

Secrets are long random tokens registered with `rotator.sandbox.record_issued`,
so the suite's hygiene check looks for them in everything captured.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime

from rotator.errors import MoniteError, MoniteNotFound, VaultConflict, VaultUnavailable
from rotator.model import Created, Record, Regenerated, Subscription
from rotator.sandbox import record_issued
from rotator.secret import Secret
from tests.clocks import FakeClock

WriteMatch = Callable[[Record], bool]
BeforeWrite = Callable[[], Awaitable[None]]


class KvStore:
    """Vault KV v2 records by subscription id: check-and-set, history, metadata delete."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self.versions: dict[str, list[Record]] = {}
        self.history_reads: list[tuple[str, int]] = []  # every read of a given version
        self.history_down = False  # reads of a given version fail with VaultUnavailable
        self.refuse: WriteMatch = lambda record: False  # matching writes fail, not applied
        self._interposed: list[tuple[WriteMatch, BeforeWrite]] = []

    def interpose(self, match: WriteMatch, action: BeforeWrite) -> None:
        """Run `action` once, just before the first write of a record that `match`es."""
        self._interposed.append((match, action))

    def put(self, record: Record) -> Record:
        """Seed: write `record` over whatever is there (a test's setup, never the protocol)."""
        return self._append(record)

    def latest(self, subscription_id: str) -> Record:
        versions = self.versions.get(subscription_id, [])
        return versions[-1] if versions else Record(subscription_id)

    def delete_metadata(self, subscription_id: str) -> None:
        """An operator deletes the key's metadata: every version goes; numbering restarts."""
        self.versions.pop(subscription_id, None)

    async def read(self, subscription_id: str, *, version: int | None = None) -> Record:
        self.requests["read", "ok"] += 1
        if version is None:
            return self.latest(subscription_id)
        self.history_reads.append((subscription_id, version))
        if self.history_down:
            raise VaultUnavailable("injected: Vault's history cannot be read")
        versions = self.versions.get(subscription_id, [])
        if 1 <= version <= len(versions):
            return versions[version - 1]
        # Vault answers 404 for a version it does not hold: no data, vouches for nothing.
        return Record(subscription_id, version=version, state="stale")

    async def write(self, record: Record, *, cas: int) -> Record:
        for entry in list(self._interposed):
            match, action = entry
            if match(record):
                self._interposed.remove(entry)
                await action()
        if self.refuse(record):
            raise VaultUnavailable("injected: the write was refused")
        current = len(self.versions.get(record.subscription_id, []))
        if cas != current:
            raise VaultConflict(f"check-and-set parameter did not match: cas={cas}, at {current}")
        self.requests["write", "ok"] += 1
        return self._append(record)

    def _append(self, record: Record) -> Record:
        versions = self.versions.setdefault(record.subscription_id, [])
        written = record.at_version(len(versions) + 1, self.clock.now())
        versions.append(written)
        return written

    async def list_ids(self) -> list[str]:
        return sorted(sid for sid, versions in self.versions.items() if versions)

    async def vault_now(self, *, refresh: bool = False) -> datetime:
        return self.clock.now()

    async def check(self) -> None:
        return None


class FakeMonite:
    """Monite webhook subscriptions and the current secret of each."""

    request_timeout = 1.0

    def __init__(self) -> None:
        self.requests: collections.Counter[tuple[str, int]] = collections.Counter()
        self.subscriptions: dict[str, Subscription] = {}
        self.secrets: dict[str, str] = {}
        self.refuse_create: MoniteError | None = None  # the next create fails, not applied
        self.lose_create: MoniteError | None = None  # the next create applies, answer lost
        self.refuse_disable: MoniteError | None = None  # the next disable fails
        self._rng = random.Random(20240601)
        self._made = 0

    def seed(
        self,
        subscription_id: str,
        *,
        url: str = "https://consumer.example/hooks",
        object_type: str = "payable",
        event_types: Sequence[str] = ("created", "updated"),
    ) -> str:
        """A subscription that exists with a secret (as an earlier rotation left it)."""
        self.subscriptions[subscription_id] = Subscription(
            subscription_id, url, object_type, "enabled", tuple(event_types)
        )
        self.secrets[subscription_id] = self._token()
        return subscription_id

    def current(self, subscription_id: str) -> Secret:
        """The secret Monite signs this subscription's deliveries with now."""
        return Secret(self.secrets[subscription_id])

    def _token(self) -> str:
        value = f"whsec_{self._rng.getrandbits(160):040x}"
        record_issued(value)
        return value

    async def list_subscriptions(self) -> list[Subscription]:
        return list(self.subscriptions.values())

    async def get_subscription(self, subscription_id: str) -> Subscription:
        if subscription_id not in self.subscriptions:
            raise MoniteNotFound(f"no subscription {subscription_id}", status=404)
        return self.subscriptions[subscription_id]

    async def regenerate_secret(
        self, subscription_id: str, *, send_by: float | None = None
    ) -> Regenerated:
        subscription = await self.get_subscription(subscription_id)
        self.secrets[subscription_id] = self._token()
        return Regenerated(subscription, self.current(subscription_id))

    async def create_subscription(
        self,
        url: str,
        object_type: str,
        event_types: Sequence[str],
        *,
        send_by: float | None = None,
    ) -> Created:
        if self.refuse_create is not None:
            error, self.refuse_create = self.refuse_create, None
            raise error
        self._made += 1
        subscription_id = self.seed(
            f"sub-new-{self._made}", url=url, object_type=object_type, event_types=event_types
        )
        if self.lose_create is not None:
            error, self.lose_create = self.lose_create, None
            raise error
        return Created(self.subscriptions[subscription_id], self.current(subscription_id))

    async def delete_subscription(
        self, subscription_id: str, *, send_by: float | None = None
    ) -> bool:
        self.secrets.pop(subscription_id, None)
        return self.subscriptions.pop(subscription_id, None) is not None

    async def disable_subscription(
        self, subscription_id: str, *, send_by: float | None = None
    ) -> Subscription:
        if self.refuse_disable is not None:
            error, self.refuse_disable = self.refuse_disable, None
            raise error
        disabled = replace(await self.get_subscription(subscription_id), status="disabled")
        self.subscriptions[subscription_id] = disabled
        return disabled

    async def check(self) -> None:
        return None
