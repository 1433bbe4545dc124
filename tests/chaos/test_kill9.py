"""Scenario 1: `kill -9` at every step of the protocol, then restart and time the recovery.

The step is detected from the emulators' request counters, and the window is
held open by a fault so the kill lands where it should:

- after_claim: Vault is slow, the kill lands while the claim write is in
  Vault's hands; the claim is applied, Monite is never asked.
- regenerate_in_flight: Monite hangs; the kill lands after the regenerate
  request arrived, Monite applies it afterwards and the answer goes nowhere.
- before_commit: Vault refuses writes after the regenerate; the process holds
  the new secret in memory, retrying the commit, when it dies.
- after_commit: the kill lands after the first commit is in Vault.
- random: at a random moment of a cycle.

Recovery time runs from the kill until every record is back to `active` and
holds Monite's current secret; the bound is claim_ttl plus a few seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from tests.chaos.conftest import WorldFactory
from tests.chaos.harness import (
    CLAIM_TTL,
    FIGURES,
    RECOVERY_SLACK,
    World,
    parallel,
    rng,
    trials,
    wait_until,
)

STEPS = ("after_claim", "regenerate_in_flight", "before_commit", "after_commit")
SUBSCRIPTIONS = 4
# Protocol v2: the claim expires (claim_ttl), the takeover settles (up to
# 2 x claim_ttl for a record that never held a secret), then one more rotation.
RECOVERY_BOUND = 3 * CLAIM_TTL + 2 * RECOVERY_SLACK


@dataclass(frozen=True)
class Trial:
    step: str
    mode: str  # "once": kill `run --once`, recover with `run --once`; "daemon": `run`
    number: int


@dataclass(frozen=True)
class Result:
    trial: Trial
    step_reached: bool  # the counters showed the intended step before the kill
    landed: str  # where the kill actually landed, from the emulators' state afterwards
    recovery_s: float
    lost: int
    regenerations: int


def _landed(world: World) -> str:
    """Where a kill landed, read from the emulators after the dust settled."""
    if world.mismatched():
        return "secret_only_at_monite"
    if world.rotating():
        return "claimed_not_regenerated"
    if world.managed():
        return "committed"
    return "before_claim"


def _kill_at(world: World, trial: Trial, seconds: float) -> tuple[bool, float]:
    """Start a rotator, hold the step's window open, kill -9 in it; (step reached, kill time)."""
    monite, vault = world.monite, world.vault
    cfg = world.config(rotation={"concurrency": 1})
    args = ("run", "--once") if trial.mode == "once" else ("run",)
    reached = False
    if trial.step == "after_claim":
        vault.faults.latency = 0.4
        proc = world.spawn(*args, config=cfg)
        reached = wait_until(lambda: vault.request_count("kv_write") >= 1, 20)
        at = proc.kill9()
        # The claim write is still in Vault's hands; it lands, and Monite is never asked.
        reached = reached and wait_until(lambda: bool(world.rotating()), 20)
        reached = reached and 0 == monite.request_count("regenerate_secret")
        vault.faults.latency = 0.0
    elif trial.step == "regenerate_in_flight":
        monite.faults.hang = 0.4
        proc = world.spawn(*args, config=cfg)
        reached = wait_until(lambda: monite.request_count("regenerate_secret") >= 1, 20)
        at = proc.kill9()
        # Monite applies the regenerate after the hang; its answer has nobody to go to.
        reached = reached and wait_until(lambda: sum(world.regenerations().values()) >= 1, 20)
        monite.faults.hang = 0.0
        reached = reached and bool(world.mismatched())
    elif trial.step == "before_commit":
        monite.faults.latency = 0.3
        proc = world.spawn(*args, config=cfg)
        reached = wait_until(lambda: monite.request_count("regenerate_secret") >= 1, 20)
        # The claim is in (the regenerate follows it); from now on Vault refuses writes.
        vault.faults.fail_writes = 10**6
        writes = vault.request_count("kv_write")
        reached = reached and wait_until(
            lambda: (
                sum(world.regenerations().values()) >= 1
                and vault.request_count("kv_write") > writes
            ),
            30,  # the commit is retried for commit_retry_for (60s): any wait inside it will do
        )
        at = proc.kill9()
        vault.faults.fail_writes = 0
        monite.faults.latency = 0.0
        reached = reached and bool(world.mismatched())
    elif trial.step == "after_commit":
        monite.faults.latency = 0.2
        proc = world.spawn(*args, config=cfg)

        def committed() -> bool:
            return any(
                (world.record(sid) or {}).get("state") in ("active", "settling")
                for sid in world.seeded
            )

        reached = wait_until(committed, 20, 0.005)
        at = proc.kill9()
        monite.faults.latency = 0.0
    else:  # random
        monite.faults.latency = 0.1
        proc = world.spawn(*args, config=cfg)
        time.sleep(seconds)
        at = proc.kill9()
        monite.faults.latency = 0.0
        reached = True
    time.sleep(0.5)  # let requests the dead process left behind finish at the emulators
    return reached, at


def _run_trial(make_world: WorldFactory, trial: Trial, seconds: float) -> Result:
    world = make_world()
    world.seed(SUBSCRIPTIONS)
    reached, killed_at = _kill_at(world, trial, seconds)
    landed = _landed(world)
    budget = RECOVERY_BOUND + 15
    if trial.mode == "once":
        took = world.recover_with_run_once(killed_at, budget)
    else:
        took = world.recover_with_daemon(killed_at, budget)
    return Result(
        trial=trial,
        step_reached=reached,
        landed=landed,
        recovery_s=took,
        lost=world.lost(),
        regenerations=sum(world.regenerations().values()),
    )


def _plan(mode: str, per_step: int, random_trials: int) -> list[Trial]:
    plan = [Trial(step, mode, n) for step in STEPS for n in range(per_step)]
    plan += [Trial("random", mode, n) for n in range(random_trials)]
    return plan


def _check(results: list[Result], mode: str) -> None:
    for r in results:
        FIGURES.add(
            f"1-kill9-{mode}",
            title=f"kill -9 of `{'run --once' if mode == 'once' else 'run'}` at each step",
            command=f"CHAOS_PROFILE=full .venv/bin/pytest tests/chaos/test_kill9.py -k {mode}",
            fault=f"kill -9 {r.trial.step}",
            lost=r.lost,
            recovery_s=r.recovery_s,
            regenerations=r.regenerations,
            **{f"worst_recovery_s[{r.trial.step}]": round(r.recovery_s, 2)},
        )
    expected = [(r.trial.step, r.trial.number, True, 0, True) for r in results]
    actual = [
        (
            r.trial.step,
            r.trial.number,
            r.step_reached,
            r.lost,
            r.recovery_s <= RECOVERY_BOUND,
        )
        for r in results
    ]
    assert expected == actual, [(r.trial.step, r.landed, round(r.recovery_s, 2)) for r in results]


@pytest.mark.timeout(600)
def test_kill9_run_once_at_every_step(make_world: WorldFactory) -> None:
    """kill -9 of `run --once` at every protocol step loses nothing; recovery ≤ claim_ttl + 5s."""
    random = rng("kill9-once")
    plan = _plan("once", trials(1, 6), trials(1, 12))
    delays = {t: random.uniform(0.5, 1.8) for t in plan}
    results = parallel(lambda t: _run_trial(make_world, t, delays[t]), plan, workers=trials(5, 4))
    _check(results, "once")


@pytest.mark.timeout(600)
def test_kill9_daemon_at_every_step(make_world: WorldFactory) -> None:
    """kill -9 of the daemon at protocol steps loses nothing; a restarted daemon recovers."""
    random = rng("kill9-daemon")
    steps = ["regenerate_in_flight"] if trials(1, 0) else list(STEPS)
    plan = [Trial(step, "daemon", 0) for step in steps]
    plan += [Trial("random", "daemon", n) for n in range(trials(0, 6))]
    delays = {t: random.uniform(0.5, 1.8) for t in plan}
    results = parallel(lambda t: _run_trial(make_world, t, delays[t]), plan, workers=4)
    _check(results, "daemon")
