"""Hostile input to the config loader: one-line errors, fast, bounded reads; exposed secret files.

Every case must end in a ConfigError (the CLI's exit 78) within a second,
whatever the file is: deeply nested, huge, a FIFO nobody writes to, a device
that never ends. Secret files others may read are reported, never refused.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from rotator.config import CONFIG_FILE_LIMIT, SECRET_FILE_LIMIT, ExposedFile, load_settings
from rotator.errors import ConfigError
from rotator.secret import Secret

CLIENT_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
CLIENT_SECRET = "monite-client-secret-Hx41"
VAULT_TOKEN = "hvs.hostile-token-Jp58"
BASE_ENV = {
    "ROTATOR_MONITE__CLIENT_ID": CLIENT_ID,
    "ROTATOR_MONITE__CLIENT_SECRET": CLIENT_SECRET,
    "VAULT_ADDR": "https://vault.test:8200",
    "VAULT_TOKEN": VAULT_TOKEN,
}
GOOD = (
    f'[monite]\nclient_id = "{CLIENT_ID}"\n'
    '[vault]\naddress = "https://vault.test:8200"\n'
    '[policy]\nmax_age = "30d"\n'
)
FILE_ENV = {"ROTATOR_MONITE__CLIENT_SECRET": CLIENT_SECRET, "VAULT_TOKEN": VAULT_TOKEN}


def refused(load: Callable[[], object]) -> str:
    """The ConfigError message `load` raises.

    How fast is not asserted (no timed assertions in tests): tests that could
    hang or crawl carry a pytest timeout instead.
    """
    with pytest.raises(ConfigError) as caught:
        load()
    return str(caught.value)


def config(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "rotator.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# ---------------------------------------------------------------------------
# The config file
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["[" * 5000 + "]" * 5000, "{a = " * 3000 + "1" + "}" * 3000],
    ids=["arrays", "inline-tables"],
)
@pytest.mark.timeout(10)
def test_deeply_nested_toml_is_one_line_error_not_recursion_error(
    tmp_path: Path, value: str
) -> None:
    """Nesting that overflows the TOML parser's recursion is a ConfigError naming the file."""
    path = config(tmp_path, GOOD + f"[deep]\nx = {value}\n")
    # The parse runs the stack to its limit: a garbage collection there would run
    # other tests' finalizers with no stack left, and their RecursionErrors would
    # be reported against this test. Collect first, and not during the parse.
    gc.collect()
    gc.disable()
    try:
        message = refused(lambda: load_settings(path, FILE_ENV))
    finally:
        gc.enable()
    assert (f"config file {path} nests arrays or inline tables too deeply", 1) == (
        message.split(" to read")[0],
        len(message.splitlines()),
    )


@pytest.mark.timeout(10)
def test_config_file_over_the_cap_is_refused_without_reading_it(tmp_path: Path) -> None:
    """A 100 MiB (sparse) config is refused at once by its size, and the message says the cap."""
    path = config(tmp_path, GOOD)
    os.truncate(path, 100 * 1024 * 1024)
    message = refused(lambda: load_settings(path, FILE_ENV))
    assert (True, "256 KiB") == (
        message.startswith(f"config file {path} is larger than 256 KiB;"),
        f"{CONFIG_FILE_LIMIT // 1024} KiB",
    )


def test_config_file_of_the_cap_loads_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    """A config of exactly the cap (padded with a comment) loads; one byte more is refused."""
    text = GOOD + "#"
    text += "x" * (CONFIG_FILE_LIMIT - len(text) - 1) + "\n"
    fits = config(tmp_path, text)
    loaded = load_settings(fits, FILE_ENV).monite.client_id
    over = tmp_path / "over.toml"
    over.write_text(text + "\n")
    message = refused(lambda: load_settings(over, FILE_ENV))
    assert (CONFIG_FILE_LIMIT, CLIENT_ID, f"config file {over} is larger than 256 KiB") == (
        fits.stat().st_size,
        loaded,
        message.split(";")[0],
    )


@pytest.mark.timeout(10)
def test_config_file_that_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    """A FIFO as the config file (nobody writing) is refused within a second, not waited on."""
    path = tmp_path / "rotator.toml"
    os.mkfifo(path)
    message = refused(lambda: load_settings(path, FILE_ENV))
    assert (
        f"config file {path} is a named pipe (FIFO), not a regular file" == (message.split(";")[0])
    )


@pytest.mark.timeout(10)
def test_dotted_key_with_thousands_of_parts_is_refused_before_parsing(tmp_path: Path) -> None:
    """A 20,000-part dotted key (seconds in tomllib) is refused at once; dots in strings are not."""
    path = config(tmp_path, GOOD + "[deep]\nk." + ".".join(["a"] * 20_000) + " = 1\n")
    message = refused(lambda: load_settings(path, FILE_ENV))
    many = "." * 100
    text = GOOD.replace(
        '[policy]\nmax_age = "30d"\n',
        f'[policy]  # {many}\nmax_age = "30d"\n'
        f'[[policy.rules]]\nurl = "https://{many}"\nmax_age = "7d"\n'
        f"[[policy.rules]]\nurl = '''x{many}\n{many}'''\nskip = true\n",
    )
    dotty = tmp_path / "dotty.toml"
    dotty.write_text(text)
    rules = load_settings(dotty, FILE_ENV).policy.rules
    assert (f"config file {path} line 8: more than 16 dots outside strings", 2) == (
        message.split(",")[0],
        len(rules),
    )


@pytest.mark.timeout(10)
def test_unclosed_quotes_in_a_config_of_the_cap_are_scanned_in_linear_time(
    tmp_path: Path,
) -> None:
    """256 KiB of unclosed quotes (minutes for a quadratic scan) is refused at once, one line."""
    for hostile in ('x = "\\"\\"\\"', 'x = """', "x = '''", 'a = "'):
        text = GOOD + (hostile * (CONFIG_FILE_LIMIT // len(hostile)))[: CONFIG_FILE_LIMIT - 200]
        path = config(tmp_path, text)
        message = refused(lambda path=path: load_settings(path, FILE_ENV))
        assert (True, 1) == (message.startswith(f"config file {path}"), len(message.splitlines()))


def test_rules_json_nested_too_deep_is_one_line_error() -> None:
    """ROTATOR_POLICY__RULES nested past the JSON parser's recursion names the variable."""
    env = {**BASE_ENV, "ROTATOR_POLICY__RULES": "[" * 100_000}
    message = refused(lambda: load_settings(None, env))
    assert message.startswith(
        "policy.rules (from ROTATOR_POLICY__RULES): must be a JSON array of rule tables"
    )


# ---------------------------------------------------------------------------
# Secret files
# ---------------------------------------------------------------------------


def _file_env(path: Path | str) -> dict[str, str]:
    env = {k: v for k, v in BASE_ENV.items() if k != "ROTATOR_MONITE__CLIENT_SECRET"}
    return {**env, "ROTATOR_MONITE__CLIENT_SECRET_FILE": str(path)}


WHERE = "monite.client_secret_file (from ROTATOR_MONITE__CLIENT_SECRET_FILE)"


@pytest.mark.timeout(10)
def test_secret_file_dev_zero_is_refused_not_read() -> None:
    """/dev/zero as a secret file: a one-line error naming key and file, not a MemoryError."""
    message = refused(lambda: load_settings(None, _file_env("/dev/zero")))
    assert (
        f"{WHERE}: file /dev/zero is a character device, not a regular file; a secret file "
        "is a regular file holding only the value (at most 64 KiB): fix the path"
    ) == message


@pytest.mark.timeout(10)
def test_secret_file_that_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    """A FIFO with no writer as a secret file is refused within a second, not waited on forever."""
    path = tmp_path / "secret"
    os.mkfifo(path)
    message = refused(lambda: load_settings(None, _file_env(path)))
    assert (
        f"{WHERE}: file {path} is a named pipe (FIFO), not a regular file"
        == (message.split(";")[0])
    )


@pytest.mark.timeout(10)
def test_systemd_credential_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    """A FIFO in $CREDENTIALS_DIRECTORY is refused like a *_file, naming the credential."""
    os.mkfifo(tmp_path / "vault_token")
    env = {k: v for k, v in BASE_ENV.items() if k != "VAULT_TOKEN"}
    message = refused(lambda: load_settings(None, {**env, "CREDENTIALS_DIRECTORY": str(tmp_path)}))
    assert (
        "vault.token (from systemd credential vault_token): file "
        f"{tmp_path / 'vault_token'} is a named pipe (FIFO), not a regular file"
    ) == message.split(";")[0]


def test_secret_file_up_to_the_cap_loads_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    """64 KiB of value loads; 64 KiB + 1 is refused by size, and the value is never shown."""
    fits, too_big = tmp_path / "fits", tmp_path / "too-big"
    value = "s" * SECRET_FILE_LIMIT
    fits.write_text(value)
    too_big.write_text(value + "t")
    loaded = load_settings(None, _file_env(fits)).monite.client_secret
    message = refused(lambda: load_settings(None, _file_env(too_big)))
    assert (Secret(value), f"{WHERE}: file {too_big} is larger than 64 KiB", False) == (
        loaded,
        message.split(";")[0],
        "sss" in message,
    )


@pytest.mark.timeout(10)
def test_secret_file_of_gigabytes_is_refused_at_once(tmp_path: Path) -> None:
    """A 4 GiB (sparse) secret file is refused by its size without being read."""
    path = tmp_path / "secret"
    path.write_bytes(b"")
    os.truncate(path, 4 * 1024**3)
    message = refused(lambda: load_settings(None, _file_env(path)))
    assert f"{WHERE}: file {path} is larger than 64 KiB" == message.split(";")[0]


# ---------------------------------------------------------------------------
# Secret files that others may read or write: reported, not refused
# ---------------------------------------------------------------------------


def test_group_or_world_readable_secret_files_are_reported_by_name_and_mode(
    tmp_path: Path,
) -> None:
    """Each secret file others may read or write is listed (setting, file, mode); 0600 is not."""
    shared, private, writable = tmp_path / "secret", tmp_path / "token", tmp_path / "client-id"
    shared.write_text(CLIENT_SECRET)
    private.write_text(VAULT_TOKEN)
    writable.write_text(CLIENT_ID)
    shared.chmod(0o644)
    private.chmod(0o600)
    writable.chmod(0o622)
    text = (
        f'[monite]\nclient_id_file = "{writable}"\nclient_secret_file = "{shared}"\n'
        f'[vault]\naddress = "https://vault.test:8200"\ntoken_file = "{private}"\n'
    )
    exposed: list[ExposedFile] = []
    settings = load_settings(config(tmp_path, text), {}, exposed=exposed)
    assert (
        [
            {
                "setting": "monite.client_secret_file",
                "file": str(shared),
                "mode": "0644",
                "access": "group can read it; others can read it",
                "fix": f"chmod 600 {shared}, or mount the Kubernetes Secret with defaultMode 0400",
            },
            {
                "setting": "monite.client_id_file",
                "file": str(writable),
                "mode": "0622",
                "access": "group can write it; others can write it",
                "fix": f"chmod 600 {writable}, or mount the Kubernetes Secret with "
                "defaultMode 0400",
            },
        ],
        Secret(CLIENT_SECRET),
    ) == ([e.audit_fields() for e in exposed], settings.monite.client_secret)
    assert CLIENT_SECRET not in json.dumps([e.audit_fields() for e in exposed])
    # Without `exposed`, the same files load exactly as before: a warning, never an error.
    assert settings == load_settings(config(tmp_path, text), {})


def test_exposed_credentials_home_token_and_jwt_are_reported(tmp_path: Path) -> None:
    """systemd credentials, ~/.vault-token and the Kubernetes jwt_file are checked too."""
    credentials, home = tmp_path / "credentials", tmp_path / "home"
    credentials.mkdir()
    home.mkdir()
    (credentials / "monite_client_secret").write_text(CLIENT_SECRET)
    (credentials / "monite_client_secret").chmod(0o640)
    (home / ".vault-token").write_text(VAULT_TOKEN)
    (home / ".vault-token").chmod(0o604)
    jwt = tmp_path / "jwt"
    jwt.write_text("header.payload.signature")
    jwt.chmod(0o644)
    env = {"ROTATOR_MONITE__CLIENT_ID": CLIENT_ID, "VAULT_ADDR": "https://vault.test:8200"}
    exposed: list[ExposedFile] = []
    load_settings(
        None, {**env, "CREDENTIALS_DIRECTORY": str(credentials), "HOME": str(home)}, exposed=exposed
    )
    k8s: list[ExposedFile] = []
    load_settings(
        None,
        {
            **BASE_ENV,
            "VAULT_TOKEN": "",
            "ROTATOR_VAULT__AUTH_METHOD": "kubernetes",
            "ROTATOR_VAULT__ROLE": "rotator",
            "ROTATOR_VAULT__JWT_FILE": str(jwt),
        },
        exposed=k8s,
    )
    assert [
        (
            "monite.client_secret (from systemd credential monite_client_secret)",
            str(credentials / "monite_client_secret"),
            "0640",
        ),
        (f"vault.token (from {home / '.vault-token'})", str(home / ".vault-token"), "0604"),
        ("vault.jwt_file", str(jwt), "0644"),
    ] == [
        (f["setting"], f["file"], f["mode"]) for f in (e.audit_fields() for e in [*exposed, *k8s])
    ]
