"""The harness for tests that run `python -m rotator run` as a real process.

This module owns what those tests share: the TOML config written for the
emulators (`Config`, `toml`), the process (forked from tests/forkserver.py, or
exec'd) whose JSON audit log is parsed as it arrives (`DaemonProcess`), a free
local port, a bounded `poll`, and a datagram socket standing in for systemd's
notify socket. Every line a process
prints goes to the suite's secret hygiene scan (`remember_output`). For the
tests that build a `Daemon` in process instead, `serving` runs it as a task.

`invoke_rotator` is `run_rotator` without the process: `rotator.cli.main` in
the test's own process, with the environment, working directory, output and
exit code the subprocess would have, and the worker's global state (logging,
structlog, signals, environment, cwd) put back afterwards. It saves the 0.4 s
of CPU a `python -m rotator` start costs; tests about the process itself
(imports, signals, hardening, the daemon) keep `run_rotator`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import json
import locale
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import hvac.v1
import structlog

import rotator.cli
from rotator.audit import LIBRARY_LOGGERS
from rotator.daemon import Daemon
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from tests.conftest import remember_output
from tests.forkserver import start_process, without_configuration


def rotator_environ(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a `rotator` run by the tests gets: this process's, less what
    would configure it behind the test's back (`without_configuration`), plus `env`."""
    return without_configuration(os.environ) | (env or {})


def run_rotator(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, how: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m rotator ARGS` in a separate process, as a user runs it; output joins the scan.

    The process is forked from the fork server (tests/forkserver.py; exec'd under
    `TEST_SPAWN=exec` or when `env` sets a start-up variable such as
    PYTHONPROFILEIMPORTTIME, or with `how="exec"`: a test of what a fresh
    interpreter does, imports included). The caller's ROTATOR_*, VAULT_* and BAO_* variables
    are dropped so the test decides the configuration; `env` adds to what is left.
    Output reads as `subprocess.run(..., text=True)` reads it.
    """
    environ = rotator_environ(env)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process, _ = start_process(
            args, environ, cwd or os.getcwd(), out.fileno(), err.fileno(), how=how
        )
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            raise
        stdout, stderr = (text_of(stream) for stream in (out, err))
    result = subprocess.CompletedProcess(
        [sys.executable, "-m", "rotator", *args], code, stdout, stderr
    )
    remember_output(result.stdout, result.stderr)
    return result


def text_of(stream: Any) -> str:
    """A finished process's output file as `subprocess.run(..., text=True)` decodes it."""
    stream.seek(0)
    data = stream.read().decode(locale.getpreferredencoding(False))
    return str(data.replace("\r\n", "\n").replace("\r", "\n"))


# hvac reads these once, when it is imported (in this process: at collection, from
# the worker's environment), and hvac.Client falls back on them: the runner sets
# them to what a fresh process with the run's environment would have read.
_HVAC_IMPORT_TIME_ENV = ("VAULT_CACERT", "VAULT_CAPATH", "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY")


def invoke_rotator(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`run_rotator`, but `rotator.cli.main` in this process: same environment, cwd,
    output, exit code and hygiene scan, at no process start. Sync tests only.

    `args` of the result is the command `run_rotator` would have run. What the
    call changes in this process is put back afterwards; see `_as_a_process`.
    """
    environ = rotator_environ(env)
    stdout, stderr = io.StringIO(), io.StringIO()
    with _as_a_process(environ, cwd, stdout, stderr):
        try:
            # A fresh, empty context: nothing a test bound (structlog's contextvars)
            # reaches the run, and nothing the run binds outlives it.
            code = int(contextvars.Context().run(rotator.cli.main, list(args), environ))
        except SystemExit as exc:  # what `raise SystemExit(main())` and Python make of it
            code = _exit_status(exc.code, stderr)
        except Exception:  # an uncaught error: Python prints the traceback and exits 1
            traceback.print_exc(file=stderr)
            code = 1
    result = subprocess.CompletedProcess(
        [sys.executable, "-m", "rotator", *args], code, stdout.getvalue(), stderr.getvalue()
    )
    remember_output(result.stdout, result.stderr)
    return result


def _exit_status(code: object, stderr: io.StringIO) -> int:
    """The status Python exits with for `SystemExit(code)` (a non-int is printed, then 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return int(code)  # an ExitCode too: a process's status is a plain int
    print(code, file=stderr)
    return 1


@contextlib.contextmanager
def _as_a_process(
    environ: dict[str, str], cwd: Path | None, stdout: io.StringIO, stderr: io.StringIO
) -> Iterator[None]:
    """This process made to look, to `main`, like the fresh one `run_rotator` starts;
    everything changed (here or by `main`) put back on the way out.

    - os.environ is `environ` during the call: `main` reads the mapping it is
      given, but hvac (VAULT_ADDR, VAULT_TOKEN, ~/.vault-token through HOME) and
      requests (proxies, CA bundle, ~/.netrc) read os.environ themselves.
    - The working directory is `cwd`, for relative paths (--config, files).
    - sys.stdout and sys.stderr are the captures. `configure_logging` is handed
      them at call time, so the audit log lands there too; its handler on the
      root logger, the levels it sets and structlog's configuration (the
      suite's `capture_logs` included) are restored afterwards.
    - SIGTERM/SIGINT: `_cycle_until_signal` adds and removes loop handlers (and
      the loop its wakeup fd); removing leaves SIG_DFL and Python's default
      SIGINT handler, not whatever was there before, so both are put back.
    - `harden_process` is not called: it would set RLIMIT_CORE to 0/0 (hard,
      for good) and PR_SET_DUMPABLE 0 on the pytest worker. Every later child of
      the worker would inherit the core limit, so test_hardening's daemon test,
      which gives its daemon a core limit that allows a core and checks the
      daemon lowers it, would prove nothing if it ran later in the same worker;
      and the worker's /proc/<pid> would turn root-owned and unptraceable.
      Hardening changes nothing a command prints; the tests that keep a real
      process (and test_hardening) cover it.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("invoke_rotator runs `main` in the main thread (signal handlers)")
    if asyncio._get_running_loop() is not None:
        raise RuntimeError("invoke_rotator calls asyncio.run: use it from sync tests only")
    saved_cwd = os.getcwd()
    saved_structlog = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    saved_wakeup_fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(saved_wakeup_fd)
    with contextlib.ExitStack() as patches:
        patches.enter_context(mock.patch.dict(os.environ, environ, clear=True))
        for name in _HVAC_IMPORT_TIME_ENV:
            patches.enter_context(mock.patch.object(hvac.v1, name, environ.get(name)))
        patches.enter_context(mock.patch.object(rotator.cli, "harden_process", return_value=()))
        patches.enter_context(contextlib.redirect_stdout(stdout))
        patches.enter_context(contextlib.redirect_stderr(stderr))
        try:
            if cwd is not None:
                os.chdir(cwd)
            yield
        finally:
            os.chdir(saved_cwd)
            for handler in root.handlers:
                if handler not in saved_handlers:
                    handler.close()  # the audit handler; its stream is the capture
            root.handlers[:] = saved_handlers
            root.setLevel(saved_level)
            for name, level in saved_levels.items():
                logging.getLogger(name).setLevel(level)
            structlog.configure(**saved_structlog)
            for signum, handler in saved_signals.items():
                if handler is not None:  # None: not set from Python, nothing to put back
                    signal.signal(signum, handler)
            signal.set_wakeup_fd(saved_wakeup_fd)


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
    """A `rotator run` process whose JSON audit log is parsed as it arrives.

    Forked from the fork server (tests/forkserver.py) unless `how="exec"` (or
    `TEST_SPAWN=exec`): a test about how the process is started (its group, its
    inherited limits) execs it, as systemd would.
    """

    def __init__(
        self, config: Path, env: dict[str, str] | None = None, how: str | None = None
    ) -> None:
        environ = rotator_environ()
        environ.pop("NOTIFY_SOCKET", None)  # only a test that asks for one gets one
        environ.update(env or {})
        self.events: list[Event] = []
        self._new: queue.Queue[Event] = queue.Queue()
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        try:
            argv = ["run", "--config", str(config)]
            self.proc, self.how = start_process(
                argv, environ, os.getcwd(), out_write, err_write, how=how
            )
        except BaseException:
            os.close(out_read)
            os.close(err_read)
            raise
        finally:
            os.close(out_write)  # the child holds its own copies: EOF when it ends
            os.close(err_write)
        self._readers = [
            threading.Thread(target=self._read_stdout, args=(out_read,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(err_read,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self, fd: int) -> None:
        with open(fd, encoding="utf-8", errors="replace") as stdout:
            for line in stdout:
                self._stdout.append(line)
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                self.events.append(event)
                self._new.put(event)

    def _read_stderr(self, fd: int) -> None:
        with open(fd, encoding="utf-8", errors="replace") as stderr:
            for line in stderr:
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
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
            for reader in self._readers:
                reader.join(timeout=5)
        finally:
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
