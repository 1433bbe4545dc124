"""The `rotator` command line: argument parsing, exit codes, and nothing else.

Exit codes (`rotator.exitcodes.ExitCode`, listed in the README): 0 all good, 1 some
rotation failed, 2 usage, 69 a dependency is unreachable, 77 a dependency refused our credentials
(Monite or Vault said 401/403: a wrong token, client secret or AppRole/
Kubernetes login, or a Vault policy that denies a path), 78 bad configuration;
the daemon adds 70 for an internal error (a bug), 130 is Ctrl-C. A user
mistake gets one line on stderr and no traceback.

Start-up is kept light: at import this module loads only argparse, the exit
codes and the errors, so `--help`, `--version` and a usage error answer at
once. The config loader is imported once arguments parse, and the engine, the
HTTP and Vault clients and logging only once the config is valid: a config
error (exit 78) never imports httpx, hvac or structlog.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from rotator import __version__
from rotator.cli import sandbox
from rotator.errors import ConfigError, DependencyError
from rotator.exitcodes import ExitCode, dependency_exit_code
from rotator.hardening import harden_process

if TYPE_CHECKING:
    from rotator.config import ExposedFile, Settings
    from rotator.engine import CycleReport, Engine
    from rotator.policy import Force, Strategy


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line plus a pointer to --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rotator",
        description=(
            "Keep Monite webhook signing secrets fresh: regenerate the ones older than "
            "the policy allows and store each new secret in HashiCorp Vault KV v2."
        ),
        epilog=(
            "Exit codes: 0 all good, 1 some rotation failed, 2 usage, "
            "69 Monite or Vault unreachable, 70 internal error, 77 Monite or Vault refused "
            "our credentials (token, client secret, login, or a policy denies a path), "
            "78 bad configuration, 130 interrupted."
        ),
    )
    parser.add_argument("--version", action="version", version=f"rotator {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "--config",
            type=Path,
            metavar="PATH",
            help="TOML config file (default: $ROTATOR_CONFIG; every key can also come "
            "from ROTATOR_<GROUP>__<KEY> environment variables)",
        )
        return sub

    run = with_config(
        commands.add_parser(
            "run",
            help="run the daemon (or one cycle with --once)",
            description="Run rotation cycles on the configured schedule until SIGTERM.",
        )
    )
    run.add_argument("--once", action="store_true", help="run one policy cycle, then exit")

    rotate = with_config(
        commands.add_parser(
            "rotate",
            help="rotate now, ignoring age",
            description=(
                "Rotate the given subscriptions now, whatever their age. Use this instead "
                "of regenerating a secret by hand: a manual regeneration outside the rotator "
                "cannot be detected and leaves Vault holding a dead secret."
            ),
        )
    )
    rotate.add_argument(
        "--force", action="store_true", required=True, help="required: confirms rotating now"
    )
    which = rotate.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--id",
        dest="ids",
        action="append",
        type=_subscription_id,
        metavar="ID",
        help="a webhook subscription id (repeat for several)",
    )
    which.add_argument("--all", action="store_true", help="every subscription the policy manages")
    rotate.add_argument(
        "--strategy",
        choices=("regenerate", "swap"),
        help=(
            "override rotation.strategy for this run. A swap keeps the old secret valid "
            "for rotation.overlap; for a leaked secret use --strategy regenerate, which "
            "kills it at once (and ends a swap's overlap now)"
        ),
    )

    plan = with_config(
        commands.add_parser(
            "plan",
            help="show what a cycle would do, and why; changes nothing",
            description="Show what a cycle would do now, and why. Reads only.",
        )
    )
    plan.add_argument("--json", action="store_true", help="machine-readable output")

    with_config(
        commands.add_parser(
            "check",
            help="validate the config and reach Monite and Vault; changes nothing",
            description="Validate the configuration, then authenticate to Monite and Vault.",
        )
    )

    demo = commands.add_parser(
        "demo",
        help="run the whole system on embedded emulators, no setup",
        description=(
            "Start Monite and Vault emulators on loopback, seed subscriptions, and run "
            "accelerated cycles (seconds instead of days) with the audit log on screen."
        ),
    )
    demo.add_argument(
        "--duration",
        type=_positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long to run cycles (default: 30)",
    )
    demo.add_argument(
        "--strategy",
        choices=("regenerate", "swap"),
        default="regenerate",
        help=(
            "regenerate (default): a timer consumer and a hook consumer side by side; swap: two "
            "timer consumers, one group of subscriptions rotated by swap (a successor "
            "subscription and an overlap), the other by regenerate, and their rejected "
            "deliveries compared"
        ),
    )
    sandbox.add_parser(commands)
    return parser


def _subscription_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a subscription id; Monite ids are UUIDs"
        ) from None


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 1 <= value <= 3600:  # also refuses nan, which compares false with everything
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds between 1 and 3600")
    return value


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    harden_process()  # no core dump may hold a secret: before any config is read
    environ = os.environ if environ is None else environ
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's usage errors and --help
        return int(exc.code or ExitCode.OK)

    if args.command == "demo":
        from rotator.sandbox.demo import run_demo

        return run_demo(duration=args.duration, strategy=args.strategy)
    if args.command == "sandbox":
        return sandbox.run(args, environ)

    from rotator.config import load_settings  # pydantic: only once the arguments parse

    exposed: list[ExposedFile] = []
    try:
        settings = load_settings(args.config, environ, exposed=exposed)
    except ConfigError as exc:
        _say(f"config error: {exc}")
        return ExitCode.CONFIG

    # A valid config: now the wiring (httpx, hvac, the engine) and logging (structlog).
    import asyncio
    import socket

    from rotator.app import owner_identity
    from rotator.audit import CONFIG_SECRET_FILE_EXPOSED, configure_logging, get_logger

    # plan and check print their answer on stdout, so their log goes to stderr.
    quiet = args.command in ("plan", "check")
    configure_logging(
        fmt=settings.log.format,
        level=settings.log.level,
        stream=sys.stderr if quiet else sys.stdout,
    )
    for exposed_file in exposed:  # said once logging is set up; a warning, never a refusal
        get_logger().warning(CONFIG_SECRET_FILE_EXPOSED, **exposed_file.audit_fields())
    owner = owner_identity(socket.gethostname(), os.getpid())
    try:
        if args.command == "run" and args.once:
            return asyncio.run(_run_once(settings, owner))
        if args.command == "run":
            from rotator.daemon import run_daemon

            return run_daemon(settings, owner=owner, config_path=args.config, environ=environ)
        if args.command == "rotate":
            return asyncio.run(_rotate(settings, owner, args.ids, args.all, args.strategy))
        if args.command == "plan":
            from rotator.cli.plan import plan

            return asyncio.run(plan(settings, owner, as_json=args.json))
        return asyncio.run(_check(settings, owner))
    except DependencyError as exc:
        _say(str(exc))
        return dependency_exit_code(exc)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED


def _say(message: str) -> None:
    print(f"rotator: {message}", file=sys.stderr)


def _exit_code(report: CycleReport) -> int:
    if report.error is not None:
        _say(report.error)
        return ExitCode.NOPERM if report.refused else ExitCode.UNAVAILABLE
    _say(report.summary())
    return ExitCode.OK if report.ok else ExitCode.FAILED


async def _cycle_until_signal(
    engine: Engine, settings: Settings, force: Force | None = None
) -> tuple[CycleReport | None, int | None]:
    """One cycle that SIGTERM/SIGINT cannot cut between regenerate and commit.

    A signal stops new rotations; those in flight get `rotation.shutdown_timeout`
    to commit (`rotator.daemon.drain`, as the daemon drains). Returns the report
    (None if the drain timed out) and the signal.
    """
    # Loaded here, as `run_daemon` is: plan and check need no scheduler.
    import asyncio

    from rotator.clock import SystemClock
    from rotator.daemon.drain import drain

    loop = asyncio.get_running_loop()
    received: list[int] = []
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        if not received:
            _say(
                f"{signal.Signals(signum).name}: finishing the rotations in flight, "
                "starting no new ones"
            )
        received.append(signum)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    cycle = asyncio.ensure_future(engine.run_cycle(force))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({cycle, stopped}, return_when=asyncio.FIRST_COMPLETED)
        grace = settings.rotation.shutdown_timeout.total_seconds()
        if not cycle.done() and not await drain(engine, cycle, grace, SystemClock()):
            _say(
                "rotations still in flight after rotation.shutdown_timeout; "
                "their claims expire and the next run recovers them"
            )
            return None, received[0]
        return cycle.result(), received[0] if received else None
    finally:
        stopped.cancel()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _signal_exit(code: int, received: int | None) -> int:
    # Ctrl-C keeps its conventional 130; SIGTERM is an orderly stop, judged by the cycle.
    return ExitCode.INTERRUPTED if received == signal.SIGINT else code


async def _run_once(settings: Settings, owner: str) -> int:
    from rotator.app import open_engine

    async with open_engine(settings, owner=owner) as engine:
        report, received = await _cycle_until_signal(engine, settings)
    if report is None:
        return _signal_exit(ExitCode.FAILED, received)
    return _signal_exit(_exit_code(report), received)


async def _rotate(
    settings: Settings,
    owner: str,
    ids: list[str] | None,
    everything: bool,
    strategy: Strategy | None = None,
) -> int:
    from rotator.app import open_engine
    from rotator.engine import force_for, subscriptions_missing
    from rotator.model import format_duration
    from rotator.reasons import explain

    force = force_for(ids, everything, strategy)
    if (strategy or settings.rotation.strategy) == "swap":
        overlap = format_duration(settings.rotation.overlap)
        _say(
            f"swapping: each old secret stays valid for {overlap} (rotation.overlap); "
            "for a leaked secret use --strategy regenerate"
        )
    async with open_engine(settings, owner=owner) as engine:
        report, received = await _cycle_until_signal(engine, settings, force)
    if report is None:
        return _signal_exit(ExitCode.FAILED, received)
    if received is not None:
        return _signal_exit(_exit_code(report), received)
    code = _exit_code(report)
    missing = subscriptions_missing(report, ids or ())
    for subscription_id in missing:
        _say(f"subscription {subscription_id} is not listed by Monite; nothing rotated for it")
    # Asked for by id, or under --all but held by someone else's live claim: the
    # user asked for "now", so anything not rotated is reported and fails the run.
    wanted = set(ids or ())
    unrotated = [
        o
        for o in report.outcomes
        if o.kind not in ("rotated", "recovered", "swapped")
        and (o.subscription_id in wanted or (everything and o.reason == "claimed"))
    ]
    for outcome in unrotated:
        why = explain(outcome.reason)
        _say(f"subscription {outcome.subscription_id} was not rotated: {why}")
    if (missing or unrotated) and code == ExitCode.OK:
        return ExitCode.FAILED
    return code


async def _check(settings: Settings, owner: str) -> int:
    # open_engine verifies Vault first (namespace, login, KV v2 mount, capabilities);
    # engine.check then proves the Monite credentials and a listing of each side.
    from rotator.app import open_engine

    async with open_engine(settings, owner=owner) as engine:
        await engine.check()
        setup = engine.vault_setup
    vault = f"Vault answered at {settings.vault.address}"
    if settings.vault.namespace:
        vault += f' (namespace "{settings.vault.namespace}")'
    if setup is not None:
        vault += f'; "{setup.mount}" is a KV v2 mount'
        if setup.granted:
            vault += f"; the token may {'; '.join(setup.granted)}"
        if setup.unchecked:
            vault += f"; note: {setup.unchecked}"
    print(f"ok: configuration valid; Monite answered at {settings.monite.base_url}; {vault}")
    return ExitCode.OK
