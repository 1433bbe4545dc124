"""The Monite and Vault emulators in a process of their own, driven over a pipe.

Why a separate process: the emulators are threaded Python servers. Run inside
the bench process they would share its GIL with the rotator under test, and
every millisecond they spend serving would show up as the rotator's latency.
A real Monite and a real Vault run elsewhere; so do these. The pipe carries
only setup (seeding), knobs (latency) and counters, never the traffic measured.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

RPC_TIMEOUT = 120.0  # seconds: seeding 100k subscriptions takes about 2 s
MONITE_ROUTES = (
    "token",
    "revoke",
    "list",
    "create",
    "get",
    "patch",
    "delete",
    "enable",
    "disable",
    "regenerate_secret",
    "not_found",
    "method_not_allowed",
)
VAULT_KINDS = (
    "kv_read",
    "kv_write",
    "kv_list",
    "kv_delete",
    "kv_metadata_read",
    "kv_metadata_write",
    "kv_config",
    "health",
    "seal_status",
    "login",
    "token",
    "sys",
    "other",
)
MOUNT = "secret"
PREFIX = "monite/webhooks"


class EmulatorHost:
    """Starts both emulators in a child process; `call` runs a named operation there."""

    def __init__(
        self,
        *,
        rate_limit: float,
        burst: int | None = None,
        monite_latency: float = 0.0,
        vault_latency: float = 0.0,
    ) -> None:
        self._options = {
            "rate_limit": rate_limit,
            "burst": burst,
            "monite_latency": monite_latency,
            "vault_latency": vault_latency,
        }
        # spawn, not fork: the bench process may already run threads of its own.
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, self._options), name="bench-emulators", daemon=True
        )
        self._child_conn = child
        self.env: dict[str, str] = {}
        self.monite_url = ""
        self.vault_url = ""

    def __enter__(self) -> EmulatorHost:
        self._process.start()
        self._child_conn.close()
        info = self._receive(60.0)
        self.monite_url = info["monite_url"]
        self.vault_url = info["vault_url"]
        self.env = info["env"]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(("stop", {}))
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)
        self._conn.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def call(self, op: str, timeout: float = RPC_TIMEOUT, **kwargs: Any) -> Any:
        self._conn.send((op, kwargs))
        return self._receive(timeout)

    def _receive(self, timeout: float) -> Any:
        if not self._conn.poll(timeout):
            raise TimeoutError(f"emulator process did not answer within {timeout:g}s")
        try:
            status, payload = self._conn.recv()
        except EOFError as exc:
            raise RuntimeError(f"emulator process exited (code {self._process.exitcode})") from exc
        if status != "ok":
            raise RuntimeError(f"emulator process: {payload}")
        return payload

    # Typed wrappers for the operations the scenarios use.

    def seed(self, count: int, records: str, *, age_days: float = 0.0) -> list[str]:
        """Create `count` subscriptions, with no record ("none") or one aged `age_days`."""
        ids: list[str] = self.call("seed", count=count, records=records, age_days=age_days)
        return ids

    def counts(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = self.call("counts")
        return result

    def consistent(self, ids: list[str]) -> int:
        """How many of `ids` have a Vault record holding Monite's current secret."""
        return int(self.call("consistent", ids=ids))

    def live(self) -> int:
        """How many subscriptions Monite has now (scenario h: one per original, afterwards)."""
        return int(self.call("live"))

    def vault_now(self) -> datetime:
        """The Vault emulator's clock: real time plus what `advance_vault` moved it by."""
        return datetime.fromtimestamp(float(self.call("vault_now")), UTC)

    def advance_vault(self, seconds: float) -> None:
        """Move the Vault emulator's clock on (`VaultEmulator.advance_time`), sleeping nothing."""
        self.call("advance_vault", seconds=seconds)

    def receiver(self) -> str:
        """Start (once) a loopback HTTP receiver in the emulator process; its URL.

        It answers every POST 200 without looking at it: a hook's consumer
        that costs the rotator nothing but the request (scenario g).
        """
        return str(self.call("receiver"))

    def received(self) -> int:
        """How many POSTs the receiver has answered."""
        return int(self.call("received"))


def counts_delta(
    after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    return {
        side: {k: after[side].get(k, 0) - before[side].get(k, 0) for k in after[side]}
        for side in after
    }


# ---------------------------------------------------------------- the child


def _serve(conn: multiprocessing.connection.Connection, options: dict[str, Any]) -> None:
    # Imported here so the parent's import of this module stays light.
    from rotator.model import Record
    from rotator.sandbox.demo import ROTATOR_POLICY_HCL
    from rotator.sandbox.monite import MoniteEmulator
    from rotator.sandbox.vault import VaultEmulator
    from rotator.secret import Secret

    parent = os.getppid()
    receivers: list[_Receiver] = []
    monite = MoniteEmulator(rate_limit=options["rate_limit"], burst=options["burst"], seed=1)
    vault = VaultEmulator(seed=1)
    monite.faults.latency = options["monite_latency"]
    vault.faults.latency = options["vault_latency"]
    monite.start()
    vault.start()
    try:
        client_id, client_secret = monite.add_client()
        vault.put_policy("rotator", ROTATOR_POLICY_HCL)
        token = vault.create_token(policies=["rotator"])
        env = {
            "ROTATOR_MONITE__BASE_URL": monite.base_url,
            "ROTATOR_MONITE__CLIENT_ID": client_id,
            "ROTATOR_MONITE__CLIENT_SECRET": client_secret,
            "VAULT_ADDR": vault.address,
            "VAULT_TOKEN": token,
            "ROTATOR_VAULT__MOUNT": MOUNT,
            "ROTATOR_VAULT__PATH_PREFIX": PREFIX,
        }
        conn.send(("ok", {"monite_url": monite.base_url, "vault_url": vault.address, "env": env}))

        def seed(count: int, records: str, age_days: float) -> list[str]:
            now = datetime.now(UTC)
            ids = []
            for n in range(count):
                url = f"https://hooks.example.com/bench/{n}"
                sid = monite.seed(url=url, object_type="payable")
                ids.append(sid)
                if records == "stored":
                    record = Record(
                        subscription_id=sid,
                        secret=Secret(monite.current_secret(sid)),
                        rotated_at=now - timedelta(days=age_days),
                        url=url,
                        object_type="payable",
                        event_types=("created", "updated"),
                    )
                    vault.kv_write(MOUNT, f"{PREFIX}/{sid}", record.to_vault())
            return ids

        def counts() -> dict[str, dict[str, int]]:
            return {
                "monite": {r: monite.request_count(r) for r in MONITE_ROUTES},
                "vault": {k: vault.request_count(k) for k in VAULT_KINDS},
            }

        def consistent(ids: list[str]) -> int:
            good = 0
            for sid in ids:
                found = vault.kv_read(MOUNT, f"{PREFIX}/{sid}")
                if found is not None and found[0].get("secret") == monite.current_secret(sid):
                    good += 1
            return good

        def live() -> int:
            return len(monite.subscription_ids())

        def latency(monite_s: float, vault_s: float) -> None:
            monite.faults.latency = monite_s
            vault.faults.latency = vault_s

        def rss() -> int:
            return _own_rss_kib()

        def vault_now() -> float:
            return vault.now()

        def advance_vault(seconds: float) -> None:
            vault.advance_time(seconds)

        def receiver() -> str:
            if not receivers:
                receivers.append(_Receiver())
            return receivers[0].url

        def received() -> int:
            return receivers[0].count if receivers else 0

        ops: dict[str, Callable[..., Any]] = {
            "seed": seed,
            "counts": counts,
            "consistent": consistent,
            "live": live,
            "latency": latency,
            "rss": rss,
            "vault_now": vault_now,
            "advance_vault": advance_vault,
            "receiver": receiver,
            "received": received,
        }
        while True:
            # Poll with a timeout so an orphaned child notices its parent died.
            if not conn.poll(1.0):
                if os.getppid() != parent:
                    return
                continue
            try:
                op, kwargs = conn.recv()
            except EOFError:
                return
            if op == "stop":
                return
            try:
                conn.send(("ok", ops[op](**kwargs)))
            except Exception as exc:
                conn.send(("err", f"{op}: {type(exc).__name__}: {exc}"))
    finally:
        for found in receivers:
            found.stop()
        monite.stop()
        vault.stop()


class _Receiver:
    """A loopback HTTP server that answers 200 to every POST and counts them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real consumer's server offers

            def do_POST(self) -> None:
                length = self.headers.get("Content-Length", "0")
                self.rfile.read(min(int(length) if length.isdigit() else 0, 1 << 20))
                with receiver._lock:
                    receiver._count += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="bench-receiver", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _own_rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
