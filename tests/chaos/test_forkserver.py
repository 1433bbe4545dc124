"""The fork server starts processes the chaos tests cannot tell from exec'd ones.

Each test starts the same process both ways, forked from the fork server
(tests/forkserver.py) and exec'd with Popen (`TEST_SPAWN=exec`), and
compares what the chaos tests depend on: exit codes, output files, env, cwd,
argv, session, signal dispositions and what a signal does to a running daemon.
A probe module (written to the work directory, found there through `sys.path[0]`
as `python -m probe`) reports what a process sees from inside.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import Proc, World, wait_until
from tests.forkserver import ForkServer, fork_server_env

HOW = ("exec", "fork")

PROBE = """
import json, os, random, signal, sys, threading, time

what = sys.argv[1]
if what == "report":
    import hvac.v1

    print(json.dumps({
        "argv": sys.argv,
        "orig_argv": sys.orig_argv,
        "path0": sys.path[0],
        "path": sys.path[1:],
        "cwd": os.getcwd(),
        "environ": dict(os.environ),
        "main": [__name__, __spec__.name, sys.modules["__main__"].__file__],
        "session": [os.getsid(0) == os.getpid(), os.getpgid(0) == os.getpid()],
        "signals": {str(s): str(signal.getsignal(s)) for s in signal.valid_signals()},
        "stdio": [
            [s.name, s.encoding, s.errors, s.line_buffering, s.write_through,
             type(s.buffer).__name__, s.mode]
            for s in (sys.stdin, sys.stdout, sys.stderr)
        ],
        "stdin": sys.stdin.read(),
        "fds": sorted(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "flags": list(sys.flags),
        "hvac": [hvac.v1.VAULT_CACERT, hvac.v1.VAULT_CLIENT_CERT],
        "random": random.random(),
    }))
elif what == "exit":
    sys.exit(int(sys.argv[2]))
elif what == "raise":
    raise RuntimeError("boom")
elif what == "interrupt":
    raise KeyboardInterrupt
elif what == "buffered":
    sys.stdout.write("out, no newline")
    sys.stderr.write("err, no newline")
elif what == "wait":
    print("ready")
    time.sleep(60)
"""


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Every process a test starts; killed and reaped after it."""
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.close()


def probe(
    procs: list[Proc], workdir: Path, how: str, *args: str, env: dict[str, str] | None = None
) -> Proc:
    """Start `python -m probe ARGS` in `workdir` (`how`: fork or exec)."""
    workdir.mkdir(exist_ok=True)
    if not (workdir / "probe.py").exists():  # rewritten, a child still reading it saw it empty
        (workdir / "probe.py").write_text(PROBE)
    environ = fork_server_env() | {"HOME": str(workdir)} if env is None else env
    proc = Proc(list(args), environ, workdir, f"{how}-{'-'.join(args)}", module="probe", how=how)
    procs.append(proc)
    return proc


def report(procs: list[Proc], workdir: Path, how: str, env: dict[str, str]) -> dict[str, Any]:
    proc = probe(procs, workdir, how, "report", env=env)
    assert (0, "") == (proc.wait(30), proc.stderr())
    return dict(json.loads(proc.stdout()))


def rotator(world: World, how: str, *args: str, env: dict[str, str] | None = None) -> Proc:
    """Start `python -m rotator ARGS` in the world's directory, as `World.spawn` does."""
    world._names += 1
    proc = Proc(list(args), world.env(env), world.workdir, f"{how}-{world._names}", how=how)
    world.procs.append(proc)
    return proc


def test_probe_sees_what_exec_gives(tmp_path: Path, procs: list[Proc]) -> None:
    """A forked child sees the exec'd child's argv, path, env, cwd, stdio, fds and signals."""
    env = fork_server_env() | {"HOME": str(tmp_path), "VAULT_CACERT": "/nowhere/ca.pem"}
    env.pop("PATH", None)  # the server has it: the child must not
    env["ROTATOR_PROBE_ONLY_HERE"] = "1"
    seen = {how: report(procs, tmp_path / how, how, env) for how in HOW}
    for how in HOW:
        seen[how].pop("random")
        workdir = str(tmp_path / how)
        assert workdir == seen[how].pop("cwd") == seen[how].pop("path0")
        assert [f"{workdir}/probe.py", "report"] == seen[how].pop("argv")
        assert ["__main__", "probe", f"{workdir}/probe.py"] == seen[how].pop("main")
    assert env == seen["fork"]["environ"]
    assert [True, True] == seen["fork"]["session"]
    assert ["/nowhere/ca.pem", None] == seen["fork"]["hvac"]
    assert "<built-in function default_int_handler>" == seen["fork"]["signals"][str(signal.SIGINT)]
    assert seen["exec"] == seen["fork"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGUSR1])
def test_a_signal_the_worker_ignores_is_ignored_as_exec_leaves_it(
    tmp_path: Path, procs: list[Proc], signum: signal.Signals
) -> None:
    """Dispositions follow the worker at each start, not the server's: an ignored one stays so."""
    env = fork_server_env() | {"HOME": str(tmp_path)}
    saved = signal.signal(signum, signal.SIG_IGN)
    try:
        seen = {how: report(procs, tmp_path / how, how, env)["signals"] for how in HOW}
    finally:
        signal.signal(signum, saved)
    assert (str(signal.SIG_IGN), seen["exec"]) == (seen["fork"][str(signum)], seen["fork"])
    after = report(procs, tmp_path / "after", "fork", env)["signals"]
    fresh = "<built-in function default_int_handler>" if signum == signal.SIGINT else "0"
    assert fresh == after[str(int(signum))]


def test_two_children_draw_different_random_numbers(tmp_path: Path, procs: list[Proc]) -> None:
    """Two forked children do not share the server's random state."""
    env = fork_server_env() | {"HOME": str(tmp_path)}
    draws = {report(procs, tmp_path, "fork", env)["random"] for _ in range(2)}
    assert 2 == len(draws)


def test_exit_codes_and_last_words_match_exec(tmp_path: Path, procs: list[Proc]) -> None:
    """sys.exit(n), an exception and an uncaught KeyboardInterrupt end both ways alike."""
    cases = (("exit", "0"), ("exit", "3"), ("raise",), ("interrupt",))
    ends = {}
    for how in HOW:
        started = [probe(procs, tmp_path / how, how, *case) for case in cases]
        ends[how] = [
            (p.wait(30), p.stdout(), (p.stderr().splitlines() or [""])[-1]) for p in started
        ]
    assert [0, 3, 1, -signal.SIGINT] == [code for code, _, _ in ends["fork"]]
    assert ends["exec"] == ends["fork"]


def test_buffered_output_is_flushed_at_exit(tmp_path: Path, procs: list[Proc]) -> None:
    """Without PYTHONUNBUFFERED, what is still buffered reaches the files when the child exits."""
    env = fork_server_env() | {"HOME": str(tmp_path)}
    env.pop("PYTHONUNBUFFERED")
    outputs = {}
    for how in HOW:
        proc = probe(procs, tmp_path / how, how, "buffered", env=env)
        outputs[how] = (proc.wait(30), proc.stdout(), proc.stderr())
    assert (0, "out, no newline", "err, no newline") == outputs["fork"]
    assert outputs["exec"] == outputs["fork"]


def test_child_leads_its_own_session_and_dies_of_kill9(tmp_path: Path, procs: list[Proc]) -> None:
    """A running child is its own session's leader; kill -9 reads -9, as Popen's returncode."""
    for how in HOW:
        proc = probe(procs, tmp_path / how, how, "wait")
        assert wait_until(lambda p=proc: "ready" in p.stdout(), 30)
        assert (proc.pid, True) == (os.getsid(proc.pid), proc.alive())
        assert os.getsid(0) != os.getsid(proc.pid)
        proc.kill9()
        assert (-signal.SIGKILL, False) == (proc.returncode, proc.alive())


@pytest.fixture
def world(make_world: Any) -> World:
    world: World = make_world()
    world.seed(2, managed=True)
    return world


def test_usage_and_config_errors_match_exec(world: World) -> None:
    """A usage error (2) and a missing relative --config (78) exit and print alike."""
    ends = {}
    for how in HOW:
        started = [rotator(world, how, "bogus"), rotator(world, how, "plan", "--config", "no.toml")]
        ends[how] = [(p.wait(30), p.stdout(), p.stderr()) for p in started]
    assert [2, 78] == [code for code, _, _ in ends["fork"]]
    assert "config file no.toml does not exist" in ends["fork"][1][2]
    assert ends["exec"] == ends["fork"]


def test_relative_config_and_rotator_env_are_honoured(world: World) -> None:
    """A --config relative to cwd, and ROTATOR_CONFIG from the env given, are read."""
    world.config("relative.toml")
    codes = {}
    for how in HOW:
        by_flag = rotator(world, how, "plan", "--config", "relative.toml")
        by_env = rotator(world, how, "plan", env={"ROTATOR_CONFIG": "relative.toml"})
        codes[how] = [by_flag.wait(30), by_env.wait(30)]
    assert {"exec": [0, 0], "fork": [0, 0]} == codes


def test_server_env_is_not_seen(world: World) -> None:
    """A ROTATOR_ variable in the fork server's own env (not in the child's) is not honoured."""
    config = world.config("server-only.toml")
    server = ForkServer()
    server.ensure_running(fork_server_env() | {"ROTATOR_CONFIG": str(config)})
    try:
        out = (world.workdir / "server-env.stdout").open("wb")
        err = (world.workdir / "server-env.stderr").open("wb")
        with out, err:
            child = server.spawn(["plan"], world.env(), world.workdir, out.fileno(), err.fileno())
            code = child.wait(30)
    finally:
        server.close()
    assert 78 == code
    assert "no config file" in (world.workdir / "server-env.stderr").read_text()


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name
)
def test_daemon_takes_signals_as_exec(world: World, signum: signal.Signals) -> None:
    """A running `rotator run` ends alike both ways on SIGTERM, SIGINT and kill -9."""
    ends = {}
    for how in HOW:
        daemon = rotator(world, how, "run", "--config", str(world.config()))
        assert wait_until(lambda d=daemon: "cycle.finished" in d.event_names(), 30, 0.02)
        daemon.signal(signum)
        code = daemon.wait(30)
        stopped = "daemon.stopping" in daemon.event_names()
        ends[how] = (code, daemon.event_names()[-1:] if stopped else [], daemon.stderr())
    orderly = (0, ["daemon.stopped"], "")
    assert ((-9, [], "") if signum == signal.SIGKILL else orderly) == ends["fork"]
    assert ends["exec"] == ends["fork"]
