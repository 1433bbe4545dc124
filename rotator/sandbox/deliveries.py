"""Signed webhook deliveries from the Monite emulator (`rotator sandbox --deliver-to URL`).

Every `every` seconds, one event per enabled subscription is POSTed to the
URL, as Monite delivers them: a JSON body shaped like the OpenAPI schema's
`EventResourceForWebhookClient` (`id`, `created_at`, `action`, `api_version`,
`description`, `entity_id`, `object`, `object_type`, `webhook_subscription_id`)
and a `Monite-Signature` header (`rotator.signature`) keyed with the
subscription's secret at the moment of sending. So a receiver that keeps the
secret Vault holds sees exactly what a real one sees across a rotation: the
deliveries signed with the new secret start the instant Monite answered.

A delivery that fails (connection error, timeout, an answer other than 2xx)
is retried a few times with backoff, with the same event `id` (consumers
deduplicate by it), re-signed with the then-current secret and timestamp.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from rotator.sandbox.monite import MoniteEmulator
from rotator.signature import HEADER, sign

API_VERSION = "2024-05-25"
DEFAULT_EVERY = 5.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.5  # seconds before the first retry; doubles for each further one
MAX_BACKOFF = 5.0


@dataclass(frozen=True)
class DeliveryStats:
    """Counters since the sender started."""

    rounds: int = 0
    attempts: int = 0  # POSTs sent (or tried), retries included
    delivered: int = 0  # events a 2xx answer accepted
    retried: int = 0  # attempts after an event's first
    failed: int = 0  # events given up after every attempt


@dataclass(frozen=True)
class RoundResult:
    """What one round did: events accepted, events given up, and the last failure's cause."""

    delivered: int
    failed: int
    last_error: str | None = None


@dataclass
class _Event:
    subscription_id: str
    body: bytes
    error: str | None = field(default=None)


def display_url(url: str) -> str:
    """The URL without user info or query (they may carry credentials), for messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    query = "?…" if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", "")) + query


def event_body(
    subscription: dict[str, Any], *, entity_id: str, sequence: int, at: datetime
) -> bytes:
    """The JSON body of one event for `subscription` (as the emulator lists it)."""
    object_type = str(subscription["object_type"])
    kinds = [str(kind) for kind in subscription.get("event_types") or ()] or ["updated"]
    kind = kinds[sequence % len(kinds)]
    event = {
        "id": str(uuid.uuid4()),
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


class DeliverySender:
    """POSTs signed events for every enabled subscription of `monite` to `url`, in a thread."""

    def __init__(
        self,
        monite: MoniteEmulator,
        url: str,
        *,
        every: float = DEFAULT_EVERY,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        timeout: float = 5.0,
        report: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if every <= 0 or retries < 0 or backoff < 0 or timeout <= 0:
            raise ValueError("every and timeout must be positive; retries and backoff at least 0")
        self.url = url
        self.every = every
        self.retries = retries
        self.backoff = backoff
        self._monite = monite
        self._report = report
        self._clock = clock
        self._entity_id = str(uuid.uuid4())
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._stats = DeliveryStats()
        self._thread: threading.Thread | None = None
        self._http = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment between the sandbox and the URL
            transport=transport,
            headers={"User-Agent": "rotator-sandbox-monite-webhooks"},
        )

    @property
    def stats(self) -> DeliveryStats:
        with self._lock:
            return self._stats

    def start(self) -> None:
        """Send a round now, then one every `every` seconds, until `stop()`."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="sandbox-deliveries", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sending (a round in progress ends after its current POST) and close the client."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._http.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            result = self.run_round()
            if result.failed and self._report is not None:
                self._report(
                    f"deliveries to {display_url(self.url)}: {result.failed} of "
                    f"{result.failed + result.delivered} events not accepted after "
                    f"{1 + self.retries} attempts (last: {result.last_error})"
                )
            self._stop.wait(self.every)

    def run_round(self) -> RoundResult:
        """One event per enabled subscription, each retried up to `retries` times."""
        with self._lock:
            sequence = self._stats.rounds
            self._stats = replace(self._stats, rounds=sequence + 1)
        now = datetime.fromtimestamp(self._clock(), UTC)
        pending: list[_Event] = []
        for subscription_id in self._monite.subscription_ids():
            subscription = self._subscription(subscription_id)
            if subscription is None or subscription.get("status") != "enabled":
                continue
            body = event_body(subscription, entity_id=self._entity_id, sequence=sequence, at=now)
            pending.append(_Event(subscription_id, body))
        delivered = 0
        stopping = False
        for attempt in range(1 + self.retries):
            pause = min(MAX_BACKOFF, self.backoff * 2 ** (attempt - 1)) if attempt else 0.0
            if self._stop.wait(pause):
                stopping = True  # what is left is abandoned, not failed
                break
            still: list[_Event] = []
            for event in pending:
                outcome = self._send(event, retry=attempt > 0)
                if outcome is True:
                    delivered += 1
                elif outcome is False:
                    still.append(event)
            pending = still
            if not pending:
                break
        failed = [] if stopping else pending
        with self._lock:
            self._stats = replace(
                self._stats,
                delivered=self._stats.delivered + delivered,
                failed=self._stats.failed + len(failed),
            )
        last_error = failed[-1].error if failed else None
        return RoundResult(delivered=delivered, failed=len(failed), last_error=last_error)

    def _subscription(self, subscription_id: str) -> dict[str, Any] | None:
        try:
            return self._monite.subscription(subscription_id)
        except KeyError:  # deleted since it was listed
            return None

    def _send(self, event: _Event, *, retry: bool) -> bool | None:
        """True: accepted. False: failed (event.error says why). None: the subscription is gone."""
        try:
            secret = self._monite.current_secret(event.subscription_id)
        except KeyError:
            return None
        header = sign(secret, event.body, timestamp=int(self._clock()))
        with self._lock:
            self._stats = replace(
                self._stats,
                attempts=self._stats.attempts + 1,
                retried=self._stats.retried + (1 if retry else 0),
            )
        try:
            response = self._http.post(
                self.url,
                content=event.body,
                headers={"Content-Type": "application/json", HEADER: header},
            )
        except httpx.HTTPError as exc:
            event.error = _describe(exc)
            return False
        if 200 <= response.status_code < 300:
            return True
        event.error = f"HTTP {response.status_code}"
        return False


def _describe(exc: httpx.HTTPError) -> str:
    """A short cause with no URL in it (the URL may carry credentials)."""
    if isinstance(exc, httpx.ConnectError):
        return "connection failed"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return type(exc).__name__
