"""Scenario b: a steady-state cycle over many subscriptions, none of them due.

The floor of such a cycle is listing: ceil(N/100) sequential pages, each one
round trip. The scenario measures that floor twice: nominally (pages x the
emulator's added latency) and for real (the same pages fetched by a bare httpx
loop against the same emulator, which includes the emulator's own time per
page). The product's steady cycle is judged against the real one.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from typing import Any

import httpx

from rotator.app import open_engine
from rotator.config import load_settings
from tests.perf.common import MONITE_LATENCY, VAULT_LATENCY, Budget, Profile, Scenario
from tests.perf.host import EmulatorHost, counts_delta
from tests.perf.naive import API_VERSION

# Generous, so that the floor is set by latency and not by the limiter.
STEADY_RATE_LIMIT = 1000.0
FRESH_DAYS = 1.0  # well inside the default max_age of 30 days: not due


async def bare_listing(env: dict[str, str], limit_seconds: float) -> tuple[float, int]:
    """Every page fetched one after another by a minimal client: (seconds, pages)."""
    base = env["ROTATOR_MONITE__BASE_URL"]
    headers = {"x-monite-version": API_VERSION, "Accept": "application/json"}
    async with (
        asyncio.timeout(limit_seconds),
        httpx.AsyncClient(timeout=10.0, headers=headers) as http,
    ):
        answer = await http.post(
            f"{base}/auth/token",
            json={
                "grant_type": "client_credentials",
                "client_id": env["ROTATOR_MONITE__CLIENT_ID"],
                "client_secret": env["ROTATOR_MONITE__CLIENT_SECRET"],
            },
        )
        answer.raise_for_status()
        http.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
        params: dict[str, str | int] = {"limit": 100}
        pages = 0
        started = time.perf_counter()
        for _ in range(10_000):  # bounded: far more pages than any scenario lists
            page = await http.get(f"{base}/webhook_subscriptions", params=params)
            page.raise_for_status()
            pages += 1
            token = page.json().get("next_pagination_token")
            if not token:
                break
            params = {"pagination_token": token}
        return time.perf_counter() - started, pages


def run_b(profile: Profile, budget: Budget, scenario: Scenario, shared: dict[str, Any]) -> None:
    n = profile.b_subscriptions
    pages = math.ceil(n / 100)
    nominal_floor = pages * MONITE_LATENCY
    s = scenario
    s.title = (
        f"b. steady state: {n} subscriptions, none due, Monite +{MONITE_LATENCY * 1000:g} ms "
        f"(rate limit {STEADY_RATE_LIMIT:g}/s, so the floor is latency-bound), "
        f"Vault +{VAULT_LATENCY * 1000:g} ms"
    )
    s.expect("cold_wall", "first cycle (cold cache): wall time", "s")
    s.expect("cold_vault_reads", "first cycle: Vault reads")
    rounds = profile.b_rounds
    s.expect("steady_wall", f"steady cycle: wall time (median of {rounds})", "s")
    s.expect("steady_monite", "steady cycle: Monite calls (all routes, worst cycle)")
    s.expect("steady_monite_list", "steady cycle: Monite list pages")
    s.expect(
        "steady_vault_reads",
        "steady cycle: Vault reads (data + metadata, worst)",
        target="0",
        check=lambda v: v == 0,
    )
    s.expect("steady_vault_writes", "steady cycle: Vault writes")
    s.expect("steady_vault_lists", "steady cycle: Vault lists")
    s.expect("steady_vault_other", "steady cycle: other Vault calls")
    s.expect("floor_nominal", f"floor, nominal: {pages} pages x {MONITE_LATENCY * 1000:g} ms", "s")
    s.expect("floor_measured", f"floor, measured: {pages} pages by a bare httpx loop (median)", "s")
    s.expect(
        "ratio_measured",
        "steady wall / measured floor",
        "x",
        target="<= 1.2",
        check=lambda v: v <= 1.2,
    )
    s.expect("ratio_nominal", "steady wall / nominal floor (emulator time included)", "x")

    with EmulatorHost(
        rate_limit=STEADY_RATE_LIMIT,
        burst=int(STEADY_RATE_LIMIT),
        monite_latency=MONITE_LATENCY,
        vault_latency=VAULT_LATENCY,
    ) as host:
        host.seed(n, "stored", age_days=FRESH_DAYS)

        async def measure() -> None:
            settings = load_settings(None, host.env)
            async with (
                asyncio.timeout(budget.remaining()),
                open_engine(settings, owner="bench") as engine,
            ):
                before = host.counts()
                started = time.perf_counter()
                cold = await engine.run_cycle()
                s.set("cold_wall", time.perf_counter() - started)
                cold_delta = counts_delta(host.counts(), before)
                s.set("cold_vault_reads", _reads(cold_delta))
                s.data["cold"] = {"summary": cold.summary(), "requests": cold_delta}

                # Floor and steady cycle alternate, `rounds` times: on a shared host the
                # medians are steadier than any one pair, and each pair sees the same load.
                floors: list[float] = []
                walls: list[float] = []
                deltas: list[dict[str, dict[str, int]]] = []
                summaries: list[str] = []
                for _ in range(rounds):
                    budget.check("steady-state rounds")
                    floor, floor_pages = await bare_listing(host.env, budget.remaining())
                    floors.append(floor)
                    before = host.counts()
                    started = time.perf_counter()
                    steady = await engine.run_cycle()
                    walls.append(time.perf_counter() - started)
                    deltas.append(counts_delta(host.counts(), before))
                    summaries.append(steady.summary())
                    if steady.error is not None:
                        s.notes.append(f"a steady cycle failed: {steady.error}")

                # Calls: the worst steady cycle, so a read in any of them shows.
                worst = max(deltas, key=lambda d: (_reads(d), sum(d["vault"].values())))
                vault = worst["vault"]
                wall, floor = statistics.median(walls), statistics.median(floors)
                s.set("steady_wall", wall)
                s.set("steady_monite", sum(worst["monite"].values()))
                s.set("steady_monite_list", worst["monite"]["list"])
                s.set("steady_vault_reads", _reads(worst))
                s.set("steady_vault_writes", vault["kv_write"] + vault["kv_metadata_write"])
                s.set("steady_vault_lists", vault["kv_list"])
                s.set(
                    "steady_vault_other",
                    sum(vault.values())
                    - _reads(worst)
                    - vault["kv_write"]
                    - vault["kv_metadata_write"]
                    - vault["kv_list"],
                )
                s.set("floor_measured", floor)
                s.set("floor_nominal", nominal_floor)
                s.set("ratio_measured", wall / floor)
                s.set("ratio_nominal", wall / nominal_floor)
                s.data["floor_pages"] = floor_pages
                s.data["steady"] = {
                    "walls": walls,
                    "floors": floors,
                    "summaries": summaries,
                    "requests": deltas,
                }
                if cold.error is not None:
                    s.notes.append(f"the first cycle failed: {cold.error}")

        asyncio.run(measure())
    per_page = (s.figures["floor_measured"].value or 0) / max(1, pages) * 1000
    s.notes.append(
        f"measured round trip per page {per_page:.1f} ms, of which "
        f"{MONITE_LATENCY * 1000:g} ms is injected latency and the rest the emulator's "
        "own time per page (see scenario f)"
    )


def _reads(delta: dict[str, dict[str, int]]) -> int:
    vault = delta["vault"]
    return vault["kv_read"] + vault["kv_metadata_read"]
