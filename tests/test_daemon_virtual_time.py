"""The daemon in process on a manual FakeClock: claim checks, reloads, the readiness cache.

What these tests prove is about the daemon's timing (when the claim check runs,
how long a readiness answer is cached), so time is virtual: a sleep on the
daemon's clock waits until the test moves the clock past it. APScheduler keeps
real time, so a test that needs a scheduled job now moves its next run to the
present (`fire`) after checking when it was due. Signals and the process
itself are `tests/test_daemon.py`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from rotator import events
from rotator.app import open_engine
from rotator.config import (
    HealthSettings,
    MoniteSettings,
    RotationSettings,
    ScheduleSettings,
    Settings,
    VaultSettings,
    load_settings,
)
from rotator.daemon import READINESS_CACHE_SECONDS, Daemon
from rotator.daemon.schedule import CLAIM_CHECK_DELAY, CLAIM_CHECK_JOB, CYCLE_JOB
from rotator.engine import Engine
from rotator.hooks import Hooks
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from tests.clocks import FakeClock
from tests.conftest import capture_audit
from tests.daemon_harness import PREFIX, Config, serving
from tests.receiver import Receiver

OWNER = "test:1"


@pytest.fixture
def clock() -> FakeClock:
    """A manual clock starting at the real time, so APScheduler runs the first cycle at once."""
    return FakeClock(start=datetime.now(UTC), manual=True)


def daemon_on(settings: Settings, clock: FakeClock, **options: Any) -> Daemon:
    """A Daemon whose engines, probes and waits all run on `clock`."""

    def factory(s: Settings, hooks: Hooks) -> contextlib.AbstractAsyncContextManager[Engine]:
        return open_engine(s, owner=OWNER, clock=clock, hooks=hooks)

    return Daemon(settings, owner=OWNER, environ={}, clock=clock, engine_factory=factory, **options)


async def drive(
    clock: FakeClock, done: Callable[[], bool], *, longest: float = 8.0, turns: int = 2000
) -> bool:
    """Let the loop run until `done`, firing each retry backoff (a sleep up to `longest`
    seconds) as it comes; bounded by `turns` of 5 ms (about ten real seconds)."""
    for _ in range(turns):
        if done():
            return True
        await asyncio.sleep(0.005)
        due = [s for s in clock.pending() if s <= longest]
        if due:
            clock.advance(max(0.0, due[0]))
    return done()


async def next_report(daemon: Daemon, clock: FakeClock) -> None:
    """Wait until the daemon has finished a cycle it had not when called."""
    before = daemon.last_report
    assert await drive(clock, lambda: daemon.last_report is not before)


def fire(daemon: Daemon, job_id: str) -> None:
    """Run a scheduled job now (APScheduler counts real time, the daemon virtual time)."""
    scheduler = daemon.scheduler
    assert scheduler is not None
    scheduler.modify_job(job_id, next_run_time=datetime.now(UTC))


async def run_cycle_now(daemon: Daemon, clock: FakeClock) -> None:
    """Run the cycle job now and wait for its report.

    Fired again while the previous run is still winding down: with
    max_instances=1, APScheduler skips a run whose last one has not returned.
    """
    before = daemon.last_report
    for _ in range(40):
        fire(daemon, CYCLE_JOB)
        if await drive(clock, lambda: daemon.last_report is not before, turns=100):
            return
    raise AssertionError("the cycle job did not run")


def job_run_at(daemon: Daemon, job_id: str) -> datetime | None:
    scheduler = daemon.scheduler
    assert scheduler is not None
    job = scheduler.get_job(job_id)
    return None if job is None else job.next_run_time


async def get(http: httpx.AsyncClient, clock: FakeClock, daemon: Daemon, path: str) -> Any:
    """One GET on the daemon's endpoint, with the clock driven while it is answered."""
    address = daemon.health_address
    assert address is not None
    task = asyncio.ensure_future(http.get(f"http://127.0.0.1:{address[1]}{path}"))
    assert await drive(clock, task.done, longest=1.0)
    return task.result()


def names(captured: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in captured if e["event"] == name]


# ---------------------------------------------------------------------------
# Claim expiry check
# ---------------------------------------------------------------------------


@pytest.mark.emulator_only("moves Vault's clock past the claim (advance_time)")
async def test_claim_left_behind_is_recovered_after_claim_ttl(
    clock: FakeClock,
    monite: MoniteEmulator,
    vault: VaultEmulator,
    monite_settings: MoniteSettings,
    vault_settings: VaultSettings,
) -> None:
    """A claim left by a failed regenerate is recovered by a check due ~claim_ttl on, not in 1h."""
    sid = monite.seed()
    settings = Settings(
        monite=monite_settings.model_copy(
            update={"timeout": timedelta(seconds=1), "max_retries": 1}
        ),
        vault=vault_settings,
        schedule=ScheduleSettings(interval=timedelta(hours=1)),
        rotation=RotationSettings(claim_ttl=timedelta(seconds=4)),
        health=HealthSettings(enabled=False),
    )
    monite.faults.fail_regenerate = 2  # the first attempt and its one retry
    daemon = daemon_on(settings, clock)
    with capture_audit() as captured:
        async with serving(daemon) as task:
            await next_report(daemon, clock)
            [failed] = names(captured, events.ROTATION_FAILED)
            assert ("regenerate", sid) == (failed["stage"], failed["subscription_id"])
            report = daemon.last_report
            assert report is not None
            assert report.next_check_in is not None
            # Due when the claim (4s) and two clock margins have run out on Vault's clock,
            # measured from the cycle's start (Vault's Date lags up to a second).
            assert timedelta(seconds=6) <= report.next_check_in <= timedelta(seconds=7)
            due_at = clock.now() + report.next_check_in + CLAIM_CHECK_DELAY
            assert due_at == job_run_at(daemon, CLAIM_CHECK_JOB)
            assert [due_at] == [
                datetime.fromisoformat(e["run_at"])
                for e in names(captured, events.DAEMON_CLAIM_CHECK)
            ]
            hour = job_run_at(daemon, CYCLE_JOB)
            assert hour is not None
            assert hour - datetime.now(UTC) > timedelta(minutes=59)
            elapsed = (report.next_check_in + CLAIM_CHECK_DELAY).total_seconds()
            clock.advance(elapsed)
            vault.advance_time(elapsed)
            fire(daemon, CLAIM_CHECK_JOB)
            await next_report(daemon, clock)
            daemon.stop()
            assert 0 == await asyncio.wait_for(task, timeout=15)
    [recovered] = names(captured, events.ROTATION_RECOVERED)
    assert (sid, "claim_expired") == (recovered["subscription_id"], recovered["reason"])
    found = vault.kv_read("secret", f"{PREFIX}/{sid}")
    assert monite.current_secret(sid) == (found or ({},))[0].get("secret")


# ---------------------------------------------------------------------------
# Readiness and its cache
# ---------------------------------------------------------------------------


async def test_readiness_follows_a_sealed_vault_through_the_probe_cache(
    clock: FakeClock,
    monite: MoniteEmulator,
    vault: VaultEmulator,
    monite_settings: MoniteSettings,
    vault_settings: VaultSettings,
) -> None:
    """/readyz is 503 (sealed) once the 3s cache runs out after a seal, 200 as long after unseal."""
    monite.seed()
    settings = Settings(
        monite=monite_settings,
        vault=vault_settings,
        health=HealthSettings(listen="127.0.0.1:0"),
    )
    daemon = daemon_on(settings, clock)
    async with serving(daemon), httpx.AsyncClient(timeout=10) as http:
        await next_report(daemon, clock)
        before_seal = await get(http, clock, daemon, "/readyz")
        vault.seal()
        try:
            cached = await get(http, clock, daemon, "/readyz")
            clock.advance(READINESS_CACHE_SECONDS)
            sealed = await get(http, clock, daemon, "/readyz")
            live = await get(http, clock, daemon, "/healthz")
        finally:
            vault.unseal()
        still_cached = await get(http, clock, daemon, "/readyz")
        clock.advance(READINESS_CACHE_SECONDS)
        unsealed = await get(http, clock, daemon, "/readyz")
    assert [200, 200, 503, 200, 503, 200] == [
        r.status_code for r in (before_seal, cached, sealed, live, still_cached, unsealed)
    ]
    reasons = sealed.json()["reasons"]
    assert any("sealed" in reason for reason in reasons), reasons


# ---------------------------------------------------------------------------
# Reloads (SIGHUP's work, called directly; the signal itself is test_daemon's)
# ---------------------------------------------------------------------------


def write_text(path: Path, text: str) -> None:
    """A file write (instant on tmpfs; not worth a thread in a test)."""
    path.write_text(text)


def file_settings(config: Config) -> Settings:
    config.write()
    return load_settings(config.path, {})


async def reload(daemon: Daemon, clock: FakeClock) -> bool:
    task = asyncio.ensure_future(daemon.reload())
    assert await drive(clock, task.done)
    return task.result()


async def test_broken_config_on_reload_keeps_old_then_valid_config_applies(
    tmp_path: Path,
    clock: FakeClock,
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_token: str,
) -> None:
    """A broken config on reload is refused and cycles go on; a valid one applies its policy."""
    sub = monite.seed()
    # Already managed and fresh for 30 days, so only a policy change can make it due.
    vault.kv_write(
        "secret",
        f"{PREFIX}/{sub}",
        {
            "secret": monite.current_secret(sub),
            "state": "active",
            "rotated_at": (datetime.now(UTC) - timedelta(minutes=1))
            .isoformat()
            .replace("+00:00", "Z"),
        },
    )
    config = Config(tmp_path, monite, vault, vault_token)
    config.values["schedule"] = {"interval": "2s"}
    config.values["health"] = {"enabled": False}
    daemon = daemon_on(file_settings(config), clock, config_path=config.path)
    with capture_audit() as captured:
        async with serving(daemon):
            await next_report(daemon, clock)

            config.write(policy={"max_age": 30})  # a bare number: not a duration
            assert not await reload(daemon, clock)
            [failed] = names(captured, events.CONFIG_RELOAD_FAILED)
            assert "max_age" in failed["reason"]
            assert 1 == len(failed["reason"].splitlines())
            await run_cycle_now(daemon, clock)  # still cycling on the old settings
            assert 0 == monite.regenerate_count(sub)
            scheduler = daemon.scheduler
            assert scheduler is not None
            assert timedelta(seconds=2) == scheduler.get_job(CYCLE_JOB).trigger.interval

            config.write(policy={"max_age": "30s"}, schedule={"interval": "1s"})
            assert await reload(daemon, clock)
            [reloaded] = names(captured, events.CONFIG_RELOADED)
            assert ["policy", "schedule"] == reloaded["changed"]
            assert timedelta(seconds=1) == scheduler.get_job(CYCLE_JOB).trigger.interval
            await run_cycle_now(daemon, clock)
    succeeded = names(captured, events.ROTATION_SUCCEEDED)
    assert [(sub, "max_age_exceeded")] == [(e["subscription_id"], e["reason"]) for e in succeeded]
    found = vault.kv_read("secret", f"{PREFIX}/{sub}")
    assert monite.current_secret(sub) == (found or ({},))[0].get("secret")


@pytest.mark.emulator_only("counts Vault list requests to prove the old token still serves")
async def test_new_vault_token_on_reload_rebuilds_engine(
    tmp_path: Path,
    clock: FakeClock,
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_token: str,
) -> None:
    """A changed Vault token is checked, then swapped in; a token Vault refuses is not."""
    monite.seed()
    config = Config(tmp_path, monite, vault, vault_token)
    config.values["health"] = {"listen": "127.0.0.1:0"}
    daemon = daemon_on(file_settings(config), clock, config_path=config.path)
    with capture_audit() as captured:
        async with serving(daemon), httpx.AsyncClient(timeout=10) as http:
            await next_report(daemon, clock)
            token_file = Path(config.values["vault"]["token_file"])
            write_text(token_file, "hvs.not-a-real-token")
            assert not await reload(daemon, clock)
            [failed] = names(captured, events.CONFIG_RELOAD_FAILED)
            assert "cannot reach Monite and Vault" in failed["reason"]
            # The old engine (old token) still serves: a fresh check past the cache passes.
            clock.advance(READINESS_CACHE_SECONDS)
            lists_before = vault.request_count("kv_list")
            old_token = await get(http, clock, daemon, "/readyz")
            lists = vault.request_count("kv_list") - lists_before

            write_text(token_file, vault.create_token(policies=["rotator", "default"]))
            vault.revoke_token(vault_token)
            assert await reload(daemon, clock)
            new_token = await get(http, clock, daemon, "/readyz")
    assert (200, True) == (old_token.status_code, old_token.json()["ready"])
    assert 1 == lists
    [reloaded] = names(captured, events.CONFIG_RELOADED)
    assert ["vault"] == reloaded["changed"]
    assert (200, True) == (new_token.status_code, new_token.json()["ready"])


def config_with_hook_key(
    tmp_path: Path, monite: MoniteEmulator, vault: VaultEmulator, vault_token: str
) -> tuple[Config, Path]:
    """The daemon's config without the endpoint, and a hook key file for [[hooks]] to name."""
    config = Config(tmp_path, monite, vault, vault_token)
    config.values["health"] = {"enabled": False}
    key = tmp_path / "hook_key"
    key.write_text("hook-key-5c1e9b3d7a2f4e6c8b0d2f4a6c8e0b1d")
    key.chmod(0o600)
    return config, key


async def test_reload_adds_then_removes_a_hook(
    tmp_path: Path,
    clock: FakeClock,
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_token: str,
) -> None:
    """A reload that adds a hook sends it the next commit's notice; one that removes it, none."""
    first = monite.seed()
    config, key = config_with_hook_key(tmp_path, monite, vault, vault_token)
    daemon = daemon_on(file_settings(config), clock, config_path=config.path)
    with Receiver() as consumer, capture_audit() as captured:
        async with serving(daemon) as task:
            await next_report(daemon, clock)
            config.hooks.append({"url": consumer.url("/rotated"), "secret_file": str(key)})
            config.write()
            assert await reload(daemon, clock)
            added = monite.seed()
            await run_cycle_now(daemon, clock)
            assert await drive(clock, lambda: consumer.received.qsize() == 1)
            config.hooks.clear()
            config.write()
            assert await reload(daemon, clock)
            removed = monite.seed()
            await run_cycle_now(daemon, clock)
            daemon.stop()
            assert 0 == await asyncio.wait_for(task, timeout=15)
    assert [added] == [d.event["subscription_id"] for d in consumer.drain()]
    assert [["hooks"], ["hooks"]] == [e["changed"] for e in names(captured, events.CONFIG_RELOADED)]
    assert [first, added, removed] == [
        e["subscription_id"] for e in names(captured, events.ROTATION_SUCCEEDED)
    ]


async def test_a_reload_that_swaps_the_engine_keeps_the_hooks_and_their_notices(
    tmp_path: Path,
    clock: FakeClock,
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_token: str,
) -> None:
    """A notice still undelivered when a reload swaps the engine is delivered, not given up."""
    monite.seed()
    config, key = config_with_hook_key(tmp_path, monite, vault, vault_token)
    # A short drain budget: hooks that went with the old engine would give up after 1 s.
    config.values["rotation"]["shutdown_timeout"] = "1s"
    answer = threading.Event()  # the consumer answers nothing until the reload is done
    with Receiver(hold=answer) as consumer, capture_audit() as captured:
        config.hooks.append({"url": consumer.url("/rotated"), "secret_file": str(key)})
        daemon = daemon_on(file_settings(config), clock, config_path=config.path)
        async with serving(daemon) as task:
            await next_report(daemon, clock)
            config.write(rotation={"claim_ttl": "9s"})  # a new engine
            assert await reload(daemon, clock)
            answer.set()
            delivered = await drive(clock, lambda: consumer.received.qsize() >= 1)
            daemon.stop()
            assert 0 == await asyncio.wait_for(task, timeout=15)
    assert (True, 200) == (delivered, consumer.drain()[-1].status)
    assert [["rotation"]] == [e["changed"] for e in names(captured, events.CONFIG_RELOADED)]
    assert [] == names(captured, events.HOOK_FAILED)


async def test_hooks_replaced_while_the_first_engine_opens_are_that_engines_hooks(
    tmp_path: Path,
    clock: FakeClock,
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_token: str,
) -> None:
    """A reload adding a hook while the engine is still opening: its first commit reaches it."""
    monite.seed()
    config, key = config_with_hook_key(tmp_path, monite, vault, vault_token)
    opening, release = asyncio.Event(), asyncio.Event()

    @contextlib.asynccontextmanager
    async def factory(settings: Settings, hooks: Hooks) -> AsyncIterator[Engine]:
        opening.set()
        await release.wait()  # Vault slow at boot: the engine opens after the reload
        async with open_engine(settings, owner=OWNER, clock=clock, hooks=hooks) as engine:
            yield engine

    daemon = Daemon(
        file_settings(config),
        owner=OWNER,
        environ={},
        clock=clock,
        engine_factory=factory,
        config_path=config.path,
    )
    with Receiver() as consumer, capture_audit() as captured:
        async with serving(daemon) as task:
            await asyncio.wait_for(opening.wait(), timeout=10)
            config.hooks.append({"url": consumer.url("/rotated"), "secret_file": str(key)})
            config.write()
            assert await reload(daemon, clock)
            release.set()
            delivered = await drive(clock, lambda: consumer.received.qsize() == 1)
            daemon.stop()
            assert 0 == await asyncio.wait_for(task, timeout=15)
    assert (True, []) == (delivered, names(captured, events.HOOK_FAILED))


# ---------------------------------------------------------------------------
# A reload while the preflight check is in flight
# ---------------------------------------------------------------------------


async def test_reload_during_preflight_check_keeps_running_then_ready(
    tmp_path: Path,
    clock: FakeClock,
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reload that drops the engine mid-check neither crashes nor hides it; ready after."""
    sub = monite.seed()
    config = Config(tmp_path, monite, vault, vault_token)
    config.values["health"] = {"enabled": False}
    entered, release = asyncio.Event(), asyncio.Event()
    opened: list[Engine] = []

    @contextlib.asynccontextmanager
    async def factory(settings: Settings, hooks: Hooks) -> AsyncIterator[Engine]:
        async with open_engine(settings, owner=OWNER, clock=clock, hooks=hooks) as engine:
            opened.append(engine)
            if len(opened) == 1:  # the first engine's check hangs until released
                check = engine.check

                async def held() -> None:
                    entered.set()
                    await release.wait()
                    await check()

                monkeypatch.setattr(engine, "check", held)
            yield engine

    daemon = Daemon(
        file_settings(config),
        owner=OWNER,
        environ={},
        clock=clock,
        engine_factory=factory,
        config_path=config.path,
    )
    with capture_audit() as captured:
        async with serving(daemon) as task:
            await asyncio.wait_for(entered.wait(), timeout=10)
            config.write(rotation={"claim_ttl": "9s"})
            assert await reload(daemon, clock)
            assert "preflight" == daemon.phase
            release.set()
            await next_report(daemon, clock)
            daemon.stop()
            code = await asyncio.wait_for(task, timeout=15)
    [reloaded] = names(captured, events.CONFIG_RELOADED)
    assert ["rotation"] == reloaded["changed"]
    assert (0, 2) == (code, len(opened))
    assert 1 == len(names(captured, events.DAEMON_READY))
    assert 1 == monite.regenerate_count(sub)
    assert 1 == len(names(captured, events.ROTATION_SUCCEEDED))
    assert [] == names(captured, events.DAEMON_FAILED)
    assert [0] == [e["exit_code"] for e in names(captured, events.DAEMON_STOPPED)]
