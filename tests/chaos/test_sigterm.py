"""Scenario 5: SIGTERM at random moments: every rotation that reached Monite is committed first.

No recovery run follows the stop: what Vault holds when the process has
exited is what consumers get. A rotation "reached Monite" when Monite applied
a regenerate for it; its secret must then be in Vault, committed (`active`).
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass

import pytest

from tests.chaos.conftest import WorldFactory
from tests.chaos.harness import FIGURES, parallel, rng, tracebacks, trials, wait_until

SUBSCRIPTIONS = 12


@dataclass(frozen=True)
class Stop:
    moment: str
    exit_code: int | None
    reached_monite: int
    uncommitted: list[str]  # reached Monite, but Vault does not hold Monite's secret
    left_claimed: list[str]  # records left mid-rotation
    stop_seconds: float
    tracebacks: list[str]


def _stop_at(
    make_world: WorldFactory,
    args: tuple[str, ...],
    moment: tuple[str, float],
    signum: int = signal.SIGTERM,
    latency: float = 0.25,
) -> Stop:
    """Signal `delay` seconds after `anchor`: the spawn, or Monite's first regenerate request."""
    anchor, delay = moment
    world = make_world()
    ids = world.seed(SUBSCRIPTIONS)
    world.monite.faults.latency = latency  # 12 rotations, 4 at a time: 3 rounds of this
    cfg = world.config(rotation={"concurrency": 4})
    proc = world.spawn(*args, config=cfg)
    if anchor == "regenerate":
        assert wait_until(
            lambda: world.monite.request_count("regenerate_secret") >= 1, 30, 0.005
        ), "the rotator never asked Monite to regenerate: the anchor never came"
    time.sleep(delay)
    sent = time.monotonic()
    proc.signal(signum)
    code = proc.wait(40)
    took = time.monotonic() - sent
    proc.close()
    time.sleep(0.6)  # requests the process left behind finish at the emulators
    reached = [sid for sid in ids if world.monite.regenerate_count(sid) > 0]
    return Stop(
        moment=f"{anchor}+{delay:.2f}s",
        exit_code=code,
        reached_monite=len(reached),
        uncommitted=world.mismatched(reached),
        left_claimed=world.rotating(),
        stop_seconds=took,
        tracebacks=tracebacks([proc]),
    )


def _moments(label: str, count: int) -> list[tuple[str, float]]:
    """Random moments: most inside the first cycle, every fourth anywhere from the spawn."""
    random = rng(label)
    return [
        ("spawn", random.uniform(0.0, 3.0)) if n % 4 == 3 else ("regenerate", random.uniform(0, 1))
        for n in range(count)
    ]


def _record(key: str, title: str, command: str, stops: list[Stop], fault: str = "SIGTERM") -> None:
    for s in stops:
        FIGURES.add(
            key,
            title=title,
            command=command,
            fault=f"{fault} at a random moment",
            lost=len(s.uncommitted),
            stop_seconds=round(s.stop_seconds, 2),
            reached_monite=s.reached_monite,
        )


def _expected(s: Stop) -> tuple[object, ...]:
    # Before the signal handler is installed (interpreter start-up) SIGTERM ends the
    # process at once (-15); that is only harmless while nothing reached Monite.
    code = -signal.SIGTERM if s.exit_code == -signal.SIGTERM and s.reached_monite == 0 else 0
    return (s.moment, code, [], [], [])


def _actual(s: Stop) -> tuple[object, ...]:
    return (s.moment, s.exit_code, s.uncommitted, s.left_claimed, s.tracebacks)


@pytest.mark.timeout(600)
def test_sigterm_daemon_commits_every_rotation_that_reached_monite(
    make_world: WorldFactory,
) -> None:
    """SIGTERM to `rotator run` at random moments: exit 0, every regenerated secret is in Vault."""
    moments = _moments("sigterm-daemon", trials(4, 24))
    stops = parallel(lambda m: _stop_at(make_world, ("run",), m), moments, workers=4)
    _record(
        "5-sigterm-daemon",
        "SIGTERM to the daemon at random moments",
        "CHAOS_PROFILE=full .venv/bin/pytest tests/chaos/test_sigterm.py -k daemon_commits",
        stops,
    )
    assert [_expected(s) for s in stops] == [_actual(s) for s in stops]
    assert any(s.reached_monite for s in stops)  # the signal did land mid-cycle somewhere


@pytest.mark.timeout(300)
def test_sigterm_run_once_commits_every_rotation_that_reached_monite(
    make_world: WorldFactory,
) -> None:
    """SIGTERM to `rotator run --once` mid-cycle: every regenerated secret is in Vault at exit."""
    moments = [("regenerate", 0.1 + n * 0.05) for n in range(trials(2, 6))]
    stops = parallel(
        lambda m: _stop_at(make_world, ("run", "--once"), m, latency=0.5), moments, workers=3
    )
    _record(
        "5b-sigterm-run-once",
        "SIGTERM to `run --once` mid-cycle",
        ".venv/bin/pytest tests/chaos/test_sigterm.py -k run_once_commits",
        stops,
    )
    assert [_expected(s) for s in stops] == [_actual(s) for s in stops]
    # every stop landed after a regenerate was applied, so there was something to commit
    assert [] == [s.moment for s in stops if s.reached_monite == 0]


def test_idle_daemon_stops_cleanly_on_sigterm(make_world: WorldFactory) -> None:
    """SIGTERM to an idle daemon: exit 0, no error-level log line, no traceback."""
    world = make_world()
    world.seed(2)
    daemon = world.spawn("run", config=world.config())
    assert wait_until(lambda: "cycle.finished" in daemon.event_names(), 20, 0.05)
    time.sleep(0.3)
    daemon.signal(signal.SIGTERM)
    code = daemon.wait(30)
    daemon.close()
    errors = [e.get("event") for e in daemon.events() if e.get("level") in ("error", "critical")]
    assert (0, [], []) == (code, errors, tracebacks([daemon]))


@pytest.mark.timeout(300)
def test_ctrl_c_during_forced_rotation_commits_what_reached_monite(
    make_world: WorldFactory,
) -> None:
    """Ctrl-C during `rotate --force --all`: every regenerated secret is in Vault at exit."""
    moments = [("regenerate", 0.1 + n * 0.05) for n in range(trials(1, 4))]
    stops = parallel(
        lambda m: _stop_at(
            make_world, ("rotate", "--force", "--all"), m, signal.SIGINT, latency=0.5
        ),
        moments,
        workers=3,
    )
    _record(
        "5c-sigint-rotate-force",
        "Ctrl-C (SIGINT) to `rotate --force --all` mid-cycle",
        ".venv/bin/pytest tests/chaos/test_sigterm.py -k ctrl_c",
        stops,
        fault="SIGINT",
    )
    assert [(s.moment, 130, [], [], []) for s in stops] == [_actual(s) for s in stops]
    # every stop landed after a regenerate was applied, so there was something to commit
    assert [] == [s.moment for s in stops if s.reached_monite == 0]
