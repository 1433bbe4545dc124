"""The chaos harness: emulators, config files, rotator subprocesses, steps, invariant, recovery.

Every scenario builds a `World` (one Monite emulator, one Vault emulator, a
least-privilege Vault token, secrets in files, a config writer), starts real
`python -m rotator` processes against it, injects faults through the
emulators' knobs, and ends by checking the one invariant of the product:

    for every managed subscription (one with a Vault record) the secret in
    Vault equals Monite's current secret, and no record is left mid-rotation.

A secret is *lost* when Monite's current secret is not in Vault after
recovery has had its chance.

Every process writes its stdout and stderr to files (so a `kill -9` cannot
block on a pipe); `World.close()` kills what is still running and passes all
output to `remember_output`, so the suite-wide secret hygiene scan covers it.

Processes are forked from a pre-imported fork server (`tests/forkserver.py`):
a start costs a fork instead of a fresh interpreter's ~0.35 s of imports, and the
child is still a separate process in its own session running `python -m
rotator`'s real entry point with exactly the env, cwd, argv, stdio files and
signal dispositions an exec'd one gets; its exit code reads as `Popen`'s (-9 for
kill -9). `TEST_SPAWN=exec` starts every process the old way, `subprocess.Popen`
of `python -m rotator` (to compare, or to rule the fork server out); a process
whose env differs from the server's in a variable read only at interpreter
start-up or import (`PYTHON*`, locale, ...) is exec'd anyway. The fork server is
stopped at the end of the session (tests/conftest.py).

`CHAOS_PROFILE=quick` (default) keeps trials few; `CHAOS_PROFILE=full` runs many.
Figures go to `bench-results/chaos-<profile>.json` through `Figures`.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from tests.conftest import remember_output
from tests.forkserver import ForkedProcess, fork_server_env, start_process

T = TypeVar("T")
R = TypeVar("R")

PROFILE = os.environ.get("CHAOS_PROFILE", "quick").strip().lower() or "quick"
FULL = PROFILE == "full"

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "bench-results"

MOUNT = "secret"
PREFIX = "monite/webhooks"
CLAIM_TTL = 5.0  # seconds: short, so recovery tests wait little
MONITE_TIMEOUT = 1.0  # seconds: claim_ttl must be at least 4x this
RECOVERY_SLACK = 5.0  # "a few seconds" on top of the protocol's windows

# The rotator's least privilege: the policy operators install
# (deploy/vault/policy.hcl), so every chaos scenario proves it is enough. Its
# paths are written for MOUNT and PREFIX above.
ROTATOR_POLICY = (ROOT / "deploy" / "vault" / "policy.hcl").read_text()


def trials(quick: int, full: int) -> int:
    """How many trials this profile runs."""
    return full if FULL else quick


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.002) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass; returns the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parallel(fn: Callable[[T], R], items: Sequence[T], workers: int = 4) -> list[R]:
    """`fn` over `items` on a few threads (trials are independent worlds), in order."""
    if len(items) <= 1 or workers <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


# ---------------------------------------------------------------------------
# Processes


class Proc:
    """One `python -m rotator ...` process (`module`: another module) with its output in files.

    Forked from the fork server by default, exec'd with Popen under
    `TEST_SPAWN=exec` (`how`, "fork" or "exec", overrides it and says which
    was used); the interface is the same.
    """

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        workdir: Path,
        name: str,
        module: str = "rotator",
        how: str | None = None,
    ):
        self.args = list(args)
        self.module = module
        self.name = name
        self.out_path = workdir / f"{name}.stdout"
        self.err_path = workdir / f"{name}.stderr"
        self._out = self.out_path.open("wb")
        self._err = self.err_path.open("wb")
        self.started = time.monotonic()
        self.ended: float | None = None
        self._remembered = False
        self.popen: subprocess.Popen[bytes] | ForkedProcess
        self.popen, self.how = start_process(
            self.args, env, workdir, self._out.fileno(), self._err.fileno(), module, how
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        """Send `signum` to this process only (by its pid)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signum)

    def kill9(self) -> float:
        """SIGKILL now; returns the monotonic time of the kill."""
        at = time.monotonic()
        self.signal(signal.SIGKILL)
        self.wait(10)
        return at

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if still running after `timeout` seconds."""
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        if self.ended is None:
            self.ended = time.monotonic()
        self._close_files()
        return code

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def _close_files(self) -> None:
        for handle in (self._out, self._err):
            with contextlib.suppress(OSError):
                handle.close()

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""

    def remember(self) -> None:
        """Hand everything this process printed to the suite-wide hygiene scan (once)."""
        if self._remembered or self.alive():
            return
        self._remembered = True
        remember_output(self.stdout(), self.stderr())

    def events(self) -> list[dict[str, Any]]:
        """The JSON audit lines of stdout (a torn last line after kill -9 is skipped)."""
        found = []
        for line in self.stdout().splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                found.append(event)
        return found

    def event_names(self) -> list[str]:
        return [str(e.get("event")) for e in self.events()]

    def close(self) -> None:
        """Kill if still running, reap, remember output."""
        if self.alive():
            self.signal(signal.SIGKILL)
        self.wait(10)
        self._close_files()
        self.remember()


# ---------------------------------------------------------------------------
# A world: two emulators, credentials, config


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def render_toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """A TOML document from {table: {key: value}}; a value of None leaves the key out."""
    lines: list[str] = []
    for table, keys in sections.items():
        lines.append(f"[{table}]")
        for key, value in keys.items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


class World:
    """Monite and Vault emulators on loopback plus everything a rotator process needs."""

    _counter = 0
    _counter_lock = threading.Lock()

    def __init__(
        self,
        workdir: Path,
        *,
        rate_limit: float = 1000.0,
        burst: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.procs: list[Proc] = []
        self.monite = MoniteEmulator(rate_limit=rate_limit, burst=burst, seed=seed)
        self.client_id, self.client_secret = self.monite.add_client()
        self.vault = VaultEmulator(seed=seed)
        self.monite.start()
        self.vault.start()
        self.vault.put_policy("rotator", ROTATOR_POLICY)
        self.token = self.vault.create_token(policies=["rotator"])
        self.secret_file = workdir / "monite_client_secret"
        self.secret_file.write_text(self.client_secret + "\n")
        self.token_file = workdir / "vault_token"
        self.token_file.write_text(self.token + "\n")
        self.health_port = free_port()
        self.seeded: list[str] = []
        self._names = 0

    # -- setup --------------------------------------------------------------

    def seed(
        self, count: int, *, managed: bool = False, age_days: float = 0.0, **kwargs: Any
    ) -> list[str]:
        """`count` subscriptions at Monite; `managed`: each with an `active` record too,
        rotated `age_days` ago.

        Unmanaged ones are taken under management by a first rotation that
        settles (2 x claim_ttl) and is then rotated once more; managed ones
        rotate once when they fall due.
        """
        ids = [self.monite.seed(**kwargs) for _ in range(count)]
        rotated = datetime.now(UTC) - timedelta(days=age_days)
        now = rotated.isoformat().replace("+00:00", "Z")
        for sid in ids if managed else ():
            self.vault.kv_write(
                MOUNT,
                f"{PREFIX}/{sid}",
                {"secret": self.monite.current_secret(sid), "state": "active", "rotated_at": now},
            )
        self.seeded.extend(ids)
        return ids

    def new_token(self) -> str:
        """Issue a fresh rotator token and put it in the token file (after a revocation)."""
        self.token = self.vault.create_token(policies=["rotator"])
        self.token_file.write_text(self.token + "\n")
        return self.token

    def sections(self, **overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """The default config tables for this world, with per-table overrides merged in."""
        base: dict[str, dict[str, Any]] = {
            "monite": {
                "base_url": self.monite.base_url,
                "client_id": self.client_id,
                "client_secret_file": str(self.secret_file),
                "timeout": f"{MONITE_TIMEOUT:g}s",
                "max_retries": 4,
            },
            "vault": {
                "address": self.vault.address,
                "token_file": str(self.token_file),
                "mount": MOUNT,
                "path_prefix": PREFIX,
                "timeout": "2s",
                "max_retries": 2,
            },
            "policy": {"max_age": "30d"},
            "schedule": {"interval": "1s"},
            "rotation": {
                "claim_ttl": f"{CLAIM_TTL:g}s",
                "concurrency": 4,
                "commit_retry_for": "60s",
                "shutdown_timeout": "20s",
            },
            "health": {"listen": f"127.0.0.1:{self.health_port}"},
        }
        for table, keys in overrides.items():
            base.setdefault(table, {}).update(keys)
        return base

    def config(self, name: str = "rotator.toml", **overrides: Mapping[str, Any]) -> Path:
        path = self.workdir / name
        path.write_text(render_toml(self.sections(**overrides)))
        return path

    # -- processes ----------------------------------------------------------

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        environ = fork_server_env()
        environ["HOME"] = str(self.workdir)  # no ~/.vault-token from the host
        environ.update(extra or {})
        return environ

    def spawn(
        self,
        *args: str,
        config: Path | None = None,
        env: Mapping[str, str] | None = None,
        auto_config: bool = True,
    ) -> Proc:
        """Start `python -m rotator ARGS --config CONFIG`; without `config` (and unless
        `auto_config` is False or ARGS has --config) a fresh default config is written."""
        argv = list(args)
        if config is None and auto_config and "--config" not in argv:
            config = self.config()
        if config is not None:
            argv += ["--config", str(config)]
        self._names += 1
        name = f"p{self._names:03d}-{'-'.join(a.strip('-') for a in args[:2])}"
        proc = Proc(argv, self.env(env), self.workdir, name)
        self.procs.append(proc)
        return proc

    def run(
        self,
        *args: str,
        config: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Proc:
        """Run to completion (killed after `timeout`); output is remembered."""
        proc = self.spawn(*args, config=config, env=env)
        if proc.wait(timeout) is None:
            proc.close()
        proc.remember()
        return proc

    def run_once(self, config: Path | None = None, timeout: float = 60.0) -> Proc:
        return self.run("run", "--once", config=config, timeout=timeout)

    # -- the invariant --------------------------------------------------------

    def record(self, sid: str) -> dict[str, Any] | None:
        found = self.vault.kv_read(MOUNT, f"{PREFIX}/{sid}")
        return None if found is None else found[0]

    def version(self, sid: str) -> int | None:
        found = self.vault.kv_read(MOUNT, f"{PREFIX}/{sid}")
        return None if found is None else found[1]

    def managed(self) -> list[str]:
        return [sid for sid in self.monite.subscription_ids() if self.record(sid) is not None]

    def mismatched(self, ids: Iterable[str] | None = None) -> list[str]:
        """Managed ids whose Vault secret is not Monite's current secret."""
        bad = []
        for sid in self.monite.subscription_ids() if ids is None else ids:
            record = self.record(sid)
            if record is not None and record.get("secret") != self.monite.current_secret(sid):
                bad.append(sid)
        return bad

    def rotating(self) -> list[str]:
        """Managed ids whose record is still mid-rotation (a claim not yet committed)."""
        return [
            sid
            for sid in self.monite.subscription_ids()
            if (self.record(sid) or {}).get("state") == "rotating"
        ]

    def unmanaged(self, ids: Iterable[str] | None = None) -> list[str]:
        """Enabled ids (of `ids`, default all seeded) that have no Vault record."""
        enabled = {
            sid
            for sid in self.monite.subscription_ids()
            if self.monite.subscription(sid)["status"] == "enabled"
        }
        pool = self.seeded if ids is None else list(ids)
        return [sid for sid in pool if sid in enabled and self.record(sid) is None]

    def unsettled(self) -> list[str]:
        """Managed ids whose record is not `active` yet: claimed, settling or stale."""
        return [
            sid
            for sid in self.monite.subscription_ids()
            if (self.record(sid) or {}).get("state", "active") != "active"
        ]

    def settled(self, ids: Iterable[str] | None = None) -> bool:
        """The invariant, plus: every record `active` and every enabled id under management.

        Protocol version 2 converges to `active`: a record `settling` or `stale`
        is rotated once more, and may hold a secret Monite has replaced until then.
        """
        pool = None if ids is None else list(ids)
        return not self.mismatched(pool) and not self.unsettled() and not self.unmanaged(pool)

    def lost(self) -> int:
        """Secrets lost: managed ids whose Vault secret is not Monite's (call after recovery)."""
        return len(self.mismatched())

    def earliest_claim_expiry(self) -> float | None:
        """Seconds until the earliest claim or settling window ends (0 if one has), else None.

        Measured on the Vault emulator's clock, which judges claims and windows.
        """
        now = datetime.fromtimestamp(self.vault.now(), UTC)
        waits = []
        for sid in self.unsettled():
            if (self.record(sid) or {}).get("state") == "stale":
                waits.append(0.0)  # due at once
                continue
            expires = (self.record(sid) or {}).get("claim_expires_at")
            if isinstance(expires, str):
                at = datetime.fromisoformat(expires.replace("Z", "+00:00"))
                waits.append(max(0.0, (at - now).total_seconds()))
        return min(waits) if waits else None

    def regenerations(self) -> dict[str, int]:
        return {sid: self.monite.regenerate_count(sid) for sid in self.monite.subscription_ids()}

    # -- recovery -------------------------------------------------------------

    def recover_with_run_once(
        self, since: float, budget: float, config: Path | None = None
    ) -> float:
        """Run `run --once` until settled; seconds from `since` (inf if never).

        The first run starts at once. After a run that leaves only live claims
        or settling windows behind, the next starts when the earliest ends on
        Vault's clock (runs before then could only skip them, and their
        start-up CPU slowed every other trial); otherwise runs follow back to
        back.
        """
        deadline = since + budget
        while time.monotonic() < deadline:
            self.run_once(config=config, timeout=max(5.0, deadline - time.monotonic()))
            if self.settled():
                return time.monotonic() - since
            # Only when every enabled subscription has a record is a live claim
            # or window all that is left. The writer's claim_expires_at is a lower
            # bound of the end Vault judges: this never sleeps past a useful run.
            wait = 0.0 if self.unmanaged() else self.earliest_claim_expiry() or 0.0
            time.sleep(max(0.2, min(wait, 2 * CLAIM_TTL, deadline - time.monotonic())))
        return float("inf")

    def recover_with_daemon(self, since: float, budget: float, config: Path | None = None) -> float:
        """Start `rotator run`, wait until settled, stop it; seconds from `since` (inf if never)."""
        daemon = self.spawn("run", config=config)
        try:
            ok = wait_until(self.settled, max(0.0, since + budget - time.monotonic()), 0.05)
            took = time.monotonic() - since if ok else float("inf")
        finally:
            daemon.signal(signal.SIGTERM)
            if daemon.wait(25) is None:
                daemon.close()
            daemon.remember()
        return took

    def converge(
        self,
        config: Path | None = None,
        max_cycles: int = 3,
        after_cycle: Callable[[int], None] | None = None,
    ) -> tuple[int, list[Proc]]:
        """Run up to `max_cycles` cycles (`run --once`) until settled; (cycles, processes).

        Between cycles it waits out live claims and settling windows as the
        daemon does, but on Vault's clock: claims and windows are judged on
        Vault's time, so the harness moves the emulator's clock past them
        instead of sleeping (no rotator process runs in between). Cycles is
        max_cycles + 1 when it never settled.
        `after_cycle(n)` runs after cycle n (to end a fault that lasts one cycle).
        """
        procs = []
        for cycle in range(1, max_cycles + 1):
            procs.append(self.run_once(config=config))
            if after_cycle is not None:
                after_cycle(cycle)
            if self.settled():
                return cycle, procs
            wait = self.earliest_claim_expiry()
            if wait is not None:
                # A settling window lasts up to 2 x claim_ttl (a first rotation).
                self.vault.advance_time(min(wait, 2 * CLAIM_TTL) + 1.3)
        return max_cycles + 1, procs

    # -- teardown -------------------------------------------------------------

    def close(self) -> None:
        for proc in self.procs:
            proc.close()
        with contextlib.suppress(Exception):
            self.monite.stop()
        with contextlib.suppress(Exception):
            self.vault.stop()


def tracebacks(procs: Iterable[Proc]) -> list[str]:
    """Names of processes whose output (stderr, or a JSON log line) shows a Python traceback."""
    return [p.name for p in procs if "Traceback (most recent call last)" in p.stderr() + p.stdout()]


# ---------------------------------------------------------------------------
# Figures for docs/reliability.md


@dataclass
class Scenario:
    title: str
    command: str
    faults: set[str] = field(default_factory=set)
    trials: int = 0
    lost: int = 0
    worst_recovery_s: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)


class Figures:
    """Per-scenario figures collected during the run, written as JSON at session end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.scenarios: dict[str, Scenario] = {}
        self.started = time.monotonic()

    def add(
        self,
        key: str,
        *,
        title: str,
        command: str,
        fault: str | Iterable[str],
        lost: int = 0,
        recovery_s: float | None = None,
        trials: int = 1,
        **notes: Any,
    ) -> None:
        with self._lock:
            sc = self.scenarios.setdefault(key, Scenario(title=title, command=command))
            sc.faults.update([fault] if isinstance(fault, str) else fault)
            sc.trials += trials
            sc.lost += lost
            if recovery_s is not None:
                sc.worst_recovery_s = max(sc.worst_recovery_s or 0.0, round(recovery_s, 2))
            for name, value in notes.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    sc.notes[name] = max(sc.notes.get(name, value), value)
                else:
                    sc.notes[name] = value

    def write(self) -> Path | None:
        if not self.scenarios:
            return None
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / f"chaos-{PROFILE}.json"
        # A partial run (one file, -k) replaces its own rows and keeps the others.
        kept: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError, AttributeError):
            kept = dict(json.loads(path.read_text()).get("scenarios", {}))
        body = {
            "profile": PROFILE,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_seconds": round(time.monotonic() - self.started, 1),
            "cpus": os.cpu_count(),
            "claim_ttl_s": CLAIM_TTL,
            "scenarios": kept
            | {
                key: {
                    "title": sc.title,
                    "trials": sc.trials,
                    "faults": sorted(sc.faults),
                    "secrets_lost": sc.lost,
                    "worst_recovery_s": sc.worst_recovery_s,
                    "command": sc.command,
                    **({"notes": sc.notes} if sc.notes else {}),
                    "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                }
                for key, sc in sorted(self.scenarios.items())
            },
        }
        path.write_text(json.dumps(body, indent=2) + "\n")
        return path


FIGURES = Figures()


def rng(label: str) -> random.Random:
    """A random source for one test; seeded from CHAOS_SEED when set, so a run can be replayed."""
    seed = os.environ.get("CHAOS_SEED")
    return random.Random(f"{seed}:{label}") if seed else random.Random()
