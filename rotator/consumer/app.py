"""A complete webhook consumer: an HTTP server that verifies Monite deliveries with the kit.

    VAULT_ADDR=... VAULT_TOKEN=... python -m rotator.consumer.app \\
        --listen 127.0.0.1:8080 --hook-key-file /run/secrets/hook-key
    python -m rotator.consumer.app --secret-dir /run/monite-webhooks/secrets \\
        --pid-file /run/consumer/consumer.pid        # beside a Vault Agent

Owns the command line (`make_server`, `read_hook_key`, `parse_listen`,
`main`) and re-exports `ConsumerApp` and the hook notice from `_server` (its
HTTP handler is `_http`). It is in the package, not in `examples/`, because
`rotator demo` runs it; it uses only the kit's public face.

Routes:
- `POST /webhooks`: a Monite delivery, verified with `rotator.consumer`
  (the secret picked by the payload's `webhook_subscription_id` from Vault);
  200 verified, 400 malformed, 401 refused, 503 Vault unavailable. A verified
  delivery whose event `id` was seen in the last `--dedupe-ttl` (default 1h;
  0 = off) is answered 200 `"status": "duplicate"` and not handled again:
  during a swap Monite sends each event through the original subscription
  and its successor.
- `POST /rotated`: the rotator's hook notice, signed in `X-Rotator-Signature`
  (`t=<unix>,v1=<hex HMAC-SHA256 over "{t}.{body}">`, keyed with the hook key);
  drops the cached secret of the subscription(s) it names (`subscription_id`,
  or a list `subscription_ids`; all of them when it names none), so the next
  delivery reads the new secret. 401 when the signature does not verify.
- `GET /stats`: counters per subscription: received, verified, rejected,
  reloaded, duplicates (verified, dropped as already seen); and
  `deduplication`: its window and totals (null when off).

A body comes with `Content-Length` or `Transfer-Encoding: chunked`, at most
1 MiB either way (413 beyond; 411 with neither). SIGHUP drops every cached
secret (each is read again on its next delivery) and says so in one line on
stderr: what `deploy/consumers/vault-agent/reload.sh` sends to the pid in
`--pid-file` (written at start, removed at exit). `--secret-dir DIR` reads the
secrets from one file per subscription id (`DirectorySecretSource`, what a
Vault Agent template per subscription renders) instead of Vault; a file not
named like one (a UUID) is never read, and those present at start are named
in one warning line on stderr.
`--poll-interval N` re-reads every known subscription's record every N
seconds (what Vault Agent's `static_secret_render_interval` does for a
template); 0 turns it off. For a demo or a test, `ConsumerApp` runs the same
server in a thread: `start()`, `url`, `stats()`, `stop()`. A web app of one's
own answers the notice with `handle_hook_notice` (see `examples/consumer_app.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from rotator import signature
from rotator.consumer import (
    Deduplicator,
    DirectorySecretSource,
    SecretSource,
    VaultSecretSource,
    Verifier,
)
from rotator.consumer._server import (
    HOOK_HEADER,
    ConsumerApp,
    Counters,
    handle_hook_notice,
)
from rotator.secret import Secret

DEFAULT_DEDUPE_TTL = 3600.0
"""Seconds an event id is remembered by default (`--dedupe-ttl`).

On by default because a duplicate answered 200 and not handled again is right
whichever subscription brought the event, and costs at most the
Deduplicator's bound in memory. The two deliveries of one event during a swap
come moments apart, or a retry later; an hour covers the default
`rotation.overlap` (15m) with room for Monite's retries. Size it as at least
`overlap` plus Monite's retry horizon (docs/swap.md, "Consumers").
"""


def read_hook_key(path: Path | str) -> Secret:
    """The hook key from a file (one line; the trailing newline is not part of it)."""
    value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    if not value:
        raise ValueError(f"the hook key file {path} is empty")
    return Secret(value)


def make_server(
    *,
    vault_addr: str | None = None,
    vault_token: str | None = None,
    mount: str = "secret",
    prefix: str = "monite/webhooks",
    secret_dir: Path | str | None = None,
    listen: tuple[str, int] = ("127.0.0.1", 0),
    hook_key_file: Path | str | None = None,
    hook_key: Secret | None = None,
    poll_interval: float = 0.0,
    cache_ttl: float = 300.0,
    tolerance: float = signature.DEFAULT_TOLERANCE,
    reread: bool = True,
    dedupe_ttl: float = DEFAULT_DEDUPE_TTL,
    name: str = "consumer",
) -> ConsumerApp:
    """A ConsumerApp (not started) reading the rotator's records from Vault with a token,
    or, with `secret_dir`, one file per subscription id (`DirectorySecretSource`).

    `reread=False` makes a consumer that learns of rotations only from its poll
    or its hook, like one reading a file Vault Agent renders. The hook key is
    `hook_key`, or read from `hook_key_file`. `dedupe_ttl`: seconds an event id
    is remembered to drop its duplicates (0: no deduplication). A `tolerance`
    that is not a finite number of seconds >= 0, or an empty `hook_key`, is a
    ValueError here, never an error answer to a request.
    """
    source: SecretSource
    if secret_dir is not None:
        source = DirectorySecretSource(secret_dir, ttl=cache_ttl)
    elif vault_addr and vault_token:
        import hvac  # this app's choice of source; the kit itself needs hvac only here

        client = hvac.Client(url=vault_addr, token=vault_token, timeout=5)
        source = VaultSecretSource(client, mount=mount, prefix=prefix, ttl=cache_ttl)
    else:
        raise ValueError("give vault_addr and vault_token, or secret_dir")
    verifier = Verifier(source, tolerance=tolerance, reread=reread)
    if hook_key is None and hook_key_file is not None:
        hook_key = read_hook_key(hook_key_file)
    if dedupe_ttl < 0:
        raise ValueError("dedupe_ttl must be at least 0 seconds (0 = off)")
    return ConsumerApp(
        verifier,
        hook_key=hook_key,
        listen=listen,
        poll_interval=poll_interval,
        deduplicator=Deduplicator(dedupe_ttl) if dedupe_ttl > 0 else None,
        name=name,
    )


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (loopback by default: `:8080` is 127.0.0.1:8080)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return (host.strip("[]") or "127.0.0.1", int(port))


def _seconds(text: str) -> float:
    """A number of seconds, at least 0 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0 (0 = off)")
    return value


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(s|m|h|d)?")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(text: str) -> float:
    """Seconds from `90`, `90s`, `15m`, `1h` or `1d`, at least 0 (argparse type)."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration such as 90s, 15m or 1h (0 = off)"
        )
    return float(found[1]) * _UNIT_SECONDS[found[2] or "s"]


def _hook_key_argument(text: str) -> Secret:
    """The hook key read from the file `text` names (argparse type); never shows the key."""
    try:
        return read_hook_key(text)
    except FileNotFoundError:
        raise argparse.ArgumentTypeError(
            f"{text} does not exist; write the rotator's hook key to it "
            "(openssl rand -hex 32 > FILE, the same file as the hook's secret_file)"
        ) from None
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text} is empty; write the rotator's hook key to it "
            "(openssl rand -hex 32 > FILE, the same file as the hook's secret_file)"
        ) from None
    except (OSError, UnicodeError) as exc:
        raise argparse.ArgumentTypeError(
            f"cannot read {text} ({type(exc).__name__}); make it a readable text file"
        ) from None


def _directory(text: str) -> Path:
    """An existing directory (argparse type)."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text} is not a directory; point it at the directory the secret files are "
            "rendered to (one file per subscription id)"
        )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m rotator.consumer.app`: serve until SIGTERM or SIGINT; 2 on a usage error.

    SIGHUP drops every cached secret; `--pid-file` is written at start and removed at exit.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--vault-addr", default=os.environ.get("VAULT_ADDR"))
    parser.add_argument("--mount", default="secret")
    parser.add_argument("--prefix", default="monite/webhooks")
    parser.add_argument(
        "--secret-dir",
        type=_directory,
        default=None,
        help="read each subscription's secret from DIR/<subscription id> instead of Vault",
    )
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8080))
    parser.add_argument("--hook-key-file", type=_hook_key_argument, default=None)
    parser.add_argument("--poll-interval", type=_seconds, default=0.0, help="seconds; 0 = off")
    parser.add_argument("--cache-ttl", type=_seconds, default=300.0)
    parser.add_argument(
        "--dedupe-ttl",
        type=_duration,
        default=DEFAULT_DEDUPE_TTL,
        metavar="DURATION",
        help="drop a delivery whose event id was verified within DURATION (90s, 15m, 1h; "
        "0 = off; default 1h): a swap sends each event through two subscriptions",
    )
    parser.add_argument(
        "--pid-file", type=Path, default=None, help="write this process's pid here (SIGHUP reloads)"
    )
    args = parser.parse_args(argv)
    token = os.environ.get("VAULT_TOKEN")
    if args.secret_dir is None and (not args.vault_addr or not token):
        parser.error("set VAULT_ADDR (or --vault-addr) and VAULT_TOKEN, or give --secret-dir")
    app = make_server(
        vault_addr=args.vault_addr,
        vault_token=token,
        mount=args.mount,
        prefix=args.prefix,
        secret_dir=args.secret_dir,
        listen=args.listen,
        hook_key=args.hook_key_file,
        poll_interval=args.poll_interval,
        cache_ttl=args.cache_ttl,
        dedupe_ttl=args.dedupe_ttl,
    )

    def on_signal(signum: int, frame: object) -> None:
        threading.Thread(target=app.stop, daemon=True).start()  # shutdown() must not run here

    def reload() -> None:
        dropped = app.reload()
        print(
            f"consumer: SIGHUP: dropped {len(dropped)} cached secret(s); "
            "each is read again on its next delivery",
            file=sys.stderr,
            flush=True,
        )

    def on_hangup(signum: int, frame: object) -> None:
        threading.Thread(target=reload, daemon=True).start()  # no lock taken in a handler

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    try:
        if args.pid_file is not None:
            try:
                args.pid_file.write_text(f"{os.getpid()}\n", encoding="ascii")
            except OSError as exc:
                app.stop()
                parser.error(f"--pid-file: cannot write {args.pid_file} ({type(exc).__name__})")
        print(f"consumer listening on {app.url}", flush=True)
        app.serve_forever()
    finally:
        if args.pid_file is not None:
            with contextlib.suppress(OSError):
                if args.pid_file.read_text(encoding="ascii").strip() == str(os.getpid()):
                    args.pid_file.unlink()
    return 0


__all__ = [
    "DEFAULT_DEDUPE_TTL",
    "HOOK_HEADER",
    "ConsumerApp",
    "Counters",
    "handle_hook_notice",
    "main",
    "make_server",
    "parse_listen",
    "read_hook_key",
]


if __name__ == "__main__":
    raise SystemExit(main())
