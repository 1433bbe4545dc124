"""Render the chaos figures as the Markdown table of docs/reliability.md.

    .venv/bin/python -m tests.chaos.report

Reads bench-results/chaos-quick.json and bench-results/chaos-full.json (written
by `.venv/bin/pytest tests/chaos` and `make chaos`) and prints one row per scenario.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tests.chaos.harness import RESULTS_DIR


def _load(profile: str) -> dict[str, Any]:
    path = RESULTS_DIR / f"chaos-{profile}.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def _seconds(value: object) -> str:
    return "–" if value is None else f"{float(str(value)):.1f} s"


def _notes(scenario: dict[str, Any]) -> str:
    notes = scenario.get("notes") or {}
    return (
        "; ".join(
            f"{k.replace('_', ' ')} {v}"
            for k, v in notes.items()
            if not k.startswith("worst_recovery")
        )
        or "–"
    )


def table(quick: dict[str, Any], full: dict[str, Any]) -> str:
    rows = [
        "| # | Scenario | Trials (quick / full) | Faults injected | Secrets lost (full) "
        "| Worst recovery (full) | Other figures (full) | Reproduce |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    q_sc = quick.get("scenarios", {})
    f_sc = full.get("scenarios", {})
    for key in sorted(set(q_sc) | set(f_sc)):
        f = f_sc.get(key) or {}
        q = q_sc.get(key) or {}
        ref = f or q
        faults = ", ".join(ref.get("faults", []))
        if len(faults) > 160:
            faults = f"{len(ref.get('faults', []))} kinds (see the JSON)"
        rows.append(
            f"| {key.split('-')[0]} | {ref.get('title', key)} | {q.get('trials', '–')} / "
            f"{f.get('trials', '–')} | {faults} | {f.get('secrets_lost', '–')} | "
            f"{_seconds(f.get('worst_recovery_s'))} | {_notes(f)} | `{ref.get('command', '')}` |"
        )
    return "\n".join(rows)


def main() -> int:
    quick, full = _load("quick"), _load("full")
    if not quick and not full:
        print("no figures yet: run .venv/bin/pytest tests/chaos first", file=sys.stderr)
        return 1
    print(table(quick, full))
    for name, data in (("quick", quick), ("full", full)):
        if data:
            print(
                f"\n{name}: {data.get('wall_seconds')} s wall on {data.get('cpus')} CPUs, "
                f"finished {data.get('finished_at')}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
