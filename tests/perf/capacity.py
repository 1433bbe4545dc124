"""Scenario f: the emulators alone, with no latency and no rate limit.

Shows how much the emulators can serve, so the other scenarios' figures can be
read as the product's and not the emulators'. The load comes from this process
(httpx for Monite, hvac in a thread pool for Vault), so every rate here is a
lower bound on the emulator's capacity: the client may saturate first.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import hvac

from tests.perf.common import RATE_LIMIT, Budget, Profile, Scenario
from tests.perf.host import MOUNT, PREFIX, EmulatorHost
from tests.perf.naive import API_VERSION

CLIENTS = (1, 8)
VAULT_RECORDS = 1000
WINDOWS = 3  # measurement windows per figure; the best one counts
HEADROOM = 10  # a server with ten times the needed rate is not the bottleneck


async def _token(http: httpx.AsyncClient, env: dict[str, str]) -> str:
    answer = await http.post(
        f"{env['ROTATOR_MONITE__BASE_URL']}/auth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": env["ROTATOR_MONITE__CLIENT_ID"],
            "client_secret": env["ROTATOR_MONITE__CLIENT_SECRET"],
        },
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


async def _monite_load(
    env: dict[str, str], clients: int, seconds: float, kind: str, ids: list[str]
) -> tuple[int, float]:
    """(requests answered 200, seconds) for `clients` concurrent httpx clients.

    Each client connects, takes a token and sends one request before the clock
    starts, so the window measures serving, not connection set-up.
    """
    base = env["ROTATOR_MONITE__BASE_URL"]
    headers = {"x-monite-version": API_VERSION, "Accept": "application/json"}
    counter = itertools.count()
    warm = 0
    all_warm = asyncio.Event()
    window: dict[str, float] = {}
    done = 0

    async def one_client() -> None:
        nonlocal done, warm
        async with httpx.AsyncClient(timeout=10.0, headers=headers) as http:
            http.headers["Authorization"] = f"Bearer {await _token(http, env)}"
            params: dict[str, str | int] = {"limit": 100}

            async def once() -> None:
                nonlocal params
                if kind == "list":
                    page = await http.get(f"{base}/webhook_subscriptions", params=params)
                    page.raise_for_status()
                    token = page.json().get("next_pagination_token")
                    params = {"pagination_token": token} if token else {"limit": 100}
                else:
                    sid = ids[next(counter) % len(ids)]
                    answer = await http.post(
                        f"{base}/webhook_subscriptions/{sid}/regenerate_secret"
                    )
                    answer.raise_for_status()

            await once()
            warm += 1
            if warm == clients:
                window["start"] = time.perf_counter()
                window["stop"] = window["start"] + seconds
                all_warm.set()
            await all_warm.wait()
            while time.perf_counter() < window["stop"]:
                await once()
                done += 1

    async with asyncio.timeout(seconds + 30):
        await asyncio.gather(*(one_client() for _ in range(clients)))
    return done, time.perf_counter() - window["start"]


def _monite_run(
    env: dict[str, str], clients: int, seconds: float, kind: str, ids: list[str]
) -> tuple[int, float]:
    return asyncio.run(_monite_load(env, clients, seconds, kind, ids))


def _vault_load(
    env: dict[str, str], threads: int, seconds: float, kind: str, ids: list[str]
) -> tuple[int, float]:
    """(requests answered, seconds) for `threads` threads, one hvac client each, warmed up."""
    counter = itertools.count()
    window: dict[str, float] = {}

    def open_window() -> None:
        window["start"] = time.perf_counter()
        window["stop"] = window["start"] + seconds

    barrier = threading.Barrier(threads, action=open_window, timeout=30)

    def worker() -> int:
        client = hvac.Client(url=env["VAULT_ADDR"], token=env["VAULT_TOKEN"], timeout=10)
        kv = client.secrets.kv.v2

        def once() -> None:
            path = f"{PREFIX}/{ids[next(counter) % len(ids)]}"
            if kind == "read":
                kv.read_secret_version(path=path, mount_point=MOUNT, raise_on_deleted_version=True)
            else:
                kv.create_or_update_secret(
                    path=path, secret={"secret": "x" * 43, "state": "active"}, mount_point=MOUNT
                )

        n = 0
        try:
            once()
            barrier.wait()
            while time.perf_counter() < window["stop"]:
                once()
                n += 1
        finally:
            client.adapter.close()
        return n

    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(worker) for _ in range(threads)]
        total = sum(f.result(timeout=seconds + 60) for f in futures)
    return total, time.perf_counter() - window["start"]


def _best(windows: int, measure: Callable[[], tuple[int, float]]) -> float:
    """The best rate of several windows: capacity is what the server does undisturbed."""
    rates = []
    for _ in range(windows):
        count, elapsed = measure()
        rates.append(count / elapsed if elapsed > 0 else 0.0)
    return max(rates)


def run_f(profile: Profile, budget: Budget, scenario: Scenario, shared: dict[str, Any]) -> None:
    s = scenario
    n = profile.b_subscriptions
    seconds = profile.f_seconds
    s.title = (
        f"f. emulators alone (no latency, no rate limit; {n} subscriptions as in b, "
        f"{VAULT_RECORDS} Vault records); load from this process, so lower bounds"
    )
    need_regen = RATE_LIMIT * HEADROOM
    need_writes = 2 * RATE_LIMIT * HEADROOM  # claim + commit per rotation
    for c in CLIENTS:
        s.expect(f"list_{c}", f"Monite list pages/s, {c} client(s)", "/s")
    s.expect(
        "page_ms",
        f"Monite time per list page at {n} (1 client)",
        "ms",
        target="<= 5 ms (10% of the 50 ms RTT)",
        check=lambda v: v <= 5,
    )
    for c in CLIENTS:
        s.expect(
            f"regen_{c}",
            f"Monite regenerates/s, {c} client(s)",
            "/s",
            target=f">= {need_regen:g}/s" if c == max(CLIENTS) else "",
            check=(lambda v: v >= need_regen) if c == max(CLIENTS) else None,
        )
    for c in CLIENTS:
        s.expect(f"vread_{c}", f"Vault hvac reads/s, {c} thread(s)", "/s")
    for c in CLIENTS:
        s.expect(
            f"vwrite_{c}",
            f"Vault hvac writes/s, {c} thread(s)",
            "/s",
            target=f">= {need_writes:g}/s" if c == max(CLIENTS) else "",
            check=(lambda v: v >= need_writes) if c == max(CLIENTS) else None,
        )

    with EmulatorHost(rate_limit=1e9, burst=10**9) as host:
        ids = host.seed(n - VAULT_RECORDS, "none")
        ids += host.seed(VAULT_RECORDS, "stored", age_days=1.0)
        stored = ids[-VAULT_RECORDS:]

        window = seconds / WINDOWS
        for c in CLIENTS:
            budget.check("Monite list load")
            rate = _best(WINDOWS, partial(_monite_run, host.env, c, window, "list", ids))
            s.set(f"list_{c}", rate)
            if c == 1 and rate > 0:
                s.set("page_ms", 1000 / rate)
        for c in CLIENTS:
            budget.check("Monite regenerate load")
            rate = _best(WINDOWS, partial(_monite_run, host.env, c, window, "regen", ids))
            s.set(f"regen_{c}", rate)
        for c in CLIENTS:
            budget.check("Vault read load")
            rate = _best(WINDOWS, partial(_vault_load, host.env, c, window, "read", stored))
            s.set(f"vread_{c}", rate)
        for c in CLIENTS:
            budget.check("Vault write load")
            rate = _best(WINDOWS, partial(_vault_load, host.env, c, window, "write", stored))
            s.set(f"vwrite_{c}", rate)
    s.notes.append(
        f"each rate is the best of {WINDOWS} windows after a warm-up; time per list page "
        "includes the client's own share; the emulator sorts once per change and "
        "finds each page by bisection"
    )
