"""[[hooks]] names: logs and metrics tell hooks apart by name, so two may not share one."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotator.config import hook_names, load_settings
from rotator.errors import ConfigError
from tests.daemon_harness import invoke_rotator

ROOT = Path(__file__).resolve().parents[1]
HOOK_KEY = "hook-key-8e2d4c6a0b1f3e5d7c9a1b3d5f7e9c0a"
ENV = {"ROTATOR_MONITE__CLIENT_SECRET": "monite-client-secret-Hn47", "VAULT_TOKEN": "hvs.n-17"}
HEAD = """
[monite]
client_id = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
[vault]
address = "https://vault.test:8200"
"""
FIX = 'give one of them its own name, like name = "payments-consumer"'


def write(tmp_path: Path, hooks: str) -> Path:
    key = tmp_path / "hook-key"
    key.write_text(HOOK_KEY + "\n")
    key.chmod(0o600)
    path = tmp_path / "rotator.toml"
    path.write_text(HEAD + hooks, encoding="utf-8")
    return path


def url_hook(url: str, name: str | None = None) -> str:
    named = "" if name is None else f'name = "{name}"\n'
    return f'[[hooks]]\nurl = "{url}"\nsecret_file = "hook-key"\n{named}'


def command_hook(*argv: str) -> str:
    quoted = ", ".join(f'"{arg}"' for arg in argv)
    return f"[[hooks]]\ncommand = [{quoted}]\n"


@pytest.mark.parametrize(
    ("hooks", "expected"),
    [
        (
            url_hook("https://a.example/rotated", "payments")
            + url_hook("https://b.example/rotated", "payments"),
            'hooks[1].name: hooks[0] and hooks[1] are both called "payments" in logs and '
            f"metrics; {FIX}",
        ),
        (
            url_hook("https://consumer.example/", "payments")
            + command_hook("/bin/sh", "-c", "true")
            + command_hook("/usr/bin/true")
            + url_hook("https://other.example", "payments"),
            'hooks[3].name: hooks[0] and hooks[3] are both called "payments" in logs and '
            f"metrics; {FIX}",
        ),
        (
            url_hook("https://consumer.example/", "/bin/sh#1")
            + command_hook("/bin/sh", "-c", "true")
            + command_hook("/bin/sh", "-c", "false"),
            'hooks[1].name: hooks[0] and hooks[1] are both called "/bin/sh#1" in logs and '
            f"metrics; {FIX}",
        ),
    ],
    ids=["same name", "same name apart", "a name equal to a numbered one"],
)
def test_two_hooks_with_one_display_name_are_refused(
    tmp_path: Path, hooks: str, expected: str
) -> None:
    """Two hooks logs and metrics would call alike: one line naming both positions and the fix."""
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, hooks), ENV)
    assert expected == str(caught.value)


def test_hooks_told_apart_by_their_names_load(tmp_path: Path) -> None:
    """Two hooks to one origin load once each has its own name; logs and metrics use the names."""
    path = write(
        tmp_path,
        url_hook("https://consumer.example/one", "first")
        + url_hook("https://consumer.example/two", "second")
        + command_hook("/bin/sh", "-c", "true"),
    )
    assert ["first", "second", "/bin/sh"] == hook_names(load_settings(path, ENV).hooks)


def test_unnamed_hooks_sharing_a_program_or_origin_are_numbered_by_position(
    tmp_path: Path,
) -> None:
    """One script for two Deployments, or two URLs on one host, load; each gets "#i" after it."""
    script = str(ROOT / "deploy" / "consumers" / "hooks" / "restart-deployment.sh")
    path = write(
        tmp_path,
        command_hook(script, "webhook-consumer", "payments")
        + url_hook("https://consumer.example/one?token=abc")
        + command_hook(script, "webhook-consumer", "billing")
        + url_hook("https://consumer.example/two", "two")
        + url_hook("https://consumer.example/three"),
    )
    assert [
        f"{script}#0",
        "https://consumer.example/…#1",
        f"{script}#2",
        "two",
        "https://consumer.example/…#4",
    ] == hook_names(load_settings(path, ENV).hooks)


def test_duplicate_hook_names_exit_78_with_one_line(tmp_path: Path) -> None:
    """`rotator check` with two hooks sharing a name: exit 78 and that one line, no traceback."""
    path = write(
        tmp_path,
        url_hook("https://a.example/rotated", "payments")
        + url_hook("https://b.example/rotated", "payments"),
    )
    result = invoke_rotator("check", "--config", str(path), env={**ENV, "HOME": str(tmp_path)})
    assert (
        78,
        [
            "rotator: config error: hooks[1].name: hooks[0] and hooks[1] are both called "
            f'"payments" in logs and metrics; {FIX}'
        ],
    ) == (result.returncode, result.stderr.strip().splitlines())
