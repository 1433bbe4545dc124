"""A `Record` as the KV v2 `data` object and back: field names, formats, tolerance.

Field names are the README's "What lands in Vault". Swap fields are written
only when set, so a record that never swapped keeps the version-2 layout.
Reading tolerates a record edited by hand: unparseable values read as absent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rotator.model._states import MAX_LINEAGE, RECORD_STATES, RecordState
from rotator.model._times import format_time, parse_time
from rotator.secret import Secret

if TYPE_CHECKING:
    from rotator.model._record import Record


def record_data(record: Record) -> dict[str, Any]:
    """The KV v2 `data` object of `record`."""
    swap: dict[str, Any] = {
        "swap_id": record.swap_id,
        "swap_known_ids": list(record.swap_known_ids) or None,
        "swap_started_at": format_time(record.swap_started_at),
        "swap_intent_at": format_time(record.swap_intent_at),
        "swap_failures": record.swap_failures or None,
        "swap_start_version": record.swap_start_version,
        "swap_start_created_time": format_time(record.swap_start_created_time),
        "successor_id": record.successor_id,
        "overlap_ends_at": format_time(record.overlap_ends_at),
        "retired_at": format_time(record.retired_at),
        "retired_secret_fingerprint": record.retired_secret_fingerprint,
        "predecessor_id": record.predecessor_id,
        "overlap_seconds": record.overlap_seconds,
        "lineage": list(record.lineage) or None,
    }
    return {
        "secret": record.secret.reveal() if record.secret is not None else None,
        "rotated_at": format_time(record.rotated_at),
        "state": record.state,
        "rotation_id": record.rotation_id,
        "claimed_by": record.claimed_by,
        "claim_ttl_seconds": record.claim_ttl_seconds,
        "claim_expires_at": format_time(record.claim_expires_at),
        "subscription_id": record.subscription_id,
        "url": record.url,
        "object_type": record.object_type,
        "event_types": list(record.event_types),
    } | {key: value for key, value in swap.items() if value is not None}


def record_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """`Record` fields from a KV v2 `data` object, tolerating missing or foreign ones.

    A missing `state` reads as `active` (a record imported by hand); a `state`
    this version does not know reads as `stale`, because rule zero says a
    secret we cannot vouch for is rotated.
    """
    raw_secret = data.get("secret")
    state = data.get("state")
    events = data.get("event_types")
    ttl = data.get("claim_ttl_seconds")
    return dict(
        secret=Secret(raw_secret) if isinstance(raw_secret, str) and raw_secret else None,
        rotated_at=parse_time(data.get("rotated_at")),
        state=_state(state),
        rotation_id=_opt_str(data.get("rotation_id")),
        claimed_by=_opt_str(data.get("claimed_by")),
        claim_ttl_seconds=(
            float(ttl) if isinstance(ttl, int | float) and not isinstance(ttl, bool) else None
        ),
        claim_expires_at=parse_time(data.get("claim_expires_at")),
        url=_opt_str(data.get("url")),
        object_type=_opt_str(data.get("object_type")),
        event_types=tuple(str(e) for e in events) if isinstance(events, list) else (),
        swap_id=_opt_str(data.get("swap_id")),
        swap_known_ids=_str_tuple(data.get("swap_known_ids")),
        swap_started_at=parse_time(data.get("swap_started_at")),
        swap_intent_at=parse_time(data.get("swap_intent_at")),
        swap_failures=_count(data.get("swap_failures")),
        swap_start_version=_count(data.get("swap_start_version")) or None,
        swap_start_created_time=parse_time(data.get("swap_start_created_time")),
        successor_id=_opt_str(data.get("successor_id")),
        overlap_ends_at=parse_time(data.get("overlap_ends_at")),
        retired_at=parse_time(data.get("retired_at")),
        retired_secret_fingerprint=_opt_str(data.get("retired_secret_fingerprint")),
        predecessor_id=_opt_str(data.get("predecessor_id")),
        overlap_seconds=_finite(data.get("overlap_seconds")),
        lineage=_str_tuple(data.get("lineage"))[-MAX_LINEAGE:],
    )


def _state(value: object) -> RecordState:
    if value is None or value == "":
        return "active"
    for state in RECORD_STATES:
        if value == state:
            return state
    return "stale"


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _str_tuple(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, str) and item)


def _count(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return 0


def _finite(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
