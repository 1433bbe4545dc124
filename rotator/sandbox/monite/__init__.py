"""An emulator of the Monite partner API (webhook subscriptions and auth) on loopback.

This package's face: import from `rotator.sandbox.monite`, not its modules.
It owns the behaviour of Monite as the official OpenAPI schema describes it
(`tests/schema/monite-openapi.json`), one module a concern:

- `emulator`: `MoniteEmulator`, its lifecycle, counters and request handlers
- `routing`: which operation a method and path name
- `store`: the state every layer shares; subscriptions and their secrets
- `auth`: partner clients, client-credentials tokens, revocation, Bearer checks
- `pagination`: listing with filters, sort order and opaque cursor tokens
- `faults`: the fault knobs (`MoniteFaults`) and held regenerations
- `fault_injection`: regenerate_secret, create, delete and where the fault knobs act
- `validation`: FastAPI-shaped 422s for queries, headers and bodies
- `responses`: error bodies, response headers, the gateway's rate limit

From Monite's API concept pages it also owns the 400 `missing_api_version`
answer to a request without `x-monite-version`, and the `x-monite-version`
and `x-request-id` headers on every response. On top of that it owns the
faults the rotator must survive, and test-only routes outside `/v1`: one
reads a subscription's current secret, `/_sandbox/deliveries` drives the
signed webhook deliveries (`rotator.sandbox.deliveries`) of an attached sender.

Every secret, access token and client secret it hands out is passed to
`record_issued`, so the suite can prove none of them reaches a log.
"""

from __future__ import annotations

from rotator.sandbox.monite.emulator import Deliveries, MoniteEmulator
from rotator.sandbox.monite.faults import MoniteFaults
from rotator.sandbox.monite.responses import (
    DEFAULT_API_VERSION,
    MISSING_API_VERSION,
    MISSING_API_VERSION_MESSAGE,
)
from rotator.sandbox.monite.store import DeliveryTarget
from rotator.sandbox.monite.validation import (
    GRANT_TYPES,
    MAX_URL_LENGTH,
    OBJECT_TYPES,
    ORDERS,
    SORT_FIELDS,
)

__all__ = [
    "DEFAULT_API_VERSION",
    "GRANT_TYPES",
    "MAX_URL_LENGTH",
    "MISSING_API_VERSION",
    "MISSING_API_VERSION_MESSAGE",
    "OBJECT_TYPES",
    "ORDERS",
    "SORT_FIELDS",
    "Deliveries",
    "DeliveryTarget",
    "MoniteEmulator",
    "MoniteFaults",
]
