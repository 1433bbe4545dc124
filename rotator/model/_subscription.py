"""Monite's side: a webhook subscription as listed, what regenerate and create return, the triple.

Pure: no I/O library (an import-linter contract checks the whole `rotator.model`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rotator.secret import Secret

# What a swap's successor copies and an orphan is recognised by: url, object
# type and the event types in sorted order.
Triple = tuple[str | None, str | None, tuple[str, ...]]


def triple(url: str | None, object_type: str | None, event_types: tuple[str, ...]) -> Triple:
    """The triple of these fields: event types sorted, so order never tells two apart."""
    return (url, object_type, tuple(sorted(event_types)))


# Monite's WebhookObjectType enum (OpenAPI 2024-05-25, tests/schema/monite-openapi.json).
# A copy, not a lookup: nothing may read test data at run time.
MONITE_OBJECT_TYPES: tuple[str, ...] = (
    "account",
    "accounting_connection",
    "approval",
    "approval_request",
    "approval_policy",
    "approval_policy_process",
    "batch_payment",
    "comment",
    "counterpart",
    "counterpart_address",
    "counterpart_bank_account",
    "counterpart_contact_person",
    "counterpart_partner_metadata",
    "counterpart_tax_id",
    "entity",
    "entity_bank_account",
    "entity_settings",
    "entity_user",
    "export",
    "overdue_reminder",
    "partner_settings",
    "payable",
    "payables_credit_note",
    "payables_purchase_order",
    "payable.line_item",
    "payment",
    "payment_intent",
    "payment_link",
    "payment_reminder",
    "product",
    "project",
    "receivable",
    "recurrence",
    "role",
    "tag",
    "todo_task",
    "workflow",
    "workflow_pipeline",
    "ocr_task",
    "delivery_note",
    "receipt",
    "transaction",
)


@dataclass(frozen=True, slots=True)
class Subscription:
    """A Monite webhook subscription as listed (Monite never lists the secret).

    `object_type` and `status` are kept as strings so an enum value Monite adds
    tomorrow does not break today's rotator; `extra` keeps unknown fields.
    """

    id: str
    url: str
    object_type: str
    status: str
    event_types: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def enabled(self) -> bool:
        return self.status == "enabled"

    @property
    def disabled(self) -> bool:
        return self.status == "disabled"

    @property
    def triple(self) -> Triple:
        return triple(self.url, self.object_type, self.event_types)

    @property
    def status_known(self) -> bool:
        """False for a status Monite's schema does not list (neither enabled nor disabled)."""
        return self.enabled or self.disabled


@dataclass(frozen=True, slots=True)
class Regenerated:
    """What `regenerate_secret` returned: the subscription and its only copy of the new secret."""

    subscription: Subscription
    secret: Secret


@dataclass(frozen=True, slots=True)
class Created:
    """What `create_subscription` returned: the new subscription and its secret's only copy.

    Monite shows a new subscription's secret in the create answer only; no
    later listing or get repeats it. The repr shows the secret as `<secret>`.
    """

    subscription: Subscription
    secret: Secret
