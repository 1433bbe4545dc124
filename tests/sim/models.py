"""In-memory Monite and Vault, and the per-replica clients the real engine talks to.

Server side (one of each per scenario):
- `VaultModel`: KV v2 as Vault documents it. Versions start at 1; a write with
  `cas=v` lands only if the current version is `v` (`cas=0`: the key must not
  exist); every version carries `created_time`, Vault's true time (virtual
  time plus Vault's own clock offset); deleting metadata removes every version
  and the next write is version 1 again.
- `MoniteModel`: subscriptions, each with its current secret (a fresh seeded
  random token per regenerate or create) and a count of regenerates; also how
  many regenerates of each are still unresolved (sent, neither applied nor
  known never to apply): the safety invariant needs it. A create adds a
  subscription with a fresh secret and a seeded id, and remembers which swap
  sent it (`origin`: swap id and original, read off the calling `_Swap`), so
  the invariants can count successors per swap and follow lineages; a delete
  removes one, after `before_delete` has seen the world as it was.

Client side (one of each per replica incarnation), implementing the ports:
- `SimVaultStore` (`rotator.ports.RecordStore`) writes `record.to_vault()`
  and reads records built with `Record.from_vault` (once per version, by
  `VaultModel`), so the real serialisation runs; learns Vault's time with
  `rotator.clock.ServerClock` from `created_time` and a whole-second `Date`
  observation.
- `SimMonite` (`rotator.ports.SubscriptionSource`): one attempt per call.
  Create and delete meet the same fates as a regenerate (applied before a
  timeout, never, as a straggler within claim_ttl, applied with the answer
  lost, refused); a create may also answer 2xx with an unreadable secret, and
  a delete whose answer is lost may be answered by the real client's retry
  as "gone already".

Every request travels: it reaches the server after a latency, is applied there
by a loop callback (so cancelling the caller, a crash, does not un-send it),
and its answer travels back. Faults are decided when a request is sent, from
the fault windows active then and the scenario's seeded rng; every injected
fault is counted by kind in `Faults.injected`.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from rotator.clock import ServerClock
from rotator.errors import (
    MoniteError,
    MoniteNotFound,
    MoniteProtocolError,
    MoniteUnavailable,
    VaultConflict,
    VaultUnavailable,
)
from rotator.model import Created, Record, Regenerated, Subscription
from rotator.secret import Secret
from tests.sim.loop import EPOCH, SimClock, VirtualLoop

T = TypeVar("T")

# -- fault windows ------------------------------------------------------------------

MONITE_MODES = ("flaky", "outage", "throttle", "straggle", "slow")
VAULT_MODES = ("flaky", "outage", "slow")

# What one create attempt can run into at Monite (decided when it is sent).
CREATE_FATES = (
    "dropped",  # created, the answer is lost (may_have_applied=True, not retryable)
    "throttled",  # 429 with Retry-After, not created
    "error_applied",  # 503 after creating (may_have_applied=True, not retryable)
    "error_not_applied",  # 503, not created (the client cannot tell: may_have_applied)
    "connect",  # connection refused, never sent
    "timeout_never",  # no answer within the timeout; never created
    "timeout_before",  # no answer within the timeout; created before the timeout
    "timeout_straggler",  # no answer; created later, within claim_ttl of sending
    "unreadable",  # created, answered 2xx with a secret that cannot be read (C6)
)

# What one delete attempt can run into at Monite (decided when it is sent).
DELETE_FATES = (
    "dropped",  # deleted, the answer is lost
    "dropped_retried",  # deleted, the answer lost; the client's retry reads 404: gone already
    "throttled",  # 429, not deleted
    "error_applied",  # 503 after deleting
    "error_not_applied",  # 503, not deleted
    "connect",  # connection refused, never sent
    "timeout_never",  # no answer within the timeout; never deleted
    "timeout_before",  # no answer within the timeout; deleted before the timeout
    "timeout_straggler",  # no answer; deleted later, within claim_ttl of sending
)

# What one regenerate attempt can run into at Monite (decided when it is sent).
REGENERATE_FATES = (
    "timeout_never",  # no answer within the timeout; never applied
    "timeout_before",  # no answer within the timeout; applied before the timeout
    "timeout_straggler",  # no answer; applied later, within claim_ttl of sending
    "dropped",  # applied, the answer is lost (may_have_applied=True)
    "throttled",  # 429 with Retry-After, not applied
    "error_applied",  # 503 after applying
    "error_not_applied",  # 503, not applied
    "not_found",  # a transient 404 (a gateway's), not applied
    "connect",  # connection refused, never sent
)


@dataclass(frozen=True, slots=True)
class Window:
    """A fault window: from `start` for `duration` seconds, `mode`, hitting `rate` of calls."""

    start: float
    duration: float
    mode: str
    rate: float

    def covers(self, t: float) -> bool:
        return self.start <= t < self.start + self.duration


@dataclass(slots=True)
class Faults:
    """The scenario's fault windows and the seeded rng that draws per-call faults."""

    rng: random.Random
    monite: list[Window] = field(default_factory=list)
    vault: list[Window] = field(default_factory=list)
    injected: collections.Counter[str] = field(default_factory=collections.Counter)
    enabled: bool = True

    def _mode(self, windows: list[Window], t: float) -> str | None:
        if self.enabled:
            for w in windows:
                if w.covers(t) and (w.mode == "outage" or self.rng.random() < w.rate):
                    return w.mode
        return None

    def monite_mode(self, t: float) -> str | None:
        """The fault mode hitting a Monite call sent at `t`, or None."""
        return self._mode(self.monite, t)

    def vault_mode(self, t: float) -> str | None:
        """The fault mode hitting a Vault call at `t`, or None."""
        return self._mode(self.vault, t)

    def count(self, kind: str) -> None:
        self.injected[kind] += 1


def _deliver(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():  # the caller was cancelled (crashed) meanwhile
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


# -- Vault ------------------------------------------------------------------------------


def _stored(data: dict[str, Any]) -> dict[str, Any]:
    """What Vault keeps of a written `data` object: its JSON, read back.

    A record's data is flat (strings, numbers, None, lists of strings), which
    the JSON round trip gives back equal: that shape is copied as it is, any
    other takes the round trip.
    """
    kept: dict[str, Any] = {}
    for key, value in data.items():
        kind = type(value)
        if type(key) is not str:
            break
        if kind is str or kind is float or kind is int or value is None:
            kept[key] = value
        elif kind is list and all(type(item) is str for item in value):
            kept[key] = list(value)
        else:
            break
    else:
        return kept
    copied: dict[str, Any] = json.loads(json.dumps(data))
    return copied


@dataclass(slots=True)
class _Version:
    data: dict[str, Any]
    created_time: datetime
    # This version as a Record, parsed on its first read: a version never
    # changes, Record.from_vault is a pure function of it, and a Record is
    # immutable, so every later read (a replica's, or the invariants' after
    # every change anywhere) can share it instead of parsing it again.
    parsed: Record | None = None


@dataclass(slots=True)
class _Entry:
    versions: dict[int, _Version] = field(default_factory=dict)
    current: int = 0


class VaultModel:
    """KV v2, one mount, one prefix; Vault's clock is virtual time plus `offset`."""

    def __init__(
        self,
        loop: VirtualLoop,
        *,
        offset: float,
        on_change: Callable[[str], None],
        trace: Callable[[str], None],
    ) -> None:
        self._loop = loop
        self.offset = offset
        self._entries: dict[str, _Entry] = {}
        self._on_change = on_change
        self._trace = trace

    def true_now(self) -> datetime:
        return EPOCH + timedelta(seconds=self._loop.time() + self.offset)

    def read(self, key: str, version: int | None = None) -> Record | None:
        """A version of `key` (the latest by default) as a Record, or None."""
        entry = self._entries.get(key)
        if entry is None or entry.current == 0:
            return None
        number = entry.current if version is None else version
        found = entry.versions.get(number)
        if found is None:
            return None
        if found.parsed is None:
            found.parsed = Record.from_vault(key, found.data, number, found.created_time)
        return found.parsed

    def write(self, key: str, data: dict[str, Any], cas: int) -> tuple[int, datetime]:
        entry = self._entries.get(key)
        current = 0 if entry is None else entry.current
        if cas != current:
            raise VaultConflict(
                f"check-and-set parameter did not match the current version of {key}",
                status=400,
            )
        if entry is None:
            entry = self._entries[key] = _Entry()
        created = self.true_now()
        entry.current += 1
        entry.versions[entry.current] = _Version(_stored(data), created)
        self._trace(f"vault.write {key} v{entry.current} {data.get('state')}")
        self._on_change(key)
        return entry.current, created

    def delete_metadata(self, key: str) -> None:
        if self._entries.pop(key, None) is not None:
            self._trace(f"vault.delete_metadata {key}")
            self._on_change(key)

    def list_ids(self) -> list[str]:
        return sorted(k for k, e in self._entries.items() if e.current > 0)

    def record(self, key: str) -> Record | None:
        """The latest version as a Record, for the invariant checks (no I/O, no faults)."""
        return self.read(key)


class SimVaultStore:
    """`rotator.ports.RecordStore` over `VaultModel`, for one replica incarnation."""

    def __init__(
        self,
        loop: VirtualLoop,
        vault: VaultModel,
        clock: SimClock,
        faults: Faults,
    ) -> None:
        self._loop = loop
        self._vault = vault
        self._faults = faults
        self._clock = ServerClock(clock.monotonic)
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()

    def _latency(self, mode: str | None) -> float:
        if mode == "slow":
            return self._faults.rng.uniform(0.2, 5.0)
        return self._faults.rng.uniform(0.0005, 0.02)

    async def _call(self, op: str, apply: Callable[[], T]) -> T:
        """One request: travel, apply at the server (unless a fault hits), travel back."""
        loop = self._loop
        mode = self._faults.vault_mode(loop.time())
        fate = "ok"
        if mode == "outage":
            fate = "before"
        elif mode == "flaky":
            fate = self._faults.rng.choice(("before", "after") if op == "write" else ("before",))
        go, back = self._latency(mode), self._latency(mode)
        fut: asyncio.Future[T] = loop.create_future()

        def arrive() -> None:
            # An outage that began while the request travelled refuses it too.
            down = self._faults.vault_mode(loop.time()) == "outage"
            if fate == "before" or down:
                self._faults.count("vault.unavailable" if not down else "vault.outage")
                error = VaultUnavailable(f"Vault {op}: 503 (simulated)", status=503)
                loop.call_later(back, _deliver, fut, None, error)
                return
            try:
                result = apply()
            except VaultConflict as exc:
                loop.call_later(back, _deliver, fut, None, exc)
                return
            if fate == "after":
                self._faults.count("vault.answer_lost")
                error = VaultUnavailable(f"Vault {op}: connection reset (simulated)")
                loop.call_later(back, _deliver, fut, None, error)
                return
            loop.call_later(back, _deliver, fut, result, None)

        loop.call_later(go, arrive)
        try:
            result = await fut
        except VaultConflict:
            self.requests[(op, "conflict")] += 1
            raise
        except VaultUnavailable:
            self.requests[(op, "error")] += 1
            raise
        self.requests[(op, "ok")] += 1
        return result

    async def read(self, subscription_id: str, *, version: int | None = None) -> Record:
        got = await self._call("read", lambda: self._vault.read(subscription_id, version))
        return Record(subscription_id=subscription_id) if got is None else got

    async def write(self, record: Record, *, cas: int) -> Record:
        data = record.to_vault()
        version, created = await self._call(
            "write", lambda: self._vault.write(record.subscription_id, data, cas)
        )
        self._clock.observe(created)
        return record.at_version(version, created)

    async def list_ids(self) -> list[str]:
        return await self._call("list", self._vault.list_ids)

    async def vault_now(self, *, refresh: bool = False) -> datetime:
        now = self._clock.now()
        if now is not None and not refresh:
            return now

        def date_header() -> datetime:
            # HTTP `Date`: Vault's time truncated to the whole second.
            true = self._vault.true_now()
            return true.replace(microsecond=0)

        self._clock.observe_date(await self._call("time", date_header))
        now = self._clock.now()
        assert now is not None
        return now

    async def check(self) -> None:
        await self._call("check", lambda: None)


# -- Monite -------------------------------------------------------------------------------


class MoniteModel:
    """Monite's webhook subscriptions: the current secret of each, and regenerate counts."""

    def __init__(
        self,
        subscription_ids: list[str],
        *,
        rng: random.Random,
        on_change: Callable[[str], None],
        trace: Callable[[str], None],
        before_delete: Callable[[str], None] | None = None,
        after_create: Callable[[str], None] | None = None,
    ) -> None:
        self._rng = rng
        self._on_change = on_change
        self._trace = trace
        self._before_delete = before_delete
        self._after_create = after_create
        self.subscriptions = {
            sid: Subscription(
                id=sid,
                url=f"https://consumer.example/hooks/{i % 2}",
                object_type="payable",
                status="enabled",
                event_types=("created", "updated"),
            )
            for i, sid in enumerate(subscription_ids)
        }
        self.current: dict[str, str] = {sid: self._token() for sid in subscription_ids}
        self.regenerates: collections.Counter[str] = collections.Counter()
        self.unresolved: collections.Counter[str] = collections.Counter()
        self.created = 0  # subscriptions made by create, for their ids
        # Created id -> (swap id, original id) of the swap that sent the create.
        self.origin: dict[str, tuple[str | None, str | None]] = {}
        self.creates_per_swap: collections.Counter[str] = collections.Counter()
        self.deleted: list[str] = []  # ids deleted, in order

    def _token(self) -> str:
        return f"whsec_{self._rng.getrandbits(160):040x}"

    def send(self, sid: str) -> None:
        self.unresolved[sid] += 1

    def apply(self, sid: str) -> str:
        """A regenerate lands: the old secret dies, a new one is current."""
        value = self._token()
        self.current[sid] = value
        self.regenerates[sid] += 1
        self.unresolved[sid] -= 1
        self._trace(f"monite.regenerate {sid} #{self.regenerates[sid]}")
        self._on_change(sid)
        return value

    def never(self, sid: str) -> None:
        """A sent regenerate is known never to land."""
        self.unresolved[sid] -= 1
        self._on_change(sid)

    def root(self, sid: str) -> str:
        """The subscription the lineage of `sid` started from (itself if no swap made it)."""
        seen = 0
        while sid in self.origin and seen < 10_000:
            parent = self.origin[sid][1]
            if parent is None:
                break
            sid, seen = parent, seen + 1
        return sid

    def create(
        self,
        url: str,
        object_type: str,
        event_types: Sequence[str],
        *,
        origin: tuple[str | None, str | None] = (None, None),
    ) -> Created:
        """A create lands: a new enabled subscription with a fresh secret."""
        self.created += 1
        sid = f"sub-new-{self.created}"
        sub = Subscription(
            id=sid,
            url=url,
            object_type=object_type,
            status="enabled",
            event_types=tuple(event_types),
        )
        value = self._token()
        self.subscriptions[sid] = sub
        self.current[sid] = value
        if origin != (None, None):
            self.origin[sid] = origin
            if origin[0] is not None:
                self.creates_per_swap[origin[0]] += 1
            self._trace(f"monite.create {sid} for {origin[1]}")
        else:
            self._trace(f"monite.create {sid}")
        if self._after_create is not None:
            self._after_create(sid)
        self._on_change(sid)
        return Created(subscription=sub, secret=Secret(value))

    def delete(self, sid: str) -> bool:
        """A delete lands: True if the subscription existed (its secret dies with it)."""
        if sid not in self.subscriptions:
            return False
        if self._before_delete is not None:
            self._before_delete(sid)
        del self.subscriptions[sid]
        del self.current[sid]
        self.deleted.append(sid)
        self._trace(f"monite.delete {sid}")
        self._on_change(sid)
        return True


def _calling_swap() -> tuple[str | None, str | None]:
    """(swap id, original id) of the `rotator.rotation.swap._Swap` whose step is calling.

    Read off the Python stack: a coroutine's callers are on it while it runs
    (tasks step the outermost coroutine). The model needs this only to count
    creates per swap and to follow lineages; the rotator never sees it.
    """
    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if type(owner).__name__ == "_Swap":
            return getattr(owner, "swap_id", None), getattr(owner.sub, "id", None)
        frame = frame.f_back  # type: ignore[assignment]
    return None, None


class SimMonite:
    """`rotator.ports.SubscriptionSource` over `MoniteModel`, for one replica incarnation."""

    def __init__(
        self,
        loop: VirtualLoop,
        monite: MoniteModel,
        clock: SimClock,
        faults: Faults,
        *,
        timeout: float,
        straggle_for: float,
    ) -> None:
        self._loop = loop
        self._monite = monite
        self._clock = clock
        self._faults = faults
        self._timeout = timeout
        self._straggle_for = straggle_for  # the straggler assumption: claim_ttl
        self.requests: collections.Counter[tuple[str, int]] = collections.Counter()

    @property
    def request_timeout(self) -> float:
        return self._timeout

    def _latency(self, mode: str | None) -> float:
        if mode == "slow":
            return self._faults.rng.uniform(0.05, 0.45 * self._timeout)
        return self._faults.rng.uniform(0.005, 0.1)

    async def _simple(self, op: str, answer: Callable[[], T]) -> T:
        """list / get: latency, or a 503 / connection failure in a fault window."""
        mode = self._faults.monite_mode(self._loop.time())
        rng = self._faults.rng
        await asyncio.sleep(self._latency(mode) * 2)
        # Flaky and throttled windows mostly hit regenerates: let most cycles get that far.
        if (
            mode == "outage"
            or (mode == "flaky" and rng.random() < 0.25)
            or (mode == "throttle" and rng.random() < 0.25)
        ):
            status = 429 if mode == "throttle" else rng.choice((503, 0))
            self._faults.count(f"monite.{op}_{status or 'connect'}")
            self.requests[(op, status)] += 1
            raise MoniteUnavailable(
                f"Monite {op}: {status or 'connection refused'} (simulated)",
                status=status or None,
                retry_after=1.0 if status == 429 else None,
            )
        result = answer()
        self.requests[(op, 200)] += 1
        return result

    async def list_subscriptions(self) -> list[Subscription]:
        subs = self._monite.subscriptions
        return await self._simple("list", lambda: [subs[k] for k in sorted(subs)])

    async def get_subscription(self, subscription_id: str) -> Subscription:
        def get() -> Subscription:
            sub = self._monite.subscriptions.get(subscription_id)
            if sub is None:
                raise MoniteNotFound(f"no subscription {subscription_id}", status=404)
            return sub

        return await self._simple("get", get)

    async def disable_subscription(
        self, subscription_id: str, *, send_by: float | None = None
    ) -> Subscription:
        def disable() -> Subscription:
            sub = self._monite.subscriptions.get(subscription_id)
            if sub is None:
                raise MoniteNotFound(f"no subscription {subscription_id}", status=404)
            disabled = self._monite.subscriptions[subscription_id] = replace(sub, status="disabled")
            return disabled

        return await self._simple("disable", disable)

    async def check(self) -> None:
        await self._simple("check", lambda: None)

    def _unsafe_fate(self, mode: str | None, fates: tuple[str, ...]) -> str:
        """The fate of a create or delete sent in `mode` (one draw, like a regenerate's)."""
        rng = self._faults.rng
        if mode is None or mode == "slow":
            return "ok"
        if mode == "throttle":
            return "throttled"
        if mode == "outage":
            return rng.choice(("connect", "error_applied"))
        if mode == "straggle":
            return rng.choice(("timeout_straggler", "timeout_before", "timeout_never"))
        return rng.choice(fates)

    async def _unsafe(
        self, op: str, mode: str | None, fate: str, apply: Callable[[], T], ok: int
    ) -> T:
        """One create or delete attempt meeting `fate`: applied by the server's schedule."""
        loop = self._loop
        rng = self._faults.rng
        timeout = self._timeout
        go, back = self._latency(mode), self._latency(mode)
        fut: asyncio.Future[T] = loop.create_future()
        if fate != "ok":
            self._faults.count(f"monite.{op}_{fate}")

        def lost(message: str, *, status: int | None = None) -> MoniteUnavailable:
            return MoniteUnavailable(
                f"Monite {op}: {message} (simulated)",
                status=status,
                may_have_applied=True,
                retryable=op != "create",
            )

        def arrive() -> None:
            error: MoniteError
            if fate == "throttled":
                error = MoniteUnavailable(
                    f"Monite {op}: 429 (simulated)", status=429, retry_after=1.0
                )
                loop.call_later(back, _deliver, fut, None, error)
                return
            if fate == "error_not_applied":
                loop.call_later(back, _deliver, fut, None, lost("503", status=503))
                return
            result = apply()
            if fate == "ok":
                loop.call_later(back, _deliver, fut, result, None)
            elif fate == "dropped_retried":
                # The client's own retry is answered 404: "gone already".
                loop.call_later(back + self._latency(None), _deliver, fut, False, None)
            elif fate == "unreadable":
                error = MoniteProtocolError(
                    f"Monite {op}: 2xx whose secret cannot be read (simulated)",
                    status=201,
                    may_have_applied=True,
                )
                loop.call_later(back, _deliver, fut, None, error)
            elif fate == "error_applied":
                loop.call_later(back, _deliver, fut, None, lost("503 after applying", status=503))
            else:
                loop.call_later(back, _deliver, fut, None, lost("connection reset after sending"))

        def quietly() -> None:
            apply()

        if fate == "connect":
            error = MoniteUnavailable(f"Monite {op}: connection refused (simulated)")
            loop.call_later(go, _deliver, fut, None, error)
        elif fate.startswith("timeout_"):
            timed_out = lost(f"no answer within {timeout:g}s")
            loop.call_later(timeout, _deliver, fut, None, timed_out)
            if fate == "timeout_before":
                loop.call_later(rng.uniform(0.0, timeout), quietly)
            elif fate == "timeout_straggler":
                # The straggler assumption: applied within claim_ttl of its sending.
                loop.call_later(rng.uniform(timeout, self._straggle_for), quietly)
        else:
            loop.call_later(go, arrive)
        try:
            result = await fut
        except MoniteError as exc:
            self.requests[(op, exc.status or 0)] += 1
            raise
        self.requests[(op, ok)] += 1
        return result

    async def create_subscription(
        self,
        url: str,
        object_type: str,
        event_types: Sequence[str],
        *,
        send_by: float | None = None,
    ) -> Created:
        monite = self._monite
        origin = _calling_swap()
        if send_by is not None and self._clock.monotonic() > send_by:
            self.requests[("create", 0)] += 1
            raise MoniteUnavailable("the request's deadline passed before it was sent")
        mode = self._faults.monite_mode(self._loop.time())
        fate = self._unsafe_fate(mode, CREATE_FATES)
        types = tuple(event_types)
        return await self._unsafe(
            "create", mode, fate, lambda: monite.create(url, object_type, types, origin=origin), 201
        )

    async def delete_subscription(
        self, subscription_id: str, *, send_by: float | None = None
    ) -> bool:
        if send_by is not None and self._clock.monotonic() > send_by:
            self.requests[("delete", 0)] += 1
            raise MoniteUnavailable("the request's deadline passed before it was sent")
        mode = self._faults.monite_mode(self._loop.time())
        fate = self._unsafe_fate(mode, DELETE_FATES)
        return await self._unsafe(
            "delete", mode, fate, lambda: self._monite.delete(subscription_id), 204
        )

    def _fate(self, mode: str | None) -> str:
        rng = self._faults.rng
        if mode is None or mode == "slow":
            return "ok"
        if mode == "throttle":
            return "throttled"
        if mode == "straggle":
            return rng.choice(("timeout_straggler", "timeout_before", "timeout_never"))
        if mode == "outage":
            return rng.choice(("connect", "error_not_applied", "timeout_never"))
        return rng.choice(REGENERATE_FATES)

    async def regenerate_secret(
        self, subscription_id: str, *, send_by: float | None = None
    ) -> Regenerated:
        loop = self._loop
        monite = self._monite
        sid = subscription_id
        if send_by is not None and self._clock.monotonic() > send_by:
            self.requests[("regenerate", 0)] += 1
            raise MoniteUnavailable("the request's deadline passed before it was sent")
        sub = monite.subscriptions.get(sid)
        if sub is None:
            self.requests[("regenerate", 404)] += 1
            raise MoniteNotFound(f"no subscription {sid}", status=404)
        mode = self._faults.monite_mode(loop.time())
        fate = self._fate(mode)
        rng = self._faults.rng
        timeout = self._timeout
        go, back = self._latency(mode), self._latency(mode)
        fut: asyncio.Future[Regenerated] = loop.create_future()
        if fate != "ok":
            self._faults.count(f"monite.{fate}")
        monite.send(sid)

        def answer(value: str) -> Regenerated:
            return Regenerated(subscription=sub, secret=Secret(value))

        def arrive() -> None:
            if fate == "ok":
                value = monite.apply(sid)
                loop.call_later(back, _deliver, fut, answer(value), None)
                return
            if fate == "dropped" or fate == "error_applied":
                monite.apply(sid)
            else:
                monite.never(sid)
            error: MoniteError
            if fate == "dropped":
                error = MoniteUnavailable(
                    "Monite regenerate_secret: connection reset after sending (simulated)",
                    may_have_applied=True,
                )
            elif fate == "throttled":
                retry = rng.choice((0.0, 1.0, 5.0, 30.0, 120.0))
                error = MoniteUnavailable(
                    "Monite regenerate_secret: 429 (simulated)",
                    status=429,
                    retry_after=retry,
                    may_have_applied=False,
                )
            elif fate in ("error_applied", "error_not_applied"):
                error = MoniteUnavailable(
                    "Monite regenerate_secret: 503 (simulated)", status=503, may_have_applied=True
                )
            else:
                error = MoniteNotFound("Monite regenerate_secret: 404 (simulated)", status=404)
            loop.call_later(back, _deliver, fut, None, error)

        if fate == "connect":
            monite.never(sid)
            loop.call_later(go, _deliver, fut, None, MoniteUnavailable("connection refused"))
        elif fate.startswith("timeout_"):
            timed_out = MoniteUnavailable(
                f"Monite regenerate_secret: no answer within {timeout:g}s (simulated)",
                may_have_applied=True,
            )
            loop.call_later(timeout, _deliver, fut, None, timed_out)
            if fate == "timeout_never":
                loop.call_later(timeout, monite.never, sid)
            elif fate == "timeout_before":
                loop.call_later(rng.uniform(0.0, timeout), monite.apply, sid)
            else:
                # The straggler assumption: applied within claim_ttl of its sending.
                lands = rng.uniform(timeout, self._straggle_for)
                loop.call_later(lands, monite.apply, sid)
        else:
            loop.call_later(go, arrive)
        try:
            result = await fut
        except (MoniteUnavailable, MoniteNotFound) as exc:
            self.requests[("regenerate", exc.status or 0)] += 1
            raise
        self.requests[("regenerate", 200)] += 1
        return result


def fingerprint(value: str | None) -> str:
    """What may be printed of a secret: the first 12 hex chars of its SHA-256."""
    if value is None:
        return "none"
    return Secret(value).fingerprint()


__all__ = [
    "CREATE_FATES",
    "DELETE_FATES",
    "MONITE_MODES",
    "REGENERATE_FATES",
    "VAULT_MODES",
    "Faults",
    "MoniteModel",
    "SimMonite",
    "SimVaultStore",
    "VaultModel",
    "Window",
    "fingerprint",
]
