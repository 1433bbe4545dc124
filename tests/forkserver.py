"""A fork server for the tests: `python -m rotator ...` without paying its imports each time.

The chaos suite starts several hundred rotator processes, and the daemon tests
(`tests/daemon_harness.py::DaemonProcess`) some sixty more; each fresh interpreter
spent about 0.35 s of CPU importing httpx, hvac/requests, pydantic, structlog,
apscheduler and the rotator modules before it did anything. The fork server is
one interpreter, started once per pytest worker, that has imported all of that
(`PRELOAD`) and forks a child per process the harness asks for. The child is a
real, separate OS process (its own pid and session) that the tests signal and
kill by pid exactly as before, and it runs the product's real entry point: the
`rotator` package's `__main__` through `runpy`, as `python -m rotator` does.

Why not `multiprocessing`'s forkserver context: each `Process` start sends the
parent's preparation data, so the child would chdir to the pytest worker's cwd,
take its `sys.path` and `sys.argv`, and re-run the worker's `__main__` (the
pytest script when run without xdist: pytest imported again in every child);
its `_bootstrap` turns an uncaught KeyboardInterrupt into exit code 1 where a
real interpreter dies of SIGINT (-2), and it starts a resource tracker process
too. This server is smaller and leaves all of that out.

How the child is made faithful (what exec would have given a fresh process):

- `os.setsid()` (Popen's start_new_session); fd 0 from /dev/null, fds 1 and 2
  the Proc's output files (the same open files, passed over the socket), every
  other descriptor closed (Popen's close_fds);
- new `sys.stdin`/`sys.stdout`/`sys.stderr` made as CPython's `create_stdio`
  makes them, with buffering from the child's env (`PYTHONUNBUFFERED=1`:
  write-through, so audit lines survive kill -9);
- `os.chdir(cwd)`, `os.environ` replaced by the env exactly, `time.tzset()`,
  `sys.argv`/`sys.orig_argv`/`sys.path[0]` as `-m rotator` sets them;
- values preloaded modules read from the environment at import are read again
  (hvac's `VAULT_CACERT`, `VAULT_CAPATH`, `VAULT_CLIENT_CERT`,
  `VAULT_CLIENT_KEY`; wsgiref's `os_environ` snapshot); variables that the
  interpreter or a module reads once and cannot be re-read (`PYTHON*`, locale,
  `NO_COLOR`/`FORCE_COLOR`, `PROMETHEUS_*`, ...: `baked_env_differs`) make the
  harness exec that process instead;
- the preloaded objects are frozen (`gc.freeze()`), so a child's garbage
  collections do not walk them and copy the pages they touch (halves a start's
  CPU); they live as long as the process in an exec'd one too;
- fresh randomness: `random` reseeds itself at fork (and is reseeded again);
  nothing else in the preloaded modules seeds a generator at import;
- signal dispositions as exec would leave them and a fresh interpreter then
  sets them: what the pytest worker ignores when it asks for the child stays
  ignored (Popen resets only SIGPIPE and SIGXFSZ), everything else is
  default, then SIGINT raises KeyboardInterrupt unless ignored, and SIGPIPE
  and SIGXFSZ are ignored (CPython's start-up). They are taken at each
  request, not from the server's own start: the worker's state can differ;
- the exit is the interpreter's own: the child's SystemExit (or exception)
  leaves this module's frames and the interpreter ends the process as it ends
  any other (non-daemon threads joined, atexit, stdio flushed, 120 if that
  fails, an uncaught KeyboardInterrupt re-raised as SIGINT). The server reaps
  the child and sends `os.waitstatus_to_exitcode` of its status: -9 for kill -9,
  an exit code as itself, as `Popen.returncode` reads.

`start_process` is the one way the harnesses start such a process: forked from
this worker's `FORK_SERVER`, or exec'd with `subprocess.Popen` when
`TEST_SPAWN=exec` is set (to compare, or to rule the fork server out), when the
caller asks for it (a test about how the process was started), or when the env
differs from the server's in a variable read only at start-up. The server is
stopped when the pytest session ends (tests/conftest.py).

The server is started with `python forkserver.py FD` (stdlib only, no package
import) by `ForkServer.ensure_running`, in its own session, and talks to the
pytest worker over a SOCK_SEQPACKET socketpair: each request carries a fresh
socketpair end for that child plus the two output fds; the server answers the
child's pid and, when it has reaped it, its exit code. The server exits when
the control socket closes (`ForkServer.close`, or the pytest worker dying), and
kills any child still running first, so it never leaves a process behind.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# What `python -m rotator run | run --once | rotate | plan | check` import, at
# start-up or later inside functions (measured with -X importtime); an entry
# that fails to import is skipped, as multiprocessing's preload does.
PRELOAD = (
    "rotator.cli",
    "rotator.cli.plan",
    "rotator.config",
    "rotator.app",
    "rotator.audit",
    "rotator.clock",
    "rotator.daemon",
    "rotator.daemon.entry",
    "rotator.daemon.drain",
    "rotator.engine",
    "apscheduler.executors.asyncio",
    "asyncio",
    "ctypes",
    "concurrent.futures.thread",
    "httpcore",
    "httpcore._backends.auto",
    "httpcore._backends.anyio",
    "anyio",
    "anyio.lowlevel",
    "anyio.streams.memory",
    "anyio.streams.stapled",
    "anyio.streams.tls",
    "anyio._core._sockets",
    "anyio._core._streams",
    "anyio._core._testing",
    "h11",
    "netrc",
    "shlex",
    "runpy",
)

# Read once by the interpreter at start-up or by a preloaded module at import,
# and not re-read in the child: a child env that differs from the server's on
# one of these is started the old way (exec).
_BAKED_PREFIXES = ("PYTHON", "_PYTHON", "PROMETHEUS_", "prometheus_", "LC_", "PYDANTIC_")
_BAKED_NAMES = frozenset({"LANG", "LANGUAGE", "NO_COLOR", "FORCE_COLOR", "TZDIR"})
_NOT_BAKED = frozenset({"PYTHONUNBUFFERED"})  # the child's stdio follow its own env

_PID = struct.Struct("q")
_SCRIPT = Path(__file__).resolve()


def baked_env_differs(server_env: Mapping[str, str], env: Mapping[str, str]) -> list[str]:
    """Names read once at start-up or import whose value in `env` is not the server's."""
    names = set(server_env) | set(env)
    return sorted(
        name
        for name in names
        if name not in _NOT_BAKED
        and (name.startswith(_BAKED_PREFIXES) or name in _BAKED_NAMES)
        and server_env.get(name) != env.get(name)
    )


# ---------------------------------------------------------------------------
# The pytest side


class ForkServerError(RuntimeError):
    """The fork server could not start a process or report its end."""


class ForkedProcess:
    """A child of the fork server, seen as much like a `subprocess.Popen` as the harness needs:
    `pid`, `returncode`, `poll()`, `wait(timeout)` (raises TimeoutExpired), `send_signal`."""

    def __init__(self, conn: socket.socket, args: Sequence[str]) -> None:
        self.args = list(args)
        self._conn = conn
        self.returncode: int | None = None
        self._error: str | None = None
        self._done = threading.Event()
        conn.settimeout(60.0)  # the fork itself: a server that hangs must not hang the test
        pid = _read_signed(conn)
        conn.settimeout(None)
        if pid is None:
            conn.close()
            raise ForkServerError("the fork server did not start the process")
        self.pid = pid
        # One short-lived thread per child waits for its exit code, so poll()
        # and wait() work from any thread without a lock held while waiting.
        threading.Thread(target=self._reap, name=f"forked-{pid}", daemon=True).start()

    def _reap(self) -> None:
        try:
            code = _read_signed(self._conn)
        except OSError as exc:
            code, self._error = None, str(exc)
        finally:
            self._conn.close()
        if code is None and self._error is None:
            self._error = "the fork server ended before the process did"
        self.returncode = code
        self._done.set()

    def poll(self) -> int | None:
        if self._done.is_set():
            self._raise_if_lost()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        self._raise_if_lost()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        # As Popen: never signal a pid whose exit is known (it may be reused).
        if self.returncode is None and not self._done.is_set():
            os.kill(self.pid, signum)

    def _raise_if_lost(self) -> None:
        if self._error is not None:
            raise ForkServerError(f"process {self.pid}: {self._error}")


class ForkServer:
    """One fork server process per pytest worker, started on first use (thread-safe)."""

    def __init__(self, preload: Sequence[str] = PRELOAD) -> None:
        self.preload = list(preload)
        self._lock = threading.Lock()
        self._popen: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self.env: dict[str, str] = {}

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    def ensure_running(self, env: Mapping[str, str]) -> None:
        """Start the server (with `env`) unless it runs; a server that died is started again."""
        with self._lock:
            if self._popen is not None and self._popen.poll() is None:
                return
            self._close_unlocked()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                self._popen = subprocess.Popen(
                    [sys.executable, str(_SCRIPT), str(theirs.fileno()), ",".join(self.preload)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,  # stderr: the worker's, for a crash
                    pass_fds=[theirs.fileno()],
                    env=dict(env),
                    cwd="/",
                    start_new_session=True,
                )
            except BaseException:
                ours.close()
                raise
            finally:
                theirs.close()
            self._control = ours
            self.env = dict(env)

    def spawn(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        cwd: str | os.PathLike[str],
        stdout: int,
        stderr: int,
        module: str = "rotator",
    ) -> ForkedProcess:
        """Fork a child running `python -m MODULE ARGS` with exactly `env` and `cwd`,
        its stdout and stderr on the given fds. The server must run (`ensure_running`)."""
        request = json.dumps(
            {
                "module": module,
                "args": list(args),
                "env": dict(env),
                "cwd": os.fspath(cwd),
                "ignored": ignored_signals(),
            }
        ).encode()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            mine.sendall(_PID.pack(len(request)) + request)  # fits the socket's buffer
            with self._lock:
                if self._control is None:
                    raise ForkServerError("the fork server is not running")
                socket.send_fds(self._control, [b"F"], [theirs.fileno(), stdout, stderr])
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        return ForkedProcess(mine, ["python", "-m", module, *args])

    def close(self, timeout: float = 10.0) -> None:
        """Stop the server (it kills any child still running) and reap it."""
        with self._lock:
            self._close_unlocked(timeout)

    def _close_unlocked(self, timeout: float = 10.0) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._popen is not None:
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
            self._popen = None


# One fork server per pytest worker, started by the first process that forks.
FORK_SERVER = ForkServer()
atexit.register(FORK_SERVER.close)  # the session fixture closes it first


def spawn_mode() -> str:
    """`fork` (default: from the fork server) or `exec` (`TEST_SPAWN=exec`: Popen)."""
    mode = os.environ.get("TEST_SPAWN", "fork").strip().lower() or "fork"
    if mode not in ("fork", "exec"):
        raise ValueError(f"TEST_SPAWN must be fork or exec, not {mode!r}")
    return mode


def without_configuration(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` less what would configure the rotator behind a test's back: ROTATOR_*,
    VAULT_* and BAO_* in any case (settings read names case-insensitively) and
    CREDENTIALS_DIRECTORY."""
    return {
        k: v
        for k, v in environ.items()
        if not k.upper().startswith(("ROTATOR_", "VAULT_", "BAO_")) and k != "CREDENTIALS_DIRECTORY"
    }


def fork_server_env() -> dict[str, str]:
    """The env the fork server runs with, and every chaos process starts from."""
    environ = without_configuration(os.environ)
    environ["PYTHONUNBUFFERED"] = "1"  # audit lines survive kill -9
    return environ


def start_process(
    args: Sequence[str],
    env: Mapping[str, str],
    cwd: str | os.PathLike[str],
    stdout: int,
    stderr: int,
    module: str = "rotator",
    how: str | None = None,
) -> tuple[subprocess.Popen[bytes] | ForkedProcess, str]:
    """`python -m MODULE ARGS` with exactly `env` and `cwd`, stdin from /dev/null,
    stdout and stderr on the given fds, in a session of its own; and how it was
    started ("fork" or "exec"). `how` overrides `TEST_SPAWN`; a fork becomes an
    exec when `env` differs from the server's in a variable read at start-up."""
    how = how or spawn_mode()
    if how == "fork":
        FORK_SERVER.ensure_running(fork_server_env())
        if baked_env_differs(FORK_SERVER.env, env):
            how = "exec"
    if how == "fork":
        return FORK_SERVER.spawn(args, env, cwd, stdout, stderr, module), how
    popen = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    return popen, how


def _read_signed(conn: socket.socket) -> int | None:
    """One signed 8-byte number from `conn`, or None at end of stream."""
    data = b""
    while len(data) < _PID.size:
        chunk = conn.recv(_PID.size - len(data))
        if not chunk:
            return None
        data += chunk
    return int(_PID.unpack(data)[0])


# ---------------------------------------------------------------------------
# The server (runs as `python forkserver.py FD PRELOAD`)


class _Child:
    """What a forked child must become: one request of the harness."""

    def __init__(self, request: dict[str, Any], stdout: int, stderr: int) -> None:
        self.module: str = request["module"]
        self.args: list[str] = list(request["args"])
        self.env: dict[str, str] = dict(request["env"])
        self.cwd: str = request["cwd"]
        self.ignored: list[int] = list(request["ignored"])
        self.stdout = stdout
        self.stderr = stderr


def _serve(control_fd: int, preload: Sequence[str]) -> _Child | None:
    """The server loop; returns only in a forked child (its request) or at shutdown (None)."""
    for name in preload:
        with contextlib.suppress(ImportError):
            __import__(name)
    if threading.active_count() != 1:
        raise RuntimeError(f"preloading started threads: {threading.enumerate()}")
    sys.stdout.flush()
    sys.stderr.flush()
    # What is loaded now lives as long as any child: in the permanent generation,
    # a child's collections do not walk it (and copy every page they touch).
    import gc

    gc.freeze()

    control = socket.socket(fileno=control_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops on EOF only
    signal.set_wakeup_fd(wake_w)
    children: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = children.pop(pid, None)
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.sendall(_PID.pack(os.waitstatus_to_exitcode(status)))
                conn.close()

    while True:
        ready = {key.fileobj for key, _ in selector.select()}
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_r, 4096):
                    pass
            reap()
        if control not in ready:
            continue
        message, fds, _, _ = socket.recv_fds(control, 16, 3)
        if not message:  # the harness closed the control socket, or died
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for pid, conn in list(children.items()):
                with contextlib.suppress(ChildProcessError, OSError):
                    _, status = os.waitpid(pid, 0)
                    conn.sendall(_PID.pack(os.waitstatus_to_exitcode(status)))
                conn.close()
            return None
        conn = socket.socket(fileno=fds[0])
        try:
            length = _read_signed(conn)
            body = b""
            while length is not None and len(body) < length:
                chunk = conn.recv(length - len(body))
                if not chunk:
                    break
                body += chunk
            child = _Child(json.loads(body), fds[1], fds[2])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"fork server: bad request: {exc!r}", file=sys.stderr)
            conn.close()
            for fd in fds[1:]:
                os.close(fd)
            continue
        pid = os.fork()
        if pid == 0:
            # The child: nothing of the server stays open or installed.
            signal.set_wakeup_fd(-1)
            selector.close()
            control.close()
            conn.close()
            for other in children.values():
                other.close()
            os.close(wake_r)
            os.close(wake_w)
            _set_signals(child.ignored)
            return child
        os.close(fds[1])
        os.close(fds[2])
        with contextlib.suppress(OSError):  # the harness gave up on it: still reap it
            conn.sendall(_PID.pack(pid))
        children[pid] = conn
        reap()  # a child that died before its entry went in


# Ignored by Popen's child until exec (restore_signals resets them), then by CPython's start-up.
_RESET_BY_POPEN = frozenset({signal.SIGPIPE, signal.SIGXFSZ})


def ignored_signals() -> list[int]:
    """The signals this process ignores that an exec'd child of Popen would inherit ignored."""
    return sorted(
        int(signum)
        for signum in signal.valid_signals()
        if signum not in _RESET_BY_POPEN and signal.getsignal(signum) == signal.SIG_IGN
    )


def _set_signals(ignored: Sequence[int]) -> None:
    """The dispositions `python -m` started by Popen from a process ignoring `ignored` has."""
    for signum in signal.valid_signals():
        if signum in ignored or signum in _RESET_BY_POPEN:
            handler: Any = signal.SIG_IGN
        elif signum == signal.SIGINT:
            handler = signal.default_int_handler
        else:
            handler = signal.SIG_DFL
        if signal.getsignal(signum) != handler:
            with contextlib.suppress(OSError, ValueError):  # SIGKILL, SIGSTOP
                signal.signal(signum, handler)


def _stdio(fd: int, write: bool, name: str, like: Any, unbuffered: bool) -> io.TextIOWrapper:
    """A stdio stream as CPython's `create_stdio` makes it (pylifecycle.c, POSIX)."""
    buffering = 0 if unbuffered and write else -1
    buf = io.open(fd, "wb" if write else "rb", buffering, closefd=False)  # noqa: SIM115, UP020
    raw = buf if buffering == 0 else buf.raw
    raw.name = name
    tty = raw.isatty()
    stream = io.TextIOWrapper(
        buf,
        encoding=like.encoding,
        errors=like.errors,
        newline="\n",
        line_buffering=not unbuffered and (tty or fd == 2),
        write_through=unbuffered,
    )
    stream.mode = "w" if write else "r"
    return stream


def _become(child: _Child) -> None:
    """Turn this forked server into `python -m MODULE ARGS` started by Popen, and run it."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((devnull, 0), (child.stdout, 1), (child.stderr, 2)):
        if fd != target:
            os.dup2(fd, target)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # Popen's close_fds: only 0, 1 and 2 stay
    unbuffered = bool(child.env.get("PYTHONUNBUFFERED"))  # the server runs without -u
    stdin = _stdio(0, False, "<stdin>", sys.__stdin__, unbuffered)
    stdout = _stdio(1, True, "<stdout>", sys.__stdout__, unbuffered)
    stderr = _stdio(2, True, "<stderr>", sys.__stderr__, unbuffered)
    sys.stdin = sys.__stdin__ = stdin
    sys.stdout = sys.__stdout__ = stdout
    sys.stderr = sys.__stderr__ = stderr

    os.chdir(child.cwd)
    os.environ.clear()
    os.environ.update(child.env)
    import time

    time.tzset()
    _reread_import_time_env()
    import random

    random.seed()

    sys.path.insert(0, os.getcwd())  # `-m`: the current directory first
    sys.orig_argv = [sys.executable, "-m", child.module, *child.args]
    sys.argv = ["-m", *child.args]  # runpy puts the module's path in argv[0]
    import runpy

    # rotator/__main__.py raises SystemExit(main()); the interpreter exits with it, as
    # after `python -m rotator`.
    runpy.run_module(child.module, run_name="__main__", alter_sys=True)


def _reread_import_time_env() -> None:
    """Values preloaded modules took from the environment at import, read from the new one."""
    hvac_names = ("VAULT_CACERT", "VAULT_CAPATH", "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY")
    for module_name in ("hvac.constants.client", "hvac.v1"):
        module = sys.modules.get(module_name)
        for name in hvac_names if module is not None else ():
            setattr(module, name, os.environ.get(name))
    handlers = sys.modules.get("wsgiref.handlers")
    if handlers is not None:
        handlers.BaseHandler.os_environ = handlers.read_environ()


def main(argv: Sequence[str]) -> None:
    if sys.path and Path(sys.path[0] or ".").resolve() == _SCRIPT.parent:
        del sys.path[0]  # the script's directory: a `-m` process does not have it
    preload = [name for name in argv[2].split(",") if name] if len(argv) > 2 else list(PRELOAD)
    child = _serve(int(argv[1]), preload)
    if child is not None:
        _become(child)


if __name__ == "__main__":
    main(sys.argv)
