"""`DeliverySender`: rounds on demand and on a period, retries, counters (see the package)."""

from __future__ import annotations

import functools
import heapq
import itertools
import ssl
import threading
import time
import types
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx

from rotator.sandbox.deliveries._events import (
    MAX_BACKOFF,
    PendingEvent,
    Triple,
    backoff_delay,
    describe_error,
    event_body,
    target_fields,
    triple,
)
from rotator.sandbox.deliveries._results import (
    DeliveryRecord,
    DeliverySnapshot,
    DeliveryStats,
    Outcome,
    RoundResult,
    SubscriptionDeliveries,
    Tally,
)
from rotator.sandbox.monite import MoniteEmulator
from rotator.secret import Secret
from rotator.signature import HEADER, sign

DEFAULT_EVERY = 5.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.5  # seconds before the first retry; doubles for each further one
MAX_RECORDS = 10_000
"""How many event outcomes `snapshot().records` keeps, the newest."""
MAX_PENDING_RETRIES = 10_000
"""How many failed events a started sender keeps scheduled for a retry; beyond, they fail."""
QUEUE_FULL = "retry queue full"


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """The context httpx would build for each client (trust_env=False: certifi's bundle).

    Built once: httpx reads the whole CA bundle for every client, about 20 ms of
    CPU, and the tests make a sender for nearly every case.
    """
    return httpx.create_ssl_context(trust_env=False)


Wait = Callable[[float], bool]
"""Waits up to the given seconds before a `deliver_now()` retry; True: stop, abandon the rest."""


class DeliverySender:
    """Sends signed events for every enabled subscription of `monite` to each one's URL.

    A round makes one event per triple (url, object_type, sorted event_types) and
    sends it to every enabled subscription with that triple, as Monite sends a
    business event through each subscription that asks for it.

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
        max_pending_retries: int = MAX_PENDING_RETRIES,
    ) -> None:
        if every <= 0 or retries < 0 or backoff < 0 or timeout <= 0:
            raise ValueError("every and timeout must be positive; retries and backoff at least 0")
        self.every = every
        self.retries = retries
        self.backoff = backoff
        self._max_pending_retries = max_pending_retries
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
            verify=_ssl_context(),
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
        scheduled: list[tuple[float, int, PendingEvent]] = []  # a heap of (due, order, event)
        order = itertools.count()
        next_round = self._monotonic()
        try:
            while not self._stop.is_set():
                tally = Tally()
                with self._round_lock:
                    if self._closed:
                        return
                    now = self._monotonic()
                    due: list[PendingEvent] = []
                    while scheduled and scheduled[0][0] <= now:  # at most max_pending_retries
                        due.append(heapq.heappop(scheduled)[2])
                    failed = self._attempt(due, tally)
                    if now >= next_round:
                        next_round = now + self.every
                        failed += self._attempt(self._new_events(tally), tally)
                if self._stop.is_set():
                    tally.abandoned += self._abandon(len(failed))
                    return
                retry_at = self._monotonic()
                for event in failed:
                    if len(scheduled) >= self._max_pending_retries:
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
        """One event per triple to every enabled subscription with it, retried up to `retries`.

        Every subscription of a triple gets the event's `id` and `object`, in a
        body naming that subscription and signed with its secret; each delivery
        is retried on its own.

        Waits for a round already in progress, then for this round's retries.
        Raises RuntimeError once stopped.
        """
        with self._round_lock:
            if self._closed:
                raise RuntimeError("the delivery sender is stopped")
            return self._round()

    def _round(self) -> RoundResult:
        """A round with its retries done here, waited through `wait`."""
        tally = Tally()
        pending = self._attempt(self._new_events(tally), tally)
        for retry in range(1, 1 + self.retries):
            if not pending:
                break
            if self._wait(backoff_delay(retry, self.backoff)) or self._stop.is_set():
                break  # stopping: what is left is abandoned, not failed
            pending = self._attempt(pending, tally)
        tally.abandoned += self._abandon(len(pending))
        return tally.result()

    def _new_events(self, tally: Tally) -> list[PendingEvent]:
        """A new round: one event per triple, unsent, for each enabled subscription with it.

        In creation order. The event's kind comes from the triple's first
        subscription (the original, in a swap), its `id` and `object` are shared.
        Counts the round, and in `fanned_out` the events with more than one subscription.
        """
        with self._lock:
            sequence = self._stats.rounds
            self._stats = replace(self._stats, rounds=sequence + 1)
        now = datetime.fromtimestamp(self._clock(), UTC)
        targets = self._monite.delivery_targets()
        shared: dict[Triple, tuple[dict[str, Any], str, str]] = {}  # fields, event id, object id
        members: dict[Triple, int] = {}
        events: list[PendingEvent] = []
        for target in targets:
            key = triple(target)
            if key not in shared:
                shared[key] = (target_fields(target), str(uuid.uuid4()), str(uuid.uuid4()))
            fields, event_id, object_id = shared[key]
            members[key] = members.get(key, 0) + 1
            body = event_body(
                {**fields, "id": target.subscription_id},
                entity_id=self._entity_id,
                sequence=sequence,
                at=now,
                event_id=event_id,
                object_id=object_id,
            )
            events.append(PendingEvent(target.subscription_id, event_id, body))
        fanned_out = sum(1 for count in members.values() if count > 1)
        if fanned_out:
            tally.fanned_out += fanned_out
            with self._lock:
                self._stats = replace(self._stats, fanned_out=self._stats.fanned_out + fanned_out)
        return events

    def _attempt(self, events: Iterable[PendingEvent], tally: Tally) -> list[PendingEvent]:
        """Send each event once and settle what is over; the failed ones with retries left."""
        retry: list[PendingEvent] = []
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

    def _settle(self, event: PendingEvent, outcome: Outcome) -> DeliveryRecord:
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

    def _send(self, event: PendingEvent) -> bool | None:
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
            event.error = describe_error(exc)
            return False
        if 200 <= response.status_code < 300:
            return True
        event.error = f"HTTP {response.status_code}"
        return False
