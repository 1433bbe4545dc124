"""No core dump holds a secret: the core limit, non-dumpability, and the CLI applying both first.

The real-daemon test starts `python -m rotator run` against the emulators with
a core limit that allows cores, reads its limits and owner from `/proc`, then
sends SIGABRT (what systemd's watchdog sends) and looks for a core file.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import rotator.cli
from rotator.hardening import harden_process
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from tests.daemon_harness import Config, DaemonProcess

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="/proc and prctl are Linux's")
NOGROUP = 65534
CORE_BYTES = 64 << 20  # enough for a core file to appear; a cut-off core still holds secrets


def core_limits(pid: int) -> tuple[str, str]:
    """(soft, hard) of "Max core file size" in /proc/<pid>/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            soft, hard = line[len("Max core file size") :].split()[:2]
            return soft, hard
    raise AssertionError(f"no core limit in /proc/{pid}/limits")


@linux_only
@pytest.mark.skipif(os.geteuid() != 0, reason="starting the daemon in another group needs root")
def test_daemon_is_not_dumpable_and_sigabrt_leaves_no_core(
    tmp_path: Path,
    monite: MoniteEmulator,
    vault: VaultEmulator,
    vault_token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A running daemon is not dumpable, has core limit 0/0, and SIGABRT writes no core file."""
    monite.seed()
    config = Config(tmp_path, monite, vault, vault_token)
    config.write()
    workdir = tmp_path / "cwd"  # where a relative core_pattern puts a core
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    # The daemon inherits a core limit that allows a core, and runs in group
    # "nogroup": /proc/<pid> of a dumpable process belongs to its own user and
    # group, that of a non-dumpable one to root.
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    allowed = CORE_BYTES if hard == resource.RLIM_INFINITY else min(hard, CORE_BYTES)
    real_popen = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", functools.partial(real_popen, group=NOGROUP))
    resource.setrlimit(resource.RLIMIT_CORE, (allowed, hard))
    try:
        daemon = DaemonProcess(config.path, how="exec")  # Popen's group, the limit inherited
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))
        monkeypatch.setattr(subprocess, "Popen", real_popen)
    try:
        daemon.wait_for("rotation.succeeded")  # secrets are in memory now
        pid = daemon.proc.pid
        assert (0, ("0", "0")) == (Path(f"/proc/{pid}/status").stat().st_gid, core_limits(pid))

        pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
        if pattern.startswith("|") or "/" in pattern:
            pytest.skip(f"core_pattern {pattern!r} does not write into the working directory")
        daemon.signal(signal.SIGABRT)
        assert -signal.SIGABRT == daemon.wait(timeout=20)
        assert [] == sorted(path.name for path in workdir.iterdir())
    finally:
        daemon.close()
        for leftover in workdir.iterdir():
            leftover.unlink()  # a core of a dumpable daemon holds secrets: never keep it


def test_cli_hardens_before_reading_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rotator` applies the hardening once, before the config is read (here: a missing one)."""
    calls: list[str] = []
    monkeypatch.setattr(rotator.cli, "harden_process", lambda: calls.append("harden") or ())
    code = rotator.cli.main(["check", "--config", str(tmp_path / "nope.toml")], environ={})
    capsys.readouterr()
    assert (78, ["harden"]) == (code, calls)


@linux_only
def test_refused_measures_do_not_stop_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """setrlimit and prctl refused (seccomp, EPERM) or missing: no exception, the failures named."""

    def refused(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(resource, "setrlimit", refused)
    monkeypatch.setattr(ctypes, "CDLL", refused)
    assert ("core_limit", "dumpable") == harden_process()
