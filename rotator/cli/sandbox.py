"""`rotator sandbox`: its arguments, checked as argparse types, and its start.

The sandbox itself (`rotator.sandbox`) is imported only when the command runs:
the product never depends on it.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rotator.exitcodes import ExitCode


def add_parser(commands: Any) -> None:
    """The `sandbox` subcommand and its options, on `build_parser`'s subparsers."""
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
        help=(
            "seed the subscriptions with URL as their webhook URL, and POST a signed event "
            "per enabled subscription to its URL, as Monite does"
        ),
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


def _whole_number(text: str, low: int, high: int, refusal: str) -> int:
    """`text` as an int from `low` to `high`; else argparse's error `{text!r} {refusal}`."""
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{text!r} {refusal}")
    return value


def _subscription_count(text: str) -> int:
    return _whole_number(text, 1, 1000, "is not a whole number between 1 and 1000")


def _port(text: str) -> int:
    return _whole_number(text, 1, 65535, "is not a TCP port (1..65535)")


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


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """`rotator sandbox`: the emulators until Ctrl-C or SIGTERM; returns the exit code."""
    from rotator.sandbox.deliveries import DEFAULT_EVERY
    from rotator.sandbox.standalone import SandboxOptions, run_sandbox

    if args.deliver_every is not None and args.deliver_to is None:
        print(
            "rotator sandbox: --deliver-every needs --deliver-to URL (see rotator sandbox --help)",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    options = SandboxOptions(
        subscriptions=args.subscriptions,
        monite_port=args.monite_port,
        vault_port=args.vault_port,
        deliver_to=args.deliver_to,
        deliver_every=DEFAULT_EVERY if args.deliver_every is None else args.deliver_every,
        config_out=args.config_out,
    )
    return run_sandbox(options, environ=environ)
