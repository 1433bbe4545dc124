"""Plain data shared by every layer: subscriptions, Vault records (secrets: `rotator.secret`).

Pure: no I/O library is imported here (an import-linter contract checks it).
The public face; behind it: `_subscription` (Monite's side), `_states` (record
states and claim constants), `_record` (`Record` and its transitions),
`_data` (a record as KV v2 data and back), `_times` (times and durations).
"""

from rotator.model._record import Record
from rotator.model._states import (
    CLOCK_MARGIN,
    DEFAULT_CLAIM_TTL,
    DEFAULT_MAX_CLAIM_TTL,
    FENCED_STATES,
    MAX_LINEAGE,
    RECORD_STATES,
    SWAP_STATES,
    RecordState,
)
from rotator.model._subscription import (
    MONITE_OBJECT_TYPES,
    Created,
    Regenerated,
    Subscription,
    Triple,
    triple,
)
from rotator.model._times import format_duration, format_time, parse_duration, parse_time

__all__ = [
    "CLOCK_MARGIN",
    "DEFAULT_CLAIM_TTL",
    "DEFAULT_MAX_CLAIM_TTL",
    "FENCED_STATES",
    "MAX_LINEAGE",
    "MONITE_OBJECT_TYPES",
    "RECORD_STATES",
    "SWAP_STATES",
    "Created",
    "Record",
    "RecordState",
    "Regenerated",
    "Subscription",
    "Triple",
    "format_duration",
    "format_time",
    "parse_duration",
    "parse_time",
    "triple",
]
