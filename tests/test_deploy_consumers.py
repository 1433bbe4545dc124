"""deploy/consumers/: the agent under a real `bao agent`, the ExternalSecret, Reloader, hooks."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from rotator.config import HookSettings, VaultSettings
from rotator.hooks import Hooks, Notice
from rotator.model import parse_duration
from rotator.retry import Backoff
from rotator.secret import Secret
from tests.conftest import capture_audit, remember_output
from tests.consumer_support import commit, new_secret
from tests.openbao import OpenBaoVault, bao_binary

ROOT = Path(__file__).resolve().parent.parent
CONSUMERS = ROOT / "deploy" / "consumers"
AGENT = CONSUMERS / "vault-agent"
EXTERNAL_SECRET = CONSUMERS / "external-secrets" / "externalsecret.yaml"
RELOADER = CONSUMERS / "reloader" / "deployment.yaml"
RESTART_HOOK = CONSUMERS / "hooks" / "restart-deployment.sh"
ES_SCHEMA = Path(__file__).parent / "schema" / "externalsecret-v1.schema.json"

CONSUMER_POLICY = """
path "secret/data/monite/webhooks/*" {
  capabilities = ["read"]
}
"""

# A process standing in for the consumer: it writes its pid once its SIGHUP
# handler is installed, and one line per SIGHUP (what reload.sh sends).
SIGHUP_RECORDER = """
import os, signal, sys, time
log, pid_file = sys.argv[1], sys.argv[2]
def on_hup(signum, frame):
    with open(log, "a") as f:
        f.write("hup\\n")
signal.signal(signal.SIGHUP, on_hup)
with open(pid_file + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(pid_file + ".tmp", pid_file)
for _ in range(600):
    time.sleep(0.1)
"""


def wait_until(predicate: Any, timeout: float) -> bool:
    """Poll `predicate` every 50 ms for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def agent_test_copy(tmp: Path, address: str, token_file: Path) -> Path:
    """The shipped agent.hcl with test paths, a token file login and a 1 s render interval."""
    text = (AGENT / "agent.hcl").read_text()
    swaps = {
        '"https://vault.example.internal:8200"': f'"{address}"',
        '"/etc/vault-agent/': f'"{tmp}/',
        '"/run/monite-webhooks/': f'"{tmp}/out-',
        'static_secret_render_interval = "10s"': 'static_secret_render_interval = "1s"',
    }
    for old, new in swaps.items():
        assert old in text, f"agent.hcl no longer has {old}"
        text = text.replace(old, new)
    auth = (
        'auto_auth {\n  method "token_file" {\n    config = {\n'
        f'      token_file_path = "{token_file}"\n    }}\n  }}\n}}\n'
    )
    text, count = re.subn(r"# --- auth: begin.*?# --- auth: end\n", auth, text, flags=re.S)
    assert 1 == count
    for name in ("webhook-secret.ctmpl", "reload.sh"):
        (tmp / name).write_text((AGENT / name).read_text())
    config = tmp / "agent.hcl"
    config.write_text(text)
    return config


@pytest.fixture
def openbao_settings(openbao: OpenBaoVault) -> VaultSettings:
    """Product settings for the real OpenBao server (the rotator's own policy)."""
    from tests.fixtures_vault import ROTATOR_POLICY

    openbao.put_policy("rotator", ROTATOR_POLICY)
    token = openbao.create_token(policies=["rotator"])
    return VaultSettings(
        address=openbao.address,
        token=Secret(token),
        mount="secret",
        path_prefix="monite/webhooks",
        timeout=timedelta(seconds=5),
    )


@pytest.fixture
def consumer_stand_in(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(pid file, SIGHUP log) of a process that records each SIGHUP it gets."""
    pid_file, log = tmp_path / "consumer.pid", tmp_path / "hups.log"
    process = subprocess.Popen([sys.executable, "-c", SIGHUP_RECORDER, str(log), str(pid_file)])
    try:
        assert wait_until(pid_file.exists, 10)
        yield pid_file, log
    finally:
        process.terminate()
        process.wait(timeout=10)


def hups(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_bao_agent_renders_the_record_and_rerenders_after_a_rotation(
    openbao: OpenBaoVault,
    openbao_settings: VaultSettings,
    consumer_stand_in: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """`bao agent` with the shipped config renders the secret, re-renders a new version, execs."""
    pid_file, hup_log = consumer_stand_in
    sid, old, new = str(uuid.uuid4()), new_secret(), new_secret()
    first = asyncio.run(commit(openbao_settings, sid, old, cas=0))
    openbao.put_policy("webhook-consumer", CONSUMER_POLICY)
    token_file = tmp_path / "token"
    token_file.write_text(openbao.create_token(policies=["webhook-consumer"]))
    config = agent_test_copy(tmp_path, openbao.address, token_file)
    rendered = tmp_path / "out-secret"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env |= {
        "HOME": str(tmp_path),
        "MONITE_SUBSCRIPTION_ID": sid,
        "CONSUMER_PID_FILE": str(pid_file),
    }
    log_path = tmp_path / "agent.log"
    with log_path.open("wb") as log:
        agent = subprocess.Popen(
            [bao_binary(), "agent", f"-config={config}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        assert wait_until(lambda: rendered.exists() and rendered.read_text() == old, 15)
        assert wait_until(lambda: hups(hup_log) == 1, 10)
        asyncio.run(commit(openbao_settings, sid, new, cas=first.version))
        started = time.monotonic()
        assert wait_until(lambda: rendered.read_text() == new, 10)
        assert time.monotonic() - started < 5  # 1 s interval, with room for a busy machine
        assert wait_until(lambda: hups(hup_log) == 2, 10)
        assert 0o400 == rendered.stat().st_mode & 0o777
    finally:
        agent.terminate()
        try:
            agent.wait(timeout=10)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(timeout=10)
        remember_output(log_path.read_text(errors="replace"))


def test_shipped_agent_renders_every_10s_and_execs_the_reload() -> None:
    """The shipped agent.hcl sets the 10 s render interval and a template exec of reload.sh."""
    text = (AGENT / "agent.hcl").read_text()
    assert 'static_secret_render_interval = "10s"' in text
    assert 'command = ["/bin/sh", "/etc/vault-agent/reload.sh"]' in text


def external_secret() -> dict[str, Any]:
    return dict(yaml.safe_load(EXTERNAL_SECRET.read_text()))


def test_external_secret_matches_the_crd_schema() -> None:
    """externalsecret.yaml validates against the ExternalSecret v1 schema (tests/schema)."""
    schema = json.loads(ES_SCHEMA.read_text())
    jsonschema.validate(external_secret(), schema)


def test_external_secret_schema_refuses_a_typo() -> None:
    """The schema catches a misspelt field, so the validation above means something."""
    schema = json.loads(ES_SCHEMA.read_text())
    broken = external_secret()
    broken["spec"]["refreshIntervall"] = broken["spec"].pop("refreshInterval")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_external_secret_refreshes_often_and_reads_the_records_secret() -> None:
    """ESO re-reads every 30 s (not the 1 h default) the `secret` property at the record's path."""
    spec = external_secret()["spec"]
    assert timedelta(seconds=30) == parse_duration(spec["refreshInterval"])
    refs = [item["remoteRef"] for item in spec["data"]]
    assert [("secret", True)] == [
        (ref["property"], ref["key"].startswith("monite/webhooks/")) for ref in refs
    ]
    assert "monite-webhook-secret" == spec["target"]["name"]


@pytest.mark.parametrize("version", ["1.30.0", kubernetes_validate.utils.latest_version()])
def test_reloader_deployment_validates_and_watches_the_secret(version: str) -> None:
    """The consumer Deployment is valid and Reloader restarts it when ESO's Secret changes."""
    deployment = yaml.safe_load(RELOADER.read_text())
    kubernetes_validate.validate(deployment, version, strict=True)
    annotations = deployment["metadata"]["annotations"]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert "monite-webhook-secret" == annotations["secret.reloader.stakater.com/reload"]
    assert ["monite-webhook-secret"] == [v["secret"]["secretName"] for v in volumes]


def fake_kubectl(directory: Path) -> Path:
    """A `kubectl` in `directory` that writes its argv and Kubernetes variables to argv.json."""
    directory.mkdir(exist_ok=True)
    argv_log = directory / "argv.json"
    script = directory / "kubectl"
    script.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith('KUBERNETES_')}\n"
        f"open({str(argv_log)!r}, 'w').write(json.dumps({{'argv': sys.argv[1:], 'env': env}}))\n"
    )
    script.chmod(0o755)
    return argv_log


def restart_notice() -> Notice:
    return Notice(
        event="rotation.succeeded",
        subscription_id=str(uuid.uuid4()),
        object_type="payable",
        vault_mount="secret",
        vault_path="monite/webhooks/x",
        vault_version=2,
        secret_fingerprint="0123456789ab",
        rotated_at="2024-06-01T00:00:00Z",
    )


async def run_restart_hook(tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    """Deliver one notice through `Hooks` to the shipped script with `args`; the hook events.

    The daemon's environment has a fake kubectl first on PATH, the two
    in-cluster variables, and variables no hook may see.
    """
    bin_dir = tmp_path / "bin"
    fake_kubectl(bin_dir)
    environ = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "DEPLOYMENT": "not-this-one",
        "KUBECTL": "/nonexistent/kubectl",
        "VAULT_TOKEN": "hvs.not-for-hooks",
    }
    hook = HookSettings(command=(str(RESTART_HOOK), *args), timeout=timedelta(seconds=20))
    hooks = Hooks(
        [hook],
        vault_mount="secret",
        vault_prefix="monite/webhooks",
        environ=environ,
        backoff=Backoff(attempts=1, base=0.1, cap=0.1),
    )
    with capture_audit() as captured:
        hooks.notify(restart_notice())
        await hooks.idle()
        await hooks.aclose(1)
    return [e for e in captured if e["event"].startswith("hook.")]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("webhook-consumer", "payments"),
            ["rollout", "restart", "deployment/webhook-consumer", "-n", "payments"],
        ),
        (("webhook-consumer",), ["rollout", "restart", "deployment/webhook-consumer"]),
    ],
)
async def test_restart_hook_run_by_the_rotator_restarts_the_deployment(
    tmp_path: Path, args: tuple[str, ...], expected: list[str]
) -> None:
    """Run by `Hooks`, the script restarts the Deployment its arguments name, with kubectl's env."""
    (event,) = await run_restart_hook(tmp_path, *args)
    remember_output(json.dumps(event))
    recorded = json.loads((tmp_path / "bin" / "argv.json").read_text())
    assert ("hook.delivered", 0) == (event["event"], event["exit_status"])
    assert expected == recorded["argv"]
    assert {
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
    } == recorded["env"]


async def test_restart_hook_without_a_deployment_fails_clearly(tmp_path: Path) -> None:
    """Without arguments the hook fails with its usage on stderr, and runs no kubectl."""
    (event,) = await run_restart_hook(tmp_path)
    assert ("hook.failed", "exit status 64", True, False) == (
        event["event"],
        event["reason"],
        "usage: restart-deployment.sh DEPLOYMENT [NAMESPACE]" in event["stderr"],
        (tmp_path / "bin" / "argv.json").exists(),
    )


def test_restart_hook_by_hand_runs_the_kubectl_named_in_kubectl(tmp_path: Path) -> None:
    """Run by hand, KUBECTL picks the kubectl, and the whole notice on stdin is read."""
    argv_log = fake_kubectl(tmp_path / "elsewhere")
    notice = restart_notice().to_json().decode()
    result = subprocess.run(
        [str(RESTART_HOOK), "webhook-consumer", "consumers"],
        input=notice * 2000,  # larger than a pipe buffer: it must all be read
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "KUBECTL": str(tmp_path / "elsewhere" / "kubectl")},
        timeout=30,
        check=False,
    )
    remember_output(result.stdout, result.stderr)
    assert (0, ["rollout", "restart", "deployment/webhook-consumer", "-n", "consumers"]) == (
        result.returncode,
        json.loads(argv_log.read_text())["argv"],
    )
