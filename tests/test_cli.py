"""The `rotator` command line as users run it: exit codes, output, and config errors.

Most tests run the command in process (`invoke_rotator`, faithful to a real
process: tests/test_cli_runner.py, which execs its real processes). A real
`python -m rotator` (`run_rotator`) stays where the process is the point (what
it imports: exec'd) and for one test of each command, so the console entry
point itself stays covered: check, plan, run --once, rotate, and a usage and a
config error.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rotator import errors
from rotator.cli import build_parser
from rotator.cli.plan import display_url
from rotator.exitcodes import ExitCode, dependency_exit_code
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from tests.daemon_harness import invoke_rotator, run_rotator

PREFIX = "monite/webhooks"


@pytest.fixture
def config_file(
    tmp_path: Path,
    monite: MoniteEmulator,
    monite_credentials: tuple[str, str],
    vault: VaultEmulator,
    vault_token: str,
) -> Path:
    """A config file for the emulators; the secrets sit in files beside it."""
    client_id, client_secret = monite_credentials
    secret_file = tmp_path / "client_secret"
    secret_file.write_text(client_secret + "\n")
    token_file = tmp_path / "vault_token"
    token_file.write_text(vault_token)
    # Private, as the README asks: a group/world-readable one adds a warning line.
    secret_file.chmod(0o600)
    token_file.chmod(0o600)
    path = tmp_path / "rotator.toml"
    path.write_text(
        f"""
[monite]
base_url = "{monite.base_url}"
client_id = "{client_id}"
client_secret_file = "{secret_file}"
timeout = "2s"

[vault]
address = "{vault.address}"
token_file = "{token_file}"
mount = "secret"
path_prefix = "{PREFIX}"

[policy]
max_age = "30d"

[rotation]
claim_ttl = "30s"
"""
    )
    return path


def vault_secret(vault: VaultEmulator, subscription_id: str) -> str | None:
    found = vault.kv_read("secret", f"{PREFIX}/{subscription_id}")
    return None if found is None else found[0].get("secret")


def test_run_once_rotates_and_logs_json(
    config_file: Path, monite: MoniteEmulator, vault: VaultEmulator
) -> None:
    """`rotator run --once` rotates unmanaged subscriptions, exits 0, audit log is JSON lines."""
    ids = [monite.seed() for _ in range(3)]
    result = run_rotator("run", "--once", "--config", str(config_file))
    assert 0 == result.returncode, result.stderr
    for sid in ids:
        assert monite.current_secret(sid) == vault_secret(vault, sid)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    names = [line["event"] for line in lines]
    assert 3 == names.count("rotation.succeeded")
    assert "cycle.finished" == names[-1]
    for line in lines:
        assert {"timestamp", "level", "event", "run_id"} <= set(line)


def test_rotate_force_single_id(
    config_file: Path, monite: MoniteEmulator, vault: VaultEmulator
) -> None:
    """`rotator rotate --force --id ID` rotates that id again though it is fresh."""
    target, other = monite.seed(), monite.seed()
    assert 0 == invoke_rotator("run", "--once", "--config", str(config_file)).returncode
    result = invoke_rotator("rotate", "--force", "--id", target, "--config", str(config_file))
    assert 0 == result.returncode, result.stderr
    assert 2 == monite.regenerate_count(target)
    assert 1 == monite.regenerate_count(other)
    assert monite.current_secret(target) == vault_secret(vault, target)


def test_rotate_force_all(config_file: Path, monite: MoniteEmulator, vault: VaultEmulator) -> None:
    """`rotator rotate --force --all` rotates every subscription."""
    ids = [monite.seed() for _ in range(3)]
    result = run_rotator("rotate", "--force", "--all", "--config", str(config_file))
    assert 0 == result.returncode, result.stderr
    assert [1, 1, 1] == [monite.regenerate_count(sid) for sid in ids]


def test_rotate_unknown_id_fails(config_file: Path, monite: MoniteEmulator) -> None:
    """Forcing an id Monite does not list exits 1 and says which id."""
    monite.seed()
    missing = "00000000-0000-4000-8000-000000000000"
    result = invoke_rotator("rotate", "--force", "--id", missing, "--config", str(config_file))
    assert 1 == result.returncode
    assert f"subscription {missing} is not listed by Monite" in result.stderr


def test_plan_json_changes_nothing(
    config_file: Path, monite: MoniteEmulator, vault: VaultEmulator
) -> None:
    """`rotator plan --json` says what would rotate and why, and writes nothing."""
    sid = monite.seed(object_type="payable")
    result = invoke_rotator("plan", "--json", "--config", str(config_file))
    assert 0 == result.returncode, result.stderr
    plan = json.loads(result.stdout)
    assert [(sid, "rotate", "unmanaged")] == [
        (d["subscription_id"], d["action"], d["reason"]) for d in plan["decisions"]
    ]
    assert 0 == monite.regenerate_count(sid)
    assert vault.kv_read("secret", f"{PREFIX}/{sid}") is None


def test_plan_json_shows_a_settling_record_and_why_it_waits(
    config_file: Path, monite: MoniteEmulator, vault: VaultEmulator
) -> None:
    """`plan --json` names the record's protocol state and the settling reason."""
    sid = monite.seed()
    vault.kv_write(
        "secret",
        f"{PREFIX}/{sid}",
        {
            "secret": monite.current_secret(sid),
            "state": "settling",
            "claim_ttl_seconds": 600,
            "rotated_at": "2026-01-01T00:00:00Z",
        },
    )
    result = invoke_rotator("plan", "--json", "--config", str(config_file))
    assert 0 == result.returncode, result.stderr
    [row] = json.loads(result.stdout)["decisions"]
    assert ("skip", "settling", "settling") == (row["action"], row["reason"], row["record_state"])


def test_plan_table_for_humans(config_file: Path, monite: MoniteEmulator) -> None:
    """`rotator plan` prints a table with the reason in words."""
    monite.seed()
    result = run_rotator("plan", "--config", str(config_file))
    assert 0 == result.returncode, result.stderr
    assert "1 of 1 subscriptions would be rotated now." in result.stdout


def test_plan_survives_a_subscription_url_with_an_invalid_port(
    config_file: Path, monite: MoniteEmulator
) -> None:
    """A listed URL with port 99999 is shown as listed (query hidden); plan does not crash."""
    sid = monite.seed(url="https://hooks.example:99999/monite?token=abc")
    table = invoke_rotator("plan", "--config", str(config_file))
    result = invoke_rotator("plan", "--json", "--config", str(config_file))
    [row] = json.loads(result.stdout)["decisions"] if result.returncode == 0 else [{}]
    assert (0, 0, sid, "https://hooks.example:99999/monite?…", False) == (
        table.returncode,
        result.returncode,
        row.get("subscription_id"),
        row.get("url"),
        "Traceback" in table.stderr + result.stderr,
    ), table.stderr + result.stderr


def test_check_warns_about_a_world_readable_secret_file(
    config_file: Path, tmp_path: Path, monite_credentials: tuple[str, str]
) -> None:
    """A 0644 client secret file: one config.secret_file_exposed warning naming it; check passes."""
    secret_file = tmp_path / "client_secret"
    secret_file.chmod(0o644)
    result = invoke_rotator("check", "--config", str(config_file))
    warnings = [
        json.loads(line)
        for line in result.stderr.splitlines()
        if "config.secret_file_exposed" in line
    ]
    assert (
        0,
        [("warning", "monite.client_secret_file", str(secret_file), "0644")],
        False,
    ) == (
        result.returncode,
        [(w["level"], w["setting"], w["file"], w["mode"]) for w in warnings],
        monite_credentials[1] in result.stderr + result.stdout,
    ), result.stderr


def test_check_passes(config_file: Path) -> None:
    """`rotator check` exits 0 when config, Monite and Vault are all good."""
    result = run_rotator("check", "--config", str(config_file))
    assert 0 == result.returncode, result.stderr
    assert result.stdout.startswith("ok:")


def test_check_vault_sealed_exits_69(config_file: Path, vault: VaultEmulator) -> None:
    """`rotator check` exits 69 with one line when Vault is sealed."""
    vault.seal()
    result = invoke_rotator("check", "--config", str(config_file))
    assert 69 == result.returncode
    assert 1 == len(result.stderr.strip().splitlines())
    assert "sealed" in result.stderr


def test_run_once_monite_down_exits_69(config_file: Path, monite: MoniteEmulator) -> None:
    """A Monite that keeps failing makes `run --once` exit 69 without a traceback."""
    monite.faults.error_rate = 1.0
    # One retry still takes the retry path; the default five would only wait longer.
    env = {"ROTATOR_MONITE__MAX_RETRIES": "1"}
    result = invoke_rotator("run", "--once", "--config", str(config_file), env=env)
    assert 69 == result.returncode
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("command", "refusal"),
    [
        ("check", "vault token revoked"),
        ("run", "vault token revoked"),
        ("run", "vault policy denies the path"),
        ("run", "monite client secret wrong"),
        ("check", "monite client secret wrong"),
        ("run", "approle login refused"),
    ],
)
def test_refused_credentials_exit_77(
    config_file: Path,
    tmp_path: Path,
    vault: VaultEmulator,
    vault_token: str,
    monite: MoniteEmulator,
    command: str,
    refusal: str,
) -> None:
    """Credentials Monite or Vault refuse exit 77 (not 69 "unreachable"), no traceback."""
    monite.seed()
    env: dict[str, str] = {}
    if refusal == "vault token revoked":
        vault.revoke_token(vault_token)
    elif refusal == "vault policy denies the path":
        (tmp_path / "vault_token").write_text(vault.create_token(policies=["default"]))
    elif refusal == "monite client secret wrong":
        (tmp_path / "client_secret").write_text("not-the-client-secret\n")
    else:
        config_file.write_text(config_file.read_text().replace("token_file", "# token_file"))
        role_id, _secret_id = vault.add_approle("rotator", policies=["rotator"])
        env = {
            "ROTATOR_VAULT__AUTH_METHOD": "approle",
            "ROTATOR_VAULT__ROLE_ID": role_id,
            "ROTATOR_VAULT__SECRET_ID": "00000000-0000-4000-8000-000000000000",
        }
    argv = ["run", "--once"] if command == "run" else ["check"]
    result = invoke_rotator(*argv, "--config", str(config_file), env=env)
    lines = result.stderr.strip().splitlines()
    assert (77, True, False) == (
        result.returncode,
        lines[-1].startswith("rotator: "),
        "Traceback" in result.stderr,
    ), result.stderr


@pytest.mark.emulator_only("Kubernetes login needs a TokenReview API (add_kubernetes_role)")
def test_refused_kubernetes_login_exits_77(
    config_file: Path, tmp_path: Path, vault: VaultEmulator, monite: MoniteEmulator
) -> None:
    """A service account token the Kubernetes role refuses exits 77, no traceback."""
    monite.seed()
    config_file.write_text(config_file.read_text().replace("token_file", "# token_file"))
    vault.add_kubernetes_role(
        "rotator", service_account="rotator", namespace="ops", policies=["rotator"]
    )
    jwt_file = tmp_path / "jwt"
    jwt_file.write_text("not.a-valid.jwt")
    env = {
        "ROTATOR_VAULT__AUTH_METHOD": "kubernetes",
        "ROTATOR_VAULT__ROLE": "rotator",
        "ROTATOR_VAULT__JWT_FILE": str(jwt_file),
    }
    result = invoke_rotator("run", "--once", "--config", str(config_file), env=env)
    lines = result.stderr.strip().splitlines()
    assert (77, True, False) == (
        result.returncode,
        lines[-1].startswith("rotator: "),
        "Traceback" in result.stderr,
    ), result.stderr


def test_demo_duration_must_be_1_to_3600_as_its_message_says() -> None:
    """`demo --duration` 0.5 (or 0, 3600.5, nan, inf) exits 2 with one line; 1 and 3600 parse."""
    bad = ["0.5", "0", "3600.5", "nan", "inf"]
    results = []
    for duration in bad:
        result = invoke_rotator("demo", "--duration", duration)
        results.append((result.returncode, result.stderr.strip().splitlines()))
    parser = build_parser()
    bounds = [parser.parse_args(["demo", "--duration", d]).duration for d in ("1", "3600")]
    expected = [
        (
            2,
            [
                f"rotator demo: argument --duration: {d!r} is not a number of seconds "
                "between 1 and 3600 (see rotator demo --help)"
            ],
        )
        for d in bad
    ]
    assert (expected, [1.0, 3600.0]) == (results, bounds)


def test_usage_errors_exit_2() -> None:
    """Usage mistakes exit 2 with a one-line message and no traceback."""
    for argv in (
        ["rotate", "--all"],
        ["rotate", "--force"],
        ["rotate", "--force", "--id", "nope"],
        [],
    ):
        result = invoke_rotator(*argv)
        assert 2 == result.returncode, argv
        assert "Traceback" not in result.stderr
        assert 1 == len(result.stderr.strip().splitlines()), result.stderr


CID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
# MONITE_URL and VAULT_ADDR are replaced by the live emulators' addresses, so a
# config that wrongly passed validation would be seen reaching them.
MONITE = f'[monite]\nbase_url = "MONITE_URL"\nclient_id = "{CID}"\nclient_secret = "x"\n'
VAULT = '[vault]\naddress = "VAULT_ADDR"\ntoken = "t"\n'
GOOD = MONITE + VAULT

# (case, config text, a phrase the one-line message must contain)
BAD_CONFIGS: list[tuple[str, str, str]] = [
    (
        "missing client_id",
        '[monite]\nbase_url = "MONITE_URL"\nclient_secret = "x"\n' + VAULT,
        "client_id",
    ),
    ("client_id not a uuid", GOOD.replace(CID, "abc"), "client_id"),
    ("typo in key", GOOD.replace("client_secret", "client_secert"), "client_secret"),
    ("unknown table", GOOD + '[polcy]\nmax_age = "1d"\n', "polcy"),
    ("bad duration", GOOD + '[policy]\nmax_age = "30 days"\n', "max_age"),
    ("integer duration", GOOD + "[policy]\nmax_age = 30\n", "max_age"),
    ("bad unmanaged", GOOD + '[policy]\nunmanaged = "maybe"\n', "unmanaged"),
    ("bad toml", '[monite\nclient_id = "x"\n', "TOML"),
    (
        "interval and cron",
        GOOD + '[schedule]\ninterval = "15m"\ncron = "*/5 * * * *"\n',
        "cron",
    ),
    ("bad cron", GOOD + '[schedule]\ncron = "every day"\n', "cron"),
    (
        "claim_ttl too short",
        MONITE + 'timeout = "10s"\n' + VAULT + '[rotation]\nclaim_ttl = "15s"\n',
        "claim_ttl",
    ),
    ("concurrency zero", GOOD + "[rotation]\nconcurrency = 0\n", "concurrency"),
    ("vault address not a url", GOOD.replace("VAULT_ADDR", "vault:8200"), "address"),
    ("missing vault token", MONITE + '[vault]\naddress = "VAULT_ADDR"\n', "token"),
    (
        "secret file missing",
        GOOD.replace('client_secret = "x"', 'client_secret_file = "/nonexistent/secret"'),
        "/nonexistent/secret",
    ),
    ("rule without matcher", GOOD + '[[policy.rules]]\nmax_age = "1d"\n', "rules"),
    ("nested toml", GOOD + "[deep]\nx = " + "[" * 5000 + "]" * 5000 + "\n", "too deeply"),
    (
        "unknown object type",
        GOOD + '[[policy.rules]]\nobject_type = "payabel"\nmax_age = "1d"\n',
        "payable",
    ),
]


@pytest.mark.emulator_only("asserts no request reached Vault (request_count)")
@pytest.mark.parametrize(("case", "text", "phrase"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_exits_78_with_one_line(
    case: str,
    text: str,
    phrase: str,
    tmp_path: Path,
    monite: MoniteEmulator,
    vault: VaultEmulator,
) -> None:
    """Each bad config gives exit 78, one line naming the problem, and no request to anything."""
    path = tmp_path / "bad.toml"
    path.write_text(
        text.replace("MONITE_URL", monite.base_url).replace("VAULT_ADDR", vault.address)
    )
    # HOME: no ~/.vault-token of the machine's user may stand in for the missing token.
    result = invoke_rotator("run", "--once", "--config", str(path), env={"HOME": str(tmp_path)})
    code, err = result.returncode, result.stderr
    assert 78 == code
    lines = err.strip().splitlines()
    assert 1 == len(lines), err
    assert lines[0].startswith("rotator: config error: ")
    assert phrase in lines[0]
    assert 0 == monite.request_count()
    assert 0 == vault.request_count()


def test_missing_config_file_exits_78(tmp_path: Path) -> None:
    """A --config path that does not exist says so and how to fix it, exit 78."""
    result = invoke_rotator("check", "--config", str(tmp_path / "nope.toml"))
    code, err = result.returncode, result.stderr
    assert 78 == code
    assert "does not exist" in err


def test_bad_env_value_exits_78(config_file: Path) -> None:
    """A bad environment override is a config error too, naming the variable's key."""
    result = invoke_rotator(
        "run", "--once", "--config", str(config_file), env={"ROTATOR_ROTATION__CONCURRENCY": "lots"}
    )
    code, err = result.returncode, result.stderr
    assert 78 == code
    assert "concurrency" in err


def test_help_lists_commands_and_exit_codes() -> None:
    """`rotator --help` names every command and the exit codes."""
    result = invoke_rotator("--help")
    assert 0 == result.returncode
    for word in ("run", "rotate", "plan", "check", "demo", "78"):
        assert word in result.stdout


def test_help_says_refused_credentials_exit_77() -> None:
    """`rotator --help` tells 69 (unreachable) from 77 (credentials refused)."""
    result = invoke_rotator("--help")
    text = " ".join(result.stdout.split())
    assert (True, True) == (
        "69 Monite or Vault unreachable" in text,
        "77 Monite or Vault refused our credentials" in text,
    )


def test_rotate_force_of_a_claimed_id_fails_and_says_why(
    config_file: Path, monite: MoniteEmulator, vault: VaultEmulator
) -> None:
    """Forcing an id another rotator holds a live claim on exits 1 and names it."""
    sid = monite.seed()
    vault.kv_write(
        "secret",
        f"{PREFIX}/{sid}",
        {
            "secret": monite.current_secret(sid),
            "state": "rotating",
            "claimed_by": "other-host:7",
            "claim_expires_at": "2999-01-01T00:00:00Z",
            "rotated_at": "2026-01-01T00:00:00Z",
        },
    )
    result = invoke_rotator("rotate", "--force", "--id", sid, "--config", str(config_file))
    assert 1 == result.returncode
    assert f"subscription {sid} was not rotated: another rotation holds a live claim" in (
        result.stderr
    )
    assert 0 == monite.regenerate_count(sid)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (errors.VaultConfigError("no such mount"), 78),
        (errors.VaultAuthError("permission denied"), 77),
        (errors.MoniteAuthError("invalid client"), 77),
        (errors.VaultUnavailable("sealed"), 69),
        (errors.MoniteUnavailable("503"), 69),
    ],
)
def test_dependency_errors_map_to_one_exit_code_table(
    error: errors.DependencyError, expected: int
) -> None:
    """A dependency error exits 78 (a setting Vault shows wrong), 77 (refused) or 69."""
    assert expected == dependency_exit_code(error)


def test_exit_codes_are_the_documented_ones() -> None:
    """ExitCode holds exactly the codes DESIGN.md and `rotator --help` document."""
    assert [0, 1, 2, 69, 70, 77, 78, 130] == [int(code) for code in ExitCode]


# What only a valid config needs: the HTTP and Vault clients, the engine, logging.
CLIENT_MODULES = (
    "httpx",
    "hvac",
    "requests",
    "structlog",
    "rotator.app",
    "rotator.audit",
    "rotator.engine",
    "rotator.monite",
    "rotator.vault",
)
# What only parsed arguments need: the config loader and pydantic.
CONFIG_MODULES = ("pydantic", "rotator.config")


def imported(result: subprocess.CompletedProcess[str]) -> set[str]:
    """The modules a process run with PYTHONPROFILEIMPORTTIME=1 imported (from its stderr)."""
    return {
        line.rpartition("|")[2].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }


def said(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The process's stderr lines, without the import profile."""
    return [line for line in result.stderr.splitlines() if not line.startswith("import time:")]


@pytest.mark.parametrize(
    ("argv", "code", "stderr", "unloaded"),
    [
        (["--version"], 0, [], CLIENT_MODULES + CONFIG_MODULES),
        (["rotate", "--all"], 2, ["rotator rotate: "], CLIENT_MODULES + CONFIG_MODULES),
        (
            ["check", "--config", "CONFIG"],
            78,
            ["rotator: config error: rotation.claim_ttl: must be at least 4 × monite.timeout"],
            CLIENT_MODULES,
        ),
    ],
    ids=["version", "usage error", "config error"],
)
def test_usage_and_config_errors_load_no_client_library(
    tmp_path: Path, argv: list[str], code: int, stderr: list[str], unloaded: tuple[str, ...]
) -> None:
    """`--version`, a usage error and a config error (78) import no httpx, hvac or engine."""
    # The config breaks only a check of the whole tree (claim_ttl against
    # monite.timeout), so every group has been validated by then.
    config = tmp_path / "rotator.toml"
    addresses = {"MONITE_URL": "https://monite.invalid", "VAULT_ADDR": "https://vault.invalid"}
    text = GOOD + '[rotation]\nclaim_ttl = "15s"\n'
    for placeholder, address in addresses.items():
        text = text.replace(placeholder, address)
    config.write_text(text)
    argv = [str(config) if arg == "CONFIG" else arg for arg in argv]
    result = run_rotator(*argv, env={"PYTHONPROFILEIMPORTTIME": "1", "HOME": str(tmp_path)})
    modules, lines = imported(result), said(result)
    assert (code, stderr, True, []) == (
        result.returncode,
        [line[: len(start)] for line, start in zip(lines, stderr, strict=False)]
        + lines[len(stderr) :],
        "rotator.cli" in modules,
        sorted(
            m for m in modules if m in unloaded or m.startswith(tuple(f"{u}." for u in unloaded))
        ),
    ), "\n".join(said(result))


def test_plan_shows_webhook_urls_without_credentials() -> None:
    """User info and query strings (often tokens) are not printed by `rotator plan`."""
    assert "https://hooks.example.com:8443/in?…" == display_url(
        "https://user:pass@hooks.example.com:8443/in?token=abc"
    )
    assert "https://hooks.example.com/in" == display_url("https://hooks.example.com/in")
