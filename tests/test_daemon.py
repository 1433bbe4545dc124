"""`rotator run` as a real process against the emulators: signals, sd_notify, reloads, endpoint.

Each test starts `python -m rotator run --config ...` and follows its JSON audit
log line by line; waits are bounded, and every captured line joins the
suite's secret hygiene scan.
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
from rotator.daemon import READINESS_CACHE_SECONDS
from rotator.daemon import Daemon as RotatorDaemon
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from tests.conftest import remember_output
from tests.daemon_harness import PREFIX, Config, DaemonProcess, bound_notify_socket, poll


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
    monite.faults.latency = 0.8
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
# SIGHUP reload
# ---------------------------------------------------------------------------


def test_sighup_broken_config_keeps_old_then_valid_config_applies(
    config: Config,
    start: Callable[..., DaemonProcess],
    monite: MoniteEmulator,
    vault: VaultEmulator,
) -> None:
    """A broken config on SIGHUP is refused and cycles go on; a valid one applies its policy."""
    sub = monite.seed()
    # Already managed and fresh, so only a policy change can make it due.
    vault.kv_write(
        "secret",
        f"{PREFIX}/{sub}",
        {
            "secret": monite.current_secret(sub),
            "state": "active",
            "rotated_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        },
    )
    config.write(schedule={"interval": "2s"})
    daemon = start()
    daemon.wait_for("cycle.finished")

    config.write(policy={"max_age": 30})  # a bare number: not a duration
    daemon.signal(signal.SIGHUP)
    failed = daemon.wait_for("config.reload_failed")
    assert "max_age" in failed["reason"]
    assert 1 == len(failed["reason"].splitlines())
    daemon.wait_for("cycle.finished", timeout=10)  # still cycling on the old settings
    assert 0 == monite.regenerate_count(sub)

    config.write(policy={"max_age": "1s"}, schedule={"interval": "1s"})
    daemon.signal(signal.SIGHUP)
    reloaded = daemon.wait_for("config.reloaded")
    assert ["policy", "schedule"] == reloaded["changed"]
    daemon.wait_for(
        "rotation.succeeded", timeout=10, where=lambda e: e["reason"] == "max_age_exceeded"
    )
    assert monite.current_secret(sub) == vault_secret(vault, sub)
    assert 0 == daemon.stop()


@pytest.mark.emulator_only("counts Vault list requests to prove the old token still serves")
def test_sighup_new_vault_token_rebuilds_engine(
    config: Config,
    start: Callable[..., DaemonProcess],
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_token: str,
) -> None:
    """A changed Vault token is checked, then swapped in; a token Vault refuses is not."""
    monite.seed()
    daemon = start()
    daemon.wait_for("cycle.finished")
    token_file = Path(config.values["vault"]["token_file"])
    token_file.write_text("hvs.not-a-real-token")
    daemon.signal(signal.SIGHUP)
    failed = daemon.wait_for("config.reload_failed")
    assert "cannot reach Monite and Vault" in failed["reason"]
    # the old engine (old token) still serves: a fresh readiness check past the cache passes
    time.sleep(READINESS_CACHE_SECONDS + 0.2)
    lists_before = vault.request_count("kv_list")
    status, _, body = http_get(config.port, "/readyz")
    assert (200, True) == (status, json.loads(body)["ready"])
    assert 1 == vault.request_count("kv_list") - lists_before

    token_file.write_text(vault.create_token(policies=["rotator", "default"]))
    vault.revoke_token(vault_token)
    daemon.signal(signal.SIGHUP)
    assert ["vault"] == daemon.wait_for("config.reloaded")["changed"]
    status, _, body = http_get(config.port, "/readyz")
    assert (200, True) == (status, json.loads(body)["ready"])
    assert 0 == daemon.stop()


# ---------------------------------------------------------------------------
# Endpoint
# ---------------------------------------------------------------------------


def test_health_readiness_and_metrics(
    config: Config,
    start: Callable[..., DaemonProcess],
    monite: MoniteEmulator,
    vault: VaultEmulator,
) -> None:
    """The endpoint answers liveness, readiness (503 while Vault is sealed) and metrics."""
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

    vault.seal()
    assert poll(lambda: http_get(config.port, "/readyz")[0] == 503, timeout=15)
    reasons = json.loads(http_get(config.port, "/readyz")[2])["reasons"]
    assert any("sealed" in reason for reason in reasons), reasons
    assert 200 == http_get(config.port, "/healthz")[0]
    vault.unseal()
    assert poll(lambda: http_get(config.port, "/readyz")[0] == 200, timeout=15)
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
# Claim expiry check
# ---------------------------------------------------------------------------


def test_claim_left_behind_is_recovered_after_claim_ttl(
    config: Config,
    start: Callable[..., DaemonProcess],
    monite: MoniteEmulator,
    vault: VaultEmulator,
) -> None:
    """A claim left by a failed regenerate is recovered about claim_ttl later, not next hour."""
    sid = monite.seed()
    config.write(monite={"timeout": "1s", "max_retries": 1}, rotation={"claim_ttl": "4s"})
    monite.faults.fail_regenerate = 2  # the first attempt and its one retry
    daemon = start()
    failed = daemon.wait_for("rotation.failed")
    assert ("regenerate", sid) == (failed["stage"], failed["subscription_id"])
    daemon.wait_for("daemon.claim_check_scheduled")
    failed_at = time.monotonic()
    recovered = daemon.wait_for("rotation.recovered", timeout=15)
    elapsed = time.monotonic() - failed_at
    assert (sid, "claim_expired") == (recovered["subscription_id"], recovered["reason"])
    assert elapsed < 10, elapsed
    assert monite.current_secret(sid) == vault_secret(vault, sid)
    assert 0 == daemon.stop()


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
    scheduler = daemon._schedule.scheduler
    assert scheduler is not None
    scheduler.shutdown(wait=False)
    await asyncio.sleep(0.05)
    assert not daemon.alive()
    daemon.stop()
    assert 0 == await asyncio.wait_for(serving, timeout=10)
