"""`rotator plan`: what a cycle would do now, and why; changes nothing."""

from __future__ import annotations

import json
import urllib.parse
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rotator.exitcodes import ExitCode
from rotator.model import format_time
from rotator.policy import SWAP_RECORD_STATES, Decision
from rotator.reasons import explain

if TYPE_CHECKING:
    from rotator.config import Settings


async def plan(settings: Settings, owner: str, *, as_json: bool) -> int:
    """`rotator plan`: what a cycle would do now, and why, as a table or JSON."""
    from rotator.app import open_engine  # the wiring, only once the config is valid

    async with open_engine(settings, owner=owner) as engine:
        report = await engine.plan()
    rows = [plan_row(d, report.vault_now) for d in report.decisions]
    if as_json:
        print(
            json.dumps(
                {
                    "decisions": rows,
                    "orphans": report.orphans,
                    "unreadable": report.unreadable,
                    "lost_rules": report.lost_rules,
                },
                indent=2,
            )
        )
        return ExitCode.OK
    if not rows:
        print("Monite lists no webhook subscriptions.")
    header = ("SUBSCRIPTION", "OBJECT TYPE", "STATUS", "AGE", "MAX AGE", "ACTION", "HOW", "WHY")
    table = [header] + [
        (
            r["subscription_id"],
            r["object_type"],
            r["status"],
            human_age(r["age_seconds"]),
            human_age(r["max_age_seconds"]),
            r["action"],
            how(r),
            explain(r["reason"]),
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header) - 1)]
    for row in table:
        cells = [str(c).ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, str(row[-1])]))
    for orphan in report.orphans:
        print(f"orphan: Vault holds a record for {orphan}, which Monite no longer lists")
    for sentence in report.lost_rules:
        print(f"warning: {sentence}")
    for subscription_id in report.unreadable:
        print(f"unreadable: Vault did not return the record of {subscription_id}; see the log")
    due = sum(1 for r in rows if r["action"] == "rotate")
    print(f"{due} of {len(rows)} subscriptions would be rotated now.")
    return ExitCode.OK


def plan_row(decision: Decision, now: datetime | None = None) -> dict[str, Any]:
    sub = decision.subscription
    return {
        "subscription_id": sub.id,
        "object_type": sub.object_type,
        "status": sub.status,
        "url": display_url(sub.url),
        "action": decision.action,
        "reason": decision.reason,
        "age_seconds": None if decision.age is None else decision.age.total_seconds(),
        "max_age_seconds": decision.max_age.total_seconds(),
        "vault_version": decision.record.version or None,
        # The record's protocol state (active, rotating, settling, stale, or a swap
        # state: swapping, retiring, deleting, retired); None: no record.
        "record_state": decision.record.state if decision.record.exists else None,
        # How a rotation would replace the secret, and why not the configured way.
        "strategy": decision.strategy if decision.action == "rotate" else None,
        "strategy_reason": decision.strategy_reason,
        "swap": swap_info(decision, now),
    }


def swap_info(decision: Decision, now: datetime | None) -> dict[str, Any] | None:
    """The swap a record is part of (docs/swap.md), or None."""
    record = decision.record
    if record.swap_id is None and record.predecessor_id is None and record.successor_id is None:
        return None
    ends = record.overlap_ends_at
    remaining = None if ends is None or now is None else (ends - now).total_seconds()
    return {
        "id": record.swap_id,
        "phase": record.state if record.state in SWAP_RECORD_STATES else "successor",
        "successor_id": record.successor_id,
        "predecessor_id": record.predecessor_id,
        "overlap_ends_at": format_time(ends),
        "overlap_remaining_seconds": remaining,
        "known_ids_count": len(record.swap_known_ids) or None,
        "swap_failures": record.swap_failures,
    }


def how(row: dict[str, Any]) -> str:
    """The HOW column: the strategy of a rotation, or the phase of a swap in flight."""
    swap = row["swap"]
    if swap is not None and swap["phase"] == "retiring" and row["action"] == "skip":
        left = swap["overlap_remaining_seconds"]
        return f"retiring, {human_age(max(0.0, left))} left" if left is not None else "retiring"
    if swap is not None and swap["phase"] in SWAP_RECORD_STATES:
        return str(swap["phase"])
    return row["strategy"] or "-"


def display_url(url: str) -> str:
    """A webhook URL without user info or query: those often carry credentials.

    The host and port are shown as Monite lists them: urllib's `.port` raises
    on a port it deems invalid (99999), and a listing must never crash on one.
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    query = "?…" if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", "")) + query


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"
