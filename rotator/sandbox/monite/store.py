"""The Monite emulator's state: the subscriptions store, access tokens, clients, counters.

`MoniteState` is the base of the emulator's layers (`auth`, `pagination`,
`fault_injection`, then `emulator.MoniteEmulator`): it creates every
attribute they share, and owns subscriptions themselves: creating one,
minting its secret, and the test-side setup and reads (`seed`, `remove`,
`current_secret`, ...).
"""

from __future__ import annotations

import math
import random
import secrets
import threading
import uuid
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rotator.sandbox import record_issued
from rotator.sandbox.monite.faults import MoniteFaults, Straggler
from rotator.sandbox.monite.responses import TokenBucket

if TYPE_CHECKING:
    from rotator.sandbox.monite.pagination import Cursor, ListQuery

# How many (operation, status, x-request-id) answers `request_ids()` remembers.
MAX_REQUEST_LOG = 10_000


@dataclass
class Subscription:
    id: str
    url: str
    object_type: str
    status: str
    event_types: list[str]
    secret: str
    seq: int
    created_at: datetime
    updated_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)

    def resource(self, *, with_secret: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = dict(self.extra)
        body.update(
            id=self.id,
            event_types=list(self.event_types),
            object_type=self.object_type,
            status=self.status,
            url=self.url,
        )
        if with_secret:
            body["secret"] = self.secret
        return body


@dataclass(frozen=True)
class DeliveryTarget:
    """Where and how to deliver an event for one subscription, read in one go.

    `secret` is the subscription's signing secret at the moment of reading
    (kept out of the repr); `enabled` says whether Monite would deliver at all.
    """

    subscription_id: str
    url: str
    enabled: bool
    object_type: str
    event_types: tuple[str, ...]
    secret: str = field(repr=False)


@dataclass
class AccessToken:
    client_id: str
    expires_at: float  # time.monotonic()
    revoked: bool = False


def _target(sub: Subscription) -> DeliveryTarget:
    return DeliveryTarget(
        subscription_id=sub.id,
        url=sub.url,
        enabled=sub.status == "enabled",
        object_type=sub.object_type,
        event_types=tuple(sub.event_types),
        secret=sub.secret,
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


class MoniteState:
    """What the emulator holds; the layers above (auth, pagination, faults, handlers) act on it.

    They are one class in the end (`emulator.MoniteEmulator`); the `*_locked`
    methods want `_lock` held.
    """

    def __init__(
        self, *, rate_limit: float, burst: int | None, token_ttl: int, seed: int | None
    ) -> None:
        self.faults = MoniteFaults()
        self.token_ttl = token_ttl
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._rng = random.Random(seed)
        self._bucket = TokenBucket(
            rate_limit, burst if burst is not None else math.ceil(rate_limit)
        )
        self._clients: dict[str, str] = {}
        self._tokens: dict[str, AccessToken] = {}
        self._subs: dict[str, Subscription] = {}
        # Bumped by every change to a subscription; keys the sorted-listing cache.
        self._version = 0
        self._sorted_cache: dict[ListQuery, tuple[int, list[Subscription], list[Any]]] = {}
        self._seq = 0
        self._pagination: dict[str, Cursor] = {}
        self._regenerations: Counter[str] = Counter()
        self._stragglers: list[Straggler] = []  # in arrival order
        self._dropped: list[str] = []  # ids whose applied regenerate got no answer
        self._requests: Counter[str] = Counter()
        self._answers: deque[tuple[str, int, str]] = deque(maxlen=MAX_REQUEST_LOG)

    # -- test-side setup and introspection --------------------------------------

    def seed(
        self,
        *,
        url: str | None = None,
        object_type: str = "payable",
        status: str = "enabled",
        event_types: Sequence[str] = ("created", "updated"),
        extra: Mapping[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> str:
        """Create a subscription (with a secret) and return its id.

        Nothing is validated, so tests can seed values Monite may add tomorrow.
        `url` defaults to a unique https://example.com/hooks/N.
        """
        with self._lock:
            sub = self._create_locked(
                url=url if url is not None else f"https://example.com/hooks/{self._seq + 1}",
                object_type=object_type,
                event_types=list(event_types),
                status=status,
                extra=dict(extra or {}),
                created_at=created_at,
            )
            return sub.id

    def remove(self, subscription_id: str) -> None:
        """Delete a subscription behind the client's back (an orphaned record)."""
        with self._lock:
            del self._subs[subscription_id]
            self._version += 1

    def subscription(self, subscription_id: str) -> dict[str, Any]:
        """The subscription as the API lists it (no secret)."""
        with self._lock:
            return self._subs[subscription_id].resource()

    def current_secret(self, subscription_id: str) -> str:
        with self._lock:
            return self._subs[subscription_id].secret

    def subscription_ids(self) -> list[str]:
        """Ids in creation order."""
        with self._lock:
            return [s.id for s in sorted(self._subs.values(), key=lambda s: s.seq)]

    def delivery_target(self, subscription_id: str) -> DeliveryTarget | None:
        """The subscription's URL, status, kind and current secret; None once it is deleted."""
        with self._lock:
            sub = self._subs.get(subscription_id)
            return None if sub is None else _target(sub)

    def delivery_targets(self) -> list[DeliveryTarget]:
        """Every enabled subscription's delivery target, in creation order."""
        with self._lock:
            subs = sorted(self._subs.values(), key=lambda s: s.seq)
            return [_target(sub) for sub in subs if sub.status == "enabled"]

    def regenerate_count(self, subscription_id: str) -> int:
        """How many regenerations were applied (dropped, malformed and released ones included)."""
        with self._lock:
            return self._regenerations[subscription_id]

    # -- subscriptions (call the *_locked ones with self._lock held) -----------

    def _rotate_locked(self, sub: Subscription) -> dict[str, Any]:
        """Mint a new secret (the old one stops working at once); the resource with it."""
        sub.secret = secrets.token_urlsafe(32)
        record_issued(sub.secret)
        sub.updated_at = utc_now()
        self._version += 1
        self._regenerations[sub.id] += 1
        return sub.resource(with_secret=True)

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _create_locked(
        self,
        *,
        url: str,
        object_type: str,
        event_types: list[str],
        status: str,
        extra: dict[str, Any],
        created_at: datetime | None,
    ) -> Subscription:
        self._seq += 1
        created = created_at if created_at is not None else utc_now()
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        secret = secrets.token_urlsafe(32)
        record_issued(secret)
        sub = Subscription(
            id=self._new_id(),
            url=url,
            object_type=object_type,
            status=status,
            event_types=event_types,
            secret=secret,
            seq=self._seq,
            created_at=created,
            updated_at=created,
            extra=extra,
        )
        self._subs[sub.id] = sub
        self._version += 1
        return sub
