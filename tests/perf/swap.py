"""Scenarios h (what a swap costs) and j (consumer continuity, regenerate versus swap).

h. N subscriptions due at once, their records older than max_age, swapped by
the real engine (`open_engine` + `Engine.run_cycle`, what `rotator run` does)
against scenario a's emulators (a process of their own, Monite +50 ms a
request and 30 req/s with a burst of 30, Vault +2 ms), then, on fresh
emulators, the same N regenerated. The engine first plans once (its record
cache is loaded, as a daemon's is after its first cycle), then runs the cycle
that swaps (steps 1 to 6: claim, create, commit the successor, link); it waits
for the overlap to end and runs cycles until every original is deleted and
retired (steps 8 to 11: claim, GET the successor, DELETE the original,
retire). Every request is counted by the emulators' own counters
(`MoniteEmulator.request_count`, `VaultEmulator.request_count`), from after
the plan to the end: the cycles' listings and tokens included.

j. Scenario g's continuity machinery (`tests.perf.consumers`), one world per
poll interval, with consumers of both strategies side by side: four polling
consumers whose subscriptions regenerate and four whose subscriptions swap
(a `[[policy.rules]]` by URL), `rotation.overlap` = 2 x the poll interval,
every consumer deduplicating by event id (`make_server`'s default) and each
subscription of its own triple, so that a duplicate is a swap's fan-out.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rotator.app import open_engine
from rotator.clock import SystemClock
from rotator.config import load_settings
from rotator.engine import CycleReport
from rotator.reasons import OutcomeKind
from tests.perf.common import (
    MONITE_LATENCY,
    RATE_LIMIT,
    VAULT_LATENCY,
    Budget,
    Profile,
    Scenario,
    percentile,
)
from tests.perf.consumers import DELIVERY_EVERY, Continuity, Kind, analyse, continuity
from tests.perf.host import counts_delta
from tests.perf.throughput import OLD_DAYS, emulators_for_rotation

# monite.timeout 2 s -> claim_ttl 8 s (4 x) -> overlap 16 s (2 x claim_ttl, the least allowed).
H_SETTINGS = {
    "ROTATOR_MONITE__TIMEOUT": "2s",
    "ROTATOR_ROTATION__CLAIM_TTL": "8s",
    "ROTATOR_ROTATION__OVERLAP": "16s",
}
CALLS_TARGET = 4.1  # Monite calls per swap, docs/swap.md section 8
LINK_TARGET = 0.95 * RATE_LIMIT / 2  # swaps/s to step 6, docs/swap.md section 8
OVERLAP_MARGIN = 1.5  # seconds waited past the last overlap_ends_at (Vault's clock is ours)
MAX_FINISH_CYCLES = 5
J_SEED = 20261201

# Row j: monite.timeout 1 s -> claim_ttl 4 s -> overlap at least 8 s; here 2 x the poll.
J_SETTINGS = '[monite]\ntimeout = "1s"\n\n[rotation]\nclaim_ttl = "4s"\noverlap = "{overlap}"\n'
J_WORLDS: tuple[tuple[float, tuple[float, float], bool], ...] = (
    # (poll interval, seconds between two rotations of a group, needs the full profile)
    (5.0, (12.0, 15.0), False),
    (60.0, (130.0, 150.0), True),
)


# ------------------------------------------------------------------ h


@dataclass
class MassRun:
    strategy: str
    subscriptions: int
    linked: int = 0  # swapped (steps 1-6) or rotated
    retired: int = 0
    failed: int = 0
    link_wall: float = 0.0  # the cycle that swaps (or regenerates)
    finish_wall: float = 0.0  # the cycles that delete and retire, together
    overlap_wait: float = 0.0
    finish_cycles: int = 0
    wall: float = 0.0  # from the first cycle's start to the last one's end
    startup: dict[str, dict[str, int]] = field(default_factory=dict)  # the plan's requests
    link_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    finish_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    consistent: int = 0
    live: int = 0  # subscriptions at Monite afterwards
    other: list[str] = field(default_factory=list)  # outcomes that are neither
    answers_429: int = 0  # as the engine's Monite client counted them, start-up included

    @property
    def done(self) -> int:
        """Swaps that went to the end (original retired); rotations for regenerate."""
        return self.retired if self.strategy == "swap" else self.linked

    def requests(self, side: str) -> dict[str, int]:
        total: dict[str, int] = {}
        for counts in (self.link_counts, self.finish_counts):
            for key, value in counts.get(side, {}).items():
                total[key] = total.get(key, 0) + value
        return total


def _add(into: dict[str, dict[str, int]], more: dict[str, dict[str, int]]) -> None:
    for side, counts in more.items():
        mine = into.setdefault(side, {})
        for key, value in counts.items():
            mine[key] = mine.get(key, 0) + value


class SkippingClock(SystemClock):
    """The real clock, moved forward by `advance`: everything but the skipped waits takes
    real time (I/O, the rate limiter, token lifetimes), as in the full run."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=self.skipped)

    def monotonic(self) -> float:
        return super().monotonic() + self.skipped

    def advance(self, seconds: float) -> None:
        self.skipped += seconds


def mass_run(
    count: int,
    strategy: str,
    budget: Budget,
    settings_env: Mapping[str, str] = H_SETTINGS,
    *,
    virtual_overlap: bool = False,
) -> MassRun:
    """Fresh emulators, `count` subscriptions with old records; swap (or regenerate) them all.

    With `virtual_overlap` (the suite's miniature of row h) the overlap passes on the
    Vault emulator's clock and on the engine's (`SkippingClock`: real time, plus the skips)
    instead of in real time; its seconds still count in `overlap_wait` and `wall`.
    """
    run = MassRun(strategy=strategy, subscriptions=count)
    env_overrides = {**settings_env, "ROTATOR_ROTATION__STRATEGY": strategy}
    clock = SkippingClock() if virtual_overlap else None
    with emulators_for_rotation() as host:
        host.seed(count, "stored", age_days=OLD_DAYS)
        settings = load_settings(None, {**host.env, **env_overrides})
        successors: list[str] = []

        def vault_now() -> datetime:
            return host.vault_now() if clock is not None else datetime.now(UTC)

        async def wait_until(end: datetime) -> float:
            """Let Vault's clock reach `end` (within the budget); the seconds that took."""
            wait = max(0.0, min((end - vault_now()).total_seconds(), budget.remaining()))
            if clock is None:
                waited = time.perf_counter()
                await asyncio.sleep(wait)
                return time.perf_counter() - waited
            # The engine judges Vault's time by Vault's answers carried on its own
            # monotonic clock: both clocks move, as both would in a real wait.
            host.advance_vault(wait)
            clock.advance(wait)
            return wait

        async def main() -> None:
            async with (
                asyncio.timeout(budget.remaining()),
                open_engine(settings, owner="bench", clock=clock) as engine,
            ):
                before = host.counts()
                await engine.plan()  # the record cache is loaded, as after a first cycle
                at = host.counts()
                run.startup = counts_delta(at, before)
                started = time.perf_counter()
                report = await engine.run_cycle()
                run.link_wall = time.perf_counter() - started
                after = host.counts()
                run.link_counts = counts_delta(after, at)
                ends = _tally(run, report, successors, vault_now, linking=True)
                if strategy != "swap":
                    run.wall = run.link_wall
                    return
                # (the 429 count of a regenerate run is scenario a's figure)
                virtual = 0.0  # seconds of the overlap passed without perf_counter seeing them
                for _ in range(MAX_FINISH_CYCLES):
                    if run.retired >= run.linked or not ends:
                        break
                    waited = await wait_until(max(ends) + timedelta(seconds=OVERLAP_MARGIN))
                    run.overlap_wait += waited
                    virtual += waited if clock is not None else 0.0
                    at = host.counts()
                    cycle_started = time.perf_counter()
                    report = await engine.run_cycle()
                    run.finish_wall += time.perf_counter() - cycle_started
                    run.finish_cycles += 1
                    _add(run.finish_counts, counts_delta(host.counts(), at))
                    ends = _tally(run, report, successors, vault_now, linking=False)
                run.wall = time.perf_counter() - started + virtual
                run.answers_429 = sum(
                    n for (_, status), n in engine.monite.requests.items() if status == 429
                )

        asyncio.run(main())
        if strategy == "swap":
            run.consistent = host.consistent(successors)
        run.live = host.live()
    return run


def _tally(
    run: MassRun,
    report: CycleReport,
    successors: list[str],
    vault_now: Callable[[], datetime],
    *,
    linking: bool,
) -> list[datetime]:
    """Count a cycle's outcomes into `run`; the overlap ends still to wait for."""
    if report.error is not None:
        run.other.append(f"cycle error: {report.error}")
    ends: list[datetime] = []
    for outcome in report.outcomes:
        if outcome.kind == OutcomeKind.SWAPPED and outcome.retired:
            run.retired += 1
        elif outcome.kind == OutcomeKind.SWAPPED and outcome.successor_id is not None:
            run.linked += 1
            successors.append(outcome.successor_id)
            if outcome.overlap_ends_at is not None:
                ends.append(outcome.overlap_ends_at)
        elif outcome.kind == OutcomeKind.ROTATED and linking:
            run.linked += 1
        elif outcome.kind == OutcomeKind.FAILED:
            run.failed += 1
            run.other.append(f"failed: {outcome.reason}")
        elif not (outcome.kind == OutcomeKind.SKIPPED and outcome.reason in ("overlap", "fresh")):
            run.other.append(f"{outcome.kind}: {outcome.reason}")
    if not linking and run.retired < run.linked:
        # Some originals still in their overlap: wait for the latest end we know of.
        ends = [vault_now()]
    return ends


def h_expect(s: Scenario) -> None:
    """Declare row h's figures."""
    s.expect(
        "calls_per_swap",
        "swap: Monite calls per swap (both phases, listing and token shares included)",
        target=f"<= {CALLS_TARGET:g}",
        check=lambda v: v <= CALLS_TARGET,
    )
    s.expect("calls_split", "swap: per swap create / get / delete / list / token")
    s.expect("calls_per_regenerate", "regenerate: Monite calls per rotation (same N)")
    s.expect("vault_per_swap", "swap: Vault requests per swap (both phases)")
    s.expect("vault_split", "swap: Vault per swap, linking / finishing")
    s.expect("vault_per_regenerate", "regenerate: Vault requests per rotation (same N)")
    s.expect(
        "link_rate",
        "swap: swaps per second to the link step (steps 1-6)",
        "/s",
        target=f">= {LINK_TARGET:g} /s",
        check=lambda v: v >= LINK_TARGET,
    )
    s.expect("regenerate_rate", "regenerate: rotations per second (same N)", "/s")
    s.expect("rate_ratio", "swaps to link / regenerates per second")
    s.expect("finish_rate", "swap: originals deleted and retired per second (steps 8-11)", "/s")
    s.expect("link_wall", "swap: wall time of the cycle that swaps", "s")
    s.expect("overlap_wait", "swap: then waited for the overlap to end", "s")
    s.expect("finish_wall", "swap: wall time of the cycles that delete and retire", "s")
    s.expect("wall", "swap: wall time, first cycle start to last cycle end", "s")
    s.expect("regenerate_wall", "regenerate: cycle wall time", "s")
    s.expect("outcomes", "swap: outcomes")
    s.expect("swap_429", "swap: 429 answers from Monite (both phases)")


def run_h(profile: Profile, budget: Budget, scenario: Scenario, shared: dict[str, Any]) -> None:
    n = profile.h_subscriptions
    limit = f"{RATE_LIMIT:g} req/s"
    s = scenario
    s.title = (
        f"h. swap cost: {n} due at once, Monite {limit} (burst {RATE_LIMIT:g}), "
        f"{MONITE_LATENCY * 1000:g} ms round trip, Vault +{VAULT_LATENCY * 1000:g} ms, "
        f"overlap {H_SETTINGS['ROTATOR_ROTATION__OVERLAP']}"
    )
    h_expect(s)
    swap = mass_run(n, "swap", Budget(budget.remaining() * 0.75))
    budget.check("the regenerate run")
    regen = mass_run(n, "regenerate", Budget(budget.remaining()))
    h_figures(s, swap, regen)


def h_figures(s: Scenario, swap: MassRun, regen: MassRun) -> None:
    monite = swap.requests("monite")
    vault = swap.requests("vault")
    done = swap.done
    regen_monite = regen.requests("monite")
    regen_vault = regen.requests("vault")
    s.data["swap"] = _run_json(swap)
    s.data["regenerate"] = _run_json(regen)
    if done:
        calls = sum(monite.values())
        s.set("calls_per_swap", calls / done, note=f"{calls} requests for {done} swaps")
        split = " / ".join(
            f"{monite.get(route, 0) / done:.3f}"
            for route in ("create", "get", "delete", "list", "token")
        )
        others = {
            k: v
            for k, v in monite.items()
            if v and k not in ("create", "get", "delete", "list", "token")
        }
        s.set_text("calls_split", split + (f" (also {others})" if others else ""))
        total_vault = sum(vault.values())
        s.set("vault_per_swap", total_vault / done, note=f"{total_vault} requests")
        linking = sum(swap.link_counts.get("vault", {}).values())
        finishing = sum(swap.finish_counts.get("vault", {}).values())
        s.set_text("vault_split", f"{linking / done:.2f} / {finishing / done:.2f}")
        s.set("swap_429", swap.answers_429)
    else:
        for name in ("calls_per_swap", "vault_per_swap", "swap_429"):
            s.na(name, "no swap went to the end")
    if regen.done:
        calls = sum(regen_monite.values())
        s.set("calls_per_regenerate", calls / regen.done, note=f"{calls} requests")
        s.set("vault_per_regenerate", sum(regen_vault.values()) / regen.done)
        s.set("regenerate_rate", regen.done / regen.link_wall)
        s.set("regenerate_wall", regen.link_wall)
    else:
        for name in ("calls_per_regenerate", "vault_per_regenerate", "regenerate_rate"):
            s.na(name, "nothing regenerated")
    if swap.linked and swap.link_wall > 0:
        link_rate = swap.linked / swap.link_wall
        s.set("link_rate", link_rate)
        if regen.done:
            s.set("rate_ratio", link_rate / (regen.done / regen.link_wall))
        else:
            s.na("rate_ratio", "nothing regenerated")
    if swap.retired and swap.finish_wall > 0:
        s.set(
            "finish_rate",
            swap.retired / swap.finish_wall,
            note=f"{swap.finish_cycles} cycle(s)",
        )
    s.set("link_wall", swap.link_wall)
    s.set("overlap_wait", swap.overlap_wait)
    s.set("finish_wall", swap.finish_wall)
    s.set("wall", swap.wall)
    text = (
        f"{swap.linked} linked, {swap.retired} retired, {swap.failed} failed; "
        f"{swap.consistent} of {swap.linked} successors hold Monite's secret in Vault, "
        f"{swap.live} subscriptions left at Monite"
    )
    if swap.other:
        text += f"; other: {sorted(set(swap.other))[:5]}"
    s.set_text("outcomes", text)
    s.notes.append(
        "calls counted by the emulators' request counters from after the engine's first "
        "plan (its listing and record load, a daemon's start-up) to the end of the last "
        "cycle: the cycles' listings (N/100 pages, 2N/100 while successors and originals "
        "both exist) and token requests are shared among the swaps"
    )
    s.notes.append(
        "the cycle that swaps needs one Monite call per swap (create; its listing is the "
        "cycle's); the GET of the successor and the DELETE of the original come an overlap "
        "later, paced by the same 30 req/s. Both runs on a shared 2-core host: noisy"
    )


def _run_json(run: MassRun) -> dict[str, Any]:
    return {
        "subscriptions": run.subscriptions,
        "linked": run.linked,
        "retired": run.retired,
        "failed": run.failed,
        "link_wall_seconds": run.link_wall,
        "overlap_wait_seconds": run.overlap_wait,
        "finish_wall_seconds": run.finish_wall,
        "finish_cycles": run.finish_cycles,
        "wall_seconds": run.wall,
        "startup_requests": run.startup,
        "link_requests": run.link_counts,
        "finish_requests": run.finish_counts,
        "consistent_successors": run.consistent,
        "live_at_monite": run.live,
        "answers_429": run.answers_429,
        "other_outcomes": sorted(set(run.other)),
    }


# ------------------------------------------------------------------ j


def j_kinds(poll: float, gap: tuple[float, float], long: bool) -> tuple[Kind, Kind]:
    """Four polling consumers that regenerate and four that swap, re-reading nothing else."""
    label = f"poll {poll:g} s"
    return (
        Kind(
            f"poll{poll:g}_regenerate",
            f"{label}, regenerate",
            poll,
            False,
            False,
            4,
            2,
            gap,
            long=long,
        ),
        Kind(
            f"poll{poll:g}_swap",
            f"{label}, swap (overlap {2 * poll:g} s)",
            poll,
            False,
            False,
            4,
            2,
            gap,
            long=long,
            strategy="swap",
        ),
    )


def j_expect(s: Scenario, kinds: Sequence[Kind]) -> None:
    """Declare row j's three figures of each kind: rejected, duplicates, given up."""
    for kind in kinds:
        swap = kind.strategy == "swap"
        s.expect(
            f"{kind.key}_rejected",
            f"{kind.label}: deliveries rejected per rotation",
            target="= 0" if swap else "",
            check=(lambda v: v == 0) if swap else None,
        )
        s.expect(f"{kind.key}_duplicates", f"{kind.label}: duplicates dropped per rotation")
        s.expect(f"{kind.key}_gave_up", f"{kind.label}: events Monite gave up on per rotation")


def run_j(profile: Profile, budget: Budget, scenario: Scenario, shared: dict[str, Any]) -> None:
    s = scenario
    s.title = (
        f"j. consumer continuity by strategy: deliveries every {DELIVERY_EVERY:g} s per "
        "subscription, pollers re-reading nothing else, deduplication on, overlap = 2 x poll"
    )
    worlds = [(poll, gap, long, j_kinds(poll, gap, long)) for poll, gap, long in J_WORLDS]
    for _, _, _, kinds in worlds:
        j_expect(s, kinds)
    rng = random.Random(J_SEED)
    for (poll, _, long, kinds), seconds in zip(worlds, profile.j_seconds, strict=True):
        if long and not profile.g_long_poll:
            reason = (
                f"not measured in the {profile.name} profile: a {poll:g} s poller with a "
                f"{2 * poll:g} s overlap needs minutes of real time; the full profile measures it"
            )
            for kind in kinds:
                for suffix in ("rejected", "duplicates", "gave_up"):
                    s.na(f"{kind.key}_{suffix}", reason)
            continue
        budget.check(f"the {poll:g} s pollers' world")
        result = continuity(
            kinds,
            seconds,
            Budget(min(budget.remaining(), seconds + 120.0)),
            rng,
            settings=J_SETTINGS.format(overlap=f"{2 * poll:g}s"),
            dedupe=True,
            distinct_triples=True,
        )
        j_figures(s, poll, result)
    s.notes.append(
        "rejected = delivery attempts answered non-2xx, through an original or a successor; "
        "duplicates = verified deliveries the consumer's deduplicator dropped (during a swap "
        "each event comes through the original and its successor); both per committed "
        "rotation. Rotations are forced by the real engine at seeded random times; "
        "unforced cycles every second end the overlaps. Noisy: shared 2-core host"
    )


def j_figures(s: Scenario, poll: float, result: Continuity) -> None:
    world: dict[str, Any] = {
        "poll": poll,
        "overlap": 2 * poll if any(k.strategy == "swap" for k in result.kinds) else None,
        "seconds": result.seconds,
        "not_committed": result.not_committed,
        "originals_retired": result.retired,
        "delivery_totals": result.deliveries.to_json()["totals"],
        "kinds": {},
    }
    s.data.setdefault("worlds", []).append(world)
    for kind in result.kinds:
        found = analyse(result, kind)
        originals = set(result.subscriptions[kind.key][: kind.consumers * kind.subscriptions])
        via_original = sum(
            1
            for probe in result.probes[kind.key]
            for _, sid, status, _ in probe.answers
            if sid in originals and not 200 <= status < 300
        )
        world["kinds"][kind.key] = {
            "label": kind.label,
            "strategy": kind.strategy,
            "rotations": found.rotations,
            "rejected": found.rejected,
            "rejected_via_seeded_subscriptions": via_original,
            "duplicates": found.duplicates,
            "gave_up": found.gave_up,
            "verified": found.verified,
            "not_reloaded": found.not_reloaded,
            "reload_p50": percentile(found.latencies, 50) if found.latencies else None,
            "reload_p99": percentile(found.latencies, 99) if found.latencies else None,
        }
        if not found.rotations:
            for suffix in ("rejected", "duplicates", "gave_up"):
                s.na(f"{kind.key}_{suffix}", "no rotation committed")
            continue
        r = found.rotations
        s.set(f"{kind.key}_rejected", found.rejected / r, note=f"{found.rejected} in {r}")
        s.set(f"{kind.key}_duplicates", found.duplicates / r, note=f"{found.duplicates} in {r}")
        s.set(f"{kind.key}_gave_up", found.gave_up / r, note=f"{found.gave_up} in {r}")
    if result.not_committed:
        s.notes.append(f"{poll:g} s world: {result.not_committed} forced rotations did not commit")
