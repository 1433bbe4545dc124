"""The demo's run: seed, accelerated cycles with a fault and a forced rotation, the report."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TextIO

from rotator.app import open_engine
from rotator.audit import ROTATION_SKIPPED, configure_logging, reset_logging
from rotator.clock import SystemClock
from rotator.config import Settings
from rotator.engine import Engine
from rotator.model import Record
from rotator.policy import Force
from rotator.sandbox.demo import _story as story
from rotator.sandbox.demo._world import INTERVAL, Row, World
from rotator.sandbox.hook_latencies import HookLatencies


async def run_cycles(
    engine: Engine, world: World, rows: Sequence[Row], duration: float, out: TextIO
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
            force, forced_done = _force(forced, out), True
        await _cycle(engine, world, cycle, force, out)
        remaining = duration - (clock.monotonic() - start)
        await clock.sleep(min(INTERVAL, max(0.0, remaining)))
    if not forced_done:
        await _cycle(engine, world, cycle + 1, _force(forced, out), out)


def _force(rows: Sequence[Row], out: TextIO) -> Force:
    story.forced_announced(rows, out)
    return Force(ids=frozenset(r.subscription_id for r in rows))


async def _cycle(
    engine: Engine, world: World, number: int, force: Force | None, out: TextIO
) -> None:
    struck_before = len(world.monite.dropped_answers())
    report = await engine.run_cycle(force)
    story.cycle_summary(number, report, out)
    story.fault_explained(world.monite.dropped_answers()[struck_before:], out)


def read_records(world: World, settings: Settings, rows: Sequence[Row]) -> dict[str, Record | None]:
    """Every seeded subscription's record as Vault holds it now (None: no record)."""
    records: dict[str, Record | None] = {}
    for row in rows:
        sid = row.subscription_id
        found = world.vault.kv_read(settings.vault.mount, f"{settings.vault.path_prefix}/{sid}")
        records[sid] = None if found is None else Record.from_vault(sid, *found)
    return records


def ages(records: dict[str, Record | None], now: datetime) -> dict[str, str]:
    shown = {}
    for sid, record in records.items():
        age = None if record is None else record.age(now)
        shown[sid] = "-" if age is None else f"{max(0.0, age.total_seconds()):.0f}s"
    return shown


async def _demo(duration: float, out: TextIO) -> int:
    with tempfile.TemporaryDirectory(prefix="rotator-demo-") as tmp, World(Path(tmp)) as world:
        settings = world.settings()
        configure_logging(
            fmt="console", level="info", stream=out, omit={ROTATION_SKIPPED}, view=story.narrow
        )
        story.intro(world, duration, out)
        rows = await world.seed(settings, SystemClock().now())
        hooks = HookLatencies()
        world.start_deliveries()
        async with open_engine(settings, owner="demo", hook_observer=hooks) as engine:
            await run_cycles(engine, world, rows, duration, out)
        deliveries = world.stop_deliveries()
        reset_logging()
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


def run_demo(*, duration: float = 30.0, out: TextIO | None = None) -> int:
    """Run the demo; returns the exit code (0 when Vault matches Monite everywhere)."""
    return asyncio.run(_demo(duration, out or sys.stdout))
