"""`rotator run` as a real process against the emulators: signals, sd_notify, reloads, endpoint.

Each test starts `python -m rotator run --config ...` and follows its JSON audit
log line by line; waits are bounded, and every captured line joins the
suite's secret hygiene scan. What is about the daemon's timing (the claim
check, reloads, the readiness cache) runs in process in virtual time, in
`tests/test_daemon_virtual_time.py`; SIGHUP in a process is
`tests/test_daemon_robustness.py`'s.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rotator.config import (
    HealthSettings,
    MoniteSettings,
    Settings,
    VaultSettings,
    cron_trigger,
    crontab_weekdays,
)
from rotator.daemon import Daemon as RotatorDaemon
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from tests.conftest import remember_output
from tests.daemon_harness import PREFIX, Config, DaemonProcess, bound_notify_socket


@pytest.fixture
def config(
    tmp_path: Path, monite: MoniteEmulator, vault: VaultEmulator, vault_token: str
) -> Config:
    """Settings for the emulators: hourly cycles, a short claim, the endpoint on a free port."""
    return Config(tmp_path, monite, vault, vault_token)


@pytest.fixture
def start(config: Config) -> Iterator[Callable[..., DaemonProcess]]:
    """Starts daemons on the written config; kills any still running after the test."""
    started: list[DaemonProcess] = []

    def launch(env: dict[str, str] | None = None) -> DaemonProcess:
        if not config.path.exists():
            config.write()
        daemon = DaemonProcess(config.path, env)
        started.append(daemon)
        return daemon

    yield launch
    for daemon in started:
        daemon.close()


def vault_secret(vault: VaultEmulator, subscription_id: str) -> str | None:
    found = vault.kv_read("secret", f"{PREFIX}/{subscription_id}")
    return None if found is None else found[0].get("secret")


def http_get(port: int, path: str) -> tuple[int, str, str]:
    """(status, content type, body) of one GET on the daemon's endpoint."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read().decode()
    finally:
        conn.close()
    remember_output(body)
    return response.status, response.getheader("Content-Type") or "", body


# ---------------------------------------------------------------------------
# sd_notify
# ---------------------------------------------------------------------------


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket standing in for systemd: a short path, or an abstract @name."""
    with bound_notify_socket(request.param) as bound:
        yield bound


def receive(sock: socket.socket, until: Callable[[list[str]], bool], timeout: float) -> list[str]:
    """Datagrams (split into assignments) until `until` holds for them, within `timeout`."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while not until(got):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"not received in {timeout}s; got {got}")
        sock.settimeout(remaining)
        try:
            got += sock.recv(4096).decode().split("\n")
        except TimeoutError:
            continue
    return got


def test_notify_socket_gets_ready_status_watchdog_stopping(
    notify_socket: tuple[str, socket.socket],
    start: Callable[..., DaemonProcess],
    monite: MoniteEmulator,
) -> None:
    """A real daemon sends READY=1, STATUS=, WATCHDOG=1 and, on SIGTERM, STOPPING=1; exit 0."""
    address, sock = notify_socket
    monite.seed()
    daemon = start({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"})
    got = receive(
        sock,
        lambda g: (
            "READY=1" in g and any("1 rotated" in a for a in g) and g.count("WATCHDOG=1") >= 2
        ),
        timeout=20,
    )
    ready_at = got.index("READY=1")
    assert [] == [a for a in got[:ready_at] if a.startswith("STOPPING")]
    assert any(a.startswith("STATUS=last cycle ") for a in got)
    daemon.signal(signal.SIGTERM)
    receive(sock, lambda g: "STOPPING=1" in g, timeout=10)
    assert 0 == daemon.wait()
    assert [] == [e for e in daemon.events if e["level"] in ("error", "critical")]
    started = daemon.wait_for("daemon.started", timeout=1)
    assert (True, 0.2) == (started["systemd_notify"], started["watchdog_seconds"])


# ---------------------------------------------------------------------------
# SIGTERM drain
# ---------------------------------------------------------------------------


def test_sigterm_during_slow_rotation_still_commits(
    config: Config,
    start: Callable[..., DaemonProcess],
    monite: MoniteEmulator,
    vault: VaultEmulator,
) -> None:
    """SIGTERM mid-regenerate: the secret still reaches Vault, nothing new starts, exit 0."""
    first, second = monite.seed(), monite.seed()
    config.write(monite={"timeout": "4s"}, rotation={"claim_ttl": "20s", "concurrency": 1})
    monite.faults.latency = 0.4  # every request: the regenerate is in flight at SIGTERM
    daemon = start()
    claimed = daemon.wait_for("rotation.claimed", timeout=20)
    daemon.signal(signal.SIGTERM)
    assert 0 == daemon.wait(timeout=20)
    names = daemon.names()
    in_flight = claimed["subscription_id"]
    other = second if in_flight == first else first
    assert names.index("daemon.stopping") < names.index("rotation.succeeded")
    assert monite.current_secret(in_flight) == vault_secret(vault, in_flight)
    assert 0 == monite.regenerate_count(other)
    skipped = [e for e in daemon.events if e["event"] == "rotation.skipped"]
    assert [(other, "shutting_down")] == [(e["subscription_id"], e["reason"]) for e in skipped]
    assert 0 == daemon.wait_for("daemon.stopped", timeout=1)["exit_code"]


# ---------------------------------------------------------------------------
# Endpoint
# ---------------------------------------------------------------------------


def test_health_readiness_and_metrics(
    config: Config,
    start: Callable[..., DaemonProcess],
    monite: MoniteEmulator,
    vault: VaultEmulator,
) -> None:
    """The endpoint answers liveness, readiness and metrics (a sealed Vault: virtual time)."""
    ids = [monite.seed() for _ in range(3)]
    daemon = start()
    started = daemon.wait_for("daemon.started")
    assert f"127.0.0.1:{config.port}" == started["health"]
    daemon.wait_for("cycle.finished")

    status, ctype, body = http_get(config.port, "/healthz")
    assert (200, "application/json") == (status, ctype)
    status, _, body = http_get(config.port, "/readyz")
    assert (200, []) == (status, json.loads(body)["reasons"])
    assert 404 == http_get(config.port, "/")[0]

    status, ctype, body = http_get(config.port, "/metrics")
    assert (200, "text/plain; version=0.0.4; charset=utf-8") == (status, ctype)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    assert 3.0 == samples[("rotator_rotations_total", (("outcome", "rotated"),))]
    assert 1.0 == samples[("rotator_cycles_total", (("result", "ok"),))]
    assert 3.0 == samples[("rotator_exposure_window_seconds_count", ())]
    assert (
        3.0
        == samples[
            (
                "rotator_monite_requests_total",
                (("operation", "regenerate_secret"), ("status", "200")),
            )
        ]
    )
    assert (
        6.0
        == samples[("rotator_vault_requests_total", (("operation", "write"), ("outcome", "ok")))]
    )
    assert 0.0 == samples[("rotator_unmanaged_subscriptions", ())]
    assert samples[("rotator_oldest_managed_secret_age_seconds", ())] < 60
    assert samples[("rotator_last_success_timestamp_seconds", ())] > time.time() - 60
    for sid in ids:
        assert sid not in body

    assert 0 == daemon.stop()


# ---------------------------------------------------------------------------
# Preflight
# ---------------------------------------------------------------------------


def test_preflight_waits_for_sealed_vault(
    config: Config,
    start: Callable[..., DaemonProcess],
    monite: MoniteEmulator,
    vault: VaultEmulator,
) -> None:
    """With Vault sealed at start the daemon waits (alive, not ready) and comes up after unseal."""
    sid = monite.seed()
    vault.seal()
    daemon = start()
    failed = daemon.wait_for("daemon.preflight_failed")
    assert "sealed" in failed["error"]
    assert 200 == http_get(config.port, "/healthz")[0]
    assert 503 == http_get(config.port, "/readyz")[0]
    assert 0 == monite.regenerate_count(sid)
    vault.unseal()
    daemon.wait_for("daemon.ready", timeout=15)
    daemon.wait_for("rotation.succeeded")
    assert 0 == daemon.stop()


def test_first_preflight_refused_token_exits_77(
    config: Config, start: Callable[..., DaemonProcess], vault: VaultEmulator, vault_token: str
) -> None:
    """A Vault token that is refused at start cannot be waited out: exit 77, one line on stderr."""
    vault.revoke_token(vault_token)
    daemon = start()
    assert 77 == daemon.wait(timeout=20)
    assert 1 == len(daemon.stderr.strip().splitlines()), daemon.stderr
    assert "daemon.ready" not in daemon.names()


def test_sigterm_during_preflight_exits_0(
    config: Config, start: Callable[..., DaemonProcess], vault: VaultEmulator
) -> None:
    """SIGTERM while waiting for dependencies stops at once with exit 0."""
    vault.seal()
    daemon = start()
    daemon.wait_for("daemon.preflight_failed")
    began = time.monotonic()
    assert 0 == daemon.stop()
    assert time.monotonic() - began < 5


# ---------------------------------------------------------------------------
# Triggers (in process)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("*", "*"),
        ("0", "sun"),
        ("7", "sun"),
        ("1", "mon"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("5-7", "sun,fri,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("1,3", "mon,wed"),
        ("mon-fri", "mon,tue,wed,thu,fri"),
        ("SAT", "sat"),
    ],
)
def test_crontab_weekdays(field: str, expected: str) -> None:
    """Crontab weekday numbers (Sunday = 0 or 7) become APScheduler's weekday names."""
    assert expected == crontab_weekdays(field)


def test_cron_monday_means_monday() -> None:
    """A crontab "0 3 * * 1" fires on Monday 03:00 UTC (APScheduler's own reading: Tuesday)."""
    trigger = cron_trigger("0 3 * * 1")
    friday = datetime(2024, 5, 31, 12, 0, tzinfo=UTC)
    fire = trigger.get_next_fire_time(None, friday)
    assert datetime(2024, 6, 3, 3, 0, tzinfo=UTC) == fire
    assert "Monday" == fire.strftime("%A")


# ---------------------------------------------------------------------------
# Watchdog liveness (in process)
# ---------------------------------------------------------------------------


async def test_alive_only_while_scheduler_runs(
    monite_settings: MoniteSettings, vault_settings: VaultSettings
) -> None:
    """alive() (what gates WATCHDOG=1 and /healthz) turns false once the scheduler is gone."""
    settings = Settings(
        monite=monite_settings, vault=vault_settings, health=HealthSettings(enabled=False)
    )
    daemon = RotatorDaemon(settings, owner="test:1", environ={})
    serving = asyncio.create_task(daemon.serve())
    for _ in range(100):
        if daemon.phase == "running" and daemon.last_report is not None:
            break
        await asyncio.sleep(0.05)
    assert "running" == daemon.phase
    assert daemon.alive()
    scheduler = daemon.scheduler
    assert scheduler is not None
    scheduler.shutdown(wait=False)
    await asyncio.sleep(0.05)
    assert not daemon.alive()
    daemon.stop()
    assert 0 == await asyncio.wait_for(serving, timeout=10)
