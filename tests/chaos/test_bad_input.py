"""Scenario 6: hostile and broken configuration, through the real CLI in a subprocess.

Every case starts from a config that points at live emulators (so a case that
slipped through validation would show up as requests), breaks one thing in the
file, the environment or a secret file, and runs a real command. Each must end
with exit 78, exactly one line on stderr, no traceback, and no request at all
reaching Monite or Vault. Hostile files are among them (TOML nested past the
parser's recursion, a 1 GiB config, a FIFO nobody writes or /dev/zero as a
secret file): refused at once, never waited on nor read whole.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.conftest import WorldFactory
from tests.chaos.harness import FIGURES, World, parallel, render_toml

Sections = dict[str, dict[str, Any]]
Edit = Callable[[Sections, Path], None]


def _set(table: str, **keys: Any) -> Edit:
    def edit(sections: Sections, _: Path) -> None:
        sections.setdefault(table, {}).update(keys)

    return edit


def _drop(table: str, key: str) -> Edit:
    def edit(sections: Sections, _: Path) -> None:
        sections[table].pop(key, None)

    return edit


def _secret_file(content: bytes | None, *, directory: bool = False, fifo: bool = False) -> Edit:
    def edit(sections: Sections, where: Path) -> None:
        path = where / "broken_secret"
        if directory:
            path.mkdir(exist_ok=True)
        elif fifo:
            os.mkfifo(path)  # nobody ever writes to it: reading it would wait forever
        elif content is not None:
            path.write_bytes(content)
        sections["monite"]["client_secret_file"] = str(path)

    return edit


@dataclass(frozen=True)
class Case:
    name: str
    edit: Edit | None = None  # change the config tables
    text: str | None = None  # or replace the file with this text (bytes via latin-1)
    env: dict[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ("run", "--once")
    no_config_flag: bool = False  # rely on ROTATOR_CONFIG instead of --config
    append: str = ""  # added after the rendered tables
    encoding: str = "utf-8"  # of the rendered file
    grow_to: int | None = None  # then extend the file (sparse) to this many bytes


CASES: tuple[Case, ...] = (
    Case("client_id not a UUID", _set("monite", client_id="abc")),
    Case("client_id missing", _drop("monite", "client_id")),
    Case("typo in a key", _set("monite", client_secert="x")),
    Case("unknown table", _set("polcy", max_age="1d")),
    Case("duration without unit", _set("policy", max_age=30)),
    Case("duration in words", _set("policy", max_age="30 days"), command=("plan",)),
    Case("negative jitter", _set("schedule", jitter="-5s"), command=("run",)),
    Case("zero timeout", _set("monite", timeout="0s")),
    Case("unmanaged policy unknown", _set("policy", unmanaged="maybe")),
    Case("interval and cron together", _set("schedule", cron="*/5 * * * *"), command=("run",)),
    Case("cron that is not cron", _set("schedule", interval=None, cron="every day")),
    Case("claim_ttl under 4x timeout", _set("rotation", claim_ttl="3s")),
    Case(
        "concurrency zero", _set("rotation", concurrency=0), command=("rotate", "--force", "--all")
    ),
    Case("concurrency as boolean", _set("rotation", concurrency=True)),
    Case("page_size above 100", _set("monite", page_size=1000)),
    Case("negative retries", _set("vault", max_retries=-1), command=("check",)),
    Case("base_url not http", _set("monite", base_url="ftp://api.monite.com/v1")),
    Case("base_url with credentials", _set("monite", base_url="https://u:p@api.monite.com/v1")),
    Case("api_version not a date", _set("monite", api_version="yesterday")),
    Case("vault address without scheme", _set("vault", address="vault:8200")),
    Case("vault auth method unsupported", _set("vault", auth_method="ldap")),
    Case("path_prefix with empty part", _set("vault", path_prefix="monite//webhooks")),
    Case("vault token missing", _drop("vault", "token_file"), command=("check",)),
    Case("log level unknown", _set("log", level="loud")),
    Case("health listen not host:port", _set("health", listen="nowhere"), command=("run",)),
    Case("rule without a matcher", append='\n[[policy.rules]]\nmax_age = "1d"\n'),
    Case("secret file missing", _secret_file(None)),
    Case("secret file empty", _secret_file(b"")),
    Case("secret file with two lines", _secret_file(b"one\ntwo\n")),
    Case("secret file is a directory", _secret_file(None, directory=True)),
    Case("secret file not UTF-8", _secret_file(b"\xff\xfe\xfa")),
    Case("secret file is /dev/zero", _set("monite", client_secret_file="/dev/zero")),
    Case("secret file is a FIFO", _secret_file(None, fifo=True), command=("run",)),
    Case("secret file of 1 MiB", _secret_file(b"s" * (1024 * 1024))),
    Case("TOML nested 5000 deep", append="\n[deep]\nx = " + "[" * 5000 + "]" * 5000 + "\n"),
    Case("TOML dotted key of 20000 parts", append="\n[deep]\nk." + ".a" * 20_000 + " = 1\n"),
    Case("config file of 1 GiB", grow_to=1024**3, command=("plan",)),
    Case("config in UTF-16", encoding="utf-16", command=("check",)),
    Case(
        "secret inline and from file",
        _set("monite", client_secret="inline-value"),
        command=("plan", "--json"),
    ),
    Case("TOML syntax error", text='[monite\nclient_id = "x"\n'),
    Case("config not UTF-8", text='[monite]\nclient_id = "\xff\xfe"\n'),
    Case("key outside any table", text='max_age = "1d"\n'),
    Case("config file missing", env={}, command=("run", "--once", "--config", "/nonexistent.toml")),
    Case(
        "ROTATOR_CONFIG missing file",
        env={"ROTATOR_CONFIG": "/nonexistent/rotator.toml"},
        no_config_flag=True,
    ),
    Case("env: concurrency not a number", env={"ROTATOR_ROTATION__CONCURRENCY": "lots"}),
    Case("env: unknown key", env={"ROTATOR_MONITE__CLIENTID": "x"}),
    Case("env: unknown group", env={"ROTATOR_POLCY__MAX_AGE": "1d"}, command=("run",)),
    Case("env: no group separator", env={"ROTATOR_MAX_AGE": "1d"}),
    Case("env: VAULT_ADDR not a URL", env={"VAULT_ADDR": "not a url"}, command=("check",)),
    Case("env: duration nonsense", env={"ROTATOR_POLICY__MAX_AGE": "forever"}),
    Case("env: cron out of range", env={"ROTATOR_SCHEDULE__CRON": "61 * * * *"}),
    Case("env: rules not JSON", env={"ROTATOR_POLICY__RULES": "not json"}),
    Case("env: log format unknown", env={"ROTATOR_LOG__FORMAT": "xml"}),
    Case("env: timeout makes claim too short", env={"ROTATOR_MONITE__TIMEOUT": "10s"}),
    Case(
        "env: secret file path missing",
        env={"ROTATOR_MONITE__CLIENT_SECRET_FILE": "/nonexistent/secret"},
    ),
)


@dataclass(frozen=True)
class Result:
    case: str
    exit_code: int | None
    stderr_lines: list[str]
    stdout: str


def _prepare(world: World, case: Case, number: int) -> tuple[list[str], dict[str, str]]:
    where = world.workdir / f"case{number:02d}"
    where.mkdir()
    path = where / "rotator.toml"
    sections = world.sections()
    if case.text is not None:
        path.write_bytes(case.text.encode("latin-1"))
    else:
        if case.edit is not None:
            case.edit(sections, where)
        path.write_bytes((render_toml(sections) + case.append).encode(case.encoding))
    if case.grow_to is not None:
        os.truncate(path, case.grow_to)
    argv = list(case.command)
    env = dict(case.env)
    if "--config" not in argv and not case.no_config_flag:
        argv += ["--config", str(path)]
    return argv, env


def _run(world: World, case: Case, number: int) -> Result:
    argv, env = _prepare(world, case, number)
    proc = world.spawn(*argv, env=env, auto_config=False)
    if proc.wait(30) is None:
        proc.close()
    proc.remember()
    return Result(
        case=case.name,
        exit_code=proc.returncode,
        stderr_lines=proc.stderr().strip().splitlines(),
        stdout=proc.stdout(),
    )


def test_there_are_at_least_30_cases() -> None:
    """The hostile-input table holds at least 30 distinct cases."""
    assert (True, len(CASES)) == (len(CASES) >= 30, len({c.name for c in CASES}))


@pytest.mark.timeout(300)
def test_bad_config_and_environment_exit_78_with_one_line_and_no_request(
    make_world: WorldFactory,
) -> None:
    """Every bad config or environment value: exit 78, one stderr line, 0 requests anywhere."""
    world = make_world()
    world.seed(2)
    results = parallel(lambda nc: _run(world, nc[1], nc[0]), list(enumerate(CASES)), workers=4)
    FIGURES.add(
        "6-bad-input",
        title="Bad configs and environment values through the real CLI",
        command=".venv/bin/pytest tests/chaos/test_bad_input.py",
        fault=[f"bad input: {r.case}" for r in results],
        trials=len(results),
        requests_reaching_emulators=world.monite.request_count() + world.vault.request_count(),
    )
    expected = [(r.case, 78, 1, True, False, "") for r in results]
    actual = [
        (
            r.case,
            r.exit_code,
            len(r.stderr_lines),
            bool(r.stderr_lines) and r.stderr_lines[0].startswith("rotator: config error: "),
            "Traceback" in "\n".join(r.stderr_lines),
            r.stdout,
        )
        for r in results
    ]
    assert expected == actual, [(r.case, r.stderr_lines[:3]) for r in results]
    assert (0, 0) == (world.monite.request_count(), world.vault.request_count())
