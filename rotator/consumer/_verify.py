"""Verifying one delivery: the checks, their refusals and the answer to give.

Owns `Verifier` (the checks in the order the package docstring gives, and the
re-read on a failed one, limited by a token bucket per subscription),
`Rejected` with its `RejectReason`, `VerifiedDelivery`, reading the signature
header (`signature_header`, `header_value`, from a mapping, a WSGI environ or
raw ASGI header pairs) and `verify_request`, which turns a verification into
the HTTP status and JSON body to answer.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, cast

from rotator import signature
from rotator.consumer._sources import (
    SecretRecord,
    SecretSource,
    SecretSourceError,
    valid_subscription_id,
)

RejectReason = Literal[
    "malformed", "expired", "mismatch", "unknown_subscription", "no_active_secret"
]

SUBSCRIPTION_FIELD = "webhook_subscription_id"
"""The payload field that names the subscription, so the secret to verify with."""

DEFAULT_REFRESH_INTERVAL = 1.0
"""A subscription's re-read allowance grows by one every this many seconds."""

DEFAULT_REFRESH_BURST = 3
"""Cache-bypassing re-reads a subscription may make in a row before the refill rate holds it."""

Headers: TypeAlias = Mapping[str, Any] | Iterable[tuple[bytes, bytes]]
"""Request headers as the kit takes them: any mapping (a dict, `http.client.HTTPMessage`,
Starlette's or Werkzeug's headers), a WSGI environ, or raw ASGI `(name, value)` byte pairs."""

MAX_BODY_BYTES = 1024 * 1024
"""A larger delivery is refused unread: Monite's events are a few KiB."""


class Rejected(Exception):
    """The delivery is refused. `reason` says why; the message never holds a secret or body.

    `subscription_id` is set when the payload named one (for counters and logs).
    """

    def __init__(
        self, reason: RejectReason, message: str, *, subscription_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.reason: RejectReason = reason
        self.subscription_id = subscription_id

    def __repr__(self) -> str:
        return f"Rejected({self.reason!r}, {str(self)!r})"


@dataclass(frozen=True)
class VerifiedDelivery:
    """A delivery whose signature matched: its event id, subscription id, timestamp and payload."""

    event_id: str | None
    subscription_id: str
    timestamp: int
    payload: dict[str, Any] = field(repr=False)


class Verifier:
    """Verifies deliveries against a SecretSource; thread-safe. See the package docstring."""

    def __init__(
        self,
        secrets: SecretSource,
        *,
        tolerance: float = signature.DEFAULT_TOLERANCE,
        clock: Callable[[], float] = time.time,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        refresh_burst: int = DEFAULT_REFRESH_BURST,
        monotonic: Callable[[], float] = time.monotonic,
        max_body: int = MAX_BODY_BYTES,
        reread: bool = True,
    ) -> None:
        """`clock` is unix time (for the timestamp tolerance); `monotonic` times re-reads.

        Re-reads are a token bucket per subscription: `refresh_burst` of them in a
        row, then one more per `refresh_interval` seconds (0: unlimited).
        `reread=False` never bypasses the cache (a consumer told of rotations by hooks
        or a timer only; also how tests show that those alone suffice).
        """
        # A NaN here would pass every timestamp, then fail every delivery with a 500.
        tolerance = signature.check_tolerance(tolerance)
        if not (math.isfinite(refresh_interval) and refresh_interval >= 0):
            raise ValueError(
                f"refresh_interval must be a finite number of seconds, at least 0 "
                f"(got {refresh_interval!r}); give e.g. {DEFAULT_REFRESH_INTERVAL:g} "
                "(0 = unlimited)"
            )
        if refresh_burst < 1:
            raise ValueError("refresh_burst must be at least 1")
        self.secrets = secrets
        self.tolerance = tolerance
        self._clock = clock
        self._monotonic = monotonic
        self._refresh_interval = refresh_interval
        self._refresh_burst = refresh_burst
        self._max_body = max_body
        self._reread = reread
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # id: (tokens, when counted)
        self.refreshes = 0
        """Cache-bypassing re-reads made after a failed verification."""
        self.refreshes_refused = 0
        """Re-reads refused because the subscription's bucket was empty (rejected as it stood)."""

    def __repr__(self) -> str:
        return f"Verifier({self.secrets!r}, tolerance={self.tolerance:g})"

    def verify(self, headers_or_signature: Headers | str | None, body: bytes) -> VerifiedDelivery:
        """Verify one delivery: the request's headers (or the header's value) and its raw body.

        Raises Rejected with a reason, or SecretSourceError when the source is down.
        """
        header = (
            headers_or_signature
            if headers_or_signature is None or isinstance(headers_or_signature, str)
            else signature_header(headers_or_signature)
        )
        if header is None:
            raise Rejected("malformed", f"{signature.HEADER} header missing")
        try:
            parsed = signature.parse(header)
        except signature.SignatureError as exc:
            raise Rejected("malformed", str(exc)) from None
        try:
            signature.check_timestamp(parsed.timestamp, now=self._clock(), tolerance=self.tolerance)
        except signature.SignatureError as exc:
            raise Rejected(exc.reason, str(exc)) from None
        payload = self._payload(body)
        subscription_id = payload[SUBSCRIPTION_FIELD]
        event_id = payload.get("id")
        delivery = VerifiedDelivery(
            event_id if isinstance(event_id, str) else None,
            subscription_id,
            parsed.timestamp,
            payload,
        )

        lookup = self.secrets.get(subscription_id)
        failure = self._check(lookup.record, parsed, body, subscription_id)
        if failure is None:
            return delivery
        # A record read just now cannot be more outdated than a second read would be.
        if not (self._reread and lookup.cached) or not self._may_refresh(subscription_id):
            raise failure
        record = self.secrets.refresh(subscription_id)
        failure = self._check(record, parsed, body, subscription_id)
        if failure is None:
            return delivery
        raise failure

    def _payload(self, body: bytes) -> dict[str, Any]:
        if len(body) > self._max_body:
            raise Rejected("malformed", f"body longer than {self._max_body} bytes")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            raise Rejected("malformed", "body is not JSON") from None
        if not isinstance(payload, dict):
            raise Rejected("malformed", "body is not a JSON object")
        subscription_id = payload.get(SUBSCRIPTION_FIELD)
        if not valid_subscription_id(subscription_id):
            raise Rejected("malformed", f"body has no valid {SUBSCRIPTION_FIELD}")
        return payload

    def _check(
        self,
        record: SecretRecord | None,
        parsed: signature.ParsedSignature,
        body: bytes,
        subscription_id: str,
    ) -> Rejected | None:
        """None when the record's secret verifies the delivery, else the Rejected to raise.

        The timestamp was checked already, before any read: only the signatures are here.
        """
        if record is None:
            return Rejected(
                "unknown_subscription",
                f"no record for subscription {subscription_id}",
                subscription_id=subscription_id,
            )
        # An empty secret (a source of one's own may hand one) verifies nothing: refused, not a 500.
        if record.secret is None or not record.secret:
            return Rejected(
                "no_active_secret",
                f"the record of subscription {subscription_id} holds no usable secret "
                f"(state {record.state}, version {record.version})",
                subscription_id=subscription_id,
            )
        try:
            signature.check_signatures(parsed, body, record.secret.reveal())
        except signature.SignatureError as exc:
            return Rejected(exc.reason, str(exc), subscription_id=subscription_id)
        return None

    def _may_refresh(self, subscription_id: str) -> bool:
        """Whether a cache-bypassing re-read is allowed now (and, if so, take its token).

        A token bucket per subscription: full (`refresh_burst`) when first used,
        refilled by one token per `refresh_interval` seconds up to full.
        """
        if self._refresh_interval == 0:
            with self._lock:
                self.refreshes += 1
            return True
        now = self._monotonic()
        burst = float(self._refresh_burst)
        with self._lock:
            tokens, then = self._buckets.get(subscription_id, (burst, now))
            tokens = min(burst, tokens + max(0.0, now - then) / self._refresh_interval)
            if tokens < 1.0:
                self._buckets[subscription_id] = (tokens, now)
                self.refreshes_refused += 1
                return False
            self._buckets[subscription_id] = (tokens - 1.0, now)
            if len(self._buckets) > 10_000:  # forged ids must not grow this forever
                refilled = now - burst * self._refresh_interval  # a full bucket is no bucket
                for key in [k for k, (_, t) in self._buckets.items() if t <= refilled]:
                    del self._buckets[key]
            self.refreshes += 1
            return True


def signature_header(headers: Headers) -> str | None:
    """The `Monite-Signature` value from request headers, matched case-insensitively.

    Accepts a plain dict, `http.client.HTTPMessage`, Starlette's or Werkzeug's
    headers, a WSGI environ (`HTTP_MONITE_SIGNATURE`) and raw ASGI header
    pairs. A header sent several times gives all its values, comma-joined (as
    a WSGI server joins them), so every `v1` among them is tried.
    """
    return header_value(headers, signature.HEADER)


def header_value(headers: Headers, name: str) -> str | None:
    """A header's value, case-insensitively; None when absent.

    `headers`: any mapping (a value may be a list of the header's values), a WSGI
    environ (`HTTP_...` key), or raw ASGI `(name, value)` byte pairs. A header
    present several times gives its values joined with ", ".
    """
    wanted = name.lower()
    for method in ("get_all", "getlist"):  # HTTPMessage; Starlette, Werkzeug
        get_all = getattr(headers, method, None)
        if callable(get_all):
            try:
                found = get_all(name)
            except (TypeError, KeyError):
                continue
            if found:
                return ", ".join(str(item) for item in found)
    values: list[str] = []
    items = getattr(headers, "items", None)
    if not callable(items):  # raw ASGI pairs
        for key, item in cast("Iterable[tuple[bytes, bytes]]", headers):
            if bytes(key).decode("latin-1").lower() == wanted:
                values.append(bytes(item).decode("latin-1"))
        return ", ".join(values) if values else None
    environ_key = "HTTP_" + name.upper().replace("-", "_")
    for key, item in items():
        if isinstance(key, str) and (key.lower() == wanted or key == environ_key):
            if isinstance(item, list | tuple):
                values.extend(str(part) for part in item)
            elif isinstance(item, bytes):
                values.append(item.decode("latin-1"))
            else:
                values.append(str(item))
    return ", ".join(values) if values else None


STATUS_BY_REASON: dict[RejectReason, int] = {
    "malformed": 400,
    "expired": 401,
    "mismatch": 401,
    "unknown_subscription": 401,
    "no_active_secret": 401,
}


def verify_request(verifier: Verifier, headers: Headers, body: bytes) -> tuple[int, dict[str, Any]]:
    """Verify a request and say what to answer: (HTTP status, a JSON-able body).

    Framework-agnostic: pass the request's headers (any case-insensitive
    mapping, a WSGI environ, or an ASGI scope's raw `headers` pairs) and its
    raw body. 200 with the event and
    subscription ids when verified; 400 (malformed) or 401 (expired,
    mismatch, unknown_subscription, no_active_secret) with `error` the
    reason; 503 `unavailable` when the secret source could not be read, so
    Monite delivers again later. The body never holds a secret.
    """
    try:
        delivery = verifier.verify(headers, body)
    except Rejected as exc:
        answer: dict[str, Any] = {"error": exc.reason}
        if exc.subscription_id is not None:
            answer["subscription_id"] = exc.subscription_id
        return STATUS_BY_REASON[exc.reason], answer
    except SecretSourceError:
        return 503, {"error": "unavailable"}
    return 200, {
        "status": "verified",
        "event_id": delivery.event_id,
        "subscription_id": delivery.subscription_id,
    }
