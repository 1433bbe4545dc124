"""One event: its JSON body as Monite shapes it, its retry schedule, and causes safe to print."""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from rotator.retry import exponential
from rotator.sandbox.monite import DeliveryTarget

API_VERSION = "2024-05-25"
MAX_BACKOFF = 5.0


@dataclass
class PendingEvent:
    subscription_id: str
    event_id: str
    body: bytes
    attempts: int = 0
    fingerprint: str = ""
    url: str = ""
    error: str | None = None


def display_url(url: str) -> str:
    """The URL without user info or query (they may carry credentials), for messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    query = "?…" if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", "")) + query


def backoff_delay(retry: int, backoff: float, cap: float = MAX_BACKOFF) -> float:
    """Seconds before retry number `retry` (1, 2, ...): `backoff`, doubling, at most `cap`.

    The growth is `rotator.retry.exponential`'s, without its jitter: the emulator
    retries on a fixed schedule, as Monite does, so tests can tell when a retry is due.
    """
    return exponential(retry - 1, base=backoff, cap=cap)


def event_body(
    subscription: Mapping[str, Any],
    *,
    entity_id: str,
    sequence: int,
    at: datetime,
    event_id: str | None = None,
    object_id: str | None = None,
) -> bytes:
    """The JSON body of one event for `subscription` (`id`, `object_type`, `event_types`).

    `event_id` and `object_id` default to fresh UUIDs; one event delivered to
    several subscriptions (one triple) passes the same ones to each body.
    """
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
        "object": {"id": object_id or str(uuid.uuid4())},
        "object_type": object_type,
        "webhook_subscription_id": str(subscription["id"]),
    }
    return json.dumps(event, separators=(",", ":")).encode()


Triple = tuple[str, str, tuple[str, ...]]


def triple(target: DeliveryTarget) -> Triple:
    """`(url, object_type, sorted event_types)`: subscriptions sharing it get the same events."""
    return (target.url, target.object_type, tuple(sorted(target.event_types)))


def target_fields(target: DeliveryTarget) -> dict[str, Any]:
    return {
        "id": target.subscription_id,
        "object_type": target.object_type,
        "event_types": list(target.event_types),
    }


def describe_error(exc: Exception) -> str:
    """A short cause with no URL in it (the URL may carry credentials)."""
    if isinstance(exc, httpx.ConnectError):
        return "connection failed"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return "invalid URL"
    return type(exc).__name__
