"""`rotator plan`: what a cycle would do now, and why; changes nothing."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from rotator.app import ExitCode, open_engine
from rotator.config import Settings
from rotator.policy import Decision
from rotator.reasons import explain


async def plan(settings: Settings, owner: str, *, as_json: bool) -> int:
    """`rotator plan`: what a cycle would do now, and why, as a table or JSON."""
    async with open_engine(settings, owner=owner) as engine:
        report = await engine.plan()
    rows = [plan_row(d) for d in report.decisions]
    if as_json:
        print(
            json.dumps(
                {"decisions": rows, "orphans": report.orphans, "unreadable": report.unreadable},
                indent=2,
            )
        )
        return ExitCode.OK
    if not rows:
        print("Monite lists no webhook subscriptions.")
    header = ("SUBSCRIPTION", "OBJECT TYPE", "STATUS", "AGE", "MAX AGE", "ACTION", "WHY")
    table = [header] + [
        (
            r["subscription_id"],
            r["object_type"],
            r["status"],
            human_age(r["age_seconds"]),
            human_age(r["max_age_seconds"]),
            r["action"],
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
    for subscription_id in report.unreadable:
        print(f"unreadable: Vault did not return the record of {subscription_id}; see the log")
    due = sum(1 for r in rows if r["action"] == "rotate")
    print(f"{due} of {len(rows)} subscriptions would be rotated now.")
    return ExitCode.OK


def plan_row(decision: Decision) -> dict[str, Any]:
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
        # The record's protocol state (active, rotating, settling, stale); None: no record.
        "record_state": decision.record.state if decision.record.exists else None,
    }


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
