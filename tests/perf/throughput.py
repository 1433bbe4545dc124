"""Scenarios a (throughput at Monite's rate limit) and c (exposure window).

Both run one real product cycle (`open_engine` + `Engine.run_cycle`, the code
`rotator run` executes) against emulators that add 50 ms to every Monite
request and enforce 30 requests per second, and read what the cycle reports.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rotator.app import open_engine
from rotator.config import load_settings
from rotator.engine import CycleReport
from rotator.hooks import HookObserver
from tests.perf.common import (
    MONITE_LATENCY,
    RATE_LIMIT,
    VAULT_LATENCY,
    Budget,
    Profile,
    Scenario,
    percentile,
)
from tests.perf.host import EmulatorHost, counts_delta
from tests.perf.naive import run_naive

OLD_DAYS = 60.0  # older than the default max_age of 30 days: due


@dataclass
class ProductRun:
    subscriptions: int
    concurrency: int
    wall: float
    report: CycleReport
    monite_requests: dict[str, int]  # "operation status" -> count, as the client counted them
    server_counts: dict[str, dict[str, int]]
    consistent: int

    @property
    def rotated(self) -> int:
        return self.report.count("rotated")

    @property
    def exposures(self) -> list[float]:
        return [
            o.exposure_seconds
            for o in self.report.outcomes
            if o.kind == "rotated" and o.exposure_seconds is not None
        ]

    def outcome_text(self) -> str:
        if self.report.error is not None:
            return f"error: {self.report.error}"
        r = self.report
        return (
            f"{r.count('rotated')} rotated, {r.count('failed')} failed, "
            f"{r.count('conflict')} conflicts, {r.count('skipped')} skipped"
        )

    def status_count(self, operation: str, status: int) -> int:
        return self.monite_requests.get(f"{operation} {status}", 0)


def emulators_for_rotation() -> EmulatorHost:
    return EmulatorHost(
        rate_limit=RATE_LIMIT,
        burst=int(RATE_LIMIT),
        monite_latency=MONITE_LATENCY,
        vault_latency=VAULT_LATENCY,
    )


def seed_due(host: EmulatorHost, count: int) -> list[str]:
    """Half unmanaged (no record), half with a record older than max_age: all due."""
    unmanaged = host.seed(count // 2, "none")
    old = host.seed(count - count // 2, "stored", age_days=OLD_DAYS)
    return unmanaged + old


async def product_cycle(
    env: dict[str, str],
    overrides: dict[str, str],
    limit_seconds: float,
    *,
    config: Path | None = None,
    hook_observer: HookObserver | None = None,
) -> tuple[float, CycleReport, dict[str, int]]:
    """One timed cycle; `config` (a TOML file) is how scenario g adds [[hooks]]."""
    settings = load_settings(config, {**env, **overrides})
    async with (
        asyncio.timeout(limit_seconds),
        open_engine(settings, owner="bench", hook_observer=hook_observer) as engine,
    ):
        started = time.perf_counter()
        report = await engine.run_cycle()
        wall = time.perf_counter() - started
        requests = {f"{op} {status}": n for (op, status), n in engine.monite.requests.items()}
    return wall, report, requests


def run_product(count: int, concurrency: int | None, budget: Budget) -> ProductRun:
    """Fresh emulators, `count` due subscriptions, one product cycle, timed."""
    overrides: dict[str, str] = {}
    if concurrency is not None:
        overrides["ROTATOR_ROTATION__CONCURRENCY"] = str(concurrency)
    with emulators_for_rotation() as host:
        ids = seed_due(host, count)
        before = host.counts()
        settings = load_settings(None, {**host.env, **overrides})
        wall, report, requests = asyncio.run(
            product_cycle(host.env, overrides, limit_seconds=budget.remaining())
        )
        delta = counts_delta(host.counts(), before)
        return ProductRun(
            subscriptions=count,
            concurrency=settings.rotation.concurrency,
            wall=wall,
            report=report,
            monite_requests=requests,
            server_counts=delta,
            consistent=host.consistent(ids),
        )


def run_a(profile: Profile, budget: Budget, scenario: Scenario, shared: dict[str, Any]) -> None:
    n = profile.a_subscriptions
    limit = f"{RATE_LIMIT:g} req/s"
    scenario.title = (
        f"a. throughput: {n} due, Monite {limit} (burst {RATE_LIMIT:g}), "
        f"{MONITE_LATENCY * 1000:g} ms round trip, Vault +{VAULT_LATENCY * 1000:g} ms"
    )
    s = scenario
    s.expect("product_rate", "product: rotations per second", "/s")
    s.expect(
        "product_ratio",
        f"product: ratio to the {limit} limit",
        target=">= 0.95",
        check=lambda v: v >= 0.95,
    )
    s.expect("product_wall", "product: cycle wall time", "s")
    s.expect("product_concurrency", "product: rotation.concurrency setting")
    s.expect("product_outcomes", "product: outcomes")
    s.expect("product_regenerates", "product: regenerate requests sent (incl. retries)")
    s.expect("product_429", "product: 429 answers received")
    s.expect("product_consistent", "product: Vault holds Monite's secret afterwards")
    s.expect("naive_rate", "naive sequential: rotations per second", "/s")
    s.expect("naive_ratio", f"naive sequential: ratio to the {limit} limit")
    s.expect("naive_wall", "naive sequential: wall time", "s")
    s.expect("speedup", "product / naive throughput", "x")

    # The product first, with most of the budget; the naive baseline gets the rest
    # and reports a partial rate (labelled) if it cannot finish.
    product_budget = Budget(budget.remaining() * 0.6)
    run = run_product(n, None, product_budget)
    shared["a_run"] = run
    rate = run.rotated / run.wall if run.wall > 0 else 0.0
    s.set("product_rate", rate)
    s.set("product_ratio", rate / RATE_LIMIT)
    s.set("product_wall", run.wall)
    s.set("product_concurrency", run.concurrency)
    s.set_text("product_outcomes", run.outcome_text())
    s.set("product_regenerates", run.server_counts["monite"]["regenerate_secret"])
    s.set("product_429", sum(v for k, v in run.monite_requests.items() if k.endswith(" 429")))
    s.set_text("product_consistent", f"{run.consistent} of {n}")
    s.data["product"] = {
        "subscriptions": n,
        "wall_seconds": run.wall,
        "rotated": run.rotated,
        "failed": run.report.count("failed"),
        "client_requests": run.monite_requests,
        "server_requests": run.server_counts,
        "consistent": run.consistent,
    }

    with emulators_for_rotation() as host:
        ids = seed_due(host, n)
        naive = run_naive(host.env, budget)
        consistent = host.consistent(ids)
    naive_rate = naive.rotated / naive.wall if naive.wall > 0 else 0.0
    shared["naive_exposures"] = naive.exposures
    partial = (
        f" (partial: {naive.rotated} of {n} before the budget ran out)" if naive.partial else ""
    )
    s.set("naive_rate", naive_rate, note=partial.strip())
    s.set("naive_ratio", naive_rate / RATE_LIMIT)
    s.set("naive_wall", naive.wall, note=partial.strip())
    if naive_rate > 0:
        s.set("speedup", rate / naive_rate)
    else:
        s.na("speedup", "the naive rotator rotated nothing")
    s.data["naive"] = {
        "rotated": naive.rotated,
        "wall_seconds": naive.wall,
        "rate_limited": naive.rate_limited,
        "partial": naive.partial,
        "consistent": consistent,
    }
    if naive.partial:
        s.notes.append(f"naive run is partial{partial}")
    s.notes.append(
        "listing (ceil(N/100) pages) and the token request share the same 30/s budget; "
        "the burst of 30 lets a perfect client sit slightly above 1.0"
    )


def run_c(profile: Profile, budget: Budget, scenario: Scenario, shared: dict[str, Any]) -> None:
    s = scenario
    serial_n = profile.c_serial_subscriptions
    scenario.title = (
        "c. exposure window (Monite regenerate answer -> Vault commit), "
        f"Vault +{VAULT_LATENCY * 1000:g} ms"
    )
    s.expect("default_p50", "run a (default concurrency): p50", "ms")
    s.expect(
        "default_p99",
        "run a (default concurrency): p99",
        "ms",
        target="<= 25 ms",
        check=lambda v: v <= 25,
    )
    s.expect("default_max", "run a (default concurrency): max", "ms")
    s.expect("serial_p50", f"concurrency 1, {serial_n} due: p50", "ms")
    s.expect(
        "serial_p99",
        f"concurrency 1, {serial_n} due: p99",
        "ms",
        target="<= 25 ms",
        check=lambda v: v <= 25,
    )
    s.expect("serial_max", f"concurrency 1, {serial_n} due: max", "ms")
    s.expect("naive_p99", "naive sequential (from a): p99, for reference", "ms")

    run: ProductRun | None = shared.get("a_run")
    if run is None:
        # c on its own: the same cycle as a, measured here.
        run = run_product(profile.a_subscriptions, None, Budget(budget.remaining() * 0.6))
    _exposure_figures(s, "default", run.exposures)
    s.data["default"] = {"samples": len(run.exposures), "concurrency": run.concurrency}

    serial = run_product(serial_n, 1, budget)
    _exposure_figures(s, "serial", serial.exposures)
    s.data["serial"] = {
        "samples": len(serial.exposures),
        "wall_seconds": serial.wall,
        "outcomes": serial.outcome_text(),
    }
    naive = shared.get("naive_exposures")
    if naive:
        s.set("naive_p99", percentile(naive, 99) * 1000)
    else:
        s.na("naive_p99", "scenario a did not run")


def _exposure_figures(s: Scenario, prefix: str, exposures: list[float]) -> None:
    if not exposures:
        for suffix in ("p50", "p99", "max"):
            s.na(f"{prefix}_{suffix}", "no rotation succeeded")
        return
    s.set(f"{prefix}_p50", percentile(exposures, 50) * 1000)
    s.set(f"{prefix}_p99", percentile(exposures, 99) * 1000)
    s.set(f"{prefix}_max", max(exposures) * 1000)
