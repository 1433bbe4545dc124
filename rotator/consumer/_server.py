"""The example consumer's server: `ConsumerApp` (routes, counters, deduplication, polling,
reload) and the rotator's hook notice (`handle_hook_notice`, `HOOK_HEADER`)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from http.server import ThreadingHTTPServer
from typing import Any

from rotator import signature
from rotator.consumer import (
    Deduplicator,
    Headers,
    SecretSource,
    SecretSourceError,
    Verifier,
    header_value,
    valid_subscription_id,
    verify_request,
)
from rotator.consumer._http import handler_for
from rotator.secret import Secret

HOOK_HEADER = signature.HOOK_HEADER  # the hook notice's signature, keyed with the hook key
UNKNOWN = "(none)"  # the stats key of requests that named no subscription
# How often the serving loop looks for a stop (socketserver's default is 0.5 s):
# a SIGTERM, or a test's teardown, is answered within this.
SHUTDOWN_POLL = 0.05


@dataclass
class Counters:
    """What happened to one subscription's deliveries and secret.

    `duplicates` counts verified deliveries (so also in `verified`) whose event
    `id` was seen already: answered 200 and not handled again. The events this
    subscription's deliveries brought first are `verified - duplicates`.
    """

    received: int = 0
    verified: int = 0
    rejected: int = 0
    reloaded: int = 0
    duplicates: int = 0


class ConsumerApp:
    """The consumer's HTTP server, in a thread (`start`/`stop`) or in the foreground.

    `hook_key` verifies `POST /rotated`; without one the route answers 403.
    `deduplicator`, when given, drops a verified delivery whose event `id` it has
    seen (a swap's two subscriptions, or a retry): 200 with `status` "duplicate",
    counted in `duplicates`. `name` tells several apps apart in their repr and
    thread names (the demo runs two).
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
        deduplicator: Deduplicator | None = None,
        name: str = "consumer",
    ) -> None:
        if poll_interval < 0:
            raise ValueError("poll_interval must be at least 0 seconds (0 = off)")
        # Refused here, at start-up: either would otherwise fail every notice with a 500.
        hook_tolerance = signature.check_tolerance(hook_tolerance, setting="hook_tolerance")
        if hook_key is not None and not hook_key:
            raise ValueError(
                "hook_key is empty; give the rotator's hook key (the file its hook's "
                "secret_file names), or None to answer POST /rotated 403"
            )
        self.name = name
        self.verifier = verifier
        self.source: SecretSource = verifier.secrets
        self.deduplicator = deduplicator
        self._hook_key = hook_key
        self._clock = clock
        self._hook_tolerance = hook_tolerance
        self._poll_interval = poll_interval
        self._lock = threading.Lock()
        self._counters: dict[str, Counters] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._serving = False
        self._server = ThreadingHTTPServer(listen, handler_for(self))
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
        serve = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL},
            name=f"{self.name}-http",
        )
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
        self._server.serve_forever(poll_interval=SHUTDOWN_POLL)

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

    def deduplication(self) -> dict[str, Any] | None:
        """The deduplicator's window and counters (None when deduplication is off)."""
        dedupe = self.deduplicator
        if dedupe is None:
            return None
        return {
            "ttl_seconds": dedupe.ttl,
            "max_entries": dedupe.max_entries,
            "remembered": len(dedupe),
            "duplicates": dedupe.duplicates,
            "evicted": dedupe.evicted,
        }

    def _count(self, subscription_id: str | None, **increments: int) -> None:
        with self._lock:
            counters = self._counters.setdefault(subscription_id or UNKNOWN, Counters())
            for name, amount in increments.items():
                setattr(counters, name, getattr(counters, name) + amount)

    # -- routes -----------------------------------------------------------------

    def handle_delivery(
        self, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        """`POST /webhooks`: verified, then (with a deduplicator) dropped if its event was seen."""
        status, answer = verify_request(self.verifier, headers, body)
        subscription_id = answer.get("subscription_id")
        key = subscription_id if isinstance(subscription_id, str) else None
        if status != 200:
            # An id with no record may be forged: counted together, never a row each.
            unknown = answer.get("error") == "unknown_subscription"
            self._count(None if unknown else key, received=1, rejected=1)
            return status, answer
        event_id = answer.get("event_id")
        dedupe = self.deduplicator
        # Only after verifying: a forged delivery must not mark a real event as handled.
        if dedupe is not None and isinstance(event_id, str) and event_id and dedupe.seen(event_id):
            self._count(key, received=1, verified=1, duplicates=1)
            return 200, {**answer, "status": "duplicate"}
        self._count(key, received=1, verified=1)
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
        """`GET /stats`: the counters per subscription, and the deduplicator's (or null)."""
        return 200, {"subscriptions": self.stats(), "deduplication": self.deduplication()}

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
    if not hook_key:  # None, or an empty key that would verify anyone's notice
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
