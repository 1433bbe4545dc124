"""Hooks: a signed notice after every commit, off the rotation's critical path.

A loopback HTTP receiver (a stdlib server thread) and small Python scripts
stand in for consumers; Monite is the emulator, Vault the emulator and OpenBao.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from rotator import signature
from rotator.clock import SystemClock
from rotator.config import HookSettings, MoniteSettings, RotationSettings, VaultSettings
from rotator.daemon.drain import drain
from rotator.engine import Engine
from rotator.hooks import SIGNATURE_ENV, SIGNATURE_HEADER, Hooks, Notice
from rotator.metrics import Metrics
from rotator.monite import MoniteClient
from rotator.policy import Policy
from rotator.reasons import OutcomeKind
from rotator.retry import Backoff
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from rotator.secret import Secret
from rotator.vault import VaultStore
from tests.clocks import FakeClock
from tests.conftest import capture_audit, remember_output
from tests.daemon_harness import run_rotator
from tests.receiver import Delivery, Receiver

HOOK_KEY = "hook-key-9f3a1c7e5b2d4a6f8e0c1b3d5f7a9e2c"
KEY = Secret(HOOK_KEY)  # held for the whole module, as the daemon holds its hook keys
PREFIX = "monite/webhooks"
ROUTE = "/rotated"  # where the hooks POST on a loopback receiver
NOTICE_FIELDS = {
    "event",
    "subscription_id",
    "object_type",
    "vault_mount",
    "vault_path",
    "vault_version",
    "secret_fingerprint",
    "rotated_at",
    "run_id",
}


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    """Make started loopback receivers (`tests.receiver.Receiver`); closed after the test."""
    with contextlib.ExitStack() as stack:

        def make(statuses: tuple[int, ...] = (), hold: threading.Event | None = None) -> Receiver:
            return stack.enter_context(Receiver(statuses, hold=hold))

        yield make


def accepted(consumer: Receiver) -> list[Delivery]:
    """The POSTs the consumer answered 200, oldest first (taken off its queue)."""
    return [d for d in consumer.drain() if 200 == d.status]


def notices(consumer: Receiver) -> list[dict[str, Any]]:
    """The notices the consumer accepted, oldest first."""
    return [d.event for d in accepted(consumer)]


def url_hook(receiver: Receiver, timeout: timedelta = timedelta(seconds=5)) -> HookSettings:
    return HookSettings(url=receiver.url(ROUTE), secret=KEY, timeout=timeout)


def command_hook(tmp_path: Path, script: str, timeout: timedelta = timedelta(seconds=10)) -> Any:
    path = tmp_path / "hook.py"
    path.write_text(script)
    return HookSettings(command=(sys.executable, str(path)), secret=KEY, timeout=timeout)


def make_hooks(*hooks: HookSettings, clock: Any = None, **kwargs: Any) -> Hooks:
    return Hooks(hooks, vault_mount="secret", vault_prefix=PREFIX, clock=clock, **kwargs)


def notice(version: int, subscription_id: str = "sub-1") -> Notice:
    return Notice(
        event="rotation.succeeded",
        subscription_id=subscription_id,
        object_type="payable",
        vault_mount="secret",
        vault_path=f"{PREFIX}/{subscription_id}",
        vault_version=version,
        secret_fingerprint="0123456789ab",
        rotated_at="2024-06-01T00:00:00Z",
        run_id="run-1",
    )


def named(captured: list[dict[str, Any]], *names: str) -> list[dict[str, Any]]:
    return [e for e in captured if e["event"] in names]


@pytest.fixture
async def engine_with(
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    vault_settings: VaultSettings,
) -> AsyncIterator[Callable[[Hooks], Engine]]:
    stores: list[VaultStore] = []

    def factory(hooks: Hooks) -> Engine:
        stores.append(VaultStore(vault_settings))
        return Engine(
            monite=MoniteClient(monite_http, monite_settings),
            store=stores[-1],
            policy=Policy(max_age=timedelta(days=30)),
            rotation=RotationSettings(claim_ttl=timedelta(seconds=30)),
            owner="test-rotator",
            hooks=hooks,
        )

    yield factory
    for store in stores:
        store.close()


async def test_url_hook_gets_a_signed_notice_without_the_secret(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    engine_with: Callable[[Hooks], Engine],
    receiver: Callable[..., Receiver],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The POSTed body verifies with the hook key, has every field, and never the secret."""
    sid = monite.seed(object_type="payable")
    consumer = receiver()
    hooks = make_hooks(url_hook(consumer))
    with capture_audit() as captured:
        report = await engine_with(hooks).run_cycle()
        await hooks.idle()
        await hooks.aclose(1)
    (outcome,) = report.outcomes
    secret = monite.current_secret(sid)
    (got,) = accepted(consumer)
    sent = got.event
    header = got.headers[SIGNATURE_HEADER.lower()]
    stamp = signature.parse(header).timestamp
    assert stamp == signature.verify(header, got.body, HOOK_KEY, now=stamp, name=SIGNATURE_HEADER)
    assert secret not in got.body.decode()
    assert NOTICE_FIELDS == set(sent)
    assert {
        "event": "rotation.succeeded",
        "subscription_id": sid,
        "object_type": "payable",
        "vault_mount": "secret",
        "vault_path": f"{PREFIX}/{sid}",
        "vault_version": outcome.vault_version,
        "secret_fingerprint": Secret(secret).fingerprint(),
        "run_id": report.run_id,
    } == {k: v for k, v in sent.items() if k != "rotated_at"}
    (delivered,) = named(captured, "hook.delivered")
    assert (consumer.url("/…"), 1, report.run_id) == (
        delivered["hook"],
        delivered["attempts"],
        delivered["run_id"],
    )
    # The measured commit-to-delivered latency on loopback (printed for the report).
    with capsys.disabled():
        print(f"\nhook commit->delivered latency on loopback: {delivered['latency_ms']} ms")


async def test_command_hook_gets_the_notice_on_stdin(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    engine_with: Callable[[Hooks], Engine],
    tmp_path: Path,
) -> None:
    """A command hook gets the notice on stdin, its signature in the environment, no credentials."""
    sid = monite.seed()
    out = tmp_path / "got.json"
    script = (
        "import json, os, sys\n"
        "got = {'body': sys.stdin.read(), 'env': dict(os.environ)}\n"
        f"json.dump(got, open({str(out)!r}, 'w'))\n"
        "print('reloaded')\n"
    )
    environ = {"PATH": "/usr/bin:/bin", "VAULT_TOKEN": "hvs.not-for-hooks"}
    hooks = make_hooks(command_hook(tmp_path, script), environ=environ)
    with capture_audit() as captured:
        await engine_with(hooks).run_cycle()
        await hooks.idle()
    got = json.loads(out.read_text())
    remember_output(got["body"])
    body = got["body"].encode()
    header = got["env"][SIGNATURE_ENV]
    stamp = signature.parse(header).timestamp
    assert stamp == signature.verify(header, body, HOOK_KEY, now=stamp)
    assert sid == json.loads(body)["subscription_id"]
    assert monite.current_secret(sid) not in got["body"]
    assert "VAULT_TOKEN" not in got["env"]
    (delivered,) = named(captured, "hook.delivered")
    assert (sys.executable, 0, "reloaded") == (
        delivered["hook"],
        delivered["exit_status"],
        delivered["stdout"],
    )


async def test_a_hanging_hook_does_not_delay_the_rotation(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    engine_with: Callable[[Hooks], Engine],
    receiver: Callable[..., Receiver],
) -> None:
    """The cycle finishes while the hook still hangs; the notice is delivered after it."""
    monite.seed()
    release = threading.Event()
    consumer = receiver(hold=release)
    hooks = make_hooks(url_hook(consumer, timeout=timedelta(seconds=20)))
    with capture_audit() as captured:
        report = await engine_with(hooks).run_cycle()
        pending_after_cycle = hooks.pending
        release.set()
        await hooks.idle()
    assert [OutcomeKind.ROTATED] == [o.kind for o in report.outcomes]
    assert 1 == pending_after_cycle
    assert ["rotation.succeeded", "cycle.finished", "hook.delivered"] == [
        e["event"]
        for e in named(captured, "rotation.succeeded", "cycle.finished", "hook.delivered")
    ]


async def test_failing_twice_then_succeeding_is_delivered_on_attempt_three(
    receiver: Callable[..., Receiver],
) -> None:
    """Two 503s, then a 200: hook.retry twice, then hook.delivered with attempts=3."""
    consumer = receiver(statuses=(503, 503))
    clock = FakeClock()
    hooks = make_hooks(url_hook(consumer), clock=clock)
    with capture_audit() as captured:
        hooks.notify(notice(2))
        await hooks.idle()
    events = named(captured, "hook.retry", "hook.delivered", "hook.failed")
    assert ["hook.retry", "hook.retry", "hook.delivered"] == [e["event"] for e in events]
    assert ["HTTP 503", "HTTP 503"] == [e["reason"] for e in events[:2]]
    assert (3, 200) == (events[2]["attempts"], events[2]["status"])
    assert 2 == len(clock.sleeps)  # the backoff waits, on the injected clock
    assert 1 == len(accepted(consumer))


async def test_always_failing_hook_fails_after_the_bound_and_the_rotation_succeeds(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    engine_with: Callable[[Hooks], Engine],
    receiver: Callable[..., Receiver],
) -> None:
    """Every attempt answered 500: hook.failed after 5 attempts; the rotation still succeeded."""
    sid = monite.seed()
    consumer = receiver(statuses=(500,) * 10)
    metrics = Metrics()
    hooks = make_hooks(url_hook(consumer), clock=FakeClock(), observer=metrics)
    with capture_audit() as captured:
        report = await engine_with(hooks).run_cycle()
        await hooks.idle()
    assert report.ok
    assert [OutcomeKind.ROTATED] == [o.kind for o in report.outcomes]
    (failed,) = named(captured, "hook.failed")
    assert (sid, 5, "HTTP 500") == (failed["subscription_id"], failed["attempts"], failed["reason"])
    assert 5 == len(consumer.drain())
    assert 1.0 == metrics.registry.get_sample_value(
        "rotator_hook_failures_total", {"hook": url_hook(consumer).display}
    )


async def test_a_token_in_the_url_path_never_reaches_events_or_metrics(
    receiver: Callable[..., Receiver],
) -> None:
    """A Slack-style token in a hook URL's path appears in no hook event and no metric label."""
    token = "T0KEN-IN-THE-PATH-7f3c9a"
    flaky, broken = receiver(statuses=(503,)), receiver(statuses=(500,) * 10)
    hooks_settings = [
        HookSettings(url=flaky.url(f"/services/T000/{token}"), secret=KEY),
        HookSettings(url=broken.url(f"/hooks/{token}?also={token}"), secret=KEY),
    ]
    metrics = Metrics()
    hooks = make_hooks(*hooks_settings, clock=FakeClock(), observer=metrics)
    with capture_audit() as captured:
        hooks.notify(notice(1))
        await hooks.idle()
        await hooks.aclose(0.0)
        hooks.notify(notice(2))  # refused after close: a hook.failed of its own
    seen = {e["event"] for e in captured}
    text = json.dumps(captured) + metrics.render().decode()
    assert {"hook.retry", "hook.delivered", "hook.failed"} <= seen
    assert [flaky.url("/…"), broken.url("/…")] == hooks.names
    assert token not in text
    assert 1.0 == metrics.registry.get_sample_value(
        "rotator_hook_deliveries_total", {"hook": flaky.url("/…")}
    )


async def test_a_named_hook_is_called_by_its_name(receiver: Callable[..., Receiver]) -> None:
    """With `name` set, events and metrics call the hook by it, not by its URL."""
    consumer = receiver()
    metrics = Metrics()
    hook = HookSettings(url=consumer.url(ROUTE), secret=KEY, name="payments-consumer")
    hooks = make_hooks(hook, observer=metrics)
    with capture_audit() as captured:
        hooks.notify(notice(1))
        await hooks.idle()
    (delivered,) = named(captured, "hook.delivered")
    assert "payments-consumer" == delivered["hook"]
    assert 1.0 == metrics.registry.get_sample_value(
        "rotator_hook_deliveries_total", {"hook": "payments-consumer"}
    )


async def test_the_notice_carries_the_records_rotated_at(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    engine_with: Callable[[Hooks], Engine],
    receiver: Callable[..., Receiver],
) -> None:
    """The notice's rotated_at is the committed record's (Vault's time), not the host's clock."""
    sid = monite.seed()
    consumer = receiver()
    hooks = make_hooks(url_hook(consumer))
    await engine_with(hooks).run_cycle()
    await hooks.idle()
    await hooks.aclose(1)
    (sent,) = notices(consumer)
    found = vault.kv_read("secret", f"{PREFIX}/{sid}")
    assert found is not None
    data, version = found
    assert (version, data["rotated_at"]) == (sent["vault_version"], sent["rotated_at"])


async def test_notices_are_delivered_in_commit_order(receiver: Callable[..., Receiver]) -> None:
    """Notices queued one after another reach each hook in that order, even with retries."""
    first, second = receiver(statuses=(503,)), receiver()
    hooks = make_hooks(url_hook(first), url_hook(second), clock=FakeClock())
    for version in range(1, 21):
        hooks.notify(notice(version))
    await hooks.idle()
    expected = list(range(1, 21))
    assert expected == [n["vault_version"] for n in notices(first)]
    assert expected == [n["vault_version"] for n in notices(second)]


async def test_command_output_is_truncated_and_redacted(tmp_path: Path) -> None:
    """A command's stdout is cut to 2 KB and a live secret in it is redacted."""
    live = Secret("live-secret-value-4d2a9c")
    script = f"import sys\nsys.stdin.read()\nprint({live.reveal()!r} + ' ' + 'x' * 5000)\n"
    hooks = make_hooks(command_hook(tmp_path, script))
    with capture_audit() as captured:
        hooks.notify(notice(3))
        await hooks.idle()
    (delivered,) = named(captured, "hook.delivered")
    assert delivered["stdout"].startswith("<redacted> xxx")
    assert delivered["stdout"].endswith("…(truncated)")
    assert live.reveal() not in delivered["stdout"]
    assert len(delivered["stdout"]) < 2100


async def test_command_that_times_out_is_killed_and_fails(tmp_path: Path) -> None:
    """A command still running at its timeout is killed; failing is the only outcome."""
    script = "import sys, time\nsys.stdin.read()\nprint('started', flush=True)\ntime.sleep(30)\n"
    hook = command_hook(tmp_path, script, timeout=timedelta(milliseconds=500))
    hooks = make_hooks(hook, backoff=Backoff(attempts=1, base=0.1, cap=0.1))
    with capture_audit() as captured:
        hooks.notify(notice(4))
        await hooks.idle()
    (failed,) = named(captured, "hook.failed")
    assert ("timed out after 0.5s; killed", 1, "started") == (
        failed["reason"],
        failed["attempts"],
        failed["stdout"],
    )


async def test_close_logs_each_notice_left_undelivered(receiver: Callable[..., Receiver]) -> None:
    """Notices still pending when the shutdown budget runs out are each a hook.failed."""
    consumer = receiver(hold=threading.Event())
    hooks = make_hooks(url_hook(consumer, timeout=timedelta(seconds=20)), clock=FakeClock())
    with capture_audit() as captured:
        hooks.notify(notice(5))
        hooks.notify(notice(6))
        await hooks.aclose(0.0)
        hooks.notify(notice(7))
    failed = named(captured, "hook.failed")
    assert [5, 6, 7] == [e["vault_version"] for e in failed]
    assert {"the daemon stopped before it was delivered"} == {e["reason"] for e in failed[:2]}
    assert 0 == hooks.pending


async def test_a_close_cancelled_by_the_drain_still_logs_each_notice_left(
    receiver: Callable[..., Receiver],
) -> None:
    """A close cut short by cancellation logs every notice still queued as hook.failed."""
    consumer = receiver(hold=threading.Event())  # the first notice hangs in delivery
    clock = FakeClock(manual=True)  # the close's grace never runs out: only the cancel ends it
    hooks = make_hooks(url_hook(consumer, timeout=timedelta(seconds=20)), clock=clock)
    with capture_audit() as captured:
        for version in (1, 2, 3):
            hooks.notify(notice(version))
        closing = asyncio.ensure_future(hooks.aclose(30.0))
        await asyncio.sleep(0.05)
        closing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closing
    assert [1, 2, 3] == sorted(e["vault_version"] for e in named(captured, "hook.failed"))
    assert 0 == hooks.pending


def test_notice_refuses_anything_but_a_fingerprint() -> None:
    """A Notice takes a 12-hex fingerprint only, so a secret cannot be passed in its place."""
    with pytest.raises(ValueError, match="12 lowercase hex"):
        Notice(**{**vars_of(notice(1)), "secret_fingerprint": "whsec_live-secret"})
    canonical = (
        b'{"event":"rotation.succeeded","object_type":"payable","rotated_at":"2024-06-01T00:00:00Z",'
        b'"run_id":"run-1","secret_fingerprint":"0123456789ab","subscription_id":"sub-1",'
        b'"vault_mount":"secret","vault_path":"monite/webhooks/sub-1","vault_version":1}'
    )
    assert canonical == notice(1).to_json()


def vars_of(value: Notice) -> dict[str, Any]:
    return {name: getattr(value, name) for name in NOTICE_FIELDS}


def test_run_once_delivers_its_notices_before_exiting(
    tmp_path: Path,
    monite: MoniteEmulator,
    monite_credentials: tuple[str, str],
    vault: VaultEmulator,
    vault_token: str,
    receiver: Callable[..., Receiver],
) -> None:
    """`rotator run --once` exits 0 after its hook has received every notice."""
    ids = sorted(monite.seed() for _ in range(3))
    consumer = receiver()
    client_id, client_secret = monite_credentials
    files = {"client_secret": client_secret, "vault_token": vault_token, "hook_key": HOOK_KEY}
    for name, value in files.items():
        (tmp_path / name).write_text(value)
        (tmp_path / name).chmod(0o600)
    config = tmp_path / "rotator.toml"
    config.write_text(
        f"""
[monite]
base_url = "{monite.base_url}"
client_id = "{client_id}"
client_secret_file = "client_secret"
timeout = "2s"
[vault]
address = "{vault.address}"
token_file = "vault_token"
[rotation]
claim_ttl = "30s"
[[hooks]]
url = "{consumer.url(ROUTE)}"
secret_file = "hook_key"
timeout = "2s"
"""
    )
    result = run_rotator("run", "--once", "--config", str(config))
    assert 0 == result.returncode, result.stderr
    assert ids == sorted(n["subscription_id"] for n in notices(consumer))
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert 3 == sum(1 for line in lines if line["event"] == "hook.delivered")


async def test_the_shutdown_drain_delivers_pending_notices(
    monite: MoniteEmulator,
    vault: VaultEmulator,
    engine_with: Callable[[Hooks], Engine],
    receiver: Callable[..., Receiver],
) -> None:
    """The daemon's drain gives the hooks what is left of its budget to deliver their notices."""
    sid = monite.seed()
    consumer = receiver()
    hooks = make_hooks(url_hook(consumer))
    engine = engine_with(hooks)
    with capture_audit() as captured:
        await engine.run_cycle()
        assert await drain(engine, None, 10.0, SystemClock())
    assert [sid] == [n["subscription_id"] for n in notices(consumer)]
    assert ["hook.delivered"] == [e["event"] for e in named(captured, "hook.delivered")]
    assert 0 == hooks.pending
