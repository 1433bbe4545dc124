"""Configuration loading: sources and their precedence, secret files, validation messages."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from rotator.config import (
    DEFAULT_POLICY,
    GROUPS,
    HOOK_KEYS,
    LogSettings,
    MoniteSettings,
    RotationSettings,
    ScheduleSettings,
    Settings,
    VaultSettings,
    group_keys,
    load_settings,
)
from rotator.errors import ConfigError
from rotator.policy import Policy, Rule
from rotator.secret import Secret

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
CLIENT_SECRET = "monite-client-secret-Zq81"
VAULT_TOKEN = "hvs.vault-token-Xk42"
ROLE_ID = "role-id-8d1c4e2a"
SECRET_ID = "secret-id-5f9b7c3d"
SECRETS = (CLIENT_SECRET, VAULT_TOKEN, ROLE_ID, SECRET_ID)

# Secrets only: what every file-based test needs from the environment.
SECRET_ENV = {"ROTATOR_MONITE__CLIENT_SECRET": CLIENT_SECRET, "VAULT_TOKEN": VAULT_TOKEN}
# Everything required, from the environment alone.
FULL_ENV = {
    **SECRET_ENV,
    "ROTATOR_MONITE__CLIENT_ID": CLIENT_ID,
    "VAULT_ADDR": "https://vault.test:8200",
}
MINIMAL = f"""
[monite]
client_id = "{CLIENT_ID}"
[vault]
address = "https://vault.test:8200"
"""


def write(directory: Path, text: str, name: str = "rotator.toml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------
# Loading what is right
# ---------------------------------------------------------------------------


def test_defaults_apply_when_only_required_keys_are_set() -> None:
    """With only the required values in the environment, every other key takes its default."""
    settings = load_settings(None, FULL_ENV)

    assert "https://api.sandbox.monite.com/v1" == settings.monite.base_url
    assert "2024-05-25" == settings.monite.api_version
    assert CLIENT_ID == settings.monite.client_id
    assert Secret(CLIENT_SECRET) == settings.monite.client_secret
    assert timedelta(seconds=10) == settings.monite.timeout
    assert (4, 100, 1000) == (
        settings.monite.max_retries,
        settings.monite.page_size,
        settings.monite.max_pages,
    )
    assert "https://vault.test:8200" == settings.vault.address
    assert Secret(VAULT_TOKEN) == settings.vault.token
    assert ("token", None, None) == (
        settings.vault.auth_method,
        settings.vault.namespace,
        settings.vault.ca_cert,
    )
    assert ("secret", "monite/webhooks") == (settings.vault.mount, settings.vault.path_prefix)
    assert DEFAULT_POLICY == settings.policy
    assert Policy(max_age=timedelta(days=30)) == settings.policy
    assert ScheduleSettings() == settings.schedule
    assert timedelta(minutes=15) == settings.schedule.interval
    assert RotationSettings() == settings.rotation
    assert LogSettings(format="json", level="info") == settings.log


def test_example_file_loads_and_documents_every_key() -> None:
    """config/example.toml loads given its secrets, and every settings key appears in it."""
    path = ROOT / "config" / "example.toml"
    settings = load_settings(path, SECRET_ENV)

    assert timedelta(days=30) == settings.policy.max_age
    assert (
        Rule(object_type="payable", max_age=timedelta(days=7)),
        Rule(url="https://staging.example.com/*", skip=True),
    ) == settings.policy.rules
    text = path.read_text(encoding="utf-8").replace("[[policy.rules]]", "rules =")
    missing = [
        f"{group}.{key}" for group in GROUPS for key in group_keys(group) if f"{key} =" not in text
    ]
    hooks = text[text.index("[[hooks]]") :]
    missing += [f"hooks.{key}" for key in HOOK_KEYS if f"{key} =" not in hooks]
    assert [] == missing


def test_minimal_file_loads() -> None:
    """config/minimal.toml loads given its secrets."""
    settings = load_settings(ROOT / "config" / "minimal.toml", SECRET_ENV)

    assert "https://vault.example:8200" == settings.vault.address


def test_environment_overrides_file(tmp_path: Path) -> None:
    """ROTATOR_<GROUP>__<KEY> beats the file, whatever the case of its name."""
    path = write(tmp_path, MINIMAL + '[rotation]\nconcurrency = 4\n[policy]\nmax_age = "30d"\n')
    env = {
        **SECRET_ENV,
        "ROTATOR_ROTATION__CONCURRENCY": "16",
        "rotator_policy__max_age": "12h",
        "ROTATOR_LOG__LEVEL": "DEBUG",
    }

    settings = load_settings(path, env)

    assert 16 == settings.rotation.concurrency
    assert timedelta(hours=12) == settings.policy.max_age
    assert "debug" == settings.log.level


def test_vault_variables_beat_file_and_lose_to_rotator_variables(tmp_path: Path) -> None:
    """VAULT_* beat the file; ROTATOR_VAULT__* beat VAULT_*."""
    path = write(tmp_path, MINIMAL)
    env = {**SECRET_ENV, "VAULT_ADDR": "http://127.0.0.1:8200/"}

    assert "http://127.0.0.1:8200" == load_settings(path, env).vault.address
    env["ROTATOR_VAULT__ADDRESS"] = "https://vault.override:8200"
    assert "https://vault.override:8200" == load_settings(path, env).vault.address


def test_vault_variables_set_every_vault_key(tmp_path: Path) -> None:
    """VAULT_ADDR, VAULT_TOKEN, VAULT_NAMESPACE and VAULT_CACERT map to [vault]."""
    ca = write(tmp_path, "-----BEGIN CERTIFICATE-----\n", "ca.pem")
    env = {
        "ROTATOR_MONITE__CLIENT_ID": CLIENT_ID,
        "ROTATOR_MONITE__CLIENT_SECRET": CLIENT_SECRET,
        "VAULT_ADDR": "https://vault.test:8200",
        "VAULT_TOKEN": VAULT_TOKEN,
        "VAULT_NAMESPACE": "admin/payments",
        "VAULT_CACERT": str(ca),
    }

    vault = load_settings(None, env).vault

    assert ("https://vault.test:8200", Secret(VAULT_TOKEN), "admin/payments", ca) == (
        vault.address,
        vault.token,
        vault.namespace,
        vault.ca_cert,
    )


def test_config_path_comes_from_rotator_config_unless_given(tmp_path: Path) -> None:
    """The path argument wins over $ROTATOR_CONFIG, which wins over no file."""
    from_env = write(tmp_path, MINIMAL + "[rotation]\nconcurrency = 3\n", "env.toml")
    from_arg = write(tmp_path, MINIMAL + "[rotation]\nconcurrency = 5\n", "arg.toml")
    env = {**SECRET_ENV, "ROTATOR_CONFIG": str(from_env)}

    assert 3 == load_settings(None, env).rotation.concurrency
    assert 5 == load_settings(from_arg, env).rotation.concurrency


def test_load_settings_ignores_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the mapping passed in counts: os.environ is never read."""
    monkeypatch.setenv("ROTATOR_ROTATION__CONCURRENCY", "99")
    monkeypatch.setenv("ROTATOR_MONITE__CLIENT_SECERT", "typo")

    assert 8 == load_settings(None, FULL_ENV).rotation.concurrency


def test_secret_files_are_read_with_one_newline_stripped(tmp_path: Path) -> None:
    """*_file keys are read, relative to the config file, with one trailing newline dropped."""
    write(tmp_path, CLIENT_SECRET + "\n", "client-secret")
    write(tmp_path, CLIENT_ID + "\r\n", "client-id")
    write(tmp_path, VAULT_TOKEN, "token")
    path = write(
        tmp_path,
        '[monite]\nclient_id_file = "client-id"\nclient_secret_file = "client-secret"\n'
        f'[vault]\naddress = "https://vault.test:8200"\ntoken_file = "{tmp_path / "token"}"\n',
    )

    settings = load_settings(path, {})

    assert CLIENT_ID == settings.monite.client_id
    assert Secret(CLIENT_SECRET) == settings.monite.client_secret
    assert Secret(VAULT_TOKEN) == settings.vault.token


def test_higher_source_replaces_the_file_form_of_a_secret(tmp_path: Path) -> None:
    """VAULT_TOKEN replaces a token_file from the file: the missing file is never read."""
    path = write(tmp_path, MINIMAL.replace("[vault]", '[vault]\ntoken_file = "absent"'))

    assert Secret(VAULT_TOKEN) == load_settings(path, SECRET_ENV).vault.token


def test_systemd_credentials_fill_missing_secrets(tmp_path: Path) -> None:
    """$CREDENTIALS_DIRECTORY/monite_client_secret and vault_token are used when nothing else is."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    write(credentials, CLIENT_SECRET + "\n", "monite_client_secret")
    write(credentials, VAULT_TOKEN + "\n", "vault_token")
    path = write(tmp_path, MINIMAL)

    settings = load_settings(path, {"CREDENTIALS_DIRECTORY": str(credentials)})

    assert Secret(CLIENT_SECRET) == settings.monite.client_secret
    assert Secret(VAULT_TOKEN) == settings.vault.token


def test_explicit_secret_beats_systemd_credential(tmp_path: Path) -> None:
    """A secret set explicitly wins over the systemd credential of the same name."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    write(credentials, "from-credential", "monite_client_secret")
    env = {**FULL_ENV, "CREDENTIALS_DIRECTORY": str(credentials)}

    assert Secret(CLIENT_SECRET) == load_settings(None, env).monite.client_secret


def test_vault_token_falls_back_to_home_vault_token(tmp_path: Path) -> None:
    """With no token anywhere else, $HOME/.vault-token is used when it exists."""
    write(tmp_path, VAULT_TOKEN + "\n", ".vault-token")
    env = {k: v for k, v in FULL_ENV.items() if k != "VAULT_TOKEN"}

    assert Secret(VAULT_TOKEN) == load_settings(None, {**env, "HOME": str(tmp_path)}).vault.token


def test_approle_credentials_from_files_and_systemd(tmp_path: Path) -> None:
    """AppRole takes role_id from its file and secret_id from $CREDENTIALS_DIRECTORY."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    write(credentials, SECRET_ID + "\n", "vault_secret_id")
    write(credentials, VAULT_TOKEN + "\n", "vault_token")  # not used by approle: ignored
    write(tmp_path, ROLE_ID + "\n", "role-id")
    path = write(tmp_path, _with("vault", 'auth_method = "approle"\nrole_id_file = "role-id"'))
    env = {**SECRET_ENV, "CREDENTIALS_DIRECTORY": str(credentials)}

    vault = load_settings(path, env).vault

    assert ("approle", "approle", Secret(ROLE_ID), Secret(SECRET_ID), None) == (
        vault.auth_method,
        vault.login_mount,
        vault.role_id,
        vault.secret_id,
        vault.token,
    )


def test_kubernetes_settings_with_relative_jwt_file_and_mount(tmp_path: Path) -> None:
    """Kubernetes auth takes role, auth_mount and a jwt_file relative to the config file."""
    write(tmp_path, "eyJhbGciOi.x.y\n", "sa-token")
    path = write(
        tmp_path,
        _with(
            "vault",
            'auth_method = "kubernetes"\nrole = "rotator"\nauth_mount = "k8s-prod"\n'
            'jwt_file = "sa-token"',
        ),
    )

    vault = load_settings(path, SECRET_ENV).vault

    assert ("kubernetes", "rotator", "k8s-prod", tmp_path / "sa-token", None) == (
        vault.auth_method,
        vault.role,
        vault.login_mount,
        vault.jwt_file,
        vault.token,
    )


def test_kubernetes_jwt_file_has_the_in_cluster_default() -> None:
    """Without jwt_file, Kubernetes auth reads the service account token Kubernetes mounts."""
    vault = VaultSettings(address="http://127.0.0.1:8200", auth_method="kubernetes", role="r")

    assert Path("/var/run/secrets/kubernetes.io/serviceaccount/token") == vault.jwt_file


def test_vault_client_certificate_from_vault_variables(tmp_path: Path) -> None:
    """VAULT_CLIENT_CERT and VAULT_CLIENT_KEY set vault.client_cert and vault.client_key."""
    cert = write(tmp_path, "-----BEGIN CERTIFICATE-----\n", "cert.pem")
    key = write(tmp_path, "-----BEGIN PRIVATE KEY-----\n", "key.pem")
    env = {**FULL_ENV, "VAULT_CLIENT_CERT": str(cert), "VAULT_CLIENT_KEY": str(key)}

    vault = load_settings(None, env).vault

    assert (cert, key) == (vault.client_cert, vault.client_key)


def test_monite_credentials_path_makes_client_credentials_optional(tmp_path: Path) -> None:
    """With credentials_path, a systemd client secret and VAULT_TOKEN (under AppRole) go unused."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    write(credentials, CLIENT_SECRET, "monite_client_secret")
    path = write(
        tmp_path,
        '[monite]\ncredentials_path = "monite/api"\n[vault]\naddress = "https://vault.test:8200"\n'
        f'auth_method = "approle"\nrole_id = "{ROLE_ID}"\nsecret_id = "{SECRET_ID}"\n',
    )
    env = {"VAULT_TOKEN": VAULT_TOKEN, "CREDENTIALS_DIRECTORY": str(credentials)}

    settings = load_settings(path, env)

    assert ("monite/api", "", Secret("")) == (
        settings.monite.credentials_path,
        settings.monite.client_id,
        settings.monite.client_secret,
    )
    assert None is settings.vault.token
    assert None is settings.redacted_dict()["monite"]["client_secret"]


def test_rules_parse_into_policy(tmp_path: Path) -> None:
    """[policy] and [[policy.rules]] become a Policy of Rules, in file order."""
    path = write(
        tmp_path,
        MINIMAL
        + """
[policy]
max_age = "14d"
unmanaged = "skip"
include_disabled = true
[[policy.rules]]
object_type = "payable.line_item"
url = "https://hooks.example.com/*"
max_age = "36h"
[[policy.rules]]
subscription_id = "11111111-2222-3333-4444-555555555555"
skip = true
""",
    )

    policy = load_settings(path, SECRET_ENV).policy

    expected = Policy(
        max_age=timedelta(days=14),
        unmanaged="skip",
        include_disabled=True,
        rules=(
            Rule(
                object_type="payable.line_item",
                url="https://hooks.example.com/*",
                max_age=timedelta(hours=36),
            ),
            Rule(subscription_id="11111111-2222-3333-4444-555555555555", skip=True),
        ),
    )
    assert expected == policy


def test_rules_from_environment_are_one_json_array() -> None:
    """ROTATOR_POLICY__RULES carries the rules as a JSON array."""
    rules = [{"object_type": "receivable", "skip": True}]
    env = {**FULL_ENV, "ROTATOR_POLICY__RULES": json.dumps(rules)}

    assert (Rule(object_type="receivable", skip=True),) == load_settings(None, env).policy.rules


def test_cron_replaces_the_default_interval() -> None:
    """Setting schedule.cron alone clears the default interval."""
    env = {**FULL_ENV, "ROTATOR_SCHEDULE__CRON": "*/5 * * * *"}

    schedule = load_settings(None, env).schedule

    assert (None, "*/5 * * * *") == (schedule.interval, schedule.cron)


def test_environment_cron_replaces_file_interval(tmp_path: Path) -> None:
    """A cron from the environment replaces the file's interval: they are alternatives."""
    path = write(tmp_path, MINIMAL + '[schedule]\ninterval = "1h"\n')
    env = {**SECRET_ENV, "ROTATOR_SCHEDULE__CRON": "0 * * * *"}

    schedule = load_settings(path, env).schedule

    assert (None, "0 * * * *") == (schedule.interval, schedule.cron)


def test_settings_are_frozen() -> None:
    """No group, nor the policy, can be changed after loading."""
    settings = load_settings(None, FULL_ENV)

    with pytest.raises(ValidationError):
        settings.rotation.concurrency = 1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.monite = settings.monite  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.policy.max_age = timedelta(0)  # type: ignore[misc]


def test_repr_and_redacted_dict_show_no_secret() -> None:
    """repr, str and redacted_dict() show "<secret>" instead of any secret."""
    settings = load_settings(None, FULL_ENV)
    views = [repr(settings), str(settings), json.dumps(settings.redacted_dict())]

    assert [] == [secret for view in views for secret in SECRETS if secret in view]
    assert "<secret>" == settings.redacted_dict()["monite"]["client_secret"]
    assert "<secret>" == settings.redacted_dict()["vault"]["token"]
    assert "15m" == settings.redacted_dict()["schedule"]["interval"]


def test_approle_secrets_stay_out_of_repr_and_redacted_dict() -> None:
    """role_id and secret_id are Secrets: repr and redacted_dict() never show them."""
    env = {
        **{k: v for k, v in FULL_ENV.items() if k != "VAULT_TOKEN"},
        "ROTATOR_VAULT__AUTH_METHOD": "approle",
        "ROTATOR_VAULT__ROLE_ID": ROLE_ID,
        "ROTATOR_VAULT__SECRET_ID": SECRET_ID,
    }
    settings = load_settings(None, env)
    views = [repr(settings), str(settings), json.dumps(settings.redacted_dict())]

    assert [] == [secret for view in views for secret in SECRETS if secret in view]
    assert ("<secret>", "<secret>") == (
        settings.redacted_dict()["vault"]["role_id"],
        settings.redacted_dict()["vault"]["secret_id"],
    )


def test_groups_are_constructible_from_typed_values() -> None:
    """Other modules and tests build groups directly, with readable ids and no token."""
    monite = MoniteSettings(
        base_url="http://127.0.0.1:9000/v1/",
        client_id="client-1",
        client_secret=Secret("x"),
        timeout=timedelta(seconds=2),
        max_retries=3,
    )
    vault = VaultSettings(address="http://127.0.0.1:8200")

    assert "http://127.0.0.1:9000/v1" == monite.base_url
    assert None is vault.token
    assert monite == Settings(monite=monite, vault=vault, policy=DEFAULT_POLICY).monite


# ---------------------------------------------------------------------------
# Rejecting what is wrong: one line, naming the key, never a secret
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    id: str
    expected: str  # a phrase the one-line message must contain
    toml: str | None = MINIMAL  # None: no file at all
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # written next to the config file
    base_env: dict[str, str] = field(default_factory=lambda: dict(SECRET_ENV))


def _with(group: str, lines: str) -> str:
    """MINIMAL with extra lines in one of its tables, or a new table."""
    if f"[{group}]" in MINIMAL:
        return MINIMAL.replace(f"[{group}]", f"[{group}]\n{lines}")
    return MINIMAL + f"[{group}]\n{lines}\n"


def _rule(lines: str) -> str:
    return MINIMAL + f"[[policy.rules]]\n{lines}\n"


BAD = [
    Bad(
        "unknown key with suggestion",
        "unknown key 'client_secert' in [monite]; did you mean 'client_secret'?",
        _with("monite", 'client_secert = "x"'),
    ),
    Bad(
        "unknown key without suggestion",
        "unknown key 'colour' in [log]; valid keys: format, level",
        _with("log", 'colour = "red"'),
    ),
    Bad("unknown table", "unknown table [montior]", MINIMAL + "[montior]\nx = 1\n"),
    Bad(
        "unknown table suggestion",
        "did you mean [schedule]?",
        MINIMAL + '[schedul]\ninterval = "1m"\n',
    ),
    Bad(
        "key outside any table",
        "key 'max_age' in",
        'max_age = "30d"\n' + MINIMAL,
    ),
    Bad("not TOML", "is not valid TOML: line 3", MINIMAL.replace("client_id =", "client_id")),
    Bad("group is not a table", "monite in", 'monite = "x"\n[vault]\naddress = "http://v"\n'),
    Bad(
        "duration as integer",
        "policy.max_age: must be a duration string with a unit; write a number and a unit",
        _with("policy", "max_age = 30"),
    ),
    Bad(
        "duration without unit",
        "policy.max_age: is not a duration",
        _with("policy", 'max_age = "30 days"'),
    ),
    Bad(
        "duration zero",
        "monite.timeout: must be greater than zero",
        _with("monite", 'timeout = "0s"'),
    ),
    Bad(
        "base_url scheme",
        "monite.base_url: must be an http(s) URL",
        _with("monite", 'base_url = "ftp://api.monite.com/v1"'),
    ),
    Bad(
        "base_url with credentials",
        "monite.base_url: must not contain credentials",
        _with("monite", f'base_url = "https://user:{CLIENT_SECRET}@api.monite.com/v1"'),
    ),
    Bad(
        "base_url with query",
        "monite.base_url: must be a plain URL without query",
        _with("monite", 'base_url = "https://api.monite.com/v1?x=1"'),
    ),
    Bad(
        "client_id not uuid",
        "monite.client_id: must be a UUID",
        MINIMAL.replace(CLIENT_ID, "my-client"),
    ),
    Bad(
        "client_secret missing",
        "monite.client_secret: required; set monite.client_secret_file",
        base_env={"VAULT_TOKEN": VAULT_TOKEN},
    ),
    Bad(
        "client_secret empty in env",
        "monite.client_secret (from ROTATOR_MONITE__CLIENT_SECRET): must not be empty",
        env={"ROTATOR_MONITE__CLIENT_SECRET": ""},
    ),
    Bad(
        "client_secret not a string",
        "monite.client_secret: must be a string",
        _with("monite", "client_secret = 12345"),
        base_env={"VAULT_TOKEN": VAULT_TOKEN},
    ),
    Bad(
        "api_version format",
        'monite.api_version: must be a date like "2024-05-25"',
        _with("monite", 'api_version = "2024-5-25"'),
    ),
    Bad(
        "max_retries range",
        "monite.max_retries: must be between 0 and 10",
        _with("monite", "max_retries = 11"),
    ),
    Bad(
        "page_size range",
        "monite.page_size: must be between 1 and 100",
        _with("monite", "page_size = 0"),
    ),
    Bad(
        "vault address",
        "vault.address (from VAULT_ADDR): must be an http(s) URL",
        env={"VAULT_ADDR": "vault.test:8200"},
    ),
    Bad(
        "vault token missing",
        "vault.token: required when auth_method is token",
        base_env={"ROTATOR_MONITE__CLIENT_SECRET": CLIENT_SECRET},
    ),
    Bad(
        "vault auth method",
        "vault.auth_method: must be one of 'token', 'approle' or 'kubernetes'",
        _with("vault", 'auth_method = "ldap"'),
    ),
    Bad(
        "approle without role_id",
        "vault.role_id: required when auth_method is approle; set role_id in [vault], "
        "vault.role_id_file",
        _with("vault", 'auth_method = "approle"\nsecret_id_file = "sid"'),
        files={"sid": SECRET_ID},
    ),
    Bad(
        "approle without secret_id",
        "vault.secret_id: required when auth_method is approle; set vault.secret_id_file",
        _with("vault", f'auth_method = "approle"\nrole_id = "{ROLE_ID}"'),
    ),
    Bad(
        "approle secret_id and its file",
        "vault.secret_id and vault.secret_id_file are both set in config file",
        _with(
            "vault",
            f'auth_method = "approle"\nrole_id = "{ROLE_ID}"\nsecret_id = "{SECRET_ID}"\n'
            'secret_id_file = "sid"',
        ),
    ),
    Bad(
        "approle secret_id file missing",
        "vault.secret_id_file (from ROTATOR_VAULT__SECRET_ID_FILE): file /nonexistent/sid "
        "does not exist",
        _with("vault", f'auth_method = "approle"\nrole_id = "{ROLE_ID}"'),
        env={"ROTATOR_VAULT__SECRET_ID_FILE": "/nonexistent/sid"},
    ),
    Bad(
        "approle with a configured token",
        "vault.token (from ROTATOR_VAULT__TOKEN): only used when auth_method is token (it is "
        'approle); remove it, or set vault.auth_method = "token"',
        _with(
            "vault", f'auth_method = "approle"\nrole_id = "{ROLE_ID}"\nsecret_id = "{SECRET_ID}"'
        ),
        env={"ROTATOR_VAULT__TOKEN": VAULT_TOKEN},
    ),
    Bad(
        "role_id with token method",
        "vault.role_id: only used when auth_method is approle (it is token); remove it",
        _with("vault", f'role_id = "{ROLE_ID}"'),
    ),
    Bad(
        "kubernetes without role",
        "vault.role: required when auth_method is kubernetes; set role in [vault]",
        _with("vault", 'auth_method = "kubernetes"\njwt_file = "jwt"'),
        files={"jwt": "eyJ.x.y"},
    ),
    Bad(
        "kubernetes jwt file missing",
        "vault.jwt_file (from ROTATOR_VAULT__JWT_FILE): file /nonexistent/token does not "
        "exist; mount the service account token",
        _with("vault", 'auth_method = "kubernetes"\nrole = "rotator"'),
        env={"ROTATOR_VAULT__JWT_FILE": "/nonexistent/token"},
    ),
    Bad(
        "kubernetes role with approle",
        "vault.role: only used when auth_method is kubernetes (it is approle)",
        _with(
            "vault",
            f'auth_method = "approle"\nrole_id = "{ROLE_ID}"\nsecret_id = "{SECRET_ID}"\n'
            'role = "rotator"',
        ),
    ),
    Bad(
        "auth_mount with token method",
        "vault.auth_mount: only used when auth_method is approle or kubernetes",
        _with("vault", 'auth_mount = "approle-prod"'),
    ),
    Bad(
        "auth_mount with slash",
        'vault.auth_mount: must not start or end with "/"',
        _with("vault", 'auth_method = "approle"\nauth_mount = "auth/approle/"'),
    ),
    Bad(
        "client cert without key",
        "vault.client_key: required with vault.client_cert: TLS client authentication needs "
        "both the certificate and its key; set vault.client_key (or VAULT_CLIENT_KEY)",
        _with("vault", 'client_cert = "cert.pem"'),
        files={"cert.pem": "-----BEGIN CERTIFICATE-----\n"},
    ),
    Bad(
        "client key without cert",
        "vault.client_cert: required with vault.client_key",
        _with("vault", 'client_key = "key.pem"'),
        files={"key.pem": "-----BEGIN PRIVATE KEY-----\n"},
    ),
    Bad(
        "client cert file missing",
        "vault.client_cert (from VAULT_CLIENT_CERT): file /nonexistent/cert.pem does not "
        "exist; give the path of the PEM client certificate",
        _with("vault", 'client_key = "key.pem"'),
        env={"VAULT_CLIENT_CERT": "/nonexistent/cert.pem"},
        files={"key.pem": "-----BEGIN PRIVATE KEY-----\n"},
    ),
    Bad(
        "credentials_path and client_secret",
        "monite.credentials_path (from ROTATOR_MONITE__CREDENTIALS_PATH): set "
        "monite.credentials_path or monite.client_id, not both",
        env={"ROTATOR_MONITE__CREDENTIALS_PATH": "monite/api"},
    ),
    Bad(
        "credentials_path with slash",
        'monite.credentials_path: must not start or end with "/"',
        MINIMAL.replace(f'client_id = "{CLIENT_ID}"', 'credentials_path = "/monite/api"'),
        base_env={"VAULT_TOKEN": VAULT_TOKEN},
    ),
    Bad(
        "client_id missing",
        "monite.client_id: required; set client_id in [monite], monite.client_id_file or "
        "ROTATOR_MONITE__CLIENT_ID (the API client id from the Monite partner portal), or "
        "monite.credentials_path",
        MINIMAL.replace(f'client_id = "{CLIENT_ID}"', ""),
    ),
    Bad(
        "vault mount slash",
        'vault.mount: must not start or end with "/"',
        _with("vault", 'mount = "/secret"'),
    ),
    Bad(
        "vault path_prefix empty",
        "vault.path_prefix: must not be empty",
        _with("vault", 'path_prefix = ""'),
    ),
    Bad(
        "vault ca_cert missing",
        "vault.ca_cert (from VAULT_CACERT): file /nonexistent/ca.pem does not exist",
        env={"VAULT_CACERT": "/nonexistent/ca.pem"},
    ),
    Bad(
        "secret and secret file",
        "monite.client_secret and monite.client_secret_file are both set in config file",
        _with("monite", f'client_secret = "{CLIENT_SECRET}"\nclient_secret_file = "s"'),
        base_env={"VAULT_TOKEN": VAULT_TOKEN},
    ),
    Bad(
        "secret file missing",
        "monite.client_secret_file: file",
        _with("monite", 'client_secret_file = "nope"'),
        base_env={"VAULT_TOKEN": VAULT_TOKEN},
    ),
    Bad(
        "secret file empty",
        "vault.token_file (from ROTATOR_VAULT__TOKEN_FILE): file",
        env={"ROTATOR_VAULT__TOKEN_FILE": "/dev/null"},
    ),
    Bad(
        "secret file with two lines",
        "has more than one line; keep only the value",
        _with("monite", 'client_secret_file = "two-lines"'),
        files={"two-lines": f"{CLIENT_SECRET}\n{CLIENT_SECRET}\n"},
        base_env={"VAULT_TOKEN": VAULT_TOKEN},
    ),
    Bad(
        "policy unmanaged",
        "policy.unmanaged: must be one of 'rotate' or 'skip'",
        _with("policy", 'unmanaged = "ignore"'),
    ),
    Bad(
        "policy include_disabled",
        "policy.include_disabled (from ROTATOR_POLICY__INCLUDE_DISABLED): must be true or false",
        env={"ROTATOR_POLICY__INCLUDE_DISABLED": "perhaps"},
    ),
    Bad(
        "rule without matcher",
        "[[policy.rules]] #1: needs at least one matcher",
        _rule('max_age = "7d"'),
    ),
    Bad(
        "rule with two effects",
        "[[policy.rules]] #1: sets skip = true and also max_age or strategy",
        _rule('object_type = "payable"\nmax_age = "7d"\nskip = true'),
    ),
    Bad(
        "rule without effect",
        "[[policy.rules]] #1: needs an effect: max_age",
        _rule('url = "https://x/*"\nskip = false'),
    ),
    Bad(
        "rule object_type typo",
        "[[policy.rules]] #1 object_type: 'payabel' is not a Monite webhook object type; "
        "did you mean 'payable'?",
        _rule('object_type = "payabel"\nskip = true'),
    ),
    Bad(
        "rule unknown key",
        "unknown key 'object_typ' in [[policy.rules]] #2; did you mean 'object_type'?",
        _rule('url = "*"\nskip = true\n[[policy.rules]]\nobject_typ = "payable"\nskip = true'),
    ),
    Bad(
        "rules env not json",
        "policy.rules (from ROTATOR_POLICY__RULES): must be a JSON array",
        env={"ROTATOR_POLICY__RULES": "object_type=payable"},
    ),
    Bad(
        "interval and cron",
        "schedule.cron and schedule.interval are both set in config file",
        _with("schedule", 'interval = "1m"\ncron = "* * * * *"'),
    ),
    Bad(
        "cron invalid",
        "schedule.cron: is not a valid cron expression (4 fields instead of 5)",
        _with("schedule", 'cron = "*/15 * * *"'),
    ),
    Bad(
        "cron with both day fields",
        "schedule.cron: restricts both day-of-month and day-of-week",
        _with("schedule", 'cron = "0 3 1 * 1"'),
    ),
    Bad(
        "cron bad minute",
        "schedule.cron: is not a valid cron expression",
        _with("schedule", 'cron = "61 * * * *"'),
    ),
    Bad(
        "jitter not a duration",
        "schedule.jitter: is not a duration",
        _with("schedule", 'jitter = "-5s"'),
    ),
    Bad(
        "claim_ttl too short",
        "rotation.claim_ttl: must be at least 4 × monite.timeout (40s), because a rotation "
        "never starts a regenerate unless its claim has 2 × the request timeout left",
        _with("rotation", 'claim_ttl = "30s"'),
    ),
    Bad(
        "overlap shorter than two claims",
        "rotation.overlap: must be at least 2 × rotation.claim_ttl (4m), because a swap's "
        "claim and its create's straggler window must end inside the overlap",
        _with("rotation", 'overlap = "3m"'),
    ),
    Bad(
        "swap overlap beyond max_age",
        'rotation.overlap: must be shorter than policy.max_age (30d) with strategy = "swap"',
        _with("rotation", 'strategy = "swap"\noverlap = "30d"'),
    ),
    Bad(
        "swapping rule max_age within the overlap",
        "[[policy.rules]] #1 max_age: must be longer than rotation.overlap (15m) for "
        "subscriptions that swap",
        _rule('object_type = "payable"\nmax_age = "10m"\nstrategy = "swap"'),
    ),
    Bad(
        "strategy unknown",
        "rotation.strategy: must be one of 'regenerate' or 'swap'",
        _with("rotation", 'strategy = "rolling"'),
    ),
    Bad(
        "rule skip and strategy",
        "[[policy.rules]] #1: sets skip = true and also max_age or strategy",
        _rule('url = "*"\nskip = true\nstrategy = "swap"'),
    ),
    Bad(
        "concurrency range from env",
        "rotation.concurrency (from ROTATOR_ROTATION__CONCURRENCY): must be between 1 and 256",
        env={"ROTATOR_ROTATION__CONCURRENCY": "0"},
    ),
    Bad(
        "concurrency boolean",
        "rotation.concurrency: must be a whole number, not true/false",
        _with("rotation", "concurrency = true"),
    ),
    Bad(
        "concurrency not a number",
        "rotation.concurrency (from ROTATOR_ROTATION__CONCURRENCY): must be a whole number",
        env={"ROTATOR_ROTATION__CONCURRENCY": "eight"},
    ),
    Bad(
        "log format",
        "log.format: must be one of 'json' or 'console'",
        _with("log", 'format = "xml"'),
    ),
    Bad(
        "env key typo",
        "unknown environment variable ROTATOR_MONITE__CLIENT_SECERT: [monite] has no key "
        "'client_secert'; did you mean ROTATOR_MONITE__CLIENT_SECRET?",
        env={"ROTATOR_MONITE__CLIENT_SECERT": CLIENT_SECRET},
    ),
    Bad(
        "env group typo",
        "unknown environment variable ROTATOR_MONTE__CLIENT_ID: no group 'monte'; "
        "did you mean ROTATOR_MONITE__CLIENT_ID?",
        env={"ROTATOR_MONTE__CLIENT_ID": CLIENT_ID},
    ),
    Bad(
        "env without key",
        "environment variable ROTATOR_MONITE is not a setting; write ROTATOR_<GROUP>__<KEY>",
        env={"ROTATOR_MONITE": "{}"},
    ),
    Bad(
        "env set twice in two cases",
        "both set monite.client_secret; keep one",
        env={"rotator_monite__client_secret": CLIENT_SECRET},
    ),
    Bad(
        "config file missing",
        "does not exist; pass --config PATH or set ROTATOR_CONFIG",
        None,
        env={"ROTATOR_CONFIG": "/nonexistent/rotator.toml"},
    ),
    Bad(
        "several problems counted",
        "monite.max_retries: must be between 0 and 10 (and 1 more problem)",
        _with("monite", "max_retries = 11") + "[log]\nlevel = 'loud'\n",
    ),
]


@pytest.mark.parametrize("case", BAD, ids=[case.id for case in BAD])
def test_bad_configuration_is_one_line_naming_the_key(case: Bad, tmp_path: Path) -> None:
    """Each bad configuration raises ConfigError: one line, the expected phrase, no secret."""
    for name, text in case.files.items():
        write(tmp_path, text, name)
    path = None if case.toml is None else write(tmp_path, case.toml)

    with pytest.raises(ConfigError) as caught:
        load_settings(path, {**case.base_env, **case.env})

    message = str(caught.value)
    assert case.expected in message, message
    assert "\n" not in message
    assert [] == [secret for secret in SECRETS if secret in message]
    assert None is caught.value.__cause__


def test_health_endpoint_settings_from_file_and_env(tmp_path: Path) -> None:
    """[health] defaults to 127.0.0.1:9464 and can be moved or turned off."""
    default = load_settings(None, FULL_ENV).health
    assert ("127.0.0.1", 9464, True) == (default.host, default.port, default.enabled)
    path = tmp_path / "c.toml"
    path.write_text(
        '[monite]\nclient_id = "3fa85f64-5717-4562-b3fc-2c963f66afa6"\n'
        'client_secret = "client-secret-1"\n[vault]\naddress = "http://127.0.0.1:8200"\n'
        'token = "vault-token-1"\n[health]\nlisten = "0.0.0.0:9100"\n'
    )
    settings = load_settings(path, {"ROTATOR_HEALTH__ENABLED": "false"})
    assert ("0.0.0.0", 9100, False) == (
        settings.health.host,
        settings.health.port,
        settings.health.enabled,
    )


def test_health_listen_must_be_host_and_port(tmp_path: Path) -> None:
    """A listen address without a port is a one-line config error naming the key."""
    path = tmp_path / "c.toml"
    path.write_text(
        '[monite]\nclient_id = "3fa85f64-5717-4562-b3fc-2c963f66afa6"\n'
        'client_secret = "client-secret-1"\n[vault]\naddress = "http://127.0.0.1:8200"\n'
        'token = "vault-token-1"\n[health]\nlisten = "9464"\n'
    )
    with pytest.raises(ConfigError, match=r"^health\.listen: must be HOST:PORT"):
        load_settings(path, {})
