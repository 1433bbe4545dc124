"""`Notice`: what a hook is told after a commit, as canonical JSON. Never the secret."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Final

from rotator import events

NOTICE_EVENTS: Final = frozenset(
    {
        events.ROTATION_SUCCEEDED,
        events.ROTATION_RECOVERED,
        events.SWAP_COMMITTED,  # a successor's first secret: load it before the overlap ends
        events.SWAP_RETIRED,  # the original is deleted: drop its secret
    }
)
# Swap fields, sent only on swap notices so a regenerate notice keeps its shape.
_SWAP_FIELDS: Final = ("predecessor_id", "successor_id", "overlap_ends_at")
_FINGERPRINT = re.compile(r"[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class Notice:
    """One commit that made a new active secret: which record, which version, whose secret.

    `secret_fingerprint` is `Secret.fingerprint()` (12 hex digits): a consumer
    that re-reads Vault can tell it holds the new secret without anyone
    showing it. `(subscription_id, vault_version)` names the commit, so a
    consumer can ignore a notice it has seen (delivery is at least once).
    """

    event: str  # rotation.succeeded, rotation.recovered, swap.committed or swap.retired
    subscription_id: str
    object_type: str | None
    vault_mount: str
    vault_path: str
    vault_version: int
    secret_fingerprint: str
    rotated_at: str  # ISO 8601 UTC, like 2024-06-01T12:00:00Z
    run_id: str | None = None
    predecessor_id: str | None = None  # swap.committed: the original this one replaces
    successor_id: str | None = None  # swap.retired: the subscription that replaced it
    overlap_ends_at: str | None = None  # swap.committed: when the original is deleted

    def __post_init__(self) -> None:
        if self.event not in NOTICE_EVENTS:
            raise ValueError(f"a notice is for {sorted(NOTICE_EVENTS)}, not {self.event!r}")
        if _FINGERPRINT.fullmatch(self.secret_fingerprint) is None:
            # Guards the one field a secret could be passed in by mistake.
            raise ValueError("secret_fingerprint must be 12 lowercase hex digits")
        if self.vault_version < 1:
            raise ValueError("vault_version must be a committed version, at least 1")

    def to_json(self) -> bytes:
        """Canonical JSON: keys sorted, no spaces, ASCII; the bytes that are signed and sent."""
        body = dataclasses.asdict(self)
        for name in _SWAP_FIELDS:
            if body[name] is None:
                del body[name]
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
            "ascii"
        )
