"""Run many scenarios (over worker processes), add up the figures, shrink failures."""

from __future__ import annotations

import collections
import gc
import multiprocessing
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace

from tests.sim.scenario import Result, Scenario, generate, run, shrink, strategy_of

PROFILES = {"quick": 1_000, "full": 100_000}
# What `make test` runs of the quick profile, per strategy: every regenerate
# seed, and as many swap seeds as keep the wall time within +50% (a swap
# scenario costs about 1.6 regenerate ones in CPU time: 35 ms against 22 ms).
QUICK = {"regenerate": PROFILES["quick"], "swap": 250}
# Faults after which a claim or a record's change may be invisible to every
# live replica until its cache refresh: a one-shot forced rotation that left a
# claim, and a record deleted from Vault.
HIDING_FAULTS = frozenset({"force", "delete"})


@dataclass(frozen=True, slots=True)
class Summary:
    """What a worker sends back for one scenario (no trace, no secret)."""

    seed: int
    failures: tuple[str, ...]
    convergence: float | None
    regenerates: tuple[int, ...]
    injected: dict[str, int]
    events: dict[str, int]
    virtual_seconds: float
    # The promise: 2 × claim_ttl + two cycles (interval with jitter); a swap
    # scenario adds its overlap and one more claim_ttl (docs/swap.md, section 8).
    bound: float
    hidden_claims: bool  # a fault that can hide a claim from every live replica's cache
    swap: bool = False

    @classmethod
    def of(cls, result: Result) -> Summary:
        s = result.scenario
        bound = 2 * s.claim_ttl + 2 * s.interval * (1 + s.jitter)
        if s.swap:
            bound += s.overlap + s.claim_ttl
        return cls(
            bound=bound,
            swap=s.swap,
            hidden_claims=any(f.kind in HIDING_FAULTS for f in s.faults),
            seed=result.scenario.seed,
            failures=tuple(result.failures),
            convergence=result.convergence,
            regenerates=tuple(result.regenerates[k] for k in sorted(result.regenerates)),
            injected=dict(result.injected),
            events=dict(result.events),
            virtual_seconds=result.virtual_seconds,
        )


@dataclass(slots=True)
class Figures:
    """The run's figures; `failed` lists the failing scenarios, seed order."""

    scenarios: int = 0
    swap_scenarios: int = 0
    failed: list[Summary] = field(default_factory=list)
    injected: collections.Counter[str] = field(default_factory=collections.Counter)
    events: collections.Counter[str] = field(default_factory=collections.Counter)
    lost: int = 0  # subscriptions whose secret was lost (LOST or SAFETY)
    convergence_max: float = 0.0
    convergence_sum: float = 0.0
    converged: int = 0
    within_bound: int = 0  # converged within 2 × claim_ttl + two cycles
    over_bound_hidden: int = 0  # beyond it, in a scenario with a claim-hiding fault
    regenerates_sum: int = 0
    regenerates_max: int = 0
    subscriptions: int = 0
    virtual_seconds: float = 0.0
    wall_seconds: float = 0.0

    def add(self, summary: Summary) -> None:
        self.scenarios += 1
        self.swap_scenarios += summary.swap
        self.injected.update(summary.injected)
        self.events.update(summary.events)
        self.virtual_seconds += summary.virtual_seconds
        if summary.failures:
            self.failed.append(summary)
            lost = {
                f.split()[2].rstrip(":")
                for f in summary.failures
                if f.split()[1] in ("LOST", "SAFETY")
            }
            self.lost += len(lost)
        if summary.convergence is not None:
            self.converged += 1
            self.convergence_sum += summary.convergence
            self.convergence_max = max(self.convergence_max, summary.convergence)
            if summary.convergence <= summary.bound:
                self.within_bound += 1
            elif summary.hidden_claims:
                self.over_bound_hidden += 1
        self.subscriptions += len(summary.regenerates)
        self.regenerates_sum += sum(summary.regenerates)
        self.regenerates_max = max(self.regenerates_max, *summary.regenerates)

    def report(self) -> str:
        mean_conv = self.convergence_sum / self.converged if self.converged else 0.0
        mean_regen = self.regenerates_sum / self.subscriptions if self.subscriptions else 0.0
        faults = ", ".join(f"{k}={v}" for k, v in sorted(self.injected.items())) or "none"
        outcomes = ", ".join(
            f"{k.removeprefix('outcome.')}={v}"
            for k, v in sorted(self.events.items())
            if k.startswith("outcome.") and ".skipped." not in k
        )
        notable = ", ".join(
            f"{k}={self.events[k]}"
            for k in ("rotation.settling", "rotation.superseded", "rotation.released")
            if self.events[k]
        )
        swaps = ", ".join(
            f"{k.removeprefix('swap.')}={self.events[k]}"
            for k in (
                "swap.committed",
                "swap.retired",
                "swap.orphan_deleted",
                "swap.recovered",
                "swap.aborted",
                "swap.released",
                "swap.successor_adopted",
                "swap.orphan_ambiguous",
                "swap.duplicate_suspected",
                "swap.fallback",
            )
            if self.events[k]
        )
        seen = ", ".join(
            f"{k.removeprefix('sim.')}={v}"
            for k, v in sorted(self.events.items())
            if k.startswith("sim.")
        )
        rate = self.scenarios / self.wall_seconds if self.wall_seconds else 0.0
        return "\n".join(
            [
                f"scenarios run:          {self.scenarios} ({self.swap_scenarios} swap)",
                f"failed scenarios:       {len(self.failed)}",
                f"secrets lost:           {self.lost}",
                f"faults injected:        {sum(self.injected.values())} ({faults})",
                f"rotation outcomes:      {outcomes}",
                f"protocol events:        {notable or 'none'}",
                f"swap events:            {swaps or 'none'}",
                f"seen at Monite:         {seen or 'none'}",
                f"convergence (virtual):  max {self.convergence_max:.1f}s, mean {mean_conv:.1f}s "
                f"after the fault phase ({self.converged} scenarios converged)",
                f"within 2 x claim_ttl + 2 cycles (swap: + overlap + claim_ttl): "
                f"{self.within_bound} of {self.converged}; "
                f"beyond it: {self.converged - self.within_bound} "
                f"({self.over_bound_hidden} with a forced one-shot rotation or a deleted record)",
                f"regenerates per sub:    mean {mean_regen:.2f}, max {self.regenerates_max}",
                f"virtual time simulated: {self.virtual_seconds / 86400:.1f} days",
                f"wall time:              {self.wall_seconds:.1f}s ({rate:.0f} scenarios/s)",
            ]
        )


def scenario_for(
    seed: int, without: Collection[str] = (), strategy: str = "regenerate"
) -> Scenario:
    """The scenario of `seed` under `strategy`, minus the fault kinds in `without`."""
    scenario = generate(seed, strategy)
    if without:
        faults = tuple(f for f in scenario.faults if f.kind not in without)
        scenario = replace(scenario, faults=faults)
    return scenario


def _one(job: tuple[int, frozenset[str], str]) -> Summary:
    seed, without, strategy = job
    return Summary.of(run(scenario_for(seed, without, strategy)))


def run_seeds(
    seeds: Iterable[int],
    *,
    workers: int = 1,
    without: Collection[str] = (),
    strategy: str = "regenerate",
) -> Figures:
    """Run the scenarios of these seeds under `strategy`, in `workers` processes; seed order."""
    figures = Figures()
    started = time.perf_counter()
    jobs = [(seed, frozenset(without), strategy) for seed in seeds]
    if workers <= 1:
        for summary in map(_one, jobs):
            figures.add(summary)
    else:
        context = multiprocessing.get_context("fork")
        # Frozen, the objects a worker inherits are skipped by its full collections
        # (and their pages stay shared with the parent's).
        with context.Pool(workers, initializer=gc.freeze) as pool:
            # Small chunks: scenarios differ in cost fiftyfold, and the last chunk
            # runs while the other workers idle (chunks of a sixteenth of the quick
            # profile cost it about half a second of wall time).
            chunk = max(1, min(200, len(jobs) // (workers * 32) or 1))
            for summary in pool.imap(_one, jobs, chunksize=chunk):
                figures.add(summary)
    figures.wall_seconds = time.perf_counter() - started
    return figures


def explain_failure(
    seed: int,
    *,
    without: Collection[str] = (),
    shrink_budget: int = 200,
    strategy: str = "regenerate",
) -> tuple[Scenario, Result, str]:
    """Shrink the failing scenario of `seed`; the text names the plan and how to replay it."""
    small, result = shrink(scenario_for(seed, without, strategy), budget=shrink_budget)
    flags = "".join(f" --without {kind}" for kind in sorted(without))
    if strategy_of(seed, strategy) != "regenerate":
        flags += f" --strategy {strategy_of(seed, strategy)}"
    lines = [
        f"FAILED seed {seed}",
        "shrunk plan:",
        small.describe(),
        "failures:",
        *(f"  {f}" for f in result.failures),
        f"replay the original: python -m tests.sim --replay {seed}{flags}",
        f"replay the shrunk plan: python -m tests.sim --plan '{small.to_json()}'",
    ]
    return small, result, "\n".join(lines)


__all__ = [
    "PROFILES",
    "QUICK",
    "Figures",
    "Summary",
    "explain_failure",
    "run_seeds",
    "scenario_for",
]
