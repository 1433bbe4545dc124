"""The deterministic simulation: the quick profile, and tests of the harness itself."""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from rotator.errors import MoniteUnavailable
from rotator.model import Record
from rotator.secret import Secret
from tests.sim.loop import Deadlock, SimClock, VirtualLoop
from tests.sim.models import Faults, MoniteModel, SimMonite, SimVaultStore, Window
from tests.sim.runner import QUICK, explain_failure, run_seeds
from tests.sim.scenario import Fault, Scenario, generate, run, shrink, strategy_of

WORKERS = min(2, os.cpu_count() or 1)

# One replica, one subscription, no faults: the smallest world a rotation runs in.
CALM = replace(
    generate(1),
    replicas=1,
    subscriptions=1,
    skews=(0.0,),
    max_age=600.0,
    fault_phase=900.0,
    faults=(),
)


def _quick(strategy: str) -> None:
    count = QUICK[strategy]
    figures = run_seeds(range(count), workers=WORKERS, strategy=strategy)
    print(f"\n{figures.report()}")
    explained = ""
    if figures.failed:
        explained = explain_failure(figures.failed[0].seed, strategy=strategy)[2]
        seeds = [s.seed for s in figures.failed]
        explained = f"failing seeds {seeds}\n{explained}"
    assert count == figures.scenarios
    assert [] == [s.seed for s in figures.failed], explained
    if strategy == "swap":
        assert True is (figures.events["swap.retired"] > count)


def test_quick_profile_loses_no_secret() -> None:
    """The quick profile's regenerate scenarios all keep every invariant: no secret is lost."""
    _quick("regenerate")


def test_quick_swap_profile_keeps_every_swap_invariant() -> None:
    """The quick profile's swap scenarios keep rule zero, one successor per swap, the overlap."""
    _quick("swap")


def test_virtual_loop_advances_time_without_sleeping() -> None:
    """An hour of asyncio.sleep, call_later and asyncio.timeout takes no wall time."""
    loop = VirtualLoop()
    fired: list[float] = []

    async def scenario() -> str:
        loop.call_later(1800.0, lambda: fired.append(loop.time()))
        await asyncio.sleep(3600.0)
        try:
            async with asyncio.timeout(10.0):
                await asyncio.sleep(60.0)
        except TimeoutError:
            return "timed out"
        return "no timeout"

    started = time.perf_counter()
    try:
        outcome = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert "timed out" == outcome
    assert [1800.0] == fired
    assert 3610.0 == pytest.approx(loop.time())
    assert True is (time.perf_counter() - started < 1.0)


def test_virtual_loop_reports_a_deadlock() -> None:
    """Waiting for something nobody will ever do raises Deadlock instead of hanging."""
    loop = VirtualLoop()

    async def stuck() -> None:
        await loop.create_future()

    try:
        with pytest.raises(Deadlock):
            loop.run_until_complete(stuck())
    finally:
        loop.close()


def test_same_seed_replays_the_same_events() -> None:
    """A seed is a replay: the same scenario gives the same event trace, another seed another."""
    first, second = run(generate(11)), run(generate(11))
    assert first.digest() == second.digest()
    assert first.regenerates == second.regenerates
    assert True is (len(first.trace) > 10)
    assert False is (first.digest() == run(generate(12)).digest())


def test_swap_scenario_replays_the_same_events() -> None:
    """A swap seed is a replay too, and differs from the regenerate scenario of the same seed."""
    first, second = run(generate(7, "swap")), run(generate(7, "swap"))
    assert first.digest() == second.digest()
    assert True is (first.events["swap.retired"] > 0)
    assert False is (first.digest() == run(generate(7)).digest())


def test_swap_scenarios_keep_the_overlap_within_its_bounds() -> None:
    """Every swap overlap is >= 2 x claim_ttl and < max_age, and the calm phase covers recovery."""
    bad = []
    for seed in range(300):
        s = generate(seed, "swap")
        recovery = s.cache_refresh + s.overlap + 3 * s.claim_ttl + 2 * s.interval * (1 + s.jitter)
        if not (2 * s.claim_ttl <= s.overlap < s.max_age and s.calm_phase() >= recovery):
            bad.append(seed)
    assert [] == bad


def test_swap_scenario_keeps_the_regenerate_plan() -> None:
    """A swap scenario has its seed's fault plan (times, kinds, windows); only targets differ."""
    plain, swap = generate(23), generate(23, "swap")
    assert [(f.kind, f.at, f.duration) for f in plain.faults] == [
        (f.kind, f.at, f.duration) for f in swap.faults
    ]
    assert ("regenerate", "swap") == (plain.strategy, swap.strategy)


def test_mixed_profile_swaps_odd_seeds() -> None:
    """--strategy mixed: odd seeds swap, even seeds regenerate."""
    assert ["regenerate", "swap", "regenerate", "swap"] == [
        strategy_of(seed, "mixed") for seed in range(4)
    ]


def test_scenario_survives_json() -> None:
    """A printed plan replays exactly: Scenario -> JSON -> Scenario is the identity."""
    scenario = generate(5)
    assert scenario == Scenario.from_json(scenario.to_json())


def test_calm_world_converges_at_once() -> None:
    """Without faults every subscription comes under management and stays converged."""
    result = run(CALM)
    assert [] == result.failures
    assert 0.0 == result.convergence


def _dropping_commits(*args: Any) -> SimVaultStore:
    """A store whose commits report success and change nothing: every new secret is lost."""
    store = SimVaultStore(*args)
    real_write = store.write

    async def write(record: Record, *, cas: int) -> Record:
        if record.state in ("active", "settling") and cas > 0:
            return record.at_version(cas + 1, await store.vault_now())
        return await real_write(record, cas=cas)

    store.write = write  # type: ignore[method-assign]
    return store


def _committing_wrong_secret(*args: Any) -> SimVaultStore:
    """A store whose commits say `active` over a secret Monite never issued."""
    store = SimVaultStore(*args)
    real_write = store.write

    async def write(record: Record, *, cas: int) -> Record:
        if record.state == "active" and cas > 0 and record.secret is not None:
            record = replace(record, secret=Secret("whsec_not-the-one-monite-has"))
        return await real_write(record, cas=cas)

    store.write = write  # type: ignore[method-assign]
    return store


CALM_SWAP = replace(CALM, strategy="swap", overlap=240.0, fault_phase=1800.0)


def test_calm_swap_world_retires_originals_and_keeps_one_subscription() -> None:
    """Without faults, swaps run to the end: originals retired, one live subscription each."""
    result = run(CALM_SWAP)
    assert [] == result.failures
    assert result.events["swap.committed"] - 1 <= result.events["swap.retired"]
    assert True is (result.events["swap.retired"] >= 2)


def _early_overlap(*args: Any) -> SimVaultStore:
    """A store whose link answers an overlap deadline an hour earlier than Vault holds."""
    store = SimVaultStore(*args)
    real_write = store.write

    async def write(record: Record, *, cas: int) -> Record:
        written = await real_write(record, cas=cas)
        if written.state == "retiring" and written.overlap_ends_at is not None:
            written = replace(written, overlap_ends_at=written.overlap_ends_at - timedelta(hours=1))
        return written

    store.write = write  # type: ignore[method-assign]
    return store


def test_checker_catches_an_original_deleted_before_its_overlap() -> None:
    """An original deleted at Monite before its record's overlap ends is seen at once."""
    result = run(CALM_SWAP, store_factory=_early_overlap)
    assert "EARLY_DELETE" == result.failures[0].split()[1]


def test_checker_catches_a_store_that_drops_commits() -> None:
    """The invariant can fail: a store that drops commits leaves secrets lost, and it is seen."""
    result = run(CALM, store_factory=_dropping_commits)
    kinds = sorted({f.split()[1] for f in result.failures})
    assert ["LOST", "STUCK"] == kinds


def test_checker_catches_an_active_record_with_a_dead_secret() -> None:
    """The safety invariant fires the moment an active record holds a secret Monite lacks."""
    result = run(CALM, store_factory=_committing_wrong_secret)
    assert "SAFETY" == result.failures[0].split()[1]


def test_shrinking_drops_faults_that_do_not_matter() -> None:
    """Shrinking a failing plan keeps it failing and removes the faults it does not need."""
    noisy = replace(
        CALM,
        replicas=2,
        skews=(0.0, 5.0),
        faults=(
            Fault("monite", 10.0, 50.0, "slow", 0.5),
            Fault("vault", 20.0, 10.0, "flaky", 0.1),
            Fault("crash", 30.0, 5.0, "now", 0.0, "1"),
        ),
    )
    small, result = shrink(noisy, store_factory=_dropping_commits)
    assert False is result.ok
    assert () == small.faults
    assert 1 == small.replicas


def _monite_world(windows: list[Window]) -> tuple[VirtualLoop, MoniteModel, SimMonite, list[str]]:
    loop = VirtualLoop()
    trace: list[str] = []
    model = MoniteModel(
        ["sub-0"], rng=random.Random("secrets"), on_change=lambda sid: None, trace=trace.append
    )
    faults = Faults(rng=random.Random("faults"), monite=windows)
    source = SimMonite(
        loop, model, SimClock(loop, skew=0.0), faults, timeout=10.0, straggle_for=120.0
    )
    return loop, model, source, trace


def test_sim_monite_creates_with_a_fresh_secret_and_deletes() -> None:
    """The in-memory Monite's create makes a subscription with its own secret; delete removes it."""
    loop, model, source, trace = _monite_world([])

    async def swap() -> tuple[str, bool, bool]:
        created = await source.create_subscription(
            "https://consumer.example/hooks/0", "payable", ["created"]
        )
        assert created.secret.reveal() == model.current[created.subscription.id]
        return (
            created.subscription.id,
            await source.delete_subscription("sub-0"),
            await source.delete_subscription("sub-0"),
        )

    try:
        new_id, deleted, again = loop.run_until_complete(swap())
    finally:
        loop.close()
    assert ("sub-new-1", True, False) == (new_id, deleted, again)
    assert ([new_id], ["monite.create sub-new-1", "monite.delete sub-0"]) == (
        list(model.subscriptions),
        trace,
    )
    assert [new_id] == list(model.current)


def test_sim_monite_create_straggler_lands_within_claim_ttl() -> None:
    """A create that times out as a straggler is created later, within claim_ttl of sending."""
    loop, model, source, _trace = _monite_world([Window(0.0, 1e9, "straggle", 1.0)])

    async def attempts() -> list[tuple[str, float, int]]:
        seen = []
        for _ in range(12):
            before, sent = len(model.subscriptions), loop.time()
            try:
                await source.create_subscription("https://consumer.example/x", "payable", [])
                fate = "ok"
            except MoniteUnavailable as exc:
                fate = "doubtful" if exc.may_have_applied and not exc.retryable else "other"
            now = len(model.subscriptions) - before
            await asyncio.sleep(120.0)
            seen.append((fate, loop.time() - sent, len(model.subscriptions) - before - now))
        return seen

    try:
        seen = loop.run_until_complete(attempts())
    finally:
        loop.close()
    assert {"doubtful"} == {fate for fate, _, _ in seen}
    # Some land before the answer, some after it (stragglers), some never.
    assert {0, 1} == {late for _, _, late in seen}
    assert True is (len(model.subscriptions) - 1 < len(seen))


def test_sim_monite_create_lost_in_an_outage_is_not_retryable_when_it_may_have_landed() -> None:
    """In an outage a create is refused (safe to retry) or lands unanswered (not retryable)."""
    loop, model, source, _trace = _monite_world([Window(0.0, 1e9, "outage", 1.0)])

    async def attempts() -> list[tuple[bool, bool, int]]:
        seen = []
        for _ in range(8):
            before = len(model.subscriptions)
            try:
                await source.create_subscription("https://consumer.example/x", "payable", [])
            except MoniteUnavailable as exc:
                landed = len(model.subscriptions) - before
                seen.append((exc.may_have_applied, exc.retryable, landed))
        return seen

    try:
        seen = loop.run_until_complete(attempts())
    finally:
        loop.close()
    assert [] == [s for s in seen if s not in ((False, True, 0), (True, False, 1))]
    assert {(False, True, 0), (True, False, 1)} == set(seen)


@pytest.mark.parametrize("seed", [227, 243, 497])
def test_seeds_that_found_swap_bugs_now_keep_every_invariant(seed: int) -> None:
    """The seeds that found the swap bugs (successor retired first, twins, late delete) pass."""
    assert [] == run(generate(seed, "swap")).failures
