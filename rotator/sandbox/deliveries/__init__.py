"""Signed webhook deliveries from the Monite emulator, to each enabled subscription's URL.

A round makes one event per triple (`url`, `object_type`, sorted
`event_types`) and POSTs it to that URL once for every enabled subscription
with the triple, as Monite sends a business event through every subscription
that asks for it: the same `id` and `object` each time, the body naming that
subscription's `webhook_subscription_id`. A swap's original and successor
share the triple, so during the overlap a consumer sees each event twice and
deduplicates by `id` (`fanned_out` counts the events sent to more than one
subscription). Each delivery is a JSON body shaped like the OpenAPI schema's
`EventResourceForWebhookClient` (`id`, `created_at`, `action`, `api_version`,
`description`, `entity_id`, `object`, `object_type`, `webhook_subscription_id`)
and a `Monite-Signature` header (`rotator.signature`, the one place of the
scheme) keyed with its subscription's secret at the moment of sending. So a
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

from rotator.sandbox.deliveries._events import (
    API_VERSION,
    MAX_BACKOFF,
    backoff_delay,
    display_url,
    event_body,
)
from rotator.sandbox.deliveries._results import (
    DeliveryRecord,
    DeliverySnapshot,
    DeliveryStats,
    RoundResult,
    SubscriptionDeliveries,
)
from rotator.sandbox.deliveries._sender import (
    DEFAULT_BACKOFF,
    DEFAULT_EVERY,
    DEFAULT_RETRIES,
    MAX_PENDING_RETRIES,
    MAX_RECORDS,
    QUEUE_FULL,
    DeliverySender,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_BACKOFF",
    "DEFAULT_EVERY",
    "DEFAULT_RETRIES",
    "MAX_BACKOFF",
    "MAX_PENDING_RETRIES",
    "MAX_RECORDS",
    "QUEUE_FULL",
    "DeliveryRecord",
    "DeliverySender",
    "DeliverySnapshot",
    "DeliveryStats",
    "RoundResult",
    "SubscriptionDeliveries",
    "backoff_delay",
    "display_url",
    "event_body",
]
