"""The demo's run: seed, accelerated cycles with a fault and a forced rotation, the report.

With `strategy="swap"` the closing report follows lineages (`_lineage`).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TextIO

from rotator import events
from rotator.app import open_engine
from rotator.audit import ROTATION_SKIPPED, configure_logging, reset_logging
from rotator.clock import SystemClock
from rotator.config import Settings
from rotator.engine import Engine
from rotator.model import Record
from rotator.policy import Force
from rotator.sandbox.deliveries import DeliverySnapshot
from rotator.sandbox.demo import _lineage as lineage
from rotator.sandbox.demo import _story as story
from rotator.sandbox.demo._world import INTERVAL, Row, Strategy, World
from rotator.sandbox.hook_latencies import HookLatencies

# A swap's steps between its start, its commit and its retirement: the cycle summary
# says what they did (`rotator run` logs them all).
SWAP_STEPS_OMITTED = frozenset(
    {events.SWAP_CREATED, events.SWAP_LINKED, events.SWAP_OVERLAP_ENDED, events.SWAP_DELETED}
)


async def run_cycles(
    engine: Engine,
    world: World,
    settings: Settings,
    rows: Sequence[Row],
    duration: float,
    out: TextIO,
) -> None:
    """Cycles every INTERVAL seconds; a dropped connection in cycle 2, a forced rotation midway."""
    clock = SystemClock()
    start = clock.monotonic()
    forced = [r for r in rows if r.kind.label == "fresh"]
    cycle = 0
    forced_done = False
    while clock.monotonic() - start < duration:
        cycle += 1
        if cycle == 2:
            story.fault_announced(out)
            world.monite.faults.drop_after_regenerate = 1
        force = None
        if not forced_done and clock.monotonic() - start >= duration / 2:
            force, forced_done = _force(world, settings, forced, out), True
        await _cycle(engine, world, cycle, force, out)
        remaining = duration - (clock.monotonic() - start)
        await clock.sleep(min(INTERVAL, max(0.0, remaining)))
    if not forced_done:
        await _cycle(engine, world, cycle + 1, _force(world, settings, forced, out), out)


def _force(world: World, settings: Settings, rows: Sequence[Row], out: TextIO) -> Force:
    """Force the rows' subscriptions; after a swap, the live one of each lineage."""
    ids = [r.subscription_id for r in rows]
    if world.strategy == "swap":
        ids = [lineage.read_lineage(world, settings, r).tip for r in rows]
    story.forced_announced(ids, out)
    return Force(ids=frozenset(ids))


async def _cycle(
    engine: Engine, world: World, number: int, force: Force | None, out: TextIO
) -> None:
    struck_before = len(world.monite.dropped_answers())
    report = await engine.run_cycle(force)
    story.cycle_summary(number, report, out)
    story.fault_explained(world.monite.dropped_answers()[struck_before:], out)


def read_records(world: World, settings: Settings, rows: Sequence[Row]) -> dict[str, Record | None]:
    """Every seeded subscription's record as Vault holds it now (None: no record)."""
    return {row.subscription_id: world.read_record(settings, row.subscription_id) for row in rows}


def ages(records: dict[str, Record | None], now: datetime) -> dict[str, str]:
    shown = {}
    for sid, record in records.items():
        age = None if record is None else record.age(now)
        shown[sid] = "-" if age is None else f"{max(0.0, age.total_seconds()):.0f}s"
    return shown


async def _demo(duration: float, strategy: Strategy, out: TextIO) -> int:
    with (
        tempfile.TemporaryDirectory(prefix="rotator-demo-") as tmp,
        World(Path(tmp), strategy) as world,
    ):
        settings = world.settings()
        omit = {ROTATION_SKIPPED} | (SWAP_STEPS_OMITTED if strategy == "swap" else set())
        configure_logging(fmt="console", level="info", stream=out, omit=omit, view=story.narrow)
        story.intro(world, duration, out)
        rows = await world.seed(settings, SystemClock().now())
        hooks = HookLatencies()
        world.start_deliveries()
        async with open_engine(settings, owner="demo", hook_observer=hooks) as engine:
            await run_cycles(engine, world, settings, rows, duration, out)
        deliveries = world.stop_deliveries()
        reset_logging()
        if strategy == "swap":
            return _swap_report(world, settings, rows, deliveries, out)
        records = read_records(world, settings, rows)
        struck = world.monite.dropped_answers()
        table = story.subscription_table(
            world, rows, records, ages(records, SystemClock().now()), struck
        )
        print("", file=out)
        story.print_table(story.HEADER, table, out)
        story.print_consumers(story.consumer_totals(world, rows, deliveries), hooks, out)
        all_match = all(
            story.holds_current(world, sid, record)
            for sid, record in records.items()
            if record is not None
        )
        verdict = (
            "Every record in Vault holds Monite's current secret: nothing was lost."
            if all_match
            else "MISMATCH: some record in Vault does not hold Monite's current secret."
        )
        print(f"\n{verdict}", file=out)
        if any(r is not None and r.state == "settling" for r in records.values()):
            print(
                "A `settling` record is rotated once more when its window has passed: it was\n"
                "just taken under management, or an earlier regenerate could still land.",
                file=out,
            )
        return 0 if all_match else 1


def _swap_report(
    world: World,
    settings: Settings,
    rows: Sequence[Row],
    deliveries: DeliverySnapshot,
    out: TextIO,
) -> int:
    """The lineage table, the two groups side by side, the verdict on live subscriptions."""
    lineages = lineage.read_lineages(world, settings, rows)
    table = lineage.lineage_table(
        world, lineages, SystemClock().now(), world.monite.dropped_answers()
    )
    lineage.print_lineage_table(table, out)
    lineage.print_groups(lineage.group_totals(world, lineages, deliveries), out)
    found = lineage.problems(world, settings, lineages)
    lineage.print_verdict(found, out)
    if any(_tip_state(lin) == "settling" for lin in lineages):
        print(
            "A `settling` record is rotated once more when its window has passed: an earlier\n"
            "regenerate could still land.",
            file=out,
        )
    return 1 if found else 0


def _tip_state(found: lineage.Lineage) -> str | None:
    record = found.records[found.tip]
    return None if record is None else record.state


def run_demo(
    *, duration: float = 30.0, out: TextIO | None = None, strategy: Strategy = "regenerate"
) -> int:
    """Run the demo; returns the exit code (0 when Vault matches Monite everywhere).

    `strategy="swap"`: one group of subscriptions rotated by swap, one by regenerate.
    """
    return asyncio.run(_demo(duration, strategy, out or sys.stdout))
