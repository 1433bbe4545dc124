"""Helpers (no tests) for the consumer kit tests: records as the product writes them, deliveries."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import hvac

from rotator import signature
from rotator.config import VaultSettings
from rotator.model import Record, Regenerated, Subscription
from rotator.sandbox import record_issued
from rotator.secret import Secret
from rotator.vault import VaultStore


def new_secret() -> str:
    """A webhook secret the suite's hygiene scan looks for in all captured output."""
    value = "whsec_" + secrets.token_urlsafe(24)
    record_issued(value)
    return value


async def commit(
    settings: VaultSettings,
    subscription_id: str,
    secret: str,
    *,
    cas: int,
    state: str = "active",
    subscription: Subscription | None = None,
    at: datetime | None = None,
) -> Record:
    """Write a record exactly as a rotation's commit does (the product's store and model).

    `subscription`: what Monite lists (default: a payable one at an example URL);
    `at`: when the secret was rotated (default: now).
    """
    regenerated = (
        _regenerated(subscription_id, secret)
        if subscription is None
        else Regenerated(subscription=subscription, secret=Secret(secret))
    )
    record = Record(subscription_id=subscription_id, version=cas).committed(
        regenerated,
        rotation_id=str(uuid.uuid4()),
        at=datetime.now(UTC) if at is None else at,
        settle_for=timedelta(minutes=2) if state == "settling" else None,
    )
    store = VaultStore(settings)
    try:
        return await store.write(record, cas=cas)
    finally:
        store.close()


def put_record_data(
    address: str, token: str, subscription_id: str, data: dict[str, Any], *, cas: int
) -> int:
    """Write a record's KV v2 `data` as given (a swap's states and fields); its new version.

    For the states a rotator of protocol version 3 writes (docs/swap.md, section 1),
    so the kit is tested against the records' contract, not one writer's code.
    """
    client = hvac.Client(url=address, token=token, timeout=5)
    try:
        answer = client.secrets.kv.v2.create_or_update_secret(
            path=f"monite/webhooks/{subscription_id}", secret=data, cas=cas, mount_point="secret"
        )
    finally:
        client.adapter.close()
    return int(answer["data"]["version"])


def _regenerated(subscription_id: str, secret: str) -> Regenerated:
    subscription = Subscription(
        id=subscription_id,
        url="https://consumer.example.com/webhooks",
        object_type="payable",
        status="enabled",
        event_types=("created",),
    )
    return Regenerated(subscription=subscription, secret=Secret(secret))


def delivery(
    subscription_id: str, secret: str, *, at: float | None = None, event_id: str | None = None
) -> tuple[dict[str, str], bytes]:
    """Headers and raw body of a delivery Monite would send, signed with `secret`.

    `event_id`: the event's `id` (default a new one); a swap's two subscriptions
    deliver the same event, so the same id, each with its own subscription and secret.
    """
    body = json.dumps(
        {
            "id": event_id or str(uuid.uuid4()),
            "action": "payable.created",
            "object_type": "payable",
            "object": {"id": str(uuid.uuid4())},
            "webhook_subscription_id": subscription_id,
        },
        separators=(",", ":"),
    ).encode()
    timestamp = int(time.time() if at is None else at)
    return {signature.HEADER: signature.sign(secret, body, timestamp=timestamp)}, body
