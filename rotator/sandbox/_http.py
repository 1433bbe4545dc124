"""A tiny threaded HTTP/1.1 server on loopback that both emulators are built on.

Standard library only, so the emulators add no dependency to the product. It
owns the wire: parsing requests, writing JSON with exact headers, and the
faults that live below the application (latency, dropped connections).
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    """One parsed HTTP request."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-cased names
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def json(self) -> Any:
        """The body as JSON; raises ValueError when it is not."""
        if not self.body:
            raise ValueError("empty body")
        return json.loads(self.body)


@dataclass
class Response:
    """What a handler returns. `body` is JSON-encoded unless `raw` is given.

    A `Date` in `headers` replaces the server's own, so a response never has two.
    """

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"


class Drop(Exception):
    """Raised by a handler to close the connection without answering."""


Handler = Callable[[Request], Response]


class LoopbackServer:
    """Serves `handler` on 127.0.0.1 in a background thread until `stop()`.

    `clock` (Unix seconds) dates every response, so an emulator whose time was
    moved forward says so in its `Date` header as a real server would.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._handler = handler
        self.clock = clock
        self.latency = 0.0  # seconds added before every answer
        self.requests_served = 0
        self._lock = threading.Lock()
        self._server = _Server((host, port), _make_handler_class(self))
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name=f"sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        # Keep-alive connections outlive the listening socket: without this a
        # pooled client would still be answered by a "stopped" server.
        self._server.close_connections()
        self._thread.join(timeout=5)
        self._thread = None

    def _dispatch(self, request: Request) -> Response:
        with self._lock:
            self.requests_served += 1
        if self.latency > 0:
            time.sleep(self.latency)
        return self._handler(request)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._stop_requested = False
        self._stopped = threading.Event()
        super().__init__(address, handler)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until `shutdown()`; `poll_interval` is ignored: this loop never polls.

        The stock loop wakes every `poll_interval` to look for a shutdown, so
        `shutdown()` waited out most of an interval (each request restarts it)
        and an idle server kept waking. Here `shutdown()` wakes the loop itself.
        """
        self._stopped.clear()
        try:
            with _Selector() as selector:
                selector.register(self, selectors.EVENT_READ)
                selector.register(self._wake_reader, selectors.EVENT_READ)
                while not self._stop_requested:
                    ready = selector.select()
                    if self._stop_requested:
                        break
                    if any(key.fileobj is self for key, _ in ready):
                        self._accept_one()
                    self.service_actions()
        finally:
            # Drained, so a later serve_forever() (socketserver allows one) does not spin.
            self._wake_reader.setblocking(False)
            with contextlib.suppress(OSError):
                while self._wake_reader.recv(64):
                    pass
            self._stop_requested = False
            self._stopped.set()

    def _accept_one(self) -> None:
        # What socketserver's private _handle_request_noblock does, in public calls.
        try:
            request, client_address = self.get_request()
        except OSError:
            return
        if not self.verify_request(request, client_address):
            self.shutdown_request(request)
            return
        try:
            self.process_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
            self.shutdown_request(request)
        except BaseException:
            self.shutdown_request(request)
            raise

    def shutdown(self) -> None:
        """Stop `serve_forever()` and wait until it has returned (call it from another thread)."""
        self._stop_requested = True
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")
        self._stopped.wait()

    def server_close(self) -> None:
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            live = list(self._connections)
        for conn in live:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or was dropped on purpose is routine here,
        # not worth a traceback on stderr; anything else still gets one.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


# What socketserver's own loop uses: poll(2) where there is one.
_Selector: type[selectors.BaseSelector] = getattr(
    selectors, "PollSelector", selectors.SelectSelector
)


def _make_handler_class(owner: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class _RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle on, the client's
        # delayed ACK would add ~40 ms to every response.
        disable_nagle_algorithm = True
        server_version = "sandbox"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            # Request lines can carry ids; the tests' output stays quiet and clean.
            return

        def date_time_string(self, timestamp: float | None = None) -> str:
            when = owner.clock() if timestamp is None else timestamp
            return email.utils.formatdate(when, usegmt=True)

        def _handle(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            request = Request(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            try:
                response = owner._dispatch(request)
            except Drop:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            if response.raw is not None:
                payload = response.raw
            elif response.body is None:
                payload = b""
            else:
                payload = json.dumps(response.body).encode()
            headers = {k: v for k, v in response.headers.items() if k.lower() != "date"}
            date = next(
                (v for k, v in response.headers.items() if k.lower() == "date"),
                self.date_time_string(),
            )
            # Not send_response(): it would add its own Date ahead of one the
            # handler chose, and a client must see exactly one.
            self.log_request(response.status)
            self.send_response_only(response.status)
            self.send_header("Server", self.version_string())
            self.send_header("Date", date)
            if payload or response.status not in (204, 304):
                self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if payload and self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        def do_LIST(self) -> None:  # Vault's LIST verb
            self._handle()

    return _RequestHandler
