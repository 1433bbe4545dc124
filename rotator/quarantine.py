"""Quarantine: a subscription whose regenerate answers cannot be read is left alone.

Rotations of one subscription whose regenerate ended on an answer we cannot
read (a protocol error that may have been applied), with no successful one
between, make this process stop regenerating it after QUARANTINE_AFTER: each
may have killed its secret, and asking again does not help. In memory only;
other replicas keep their own count.
"""

from __future__ import annotations

import structlog

from rotator import audit
from rotator.cache import RecordCache
from rotator.reasons import OutcomeKind, Reason
from rotator.rotation import Outcome

log = structlog.get_logger("rotator.engine")

QUARANTINE_AFTER = 3
QUARANTINE_HINT = (
    "Monite's regenerate_secret answers for this subscription have a shape this rotator "
    "cannot read, and each attempt may have replaced its secret: check monite.api_version "
    "against Monite's API changelog or contact Monite support; its claim stays in Vault and "
    "this process leaves it alone until it restarts, until `rotator rotate --force --id` "
    "is run for it (here, or in another process: its record is read again every cycle), "
    "or until another replica rotates it"
)


class Quarantine:
    """Counts protocol failures per subscription and holds the quarantined ones."""

    def __init__(self) -> None:
        self._failures: dict[str, int] = {}
        # Quarantined ids, with the record version they were quarantined at: a
        # newer version (another process rotated it) lifts the quarantine.
        self._held: dict[str, int] = {}

    def __contains__(self, subscription_id: object) -> bool:
        return subscription_id in self._held

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(self._held)

    def lift_rotated_elsewhere(self, cache: RecordCache) -> None:
        """Lift the quarantine of a record someone else has rotated since.

        A newer version that holds a committed secret (`active` or `settling`):
        our own claims of it (a forced retry that failed again) do not count.
        """
        for sub_id, version in list(self._held.items()):
            record = cache.get(sub_id)
            if (
                record is not None
                and record.version != version
                and record.state in ("active", "settling")
            ):
                del self._held[sub_id]
                self._failures.pop(sub_id, None)

    def count(self, outcome: Outcome, cache: RecordCache) -> None:
        """Quarantine after QUARANTINE_AFTER protocol failures; a success clears the count."""
        sub_id = outcome.subscription_id
        if outcome.kind in (OutcomeKind.ROTATED, OutcomeKind.RECOVERED):
            self._failures.pop(sub_id, None)
            self._held.pop(sub_id, None)
            return
        if not outcome.protocol_error:
            return
        failures = self._failures.get(sub_id, 0) + 1
        self._failures[sub_id] = failures
        if failures < QUARANTINE_AFTER or sub_id in self._held:
            return
        record = cache.get(sub_id)
        self._held[sub_id] = record.version if record is not None else 0
        log.critical(
            audit.ROTATION_FAILED,
            subscription_id=sub_id,
            object_type=outcome.object_type,
            stage="regenerate",
            reason=Reason.QUARANTINED,
            protocol_failures=failures,
            error=outcome.error,
            what_to_do=QUARANTINE_HINT,
        )
