"""The `rotator` command line: argument parsing, exit codes, and nothing else.

Exit codes (DESIGN.md): 0 all good, 1 some rotation failed, 2 usage,
69 a dependency is unreachable, 77 a dependency refused our credentials
(Monite or Vault said 401/403: a wrong token, client secret or AppRole/
Kubernetes login, or a Vault policy that denies a path), 78 bad configuration;
the daemon adds 70 for an internal error (a bug), 130 is Ctrl-C. A user
mistake gets one line on stderr and no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from rotator import __version__
from rotator.audit import CONFIG_SECRET_FILE_EXPOSED, configure_logging, get_logger
from rotator.config import ExposedFile, Settings, load_settings
from rotator.engine import (
    CycleReport,
    Engine,
    force_for,
    open_engine,
    owner_identity,
    subscriptions_missing,
)
from rotator.errors import (
    ConfigError,
    DependencyError,
    MoniteAuthError,
    VaultAuthError,
    VaultConfigError,
)
from rotator.hardening import harden_process
from rotator.policy import REASONS, Decision, Force

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE: Monite or Vault unreachable
EXIT_NOPERM = 77  # sysexits EX_NOPERM: Monite or Vault refused our credentials
EXIT_CONFIG = 78


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line plus a pointer to --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


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
    _add_sandbox_parser(commands)
    return parser


def _add_sandbox_parser(commands: Any) -> None:
    sandbox = commands.add_parser(
        "sandbox",
        help="run the Monite and Vault emulators on loopback, to try the rotator by hand",
        description=(
            "Start Monite and Vault emulators on 127.0.0.1, seed subscriptions (some due for "
            "rotation), and write a ready-to-use config; then try `rotator check`, `plan` and "
            "`run --once` against it. Secrets go to files (mode 0600), never to the screen. "
            "Runs until Ctrl-C or SIGTERM, then removes every file it wrote."
        ),
    )
    sandbox.add_argument(
        "--subscriptions",
        type=_subscription_count,
        default=8,
        metavar="N",
        help="webhook subscriptions to seed, 1..1000 (default: 8)",
    )
    sandbox.add_argument(
        "--monite-port", type=_port, metavar="PORT", help="Monite's port (default: a free one)"
    )
    sandbox.add_argument(
        "--vault-port", type=_port, metavar="PORT", help="Vault's port (default: a free one)"
    )
    sandbox.add_argument(
        "--deliver-to",
        type=_http_url,
        metavar="URL",
        help="POST a signed webhook event per enabled subscription to URL, as Monite does",
    )
    sandbox.add_argument(
        "--deliver-every",
        type=_delivery_interval,
        metavar="SECONDS",
        help="seconds between delivery rounds, 0.1..3600 (default: 5; needs --deliver-to)",
    )
    sandbox.add_argument(
        "--config-out",
        type=Path,
        metavar="PATH",
        help="write the config here, a new file (default: in a fresh temporary directory)",
    )


def _subscription_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number between 1 and 1000")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1..65535)")
    return value


def _delivery_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= 3600:  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds between 0.1 and 3600"
        )
    return value


def _http_url(text: str) -> str:
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        parts = urllib.parse.urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an http(s) URL; give one like http://127.0.0.1:8000/webhooks"
        )
    return text


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
        return int(exc.code or 0)

    if args.command == "demo":
        from rotator.sandbox.demo import run_demo

        return run_demo(duration=args.duration)
    if args.command == "sandbox":
        return _sandbox(args, environ)

    exposed: list[ExposedFile] = []
    try:
        settings = load_settings(args.config, environ, exposed=exposed)
    except ConfigError as exc:
        _say(f"config error: {exc}")
        return EXIT_CONFIG

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
            return asyncio.run(_rotate(settings, owner, args.ids, args.all))
        if args.command == "plan":
            return asyncio.run(_plan(settings, owner, as_json=args.json))
        return asyncio.run(_check(settings, owner))
    except DependencyError as exc:
        _say(str(exc))
        return dependency_exit_code(exc)
    except KeyboardInterrupt:
        return 130


def _sandbox(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from rotator.sandbox.deliveries import DEFAULT_EVERY
    from rotator.sandbox.standalone import SandboxOptions, run_sandbox

    if args.deliver_every is not None and args.deliver_to is None:
        print(
            "rotator sandbox: --deliver-every needs --deliver-to URL (see rotator sandbox --help)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    options = SandboxOptions(
        subscriptions=args.subscriptions,
        monite_port=args.monite_port,
        vault_port=args.vault_port,
        deliver_to=args.deliver_to,
        deliver_every=DEFAULT_EVERY if args.deliver_every is None else args.deliver_every,
        config_out=args.config_out,
    )
    return run_sandbox(options, environ=environ)


def _say(message: str) -> None:
    print(f"rotator: {message}", file=sys.stderr)


def dependency_exit_code(exc: DependencyError) -> int:
    """78 when Vault's answer shows a setting is wrong (no such namespace or mount, not KV
    v2), 77 when Monite or Vault refused our credentials or a policy denies a path
    (waiting cannot fix either), else 69."""
    if isinstance(exc, VaultConfigError):
        return EXIT_CONFIG
    return EXIT_NOPERM if isinstance(exc, MoniteAuthError | VaultAuthError) else EXIT_UNAVAILABLE


def _exit_code(report: CycleReport) -> int:
    if report.error is not None:
        _say(report.error)
        return EXIT_NOPERM if report.refused else EXIT_UNAVAILABLE
    _say(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


async def _cycle_until_signal(
    engine: Engine, settings: Settings, force: Force | None = None
) -> tuple[CycleReport | None, int | None]:
    """One cycle that SIGTERM/SIGINT cannot cut between regenerate and commit.

    A signal stops new rotations; those in flight get `rotation.shutdown_timeout`
    to commit. Returns the report (None if the drain timed out) and the signal.
    """
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
        engine.request_stop()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    cycle = asyncio.ensure_future(engine.run_cycle(force))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({cycle, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not cycle.done():
            timeout = settings.rotation.shutdown_timeout.total_seconds()
            await asyncio.wait({cycle}, timeout=timeout)
        if not cycle.done():
            cycle.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cycle
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
    return 130 if received == signal.SIGINT else code


async def _run_once(settings: Settings, owner: str) -> int:
    async with open_engine(settings, owner=owner) as engine:
        report, received = await _cycle_until_signal(engine, settings)
    if report is None:
        return _signal_exit(EXIT_FAILED, received)
    return _signal_exit(_exit_code(report), received)


async def _rotate(settings: Settings, owner: str, ids: list[str] | None, everything: bool) -> int:
    async with open_engine(settings, owner=owner) as engine:
        report, received = await _cycle_until_signal(engine, settings, force_for(ids, everything))
    if report is None:
        return _signal_exit(EXIT_FAILED, received)
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
        if o.kind not in ("rotated", "recovered")
        and (o.subscription_id in wanted or (everything and o.reason == "claimed"))
    ]
    for outcome in unrotated:
        why = REASONS.get(outcome.reason, outcome.reason)
        _say(f"subscription {outcome.subscription_id} was not rotated: {why}")
    if (missing or unrotated) and code == EXIT_OK:
        return EXIT_FAILED
    return code


async def _plan(settings: Settings, owner: str, *, as_json: bool) -> int:
    async with open_engine(settings, owner=owner) as engine:
        report = await engine.plan()
    rows = [_plan_row(d) for d in report.decisions]
    if as_json:
        print(
            json.dumps(
                {"decisions": rows, "orphans": report.orphans, "unreadable": report.unreadable},
                indent=2,
            )
        )
        return EXIT_OK
    if not rows:
        print("Monite lists no webhook subscriptions.")
    header = ("SUBSCRIPTION", "OBJECT TYPE", "STATUS", "AGE", "MAX AGE", "ACTION", "WHY")
    table = [header] + [
        (
            r["subscription_id"],
            r["object_type"],
            r["status"],
            _human_age(r["age_seconds"]),
            _human_age(r["max_age_seconds"]),
            r["action"],
            REASONS.get(r["reason"], r["reason"]),
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header) - 1)]
    for row in table:
        cells = [str(c).ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, str(row[-1])]))
    for orphan in report.orphans:
        print(f"orphan: Vault holds a record for {orphan}, which Monite no longer lists")
    for subscription_id in report.unreadable:
        print(f"unreadable: Vault did not return the record of {subscription_id}; see the log")
    due = sum(1 for r in rows if r["action"] == "rotate")
    print(f"{due} of {len(rows)} subscriptions would be rotated now.")
    return EXIT_OK


def _plan_row(decision: Decision) -> dict[str, Any]:
    sub = decision.subscription
    return {
        "subscription_id": sub.id,
        "object_type": sub.object_type,
        "status": sub.status,
        "url": _display_url(sub.url),
        "action": decision.action,
        "reason": decision.reason,
        "age_seconds": None if decision.age is None else decision.age.total_seconds(),
        "max_age_seconds": decision.max_age.total_seconds(),
        "vault_version": decision.record.version or None,
        # The record's protocol state (active, rotating, settling, stale); None: no record.
        "record_state": decision.record.state if decision.record.exists else None,
    }


def _display_url(url: str) -> str:
    """A webhook URL without user info or query: those often carry credentials.

    The host and port are shown as Monite lists them: urllib's `.port` raises
    on a port it deems invalid (99999), and a listing must never crash on one.
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    query = "?…" if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", "")) + query


def _human_age(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


async def _check(settings: Settings, owner: str) -> int:
    # open_engine verifies Vault first (namespace, login, KV v2 mount, capabilities);
    # engine.check then proves the Monite credentials and a listing of each side.
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
    return EXIT_OK
