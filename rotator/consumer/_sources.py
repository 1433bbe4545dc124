"""Where the kit gets a subscription's secret: records, the sources and their cache.

Owns `SecretRecord`, `Lookup`, the `SecretSource` protocol and `SecretSourceError`;
`CachedSource` (the TTL cache every source is) and the sources themselves:
`VaultSecretSource` (the rotator's KV v2 records, hvac imported when one is
built); `record_from_data` (a record read as the rotator reads it), the record
states and `valid_subscription_id`. The sources that need no Vault are
`rotator.consumer._local`'s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from rotator.secret import Secret

DEFAULT_CACHE_TTL = 300.0
"""Seconds a record read from Vault is trusted without reading it again."""
ABSENT_TTL = 1.0
"""Seconds "no record" is trusted. Short: a swap's successor has no record for the
milliseconds before its commit, and a delivery then must not make the kit refuse
the successor for a whole cache ttl."""

RECORD_STATES = (
    "active",
    "rotating",
    "settling",
    "stale",
    "swapping",
    "retiring",
    "deleting",
    "retired",
)
"""The record states of the rotator's protocol version 3 (README, "What lands in Vault").

Version 2's four (`active`, `rotating`, `settling`, `stale`) plus the swap's
four (docs/swap.md, section 1), all on the original subscription's record:
`swapping`, `retiring` and `deleting` while its successor is made, delivers
beside it and the original is deleted; `retired` once it is gone. A
successor's own record is `active`. A state outside this list (from a newer
rotator) is read as `stale`, as version 2 kits read the swap's states.
"""

ACCEPTED_STATES: frozenset[str] = frozenset(RECORD_STATES) - {"retired"}
"""Record states whose `secret` the kit verifies with, by default: every state that holds one.

Why not `active` alone: the record's `secret` is always the newest secret the
rotator knows (the README's consumer contract), and no state means "this
secret is known to be wrong":
- `rotating`: a rotation holds a claim; the record still holds the secret
  Monite signs with until the regenerate lands. Refusing it would turn every
  rotation into an outage for this consumer.
- `settling`: the new secret is committed and is almost always Monite's
  current one; the state only says an earlier regenerate *may* still land,
  so the rotator will rotate once more (and the re-read on mismatch picks
  that up).
- `stale`: a claim was given back over a secret that may be dead; if it is
  dead nothing verifies with it anyway, if not it is the right one.
- `swapping`, `retiring`, `deleting`: a swap (protocol version 3) never
  touches the original's secret; it stays valid until Monite deletes the
  original, and the original delivers until then, beside its successor
  (whose own record is `active`).

`retired` is left out: the original is deleted, its record kept for audit
with no secret (`secret` null) and never current; a retired record yields no
secret even if one were left in it (`no_active_secret`).

A consumer that wants rule zero's strict reading passes
`accepted_states={"active"}` to its source, and answers `no_active_secret`
for the others; with the swap strategy it must add `swapping`, `retiring`
and `deleting`, or it refuses the original's deliveries during the overlap.
"""

_MAX_SUBSCRIPTION_ID = 128


def valid_subscription_id(value: object) -> bool:
    """True for an id that is safe as one path segment (Monite's are UUIDs)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= _MAX_SUBSCRIPTION_ID
        and value not in (".", "..")
        and "/" not in value
        and "\\" not in value
        and all(0x20 < ord(c) < 0x7F for c in value)
    )


class SecretSourceError(Exception):
    """The secret source could not answer (Vault down, token refused): not the sender's fault.

    A receiver answers 503 so Monite delivers again later. The message names the
    error class only, never a secret or a token.
    """


@dataclass(frozen=True)
class SecretRecord:
    """What a source knows about one subscription's secret.

    `secret` is None when the record exists but holds no secret the kit may
    use (a deleted version, an empty field, a state not accepted).
    """

    subscription_id: str
    secret: Secret | None
    state: str
    version: int = 0


@dataclass(frozen=True)
class Lookup:
    """A record as the cache answered it; `cached` is False when it was just read."""

    record: SecretRecord | None
    cached: bool


class SecretSource(Protocol):
    """Where the Verifier gets a subscription's secret: cached reads and cache-bypassing ones."""

    def get(self, subscription_id: str) -> Lookup:
        """The record (from the cache while fresh; None when there is none)."""
        ...

    def refresh(self, subscription_id: str) -> SecretRecord | None:
        """Read the record again, bypassing the cache (and update the cache)."""
        ...

    def invalidate(self, subscription_id: str | None = None) -> None:
        """Forget one subscription's cached record, or all of them."""
        ...

    def known(self) -> list[str]:
        """The subscription ids the cache holds (for a periodic re-read)."""
        ...


class CachedSource:
    """A TTL cache of records around a `load(subscription_id)` function; thread-safe.

    Absent records are cached too (a flood of deliveries naming an unknown
    subscription costs one read per TTL), and so are secretless ones. Absent
    ids come from senders, so forged ones are kept apart and bounded: at most
    `max_absent`, the oldest forgotten first, believed for `ABSENT_TTL` at
    most, and never re-read by a poll (`known` lists records that exist). A
    read that started before an `invalidate` does not put its answer in the
    cache: it may be older than what the invalidation announced.
    """

    def __init__(
        self,
        load: Callable[[str], SecretRecord | None],
        *,
        ttl: float = DEFAULT_CACHE_TTL,
        clock: Callable[[], float] = time.monotonic,
        max_absent: int = 10_000,
    ) -> None:
        if ttl < 0:
            raise ValueError("ttl must be at least 0 seconds")
        if max_absent < 1:
            raise ValueError("max_absent must be at least 1")
        self._load = load
        self._ttl = ttl
        self._clock = clock
        self._max_absent = max_absent
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, SecretRecord]] = {}
        self._absent: dict[str, float] = {}  # insertion order: oldest first
        # Bumped by invalidate: a read that saw an older value is not cached.
        self._epoch = 0
        self._generations: dict[str, int] = {}
        self.reads = 0
        """How many times the underlying store was read (cache misses and refreshes)."""

    def get(self, subscription_id: str) -> Lookup:
        with self._lock:
            now = self._clock()
            hit = self._cache.get(subscription_id)
            if hit is not None and now - hit[0] < self._ttl:
                return Lookup(hit[1], cached=True)
            missing = self._absent.get(subscription_id)
            if missing is not None and now - missing < min(self._ttl, ABSENT_TTL):
                return Lookup(None, cached=True)
        return Lookup(self.refresh(subscription_id), cached=False)

    def refresh(self, subscription_id: str) -> SecretRecord | None:
        with self._lock:
            self.reads += 1
            started = (self._epoch, self._generations.get(subscription_id, 0))
        record = self._load(subscription_id)
        with self._lock:
            if started != (self._epoch, self._generations.get(subscription_id, 0)):
                return record  # invalidated meanwhile: answer it, cache nothing older
            now = self._clock()
            if record is None:
                self._cache.pop(subscription_id, None)
                self._absent.pop(subscription_id, None)
                self._absent[subscription_id] = now
                while len(self._absent) > self._max_absent:
                    del self._absent[next(iter(self._absent))]
            else:
                self._absent.pop(subscription_id, None)
                self._cache[subscription_id] = (now, record)
        return record

    def invalidate(self, subscription_id: str | None = None) -> None:
        with self._lock:
            if subscription_id is None:
                self._epoch += 1
                self._cache.clear()
                self._absent.clear()
            else:
                # Only ids a hook names get a generation, so this stays small.
                self._generations[subscription_id] = self._generations.get(subscription_id, 0) + 1
                self._cache.pop(subscription_id, None)
                self._absent.pop(subscription_id, None)

    def known(self) -> list[str]:
        with self._lock:
            return sorted(self._cache)


def record_from_data(
    subscription_id: str,
    data: Mapping[str, Any] | None,
    version: int = 0,
    *,
    accepted_states: Iterable[str] = ACCEPTED_STATES,
) -> SecretRecord:
    """A SecretRecord from a rotator record's KV v2 `data` (None: a deleted version).

    Read as the rotator reads it (`rotator.model.Record.from_vault`): a missing
    `state` is `active` (a record imported by hand), an unknown one `stale`.
    Only `secret` and `state` are read: a swap's fields (`predecessor_id`,
    `successor_id`, `swap_id`, ...) do not change which secret verifies.
    """
    if data is None:
        return SecretRecord(subscription_id, None, "stale", version)
    raw_state = data.get("state")
    state = "active" if raw_state in (None, "") else str(raw_state)
    if state not in RECORD_STATES:
        state = "stale"
    raw = data.get("secret")
    if not isinstance(raw, str) or not raw or state not in set(accepted_states):
        return SecretRecord(subscription_id, None, state, version)
    return SecretRecord(subscription_id, Secret(raw), state, version)


class VaultSecretSource(CachedSource):
    """Records the rotator wrote to Vault KV v2 at `{mount}/data/{prefix}/{subscription_id}`.

    `client` is an authenticated `hvac.Client` (renewing its token is the
    caller's business, as with any hvac client). hvac clients are not
    thread-safe, so reads are made one at a time. Which record states count is
    `accepted_states` (see ACCEPTED_STATES for why all of them, by default).
    """

    def __init__(
        self,
        client: Any,
        *,
        mount: str = "secret",
        prefix: str = "monite/webhooks",
        ttl: float = DEFAULT_CACHE_TTL,
        accepted_states: Iterable[str] = ACCEPTED_STATES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import hvac.exceptions  # here, not at the top: other sources need no hvac

        self._errors = hvac.exceptions
        self._client = client
        self._mount = mount.strip("/")
        self._prefix = prefix.strip("/")
        self._accepted = frozenset(accepted_states)
        self._client_lock = threading.Lock()
        super().__init__(self._read, ttl=ttl, clock=clock)

    def __repr__(self) -> str:
        return f"VaultSecretSource(mount={self._mount!r}, prefix={self._prefix!r})"

    def path(self, subscription_id: str) -> str:
        """The KV path (under the mount) of a subscription's record."""
        return f"{self._prefix}/{subscription_id}" if self._prefix else subscription_id

    def _read(self, subscription_id: str) -> SecretRecord | None:
        try:
            with self._client_lock:
                response = self._client.secrets.kv.v2.read_secret_version(
                    path=self.path(subscription_id),
                    mount_point=self._mount,
                    raise_on_deleted_version=False,
                )
        except self._errors.InvalidPath:
            return None
        except Exception as exc:
            # The library's text may quote a URL or a header; the class name is enough.
            raise SecretSourceError(
                f"Vault read of {self._mount}/data/{self.path(subscription_id)} failed: "
                f"{type(exc).__name__}"
            ) from None
        body = response.get("data") if isinstance(response, Mapping) else None
        if not isinstance(body, Mapping):
            raise SecretSourceError(
                f"Vault read of {self._mount}/data/{self.path(subscription_id)}: no data in answer"
            )
        metadata = body.get("metadata")
        raw_version = metadata.get("version") if isinstance(metadata, Mapping) else None
        version = raw_version if isinstance(raw_version, int) else 0
        data = body.get("data")
        return record_from_data(
            subscription_id,
            data if isinstance(data, Mapping) else None,
            version,
            accepted_states=self._accepted,
        )
