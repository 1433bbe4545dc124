"""`python -m tests.sim`: the deterministic simulation of the rotation protocol.

    python -m tests.sim --profile quick|full [--strategy regenerate|swap|mixed]
                        [--seed N] [--scenarios K] [--workers W]
    python -m tests.sim --replay SEED [--strategy swap] [--trace]
    python -m tests.sim --plan 'JSON' [--trace]

Runs seeded scenarios of real Engine replicas over in-memory Monite and Vault
in virtual time, prints the figures, and exits 1 when any invariant broke,
with the failing seed, the shrunk fault plan, and the commands to replay both.
Secrets are never printed: only their fingerprints.
"""

from __future__ import annotations

import argparse
import os
import sys

from tests.sim.runner import PROFILES, explain_failure, run_seeds, scenario_for
from tests.sim.scenario import FAULT_KINDS, STRATEGIES, Result, Scenario, run

MAX_EXPLAINED = 3  # failing seeds shrunk and printed per run


def _show(result: Result, *, trace: bool) -> int:
    scenario = result.scenario
    print(scenario.describe())
    if trace:
        print("trace:")
        for line in result.trace:
            print(f"  {line}")
    print(f"regenerates per subscription: {result.regenerates}")
    conv = "never" if result.convergence is None else f"{result.convergence:.1f}s"
    print(f"convergence after the fault phase: {conv} (virtual)")
    print(f"faults injected: {dict(sorted(result.injected.items()))}")
    print(f"trace digest: {result.digest()}")
    if result.ok:
        print("OK: every invariant held")
        return 0
    print("FAILED:")
    for failure in result.failures:
        print(f"  {failure}")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="regenerate",
        help="rotation.strategy of the scenarios; mixed: odd seeds swap (default regenerate)",
    )
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--scenarios", type=int, help="how many (default: the profile's)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--replay", type=int, metavar="SEED", help="run one seed, verbosely")
    parser.add_argument("--plan", metavar="JSON", help="run one scenario given as JSON")
    parser.add_argument("--trace", action="store_true", help="with --replay/--plan: print events")
    parser.add_argument("--no-shrink", action="store_true", help="do not shrink failures")
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        choices=FAULT_KINDS,
        help="drop this kind of fault from every plan (repeatable), to look past a known bug",
    )
    args = parser.parse_args(argv)

    if args.replay is not None:
        scenario = scenario_for(args.replay, args.without, args.strategy)
        return _show(run(scenario), trace=args.trace)
    if args.plan is not None:
        text = args.plan
        if text.startswith("@"):
            with open(text[1:], encoding="utf-8") as handle:
                text = handle.read()
        return _show(run(Scenario.from_json(text)), trace=args.trace)

    count = args.scenarios if args.scenarios is not None else PROFILES[args.profile]
    seeds = range(args.seed, args.seed + count)
    print(
        f"simulating {count} scenarios (seeds {args.seed}..{args.seed + count - 1}, "
        f"profile {args.profile}, strategy {args.strategy}, {args.workers} worker(s))",
        flush=True,
    )
    without = sorted(set(args.without))
    if without:
        print(f"without faults of kind: {', '.join(without)}")
    figures = run_seeds(seeds, workers=args.workers, without=without, strategy=args.strategy)
    print(figures.report())
    if not figures.failed:
        return 0
    print(
        f"\n{len(figures.failed)} scenario(s) failed; seeds: "
        + " ".join(str(s.seed) for s in figures.failed[:50])
    )
    for summary in figures.failed[:MAX_EXPLAINED]:
        print()
        if args.no_shrink:
            print(f"FAILED seed {summary.seed}")
            for failure in summary.failures:
                print(f"  {failure}")
            flags = "".join(f" --without {kind}" for kind in without)
            flags += f" --strategy {args.strategy}" if args.strategy != "regenerate" else ""
            print(f"replay: python -m tests.sim --replay {summary.seed}{flags}")
        else:
            explained = explain_failure(summary.seed, without=without, strategy=args.strategy)
            print(explained[2], flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
