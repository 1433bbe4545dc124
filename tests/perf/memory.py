"""Scenarios d (idle memory and start-up time of `rotator run`) and e (memory vs N).

Both measure real processes from the outside: /proc/PID/status for resident
memory (VmRSS now, VmHWM the peak), and wall-clock time from spawning the
process to its first sign of readiness.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from tests.perf.common import (
    MONITE_LATENCY,
    REPO_ROOT,
    VAULT_LATENCY,
    Budget,
    Profile,
    Scenario,
    free_port,
    proc_status_kib,
    subprocess_env,
)
from tests.perf.host import EmulatorHost

IDLE_SETTLE = 2.0  # seconds after readiness before idle memory is read
READY_WAIT = 20.0  # seconds: give up waiting for any sign of readiness
NO_HEALTH_GRACE = 2.0  # seconds after cycle.finished before concluding /healthz is absent


@dataclass
class _Signals:
    """Seconds since spawn at which each readiness signal was first seen."""

    notify_ready: float | None = None
    healthz: float | None = None
    readyz: float | None = None
    cycle_finished: float | None = None
    log_tail: list[str] = field(default_factory=list)


def _read_stdout(stream: IO[str], started: float, signals: _Signals) -> None:
    for line in stream:
        signals.log_tail = [*signals.log_tail[-19:], line.rstrip()[:300]]
        if signals.cycle_finished is None and '"cycle.finished"' in line:
            with contextlib.suppress(ValueError):
                if json.loads(line).get("event") == "cycle.finished":
                    signals.cycle_finished = time.monotonic() - started


def _read_notify(
    sock: socket.socket, started: float, signals: _Signals, stop: threading.Event
) -> None:
    sock.settimeout(0.05)
    while not stop.is_set():
        try:
            message = sock.recv(4096).decode(errors="replace")
        except TimeoutError:
            continue
        except OSError:
            return
        if signals.notify_ready is None and "READY=1" in message.split("\n"):
            signals.notify_ready = time.monotonic() - started


def _poll(http: httpx.Client, url: str) -> bool:
    try:
        return http.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def run_d(profile: Profile, budget: Budget, scenario: Scenario, shared: dict[str, Any]) -> None:
    s = scenario
    s.title = (
        "d. `rotator run` daemon on an empty account "
        f"(Monite +{MONITE_LATENCY * 1000:g} ms, Vault +{VAULT_LATENCY * 1000:g} ms)"
    )
    s.expect("ready_signal", "readiness signal used")
    s.expect(
        "ready_seconds",
        "start to ready",
        "s",
        target="<= 1.5 s",
        check=lambda v: v <= 1.5,
    )
    s.expect(
        "idle_rss",
        f"idle RSS ({IDLE_SETTLE:g} s after ready)",
        "MiB",
        target="<= 60 MiB",
        check=lambda v: v <= 60,
    )
    s.expect("peak_rss", "peak RSS so far (VmHWM)", "MiB")
    s.expect("at_notify", "start to sd_notify READY=1", "s")
    s.expect("at_readyz", "start to /readyz 200", "s")
    s.expect("at_healthz", "start to /healthz 200", "s")
    s.expect("at_cycle", "start to first cycle.finished", "s")
    s.expect("stop_seconds", "SIGTERM to exit", "s")
    s.expect("once_seconds", "reference: `rotator run --once`, start to exit", "s")
    s.expect("once_peak", "reference: `rotator run --once`, peak RSS (VmHWM, sampled)", "MiB")

    with EmulatorHost(
        rate_limit=30.0, burst=30, monite_latency=MONITE_LATENCY, vault_latency=VAULT_LATENCY
    ) as host:
        port = free_port()
        with tempfile.TemporaryDirectory(prefix="bench-notify-") as tmp:
            notify_path = str(Path(tmp) / "notify.sock")
            env = subprocess_env(
                {
                    **host.env,
                    "ROTATOR_SCHEDULE__INTERVAL": "1h",
                    "ROTATOR_HEALTH__LISTEN": f"127.0.0.1:{port}",
                    "ROTATOR_LOG__FORMAT": "json",
                    "ROTATOR_LOG__LEVEL": "info",
                    "NOTIFY_SOCKET": notify_path,
                }
            )
            _measure_daemon(s, env, port, notify_path, budget)
        once_env = subprocess_env({**host.env, "ROTATOR_LOG__FORMAT": "json"})
        _measure_once(s, once_env, budget)


def _measure_daemon(
    s: Scenario, env: dict[str, str], port: int, notify_path: str, budget: Budget
) -> None:
    signals = _Signals()
    stop = threading.Event()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rotator", "run"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    readers = [
        threading.Thread(target=_read_stdout, args=(proc.stdout, started, signals), daemon=True),
        threading.Thread(target=_read_notify, args=(notify, started, signals, stop), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        with httpx.Client(timeout=0.25) as http:
            give_up = started + min(READY_WAIT, budget.remaining())
            # Wait for the daemon's own declaration (READY=1 or /readyz); /healthz only
            # says the process is alive, and cycle.finished is the last fallback.
            while time.monotonic() < give_up and proc.poll() is None:
                now = time.monotonic() - started
                if signals.healthz is None and _poll(http, f"http://127.0.0.1:{port}/healthz"):
                    signals.healthz = time.monotonic() - started
                if signals.readyz is None and _poll(http, f"http://127.0.0.1:{port}/readyz"):
                    signals.readyz = time.monotonic() - started
                if signals.notify_ready is not None or signals.readyz is not None:
                    break
                if signals.cycle_finished is not None and now > signals.cycle_finished + (
                    NO_HEALTH_GRACE
                ):
                    break
                time.sleep(0.02)

        if proc.poll() is not None:
            tail = " | ".join(signals.log_tail[-3:])
            reason = f"the daemon exited with {proc.returncode} before it was ready: {tail}"
            for name in ("ready_seconds", "idle_rss", "peak_rss", "stop_seconds"):
                s.na(name, reason)
            s.set_text("ready_signal", "none")
            return
        candidates = (
            ("sd_notify READY=1", signals.notify_ready),
            ("/readyz 200", signals.readyz),
            ("/healthz 200 (no READY=1, no /readyz)", signals.healthz),
            ("first cycle.finished log line (no health endpoint, no sd_notify)", None),
        )
        chosen = next(((name, t) for name, t in candidates if t is not None), None)
        if chosen is None and signals.cycle_finished is not None:
            chosen = (candidates[-1][0], signals.cycle_finished)
        if chosen is not None:
            s.set_text("ready_signal", chosen[0])
            s.set("ready_seconds", chosen[1])
        else:
            s.set_text("ready_signal", "none")
            s.na("ready_seconds", f"no readiness signal within {READY_WAIT:g}s")
            s.na("idle_rss", "never became ready")

        if s.figures["ready_seconds"].value is not None:
            # Keep probing (as an orchestrator would) so the other signals get a time too.
            settle_until = time.monotonic() + min(IDLE_SETTLE, budget.remaining())
            with httpx.Client(timeout=0.25) as http:
                while time.monotonic() < settle_until:
                    if signals.readyz is None and _poll(http, f"http://127.0.0.1:{port}/readyz"):
                        signals.readyz = time.monotonic() - started
                    if signals.healthz is None and _poll(http, f"http://127.0.0.1:{port}/healthz"):
                        signals.healthz = time.monotonic() - started
                    time.sleep(0.05)
            rss = proc_status_kib(proc.pid, "VmRSS")
            hwm = proc_status_kib(proc.pid, "VmHWM")
            s.set("idle_rss", None if rss is None else rss / 1024)
            s.set("peak_rss", None if hwm is None else hwm / 1024)
        for name, at in (
            ("at_notify", signals.notify_ready),
            ("at_readyz", signals.readyz),
            ("at_healthz", signals.healthz),
            ("at_cycle", signals.cycle_finished),
        ):
            s.set(name, at, note="" if at is not None else "not seen")
        s.data["signals"] = {
            "notify_ready": signals.notify_ready,
            "healthz_200": signals.healthz,
            "readyz_200": signals.readyz,
            "cycle_finished": signals.cycle_finished,
        }

        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=min(15.0, max(1.0, budget.remaining())))
            s.set("stop_seconds", time.monotonic() - stopping)
            s.data["exit_code"] = code
        except subprocess.TimeoutExpired:
            s.na("stop_seconds", "did not exit within 15 s of SIGTERM (killed)")
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        notify.close()
        for reader in readers:
            reader.join(timeout=2)
        s.data["log_tail"] = signals.log_tail[-5:]


def _measure_once(s: Scenario, env: dict[str, str], budget: Budget) -> None:
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rotator", "run", "--once"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    give_up = started + min(30.0, budget.remaining())
    # The peak is sampled from /proc (VmHWM of the process's own image) until it exits.
    # Not ru_maxrss from wait4: after fork+exec Linux carries the forking process's
    # high-water mark into the child's, so it would report the bench's size.
    peak_kib = 0
    while True:
        hwm = proc_status_kib(proc.pid, "VmHWM")
        if hwm is not None:
            peak_kib = max(peak_kib, hwm)
        code = proc.poll()
        if code is not None:
            elapsed = time.monotonic() - started
            break
        if time.monotonic() > give_up:
            proc.kill()
            proc.wait(timeout=5)
            s.na("once_seconds", "did not exit within 30 s")
            s.na("once_peak", "did not exit within 30 s")
            return
        time.sleep(0.005)
    s.set("once_seconds", elapsed)
    if peak_kib:
        s.set("once_peak", peak_kib / 1024)
    else:
        s.na("once_peak", "the process exited before /proc could be read")
    s.data["once_exit_code"] = proc.returncode


# ----------------------------------------------------------------- scenario e


def run_e(profile: Profile, budget: Budget, scenario: Scenario, shared: dict[str, Any]) -> None:
    s = scenario
    sizes = profile.e_sizes
    largest = sizes[-1]
    s.title = (
        f"e. memory with {', '.join(f'{n // 1000}k' for n in sizes)} subscriptions listed "
        "(one real cycle in a fresh process; unmanaged=skip so no Vault records)"
    )
    for n in sizes:
        s.expect(f"listed_{n}", f"RSS with {n // 1000}k listed", "MiB")
    for n in sizes:
        s.expect(f"cycle_{n}", f"RSS after the cycle over {n // 1000}k", "MiB")
    s.expect("imported", "RSS after imports, before listing", "MiB")
    fits = largest >= 100_000
    s.expect(
        "peak",
        f"peak RSS (VmHWM) at {largest // 1000}k",
        "MiB",
        target="< 300 MiB at 100k",
        check=(lambda v: v < 300) if fits else None,
    )
    s.expect("slope", "growth per 10k listed (first to last size)", "MiB")
    s.expect(
        "linearity",
        "segment slopes, largest / smallest",
        "x",
        target="<= 1.3 (linear)",
        check=lambda v: v <= 1.3,
    )
    s.expect("list_seconds", f"listing {largest // 1000}k took (emulator, no latency)", "s")

    with EmulatorHost(rate_limit=1e6, burst=1_000_000) as host:
        seeded = 0
        results: dict[int, dict[str, Any]] = {}
        env = subprocess_env(
            {
                **host.env,
                "ROTATOR_POLICY__UNMANAGED": "skip",
                "ROTATOR_MONITE__MAX_PAGES": "5000",
            }
        )
        for n in sizes:
            budget.check(f"memory at {n}")
            host.seed(n - seeded, "none")
            seeded = n
            result = _list_in_subprocess(env, budget)
            results[n] = result
            s.set(f"listed_{n}", result.get("rss_listed"))
            s.set(f"cycle_{n}", result.get("rss_after_cycle"))
            if result.get("listed") != n:
                s.notes.append(f"at {n}: the cycle listed {result.get('listed')}")
        s.data["runs"] = {str(n): r for n, r in results.items()}

    first, last = sizes[0], sizes[-1]
    s.set("imported", results[last].get("rss_imported"))
    if not fits:
        s.set("peak", results[last].get("hwm"), note="the quick profile stops below 100k")
    else:
        s.set("peak", results[last].get("hwm"))
    s.set("list_seconds", results[last].get("list_seconds"))
    listed = [results[n].get("rss_listed") for n in sizes]
    if all(isinstance(v, float) for v in listed):
        values = [float(v) for v in listed if v is not None]
        s.set("slope", (values[-1] - values[0]) / ((last - first) / 10_000))
        slopes = [
            (values[i + 1] - values[i]) / ((sizes[i + 1] - sizes[i]) / 10_000)
            for i in range(len(sizes) - 1)
        ]
        s.data["segment_slopes_per_10k"] = slopes
        if min(slopes) > 0:
            s.set("linearity", max(slopes) / min(slopes))
        else:
            s.na("linearity", f"memory did not grow between sizes: {slopes}")


def _list_in_subprocess(env: dict[str, str], budget: Budget) -> dict[str, Any]:
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tests.perf.list_worker"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=max(1.0, budget.remaining()),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TimeoutError("the listing subprocess ran out of the scenario budget") from exc
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"listing subprocess exited {done.returncode}: {tail[0]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
