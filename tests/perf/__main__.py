"""`python -m tests.perf [--only a,b,...] [--quick] [--json PATH]`: run the benchmarks.

Prints one table (every figure, its target and PASS/MISS/n/a) and writes the
same figures as JSON (default `bench-results/latest.json`). Each scenario runs
under its own time budget; a global watchdog ends the whole run if something
blocks past every budget combined.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from rotator.audit import configure_logging, reset_logging
from tests.perf.capacity import run_f
from tests.perf.common import FULL, QUICK, REPO_ROOT, Budget, ForeignLoad, Profile, Scenario
from tests.perf.consumers import run_g
from tests.perf.memory import run_d, run_e
from tests.perf.steady import run_b
from tests.perf.swap import run_h, run_j
from tests.perf.throughput import run_a, run_c

BUSY_HOST = 0.2  # share of the CPUs used by others above which the table warns

Runner = Callable[[Profile, Budget, Scenario, dict[str, Any]], None]

# Order matters: c reuses a's cycle when both run.
SCENARIOS: dict[str, tuple[str, Runner]] = {
    "a": ("a. throughput at the rate limit", run_a),
    "b": ("b. steady state", run_b),
    "c": ("c. exposure window", run_c),
    "d": ("d. daemon idle memory and start-up", run_d),
    "e": ("e. memory vs subscriptions listed", run_e),
    "f": ("f. emulators alone", run_f),
    "g": ("g. consumer continuity and hook overhead", run_g),
    "h": ("h. swap cost at the rate limit", run_h),
    "j": ("j. consumer continuity, regenerate vs swap", run_j),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.perf", description=__doc__)
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help="comma-separated scenarios to run (default: all of a,b,c,d,e,f,g,h,j)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes and budgets (about 4 minutes)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=REPO_ROOT / "bench-results" / "latest.json",
        help="where to write the figures (default: bench-results/latest.json)",
    )
    args = parser.parse_args(argv)
    chosen = [key.strip() for key in args.only.split(",") if key.strip()]
    unknown = [key for key in chosen if key not in SCENARIOS]
    if unknown or not chosen:
        parser.error(f"--only takes some of {','.join(SCENARIOS)}, not {args.only!r}")
    args.only = [key for key in SCENARIOS if key in chosen]
    return args


def run_scenario(key: str, profile: Profile, shared: dict[str, Any], out: TextIO) -> Scenario:
    title, runner = SCENARIOS[key]
    scenario = Scenario(key=key, title=title)
    budget = Budget(profile.timeouts[key])
    print(f"running {title} (budget {budget.seconds:g}s) ...", file=out, flush=True)
    started = time.monotonic()
    foreign = ForeignLoad()
    try:
        runner(profile, budget, scenario, shared)
    except TimeoutError as exc:
        scenario.error = f"timed out: {exc}" if str(exc) else "timed out"
    except Exception as exc:
        scenario.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc(file=sys.stderr)
    scenario.seconds = time.monotonic() - started
    scenario.foreign_cpu = foreign.share()
    scenario.finish()
    return scenario


def render(scenarios: list[Scenario], profile: Profile) -> str:
    header = ("figure", "value", "target", "verdict")
    lines: list[str] = []
    rows: list[tuple[str, str, str, str] | str] = []
    for scenario in scenarios:
        took = f"{scenario.seconds:.0f}s" if scenario.seconds is not None else "?"
        other = (
            f", other processes used {scenario.foreign_cpu:.0%} of the CPUs"
            if scenario.foreign_cpu is not None
            else ""
        )
        rows.append(f"{scenario.title}  [{took}{other}]")
        if scenario.error:
            rows.append(f"  ! {scenario.error}")
        for fig in scenario.figures.values():
            value = fig.shown()
            if fig.value is not None and fig.note:
                value += f" ({fig.note})"
            rows.append(("  " + fig.label, value, fig.target, fig.verdict))
        rows.extend(f"  note: {note}" for note in scenario.notes)
    cells = [r for r in rows if isinstance(r, tuple)]
    widths = [max(len(str(c[i])) for c in [header, *cells]) for i in range(4)]
    widths[1] = min(widths[1], 60)

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    cpus = os.cpu_count() or 1
    lines.append(f"monite-secret-rotator bench, profile {profile.name}, {cpus} CPUs")
    busiest = max((sc.foreign_cpu or 0.0 for sc in scenarios), default=0.0)
    if busiest > BUSY_HOST:
        lines.append(
            f"warning: other processes used up to {busiest:.0%} of the CPUs during a "
            "scenario; its timings are pessimistic and noisy"
        )
    lines.append(fmt(header))
    lines.append(fmt(["-" * w for w in widths]))
    for row in rows:
        lines.append(fmt(row) if isinstance(row, tuple) else row)
    verdicts = [f.verdict for s in scenarios for f in s.figures.values() if f.verdict]
    lines.append(
        f"targets: {verdicts.count('PASS')} PASS, {verdicts.count('MISS')} MISS, "
        f"{verdicts.count('n/a')} n/a"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    profile = QUICK if args.quick else FULL
    total = sum(profile.timeouts[k] for k in args.only) + 60
    # Last resort: every wait below is bounded, but a hang in a library would not be.
    faulthandler.dump_traceback_later(total, exit=True)

    # The product logs as deployed (json, info), into /dev/null: its cost is measured.
    sink = open(os.devnull, "w")  # noqa: SIM115 - closed at the end of main
    configure_logging(fmt="json", level="info", stream=sink)
    started = datetime.now(UTC)
    shared: dict[str, Any] = {}
    scenarios: list[Scenario] = []
    try:
        for key in args.only:
            scenarios.append(run_scenario(key, profile, shared, sys.stderr))
    finally:
        reset_logging()
        sink.close()
        faulthandler.cancel_dump_traceback_later()

    table = render(scenarios, profile)
    print(table)
    result = {
        "profile": profile.name,
        "command": "python -m tests.perf"
        + (" --quick" if args.quick else "")
        + (f" --only {','.join(args.only)}" if len(args.only) < len(SCENARIOS) else ""),
        "started_at": started.isoformat(),
        "host": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "scenarios": {s.key: s.as_json() for s in scenarios},
        "table": table.splitlines(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
