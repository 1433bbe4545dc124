"""Checks for deploy/: systemd units, Kubernetes manifests, Vault policy, Dockerfile.

The deploy files are configuration nobody runs in CI, so these tests hold them
to what the daemon actually does: the same port, the same shutdown budget, the
same config keys, the same Vault paths. Tests that need `kubectl` or
`systemd-analyze` skip with a reason when the binary is missing; everything
else runs on plain files.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import hvac
import kubernetes_validate
import pytest
import yaml

from rotator.config import load_settings
from rotator.model import parse_duration
from rotator.sandbox.monite import MoniteEmulator
from tests.conftest import remember_output
from tests.daemon_harness import free_port, run_rotator, toml
from tests.openbao import OpenBaoVault, bao_binary

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
KUBE = DEPLOY / "kubernetes"
BASE = KUBE / "base"
OVERLAY = KUBE / "overlays" / "example"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
POLICY = DEPLOY / "vault" / "policy.hcl"

UNITS = ("monite-secret-rotator.service", "monite-secret-rotator-once.service")
INSTALLED_BINARY = "/opt/monite-secret-rotator/bin/rotator"
MAX_EXPOSURE = 2.0
HEALTH_PORT = 9464
CLIENT_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
# Oldest Kubernetes the manifests claim to support, and the newest schema set
# kubernetes-validate ships (its schemas are bundled: no network needed).
KUBE_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
# Pod Security "restricted": the only volume types it admits.
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def _base_objects() -> list[dict[str, Any]]:
    """The base's resource files as written (no kubectl needed)."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    objects: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        objects += [doc for doc in yaml.safe_load_all((BASE / name).read_text()) if doc]
    return objects


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert 1 == len(found), f"expected one {kind}"
    return found[0]


def _pod_spec(workload: Mapping[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "CronJob":
        return dict(workload["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(workload["spec"]["template"]["spec"])


def _pod_labels(workload: Mapping[str, Any]) -> dict[str, str]:
    if workload["kind"] == "CronJob":
        return dict(workload["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"])
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def _toml(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def _unit(path: Path) -> dict[str, list[str]]:
    """A unit file as {"Section.Key": [values in order]}; comments dropped."""
    values: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        values.setdefault(f"{section}.{key}", []).append(value)
    return values


def _hardening(path: Path) -> list[str]:
    """The unit's hardening block: from the marker comment to [Install] or the end."""
    text = path.read_text()
    block = text[text.index("# --- Hardening") :]
    return [line for line in block.split("[Install]")[0].splitlines() if line.strip()]


def _dockerfile() -> list[tuple[str, str]]:
    """Dockerfile instructions as (INSTRUCTION, arguments), continuations joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _dockerfile():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _policy() -> dict[str, list[str]]:
    """policy.hcl as {path: capabilities}; fails on anything but path blocks."""
    text = re.sub(r"#[^\n]*", "", POLICY.read_text())
    block = re.compile(r'path\s+"([^"]+)"\s*\{\s*capabilities\s*=\s*\[([^\]]*)\]\s*\}')
    rules = {m.group(1): re.findall(r'"([^"]+)"', m.group(2)) for m in block.finditer(text)}
    assert "" == block.sub("", text).strip(), "policy.hcl has content that is not a path block"
    return rules


# ---------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["base", "overlay"])
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    """`kubectl kustomize` output for the base or the example overlay, as objects."""
    kubectl = _binary("kubectl")
    target = BASE if request.param == "base" else OVERLAY
    result = _run(kubectl, "kustomize", str(target))
    assert 0 == result.returncode, result.stderr
    return request.param, [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_kustomize_renders_every_kind(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """kubectl kustomize renders the base and the overlay with the expected objects."""
    name, objects = rendered
    expected = {
        "ConfigMap",
        "CronJob",
        "Deployment",
        "NetworkPolicy",
        "Service",
        "ServiceAccount",
    } | ({"Namespace"} if name == "overlay" else set())
    assert sorted(expected) == sorted(obj["kind"] for obj in objects)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_rendered_objects_validate(
    rendered: tuple[str, list[dict[str, Any]]], version: str
) -> None:
    """Every rendered object validates against the bundled Kubernetes schemas (strict)."""
    _, objects = rendered
    failures = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert [] == failures


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_base_files_validate_without_kubectl(version: str) -> None:
    """The base's resource files validate on their own, so the check runs without kubectl."""
    failures = []
    for obj in _base_objects():
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert [] == failures


def test_configmap_is_generated_and_mounted(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """Both workloads mount the hash-named ConfigMap that holds rotator.toml."""
    _, objects = rendered
    config_map = _one(objects, "ConfigMap")
    assert ["rotator.toml"] == sorted(config_map["data"])
    for kind in ("Deployment", "CronJob"):
        volumes = {v["name"]: v for v in _pod_spec(_one(objects, kind))["volumes"]}
        assert config_map["metadata"]["name"] == volumes["config"]["configMap"]["name"]


def test_overlay_sets_namespace_image_and_restricted_admission() -> None:
    """The example overlay enforces Pod Security "restricted" and places everything in it."""
    kubectl = _binary("kubectl")
    result = _run(kubectl, "kustomize", str(OVERLAY))
    assert 0 == result.returncode, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    namespace = _one(objects, "Namespace")
    assert "restricted" == namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
    name = namespace["metadata"]["name"]
    assert [name] == sorted(
        {obj["metadata"].get("namespace", "") for obj in objects if obj["kind"] != "Namespace"}
    )
    images = {
        c["image"]
        for kind in ("Deployment", "CronJob")
        for c in _pod_spec(_one(objects, kind))["containers"]
    }
    assert {"registry.example.com/platform/monite-secret-rotator:0.1.0"} == images
    assert 1 == _one(objects, "Deployment")["spec"]["replicas"]


@pytest.mark.parametrize("kind", ["Deployment", "CronJob"])
def test_pods_meet_restricted_pod_security(kind: str) -> None:
    """Daemon and Job pods satisfy the restricted profile, with a read-only root."""
    spec = _pod_spec(_one(_base_objects(), kind))
    pod = spec["securityContext"]
    assert (True, 10001, "RuntimeDefault") == (
        pod["runAsNonRoot"],
        pod["runAsUser"],
        pod["seccompProfile"]["type"],
    )
    assert (False, False, False) == (
        spec.get("hostNetwork", False),
        spec.get("hostPID", False),
        spec.get("hostIPC", False),
    )
    for volume in spec["volumes"]:
        assert set() == set(volume) - {"name"} - RESTRICTED_VOLUME_TYPES, volume["name"]
    for container in spec["containers"]:
        context = container["securityContext"]
        assert {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        } == {key: context[key] for key in context if key != "runAsGroup"}
        assert [] == [p for p in container.get("ports", []) if "hostPort" in p]
        assert {"requests", "limits"} == set(container["resources"])


def test_deployment_probes_hit_the_health_port() -> None:
    """Startup, liveness and readiness probes use /healthz and /readyz on the configured port."""
    deployment = _one(_base_objects(), "Deployment")
    (container,) = _pod_spec(deployment)["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    probes = {
        name: (container[name]["httpGet"]["path"], ports[container[name]["httpGet"]["port"]])
        for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert {
        "startupProbe": ("/healthz", HEALTH_PORT),
        "livenessProbe": ("/healthz", HEALTH_PORT),
        "readinessProbe": ("/readyz", HEALTH_PORT),
    } == probes
    listen = _toml(BASE / "rotator.toml")["health"]["listen"]
    assert f"0.0.0.0:{HEALTH_PORT}" == listen
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert ("true", str(HEALTH_PORT), "/metrics") == (
        annotations["prometheus.io/scrape"],
        annotations["prometheus.io/port"],
        annotations["prometheus.io/path"],
    )


def test_grace_period_covers_shutdown_timeout(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """terminationGracePeriodSeconds leaves room for the SIGTERM drain of the rendered config."""
    _, objects = rendered
    config = tomllib.loads(_one(objects, "ConfigMap")["data"]["rotator.toml"])
    timeout = parse_duration(config["rotation"]["shutdown_timeout"]).total_seconds()
    for kind in ("Deployment", "CronJob"):
        grace = _pod_spec(_one(objects, kind))["terminationGracePeriodSeconds"]
        assert grace >= timeout + 10, f"{kind}: {grace}s grace vs {timeout}s drain"


def test_cronjob_is_a_suspended_forced_rotation() -> None:
    """The CronJob never runs by itself and its Job runs `rotator rotate --force --all`."""
    cronjob = _one(_base_objects(), "CronJob")
    job = cronjob["spec"]["jobTemplate"]["spec"]
    (container,) = job["template"]["spec"]["containers"]
    assert (True, 0, "Never") == (
        cronjob["spec"]["suspend"],
        job["backoffLimit"],
        job["template"]["spec"]["restartPolicy"],
    )
    assert [
        "rotate",
        "--force",
        "--all",
        "--config",
        "/etc/monite-secret-rotator/rotator.toml",
    ] == container["args"]
    assert "monite-secret-rotator-force-rotate" == cronjob["metadata"]["name"]


def test_network_policy_allows_only_dns_https_vault_and_health() -> None:
    """Egress is DNS, 443 and 8200; ingress is the health port; it covers both workloads."""
    objects = _base_objects()
    policy = _one(objects, "NetworkPolicy")["spec"]
    egress = {(p["protocol"], p["port"]) for rule in policy["egress"] for p in rule["ports"]}
    ingress = {(p["protocol"], p["port"]) for rule in policy["ingress"] for p in rule["ports"]}
    assert {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 8200)} == egress
    assert {("TCP", HEALTH_PORT)} == ingress
    assert ["Egress", "Ingress"] == sorted(policy["policyTypes"])
    # The selector label comes from kustomization.yaml, which stamps every pod.
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    stamped = kustomization["labels"][0]["pairs"]
    assert {} == {
        k: v for k, v in policy["podSelector"]["matchLabels"].items() if stamped.get(k) != v
    }


def test_service_selects_daemon_pods_only(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """The metrics Service targets the daemon, not forced-rotation Job pods."""
    _, objects = rendered
    selector = _one(objects, "Service")["spec"]["selector"].items()
    assert (True, False) == (
        selector <= _pod_labels(_one(objects, "Deployment")).items(),
        selector <= _pod_labels(_one(objects, "CronJob")).items(),
    )


@pytest.mark.parametrize("config", [BASE / "rotator.toml", OVERLAY / "rotator.toml"])
def test_kubernetes_config_loads(config: Path, tmp_path: Path) -> None:
    """The ConfigMap's rotator.toml uses only real keys and loads as Kubernetes auth."""
    jwt = tmp_path / "token"
    jwt.write_text("header.payload.signature\n")
    # Only the projected token's location differs from a real pod.
    settings = load_settings(config, {"ROTATOR_VAULT__JWT_FILE": str(jwt)})
    assert ("kubernetes", "monite-secret-rotator", "monite/api-credentials") == (
        settings.vault.auth_method,
        settings.vault.role,
        settings.monite.credentials_path,
    )
    assert (HEALTH_PORT, "0.0.0.0", "json") == (
        settings.health.port,
        settings.health.host,
        settings.log.format,
    )
    assert "/var/run/secrets/vault/token" == _toml(config)["vault"]["jwt_file"]


def test_vault_token_is_projected_for_the_configured_path() -> None:
    """The projected Vault-audience token lands where jwt_file points, in both workloads."""
    jwt_file = Path(_toml(BASE / "rotator.toml")["vault"]["jwt_file"])
    for kind in ("Deployment", "CronJob"):
        spec = _pod_spec(_one(_base_objects(), kind))
        (container,) = spec["containers"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        (source,) = {v["name"]: v for v in spec["volumes"]}["vault-token"]["projected"]["sources"]
        token = source["serviceAccountToken"]
        assert (str(jwt_file.parent), jwt_file.name, "vault") == (
            mounts["vault-token"],
            token["path"],
            token["audience"],
        )
        assert False is spec["automountServiceAccountToken"]


# ---------------------------------------------------------------------------
# Vault
# ---------------------------------------------------------------------------


def test_vault_policy_is_least_privilege() -> None:
    """policy.hcl grants exactly the paths the Kubernetes config uses, and nothing more."""
    config = _toml(BASE / "rotator.toml")
    mount, prefix = config["vault"]["mount"], config["vault"]["path_prefix"]
    credentials = config["monite"]["credentials_path"]
    assert {
        f"{mount}/data/{prefix}/*": ["create", "read", "update"],
        f"{mount}/metadata/{prefix}/*": ["list", "read"],
        f"{mount}/data/{credentials}": ["read"],
        "auth/token/lookup-self": ["read"],
        "auth/token/renew-self": ["update"],
        # `rotator check` asks which capabilities the token holds (its own only).
        "sys/capabilities-self": ["update"],
    } == _policy()
    # Outside the records, or the rotator would report it as an orphan record.
    assert not credentials.startswith(f"{prefix}/"), credentials


def test_example_config_credentials_path_is_the_one_the_policy_grants() -> None:
    """config/example.toml suggests the monite.credentials_path that policy.hcl grants "read" on."""
    example = (ROOT / "config" / "example.toml").read_text()
    suggested = re.findall(r'^# credentials_path = "([^"]+)"$', example, flags=re.MULTILINE)
    mount = _toml(ROOT / "config" / "example.toml")["vault"]["mount"]
    granted = [path for path, caps in _policy().items() if caps == ["read"] and "/data/" in path]
    assert ([f"{mount}/data/{suggested[0]}"], 1) == (granted, len(suggested))


def test_vault_role_example_matches_the_manifests() -> None:
    """The Kubernetes auth role binds the manifests' service account, namespace and audience."""
    script = (DEPLOY / "vault" / "kubernetes-auth-role.sh").read_text()
    command = script[script.index('write "auth/${auth_mount}/role/') :]
    args = dict(
        word.split("=", 1)
        for word in shlex.split(command.split("\n\n")[0].replace("\\\n", " "))
        if "=" in word
    )
    overlay = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    assert {
        "bound_service_account_names": _one(_base_objects(), "ServiceAccount")["metadata"]["name"],
        "bound_service_account_namespaces": "${namespace}",
        "audience": "vault",
        "token_policies": "monite-secret-rotator",
        "token_ttl": "1h",
        "token_max_ttl": "4h",
    } == args
    assert f'namespace="${{NAMESPACE:-{overlay["namespace"]}}}"' in script


@pytest.mark.parametrize("script", ["kubernetes-auth-role.sh", "approle.sh"])
def test_vault_scripts_parse(script: str) -> None:
    """The example scripts are valid bash with strict mode on."""
    bash = _binary("bash")
    path = DEPLOY / "vault" / script
    result = _run(bash, "-n", str(path))
    assert (0, "") == (result.returncode, result.stderr)
    assert "set -euo pipefail" in path.read_text()


def _run_script(script: str, openbao: OpenBaoVault, **env: str) -> subprocess.CompletedProcess[str]:
    """A deploy/vault script run with OpenBao's CLI as the test server's root, as operators do."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    environ.update(
        VAULT_CLI=bao_binary(),
        VAULT_ADDR=openbao.address,
        BAO_ADDR=openbao.address,
        VAULT_TOKEN=openbao.root_token,
        BAO_TOKEN=openbao.root_token,
        **env,
    )
    result = subprocess.run(
        [_binary("bash"), str(DEPLOY / "vault" / script)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )
    remember_output(result.stdout, result.stderr)
    return result


def _auth_methods(openbao: OpenBaoVault) -> dict[str, str]:
    admin = hvac.Client(url=openbao.address, token=openbao.root_token, timeout=10)
    methods = admin.sys.list_auth_methods()["data"]
    return {path: entry["type"] for path, entry in methods.items()}


def test_approle_script_enables_approle_and_the_role_passes_check(
    tmp_path: Path, openbao: OpenBaoVault, monite: MoniteEmulator
) -> None:
    """approle.sh on a Vault without AppRole at that mount enables it; the role passes check."""
    mount = f"approle-{uuid.uuid4().hex[:8]}"  # surely not enabled yet on the shared server
    conf_dir = tmp_path / "etc"
    runs = [
        _run_script("approle.sh", openbao, AUTH_MOUNT=mount, CONF_DIR=str(conf_dir))
        for _ in range(2)  # and again, on a Vault where everything exists already
    ]
    role_id = runs[-1].stdout.split("role_id for rotator.toml:")[1].split()[0]
    secret_id_file = conf_dir / "vault_secret_id"
    client_id, client_secret = monite.credentials
    (tmp_path / "client_secret").write_text(client_secret)
    (tmp_path / "client_secret").chmod(0o600)
    config = tmp_path / "rotator.toml"
    config.write_text(
        toml(
            {
                "monite": {
                    "base_url": monite.base_url,
                    "client_id": client_id,
                    "client_secret_file": str(tmp_path / "client_secret"),
                },
                "vault": {
                    "address": openbao.address,
                    "auth_method": "approle",
                    "auth_mount": mount,
                    "role_id": role_id,
                    "secret_id_file": str(secret_id_file),
                },
                "policy": {"max_age": "30d"},
            }
        )
    )
    check = run_rotator("check", "--config", str(config))
    assert ([0, 0], "approle", "0o600", 0, True) == (
        [r.returncode for r in runs],
        _auth_methods(openbao).get(f"{mount}/"),
        oct(secret_id_file.stat().st_mode & 0o777),
        check.returncode,
        check.stdout.startswith("ok: "),
    ), [r.stderr for r in runs] + [check.stderr]


def test_kubernetes_script_enables_the_method_and_writes_the_role(
    tmp_path: Path, openbao: OpenBaoVault
) -> None:
    """kubernetes-auth-role.sh enables the method, writes its config and the role (no login:
    that needs a cluster's TokenReview)."""
    mount = f"kubernetes-{uuid.uuid4().hex[:8]}"
    host = f"https://127.0.0.1:{free_port()}"
    ca_cert = tmp_path / "ca.pem"  # stands in for the cluster's CA; Vault only parses it here
    made = _run(
        _binary("openssl"),
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(tmp_path / "ca.key"),
        "-out",
        str(ca_cert),
        "-subj",
        "/CN=test-cluster-ca",
        "-days",
        "1",
    )
    assert 0 == made.returncode, made.stderr
    runs = [
        _run_script(
            "kubernetes-auth-role.sh",
            openbao,
            AUTH_MOUNT=mount,
            KUBERNETES_HOST=host,
            KUBERNETES_CA_CERT=str(ca_cert),
            NAMESPACE="payments",
        )
        for _ in range(2)
    ]
    admin = hvac.Client(url=openbao.address, token=openbao.root_token, timeout=10)
    role = admin.read(f"auth/{mount}/role/monite-secret-rotator")["data"]
    settings = admin.read(f"auth/{mount}/config")["data"]
    assert (
        [0, 0],
        "kubernetes",
        host,
        (["monite-secret-rotator"], ["payments"], "vault", ["monite-secret-rotator"], 3600),
    ) == (
        [r.returncode for r in runs],
        _auth_methods(openbao).get(f"{mount}/"),
        settings["kubernetes_host"],
        (
            role["bound_service_account_names"],
            role["bound_service_account_namespaces"],
            role["audience"],
            role["token_policies"],
            role["token_ttl"],
        ),
    ), [r.stderr for r in runs]


# ---------------------------------------------------------------------------
# systemd
# ---------------------------------------------------------------------------


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    """Copies of the units whose ExecStart points at an existing stub.

    `systemd-analyze verify` rejects a unit whose binary is missing, and the
    venv in /opt does not exist on a test machine; only that path changes.
    """
    stub = tmp_path / "bin" / "rotator"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    for source in SYSTEMD.glob("monite-secret-rotator*"):
        text = source.read_text()
        assert (source.suffix == ".timer") or INSTALLED_BINARY in text
        (units / source.name).write_text(text.replace(INSTALLED_BINARY, str(stub)))
    return units


def test_systemd_analyze_verify_accepts_units(unit_dir: Path) -> None:
    """systemd-analyze verify accepts both services and the timer without a warning."""
    analyze = _binary("systemd-analyze")
    names = sorted(p.name for p in unit_dir.iterdir())
    assert [
        "monite-secret-rotator-once.service",
        "monite-secret-rotator.service",
        "monite-secret-rotator.timer",
    ] == names
    # verify exits 0 even for unknown keys and bad values; they show on stderr.
    result = _run(analyze, "verify", "--man=no", *names, cwd=unit_dir)
    assert (0, "") == (result.returncode, result.stderr.strip())


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_security_exposure_within_target(unit: str) -> None:
    """systemd-analyze security --offline rates each service at 2.0 or lower."""
    analyze = _binary("systemd-analyze")
    path = SYSTEMD / unit
    result = _run(analyze, "security", "--offline=yes", "--no-pager", str(path))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    if match is None:
        pytest.skip(f"this systemd-analyze cannot rate units offline: {result.stderr.strip()}")
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, f"{unit}: exposure {exposure}"
    # The figure is documented in the unit; keep the comment honest.
    assert f"exposure: {exposure} OK" in path.read_text() or f"Reached: {exposure} OK" in (
        path.read_text()
    )
    threshold = _run(
        analyze, "security", "--offline=yes", f"--threshold={int(MAX_EXPOSURE * 10)}", str(path)
    )
    assert 0 == threshold.returncode


def test_daemon_unit_contract() -> None:
    """The daemon unit matches `rotator run`: notify, watchdog, exit 78, drain, no core files."""
    unit = _unit(SYSTEMD / "monite-secret-rotator.service")
    assert {
        "Service.Type": ["notify"],
        "Service.NotifyAccess": ["main"],
        "Service.WatchdogSec": ["60"],
        "Service.Restart": ["on-failure"],
        "Service.RestartPreventExitStatus": ["77 78"],
        "Service.TimeoutStopSec": ["40"],
        "Service.ExecReload": ["/bin/kill -HUP $MAINPID"],
        "Service.ExecStart": [
            f"{INSTALLED_BINARY} run --config /etc/monite-secret-rotator/rotator.toml"
        ],
        "Service.LoadCredential": [
            "monite_client_secret:/etc/monite-secret-rotator/monite_client_secret",
            "vault_token:/etc/monite-secret-rotator/vault_token",
        ],
        "Service.DynamicUser": ["yes"],
        "Service.MemoryDenyWriteExecute": ["yes"],
        "Service.LimitCORE": ["0"],
        "Install.WantedBy": ["multi-user.target"],
    } == {key: unit[key] for key in unit if key in _DAEMON_KEYS}
    timeout = parse_duration(_toml(SYSTEMD / "rotator.toml")["rotation"]["shutdown_timeout"])
    stop_budget = int(unit["Service.TimeoutStopSec"][0])
    assert timeout.total_seconds() + 10 <= stop_budget


_DAEMON_KEYS = frozenset(
    {
        "Service.Type",
        "Service.NotifyAccess",
        "Service.WatchdogSec",
        "Service.Restart",
        "Service.RestartPreventExitStatus",
        "Service.TimeoutStopSec",
        "Service.ExecReload",
        "Service.ExecStart",
        "Service.LoadCredential",
        "Service.DynamicUser",
        "Service.MemoryDenyWriteExecute",
        "Service.LimitCORE",
        "Install.WantedBy",
    }
)


def test_oneshot_unit_and_timer() -> None:
    """The timer runs the oneshot unit every 15 minutes, catching up after downtime."""
    once = _unit(SYSTEMD / "monite-secret-rotator-once.service")
    timer = _unit(SYSTEMD / "monite-secret-rotator.timer")
    assert (
        ["oneshot"],
        [f"{INSTALLED_BINARY} run --once --config /etc/monite-secret-rotator/rotator.toml"],
    ) == (
        once["Service.Type"],
        once["Service.ExecStart"],
    )
    assert {
        "Timer.OnCalendar": ["*:0/15"],
        "Timer.Persistent": ["true"],
        "Timer.Unit": ["monite-secret-rotator-once.service"],
    } == {key: timer[key] for key in ("Timer.OnCalendar", "Timer.Persistent", "Timer.Unit")}
    assert "Timer.RandomizedDelaySec" in timer
    assert (SYSTEMD / timer["Timer.Unit"][0]).is_file(), timer["Timer.Unit"]


def test_both_services_share_the_same_hardening() -> None:
    """The oneshot unit's hardening block is the daemon's, line for line."""
    assert _hardening(SYSTEMD / UNITS[0]) == _hardening(SYSTEMD / UNITS[1])


def test_systemd_config_loads_from_credentials(tmp_path: Path) -> None:
    """deploy/systemd/rotator.toml loads with secrets from $CREDENTIALS_DIRECTORY only."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    unit = _unit(SYSTEMD / "monite-secret-rotator.service")
    for entry in unit["Service.LoadCredential"]:
        (credentials / entry.split(":", 1)[0]).write_text("dummy-value\n")
    # The shipped client_id is a placeholder that must fail until edited.
    environ = {"CREDENTIALS_DIRECTORY": str(credentials), "ROTATOR_MONITE__CLIENT_ID": CLIENT_ID}
    settings = load_settings(SYSTEMD / "rotator.toml", environ)
    assert ("token", "127.0.0.1:9464", True, True) == (
        settings.vault.auth_method,
        settings.health.listen,
        settings.vault.token is not None,
        bool(settings.monite.client_secret),
    )


# ---------------------------------------------------------------------------
# Container image
# ---------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_and_non_root() -> None:
    """The image builds in one stage and runs a copied venv as uid 10001 in a slim one."""
    builder, runtime = _stages()
    assert (
        "${PYTHON_IMAGE} AS builder",
        "${PYTHON_IMAGE} AS runtime",
    ) == (builder[0][1], runtime[0][1])
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert base is not None
    assert "-slim" in base.group(1)
    run = dict(runtime)
    assert "10001:10001" == run["USER"]
    assert "--from=builder /opt/monite-secret-rotator /opt/monite-secret-rotator" == run["COPY"]
    # The runtime stage only copies; it installs nothing.
    assert [] == [args for word, args in runtime if word == "RUN"]
    assert (str(HEALTH_PORT), "SIGTERM") == (run["EXPOSE"], run["STOPSIGNAL"])
    assert {"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"} <= set(run["ENV"].split())


def test_dockerfile_entrypoint_is_the_console_script() -> None:
    """ENTRYPOINT is the `rotator` console script in exec form; CMD runs the daemon."""
    runtime = dict(_stages()[-1])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert ["rotator"] == json.loads(runtime["ENTRYPOINT"])
    assert "rotator.cli:main" == scripts["rotator"]
    assert ["run", "--config", "/etc/monite-secret-rotator/rotator.toml"] == json.loads(
        runtime["CMD"]
    )


def test_dockerfile_copies_exist_in_the_build_context() -> None:
    """Every COPY source of the builder exists at the repo root and passes .dockerignore."""
    sources = [part for word, args in _stages()[0] if word == "COPY" for part in args.split()[:-1]]
    assert ["pyproject.toml", "README.md", "rotator"] == sources
    assert [] == [s for s in sources if not (ROOT / s).exists()]
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert set(sources) == allowed


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_no_secret_material_in_kubernetes_manifests() -> None:
    """No Kubernetes Secret is created and no env var carries a credential."""
    objects = _base_objects()
    assert [] == [obj for obj in objects if obj["kind"] == "Secret"]
    env_names = {
        item["name"]
        for node in _walk(objects)
        if isinstance(node, dict) and isinstance(node.get("env"), list)
        for item in node["env"]
    }
    assert {"PYTHONUNBUFFERED"} == env_names
