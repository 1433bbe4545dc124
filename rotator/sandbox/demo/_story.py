"""What the demo prints besides the audit log: cycle summaries, fault notes, the closing tables.

The audit log's `rotation.skipped` lines (one per subscription per cycle) are
left out of the demo's screen; each cycle ends with one line that counts
them by reason instead. Every injected fault is announced before it strikes
and explained after, so nothing on screen needs the source to be understood.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

from structlog.typing import EventDict, WrappedLogger

from rotator.engine import CycleReport
from rotator.model import Record
from rotator.reasons import OutcomeKind
from rotator.sandbox.deliveries import DeliverySnapshot
from rotator.sandbox.demo._world import (
    DELIVERY_EVERY,
    HOOK,
    INTERVAL,
    MAX_AGE,
    OVERLAP,
    POLL_EVERY,
    REGENERATE,
    STRICT_MAX_AGE,
    SWAP,
    TIMER,
    Row,
    World,
)
from rotator.sandbox.hook_latencies import HookLatencies

CONSUMER_LABELS = {
    TIMER: f"timer consumer: reloads from Vault every {POLL_EVERY:g}s, like Vault Agent",
    HOOK: "hook consumer: reloads when the rotator's hook tells it",
    SWAP: 'swap group: rotation.strategy = "swap"',
    REGENERATE: 'regenerate group: a rule on its URL sets strategy = "regenerate"',
}

# The audit log's keys the demo shows; the rest (ids of runs and rotations,
# claim deadlines, ...) would wrap every line. `rotator run` logs every key.
SHOWN = frozenset(
    {
        "subscription_id",
        "reason",
        "vault_version",
        "latency_ms",
        "attempts",
        "error",
        "forced",
        "rotated",
        "recovered",
        "failed",
        # swap events only (docs/swap.md): the regenerate demo never logs these keys
        "successor_id",
        "overlap_ends_at",
        "phase",
        "abort_reason",
        "orphans_deleted",
    }
)


def narrow(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """The demo's view of an audit event: SHOWN keys, ids as in the table, the time of day."""
    kept = {k: v for k, v in event_dict.items() if k in SHOWN or k in ("level", "event")}
    for key in ("subscription_id", "successor_id"):
        if isinstance(kept.get(key), str):
            kept[key] = short(kept[key])
    if isinstance(kept.get("overlap_ends_at"), str):
        kept["overlap_ends_at"] = kept["overlap_ends_at"].partition("T")[2][:8]
    if isinstance(kept.get("forced"), list):
        kept["forced"] = [short(str(sid)) for sid in kept["forced"]]
    error = kept.get("error")
    if isinstance(error, str) and len(error) > 40:
        kept["error"] = error[:39] + "…"
    if isinstance(kept.get("latency_ms"), float):
        kept["latency_ms"] = round(kept["latency_ms"])
    stamp = event_dict.get("timestamp")
    if isinstance(stamp, str):
        kept["timestamp"] = stamp.partition("T")[2][:8]  # HH:MM:SS
    return kept


def short(subscription_id: str) -> str:
    return subscription_id[:8]


def intro(world: World, duration: float, out: TextIO) -> None:
    if world.strategy == "swap":
        intro_swap(world, duration, out)
        return
    print(
        f"Monite emulator on {world.monite.base_url}, Vault emulator on {world.vault.address}\n"
        f"Policy: max_age {MAX_AGE.total_seconds():g}s (batch_payment "
        f"{STRICT_MAX_AGE.total_seconds():g}s), a cycle every {INTERVAL:g}s for {duration:g}s.\n"
        f"Monite delivers a signed event to every enabled subscription every {DELIVERY_EVERY:g}s;\n"
        "each kind of subscription is seeded twice, once for each of two consumers:\n"
        f"  {CONSUMER_LABELS[TIMER]}\n  {CONSUMER_LABELS[HOOK]}\n"
        "Skipped subscriptions are counted after each cycle instead of logged one by one.\n",
        file=out,
    )


def intro_swap(world: World, duration: float, out: TextIO) -> None:
    print(
        f"Monite emulator on {world.monite.base_url}, Vault emulator on {world.vault.address}\n"
        f"Policy: max_age {MAX_AGE.total_seconds():g}s (batch_payment "
        f"{STRICT_MAX_AGE.total_seconds():g}s), a cycle every {INTERVAL:g}s for {duration:g}s; "
        f"a swap's overlap is {OVERLAP.total_seconds():g}s.\n"
        f"Monite delivers a signed event to every enabled subscription every {DELIVERY_EVERY:g}s,"
        "\none event (one id) to every subscription sharing a url, object type and event types.\n"
        "Each kind of subscription is seeded twice, once for each of two consumers alike: both\n"
        f"reload from Vault every {POLL_EVERY:g}s (like Vault Agent), never re-read on a "
        "mismatch,\nand drop an event whose id they have seen already.\n"
        f"  {CONSUMER_LABELS[SWAP]}: a successor subscription is created and committed,\n"
        "    both deliver for the overlap, then the original is deleted and its record retired\n"
        f"  {CONSUMER_LABELS[REGENERATE]}: the old secret dies at once\n"
        "No unmanaged kind: taking a subscription under management regenerates it whatever the\n"
        "strategy. Skips are counted after each cycle; of a swap's steps the log shows\n"
        "swap.started, swap.committed and swap.retired (`rotator run` logs every step).\n",
        file=out,
    )


def cycle_summary(number: int, report: CycleReport, out: TextIO) -> None:
    """One line: what the cycle did, and its skips counted by reason; one more for swaps."""
    skipped = Counter(o.reason for o in report.outcomes if o.kind == OutcomeKind.SKIPPED)
    reasons = ", ".join(f"{count} {reason}" for reason, count in skipped.most_common())
    print(
        f"  -- cycle {number}: {report.summary()}" + (f" ({reasons})" if reasons else ""),
        file=out,
    )
    swaps = []
    for o in report.outcomes:
        if o.kind != OutcomeKind.SWAPPED or o.successor_id is None:
            continue
        old, new = short(o.subscription_id), short(o.successor_id)
        if o.retired:
            swaps.append(f"{old} deleted and retired, {new} delivers alone")
        else:
            until = "" if o.overlap_ends_at is None else f" until {o.overlap_ends_at:%H:%M:%S}"
            swaps.append(f"{old} -> {new} committed, both deliver{until}")
    if swaps:
        print("     swaps: " + "; ".join(swaps), file=out)


def fault_announced(out: TextIO) -> None:
    print(
        "  >> Injected fault: Monite will apply the next regenerate, but the connection\n"
        "     drops before its answer arrives, so the rotator never sees the new secret.",
        file=out,
    )


def fault_explained(subscription_ids: Sequence[str], out: TextIO) -> None:
    for sid in subscription_ids:
        print(
            f"  >> The fault struck {short(sid)} (marked * below). The rotator retried the\n"
            "     regenerate and committed the secret of the retry's answer. Since a lost answer\n"
            "     means a regenerate it never saw might still land, the record is `settling`\n"
            "     and rotated once more when that window has passed (rotation.recovered).",
            file=out,
        )


def forced_announced(subscription_ids: Sequence[str], out: TextIO) -> None:
    ids = " ".join(short(sid) for sid in subscription_ids)
    print(f"  >> Forced rotation of {ids}, as `rotator rotate --force --id ...` does.", file=out)


def holds_current(world: World, subscription_id: str, record: Record) -> bool:
    """Whether the record holds the secret Monite signs this subscription's deliveries with."""
    secret = record.secret
    return secret is not None and secret.reveal() == world.monite.current_secret(subscription_id)


def subscription_table(
    world: World,
    rows: Sequence[Row],
    records: Mapping[str, Record | None],
    now_age: Mapping[str, str],
    struck: Sequence[str],
) -> list[tuple[str, ...]]:
    """Rows for the closing table; `struck` subscriptions get a `*` after their id."""
    stats = {name: app.stats() for name, app in world.consumers.items()}
    table: list[tuple[str, ...]] = []
    for row in rows:
        sid = row.subscription_id
        record = records[sid]
        if record is None:
            state, matches = "-", "no record"
        else:
            same = holds_current(world, sid, record)
            state, matches = record.state, "yes" if same else "NO"
        counts = stats[row.consumer].get(sid, {})
        table.append(
            (
                short(sid) + ("*" if sid in struck else ""),
                row.kind.label,
                row.kind.object_type,
                row.consumer,
                now_age[sid],
                state,
                str(world.monite.regenerate_count(sid)),
                matches,
                str(counts.get("received", 0)),
                str(counts.get("verified", 0)),
                str(counts.get("rejected", 0)),
            )
        )
    return table


HEADER = (
    "SUBSCRIPTION",
    "KIND",
    "OBJECT TYPE",
    "CONSUMER",
    "AGE",
    "STATE",
    "ROTATIONS",
    "VAULT=MONITE",
    "RECEIVED",
    "VERIFIED",
    "REJECTED",
)


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    table = [tuple(header), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip(), file=out)


@dataclass(frozen=True)
class ConsumerTotals:
    """One consumer's deliveries: verified, rejected, and events Monite stopped retrying."""

    verified: int
    rejected: int
    given_up: int


def consumer_totals(
    world: World, rows: Sequence[Row], deliveries: DeliverySnapshot
) -> dict[str, ConsumerTotals]:
    totals = {}
    for name, app in world.consumers.items():
        stats = app.stats()
        mine = [r.subscription_id for r in rows if r.consumer == name]
        totals[name] = ConsumerTotals(
            verified=sum(stats.get(sid, {}).get("verified", 0) for sid in mine),
            rejected=sum(stats.get(sid, {}).get("rejected", 0) for sid in mine),
            given_up=sum(
                deliveries.subscriptions[sid].failed
                for sid in mine
                if sid in deliveries.subscriptions
            ),
        )
    return totals


def print_consumers(
    totals: Mapping[str, ConsumerTotals], hooks: HookLatencies, out: TextIO
) -> None:
    print(
        "\nDeliveries per consumer. Monite retries a rejected event a few times; an unmanaged\n"
        "subscription has no record in Vault until the rotator takes it under management.",
        file=out,
    )
    for name in (TIMER, HOOK):
        t = totals[name]
        share = t.rejected / max(1, t.verified + t.rejected)
        line = (
            f"  {CONSUMER_LABELS[name]}\n"
            f"      {t.verified} verified, {t.rejected} rejected ({share:.0%}), "
            f"{t.given_up} given up by Monite"
        )
        print(line, file=out)
    if hooks.delivered:
        ms = sorted(1000 * s for s in hooks.delivered)
        print(
            f"  Hook notices: {len(ms)} delivered, {hooks.failed} failed; commit to notice "
            f"p50 {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms.",
            file=out,
        )
