"""Config edge cases: secrets trimmed and checked, crontab "0-7", the no-config-file hint."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from rotator.config import cron_trigger, crontab_weekdays, load_settings
from rotator.errors import ConfigError
from rotator.secret import Secret
from tests.daemon_harness import invoke_rotator

CLIENT_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
CLIENT_SECRET = "monite-client-secret-Rv27"
VAULT_TOKEN = "hvs.review-token-Qm93"
BASE_ENV = {
    "ROTATOR_MONITE__CLIENT_ID": CLIENT_ID,
    "ROTATOR_MONITE__CLIENT_SECRET": CLIENT_SECRET,
    "VAULT_ADDR": "https://vault.test:8200",
    "VAULT_TOKEN": VAULT_TOKEN,
}
NO_FILE_HINT = "no config file: pass --config PATH or set ROTATOR_CONFIG"


# ---------------------------------------------------------------------------
# Secrets: whitespace around is dropped, control characters inside refused
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("padded", [f"{VAULT_TOKEN}\n", f"{VAULT_TOKEN}\r\n", f"  {VAULT_TOKEN}\t"])
def test_token_from_env_with_surrounding_whitespace_is_stripped(padded: str) -> None:
    """VAULT_TOKEN=$'...\\n' (or with spaces or CRLF) loads as the bare token."""
    settings = load_settings(None, {**BASE_ENV, "VAULT_TOKEN": padded})
    assert Secret(VAULT_TOKEN) == settings.vault.token


def test_secret_files_are_stripped_of_surrounding_whitespace(tmp_path: Path) -> None:
    """Files lose every newline and space around the value, like the environment."""
    (tmp_path / "token").write_text(f"\n  {VAULT_TOKEN}  \n\n")
    (tmp_path / "secret").write_text(f"{CLIENT_SECRET}\r\n\r\n")
    (tmp_path / "client-id").write_text(f" {CLIENT_ID}\n")
    env = {
        "VAULT_ADDR": "https://vault.test:8200",
        "ROTATOR_VAULT__TOKEN_FILE": str(tmp_path / "token"),
        "ROTATOR_MONITE__CLIENT_SECRET_FILE": str(tmp_path / "secret"),
        "ROTATOR_MONITE__CLIENT_ID_FILE": str(tmp_path / "client-id"),
    }
    settings = load_settings(None, env)
    assert (Secret(VAULT_TOKEN), Secret(CLIENT_SECRET), CLIENT_ID) == (
        settings.vault.token,
        settings.monite.client_secret,
        settings.monite.client_id,
    )


def test_secret_in_toml_with_trailing_newline_is_stripped(tmp_path: Path) -> None:
    """A TOML multi-line string that ends in a newline gives the bare secret."""
    path = tmp_path / "rotator.toml"
    path.write_text(
        f'[monite]\nclient_id = "{CLIENT_ID}"\nclient_secret = """{CLIENT_SECRET}\n"""\n'
        '[vault]\naddress = "https://vault.test:8200"\n'
    )
    settings = load_settings(path, {"VAULT_TOKEN": VAULT_TOKEN})
    assert Secret(CLIENT_SECRET) == settings.monite.client_secret


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"VAULT_TOKEN": "hvs.first-half\nsecond-half"}, "vault.token (from VAULT_TOKEN)"),
        ({"VAULT_TOKEN": "hvs.tab-in\tthe-middle"}, "vault.token (from VAULT_TOKEN)"),
        ({"VAULT_TOKEN": "hvs.space-in the-middle"}, "vault.token (from VAULT_TOKEN)"),
        (
            {"ROTATOR_MONITE__CLIENT_SECRET": "bell-inside\x07-secret-value"},
            "monite.client_secret (from ROTATOR_MONITE__CLIENT_SECRET)",
        ),
        (
            {"ROTATOR_MONITE__CLIENT_SECRET": "nul-inside\x00-secret-value"},
            "monite.client_secret (from ROTATOR_MONITE__CLIENT_SECRET)",
        ),
    ],
)
def test_secret_with_control_character_inside_is_one_line_error_without_value(
    env: dict[str, str], key: str
) -> None:
    """An inner newline, tab, space or control character is refused, naming the key only."""
    value = next(iter(env.values()))
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {**BASE_ENV, **env})
    message = str(caught.value)
    assert message.startswith(f"{key}: contains a line break, a space or another control")
    assert 1 == len(message.splitlines())
    assert [] == [part for part in value.split() if part in message]
    assert [] == [text for text in (value, repr(value), repr(value)[1:-1]) if text in message]


def test_secret_file_with_control_character_is_error_naming_the_file_key(tmp_path: Path) -> None:
    """A token file with a control character inside fails naming vault.token, not the value."""
    (tmp_path / "token").write_text("hvs.esc\x1bape-token\n")
    env = {**BASE_ENV, "ROTATOR_VAULT__TOKEN_FILE": str(tmp_path / "token")}
    del env["VAULT_TOKEN"]
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env)
    message = str(caught.value)
    assert message.startswith(f"vault.token (from file {tmp_path / 'token'}): contains a line")
    assert "ape-token" not in message


def test_whitespace_only_secret_is_empty() -> None:
    """A secret of nothing but whitespace is "must not be empty", like an empty one."""
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {**BASE_ENV, "ROTATOR_MONITE__CLIENT_SECRET": " \n "})
    expected = "monite.client_secret (from ROTATOR_MONITE__CLIENT_SECRET): must not be empty"
    assert expected == str(caught.value)


# ---------------------------------------------------------------------------
# Crontab weekdays: 0-7 is every day
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("0-7", "sun,mon,tue,wed,thu,fri,sat"),
        ("1-7", "sun,mon,tue,wed,thu,fri,sat"),
        ("6-7", "sun,sat"),
        ("0-7/2", "sun,tue,thu,sat"),
        ("7", "sun"),
        ("0,7", "sun"),
    ],
)
def test_crontab_ranges_ending_in_seven_include_the_days_before(field: str, expected: str) -> None:
    """A range ending in 7 (Sunday) covers every day from its start, so 0-7 is the whole week."""
    assert expected == crontab_weekdays(field)


def test_cron_zero_to_seven_fires_every_day() -> None:
    """ "0 3 * * 0-7" fires on seven consecutive days, not only on Sundays."""
    trigger = cron_trigger("0 3 * * 0-7")
    fire = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)  # a Monday
    days = []
    for _ in range(7):
        fire = trigger.get_next_fire_time(None, fire)
        days.append(fire.strftime("%a"))
        fire = fire.replace(hour=12)
    assert ["Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "Mon"] == days


# ---------------------------------------------------------------------------
# Missing keys without a config file
# ---------------------------------------------------------------------------


def test_missing_key_without_config_file_says_no_file_was_given() -> None:
    """With neither --config nor ROTATOR_CONFIG, "required" also says no file was read."""
    env = {k: v for k, v in BASE_ENV.items() if k != "ROTATOR_MONITE__CLIENT_ID"}
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env)
    message = str(caught.value)
    assert message.startswith("monite.client_id: required; ")
    assert message.endswith(f"; {NO_FILE_HINT}")
    assert 1 == len(message.splitlines())


def test_missing_key_with_config_file_has_no_file_hint(tmp_path: Path) -> None:
    """When a file was read, the hint about a missing file does not appear."""
    path = tmp_path / "rotator.toml"
    path.write_text('[vault]\naddress = "https://vault.test:8200"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {"VAULT_TOKEN": VAULT_TOKEN})
    message = str(caught.value)
    assert message.startswith("monite.client_id: required; ")
    assert NO_FILE_HINT not in message


def test_cli_without_config_reports_missing_key_with_hint_and_exits_78() -> None:
    """`rotator check` with an empty environment: exit 78 and one stderr line with the hint."""
    result = invoke_rotator("check")
    code, out, err = result.returncode, result.stdout, result.stderr
    assert 78 == code
    assert "" == out
    assert 1 == len(err.strip().splitlines())
    assert err.startswith("rotator: config error: monite.client_id: required; ")
    assert NO_FILE_HINT in err
    assert err.rstrip().endswith(f"{NO_FILE_HINT} (and 1 more problem)")


@pytest.mark.parametrize(
    "name",
    [f"ROTATOR_{CLIENT_SECRET.upper()}", f"ROTATOR_MONITE__{CLIENT_SECRET.upper()}"],
)
def test_secret_pasted_as_variable_name_is_not_echoed(name: str) -> None:
    """A secret typed as a ROTATOR_* name is refused, showing only its first characters."""
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {**BASE_ENV, name: "x"})
    message = str(caught.value)
    assert f"{CLIENT_SECRET[:4].upper()}…({len(CLIENT_SECRET)} characters)" in message
    assert [] == [v for v in (CLIENT_SECRET, CLIENT_SECRET.upper()) if v.lower() in message.lower()]
