"""A complete webhook consumer: an HTTP server that verifies Monite deliveries with the kit.

    VAULT_ADDR=... VAULT_TOKEN=... python -m rotator.consumer.app \\
        --listen 127.0.0.1:8080 --hook-key-file /run/secrets/hook-key
    python -m rotator.consumer.app --secret-dir /run/monite-webhooks \\
        --pid-file /run/consumer/consumer.pid        # beside a Vault Agent

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

A body comes with `Content-Length` or `Transfer-Encoding: chunked`, at most
1 MiB either way (413 beyond; 411 with neither). SIGHUP drops every cached
secret (each is read again on its next delivery) and says so in one line on
stderr: what `deploy/consumers/vault-agent/reload.sh` sends to the pid in
`--pid-file` (written at start, removed at exit). `--secret-dir DIR` reads the
secrets from one file per subscription id (`DirectorySecretSource`, what a
Vault Agent template per subscription renders) instead of Vault.
`--poll-interval N` re-reads every known subscription's record every N
seconds (what Vault Agent's `static_secret_render_interval` does for a
template); 0 turns it off. For a demo or a test, `ConsumerApp` runs the same
server in a thread: `start()`, `url`, `stats()`, `stop()`. A web app of one's
own answers the notice with `handle_hook_notice` (see `examples/consumer_app.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rotator import signature
from rotator.consumer import (
    DirectorySecretSource,
    Headers,
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
_MAX_CHUNK_LINE = 1024  # a chunk-size line (with extensions) or a trailer line
_MAX_TRAILERS = 32
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

    def reload(self) -> list[str]:
        """Drop every cached secret (SIGHUP): each is read again on its next delivery.

        Counts a reload for each subscription that was cached; returns their ids.
        """
        known = self.source.known()
        self.source.invalidate()
        for subscription_id in known:
            self._count(subscription_id, reloaded=1)
        return known


def handle_hook_notice(
    source: SecretSource,
    hook_key: Secret | None,
    headers: Headers,
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
    `headers`: any case-insensitive mapping, a WSGI environ, or raw ASGI pairs.
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
        timeout = 30  # seconds a client may stall mid-request (a socket timeout)

        def do_POST(self) -> None:
            body = self._read_body()
            if body is None:
                return  # answered already
            # Every value of a header sent several times, comma-joined (as WSGI does).
            names: dict[str, str] = {}
            for key in self.headers:
                names.setdefault(key.lower(), key)
            headers = {key: ", ".join(self.headers.get_all(key) or ()) for key in names.values()}
            if self.path == "/webhooks":
                self._send(*app.handle_delivery(headers, body))
            elif self.path == "/rotated":
                self._send(*app.handle_hook(headers, body))
            else:
                self._send(404, {"error": "not found"})

        def _read_body(self) -> bytes | None:
            """The request body (Content-Length or chunked), or None after answering an error."""
            coding = self.headers.get("Transfer-Encoding")
            length = self.headers.get("Content-Length")
            if coding is not None:
                if length is not None:  # which one frames the body? refuse (no smuggling)
                    self._send(400, {"error": "both Content-Length and Transfer-Encoding"})
                elif coding.strip().lower() != "chunked":
                    self._send(501, {"error": "only Transfer-Encoding: chunked is supported"})
                else:
                    return self._read_chunked()
                return None
            if length is None:
                self._send(411, {"error": "Content-Length or Transfer-Encoding: chunked required"})
                return None
            if not length.isdigit() or int(length) > MAX_REQUEST_BYTES:
                self._send(413, {"error": f"body larger than {MAX_REQUEST_BYTES} bytes"})
                return None
            return self.rfile.read(int(length))

        def _read_chunked(self) -> bytes | None:
            """A chunked body, at most MAX_REQUEST_BYTES; None after answering 400 or 413."""
            body = bytearray()
            while True:  # bounded: every turn reads a chunk, and the total is capped
                line = self.rfile.readline(_MAX_CHUNK_LINE + 1)
                size_text = line.split(b";", 1)[0].strip()
                if (
                    len(line) > _MAX_CHUNK_LINE
                    or not line.endswith(b"\n")
                    or not size_text
                    or any(c not in b"0123456789abcdefABCDEF" for c in size_text)
                ):
                    self._send(400, {"error": "malformed chunked body"})
                    return None
                size = int(size_text, 16)
                if len(body) + size > MAX_REQUEST_BYTES:
                    self._send(413, {"error": f"body larger than {MAX_REQUEST_BYTES} bytes"})
                    return None
                if size == 0:
                    break
                chunk = self.rfile.read(size)
                if len(chunk) != size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                    self._send(400, {"error": "malformed chunked body"})
                    return None
                body += chunk
            for _ in range(_MAX_TRAILERS + 1):  # trailers, ignored, up to the empty line
                if self.rfile.readline(_MAX_CHUNK_LINE + 1) in (b"\r\n", b"\n", b""):
                    return bytes(body)
            self._send(400, {"error": "malformed chunked body"})
            return None

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
            self.close_connection = True  # a refused body may be left unread

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
    name: str = "consumer",
) -> ConsumerApp:
    """A ConsumerApp (not started) reading the rotator's records from Vault with a token,
    or, with `secret_dir`, one file per subscription id (`DirectorySecretSource`).

    `reread=False` makes a consumer that learns of rotations only from its poll
    or its hook, like one reading a file Vault Agent renders. The hook key is
    `hook_key`, or read from `hook_key_file`.
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
    return ConsumerApp(
        verifier, hook_key=hook_key, listen=listen, poll_interval=poll_interval, name=name
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
