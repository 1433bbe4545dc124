"""The swap demo's closing report: originals followed through their swaps, the groups compared.

A row of the table is a subscription as seeded (an original). After a swap it
shows the subscription its lineage delivers through now (`successor_id`
followed through retired records), how many swaps the lineage went through,
and that record's state; deliveries are counted over the whole lineage. The
verdict looks at both sides: every subscription Monite lists has a record
holding its current secret, and no record still live names a subscription
Monite no longer has. A retired record holds no secret by design: its
subscription is deleted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from rotator.config import Settings
from rotator.model import MAX_LINEAGE, Record
from rotator.sandbox.deliveries import DeliverySnapshot
from rotator.sandbox.demo._story import holds_current, print_table, short
from rotator.sandbox.demo._world import POLL_EVERY, REGENERATE, SWAP, Row, World


@dataclass(frozen=True)
class Lineage:
    """An original and its successors, oldest first, with their records (None: no record)."""

    row: Row
    chain: tuple[str, ...]
    records: Mapping[str, Record | None]

    @property
    def tip(self) -> str:
        """The newest subscription of the lineage."""
        return self.chain[-1]

    @property
    def swaps(self) -> int:
        return len(self.chain) - 1

    def live(self) -> list[str]:
        """The lineage's subscriptions whose record is not retired (two during an overlap)."""
        return [sid for sid in self.chain if _state(self.records[sid]) != "retired"]


def _state(record: Record | None) -> str:
    return "-" if record is None else record.state


def read_lineage(world: World, settings: Settings, row: Row) -> Lineage:
    """Follow `successor_id` from the row's original, as Vault holds the records now."""
    chain = [row.subscription_id]
    records: dict[str, Record | None] = {}
    while True:
        record = world.read_record(settings, chain[-1])
        records[chain[-1]] = record
        successor = None if record is None else record.successor_id
        if successor is None or successor in records or len(chain) > MAX_LINEAGE:
            return Lineage(row, tuple(chain), records)
        chain.append(successor)


def read_lineages(world: World, settings: Settings, rows: Sequence[Row]) -> list[Lineage]:
    return [read_lineage(world, settings, row) for row in rows]


HEADER = (
    "SUBSCRIPTION",
    "KIND",
    "OBJECT TYPE",
    "GROUP",
    "LIVE NOW",
    "SWAPS",
    "AGE",
    "STATE",
    "REGENERATES",
    "VAULT=MONITE",
    "VERIFIED",
    "DUPLICATES",
    "REJECTED",
)


def lineage_table(
    world: World, lineages: Sequence[Lineage], now: datetime, struck: Sequence[str]
) -> list[tuple[str, ...]]:
    """Rows for the closing table; a lineage the injected fault struck gets a `*`."""
    listed = set(world.monite.subscription_ids())
    table: list[tuple[str, ...]] = []
    for lineage in lineages:
        row, tip = lineage.row, lineage.records[lineage.tip]
        stats = world.consumers[row.consumer].stats()
        counts = [stats.get(sid, {}) for sid in lineage.chain]
        state = _state(tip) + "".join(
            f", {short(sid)} {_state(lineage.records[sid])}"
            for sid in lineage.live()
            if sid != lineage.tip
        )
        age = None if tip is None else tip.age(now)
        table.append(
            (
                short(row.subscription_id) + ("*" if set(lineage.chain) & set(struck) else ""),
                row.kind.label,
                row.kind.object_type,
                row.consumer,
                "same" if lineage.swaps == 0 else short(lineage.tip),
                str(lineage.swaps),
                "-" if age is None else f"{max(0.0, age.total_seconds()):.0f}s",
                state,
                str(sum(world.monite.regenerate_count(sid) for sid in lineage.chain)),
                _matches(world, lineage, listed),
                *(str(sum(c.get(name, 0) for c in counts)) for name in _COUNTED),
            )
        )
    return table


_COUNTED = ("verified", "duplicates", "rejected")


def _matches(world: World, lineage: Lineage, listed: set[str]) -> str:
    """`yes` when every live record of the lineage holds its subscription's current secret."""
    if lineage.records[lineage.tip] is None:
        return "no record"
    for sid in lineage.live():
        record = lineage.records[sid]
        if record is None or sid not in listed or not holds_current(world, sid, record):
            return "NO"
    return "yes"


def print_lineage_table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    print("", file=out)
    print_table(HEADER, rows, out)
    print(
        "\nA row is a subscription as seeded; LIVE NOW is the one its lineage delivers through\n"
        "now (successor_id followed through retired records), SWAPS how many successors it\n"
        "had, STATE that record's (and an original's still in its overlap). Deliveries are\n"
        "counted over the lineage; DUPLICATES were verified and dropped as already handled.",
        file=out,
    )


@dataclass(frozen=True)
class GroupTotals:
    """One group's consumer: everything it verified, dropped as a duplicate, and rejected."""

    verified: int
    duplicates: int
    rejected: int
    given_up: int


def group_totals(
    world: World, lineages: Sequence[Lineage], deliveries: DeliverySnapshot
) -> dict[str, GroupTotals]:
    totals = {}
    for group in world.groups:
        counts = world.consumers[group].stats().values()
        ids = {sid for lin in lineages if lin.row.consumer == group for sid in lin.chain}
        totals[group] = GroupTotals(
            verified=sum(c.get("verified", 0) for c in counts),
            duplicates=sum(c.get("duplicates", 0) for c in counts),
            rejected=sum(c.get("rejected", 0) for c in counts),
            given_up=sum(
                deliveries.subscriptions[sid].failed
                for sid in ids
                if sid in deliveries.subscriptions
            ),
        )
    return totals


def print_groups(totals: Mapping[str, GroupTotals], out: TextIO) -> None:
    swap, regenerate = totals[SWAP], totals[REGENERATE]
    print(
        f"\nDeliveries per group. Both consumers reload from Vault every {POLL_EVERY:g}s and\n"
        "never re-read on a mismatch; Monite retries a rejected event a few times.",
        file=out,
    )
    rows = [
        (name, str(getattr(swap, field)), str(getattr(regenerate, field)))
        for name, field in (
            ("  rejected", "rejected"),
            ("  verified", "verified"),
            ("  duplicates dropped", "duplicates"),
            ("  given up by Monite", "given_up"),
        )
    ]
    print_table(("  DELIVERIES", SWAP.upper(), REGENERATE.upper()), rows, out)
    print(
        "  Swap: an original's secret never changes, so it verifies until the original is\n"
        "  deleted; a successor's secret is in Vault before the consumer first sees it, and\n"
        "  the events both deliver during the overlap are dropped the second time by id.\n"
        "  Regenerate: Monite kills the old secret at once, and the consumer rejects\n"
        f"  deliveries until its next reload (up to {POLL_EVERY:g}s).",
        file=out,
    )
    if swap.rejected:
        print(
            "  A swap rejection is a delivery through a successor in the milliseconds between\n"
            "  Monite's create answer and the commit (docs/swap.md, Q7): its consumer cached\n"
            '  "no record" until its next reload. The same event came through the original.',
            file=out,
        )


def problems(world: World, settings: Settings, lineages: Sequence[Lineage]) -> list[str]:
    """What breaks `Vault holds Monite's current secret`, looking from both sides."""
    found = []
    listed = world.monite.subscription_ids()
    for sid in listed:
        record = world.read_record(settings, sid)
        if record is None:
            found.append(f"{short(sid)} is at Monite without a record in Vault")
        elif record.state == "retired":
            found.append(f"{short(sid)} is at Monite although its record is retired")
        elif not holds_current(world, sid, record):
            found.append(f"{short(sid)}'s record does not hold Monite's current secret")
    for lineage in lineages:
        for sid in lineage.live():
            if sid not in listed:
                state = _state(lineage.records[sid])
                found.append(
                    f"{short(sid)}'s record is {state}, but Monite has no such subscription"
                )
    return found


def print_verdict(found: Sequence[str], out: TextIO) -> None:
    if not found:
        print(
            "\nEvery record in Vault holds Monite's current secret (a retired one holds none: its\n"
            "subscription is deleted), and every subscription at Monite has one: nothing was lost.",
            file=out,
        )
        return
    print("\nMISMATCH: " + "\n          ".join(found), file=out)
