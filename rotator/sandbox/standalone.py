"""`rotator sandbox`: the Monite and Vault emulators standalone on loopback, for trying by hand.

Starts both emulators on 127.0.0.1, seeds subscriptions (some due for
rotation, some fresh, some unmanaged, a disabled one) with their records in
Vault, keeps the Monite client credentials in Vault where the shipped policy
lets the rotator read them, creates a Vault token holding that policy, and
writes a ready-to-use config file. Secrets (the token, the client secret) go
to files with mode 0600 in a private temporary directory, never to the
screen. Runs until SIGINT or SIGTERM, then stops and removes what it wrote.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TextIO

from rotator.model import Record
from rotator.sandbox.deliveries import DEFAULT_EVERY, DeliverySender, display_url
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from rotator.secret import Secret

EXIT_OK = 0
EXIT_USAGE = 2

MOUNT = "secret"
PATH_PREFIX = "monite/webhooks"
CREDENTIALS_PATH = "monite/api-credentials"
POLICY_NAME = "monite-secret-rotator"
MAX_AGE = timedelta(minutes=15)
INTERVAL = "1m"
DEFAULT_SUBSCRIPTIONS = 8

# The rules of deploy/vault/policy.hcl (a test keeps the two equal): the
# sandbox's token holds exactly the least privilege operators install.
SHIPPED_POLICY_HCL = """
path "secret/data/monite/webhooks/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/monite/webhooks/*" {
  capabilities = ["list", "read"]
}
path "secret/data/monite/api-credentials" {
  capabilities = ["read"]
}
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "sys/capabilities-self" {
  capabilities = ["update"]
}
"""

# Seeded in this order, round and round: (kind, object_type, status, secret age or no record).
SEED: tuple[tuple[str, str, str, timedelta | None], ...] = (
    ("due", "payable", "enabled", timedelta(hours=2)),
    ("fresh", "receivable", "enabled", timedelta(minutes=2)),
    ("unmanaged", "counterpart", "enabled", None),
    ("due", "receivable", "enabled", timedelta(hours=26)),
    ("fresh", "entity", "enabled", timedelta(minutes=9)),
    ("disabled", "payable", "disabled", timedelta(hours=5)),
    ("due", "payment", "enabled", timedelta(minutes=40)),
    ("fresh", "approval", "enabled", timedelta(minutes=1)),
)

# Variables that take precedence over the config file the sandbox writes.
OVERRIDING_PREFIXES = ("VAULT_", "ROTATOR_")
HARMLESS = frozenset({"ROTATOR_CONFIG"})


class SandboxError(Exception):
    """A user mistake or an environment problem, said in one line."""


@dataclass(frozen=True)
class SandboxOptions:
    subscriptions: int = DEFAULT_SUBSCRIPTIONS
    monite_port: int | None = None
    vault_port: int | None = None
    deliver_to: str | None = None
    deliver_every: float = DEFAULT_EVERY
    config_out: Path | None = None


def _listen_error(flag: str, port: int, exc: OSError) -> SandboxError:
    if exc.errno == errno.EADDRINUSE:
        why = "address already in use"
    elif exc.errno == errno.EACCES:
        why = "permission denied (ports below 1024 need privileges)"
    else:
        why = f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc})"
    return SandboxError(f"{flag} {port}: {why}; choose another port or omit it")


def _monite_on(port: int | None) -> MoniteEmulator:
    try:
        return MoniteEmulator(port=port or 0)
    except OSError as exc:
        raise _listen_error("--monite-port", port or 0, exc) from None


def _vault_on(port: int | None) -> VaultEmulator:
    try:
        return VaultEmulator(kv_mounts=(MOUNT,), port=port or 0)
    except OSError as exc:
        raise _listen_error("--vault-port", port or 0, exc) from None


def _write_private(path: Path, text: str) -> None:
    """Create `path` (it must not exist) readable and writable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def config_text(*, monite_url: str, vault_address: str, token_file: Path) -> str:
    """The config for the sandbox: no secret in it, the token is read from `token_file`."""
    return f"""\
# Written by `rotator sandbox` for its emulators; removed when the sandbox stops.
[monite]
base_url = {_toml(monite_url)}
# The client id and secret are read from Vault (deploy/vault/policy.hcl grants it).
credentials_path = {_toml(CREDENTIALS_PATH)}

[vault]
address = {_toml(vault_address)}
token_file = {_toml(str(token_file))}
mount = {_toml(MOUNT)}
path_prefix = {_toml(PATH_PREFIX)}

[policy]
max_age = "{int(MAX_AGE.total_seconds() // 60)}m"

[schedule]
interval = {_toml(INTERVAL)}

[log]
format = "console"
"""


class Sandbox:
    """Both emulators, seeded, with their secret files and config; `close()` undoes it all."""

    def __init__(self, options: SandboxOptions, *, report: Callable[[str], None]) -> None:
        self.options = options
        self._report = report
        self.monite: MoniteEmulator | None = None
        self.vault: VaultEmulator | None = None
        self.sender: DeliverySender | None = None
        self.workdir: Path | None = None
        self.config_path: Path | None = None
        self.token_file: Path | None = None
        self.client_secret_file: Path | None = None
        self.client_id = ""
        self.config = ""
        self.banner = ""
        self.kinds: Counter[str] = Counter()
        self._written_config: Path | None = None

    def start(self) -> None:
        """Start and seed everything; a SandboxError (a user mistake) leaves nothing behind."""
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        options = self.options
        # Absolute: the commands it prints are run from another terminal, maybe elsewhere.
        config_out = None if options.config_out is None else options.config_out.absolute()
        if config_out is not None:
            if config_out.exists() or config_out.is_symlink():
                raise SandboxError(
                    f"--config-out {config_out}: file exists; remove it or choose another path"
                )
            if not config_out.parent.is_dir():
                raise SandboxError(
                    f"--config-out {config_out}: directory {config_out.parent} does not exist"
                )
        # Each started at once, so close() releases its port whatever fails next.
        self.monite = _monite_on(options.monite_port)
        self.monite.start()
        self.vault = _vault_on(options.vault_port)
        self.vault.start()

        client_id, client_secret = self.monite.add_client()
        self.client_id = client_id
        self.vault.kv_write(
            MOUNT, CREDENTIALS_PATH, {"client_id": client_id, "client_secret": client_secret}
        )
        self.vault.put_policy(POLICY_NAME, SHIPPED_POLICY_HCL)
        token = self.vault.create_token(policies=[POLICY_NAME])
        self._seed(self.monite, self.vault, options.subscriptions, options.deliver_to)

        self.workdir = Path(tempfile.mkdtemp(prefix="rotator-sandbox-"))  # mode 0700
        self.token_file = self.workdir / "vault-token"
        _write_private(self.token_file, token + "\n")
        self.client_secret_file = self.workdir / "monite-client-secret"
        _write_private(self.client_secret_file, client_secret + "\n")
        text = config_text(
            monite_url=self.monite.base_url,
            vault_address=self.vault.address,
            token_file=self.token_file,
        )
        self.config_path = config_out or self.workdir / "rotator.toml"
        try:
            _write_private(self.config_path, text)
        except OSError as exc:
            raise SandboxError(
                f"--config-out {self.config_path}: cannot write it ({exc.strerror or exc})"
            ) from None
        self._written_config = self.config_path
        self.config = text

        if options.deliver_to is not None:
            # The subscriptions were seeded with that URL: each is delivered to its own.
            self.sender = DeliverySender(
                self.monite, every=options.deliver_every, report=self._report
            )
            self.sender.start()
        self.banner = self._banner(self.monite, self.vault, self.config_path, self.workdir)

    def _seed(
        self, monite: MoniteEmulator, vault: VaultEmulator, count: int, url: str | None
    ) -> None:
        now = datetime.now(UTC)
        for n in range(count):
            kind, object_type, status, age = SEED[n % len(SEED)]
            hook_url = url or f"https://hooks.example.com/{kind}/{n + 1}"
            sid = monite.seed(url=hook_url, object_type=object_type, status=status)
            self.kinds[kind] += 1
            if age is None:
                continue
            record = Record(
                subscription_id=sid,
                secret=Secret(monite.current_secret(sid)),
                rotated_at=now - age,
                url=hook_url,
                object_type=object_type,
                event_types=("created", "updated"),
            )
            vault.kv_write(MOUNT, f"{PATH_PREFIX}/{sid}", record.to_vault())

    def close(self) -> None:
        """Stop everything and remove every file the sandbox wrote; safe to call twice."""
        if self.sender is not None:
            self.sender.stop()
            self.sender = None
        for server in (self.monite, self.vault):
            if server is not None:
                server.stop()
        self.monite = self.vault = None
        if self._written_config is not None:
            self._written_config.unlink(missing_ok=True)
            self._written_config = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _banner(
        self, monite: MoniteEmulator, vault: VaultEmulator, config: Path, workdir: Path
    ) -> str:
        """What the sandbox prints once it is up: addresses, files, config, commands. No secret."""
        kinds = ", ".join(
            f"{self.kinds[kind]} {label}"
            for kind, label in (
                ("due", "due for rotation"),
                ("fresh", "fresh"),
                ("unmanaged", "unmanaged (no record yet)"),
                ("disabled", "disabled"),
            )
            if self.kinds[kind]
        )
        lines = [
            "rotator sandbox: Monite and Vault emulators on loopback, for trying the rotator.",
            "",
            f"Monite: {monite.base_url}",
            f"Vault:  {vault.address}",
            f"Monite client id: {self.client_id}",
            f"Subscriptions: {sum(self.kinds.values())} ({kinds}); "
            f"policy max_age {int(MAX_AGE.total_seconds() // 60)}m",
            "",
            "Secrets are in files (mode 0600), never printed:",
            f"  Vault token (policy {POLICY_NAME}): {self.token_file}",
            f"  Monite client secret: {self.client_secret_file}",
            f"  (the client id and secret are also in Vault at {MOUNT}/{CREDENTIALS_PATH})",
            "",
            f"Config: {config}",
            "----- 8< -----",
            self.config.rstrip("\n"),
            "----- >8 -----",
            "",
            "Try, in another terminal:",
            f"  rotator check --config {config}",
            f"  rotator plan --config {config}",
            f"  rotator run --once --config {config}",
        ]
        if self.sender is not None and self.options.deliver_to is not None:
            lines += [
                "",
                f"Deliveries: a signed event per enabled subscription to its URL (seeded: "
                f"{display_url(self.options.deliver_to)}) every {self.sender.every:g}s "
                '(Monite-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{body}">).',
                f"  A round now: curl -X POST {monite.origin}/_sandbox/deliveries "
                "(GET: the counters per subscription)",
            ]
        lines += [
            "",
            f"Ctrl-C (or SIGTERM) stops the sandbox and removes {workdir}"
            + (f" and {config}" if self.options.config_out is not None else "")
            + ".",
        ]
        return "\n".join(lines) + "\n"


def overriding_variables(environ: Mapping[str, str]) -> list[str]:
    """Names of set variables that override the sandbox's config file (values never read)."""
    return sorted(
        name
        for name, value in environ.items()
        if name.startswith(OVERRIDING_PREFIXES) and name not in HARMLESS and value
    )


def run_sandbox(
    options: SandboxOptions,
    *,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the sandbox until SIGINT or SIGTERM; returns the exit code (0, or 2 for a mistake)."""
    out = out or sys.stdout
    err = err or sys.stderr
    environ = os.environ if environ is None else environ
    stop = threading.Event()
    received: list[int] = []

    def say(message: str) -> None:
        print(f"rotator sandbox: {message}", file=err, flush=True)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    sandbox = Sandbox(options, report=say)
    try:
        try:
            sandbox.start()
        except SandboxError as exc:
            say(str(exc))
            return EXIT_USAGE
        print(sandbox.banner, file=out, end="", flush=True)
        overriding = overriding_variables(environ)
        if overriding:
            say(
                f"note: {', '.join(overriding)} set in this environment override the config "
                "file; unset them where you run the commands"
            )
        stop.wait()
        name = signal.Signals(received[0]).name if received else "stop"
        stats = sandbox.sender.stats if sandbox.sender is not None else None
        sandbox.close()
        summary = ""
        if stats is not None:
            summary = (
                f"; deliveries: {stats.delivered} accepted, {stats.retried} retries, "
                f"{stats.failed} given up"
            )
        print(f"\nrotator sandbox: stopped ({name}){summary}; files removed.", file=out, flush=True)
        return EXIT_OK
    finally:
        sandbox.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
