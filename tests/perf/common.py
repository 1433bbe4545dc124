"""Shared pieces of the benchmark: profiles, time budgets, figures, percentiles, RSS.

A scenario declares its figures (with their targets) before it measures
anything, so a scenario that fails or runs out of time still prints every
figure, as "n/a" with the reason, instead of silently dropping it.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MONITE_LATENCY = 0.050  # seconds added by the Monite emulator to every /v1 request
VAULT_LATENCY = 0.002  # seconds added by the Vault emulator to every request
RATE_LIMIT = 30.0  # Monite's documented limit, requests per second
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Profile:
    """Sizes and time limits of one bench run (full or --quick)."""

    name: str
    a_subscriptions: int
    c_serial_subscriptions: int
    b_subscriptions: int
    b_rounds: int
    e_sizes: tuple[int, ...]
    f_seconds: float  # per figure, split into measurement windows
    g_seconds: float  # scenario g: how long consumers receive deliveries across rotations
    g_long_poll: bool  # scenario g: include the 60 s poller (needs minutes of real time)
    g_pairs: int  # scenario g: runs of a's cycle with and without a hook, alternated
    h_subscriptions: int  # scenario h: originals due at once, swapped (and regenerated)
    j_seconds: tuple[float, float]  # scenario j: the 5 s and the 60 s pollers' worlds
    timeouts: dict[str, float]


FULL = Profile(
    name="full",
    a_subscriptions=1000,
    c_serial_subscriptions=300,
    b_subscriptions=10_000,
    b_rounds=3,
    e_sizes=(10_000, 50_000, 100_000),
    f_seconds=3.0,
    g_seconds=420.0,
    g_long_poll=True,
    g_pairs=3,
    h_subscriptions=1000,
    j_seconds=(150.0, 420.0),
    timeouts={
        "a": 240,
        "b": 180,
        "c": 120,
        "d": 60,
        "e": 420,
        "f": 90,
        "g": 900,
        "h": 420,
        "j": 800,
    },
)

QUICK = Profile(
    name="quick",
    a_subscriptions=200,
    c_serial_subscriptions=100,
    b_subscriptions=5_000,
    b_rounds=2,
    e_sizes=(5_000, 10_000, 20_000),
    f_seconds=1.5,
    g_seconds=40.0,
    g_long_poll=False,
    g_pairs=3,
    h_subscriptions=100,
    j_seconds=(45.0, 0.0),
    timeouts={
        "a": 60,
        "b": 60,
        "c": 40,
        "d": 30,
        "e": 60,
        "f": 40,
        "g": 150,
        "h": 120,
        "j": 100,
    },
)


class Budget:
    """A scenario's deadline; every loop and wait in the scenario is bounded by it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.deadline = self.started + seconds

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def check(self, what: str) -> None:
        if time.monotonic() >= self.deadline:
            raise TimeoutError(f"{what}: scenario budget of {self.seconds:g}s used up")


@dataclass
class Figure:
    """One printed number, its unit and, where the issue sets one, its target."""

    label: str
    unit: str = ""
    target: str = ""
    check: Callable[[float], bool] | None = None
    value: float | None = None
    text: str | None = None  # a value that is not a number (a label, a reason)
    note: str = ""  # why the value is n/a, or context worth printing

    @property
    def verdict(self) -> str:
        if self.check is None:
            return ""
        if self.value is None:
            return "n/a"
        return "PASS" if self.check(self.value) else "MISS"

    def shown(self) -> str:
        if self.value is None:
            if self.text is not None:
                return self.text
            return f"n/a ({self.note or 'not measured'})"
        return _number(self.value) + (f" {self.unit}" if self.unit else "")

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": self.value,
            "text": self.text,
            "unit": self.unit,
            "target": self.target or None,
            "verdict": self.verdict or None,
            "note": self.note or None,
        }


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e12:
        return str(int(value))
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


@dataclass
class Scenario:
    """The figures of one scenario, filled in as they are measured."""

    key: str
    title: str
    figures: dict[str, Figure] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float | None = None
    foreign_cpu: float | None = None  # share of all CPUs used by processes not ours

    def expect(
        self,
        name: str,
        label: str,
        unit: str = "",
        target: str = "",
        check: Callable[[float], bool] | None = None,
    ) -> None:
        self.figures[name] = Figure(label=label, unit=unit, target=target, check=check)

    def set(self, name: str, value: float | None, note: str = "") -> None:
        fig = self.figures[name]
        fig.value = value
        if note:
            fig.note = note

    def set_text(self, name: str, text: str) -> None:
        self.figures[name].text = text

    def na(self, name: str, reason: str) -> None:
        fig = self.figures[name]
        fig.value = None
        fig.note = reason

    def finish(self) -> None:
        """Give every figure left unmeasured the scenario's error as its reason."""
        for fig in self.figures.values():
            if fig.value is None and fig.text is None and not fig.note:
                fig.note = self.error or "not measured"

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "seconds": self.seconds,
            "foreign_cpu_share": self.foreign_cpu,
            "error": self.error,
            "figures": {name: fig.as_json() for name, fig in self.figures.items()},
            "notes": self.notes,
            "data": self.data,
        }


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: always one of the measured values, never interpolated."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def proc_status_kib(pid: int, field_name: str) -> int | None:
    """A `Vm*` field of /proc/PID/status in KiB, or None when unreadable."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return None


def rss_mib(pid: int | None = None) -> float | None:
    kib = proc_status_kib(os.getpid() if pid is None else pid, "VmRSS")
    return None if kib is None else kib / 1024


def hwm_mib(pid: int | None = None) -> float | None:
    kib = proc_status_kib(os.getpid() if pid is None else pid, "VmHWM")
    return None if kib is None else kib / 1024


def machine_busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (/proc/stat), or None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    # user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    busy = sum(int(v) for i, v in enumerate(fields[1:9]) if i not in (3, 4))
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of every child it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class ForeignLoad:
    """How much of the machine other processes used during a span.

    Other helpers' test runs or builds on a shared host steal CPU from the
    rotator and the emulators; this says how much, so a slow figure can be read.
    """

    def __init__(self) -> None:
        self._busy = machine_busy_seconds()
        self._own = own_cpu_seconds()
        self._wall = time.monotonic()

    def share(self) -> float | None:
        busy = machine_busy_seconds()
        if busy is None or self._busy is None:
            return None
        wall = time.monotonic() - self._wall
        foreign = (busy - self._busy) - (own_cpu_seconds() - self._own)
        capacity = wall * (os.cpu_count() or 1)
        return max(0.0, foreign / capacity) if capacity > 0 else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def subprocess_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a product subprocess: ours minus Vault/rotator leftovers, plus extra.

    A VAULT_* or ROTATOR_* variable of the operator's shell must not leak into
    a measurement; PYTHONPATH makes `tests.perf` importable from the repo root.
    """
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "ROTATOR_", "NOTIFY_"))
    }
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra)
    return env
