"""[[hooks]] configuration: what loads, and one line naming the key and the fix for the rest."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from rotator.config import ExposedFile, HookSettings, load_settings
from rotator.errors import ConfigError
from rotator.secret import Secret
from tests.daemon_harness import invoke_rotator

HOOK_KEY = "hook-key-3b7e9a1c5d2f4e6a8c0b2d4f6a8c0e1f"
ENV = {"ROTATOR_MONITE__CLIENT_SECRET": "monite-client-secret-Zq81", "VAULT_TOKEN": "hvs.x-42"}
HEAD = """
[monite]
client_id = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
[vault]
address = "https://vault.test:8200"
"""


def write(tmp_path: Path, hooks: str) -> Path:
    key = tmp_path / "hook-key"
    key.write_text(HOOK_KEY + "\n")
    key.chmod(0o600)
    (tmp_path / "short-key").write_text("too-short\n")
    path = tmp_path / "rotator.toml"
    path.write_text(HEAD + hooks.replace("PYTHON", sys.executable), encoding="utf-8")
    return path


def test_url_and_command_hooks_load_with_their_defaults(tmp_path: Path) -> None:
    """A url hook and a command hook load; the key comes from its file, relative to the config."""
    path = write(
        tmp_path,
        """
[[hooks]]
url = "https://consumer.example/rotated?token=abc"
secret_file = "hook-key"
[[hooks]]
command = ["PYTHON", "-c", "pass"]
timeout = "30s"
""",
    )
    settings = load_settings(path, ENV)
    url, command = settings.hooks
    assert (Secret(HOOK_KEY), timedelta(seconds=5)) == (url.secret, url.timeout)
    assert tmp_path / "hook-key" == url.secret_file
    assert "https://consumer.example/…" == url.display
    assert ((sys.executable, "-c", "pass"), None, timedelta(seconds=30)) == (
        command.command,
        command.secret,
        command.timeout,
    )
    assert sys.executable == command.display


def test_no_hooks_by_default(tmp_path: Path) -> None:
    """Without [[hooks]] tables there are none."""
    assert () == load_settings(write(tmp_path, ""), ENV).hooks


def test_redacted_dict_shows_neither_key_nor_query(tmp_path: Path) -> None:
    """`rotator check`'s view of a hook shows where it goes, not its key or the URL's query."""
    path = write(
        tmp_path,
        '[[hooks]]\nurl = "https://u:p@consumer.example/r?token=abc"\nsecret_file = "hook-key"\n',
    )
    (shown,) = load_settings(path, ENV).redacted_dict()["hooks"]
    text = json.dumps(shown)
    assert ("https://consumer.example/…", "<secret>") == (shown["url"], shown["secret"])
    assert "abc" not in text
    assert HOOK_KEY not in text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://hooks.example/services/T000/B000/XXXXtoken", "https://hooks.example/…"),
        ("https://u:p@hooks.example:8443/t0ken?key=abc#frag", "https://hooks.example:8443/…"),
        ("https://hooks.example/?token=abc", "https://hooks.example"),
        ("http://[::1]:9000", "http://[::1]:9000"),
    ],
)
def test_display_is_the_origin_without_path_userinfo_or_query(url: str, expected: str) -> None:
    """A URL hook is shown as scheme://host[:port], with "/…" for a path that may hold a token."""
    assert expected == HookSettings(url=url, secret=Secret(HOOK_KEY)).display


def test_name_is_the_display_name_when_set(tmp_path: Path) -> None:
    """Two hooks on one host are told apart by their `name`; check shows no path either way."""
    path = write(
        tmp_path,
        """
[[hooks]]
url = "https://hooks.example/services/T000/B000/XXXXtoken"
secret_file = "hook-key"
name = "slack-payments"
[[hooks]]
url = "https://hooks.example/services/T000/B111/YYYYtoken"
secret_file = "hook-key"
name = "slack-billing"
""",
    )
    settings = load_settings(path, ENV)
    shown = settings.redacted_dict()["hooks"]
    assert ["slack-payments", "slack-billing"] == [h.display for h in settings.hooks]
    assert [
        ("https://hooks.example/…", "slack-payments"),
        ("https://hooks.example/…", "slack-billing"),
    ] == [(h["url"], h["name"]) for h in shown]


def test_http_is_allowed_to_loopback() -> None:
    """Plain http is accepted for 127.0.0.1, ::1 and localhost only."""
    for url in ("http://127.0.0.1:8080/x", "http://[::1]/x", "http://localhost/x"):
        assert url == HookSettings(url=url, secret=Secret(HOOK_KEY)).url


BAD_HOOKS = [
    (
        "http_outside_loopback",
        '[[hooks]]\nurl = "http://consumer.example/r"\nsecret_file = "hook-key"\n',
        "hooks[0].url: must be https",
    ),
    (
        "not_a_url",
        '[[hooks]]\nurl = "ftp://consumer.example/r"\nsecret_file = "hook-key"\n',
        "hooks[0].url: must be an http(s) URL",
    ),
    (
        "both",
        '[[hooks]]\nurl = "https://c.example/r"\nsecret_file = "hook-key"\ncommand = ["PYTHON"]\n',
        "hooks[0].command: set url or command, not both",
    ),
    ("neither", '[[hooks]]\ntimeout = "5s"\n', "hooks[0].url: a hook needs url"),
    (
        "url_without_key",
        '[[hooks]]\nurl = "https://c.example/r"\n',
        "hooks[0].secret_file: required for a url hook",
    ),
    (
        "key_file_missing",
        '[[hooks]]\nurl = "https://c.example/r"\nsecret_file = "nope"\n',
        "hooks[0].secret_file: file ",
    ),
    (
        "key_too_short",
        '[[hooks]]\nurl = "https://c.example/r"\nsecret_file = "short-key"\n',
        "shorter than 32 characters",
    ),
    (
        "timeout_too_long",
        '[[hooks]]\ncommand = ["PYTHON"]\ntimeout = "90s"\n',
        "hooks[0].timeout: must be at most 60s",
    ),
    (
        "timeout_zero",
        '[[hooks]]\ncommand = ["PYTHON"]\ntimeout = "0s"\n',
        "hooks[0].timeout: must be greater than zero",
    ),
    (
        "timeout_a_number",
        '[[hooks]]\ncommand = ["PYTHON"]\ntimeout = 5\n',
        "hooks[0].timeout: must be a duration string",
    ),
    (
        "command_a_string",
        '[[hooks]]\ncommand = "PYTHON -c pass"\n',
        "hooks[0].command: must be a list of strings",
    ),
    (
        "command_empty",
        "[[hooks]]\ncommand = []\n",
        "hooks[0].command: must not be empty",
    ),
    (
        "command_relative",
        '[[hooks]]\ncommand = ["reload"]\n',
        "hooks[0].command: must start with an absolute path",
    ),
    (
        "command_missing",
        '[[hooks]]\ncommand = ["/nonexistent/reload"]\n',
        "hooks[0].command: program /nonexistent/reload does not exist",
    ),
    (
        "unknown_key",
        '[[hooks]]\ncommand = ["PYTHON"]\nretries = 3\n',
        "unknown key 'retries' in hooks[0]",
    ),
    (
        "inline_secret",
        f'[[hooks]]\nurl = "https://c.example/r"\nsecret = "{HOOK_KEY}"\n',
        "hooks[0].secret: a hook key is never written in the config file",
    ),
    (
        "name_with_a_space",
        '[[hooks]]\ncommand = ["PYTHON"]\nname = "my hook"\n',
        "hooks[0].name: must not contain spaces",
    ),
    (
        "name_empty",
        '[[hooks]]\ncommand = ["PYTHON"]\nname = ""\n',
        "hooks[0].name: must be 1 to 64 printable characters",
    ),
    (
        "name_too_long",
        f'[[hooks]]\ncommand = ["PYTHON"]\nname = "{"n" * 65}"\n',
        "hooks[0].name: must be 1 to 64 printable characters",
    ),
    (
        "name_not_printable",
        '[[hooks]]\ncommand = ["PYTHON"]\nname = "a\\u0007b"\n',
        "hooks[0].name: must be 1 to 64 printable characters",
    ),
    (
        "name_not_a_string",
        '[[hooks]]\ncommand = ["PYTHON"]\nname = 7\n',
        "hooks[0].name:",
    ),
    ("a_table", '[hooks]\nurl = "https://c.example/r"\n', "must be a list of tables"),
    (
        "second_hook",
        '[[hooks]]\ncommand = ["PYTHON"]\n[[hooks]]\nurl = "nope"\nsecret_file = "hook-key"\n',
        "hooks[1].url: must be an http(s) URL",
    ),
]


@pytest.mark.parametrize(("case", "hooks", "phrase"), BAD_HOOKS, ids=[c[0] for c in BAD_HOOKS])
def test_bad_hook_is_one_line_naming_the_key(
    case: str, hooks: str, phrase: str, tmp_path: Path
) -> None:
    """Each bad hook value is a ConfigError on one line that names the key and the fix."""
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, hooks), ENV)
    message = str(raised.value)
    assert phrase in message
    assert "\n" not in message
    assert HOOK_KEY not in message


def test_hooks_from_the_environment_are_refused(tmp_path: Path) -> None:
    """ROTATOR_HOOKS__* variables say hooks belong in the config file."""
    for name in ("ROTATOR_HOOKS__URL", "ROTATOR_HOOKS__0__URL"):
        with pytest.raises(ConfigError, match=r"hooks are set only in the config file"):
            load_settings(write(tmp_path, ""), {**ENV, name: "https://c.example/r"})


def test_a_hook_key_others_can_read_is_reported(tmp_path: Path) -> None:
    """A hook key file readable by others is reported for the exposed-file warning."""
    path = write(tmp_path, '[[hooks]]\nurl = "https://c.example/r"\nsecret_file = "hook-key"\n')
    (tmp_path / "hook-key").chmod(0o644)
    exposed: list[ExposedFile] = []
    load_settings(path, ENV, exposed=exposed)
    assert ["hooks[0].secret_file"] == [e.setting for e in exposed]


def test_check_with_a_bad_hook_exits_78_with_one_line(tmp_path: Path) -> None:
    """`rotator check` validates hooks like every other key: exit 78, one line, no traceback."""
    path = write(
        tmp_path, '[[hooks]]\nurl = "http://consumer.example/r"\nsecret_file = "hook-key"\n'
    )
    result = invoke_rotator("check", "--config", str(path), env=ENV)
    code, err = result.returncode, result.stderr
    assert 78 == code
    assert [err.strip()] == err.strip().splitlines()
    assert err.startswith("rotator: config error: hooks[0].url: must be https")
