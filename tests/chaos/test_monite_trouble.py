"""Scenario 3: Monite trouble: no crash, and convergence within six cycles.

Faults: 429 storms (injected for a cycle, and from the gateway's real limiter), 5xx
bursts and outages, timeouts, connections dropped after an applied
regenerate, malformed JSON, a pagination token that loops, the same id on two
pages, unknown enum values and unknown fields, very large pages, slow answers.

Timeouts on regenerate itself have their own test below: a timed-out
regenerate that Monite applies after its retry leaves the record `settling`,
and it is rotated again once the settling window has passed.

A cycle is one `rotator run --once`; between cycles the harness waits out live
claims and settling windows the way the daemon does (its one-off check at the
earliest end), on Vault's clock: it moves the Vault emulator's clock past them
rather than sleeping, since Vault's time is what judges them. Six cycles: the
subscriptions start unmanaged, so the first rotation settles and is rotated
once more; one refused by a 429 (a storm that lasts the whole test, against a 5
s claim) is `stale`, rotated in the next cycle, settles, and is rotated again;
a refusal can strike twice.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.chaos.conftest import WorldFactory
from tests.chaos.harness import (
    CLAIM_TTL,
    FIGURES,
    RECOVERY_SLACK,
    World,
    parallel,
    tracebacks,
    trials,
    wait_until,
)

Arm = Callable[[World], None]


def _nothing(world: World) -> None:
    return None


@dataclass(frozen=True)
class Fault:
    name: str
    arm: Arm  # before cycle 1
    disarm: Arm = _nothing  # after cycle 1 (a fault that lasts one cycle)
    count: int = 5  # subscriptions seeded
    seed: dict[str, Any] = field(default_factory=dict)
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    world: dict[str, Any] = field(default_factory=dict)
    extra: Arm = _nothing  # more seeding (a mix of odd subscriptions)


def _set(**knobs: Any) -> Arm:
    def arm(world: World) -> None:
        for name, value in knobs.items():
            setattr(world.monite.faults, name, value)

    return arm


def _odd_subscriptions(world: World) -> None:
    world.seed(
        2,
        object_type="quantum_ledger",
        event_types=("teleported", "created"),
        extra={"priority": "urgent", "labels": {"team": ["a", "b"]}, "retries": 3},
    )
    world.seed(1, object_type="payable", extra={"secret_hint": None, "version": 2})
    # An unknown status is not "enabled": left alone, never a crash.
    world.monite.seed(object_type="payable", status="paused")


FAULTS: tuple[Fault, ...] = (
    # For a cycle: a storm that never ends, against a 5 s claim, is a coin toss
    # per rotation (every refusal of a record that cannot vouch costs a settling
    # window), and its cycle count a random walk rather than a figure.
    Fault(
        "429 storm (30% of calls) for a cycle",
        _set(error_status=429, error_rate=0.3),
        _set(error_rate=0.0),
    ),
    Fault("429 from the gateway limiter (5 req/s)", _nothing, count=15, world={"rate_limit": 5}),
    Fault("5xx burst on regenerate", _set(fail_regenerate=6)),
    Fault(
        "5xx outage for a cycle",
        _set(error_status=503, error_rate=1.0),
        _set(error_rate=0.0),
    ),
    Fault("timeouts on listing for a cycle", _set(hang=1.5), _set(hang=0.0)),
    Fault("dropped after regenerate applied", _set(drop_after_regenerate=4)),
    Fault("malformed JSON", _set(malformed_json=4)),
    Fault(
        "pagination token loops for a cycle",
        _set(pagination_loop=True),
        _set(pagination_loop=False),
        count=7,
        config={"monite": {"page_size": 2}},
    ),
    Fault(
        "same id on two pages",
        _set(duplicate_across_pages=True),
        count=10,
        config={"monite": {"page_size": 3}},
    ),
    Fault("unknown enum values and fields", _nothing, count=2, extra=_odd_subscriptions),
    Fault(
        "very large pages (100 x 6 KB items)",
        _nothing,
        count=trials(120, 250),
        seed={"extra": {"description": "x" * 6000, "tags": [f"t{i}" for i in range(50)]}},
        config={"rotation": {"concurrency": 8}},
    ),
    Fault("slow answers (0.7 s, under the timeout)", _set(latency=0.7)),
)


@dataclass(frozen=True)
class Outcome:
    fault: str
    cycles: int
    exit_codes: list[int | None]
    tracebacks: list[str]
    lost: int
    over_rotated: list[str]  # ids regenerated more often than the faults can explain


def _one(make_world: WorldFactory, fault: Fault) -> Outcome:
    world = make_world(**fault.world)
    ids = world.seed(fault.count, **fault.seed)
    fault.extra(world)
    cfg = world.config(**fault.config)
    fault.arm(world)

    def after(cycle: int) -> None:
        if cycle == 1:
            fault.disarm(world)

    cycles, procs = world.converge(cfg, max_cycles=6, after_cycle=after)
    # Once settled, nothing is rotated again by a quiet fourth cycle.
    before = world.regenerations()
    procs.append(world.run_once(cfg))
    again = [sid for sid, n in world.regenerations().items() if n != before[sid]]
    return Outcome(
        fault=fault.name,
        cycles=cycles,
        exit_codes=[p.returncode for p in procs],
        tracebacks=tracebacks(procs),
        lost=world.lost(),
        over_rotated=again + [sid for sid in ids if world.monite.regenerate_count(sid) == 0],
    )


@pytest.mark.timeout(600)
def test_monite_trouble_converges_within_six_cycles(make_world: WorldFactory) -> None:
    """Every Monite fault: no traceback, exit codes 0/1/69 only, settled within 6 cycles, 0 lost."""
    plan = [f for f in FAULTS for _ in range(trials(1, 3))]
    results = parallel(lambda f: _one(make_world, f), plan, workers=trials(5, 4))
    for r in results:
        FIGURES.add(
            "3-monite-trouble",
            title="Monite trouble (`run --once` cycles)",
            command="CHAOS_PROFILE=full .venv/bin/pytest tests/chaos/test_monite_trouble.py "
            "-k six_cycles",
            fault=r.fault,
            lost=r.lost,
            cycles_to_converge=r.cycles,
        )
    expected = [(r.fault, True, True, [], 0, []) for r in results]
    actual = [
        (
            r.fault,
            r.cycles <= 6,
            set(r.exit_codes) <= {0, 1, 69},
            r.tracebacks,
            r.lost,
            r.over_rotated,
        )
        for r in results
    ]
    assert expected == actual, [(r.fault, r.cycles, r.exit_codes) for r in results]


@pytest.mark.timeout(240)
def test_regenerate_applied_after_its_retry_is_not_lost(make_world: WorldFactory) -> None:
    """A timed-out regenerate that Monite applies after the retry's must not leave a dead secret."""
    world = make_world()
    [sid] = world.seed(1)
    cfg = world.config(rotation={"concurrency": 1})
    # A slow Vault holds the claim write open, so the stall below is switched on
    # after the listing and before the first regenerate, every time. The window is
    # the point: 0.8 s (under the 2 s Vault timeout) leaves a loaded machine time
    # to switch it on.
    world.vault.faults.latency = 0.8
    daemon = world.spawn("run", config=cfg)
    monite = world.monite
    assert wait_until(lambda: world.vault.request_count("kv_write") >= 1, 20)
    # Attempts 1 and 2 stall 3 s at Monite (past the 1 s client timeout); attempt 3 is
    # answered at once and committed; then attempts 1 and 2 are applied, in that order.
    monite.faults.hang = 3.0
    world.vault.faults.latency = 0.0
    assert wait_until(lambda: monite.request_count("regenerate_secret") >= 2, 30)
    # Attempt 2 read the stall when it was counted; attempt 3 comes at least the
    # 1 s client timeout later. The stall ends inside that window, early in it (a
    # late wake-up on a loaded machine must not stall attempt 3 too).
    time.sleep(0.3)
    monite.faults.hang = 0.0
    assert wait_until(lambda: 3 == monite.regenerate_count(sid), 30)
    # The commit settles (an attempt timed out), and the daemon rotates once more
    # when the window has passed: wait (bounded generously for a loaded machine)
    # for every record to be `active` again.
    wait_until(world.settled, 3 * CLAIM_TTL + RECOVERY_SLACK + 40)
    daemon.signal(signal.SIGTERM)
    code = daemon.wait(30)
    daemon.close()
    FIGURES.add(
        "3b-late-regenerate",
        title="Regenerate applied by Monite after its retry (daemon)",
        command=".venv/bin/pytest tests/chaos/test_monite_trouble.py -k after_its_retry",
        fault="regenerate applied late (hang 3 s, timeout 1 s)",
        lost=world.lost(),
    )
    assert (0, []) == (code, world.mismatched())
