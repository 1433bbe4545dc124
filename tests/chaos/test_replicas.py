"""Scenario 4: three daemons at once on many subscriptions for many cycles.

Three `rotator run` processes share one Monite account and one Vault prefix,
with a max_age short enough that every subscription falls due several times.
At the end: nothing lost, nothing left mid-rotation, no subscription rotated
twice inside its max_age, and every regenerate Monite applied was committed
(the claims fence every rotation, so replicas only waste claim attempts).

While they run, each daemon's /metrics, /healthz and /readyz output is scraped
and joins the secret hygiene scan (scenario 7).
"""

from __future__ import annotations

import itertools
import signal
import time
import urllib.error
import urllib.request
from collections import defaultdict
from datetime import datetime

import pytest

from rotator.sandbox import ISSUED
from tests.chaos.conftest import WorldFactory
from tests.chaos.harness import (
    FIGURES,
    PROFILE,
    Proc,
    free_port,
    tracebacks,
    trials,
    wait_until,
)
from tests.conftest import leaked, remember_output

SUBSCRIPTIONS = trials(150, 500)
# Long enough for a first rotation's settling window (2 x claim_ttl: the
# subscriptions start unmanaged) and then max_age to pass.
CYCLES = trials(12, 14)
INTERVAL = trials(2, 3)  # seconds between cycles
MAX_AGE = trials(5, 9)  # seconds: every subscription falls due again during the run
TOLERANCE = 0.5  # seconds: Monite's answer as the audit line tells it vs. the record's rotated_at


def _scrape(port: int, path: str) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return str(response.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:  # /readyz may answer 503 while a dependency is down
        return str(exc.read().decode("utf-8", "replace"))
    except OSError as exc:
        return f"<unreachable: {exc}>"


def _cycles(proc: Proc) -> int:
    return proc.event_names().count("cycle.finished")


def _at(event: dict[str, object]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def _answered_at(event: dict[str, object]) -> float:
    """When Monite answered a committed rotation's regenerate (its `rotated_at`): the audit
    line's time less its exposure, the commit's own duration, which a loaded machine
    stretches past any fixed tolerance."""
    return _at(event) - float(str(event.get("exposure_ms", 0.0))) / 1000


@pytest.mark.timeout(900)
def test_three_daemons_lose_nothing_and_never_rotate_early(make_world: WorldFactory) -> None:
    """Three daemons, many cycles: 0 lost, none rotated twice inside max_age, none wasted."""
    world = make_world()
    ids = world.seed(SUBSCRIPTIONS)
    ports = [world.health_port, free_port(), free_port()]
    daemons = [
        world.spawn(
            "run",
            config=world.config(
                f"replica{n}.toml",
                policy={"max_age": f"{MAX_AGE}s"},
                schedule={"interval": f"{INTERVAL}s"},
                rotation={"concurrency": 8},
                health={"listen": f"127.0.0.1:{port}"},
            ),
        )
        for n, port in enumerate(ports)
    ]
    started = time.monotonic()

    scraped: list[str] = []
    metrics: dict[int, str] = {}  # each daemon's /metrics, by port
    halfway = False

    def enough() -> bool:
        nonlocal halfway
        counts = [_cycles(d) for d in daemons]
        if not halfway and min(counts) >= CYCLES // 2:
            halfway = True
            for port in ports:
                metrics[port] = _scrape(port, "/metrics")
                scraped.extend(
                    [metrics[port]] + [_scrape(port, p) for p in ("/healthz", "/readyz")]
                )
        return min(counts) >= CYCLES or not all(d.alive() for d in daemons)

    budget = CYCLES * INTERVAL * 6 + 120
    finished = wait_until(enough, budget, 0.25)
    ran_for = time.monotonic() - started
    for d in daemons:
        d.signal(signal.SIGTERM)
    codes = [d.wait(40) for d in daemons]
    for d in daemons:
        d.close()
    remember_output(*scraped)

    # Every commit, from every replica, per subscription.
    commits: dict[str, list[float]] = defaultdict(list)
    conflicts = 0
    for d in daemons:
        for e in d.events():
            if e.get("event") in ("rotation.succeeded", "rotation.recovered"):
                commits[str(e["subscription_id"])].append(_answered_at(e))
            elif e.get("event") == "rotation.conflict":
                conflicts += 1
    too_soon = []
    for sid, times in commits.items():
        times.sort()
        gaps = [b - a for a, b in itertools.pairwise(times)]
        if any(gap < MAX_AGE - TOLERANCE for gap in gaps):
            too_soon.append(sid)
    regenerations = world.regenerations()
    uncommitted = [sid for sid in ids if regenerations[sid] != len(commits.get(sid, []))]
    rotations = sum(regenerations.values())
    lost = world.lost()
    FIGURES.add(
        "4-three-daemons",
        title=f"Three daemons, {SUBSCRIPTIONS} subscriptions, {CYCLES} cycles each",
        command=f"CHAOS_PROFILE={PROFILE} .venv/bin/pytest tests/chaos/test_replicas.py",
        fault="3 replicas racing for the same records",
        lost=lost,
        subscriptions=SUBSCRIPTIONS,
        cycles_per_daemon=min(_cycles(d) for d in daemons),
        rotations=rotations,
        claim_conflicts=conflicts,
        max_regenerations_per_id=max(regenerations.values()),
        run_seconds=round(ran_for, 1),
    )
    assert (True, [0, 0, 0], [], 0) == (finished, codes, tracebacks(daemons), lost)
    assert (True, [], []) == (world.settled(), too_soon, uncommitted)
    assert all(n >= 2 for n in regenerations.values())  # every one fell due again at least once
    # Scenario 7: every daemon's endpoints exist and leak nothing the emulators issued.
    assert {port: True for port in ports} == {
        port: "rotator_" in metrics.get(port, "") for port in ports
    }
    assert [] == leaked(set(ISSUED), scraped)
