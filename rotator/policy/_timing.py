"""The protocol's timing arithmetic (`rotator.rotation` calls it), pure.

Whether a commit may say `active`, and how long a straggler may still land:
records and ttls in, a judgement out, on the same fences the decisions read.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from rotator.model import (
    Record,
)

# -- how long a rotation settles (the protocol's timing, rotator.rotation) ------


def may_settle_active(
    start: Record,
    *,
    start_verified: bool,
    doubtful: bool,
    claimed_at: datetime,
    claim_ttl: timedelta,
    max_claim_ttl: timedelta,
) -> bool:
    """True when no other regenerate for this subscription can still land at Monite.

    The rotation's attempts are all accounted for (not `doubtful`), and the
    record it started from (`start_verified` in Vault's history) vouched for
    its secret: `active`, or `settling` whose horizon had passed at
    `claimed_at`, Vault's time of our claim. An absent record does not vouch:
    a record deleted while a rotation held its claim also looks absent, and
    that rotation's regenerate may still land.
    """
    if doubtful or not start_verified:
        return False
    if start.state == "active":
        return True
    if start.state == "settling":
        horizon = start.fence_ends(max_claim_ttl, floor=claim_ttl)
        return horizon is not None and claimed_at >= horizon
    return False  # took over an expired claim, or started from `stale`


def unseen_claim_window(claim_ttl: timedelta, max_claim_ttl: timedelta) -> timedelta:
    """How long a regenerate sent under a claim we cannot see may still land.

    Such a claim (its record deleted, or ours unverified) may have been
    written up to one claim ttl before ours and sent its last attempt a ttl
    later: two ttls from our commit cover it.
    """
    return min(2 * claim_ttl, max_claim_ttl)


def settle_for(
    start: Record, *, start_verified: bool, claim_ttl: timedelta, max_claim_ttl: timedelta
) -> timedelta:
    """How long a straggler may still land: the longest claim it could have been sent under.

    A start that cannot vouch (absent or unverified: perhaps deleted under a
    live claim) settles for `unseen_claim_window`. All replicas are assumed
    to share `rotation.claim_ttl`.
    """
    ttl = claim_ttl
    if not start_verified or start.secret is None:
        ttl = unseen_claim_window(claim_ttl, max_claim_ttl)
    ends = start.fence_ends(max_claim_ttl, floor=claim_ttl)  # already capped
    if ends is not None and start.created_time is not None:
        ttl = max(ttl, ends - start.created_time)
    if start.state == "stale" and start.claim_ttl_seconds is not None:
        ttl = max(ttl, timedelta(seconds=start.claim_ttl_seconds))
    return min(ttl, max_claim_ttl)
