"""Every reason code and outcome kind the rotator reports, and the one table explaining them.

Audit consumers, dashboards and alerts key on these codes, so a code is never
renamed. `EXPLANATIONS` is the only place a code's sentence is written: `plan`
prints it, the audit log's consumers find it in docs/reasons.md (which a test
keeps equal to this table), and the policy's decisions carry it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final


class OutcomeKind(StrEnum):
    """What happened to one subscription in one cycle."""

    ROTATED = "rotated"
    RECOVERED = "recovered"
    SKIPPED = "skipped"
    FAILED = "failed"
    CONFLICT = "conflict"
    SWAPPED = "swapped"  # a swap committed its successor (or retired its original)


class Reason(StrEnum):
    """Why a subscription was rotated or skipped, or why its rotation did not finish."""

    # -- the policy's decisions (rotator.policy.decide) --
    CLAIMED = "claimed"
    CLAIM_EXPIRED = "claim_expired"
    SETTLING = "settling"
    SETTLED = "settled"
    STALE = "stale"
    ROTATED_IN_FUTURE = "rotated_in_future"
    FORCED = "forced"
    DISABLED = "disabled"
    UNKNOWN_STATUS = "unknown_status"
    RULE_SKIP = "rule_skip"
    UNMANAGED = "unmanaged"
    UNMANAGED_SKIP = "unmanaged_skip"
    AGE_UNKNOWN = "age_unknown"
    MAX_AGE_EXCEEDED = "max_age_exceeded"
    FRESH = "fresh"
    # -- the policy's decisions on a swap (rotator.policy.decide, docs/swap.md) --
    SWAP_SETTLING = "swap_settling"
    SWAP_CLAIM_EXPIRED = "swap_claim_expired"
    OVERLAP = "overlap"
    OVERLAP_ENDED = "overlap_ended"
    DELETE_CLAIM_EXPIRED = "delete_claim_expired"
    RETIRED_STILL_LISTED = "retired_still_listed"
    SWAP_SUCCESSOR_PENDING = "swap_successor_pending"
    SWAP_PREDECESSOR = "swap_predecessor"
    # -- the cycle's own skips (rotator.engine) --
    QUARANTINED = "quarantined"
    DEFERRED = "deferred"
    SHUTTING_DOWN = "shutting_down"
    VAULT_UNREADABLE = "vault_unreadable"
    # -- a rotation that did not finish (rotator.rotation) --
    CLAIMED_ELSEWHERE = "claimed_elsewhere"
    RECORD_REPLACED = "record_replaced"
    CLAIM_TOO_SHORT = "claim_too_short"
    NOT_FOUND_AFTER_ATTEMPT = "not_found_after_attempt"
    MONITE_REFUSED = "monite_refused"
    MONITE_ERROR = "monite_error"
    VAULT_ERROR = "vault_error"
    COMMIT_FAILED = "commit_failed"
    SUPERSEDED = "superseded"
    GONE = "gone"
    INTERNAL_ERROR = "internal_error"
    # -- a swap that did not finish, or finished differently (rotator.rotation.swap) --
    SWAP_TWIN_BUSY = "swap_twin_busy"
    CREATE_REFUSED = "create_refused"
    CREATE_DOUBTFUL = "create_doubtful"
    SUCCESSOR_GONE = "successor_gone"
    SUCCESSOR_DIVERGED = "successor_diverged"
    ORPHAN_AMBIGUOUS = "orphan_ambiguous"
    SWAP_FALLBACK = "swap_fallback"
    PREDECESSOR_RETIRING = "predecessor_retiring"
    DUPLICATE_SUSPECTED = "duplicate_suspected"


EXPLANATIONS: Final[Mapping[Reason, str]] = {
    Reason.CLAIMED: "another rotation holds a live claim on this record",
    Reason.CLAIM_EXPIRED: (
        "a rotation claimed this record and its claim ran out (on Vault's clock); the old "
        "secret may be dead and the new one lost, so it is rotated again at once"
    ),
    Reason.SETTLING: (
        "the last rotation was committed, but an earlier regenerate may still land at "
        "Monite; it is rotated once more when that window has passed"
    ),
    Reason.SETTLED: (
        "the settling window of the last rotation has passed; one more rotation makes "
        "sure Vault holds Monite's current secret"
    ),
    Reason.STALE: "the record's secret may be dead (a rotation was refused mid-recovery)",
    Reason.ROTATED_IN_FUTURE: (
        "the record's rotation time lies in the future (a writer's clock was wrong), "
        "so its age cannot be trusted"
    ),
    Reason.FORCED: "rotation was forced",
    Reason.DISABLED: "the subscription is disabled and the policy leaves disabled ones alone",
    Reason.UNKNOWN_STATUS: (
        "Monite reports a status this rotator does not know (neither enabled nor disabled), "
        "so the subscription is left alone; check its status at Monite and upgrade the "
        "rotator, or rotate it by hand with `rotator rotate --force --id`"
    ),
    Reason.RULE_SKIP: "a policy rule says to leave this subscription alone",
    Reason.UNMANAGED: (
        "the rotator has no record of this secret; rotating brings it under management"
    ),
    Reason.UNMANAGED_SKIP: (
        "the rotator has no record of this secret and the policy says to skip it"
    ),
    Reason.AGE_UNKNOWN: "the record holds a secret but no rotation time, so its age is unknown",
    Reason.MAX_AGE_EXCEEDED: "the secret is at least as old as the policy allows",
    Reason.FRESH: "the secret is younger than the policy's maximum age",
    Reason.SWAP_SETTLING: (
        "a swap's claim ran out, but a create it sent may still land at Monite; its "
        "recovery waits one more claim ttl"
    ),
    Reason.SWAP_CLAIM_EXPIRED: (
        "a swap's claim ran out before its successor was linked; recovery finds the "
        "successor or deletes a subscription nobody knows the secret of, then goes on or undoes"
    ),
    Reason.OVERLAP: (
        "the successor is committed and both subscriptions deliver until the overlap ends; "
        "the original's secret stays valid until then"
    ),
    Reason.OVERLAP_ENDED: "the overlap has ended: the original is deleted and its record retired",
    Reason.DELETE_CLAIM_EXPIRED: (
        "a claim to delete the original ran out; the deletion is taken over and finished"
    ),
    Reason.RETIRED_STILL_LISTED: (
        "the record is retired but Monite still lists its subscription; it is deleted again"
    ),
    Reason.SWAP_PREDECESSOR: (
        "this subscription has no record, and a successor's record names it as its "
        "original: its swap lost the original's record, so it is deleted now (the successor "
        "holds the secret)"
    ),
    Reason.SWAP_SUCCESSOR_PENDING: (
        "a swap in flight may have created this subscription; only that swap (or its "
        "recovery) may take it under management or delete it"
    ),
    Reason.QUARANTINED: (
        "several regenerate answers for this subscription could not be read and each may "
        "have replaced the secret; it is left alone until a restart or `rotator rotate "
        "--force --id` (check monite.api_version)"
    ),
    Reason.DEFERRED: (
        "more subscriptions were due than rotation.max_rotations_per_cycle allows; it is "
        "rotated in a later cycle"
    ),
    Reason.SHUTTING_DOWN: "the rotator is stopping; it is rotated after the restart",
    Reason.VAULT_UNREADABLE: "Vault did not answer the read of this record; tried next cycle",
    Reason.CLAIMED_ELSEWHERE: "another rotation claimed the record first (check-and-set lost)",
    Reason.RECORD_REPLACED: (
        "the record changed between the claim and its check; the claim was undone"
    ),
    Reason.CLAIM_TOO_SHORT: (
        "too little of the claim was left for a regenerate (twice the request timeout)"
    ),
    Reason.NOT_FOUND_AFTER_ATTEMPT: (
        "Monite answered 404 after an attempt that may have replaced the secret; the "
        "claim is kept and the subscription rotated again"
    ),
    Reason.MONITE_REFUSED: "Monite refused the regenerate; the old secret still works",
    Reason.MONITE_ERROR: (
        "the regenerate failed after an attempt that may have replaced the secret; the "
        "claim is kept and the subscription rotated again"
    ),
    Reason.VAULT_ERROR: "Vault failed before anything was regenerated; nothing changed",
    Reason.COMMIT_FAILED: (
        "the new secret could not be written to Vault in rotation.commit_retry_for; the "
        "record keeps its claim and is rotated again when the claim runs out"
    ),
    Reason.SUPERSEDED: (
        "another rotation took over this one's expired claim, so Monite replaced the "
        "secret again; that rotation's record is kept"
    ),
    Reason.GONE: "the subscription no longer exists at Monite",
    Reason.INTERNAL_ERROR: "a bug in the rotator stopped this rotation; please report it",
    Reason.SWAP_TWIN_BUSY: (
        "another subscription with the same url, object type and event types is swapping; "
        "this swap was undone before creating anything and starts again later"
    ),
    Reason.CREATE_REFUSED: (
        "Monite refused to create the successor; nothing was created, the original keeps "
        "its secret and is swapped again later"
    ),
    Reason.CREATE_DOUBTFUL: (
        "the successor's create may have been applied and no answer came back; the swap's "
        "claim is kept and recovery deletes what it created"
    ),
    Reason.SUCCESSOR_GONE: (
        "the successor or its record vanished before the original was deleted; the "
        "original stays, active, and is swapped again later"
    ),
    Reason.SUCCESSOR_DIVERGED: (
        "the successor no longer has the original's url, object type and event types; the "
        "original stays, active; check who changed it"
    ),
    Reason.ORPHAN_AMBIGUOUS: (
        "more than one subscription nobody knows the secret of matches a lost create; none "
        "is deleted, an operator must choose"
    ),
    Reason.DUPLICATE_SUSPECTED: (
        "the original's record was taken over by another rotation during its swap (it was "
        "deleted and adopted), so the original was not linked to its successor: both "
        "subscriptions stay and deliver until an operator deletes one"
    ),
    Reason.PREDECESSOR_RETIRING: (
        "its original is still being deleted after the swap that created it; a second swap "
        "would race the first and a regenerate would make consumers reject, so it waits (the "
        "original delivers every event meanwhile)"
    ),
    Reason.SWAP_FALLBACK: (
        "several swaps of this subscription ended without a successor; it is regenerated "
        "instead (an outage for consumers that have not reloaded)"
    ),
}

# The codes the policy decides with; the others are the cycle's and the protocol's.
DECISIONS: Final = frozenset(
    {
        Reason.CLAIMED,
        Reason.CLAIM_EXPIRED,
        Reason.SETTLING,
        Reason.SETTLED,
        Reason.STALE,
        Reason.ROTATED_IN_FUTURE,
        Reason.FORCED,
        Reason.DISABLED,
        Reason.UNKNOWN_STATUS,
        Reason.RULE_SKIP,
        Reason.UNMANAGED,
        Reason.UNMANAGED_SKIP,
        Reason.AGE_UNKNOWN,
        Reason.MAX_AGE_EXCEEDED,
        Reason.FRESH,
        Reason.SWAP_SETTLING,
        Reason.SWAP_CLAIM_EXPIRED,
        Reason.OVERLAP,
        Reason.OVERLAP_ENDED,
        Reason.DELETE_CLAIM_EXPIRED,
        Reason.RETIRED_STILL_LISTED,
        Reason.SWAP_SUCCESSOR_PENDING,
        Reason.SWAP_PREDECESSOR,
        Reason.PREDECESSOR_RETIRING,
    }
)
# Decisions that rotate because the record may hold a dead secret, whatever the policy says.
RECOVERY_REASONS: Final = frozenset(
    {Reason.CLAIM_EXPIRED, Reason.SETTLED, Reason.STALE, Reason.SWAP_CLAIM_EXPIRED}
)
# Decisions that move a swap on (rotator.rotation.swap) rather than regenerate.
SWAP_PHASE_REASONS: Final = frozenset(
    {
        Reason.SWAP_CLAIM_EXPIRED,
        Reason.OVERLAP_ENDED,
        Reason.DELETE_CLAIM_EXPIRED,
        Reason.RETIRED_STILL_LISTED,
        Reason.SWAP_PREDECESSOR,
    }
)


def explain(code: str) -> str:
    """The sentence for a reason code; an unknown code (from a newer writer) as itself."""
    try:
        return EXPLANATIONS[Reason(code)]
    except ValueError:
        return code
