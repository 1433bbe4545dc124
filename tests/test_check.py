"""`rotator check`, and the start of `run`, against the Vault emulator and OpenBao.

What `check` promises (DESIGN.md): the config is valid, Monite and Vault answer,
`vault.namespace` exists, `vault.mount` is a KV v2 mount, and the token holds
every capability rotation needs. Each failure is one line on stderr naming the
setting and the fix, with the exit code of DESIGN.md (69 unreachable, 77 a
credential or permission refused, 78 a setting is wrong), no traceback, and
nothing changed in Vault. `run` (once, or the daemon) refuses to start on the
same findings, before it reads or writes a record.

The commands run in process (`invoke_rotator`: what they find, print and exit
with); the daemons are real processes. tests/test_cli.py keeps a real
`python -m rotator` per command, and tests/test_cli_runner.py holds the two
ways of running to the same output.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hvac
import pytest
import requests

from rotator import errors
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from tests.daemon_harness import DaemonProcess, free_port, invoke_rotator, toml
from tests.fixtures_vault import ROTATOR_POLICY
from tests.openbao import OpenBaoVault

PREFIX = "monite/webhooks"
CREDENTIALS_PATH = "monite/api-credentials"
# policy.hcl without the stanza that lets a token ask for its own capabilities:
# a policy installed from an older release, on a token without "default".
OLD_POLICY = ROTATOR_POLICY[: ROTATOR_POLICY.index("# `rotator check` (and the daemon")]
ONE_LINE_FIX = {
    "no mount": (
        78,
        'rotator: vault.mount: no secrets engine is mounted at "absent"; create it with '
        "`vault secrets enable -path=absent kv-v2`, or set vault.mount to an existing KV v2 "
        "mount",
    ),
    "kv v1": (
        78,
        'rotator: vault.mount: "secret" is a KV version 1 mount; the rotator needs KV v2 '
        "(versions and check-and-set): upgrade it with `vault kv enable-versioning secret`, "
        "or point vault.mount at a KV v2 mount",
    ),
    "unknown namespace": (
        78,
        'rotator: vault.namespace: Vault has no namespace "no-such-team" (it answered '
        '"namespace not found"); set vault.namespace (or VAULT_NAMESPACE) to an existing '
        "namespace, or unset it to use the root namespace",
    ),
    "mistyped mount": (
        77,
        "rotator: vault.mount and vault.path_prefix: the policies of the Vault token lack "
        '"create", "read", "update" on secrte/data/monite/webhooks/* and "list" on '
        'secrte/metadata/monite/webhooks/ and "read" on secrte/metadata/monite/webhooks/*; add '
        'path "secrte/data/monite/webhooks/*" { capabilities = ["create", "read", "update"] } '
        'and path "secrte/metadata/monite/webhooks/*" { capabilities = ["list", "read"] } to '
        "its policy (as deploy/vault/policy.hcl does for the default paths); or, if no KV v2 "
        'mount "secrte" exists (Vault does not say to this token), fix vault.mount or create '
        "it with `vault secrets enable -path=secrte kv-v2`",
    ),
    "unreadable credentials": (
        77,
        'rotator: monite.credentials_path: the policies of the Vault token lack "read" on '
        'secret/data/monite/api-credentials; add path "secret/data/monite/api-credentials" '
        '{ capabilities = ["read"] } to its policy, or point monite.credentials_path at a path '
        "it may read",
    ),
    "no create": (
        77,
        "rotator: vault.mount and vault.path_prefix: the policies of the Vault token lack "
        '"create", "update" on secret/data/monite/webhooks/*; add path '
        '"secret/data/monite/webhooks/*" { capabilities = ["create", "read", "update"] } to '
        "its policy (as deploy/vault/policy.hcl does for the default paths)",
    ),
}


class Rig:
    """A Monite emulator, a Vault, and `rotator` run against them (in process, as a user's)."""

    def __init__(self, directory: Path, monite: MoniteEmulator, vault: VaultEmulator) -> None:
        self.directory = directory
        self.monite = monite
        self.vault = vault
        client_id, client_secret = monite.credentials
        secret_file = directory / "client_secret"
        secret_file.write_text(client_secret)
        secret_file.chmod(0o600)
        self.values: dict[str, dict[str, Any]] = {
            "monite": {
                "base_url": monite.base_url,
                "client_id": client_id,
                "client_secret_file": str(secret_file),
                "timeout": "2s",
            },
            "vault": {
                "address": vault.address,
                "token_file": str(directory / "vault_token"),
                "mount": "secret",
                "path_prefix": PREFIX,
                "timeout": "2s",
            },
            "policy": {"max_age": "30d"},
            "schedule": {"interval": "1h"},
            "rotation": {"claim_ttl": "8s", "shutdown_timeout": "10s"},
            "health": {"enabled": False},
        }

    def token(self, policy: str = ROTATOR_POLICY, *, namespace: str | None = None) -> str:
        """A token holding `policy` alone (no "default"), written where the config reads it."""
        name = f"rotator-{uuid.uuid4().hex[:8]}"
        self.vault.put_policy(name, policy, namespace=namespace)
        token = self.vault.create_token(
            policies=[name], no_default_policy=True, namespace=namespace
        )
        path = self.directory / "vault_token"
        path.write_text(token)
        path.chmod(0o600)
        return token

    def config(self, **changes: dict[str, Any]) -> Path:
        for group, table in changes.items():
            self.values.setdefault(group, {}).update(table)
        for group in ("monite", "vault"):  # a None value drops the key
            self.values[group] = {k: v for k, v in self.values[group].items() if v is not None}
        path = self.directory / "rotator.toml"
        path.write_text(toml(self.values))
        return path

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """`rotator ARGV --config <this config>`, through `invoke_rotator`."""
        return invoke_rotator(*argv, "--config", str(self.config()))

    def daemon(self) -> DaemonProcess:
        return DaemonProcess(self.config())

    def vault_keys(self, mount: str = "secret", namespace: str | None = None) -> list[str]:
        """Every key under `mount` (KV v1 or v2, recursively), as root sees it."""
        headers = {"X-Vault-Token": self.vault.root_token}
        if namespace:
            headers["X-Vault-Namespace"] = namespace
        found: list[str] = []
        pending = [""]
        version = self._kv_version(mount, headers)
        while pending:
            folder = pending.pop()
            url = f"{self.vault.address}/v1/{mount}/{'metadata/' if version == '2' else ''}{folder}"
            answer = requests.request("LIST", url, headers=headers, timeout=10)
            if answer.status_code == 404:
                continue
            for key in answer.json()["data"]["keys"]:
                (pending if key.endswith("/") else found).append(folder + key)
        return sorted(found)

    def _kv_version(self, mount: str, headers: dict[str, str]) -> str:
        url = f"{self.vault.address}/v1/sys/internal/ui/mounts/{mount}"
        options = requests.get(url, headers=headers, timeout=10).json()["data"]["options"]
        return str((options or {}).get("version", "1"))


@pytest.fixture
def rig(tmp_path: Path, monite: MoniteEmulator, vault: VaultEmulator) -> Rig:
    """Monite and a Vault (emulator, then OpenBao), and a config; each test makes its token."""
    return Rig(tmp_path, monite, vault)


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Daemons a test starts; killed (their output scanned for secrets) after it."""
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.close()


def misconfigure(rig: Rig, finding: str) -> None:
    """Set up one of the misconfigurations of ONE_LINE_FIX."""
    if finding == "no mount":
        # The policy is right for vault.mount; only the mount was never enabled.
        rig.token(ROTATOR_POLICY.replace('"secret/', '"absent/'))
        rig.config(vault={"mount": "absent"})
    elif finding == "kv v1":
        rig.vault.remount("secret", version=1)
        rig.token()
    elif finding == "unknown namespace":
        rig.token()
        rig.config(vault={"namespace": "no-such-team"})
    elif finding == "mistyped mount":
        # The shipped policy, a mount name it does not cover and no such mount.
        rig.token()
        rig.config(vault={"mount": "secrte"})
    elif finding == "unreadable credentials":
        rig.token(ROTATOR_POLICY.replace(CREDENTIALS_PATH, "monite/elsewhere"))
        rig.config(
            monite={
                "client_id": None,
                "client_secret_file": None,
                "credentials_path": CREDENTIALS_PATH,
            }
        )
    else:
        rig.token(ROTATOR_POLICY.replace('["create", "read", "update"]', '["read"]'))


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stderr.strip().splitlines()


# ---------------------------------------------------------------------------
# What passes
# ---------------------------------------------------------------------------


def test_check_passes_with_the_shipped_policy_alone(rig: Rig) -> None:
    """A token holding only deploy/vault/policy.hcl (no "default") passes, every capability seen."""
    rig.token()
    result = rig.run("check")
    assert (0, [], True) == (
        result.returncode,
        stderr_lines(result),
        "the token may create, read, update on secret/data/monite/webhooks/*; list on "
        "secret/metadata/monite/webhooks/; read on secret/metadata/monite/webhooks/*"
        in result.stdout,
    ), result.stdout + result.stderr


def test_check_names_the_credentials_path_it_verified(rig: Rig) -> None:
    """With monite.credentials_path, check also verifies "read" there and says so."""
    rig.token()
    rig.vault.kv_write(
        "secret",
        CREDENTIALS_PATH,
        dict(zip(("client_id", "client_secret"), rig.monite.credentials, strict=True)),
    )
    rig.config(
        monite={"client_id": None, "client_secret_file": None, "credentials_path": CREDENTIALS_PATH}
    )
    result = rig.run("check")
    assert (0, True) == (
        result.returncode,
        "read on secret/data/monite/api-credentials" in result.stdout,
    ), result.stdout + result.stderr


def test_policy_without_capabilities_self_falls_back_with_a_note(rig: Rig) -> None:
    """A policy that may not ask for its capabilities still passes, saying what went unchecked."""
    rig.token(OLD_POLICY)
    result = rig.run("check")
    assert (0, [], True) == (
        result.returncode,
        stderr_lines(result),
        "note: the Vault token may not call sys/capabilities-self, so only listing "
        'secret/metadata/monite/webhooks was tried; add path "sys/capabilities-self" '
        '{ capabilities = ["update"] } to its policy' in result.stdout,
    ), result.stdout + result.stderr


def test_check_and_run_once_in_a_namespace(rig: Rig) -> None:
    """In a namespace (sys/health sent outside it) check passes and run --once rotates."""
    rig.vault.namespace("team")
    prefix = f"monite/{uuid.uuid4().hex[:8]}"  # the namespace's mount outlives the test
    rig.token(ROTATOR_POLICY.replace("monite/webhooks", prefix), namespace="team")
    rig.config(vault={"namespace": "team", "path_prefix": prefix})
    subscription_id = rig.monite.seed()
    checked = rig.run("check")
    ran = rig.run("run", "--once")
    written = [k for k in rig.vault_keys(namespace="team") if k.startswith(f"{prefix}/")]
    assert (0, 0, [f"{prefix}/{subscription_id}"]) == (
        checked.returncode,
        ran.returncode,
        written,
    ), checked.stderr + ran.stderr


def test_daemon_in_a_namespace_gets_ready(rig: Rig, daemons: list[DaemonProcess]) -> None:
    """The daemon's preflight passes in a namespace (it used to wait on a 400 forever)."""
    rig.vault.namespace("team")
    prefix = f"monite/{uuid.uuid4().hex[:8]}"
    rig.token(ROTATOR_POLICY.replace("monite/webhooks", prefix), namespace="team")
    rig.config(vault={"namespace": "team", "path_prefix": prefix})
    daemon = rig.daemon()
    daemons.append(daemon)
    daemon.wait_for("daemon.ready", timeout=20)
    assert 0 == daemon.stop()


# ---------------------------------------------------------------------------
# One line, the right exit code, nothing written
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("finding", list(ONE_LINE_FIX))
@pytest.mark.parametrize("command", ["check", "run --once", "plan", "rotate --force --all"])
def test_misconfiguration_is_one_line_naming_the_setting(
    rig: Rig, finding: str, command: str
) -> None:
    """Each misconfiguration: its exit code, one line naming the setting and the fix, no write."""
    misconfigure(rig, finding)
    subscription_id = rig.monite.seed()
    before = rig.vault_keys()
    result = rig.run(*command.split())
    assert (*ONE_LINE_FIX[finding], []) == (
        result.returncode,
        result.stderr.strip(),
        [k for k in rig.vault_keys() if k not in before],
    ), result.stderr
    assert 0 == rig.monite.regenerate_count(subscription_id)


@pytest.mark.parametrize("finding", list(ONE_LINE_FIX))
def test_daemon_refuses_to_start_on_a_misconfiguration(
    rig: Rig, daemons: list[DaemonProcess], finding: str
) -> None:
    """`rotator run` exits at preflight with the same code and line; never ready, no write."""
    misconfigure(rig, finding)
    before = rig.vault_keys()
    daemon = rig.daemon()
    daemons.append(daemon)
    code = daemon.wait(timeout=30)
    assert (*ONE_LINE_FIX[finding], False, []) == (
        code,
        daemon.stderr.strip(),
        "daemon.ready" in daemon.names(),
        [k for k in rig.vault_keys() if k not in before],
    )


def test_daemon_waits_out_a_sealed_vault_but_not_a_missing_mount(
    rig: Rig, daemons: list[DaemonProcess]
) -> None:
    """Sealed at start the daemon waits; once unsealed, a missing mount still exits 78."""
    misconfigure(rig, "no mount")
    rig.vault.seal()
    try:
        daemon = rig.daemon()
        daemons.append(daemon)
        waiting = daemon.wait_for("daemon.preflight_failed", timeout=20)
    finally:
        rig.vault.unseal()
    code = daemon.wait(timeout=30)
    assert (True, *ONE_LINE_FIX["no mount"]) == (
        "sealed" in waiting["error"],
        code,
        daemon.stderr.strip(),
    )


def test_unknown_namespace_with_approle_is_not_a_credential_problem(rig: Rig) -> None:
    """An AppRole login into a namespace that does not exist names vault.namespace, exit 78."""
    role_id, secret_id = rig.vault.add_approle("rotator-check", policies=["default"])
    secret_file = rig.directory / "secret_id"
    secret_file.write_text(secret_id)
    secret_file.chmod(0o600)
    rig.config(
        vault={
            "token_file": None,
            "auth_method": "approle",
            "role_id": role_id,
            "secret_id_file": str(secret_file),
            "namespace": "no-such-team",
        }
    )
    result = rig.run("check")
    assert ONE_LINE_FIX["unknown namespace"] == (result.returncode, result.stderr.strip())


def test_mount_at_a_deeper_path_says_which_settings_to_use(
    tmp_path: Path, monite: MoniteEmulator, openbao: OpenBaoVault
) -> None:
    """A KV v2 mount at secret/monite (not secret): the line gives vault.mount and path_prefix."""
    # OpenBao only: the emulator cannot disable a mount.
    rig = Rig(tmp_path, monite, openbao)  # typed as the emulator, like the fixtures
    admin = hvac.Client(url=rig.vault.address, token=rig.vault.root_token, timeout=10)
    with_mount = "secret/monite"
    try:
        admin.sys.disable_secrets_engine(path="secret")
        admin.sys.enable_secrets_engine(
            backend_type="kv", path=with_mount, options={"version": "2"}
        )
        rig.token(ROTATOR_POLICY.replace('"secret/', '"secret/monite/'))
        result = rig.run("check")
    finally:
        admin.sys.disable_secrets_engine(path=with_mount)
    assert (
        78,
        'rotator: vault.mount: "secret" is not a mount; the secrets engine holding '
        'secret/monite/webhooks is mounted at "secret/monite": set vault.mount = '
        '"secret/monite" and vault.path_prefix = "webhooks"',
    ) == (result.returncode, result.stderr.strip())


@pytest.mark.parametrize(
    ("policy_change", "expected"),
    [
        (
            ('["list", "read"]', '["read"]'),
            '"list" on secret/metadata/monite/webhooks/; add path '
            '"secret/metadata/monite/webhooks/*" { capabilities = ["list", "read"] }',
        ),
        (
            ('["list", "read"]', '["list"]'),
            '"read" on secret/metadata/monite/webhooks/*; add path '
            '"secret/metadata/monite/webhooks/*" { capabilities = ["list", "read"] }',
        ),
        (
            ("secret/data/monite/webhooks/*", "secret/data/other/*"),
            '"create", "read", "update" on secret/data/monite/webhooks/*; add path '
            '"secret/data/monite/webhooks/*" { capabilities = ["create", "read", "update"] }',
        ),
    ],
)
def test_missing_capability_names_the_path_and_the_stanza(
    rig: Rig, policy_change: tuple[str, str], expected: str
) -> None:
    """Each capability rotation needs, when missing: exit 77, the path, and the stanza to add."""
    rig.token(ROTATOR_POLICY.replace(*policy_change))
    result = rig.run("check")
    line = result.stderr.strip()
    assert (77, True, True) == (
        result.returncode,
        line.startswith("rotator: vault.mount and vault.path_prefix: the policies of the "),
        expected in line and "\n" not in line,
    ), result.stderr


def test_unreadable_credentials_path_names_the_setting(rig: Rig) -> None:
    """A policy that may not read monite.credentials_path: exit 77, one line naming it, the fix."""
    rig.token(ROTATOR_POLICY.replace(CREDENTIALS_PATH, "monite/elsewhere"))
    rig.config(
        monite={"client_id": None, "client_secret_file": None, "credentials_path": CREDENTIALS_PATH}
    )
    result = rig.run("check")
    assert (
        77,
        'rotator: monite.credentials_path: the policies of the Vault token lack "read" on '
        'secret/data/monite/api-credentials; add path "secret/data/monite/api-credentials" '
        '{ capabilities = ["read"] } to its policy, or point monite.credentials_path at a path '
        "it may read",
    ) == (result.returncode, result.stderr.strip())


def test_empty_credentials_path_is_a_configuration_error(rig: Rig) -> None:
    """Nothing at monite.credentials_path is a setting to fix (78), not an outage (69)."""
    rig.token()
    rig.config(
        monite={"client_id": None, "client_secret_file": None, "credentials_path": CREDENTIALS_PATH}
    )
    result = rig.run("check")
    lines = stderr_lines(result)
    assert (78, 1, True) == (
        result.returncode,
        len(lines),
        lines[0].startswith(
            "rotator: monite.credentials_path: Vault has nothing at "
            "secret/data/monite/api-credentials"
        ),
    ), result.stderr


# ---------------------------------------------------------------------------
# Unreachable: the setting, the host and port, the fix
# ---------------------------------------------------------------------------


def test_unreachable_vault_is_one_line_naming_the_address(rig: Rig) -> None:
    """Nothing listening at vault.address: exit 69, one line with the key, host and port."""
    rig.token()
    port = free_port()
    rig.config(vault={"address": f"http://127.0.0.1:{port}", "max_retries": 3})
    result = rig.run("check")
    assert (
        69,
        f"rotator: vault.address: cannot connect to 127.0.0.1:{port} (connection refused); "
        "check that Vault is running and the address is right",
    ) == (result.returncode, result.stderr.strip())


def test_unreachable_monite_is_one_line_without_retry_lines(rig: Rig) -> None:
    """Nothing at monite.base_url: exit 69, one line naming it; its retries log only at debug."""
    rig.token()
    port = free_port()
    rig.config(monite={"base_url": f"http://127.0.0.1:{port}", "max_retries": 2})
    result = rig.run("check")
    assert (
        69,
        [
            f"rotator: monite.base_url: cannot connect to 127.0.0.1:{port} (connection "
            "refused); check that Monite is running and the address is right (gave up after "
            "3 attempts)"
        ],
    ) == (result.returncode, stderr_lines(result))


def test_tls_to_a_plain_http_vault_points_at_the_scheme(rig: Rig) -> None:
    """https:// to Vault's plain-HTTP listener: one line about TLS and vault.ca_cert."""
    rig.token()
    address = rig.vault.address.replace("http://", "https://")
    rig.config(vault={"address": address})
    result = rig.run("check")
    where = address.removeprefix("https://")
    assert (
        69,
        f"rotator: vault.address: cannot connect to {where} (TLS handshake failed); check that "
        "the address should use https and that vault.ca_cert names the CA that signed Vault's "
        "certificate",
    ) == (result.returncode, result.stderr.strip())


def test_unreachable_message_for_httpx_names_host_and_port() -> None:
    """The shared one-line helper reads httpx's errors too (Monite's client uses httpx)."""
    port = free_port()
    url = f"https://user:pass@127.0.0.1:{port}/v1"
    try:
        httpx.get(url, timeout=2)
    except httpx.ConnectError as exc:
        message = errors.unreachable_message("monite.base_url", url, exc, service="Monite")
    assert (
        f"monite.base_url: cannot connect to 127.0.0.1:{port} (connection refused); check that "
        "Monite is running and the address is right"
    ) == message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://vault.example", "vault.example:443"),
        ("http://vault.example/", "vault.example:80"),
        ("https://[::1]:8200", "[::1]:8200"),
        ("https://token:s3cret@Vault.Example:8200/v1?x=1", "vault.example:8200"),
    ],
)
def test_host_and_port_never_shows_credentials(url: str, expected: str) -> None:
    """host:port comes from the URL without its user info, path or query."""
    assert expected == errors.host_and_port(url)


def _json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def test_revoked_token_is_one_line_without_a_warning_first(rig: Rig) -> None:
    """A revoked token: exit 77 and only the error line (no vault.token_lookup_failed before it)."""
    token = rig.token()
    rig.vault.revoke_token(token)
    result = rig.run("check")
    lines = stderr_lines(result)
    assert (77, 1, []) == (result.returncode, len(lines), _json_lines(result.stderr)), result.stderr


def test_check_is_refused_by_a_sealed_vault_without_a_write(rig: Rig) -> None:
    """Sealed: exit 69, one line, and the health call did not need the token."""
    rig.token()
    rig.vault.seal()
    try:
        result = rig.run("check")
    finally:
        rig.vault.unseal()
    assert (69, 1, True) == (
        result.returncode,
        len(stderr_lines(result)),
        "sealed" in result.stderr,
    ), result.stderr
