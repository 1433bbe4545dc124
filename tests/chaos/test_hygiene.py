"""Scenario 7: secret hygiene under chaos.

Every process of the chaos suite hands its stdout and stderr to
`remember_output` (harness `Proc.remember`), so the suite-wide scan in
tests/conftest.py searches all of it for every secret, token and client
secret the emulators issued. These tests add pointed checks: the noisiest
fault paths and secrets pasted into the wrong config keys leak nothing.
"""

from __future__ import annotations

import signal
import urllib.request

import pytest

from rotator.sandbox import ISSUED
from tests.chaos.conftest import WorldFactory
from tests.chaos.harness import CLAIM_TTL, FIGURES, render_toml, wait_until
from tests.conftest import leaked, remember_output


@pytest.mark.timeout(300)
def test_fault_paths_print_no_secret(make_world: WorldFactory) -> None:
    """Retries, malformed answers, failed commits, kill -9 and /metrics: no issued value printed."""
    world = make_world()
    world.seed(6)
    world.monite.faults.malformed_json = 3
    world.monite.faults.drop_after_regenerate = 2
    world.monite.faults.fail_regenerate = 2
    world.vault.faults.fail_writes = 3
    cfg = world.config(rotation={"concurrency": 2, "commit_retry_for": "20s"})
    world.run_once(cfg)
    world.monite.faults.latency = 0.3
    before = world.monite.request_count("regenerate_secret")
    victim = world.spawn("rotate", "--force", "--all", config=cfg)
    assert wait_until(lambda: world.monite.request_count("regenerate_secret") >= before + 3, 20)
    victim.kill9()
    # killed mid-rotation: it had not exited, and it left claimed records behind
    assert (-signal.SIGKILL, True) == (victim.returncode, bool(world.rotating()))
    world.monite.faults.latency = 0.0
    daemon = world.spawn("run", config=cfg)
    # Claims expire, the takeovers settle, one more rotation: about 3 x claim_ttl.
    # Bounded generously (a loaded machine starts and cycles slowly); this test is
    # about what is printed, not how fast it recovers.
    assert wait_until(world.settled, 3 * CLAIM_TTL + 45, 0.05)
    with urllib.request.urlopen(f"http://127.0.0.1:{world.health_port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    remember_output(metrics)
    daemon.signal(signal.SIGTERM)
    assert 0 == daemon.wait(30)
    for proc in world.procs:
        proc.close()
    texts = [metrics] + [p.stdout() + p.stderr() for p in world.procs]
    FIGURES.add(
        "7-hygiene",
        title="Secret hygiene of logs, errors and /metrics under faults",
        command=".venv/bin/pytest tests/chaos/test_hygiene.py",
        fault="malformed JSON, dropped answers, 5xx, failed commits, kill -9",
        issued_values_checked=len(ISSUED),
    )
    assert (True, []) == (world.settled(), leaked(set(ISSUED), texts))


def test_secrets_pasted_into_wrong_keys_are_not_echoed(make_world: WorldFactory) -> None:
    """A secret typed into the wrong key or a broken line: exit 78, and the value is not echoed."""
    world = make_world()
    secret, token = world.client_secret, world.token
    sections = world.sections()
    broken_toml = render_toml(sections).replace(
        'path_prefix = "monite/webhooks"', f'path_prefix = "{token}'
    )
    cases = {
        "secret as client_id": {"ROTATOR_MONITE__CLIENT_ID": secret},
        "token as vault address": {"VAULT_ADDR": token},
        "secret as a duration": {"ROTATOR_POLICY__MAX_AGE": secret},
        "secret as the env name": {f"ROTATOR_{secret.upper()}": "x"},
        "secret as an unknown key": {f"ROTATOR_MONITE__{secret.upper()}": "x"},
    }
    outputs = []
    codes = []
    for name, env in cases.items():
        proc = world.run("run", "--once", config=world.config(f"{len(codes)}.toml"), env=env)
        outputs.append(proc.stdout() + proc.stderr())
        codes.append((name, proc.returncode))
    path = world.workdir / "broken.toml"
    path.write_text(broken_toml)
    proc = world.run("check", config=path)
    outputs.append(proc.stdout() + proc.stderr())
    codes.append(("token on a broken TOML line", proc.returncode))
    expected = [(name, 78) for name, _ in codes]
    assert (expected, []) == (codes, leaked({secret, token, secret.upper()}, outputs))
