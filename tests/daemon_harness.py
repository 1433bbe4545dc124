"""The harness for tests that run `python -m rotator run` as a real process.

This module owns what those tests share: the TOML config written for the
emulators (`Config`, `toml`), the subprocess whose JSON audit log is parsed as
it arrives (`DaemonProcess`), a free local port, a bounded `poll`, and a
datagram socket standing in for systemd's notify socket. Every line a process
prints goes to the suite's secret hygiene scan (`remember_output`). For the
tests that build a `Daemon` in process instead, `serving` runs it as a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rotator.daemon import Daemon
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from tests.conftest import remember_output


def run_rotator(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m rotator ARGS` in a real subprocess, as a user runs it; output joins the scan.

    The caller's ROTATOR_*, VAULT_* and BAO_* variables are dropped so the test
    decides the configuration; `env` adds to what is left.
    """
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("ROTATOR_", "VAULT_", "BAO_"))
    }
    environ.update(env or {})
    result = subprocess.run(
        [sys.executable, "-m", "rotator", *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=cwd,
        timeout=60,
        check=False,
    )
    remember_output(result.stdout, result.stderr)
    return result


PREFIX = "monite/webhooks"
Event = dict[str, Any]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def toml(values: dict[str, dict[str, Any]], hooks: Sequence[dict[str, Any]] = ()) -> str:
    """TOML text for groups of scalar settings (JSON literals are valid TOML values).

    `hooks`: one `[[hooks]]` table of scalars each, after the groups.
    """
    lines: list[str] = []
    for group, table in values.items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    for hook in hooks:
        lines.append("[[hooks]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in hook.items()]
    return "\n".join(lines) + "\n"


class Config:
    """Writes the daemon's TOML for the emulators; tests rewrite it to exercise SIGHUP."""

    def __init__(
        self,
        directory: Path,
        monite: MoniteEmulator,
        vault: VaultEmulator,
        vault_token: str,
    ) -> None:
        client_id, client_secret = monite.credentials
        self.path = directory / "rotator.toml"
        (directory / "client_secret").write_text(client_secret)
        (directory / "vault_token").write_text(vault_token)
        self.port = free_port()
        self.values: dict[str, dict[str, Any]] = {
            "monite": {
                "base_url": monite.base_url,
                "client_id": client_id,
                "client_secret_file": str(directory / "client_secret"),
                "timeout": "2s",
                "max_retries": 1,
            },
            "vault": {
                "address": vault.address,
                "token_file": str(directory / "vault_token"),
                "mount": "secret",
                "path_prefix": PREFIX,
                "timeout": "2s",
            },
            "policy": {"max_age": "30d"},
            "schedule": {"interval": "1h"},
            "rotation": {"claim_ttl": "8s", "shutdown_timeout": "10s"},
            "health": {"listen": f"127.0.0.1:{self.port}"},
        }
        self.hooks: list[dict[str, Any]] = []  # each one [[hooks]] table (url, secret_file, ...)

    def write(self, **changes: dict[str, Any]) -> Path:
        """Merges `changes` (group -> keys) into the values and writes the file."""
        for group, table in changes.items():
            self.values.setdefault(group, {}).update(table)
        self.path.write_text(toml(self.values, self.hooks))
        return self.path


class DaemonProcess:
    """A `rotator run` subprocess whose JSON audit log is parsed as it arrives."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATOR_", "VAULT_"))}
        environ.pop("NOTIFY_SOCKET", None)
        environ.update(env or {})
        self.events: list[Event] = []
        self._new: queue.Queue[Event] = queue.Queue()
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rotator", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environ,
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._stdout.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.events.append(event)
            self._new.put(event)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def wait_for(
        self, name: str, timeout: float = 15, where: Callable[[Event], bool] = lambda e: True
    ) -> Event:
        """The next event called `name` (after those already returned) matching `where`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no {name} within {timeout}s; events: {self.names()}; "
                    f"stderr: {self.stderr[-2000:]}"
                )
            try:
                event = self._new.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None and self._new.empty():
                    raise AssertionError(
                        f"daemon exited {self.proc.returncode} before {name}; "
                        f"events: {self.names()}; stderr: {self.stderr[-2000:]}"
                    ) from None
                continue
            if event["event"] == name and where(event):
                return event

    def names(self) -> list[str]:
        return [e["event"] for e in self.events]

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, then the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 20) -> int:
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def close(self) -> None:
        """Kills the process if still running; its output joins the hygiene scan."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for reader in self._readers:
            reader.join(timeout=5)
        remember_output("".join(self._stdout), self.stderr)


def poll(check: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    """Whether `check` held within `timeout`, asking every `interval` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


@contextlib.contextmanager
def bound_notify_socket(kind: str = "path") -> Iterator[tuple[str, socket.socket]]:
    """(address, socket) of a datagram socket standing in for systemd's notify socket.

    `kind` "path" binds a short filesystem path; "abstract" an abstract `@name`.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    directory = None
    if kind == "path":
        directory = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
        address = os.path.join(directory, "notify")
        sock.bind(address)
    else:
        name = f"rotator-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        address = "@" + name
    try:
        yield address, sock
    finally:
        sock.close()
        if directory is not None:
            Path(address).unlink(missing_ok=True)
            os.rmdir(directory)


@contextlib.asynccontextmanager
async def serving(daemon: Daemon) -> AsyncIterator[asyncio.Task[int]]:
    """Run `daemon.serve()` in process as a task on this loop; stop it and wait (15 s) after."""
    task = asyncio.create_task(daemon.serve())
    try:
        yield task
    finally:
        daemon.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=15)
