"""`invoke_rotator` (rotator.cli.main in the test's process) is faithful to `run_rotator`.

Most CLI tests run the command in process to save the start of a Python
process each. Here the same invocation goes through both runners and must give
equal (returncode, stdout, stderr): usage errors, config errors (also with a
relative --config found through `cwd`), `--help`, `check` and its log lines on
stderr, `plan`, `plan --json`, and `run --once` with its JSON audit log on
stdout. The only values normalised are those no two runs share: the
timestamps, run ids and durations inside JSON log lines. Afterwards the test
process is as it was: logging, structlog, signals, environment, cwd and the
core-dump settings.
"""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog

from rotator.audit import LIBRARY_LOGGERS
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from tests.daemon_harness import Config, invoke_rotator, run_rotator

# JSON log fields that differ between any two runs, whatever runs them.
VARYING = frozenset({"timestamp", "run_id", "duration_seconds", "next_claim_expiry"})
Outcome = tuple[int, list[Any], list[Any]]


def normalised(result: subprocess.CompletedProcess[str]) -> Outcome:
    """(returncode, stdout lines, stderr lines), each JSON line as a dict without VARYING."""
    return (result.returncode, _lines(result.stdout), _lines(result.stderr))


def _lines(text: str) -> list[Any]:
    lines: list[Any] = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if isinstance(event, dict):
            lines.append({k: "<varies>" if k in VARYING else v for k, v in event.items()})
        else:
            lines.append(line)
    return lines


def both(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> list[Outcome]:
    """The outcome of the same invocation through `run_rotator`, then `invoke_rotator`.

    `run_rotator` execs a fresh interpreter here (not the pre-imported fork server):
    whatever the CLI does at import time is part of what the two must agree on.
    """
    return [
        normalised(runner(*args, env=env, cwd=cwd))
        for runner in (functools.partial(run_rotator, how="exec"), invoke_rotator)
    ]


# COLUMNS: argparse wraps --help to the terminal's width, and under `pytest -s`
# on a terminal the test process has one where the subprocess has a pipe.
@pytest.mark.parametrize(
    ("argv", "env", "code"),
    [
        (["--version"], {}, 0),
        (["--help"], {"COLUMNS": "80"}, 0),
        (["rotate", "--force", "--id", "nope"], {}, 2),
        (["demo", "--duration", "0"], {}, 2),
        (["check", "--config", "/nonexistent/rotator.toml"], {}, 78),
        (["check", "--config", "rotator.toml"], {}, 78),
        (["plan"], {"ROTATOR_CONFIG": "rotator.toml", "ROTATOR_ROTATION__CONCURRENCY": "x"}, 78),
    ],
    ids=[
        "version",
        "help",
        "usage error",
        "demo usage error",
        "missing config",
        "relative config",
        "environment",
    ],
)
def test_runners_agree_before_any_service_is_reached(
    tmp_path: Path, argv: list[str], env: dict[str, str], code: int
) -> None:
    """Version, help, usage and config errors: equal exit code, stdout and stderr both ways."""
    # A config found only relative to `cwd`, that fails the last check of the tree.
    (tmp_path / "rotator.toml").write_text(
        '[monite]\nbase_url = "https://monite.invalid"\n'
        'client_id = "3fa85f64-5717-4562-b3fc-2c963f66afa6"\nclient_secret = "x"\n'
        'timeout = "10s"\n[vault]\naddress = "https://vault.invalid"\ntoken = "t"\n'
        '[rotation]\nclaim_ttl = "15s"\n'
    )
    subprocess_outcome, in_process_outcome = both(
        *argv, env={"HOME": str(tmp_path), **env}, cwd=tmp_path
    )
    assert (code, True) == (
        subprocess_outcome[0],
        bool(subprocess_outcome[1] or subprocess_outcome[2]),
    ), subprocess_outcome
    assert subprocess_outcome == in_process_outcome


def test_runners_agree_on_check_plan_and_run_once(
    tmp_path: Path, monite: MoniteEmulator, vault: VaultEmulator, vault_token: str
) -> None:
    """check (warnings on stderr), run --once (audit log on stdout), plan: equal both ways."""
    # The secret files are left readable by all: each command warns about them
    # through the audit log, on stderr for check and plan and stdout for run.
    config = Config(tmp_path, monite, vault, vault_token).write()
    (tmp_path / "client_secret").chmod(0o644)
    (tmp_path / "vault_token").chmod(0o644)
    outcomes = {"run --once, nothing listed": both("run", "--once", "--config", str(config))}
    monite.seed()  # after run --once: a rotation would leave the second run nothing to do
    for command in ("check", "plan", "plan --json"):
        outcomes[command] = both(*command.split(), "--config", str(config))
    assert {name: pair[0] for name, pair in outcomes.items()} == {
        name: pair[1] for name, pair in outcomes.items()
    }
    assert {
        "run --once, nothing listed": 0,
        "check": 0,
        "plan": 0,
        "plan --json": 0,
    } == {name: pair[0][0] for name, pair in outcomes.items()}
    assert (True, True) == (
        outcomes["check"][0][1][0].startswith("ok: configuration valid"),
        {"event": "config.secret_file_exposed"}.items() <= outcomes["check"][0][2][0].items(),
    ), outcomes["check"]


def test_invoking_leaves_the_process_as_it_found_it(
    tmp_path: Path, monite: MoniteEmulator, vault: VaultEmulator, vault_token: str
) -> None:
    """After run --once in process: same logging, structlog, signals, env, cwd, core settings."""

    def state() -> dict[str, Any]:
        root = logging.getLogger()
        config = structlog.get_config()
        return {
            "root handlers": list(root.handlers),
            "root level": root.level,
            "library levels": [logging.getLogger(name).level for name in LIBRARY_LOGGERS],
            "structlog": {k: v if k != "processors" else list(v) for k, v in config.items()},
            "processors list": id(config["processors"]),
            "signals": [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)],
            "environ": dict(os.environ),
            "cwd": os.getcwd(),
            "stdout and stderr": (sys.stdout, sys.stderr),
            "core limit": resource.getrlimit(resource.RLIMIT_CORE),
            "dumpable": _dumpable(),
        }

    config = Config(tmp_path, monite, vault, vault_token).write()
    monite.seed()
    before = state()
    result = invoke_rotator(
        "run", "--once", "--config", str(config), env={"ROTATOR_LOG__LEVEL": "debug"}, cwd=tmp_path
    )
    assert (0, before) == (result.returncode, state()), result.stderr


def _dumpable() -> int | None:
    """prctl(PR_GET_DUMPABLE) of this process, or None off Linux."""
    if sys.platform != "linux":
        return None
    return int(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))  # PR_GET_DUMPABLE
