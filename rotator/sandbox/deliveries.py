"""Signed webhook deliveries from the Monite emulator, to each enabled subscription's URL.

A round sends one event per enabled subscription to that subscription's own
`url`, as Monite delivers them: a JSON body shaped like the OpenAPI schema's
`EventResourceForWebhookClient` (`id`, `created_at`, `action`, `api_version`,
`description`, `entity_id`, `object`, `object_type`, `webhook_subscription_id`)
and a `Monite-Signature` header (`rotator.signature`, the one place of the
scheme) keyed with the subscription's secret at the moment of sending. So a
receiver that keeps the secret Vault holds sees exactly what a real one sees
across a rotation: the deliveries signed with the new secret start the
instant Monite answered.

Rounds run on demand (`DeliverySender.deliver_now()`, or `POST
/_sandbox/deliveries` on the emulator the sender is attached to) and every
`every` seconds once `start()`ed. A delivery that fails (connection error,
timeout, an answer other than 2xx) is retried up to `retries` times, after
`backoff`, then twice that, ... (at most `MAX_BACKOFF`); each retry carries the
same event `id` (consumers deduplicate by it), re-signed with the then-current
secret and timestamp, to the then-current URL. On demand, a round waits
through its retries (the injected `wait`) and answers every outcome. Started,
a round sends first attempts only: each failed event is scheduled for its
retry (on the injected `monotonic` clock, at most `MAX_PENDING_RETRIES` of
them) and sent when due, between rounds, so one consumer that rejects its
deliveries holds back no other subscription's. An event whose subscription is
deleted or disabled meanwhile, or still pending when the sender stops, is
abandoned, neither delivered nor failed.

Counters are kept in total and per subscription (`snapshot()`), with a record
of each event's outcome naming the fingerprint (`Secret.fingerprint`) of the
secret that signed its last attempt. No secret is ever kept, logged or
reported; URLs in messages go through `display_url`.
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
import types
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from rotator.sandbox.monite import DeliveryTarget, MoniteEmulator
from rotator.secret import Secret
from rotator.signature import HEADER, sign

API_VERSION = "2024-05-25"
DEFAULT_EVERY = 5.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.5  # seconds before the first retry; doubles for each further one
MAX_BACKOFF = 5.0
MAX_RECORDS = 10_000
"""How many event outcomes `snapshot().records` keeps, the newest."""
MAX_PENDING_RETRIES = 10_000
"""How many failed events a started sender keeps scheduled for a retry; beyond, they fail."""
QUEUE_FULL = "retry queue full"

Outcome = Literal["delivered", "failed"]
Wait = Callable[[float], bool]
"""Waits up to the given seconds before a `deliver_now()` retry; True: stop, abandon the rest."""


@dataclass(frozen=True)
class DeliveryStats:
    """Totals since the sender was made; `attempts == sent + retried`."""

    rounds: int = 0
    sent: int = 0  # events POSTed at least once
    attempts: int = 0  # POSTs, retries included
    delivered: int = 0  # events a 2xx answer accepted
    retried: int = 0  # POSTs after an event's first
    failed: int = 0  # events given up after every attempt (or with the retry queue full)
    abandoned: int = 0  # events dropped unsettled: subscription gone or disabled, sender stopped


@dataclass(frozen=True)
class SubscriptionDeliveries:
    """One subscription's counters; `fingerprint`: of the secret that signed its latest POST."""

    sent: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    fingerprint: str | None = None


@dataclass(frozen=True)
class DeliveryRecord:
    """How one event ended: its last attempt was signed by the secret with `fingerprint`.

    `error` is the last failure's cause (no URL in it): `HTTP 500`,
    `connection failed`, `timed out`, ...; None for a delivered event.
    """

    event_id: str
    subscription_id: str
    outcome: Outcome
    attempts: int
    fingerprint: str
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RoundResult:
    """What one round did: events accepted, given up and abandoned, retries, and each outcome."""

    delivered: int
    failed: int
    retried: int = 0
    abandoned: int = 0  # subscription deleted or disabled meanwhile, or the sender stopping
    last_error: str | None = None
    records: tuple[DeliveryRecord, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "retried": self.retried,
            "abandoned": self.abandoned,
            "last_error": self.last_error,
            "records": [record.to_json() for record in self.records],
        }


@dataclass(frozen=True)
class DeliverySnapshot:
    """A frozen copy of every counter: totals, per subscription id, and the newest outcomes."""

    totals: DeliveryStats
    subscriptions: Mapping[str, SubscriptionDeliveries]
    records: tuple[DeliveryRecord, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "totals": asdict(self.totals),
            "subscriptions": {sid: asdict(c) for sid, c in self.subscriptions.items()},
            "records": [record.to_json() for record in self.records],
        }


@dataclass
class _Event:
    subscription_id: str
    event_id: str
    body: bytes
    attempts: int = 0
    fingerprint: str = ""
    url: str = ""
    error: str | None = None


@dataclass
class _Tally:
    """What a batch of attempts settled, retried and abandoned (a round's, or a loop turn's)."""

    records: list[DeliveryRecord] = field(default_factory=list)
    retried: int = 0
    abandoned: int = 0

    def result(self) -> RoundResult:
        failed = [r for r in self.records if r.outcome == "failed"]
        return RoundResult(
            delivered=len(self.records) - len(failed),
            failed=len(failed),
            retried=self.retried,
            abandoned=self.abandoned,
            last_error=failed[-1].error if failed else None,
            records=tuple(self.records),
        )


def display_url(url: str) -> str:
    """The URL without user info or query (they may carry credentials), for messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    query = "?…" if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", "")) + query


def backoff_delay(retry: int, backoff: float, cap: float = MAX_BACKOFF) -> float:
    """Seconds before retry number `retry` (1, 2, ...): `backoff`, doubling, at most `cap`."""
    return float(min(cap, backoff * 2 ** (retry - 1)))


def event_body(
    subscription: Mapping[str, Any],
    *,
    entity_id: str,
    sequence: int,
    at: datetime,
    event_id: str | None = None,
) -> bytes:
    """The JSON body of one event for `subscription` (`id`, `object_type`, `event_types`)."""
    object_type = str(subscription["object_type"])
    kinds = [str(kind) for kind in subscription.get("event_types") or ()] or ["updated"]
    kind = kinds[sequence % len(kinds)]
    event = {
        "id": event_id or str(uuid.uuid4()),
        "created_at": at.isoformat().replace("+00:00", "Z"),
        "action": f"{object_type}.{kind}",
        "api_version": API_VERSION,
        "description": f"{object_type}_{kind}",
        "entity_id": entity_id,
        "object": {"id": str(uuid.uuid4())},
        "object_type": object_type,
        "webhook_subscription_id": str(subscription["id"]),
    }
    return json.dumps(event, separators=(",", ":")).encode()


def _target_fields(target: DeliveryTarget) -> dict[str, Any]:
    return {
        "id": target.subscription_id,
        "object_type": target.object_type,
        "event_types": list(target.event_types),
    }


class DeliverySender:
    """Sends signed events for every enabled subscription of `monite` to each one's URL.

    Made, it is attached to `monite` (its `/_sandbox/deliveries` routes drive
    it) until `stop()`. `wait` waits before each retry of `deliver_now()`
    (default: sleeps, cut short by `stop()`); `clock` gives the unix time of
    each signature; `monotonic` times the started sender's rounds and retries.
    """

    def __init__(
        self,
        monite: MoniteEmulator,
        *,
        every: float = DEFAULT_EVERY,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        timeout: float = 5.0,
        report: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
        wait: Wait | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if every <= 0 or retries < 0 or backoff < 0 or timeout <= 0:
            raise ValueError("every and timeout must be positive; retries and backoff at least 0")
        self.every = every
        self.retries = retries
        self.backoff = backoff
        self._monite = monite
        self._report = report
        self._clock = clock
        self._monotonic = monotonic
        self._stop = threading.Event()
        self._wait: Wait = wait if wait is not None else self._stop.wait
        self._entity_id = str(uuid.uuid4())
        self._lock = threading.Lock()  # the counters
        self._round_lock = threading.Lock()  # one round at a time
        self._closed = False
        self._stats = DeliveryStats()
        self._per_subscription: dict[str, SubscriptionDeliveries] = {}
        self._records: deque[DeliveryRecord] = deque(maxlen=MAX_RECORDS)
        self._thread: threading.Thread | None = None
        self._http = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment between the sandbox and the URLs
            transport=transport,
            headers={"User-Agent": "rotator-sandbox-monite-webhooks"},
        )
        monite.attach_deliveries(self)

    def __enter__(self) -> DeliverySender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- counters ----------------------------------------------------------------

    @property
    def stats(self) -> DeliveryStats:
        """The totals (`snapshot().totals`)."""
        with self._lock:
            return self._stats

    def snapshot(self) -> DeliverySnapshot:
        """Every counter, frozen: totals, per subscription id, the newest event outcomes."""
        with self._lock:
            return DeliverySnapshot(
                totals=self._stats,
                subscriptions=types.MappingProxyType(dict(self._per_subscription)),
                records=tuple(self._records),
            )

    def _count(self, subscription_id: str, **changes: int | str) -> None:
        """Add the int `changes` to the subscription's counters and the totals; set the rest."""
        with self._lock:
            counts = self._per_subscription.get(subscription_id, SubscriptionDeliveries())
            fields: dict[str, Any] = {}
            totals: dict[str, Any] = {}
            for name, value in changes.items():
                if isinstance(value, int):
                    fields[name] = getattr(counts, name) + value
                    totals[name] = getattr(self._stats, name) + value
                else:
                    fields[name] = value
            self._per_subscription[subscription_id] = replace(counts, **fields)
            if "sent" in totals or "retried" in totals:
                totals["attempts"] = self._stats.attempts + 1
            self._stats = replace(self._stats, **totals)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Send a round now, then one every `every` seconds, until `stop()`."""
        if self._thread is not None or self._closed:
            return
        self._thread = threading.Thread(target=self._loop, name="sandbox-deliveries", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sending (a round in progress ends after its current POST); detach and close.

        Events still waiting for a retry are abandoned (`DeliveryStats.abandoned`), not failed.
        """
        self._stop.set()
        self._monite.detach_deliveries(self)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._round_lock:
            self._closed = True
            self._http.close()

    def _loop(self) -> None:
        """Rounds every `every` seconds; between them, each scheduled retry once it is due."""
        scheduled: list[tuple[float, int, _Event]] = []  # a heap of (due, order, event)
        order = itertools.count()
        next_round = self._monotonic()
        try:
            while not self._stop.is_set():
                tally = _Tally()
                with self._round_lock:
                    if self._closed:
                        return
                    now = self._monotonic()
                    due: list[_Event] = []
                    while scheduled and scheduled[0][0] <= now:  # at most MAX_PENDING_RETRIES
                        due.append(heapq.heappop(scheduled)[2])
                    failed = self._attempt(due, tally)
                    if now >= next_round:
                        next_round = now + self.every
                        failed += self._attempt(self._new_events(), tally)
                if self._stop.is_set():
                    tally.abandoned += self._abandon(len(failed))
                    return
                retry_at = self._monotonic()
                for event in failed:
                    if len(scheduled) >= MAX_PENDING_RETRIES:
                        event.error = QUEUE_FULL
                        tally.records.append(self._settle(event, "failed"))
                        continue
                    delay = backoff_delay(event.attempts, self.backoff)
                    heapq.heappush(scheduled, (retry_at + delay, next(order), event))
                self._report_failures(tally.result())
                wake = min(next_round, scheduled[0][0]) if scheduled else next_round
                self._stop.wait(min(max(0.0, wake - self._monotonic()), self.every + MAX_BACKOFF))
        finally:
            self._abandon(len(scheduled))  # stopping: pending retries are dropped, not failed

    def _report_failures(self, result: RoundResult) -> None:
        if result.failed and self._report is not None:
            self._report(
                f"deliveries: {result.failed} of {result.failed + result.delivered} events "
                f"not accepted after at most {1 + self.retries} attempts "
                f"(last: {result.last_error})"
            )

    # -- rounds ------------------------------------------------------------------

    def deliver_now(self) -> RoundResult:
        """One event per enabled subscription to its URL, each retried up to `retries` times.

        Waits for a round already in progress, then for this round's retries.
        Raises RuntimeError once stopped.
        """
        with self._round_lock:
            if self._closed:
                raise RuntimeError("the delivery sender is stopped")
            return self._round()

    def _round(self) -> RoundResult:
        """A round with its retries done here, waited through `wait`."""
        tally = _Tally()
        pending = self._attempt(self._new_events(), tally)
        for retry in range(1, 1 + self.retries):
            if not pending:
                break
            if self._wait(backoff_delay(retry, self.backoff)) or self._stop.is_set():
                break  # stopping: what is left is abandoned, not failed
            pending = self._attempt(pending, tally)
        tally.abandoned += self._abandon(len(pending))
        return tally.result()

    def _new_events(self) -> list[_Event]:
        """A new round: one unsent event per enabled subscription; counts the round."""
        with self._lock:
            sequence = self._stats.rounds
            self._stats = replace(self._stats, rounds=sequence + 1)
        now = datetime.fromtimestamp(self._clock(), UTC)
        events: list[_Event] = []
        for target in self._monite.delivery_targets():
            event_id = str(uuid.uuid4())
            body = event_body(
                _target_fields(target),
                entity_id=self._entity_id,
                sequence=sequence,
                at=now,
                event_id=event_id,
            )
            events.append(_Event(target.subscription_id, event_id, body))
        return events

    def _attempt(self, events: Iterable[_Event], tally: _Tally) -> list[_Event]:
        """Send each event once and settle what is over; the failed ones with retries left."""
        retry: list[_Event] = []
        for event in events:
            outcome = self._send(event)
            if outcome is None:
                tally.abandoned += self._abandon(1)
                continue
            tally.retried += 1 if event.attempts > 1 else 0
            if outcome:
                tally.records.append(self._settle(event, "delivered"))
            elif event.attempts > self.retries:
                tally.records.append(self._settle(event, "failed"))
            else:
                retry.append(event)
        return retry

    def _abandon(self, count: int) -> int:
        """Count `count` events dropped unsettled; returns `count`."""
        if count:
            with self._lock:
                self._stats = replace(self._stats, abandoned=self._stats.abandoned + count)
        return count

    def _settle(self, event: _Event, outcome: Outcome) -> DeliveryRecord:
        record = DeliveryRecord(
            event_id=event.event_id,
            subscription_id=event.subscription_id,
            outcome=outcome,
            attempts=event.attempts,
            fingerprint=event.fingerprint,
            error=None if outcome == "delivered" else event.error,
        )
        self._count(event.subscription_id, **{outcome: 1})
        with self._lock:
            self._records.append(record)
        return record

    def _send(self, event: _Event) -> bool | None:
        """True: accepted. False: failed (event.error says why). None: abandon the event."""
        if self._stop.is_set():
            return None
        target = self._monite.delivery_target(event.subscription_id)
        if target is None or not target.enabled:
            return None  # deleted or disabled since: Monite would not deliver it
        header = sign(target.secret, event.body, timestamp=int(self._clock()))
        event.attempts += 1
        event.url = target.url
        event.fingerprint = Secret(target.secret).fingerprint()
        self._count(
            event.subscription_id,
            **{"sent" if event.attempts == 1 else "retried": 1},
            fingerprint=event.fingerprint,
        )
        try:
            response = self._http.post(
                target.url,
                content=event.body,
                headers={"Content-Type": "application/json", HEADER: header},
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            event.error = _describe(exc)
            return False
        if 200 <= response.status_code < 300:
            return True
        event.error = f"HTTP {response.status_code}"
        return False


def _describe(exc: Exception) -> str:
    """A short cause with no URL in it (the URL may carry credentials)."""
    if isinstance(exc, httpx.ConnectError):
        return "connection failed"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return "invalid URL"
    return type(exc).__name__
