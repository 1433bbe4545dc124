"""A complete webhook consumer: an HTTP server that verifies Monite deliveries with the kit.

    VAULT_ADDR=... VAULT_TOKEN=... python -m rotator.consumer.app \\
        --listen 127.0.0.1:8080 --hook-key-file /run/secrets/hook-key

Owns `ConsumerApp` (the server, its routes, counters and polling), the hook
notice (`handle_hook_notice`, `HOOK_HEADER`, `read_hook_key`) and the command
line (`make_server`, `parse_listen`, `main`). It is in the package, not in
`examples/`, because `rotator demo` runs it; it uses only the kit's public face.

Routes:
- `POST /webhooks`: a Monite delivery, verified with `rotator.consumer`
  (the secret picked by the payload's `webhook_subscription_id` from Vault);
  200 verified, 400 malformed, 401 refused, 503 Vault unavailable.
- `POST /rotated`: the rotator's hook notice, signed in `X-Rotator-Signature`
  (`t=<unix>,v1=<hex HMAC-SHA256 over "{t}.{body}">`, keyed with the hook key);
  drops the cached secret of the subscription(s) it names (`subscription_id`,
  or a list `subscription_ids`; all of them when it names none), so the next
  delivery reads the new secret. 401 when the signature does not verify.
- `GET /stats`: counters per subscription: received, verified, rejected, reloaded.

`--poll-interval N` re-reads every known subscription's record every N
seconds (what Vault Agent's `static_secret_render_interval` does for a
template); 0 turns it off. For a demo or a test, `ConsumerApp` runs the same
server in a thread: `start()`, `url`, `stats()`, `stop()`. A web app of one's
own answers the notice with `handle_hook_notice` (see `examples/consumer_app.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rotator import signature
from rotator.consumer import (
    SecretSource,
    SecretSourceError,
    VaultSecretSource,
    Verifier,
    header_value,
    valid_subscription_id,
    verify_request,
)
from rotator.secret import Secret

HOOK_HEADER = "X-Rotator-Signature"  # the hook notice's signature, keyed with the hook key
MAX_REQUEST_BYTES = 1024 * 1024
UNKNOWN = "(none)"  # the stats key of requests that named no subscription


@dataclass
class Counters:
    """What happened to one subscription's deliveries and secret."""

    received: int = 0
    verified: int = 0
    rejected: int = 0
    reloaded: int = 0


class ConsumerApp:
    """The consumer's HTTP server, in a thread (`start`/`stop`) or in the foreground.

    `hook_key` verifies `POST /rotated`; without one the route answers 403.
    `name` tells several apps apart in their repr and thread names (the demo runs two).
    """

    def __init__(
        self,
        verifier: Verifier,
        *,
        hook_key: Secret | None = None,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        poll_interval: float = 0.0,
        clock: Callable[[], float] = time.time,
        hook_tolerance: float = signature.DEFAULT_TOLERANCE,
        name: str = "consumer",
    ) -> None:
        if poll_interval < 0:
            raise ValueError("poll_interval must be at least 0 seconds (0 = off)")
        self.name = name
        self.verifier = verifier
        self.source: SecretSource = verifier.secrets
        self._hook_key = hook_key
        self._clock = clock
        self._hook_tolerance = hook_tolerance
        self._poll_interval = poll_interval
        self._lock = threading.Lock()
        self._counters: dict[str, Counters] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._serving = False
        self._server = ThreadingHTTPServer(listen, _handler_for(self))
        self._server.daemon_threads = True

    def __repr__(self) -> str:
        return f"ConsumerApp({self.url!r}, name={self.name!r})"

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Serve in a background thread (and poll, when `poll_interval` is set)."""
        self._serving = True
        serve = threading.Thread(target=self._server.serve_forever, name=f"{self.name}-http")
        serve.daemon = True
        serve.start()
        self._threads.append(serve)
        if self._poll_interval > 0:
            poll = threading.Thread(target=self._poll, name=f"{self.name}-poll")
            poll.daemon = True
            poll.start()
            self._threads.append(poll)

    def serve_forever(self) -> None:
        """Serve in this thread until `stop` (from a signal handler or another thread)."""
        if self._poll_interval > 0:
            poll = threading.Thread(target=self._poll, name=f"{self.name}-poll")
            poll.daemon = True
            poll.start()
            self._threads.append(poll)
        self._serving = True
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and polling, close the socket; waits (bounded) for the threads."""
        self._stop.set()
        if self._serving:
            self._server.shutdown()  # blocks until serve_forever returns: only when it runs
            self._serving = False
        self._server.server_close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        self._threads.clear()

    # -- counters ------------------------------------------------------------

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters per subscription id (requests naming none under "(none)")."""
        with self._lock:
            return {key: asdict(value) for key, value in sorted(self._counters.items())}

    def _count(self, subscription_id: str | None, **increments: int) -> None:
        with self._lock:
            counters = self._counters.setdefault(subscription_id or UNKNOWN, Counters())
            for name, amount in increments.items():
                setattr(counters, name, getattr(counters, name) + amount)

    # -- routes -----------------------------------------------------------------

    def handle_delivery(
        self, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        """`POST /webhooks`."""
        status, answer = verify_request(self.verifier, headers, body)
        subscription_id = answer.get("subscription_id")
        key = subscription_id if isinstance(subscription_id, str) else None
        if status == 200:
            self._count(key, received=1, verified=1)
        else:
            self._count(key, received=1, rejected=1)
        return status, answer

    def handle_hook(self, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """`POST /rotated`: a signed notice from the rotator's hook drops cached secrets."""
        status, answer = handle_hook_notice(
            self.source,
            self._hook_key,
            headers,
            body,
            now=self._clock(),
            tolerance=self._hook_tolerance,
        )
        for subscription_id in answer.get("invalidated", []):
            self._count(subscription_id, reloaded=1)
        return status, answer

    def handle_stats(self) -> tuple[int, dict[str, Any]]:
        """`GET /stats`."""
        return 200, {"subscriptions": self.stats()}

    # -- polling ------------------------------------------------------------------

    def poll_once(self) -> None:
        """Re-read every known subscription's record (what an agent's render interval does)."""
        for subscription_id in self.source.known():
            try:
                before = self.source.get(subscription_id).record
                after = self.source.refresh(subscription_id)
            except SecretSourceError:
                continue  # the next poll, or the next delivery, tries again
            if after != before:
                self._count(subscription_id, reloaded=1)

    def _poll(self) -> None:
        while not self._stop.wait(self._poll_interval):
            self.poll_once()


def handle_hook_notice(
    source: SecretSource,
    hook_key: Secret | None,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = signature.DEFAULT_TOLERANCE,
) -> tuple[int, dict[str, Any]]:
    """Answer the rotator's hook notice (`POST /rotated`): (HTTP status, JSON-able body).

    Verifies HOOK_HEADER with `hook_key` at `now` (unix time; default this
    host's clock), then drops from `source` the cached records the notice
    names (all when it names none): 200 with `invalidated` the ids dropped,
    403 without a key, 401 with the signature's reason, 400 `malformed`.
    `headers`: any case-insensitive mapping, or a WSGI environ.
    """
    if hook_key is None:
        return 403, {"error": "no hook key configured"}
    try:
        signature.verify(
            header_value(headers, HOOK_HEADER),
            body,
            hook_key.reveal(),
            now=time.time() if now is None else now,
            tolerance=tolerance,
        )
    except signature.SignatureError as exc:
        return 401, {"error": exc.reason}
    try:
        notice = json.loads(body)
    except (ValueError, RecursionError):
        return 400, {"error": "malformed"}
    if not isinstance(notice, dict):
        return 400, {"error": "malformed"}
    ids = _notice_subscriptions(notice)
    if ids is None:
        return 400, {"error": "malformed"}
    if not ids:
        known = source.known()
        source.invalidate()
        return 200, {"invalidated": known}
    for subscription_id in ids:
        source.invalidate(subscription_id)
    return 200, {"invalidated": ids}


def _notice_subscriptions(notice: Mapping[str, Any]) -> list[str] | None:
    """The subscription ids a hook notice names ([] for none); None when they are invalid."""
    ids: list[object] = []
    if "subscription_id" in notice:
        ids.append(notice["subscription_id"])
    listed = notice.get("subscription_ids")
    if listed is not None:
        if not isinstance(listed, list):
            return None
        ids.extend(listed)
    if not all(valid_subscription_id(i) for i in ids):
        return None
    return sorted({str(i) for i in ids})


def _handler_for(app: ConsumerApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "consumer-example"
        sys_version = ""

        def do_POST(self) -> None:
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit() or int(length) > MAX_REQUEST_BYTES:
                self._send(411 if length is None else 413, {"error": "malformed"})
                return
            body = self.rfile.read(int(length))
            headers = {key: value for key, value in self.headers.items()}
            if self.path == "/webhooks":
                self._send(*app.handle_delivery(headers, body))
            elif self.path == "/rotated":
                self._send(*app.handle_hook(headers, body))
            else:
                self._send(404, {"error": "not found"})

        def do_GET(self) -> None:
            if self.path == "/stats":
                self._send(*app.handle_stats())
            else:
                self._send(404, {"error": "not found"})

        def _send(self, status: int, answer: Mapping[str, Any]) -> None:
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the counters say what happened, and nothing here may echo a body

    return Handler


def read_hook_key(path: Path | str) -> Secret:
    """The hook key from a file (one line; the trailing newline is not part of it)."""
    value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    if not value:
        raise ValueError(f"the hook key file {path} is empty")
    return Secret(value)


def make_server(
    *,
    vault_addr: str,
    vault_token: str,
    mount: str = "secret",
    prefix: str = "monite/webhooks",
    listen: tuple[str, int] = ("127.0.0.1", 0),
    hook_key_file: Path | str | None = None,
    poll_interval: float = 0.0,
    cache_ttl: float = 300.0,
    tolerance: float = signature.DEFAULT_TOLERANCE,
    reread: bool = True,
    name: str = "consumer",
) -> ConsumerApp:
    """A ConsumerApp reading the rotator's records from Vault with a token (not started).

    `reread=False` makes a consumer that learns of rotations only from its poll
    or its hook, like one reading a file Vault Agent renders.
    """
    import hvac  # this app's choice of source; the kit itself needs hvac only here

    client = hvac.Client(url=vault_addr, token=vault_token, timeout=5)
    source = VaultSecretSource(client, mount=mount, prefix=prefix, ttl=cache_ttl)
    verifier = Verifier(source, tolerance=tolerance, reread=reread)
    hook_key = read_hook_key(hook_key_file) if hook_key_file is not None else None
    return ConsumerApp(
        verifier, hook_key=hook_key, listen=listen, poll_interval=poll_interval, name=name
    )


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (loopback by default: `:8080` is 127.0.0.1:8080)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return (host.strip("[]") or "127.0.0.1", int(port))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m rotator.consumer.app`: serve until SIGTERM or SIGINT; 2 on a usage error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--vault-addr", default=os.environ.get("VAULT_ADDR"))
    parser.add_argument("--mount", default="secret")
    parser.add_argument("--prefix", default="monite/webhooks")
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8080))
    parser.add_argument("--hook-key-file", type=Path, default=None)
    parser.add_argument("--poll-interval", type=float, default=0.0, help="seconds; 0 = off")
    parser.add_argument("--cache-ttl", type=float, default=300.0)
    args = parser.parse_args(argv)
    token = os.environ.get("VAULT_TOKEN")
    if not args.vault_addr or not token:
        parser.error("set VAULT_ADDR (or --vault-addr) and VAULT_TOKEN")
    app = make_server(
        vault_addr=args.vault_addr,
        vault_token=token,
        mount=args.mount,
        prefix=args.prefix,
        listen=args.listen,
        hook_key_file=args.hook_key_file,
        poll_interval=args.poll_interval,
        cache_ttl=args.cache_ttl,
    )

    def on_signal(signum: int, frame: object) -> None:
        threading.Thread(target=app.stop, daemon=True).start()  # shutdown() must not run here

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"consumer listening on {app.url}", flush=True)
    app.serve_forever()
    return 0


__all__ = [
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
