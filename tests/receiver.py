"""A loopback webhook receiver for the tests of signed deliveries and hook notices.

`Receiver` is a stdlib HTTP server thread on 127.0.0.1 that stands in for a
consumer: it answers each POST with the next scripted status, then `then`, and
queues what arrived as a `Delivery`. Every body it receives joins the suite's
secret hygiene scan (`remember_output`), so a secret in a notice or an event is
caught wherever it was sent.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from rotator.sandbox.monite import MoniteEmulator
from rotator.signature import HEADER
from tests.conftest import remember_output

MONITE_VERSION = "2024-05-25"


@dataclass(frozen=True)
class Delivery:
    """One POST as the receiver saw it, and the status it answered."""

    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    status: int

    @property
    def event(self) -> dict[str, Any]:
        """The JSON body (a Monite event or a hook notice)."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def signature(self) -> str | None:
        """The Monite-Signature header, if there was one."""
        return self.headers.get(HEADER.lower())


class Receiver:
    """A loopback webhook receiver: answers `statuses` in turn, then `then`; queues each POST.

    `on_first` runs once, when the first request has arrived and before it is
    answered. With `hold`, each request waits (at most 10 s) for that event
    before it is answered; leaving the receiver sets it.
    """

    def __init__(
        self,
        statuses: tuple[int, ...] = (),
        then: int = 200,
        *,
        on_first: Callable[[], None] | None = None,
        hold: threading.Event | None = None,
    ) -> None:
        self.received: queue.Queue[Delivery] = queue.Queue()
        self._statuses = list(statuses)
        self._then = then
        self._on_first = on_first
        self._hold = hold
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                remember_output(body.decode("utf-8", "replace"))
                if owner._hold is not None:
                    owner._hold.wait(10)
                with owner._lock:
                    status = owner._statuses.pop(0) if owner._statuses else owner._then
                    first, owner._on_first = owner._on_first, None
                if first is not None:
                    first()
                headers = {k.lower(): v for k, v in self.headers.items()}
                owner.received.put(Delivery(self.path, headers, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str = "/webhooks") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def drain(self) -> list[Delivery]:
        """What arrived so far, oldest first, taken off the queue."""
        return [self.received.get_nowait() for _ in range(self.received.qsize())]

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._hold is not None:
            self._hold.set()
        self._server.shutdown()
        self._server.server_close()


def subscription_action(monite: MoniteEmulator, subscription_id: str, action: str) -> None:
    """POST /webhook_subscriptions/{id}/{action} over Monite's API, as the rotator calls it."""
    client_id, client_secret = monite.credentials
    headers = {"x-monite-version": MONITE_VERSION}
    with httpx.Client(base_url=monite.base_url, headers=headers, trust_env=False) as http:
        token = http.post(
            "/auth/token",
            json={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
            },
        ).json()["access_token"]
        response = http.post(
            f"/webhook_subscriptions/{subscription_id}/{action}",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert 200 == response.status_code
