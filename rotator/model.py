"""Plain data shared by every layer: secrets, subscriptions, Vault records.

Pure: no I/O library is imported here (an import-linter contract checks it).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

RecordState = Literal["active", "rotating"]

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


class Secret:
    """A secret value whose repr and str never show it.

    `reveal()` is the only way to the value, so every place that handles the
    plaintext is easy to find. Equality is constant-time.
    """

    __slots__ = ("__weakref__", "_value")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret takes a str")
        self._value = value
        if value:
            _remember(self, value)

    def reveal(self) -> str:
        """The plaintext. Only for the wire and the Vault record, never for logs."""
        return self._value

    def fingerprint(self) -> str:
        """First 12 hex chars of SHA-256: lets people compare secrets without seeing them."""
        return hashlib.sha256(self._value.encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "<secret>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        # Pickling would write the plaintext somewhere we do not control.
        raise TypeError("a Secret cannot be pickled")


# How many live Secret objects hold each value, so the log redactor can
# recognise a secret's text anywhere, even where it was not passed as a Secret.
# Counted, not one entry per value: two Secrets with the same value (a config
# reload, a record read back) must not make the first one forgotten when the
# second dies. A value is dropped when its last Secret is garbage.
_LIVE_SECRETS: dict[str, int] = {}
_live_lock = threading.Lock()


def _remember(secret: Secret, value: str) -> None:
    with _live_lock:
        _LIVE_SECRETS[value] = _LIVE_SECRETS.get(value, 0) + 1
    weakref.finalize(secret, _forget, value)


def _forget(value: str) -> None:
    with _live_lock:
        left = _LIVE_SECRETS.get(value, 0) - 1
        if left > 0:
            _LIVE_SECRETS[value] = left
        else:
            _LIVE_SECRETS.pop(value, None)


def is_known_secret(text: str) -> bool:
    """True when `text` is the exact value of a Secret this process holds."""
    return text in _LIVE_SECRETS


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


@dataclass(frozen=True, slots=True)
class Regenerated:
    """What `regenerate_secret` returned: the subscription and its only copy of the new secret.

    `uncertain_attempts` counts earlier attempts of the same regenerate that
    timed out while Monite may still have been working on them: one of those
    can be applied after this one, leaving Monite with a secret nobody holds.
    """

    subscription: Subscription
    secret: Secret
    uncertain_attempts: int = 0


@dataclass(frozen=True, slots=True)
class Record:
    """One subscription's record in Vault KV v2, at a known version.

    `version` is the KV version this record was read or written at; 0 means no
    record exists (a check-and-set write with cas=0 creates it).
    """

    subscription_id: str
    version: int = 0
    secret: Secret | None = None
    rotated_at: datetime | None = None
    state: RecordState = "active"
    rotation_id: str | None = None
    claimed_by: str | None = None
    claim_expires_at: datetime | None = None
    url: str | None = None
    object_type: str | None = None
    event_types: tuple[str, ...] = ()

    @property
    def exists(self) -> bool:
        return self.version > 0

    def age(self, now: datetime) -> timedelta | None:
        """How old the stored secret is, or None when we never rotated it."""
        if self.rotated_at is None or self.secret is None:
            return None
        return now - self.rotated_at

    def claim_expired(self, now: datetime) -> bool:
        """True when a rotation claimed this record and its claim ran out."""
        return (
            self.state == "rotating"
            and self.claim_expires_at is not None
            and self.claim_expires_at <= now
        )

    def claim_active(self, now: datetime) -> bool:
        """True while another (or this) rotation holds a live claim."""
        return self.state == "rotating" and not self.claim_expired(now)

    def claimed(
        self,
        subscription: Subscription,
        *,
        rotation_id: str,
        owner: str,
        expires_at: datetime,
    ) -> Record:
        """The claim write: same secret, state=rotating, fenced until `expires_at`."""
        return replace(
            self,
            state="rotating",
            rotation_id=rotation_id,
            claimed_by=owner,
            claim_expires_at=expires_at,
            url=subscription.url,
            object_type=subscription.object_type,
            event_types=subscription.event_types,
        )

    def committed(self, regenerated: Regenerated, *, rotation_id: str, at: datetime) -> Record:
        """The commit write: the new secret, state=active, claim released."""
        sub = regenerated.subscription
        return replace(
            self,
            secret=regenerated.secret,
            rotated_at=at,
            state="active",
            rotation_id=rotation_id,
            claimed_by=None,
            claim_expires_at=None,
            url=sub.url,
            object_type=sub.object_type,
            event_types=sub.event_types,
        )

    def released(self) -> Record:
        """The claim given back untouched: same secret, state=active, no claim fields."""
        return replace(self, state="active", claimed_by=None, claim_expires_at=None)

    def settling(self, *, owner: str, until: datetime) -> Record:
        """A committed record that stays claimed until `until`, then is rotated again.

        For a secret won after timed-out attempts: Monite may still apply one of
        those later. The secret we hold is stored (it is the best we know), and
        the claim's expiry makes the record due for recovery once any straggler
        has had time to land.
        """
        return replace(self, state="rotating", claimed_by=owner, claim_expires_at=until)

    def at_version(self, version: int) -> Record:
        return replace(self, version=version)

    def to_vault(self) -> dict[str, Any]:
        """The KV v2 `data` object, field names as in DESIGN.md."""
        return {
            "secret": self.secret.reveal() if self.secret is not None else None,
            "rotated_at": format_time(self.rotated_at),
            "state": self.state,
            "rotation_id": self.rotation_id,
            "claimed_by": self.claimed_by,
            "claim_expires_at": format_time(self.claim_expires_at),
            "subscription_id": self.subscription_id,
            "url": self.url,
            "object_type": self.object_type,
            "event_types": list(self.event_types),
        }

    @classmethod
    def from_vault(cls, subscription_id: str, data: Mapping[str, Any], version: int) -> Record:
        """Parse a KV v2 `data` object, tolerating missing or foreign fields.

        A record someone edited by hand must not crash the cycle: unknown
        `state` values read as `active`, unparseable times as absent.
        """
        raw_secret = data.get("secret")
        state = data.get("state")
        events = data.get("event_types")
        return cls(
            subscription_id=subscription_id,
            version=version,
            secret=Secret(raw_secret) if isinstance(raw_secret, str) and raw_secret else None,
            rotated_at=parse_time(data.get("rotated_at")),
            state="rotating" if state == "rotating" else "active",
            rotation_id=_opt_str(data.get("rotation_id")),
            claimed_by=_opt_str(data.get("claimed_by")),
            claim_expires_at=parse_time(data.get("claim_expires_at")),
            url=_opt_str(data.get("url")),
            object_type=_opt_str(data.get("object_type")),
            event_types=tuple(str(e) for e in events) if isinstance(events, list) else (),
        )


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def format_time(value: datetime | None) -> str | None:
    """RFC 3339 UTC with a `Z`, or None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: object) -> datetime | None:
    """Parse RFC 3339; None for anything that is not a valid timestamp."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `12h`, `30d`, `2w`, `250ms` -> timedelta. ValueError names the format."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit, like 90s, 15m, 12h or 30d"
        )
    number, unit = match.groups()
    return timedelta(seconds=float(number) * _UNIT_SECONDS[unit])


def format_duration(value: timedelta) -> str:
    """The shortest exact form of a duration, for messages: 30d, 15m, 90s."""
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
