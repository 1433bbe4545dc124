"""Bench rows h and j (`tests/perf/swap.py`) run in miniature: they work and fill every figure.

Nothing here is timed and no figure's value is judged: the benchmark prints
figures, tests never time (README, "Performance"). What is checked is what
the bench relies on: the emulators' request counters see one create, one GET
and one DELETE per swap, every original is retired, every figure h and j
declare is filled in, and row j's swapping group follows its lineage (the
successors it commits are the ids it forces next).
"""

from __future__ import annotations

import random

from tests.perf.common import Budget, Scenario
from tests.perf.consumers import Kind, analyse, continuity
from tests.perf.swap import MassRun, h_expect, h_figures, j_expect, j_figures, mass_run

# monite.timeout 1 s -> claim_ttl 4 s -> overlap 8 s (2 x claim_ttl, the least allowed).
# A 0.5 s timeout made row h flaky: under 4 xdist workers on 2 cores the
# in-process emulator once took longer than that to answer a create, and the
# swap failed with monite_error.
FAST = {
    "ROTATOR_MONITE__TIMEOUT": "1s",
    "ROTATOR_ROTATION__CLAIM_TTL": "4s",
    "ROTATOR_ROTATION__OVERLAP": "8s",
}
FAST_TOML = '[monite]\ntimeout = "0.5s"\n\n[rotation]\nclaim_ttl = "2s"\noverlap = "4s"\n'


def test_row_h_counts_the_calls_of_every_swap_and_fills_its_figures() -> None:
    swap = mass_run(4, "swap", Budget(60.0), FAST, virtual_overlap=True)
    assert (4, 4, 0) == (swap.linked, swap.retired, swap.failed), swap.other
    assert (4, 4) == (swap.consistent, swap.live)
    monite = swap.requests("monite")
    assert (4, 4, 4) == (monite["create"], monite["get"], monite["delete"])
    assert 0 == monite["regenerate_secret"]
    # A made-up regenerate run: the figures' arithmetic, not a second emulator start.
    regen = MassRun(
        "regenerate",
        4,
        linked=4,
        link_wall=0.5,
        link_counts={"monite": {"regenerate_secret": 4, "list": 1}, "vault": {"kv_write": 8}},
    )
    scenario = Scenario("h", "h")
    h_expect(scenario)
    h_figures(scenario, swap, regen)
    unset = [k for k, f in scenario.figures.items() if f.value is None and f.text is None]
    assert [] == unset
    assert 1.25 == scenario.figures["calls_per_regenerate"].value
    assert {"swap", "regenerate"} <= set(scenario.data)


def test_row_j_swaps_a_group_along_its_lineage_and_fills_its_figures() -> None:
    kinds = [
        Kind("poll1_regenerate", "poll 1 s, regenerate", 1.0, False, False, 1, 1, (2.5, 3.0)),
        Kind("poll1_swap", "poll 1 s, swap", 1.0, False, False, 1, 2, (2.5, 3.0), strategy="swap"),
    ]
    result = continuity(
        kinds,
        5.5,
        Budget(60.0),
        random.Random(7),
        settings=FAST_TOML,
        dedupe=True,
        distinct_triples=True,
    )
    regenerated, swapped = (analyse(result, kind) for kind in kinds)
    # One group of each kind, forced at least once (a swap refused under load is not committed).
    assert regenerated.rotations + swapped.rotations + result.not_committed >= 3
    assert swapped.rotations >= 1
    # Each swap's commit is its successor's record, and the kind follows its lineage.
    ids = result.subscriptions["poll1_swap"]
    assert len(ids) == 2 + swapped.rotations
    assert {c.subscription_id for c in result.commits} >= set(ids[2:])
    scenario = Scenario("j", "j")
    j_expect(scenario, kinds)
    j_figures(scenario, 1.0, result)
    assert all(f.value is not None for f in scenario.figures.values())
    assert {"poll1_regenerate", "poll1_swap"} == set(scenario.data["worlds"][0]["kinds"])
