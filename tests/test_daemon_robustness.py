"""Daemon robustness: SIGHUP during preflight, the hung-cycle watchdog, internal errors.

The reload tests run `python -m rotator run` as a real process against the
emulators; the others build a Daemon in process (to shrink the cycle limit),
the hung cycle on a manual FakeClock, so the limit is crossed in virtual time.
Every wait is bounded, and every captured line joins the secret hygiene scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from rotator import events
from rotator.app import open_engine
from rotator.clock import SystemClock
from rotator.config import (
    HealthSettings,
    MoniteSettings,
    RotationSettings,
    Settings,
    VaultSettings,
)
from rotator.daemon import CYCLE_LIMIT_FLOOR, Daemon, ExitCode, cycle_limit
from rotator.daemon import drain as drain_cycle
from rotator.daemon import reload as reload_module
from rotator.daemon.drain import Flush
from rotator.engine import CycleReport, Engine
from rotator.hooks import Hooks
from rotator.policy import Force
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from tests.clocks import FakeClock
from tests.conftest import capture_audit
from tests.daemon_harness import Config, DaemonProcess, bound_notify_socket, serving, toml


@pytest.fixture
def processes() -> Iterator[list[DaemonProcess]]:
    """Daemon processes started by a test; killed (if still running) afterwards."""
    started: list[DaemonProcess] = []
    yield started
    for process in started:
        process.close()


# ---------------------------------------------------------------------------
# SIGHUP while the preflight check is in flight
# ---------------------------------------------------------------------------


def test_sighup_during_preflight_keeps_running_then_stops_cleanly(
    tmp_path: Path,
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_token: str,
    processes: list[DaemonProcess],
) -> None:
    """SIGHUP while a process waits for Vault reloads, neither crashes nor hides it; exit 0.

    A reload mid-check, and ready after it: test_daemon_virtual_time, in process.
    """
    config = Config(tmp_path, monite, vault, vault_token)
    (tmp_path / "vault_token").write_text(vault_token + "\n")  # a token file ending in a newline
    config.write()
    sub = monite.seed()
    vault.seal()
    daemon = DaemonProcess(config.path)
    processes.append(daemon)

    daemon.wait_for(events.DAEMON_PREFLIGHT_FAILED, timeout=20)
    config.write(rotation={"claim_ttl": "9s"})
    daemon.signal(signal.SIGHUP)
    reloaded = daemon.wait_for(events.CONFIG_RELOADED, timeout=20)
    assert 0 == daemon.stop()
    assert ["rotation"] == reloaded["changed"]
    assert 0 == monite.regenerate_count(sub)
    assert "Traceback" not in daemon.stderr
    assert [] == [e for e in daemon.events if e["event"] == events.DAEMON_FAILED]
    assert [0] == [e["exit_code"] for e in daemon.events if e["event"] == events.DAEMON_STOPPED]


# ---------------------------------------------------------------------------
# SIGHUP with hostile configs
# ---------------------------------------------------------------------------


def test_sighup_hostile_configs_fail_the_reload_and_keep_the_old_config(
    tmp_path: Path,
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_token: str,
    processes: list[DaemonProcess],
) -> None:
    """Nested TOML, a FIFO or /dev/zero secret: config.reload_failed at once, old config kept."""
    config = Config(tmp_path, monite, vault, vault_token)
    config.write()  # the harness writes its secret files 0644: a warning each, at every load
    secret_file = config.values["monite"]["client_secret_file"]
    daemon = DaemonProcess(config.path)
    processes.append(daemon)
    daemon.wait_for(events.CYCLE_FINISHED, timeout=20)

    reasons: list[str] = []
    config.path.write_text(toml(config.values) + "[deep]\nx = " + "[" * 5000 + "]" * 5000 + "\n")
    daemon.signal(signal.SIGHUP)
    reasons.append(daemon.wait_for(events.CONFIG_RELOAD_FAILED, timeout=5)["reason"])
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for hostile in (str(fifo), "/dev/zero"):
        config.write(monite={"client_secret_file": hostile})
        daemon.signal(signal.SIGHUP)
        reasons.append(daemon.wait_for(events.CONFIG_RELOAD_FAILED, timeout=5)["reason"])
    config.write(monite={"client_secret_file": secret_file}, rotation={"claim_ttl": "9s"})
    daemon.signal(signal.SIGHUP)
    reloaded = daemon.wait_for(events.CONFIG_RELOADED, timeout=20)
    assert 0 == daemon.stop()
    where = "monite.client_secret_file: file"
    assert [
        f"config file {config.path} nests arrays or inline tables too deeply to read",
        f"{where} {fifo} is a named pipe (FIFO), not a regular file",
        f"{where} /dev/zero is a character device, not a regular file",
    ] == [reason.split(";")[0] for reason in reasons]
    # Only what the last file changes from the running config: the old one was kept.
    assert ["rotation"] == reloaded["changed"]
    exposed = [e for e in daemon.events if e["event"] == events.CONFIG_SECRET_FILE_EXPOSED]
    assert 2 * [secret_file, config.values["vault"]["token_file"]] == [e["file"] for e in exposed]
    assert (False, False) == ("Traceback" in daemon.stderr, "never retrieved" in daemon.stderr)


# ---------------------------------------------------------------------------
# In process
# ---------------------------------------------------------------------------


async def test_reload_that_fails_unexpectedly_is_a_reload_failed_event(
    tmp_path: Path,
    monite_settings: MoniteSettings,
    vault_settings: VaultSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Any exception reading the config on SIGHUP is config.reload_failed (type only), not lost."""

    def broken(*_: object, **__: object) -> Settings:
        raise RuntimeError("hvs.text-an-exception-may-carry")

    settings = Settings(
        monite=monite_settings, vault=vault_settings, health=HealthSettings(enabled=False)
    )
    daemon = Daemon(settings, owner="test:1", config_path=tmp_path / "rotator.toml", environ={})
    monkeypatch.setattr(reload_module, "load_settings", broken)
    with capture_audit() as captured:
        applied = await asyncio.wait_for(daemon.reload(), timeout=5)
    failed = [e for e in captured if e["event"] == events.CONFIG_RELOAD_FAILED]
    assert (
        False,
        [
            "reading the configuration failed unexpectedly (RuntimeError); check the file, "
            "and report this as a bug"
        ],
    ) == (applied, [e["reason"] for e in failed])


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket standing in for systemd's notify socket."""
    with bound_notify_socket("path") as (address, sock):
        sock.setblocking(False)
        yield address, sock


def drain(sock: socket.socket) -> list[str]:
    """Every datagram waiting on `sock`, split into assignments (bounded by what is queued)."""
    got: list[str] = []
    for _ in range(10_000):
        try:
            got += sock.recv(4096).decode().split("\n")
        except BlockingIOError:
            break
    return got


async def wait_until(check: Callable[[], bool], seconds: float) -> bool:
    for _ in range(int(seconds / 0.05)):
        if check():
            return True
        await asyncio.sleep(0.05)
    return check()


async def test_hung_cycle_withholds_watchdog_and_fails_healthz(
    monite_settings: MoniteSettings,
    vault_settings: VaultSettings,
    notify_socket: tuple[str, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cycle running past the cycle limit: no WATCHDOG=1, /healthz 503; healthy once it ends."""
    address, sock = notify_socket
    clock = FakeClock(start=datetime.now(UTC), manual=True)
    settings = Settings(
        monite=monite_settings,
        vault=vault_settings,
        health=HealthSettings(listen="127.0.0.1:0"),
    )
    entered, release = asyncio.Event(), asyncio.Event()

    @contextlib.asynccontextmanager
    async def factory(s: Settings, hooks: Hooks) -> AsyncIterator[Engine]:
        async with open_engine(s, owner="test:1", clock=clock, hooks=hooks) as engine:
            run_cycle = engine.run_cycle

            async def second_cycle_hangs(force: Force | None = None) -> CycleReport:
                if daemon.last_report is not None:
                    entered.set()
                    await release.wait()
                return await run_cycle(force)

            monkeypatch.setattr(engine, "run_cycle", second_cycle_hangs)
            yield engine

    daemon = Daemon(
        settings,
        owner="test:1",
        environ={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000"},
        clock=clock,
        engine_factory=factory,
        cycle_limit=timedelta(seconds=0.5),
    )

    async def tick(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0.02)  # the watchdog and the endpoint run

    with capture_audit() as captured:
        async with serving(daemon) as task, httpx.AsyncClient(timeout=5) as http:
            assert await wait_until(lambda: daemon.last_report is not None, seconds=10)
            assert daemon.alive()
            scheduler = daemon.scheduler
            assert scheduler is not None
            for _ in range(50):  # again while the first run winds down (max_instances=1)
                scheduler.modify_job("cycle", next_run_time=datetime.now(UTC))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(entered.wait(), timeout=0.2)
                    break
            assert entered.is_set()
            await tick(0.5)
            at_the_limit = daemon.alive()
            await tick(0.01)
            drain(sock)
            for _ in range(4):  # four watchdog intervals
                await tick(0.1)
            withheld = drain(sock)
            address_port = daemon.health_address
            assert address_port is not None
            url = f"http://127.0.0.1:{address_port[1]}/healthz"
            hung = await http.get(url)
            still_hung = not daemon.alive()
            release.set()
            assert await wait_until(daemon.alive, seconds=15)
            healthy = await http.get(url)
            await tick(0.1)
            resumed = drain(sock)
            daemon.stop()
            assert 0 == await asyncio.wait_for(task, timeout=15)
    assert (True, True) == (at_the_limit, still_hung)
    assert [] == [a for a in withheld if a == "WATCHDOG=1"]
    assert "WATCHDOG=1" in resumed
    assert (503, 200) == (hung.status_code, healthy.status_code)
    assert "cycle hung: running for 1s, over the 0.5s limit" == hung.json()["status"]
    unhealthy = [e for e in captured if e["event"] == events.DAEMON_UNHEALTHY]
    assert 1 == len(unhealthy)
    assert unhealthy[0]["reason"].endswith("over the 0.5s limit")


def test_default_cycle_limit_covers_a_full_fleet_at_the_rate_limit() -> None:
    """The default limit: about 2.5h for the defaults, the 1h floor for small capped settings."""
    base = Settings(
        monite=MoniteSettings(client_id="c", client_secret="s"),
        vault=VaultSettings(address="http://127.0.0.1:8200"),
    )
    default = cycle_limit(base)
    assert timedelta(hours=2) < default < timedelta(hours=3)
    capped = base.model_copy(
        update={"rotation": RotationSettings(max_rotations_per_cycle=10)}
    ).model_copy(update={"monite": base.monite.model_copy(update={"max_pages": 1})})
    assert CYCLE_LIMIT_FLOOR == cycle_limit(capped)


async def test_unexpected_exception_exits_70_with_one_logged_error(
    monite_settings: MoniteSettings, vault_settings: VaultSettings
) -> None:
    """A bug escaping serve() logs daemon.failed and daemon.stopped with exit code 70, not 0."""

    @contextlib.asynccontextmanager
    async def broken(settings: Settings, hooks: Hooks) -> AsyncIterator[Engine]:
        raise RuntimeError("Cannot send a request, as the client has been closed.")
        yield  # pragma: no cover

    settings = Settings(
        monite=monite_settings, vault=vault_settings, health=HealthSettings(enabled=False)
    )
    daemon = Daemon(settings, owner="test:1", environ={}, engine_factory=broken)
    with capture_audit() as captured:
        code = await asyncio.wait_for(daemon.serve(), timeout=15)
    assert ExitCode.SOFTWARE == code
    assert 70 == code
    failed = [e for e in captured if e["event"] == events.DAEMON_FAILED]
    assert [("RuntimeError", "error")] == [(e["error"], e["log_level"]) for e in failed]
    stopped = [e["exit_code"] for e in captured if e["event"] == events.DAEMON_STOPPED]
    assert [70] == stopped


# ---------------------------------------------------------------------------
# The one drain (the daemon's and `run --once`'s)
# ---------------------------------------------------------------------------


class _StopRecorder:
    """Stands in for an Engine: records request_stop()."""

    def __init__(self) -> None:
        self.stopped = False
        self.hooks = None  # no hooks to run after the drain

    def request_stop(self) -> None:
        self.stopped = True


async def test_drain_waits_for_a_cycle_that_finishes_within_the_grace() -> None:
    """drain() stops new rotations, lets the cycle in flight finish, and says it did."""
    engine = _StopRecorder()
    cycle = asyncio.ensure_future(asyncio.sleep(0.05))
    finished = await drain_cycle(engine, cycle, 5.0, SystemClock())  # type: ignore[arg-type]
    assert (True, True, False) == (finished, engine.stopped, cycle.cancelled())


async def test_drain_cancels_a_cycle_still_running_after_the_grace() -> None:
    """drain() gives up after the grace: False, and the cycle is cancelled."""
    engine = _StopRecorder()
    cycle = asyncio.ensure_future(asyncio.sleep(30))
    finished = await asyncio.wait_for(
        drain_cycle(engine, cycle, 0.05, SystemClock()),  # type: ignore[arg-type]
        timeout=5,
    )
    assert (False, True, True) == (finished, engine.stopped, cycle.cancelled())


async def test_drain_bounds_the_hooks_a_reload_replaced_by_the_same_grace() -> None:
    """Replaced hooks still closing get what is left of the grace, then are cancelled."""
    hooks = Hooks([], vault_mount="secret", vault_prefix="monite/webhooks", clock=SystemClock())
    closing = asyncio.ensure_future(asyncio.sleep(30))  # a replaced hooks' close still busy
    finished = await asyncio.wait_for(
        drain_cycle(None, None, 0.05, SystemClock(), Flush(hooks, frozenset({closing}))),
        timeout=5,
    )
    assert (True, True) == (finished, closing.cancelled())
