"""The daemon's HTTP endpoint: `/healthz`, `/readyz` and `/metrics`.

Owns the wire (a deliberately small HTTP/1.1 server on asyncio streams: one
GET or HEAD per connection, bounded request size and read time) and the
probe cache that stops readiness checks from hammering Monite's rate limit.

The endpoint must never take resources from rotations: it holds at most
`max_connections` connections at once (the listen backlog is as small). A new
connection beyond that replaces the one that has waited longest for its
request head, so idle connections cannot lock real probes out; when every
held connection is being answered, the new one is closed at once. A client
that does not send its request head within `read_timeout`, or does not read
its answer within as long, is dropped. A flood of idle connections to the
probe port therefore costs a bounded number of file descriptors, and the
claims, regenerates and commits of rotations still get the sockets they need.

What "alive", "ready" and the metrics text mean is decided by the daemon and
handed in as callables, so this module knows nothing about rotations.

Answers carry state and reasons only: never a secret, a token or a header of
the request (reasons pass through the audit redactor as a last line of defence).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rotator.clock import Clock, SystemClock
from rotator.redact import redact_text

MAX_REQUEST_BYTES = 8192
READ_TIMEOUT_SECONDS = 5.0
MAX_CONNECTIONS = 32
ACCEPT_RETRY_SECONDS = 0.1

T = TypeVar("T")

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Verdict:
    """An answer of a probe: healthy or not, and a JSON-able body explaining why."""

    ok: bool
    detail: Mapping[str, Any] = field(default_factory=dict)


async def within(work: Awaitable[T], seconds: float, clock: Clock) -> T:
    """`work`, or TimeoutError (the work cancelled) once `seconds` have passed on `clock`."""
    task = asyncio.ensure_future(work)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # cancelled while waiting: so is the work, as with wait_for
        task.cancel()
        raise
    finally:
        timer.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    raise TimeoutError


@dataclass(frozen=True)
class Routes:
    """What the endpoint serves; each callable is cheap or caches itself."""

    live: Callable[[], Verdict]
    ready: Callable[[], Awaitable[Verdict]]
    metrics: Callable[[], bytes]
    metrics_content_type: str


class CachedProbe:
    """Runs an async check at most once per `ttl`, sharing one run among concurrent callers.

    Failures are cached too: a dependency that is down is not asked again
    for every probe. Each run is bounded by `timeout`.
    """

    def __init__(
        self,
        check: Callable[[], Awaitable[None]],
        *,
        ttl: float,
        timeout: float,
        clock: Clock | None = None,
    ) -> None:
        self._check = check
        self._ttl = ttl
        self._timeout = timeout
        self._clock = clock or SystemClock()
        self._result: tuple[float, str | None] | None = None  # (when, error or None)
        self._running: asyncio.Task[str | None] | None = None

    def invalidate(self) -> None:
        self._result = None

    async def result(self) -> str | None:
        """None when the check passed (recently), else the one-line reason it failed."""
        now = self._clock.monotonic()
        if self._result is not None and now - self._result[0] < self._ttl:
            return self._result[1]
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._run())
        # Shielded: one impatient caller going away must not cancel the shared run.
        return await asyncio.shield(self._running)

    async def _run(self) -> str | None:
        error: str | None
        try:
            await within(self._check(), self._timeout, self._clock)
            error = None
        except TimeoutError:
            error = f"no answer within {self._timeout:g}s"
        except Exception as exc:  # any failure is a reason to be unready, never a crash
            error = str(exc) or type(exc).__name__
        self._result = (self._clock.monotonic(), error)
        return error


class HealthServer:
    """Serves `routes` on host:port until `close()`.

    Accepts connections itself, one at a time, so that it never holds more
    sockets than `max_connections` (plus the one being accepted), however many
    clients knock at once (module docstring).
    """

    def __init__(
        self,
        routes: Routes,
        host: str,
        port: int,
        *,
        max_connections: int = MAX_CONNECTIONS,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        clock: Clock | None = None,
    ) -> None:
        self._routes = routes
        self._clock = clock or SystemClock()
        self._host = host
        self._port = port
        self._max_connections = max_connections
        self._read_timeout = read_timeout
        self._listeners: list[socket.socket] = []
        self._acceptors: list[asyncio.Task[None]] = []
        # Connections being served, and those of them still waiting for their
        # request head; both in order of arrival.
        self._connections: dict[socket.socket, asyncio.Task[None]] = {}
        self._waiting: dict[socket.socket, asyncio.Task[None]] = {}

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port): the real port when 0 was asked for."""
        if not self._listeners:
            return self._host, self._port
        name = self._listeners[0].getsockname()
        return str(name[0]), int(name[1])

    @property
    def open_connections(self) -> int:
        """How many client connections are being served right now (at most the cap)."""
        return len(self._connections)

    async def start(self) -> None:
        """Listen on every address `host` resolves to (an OSError if one cannot be bound)."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        listeners: list[socket.socket] = []
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                listener = socket.socket(family, kind, proto)
                listeners.append(listener)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                listener.bind(address)
                # A small backlog: a flood waits in (or is dropped by) the kernel.
                listener.listen(self._max_connections)
                listener.setblocking(False)
        except BaseException:
            for listener in listeners:
                listener.close()
            raise
        self._listeners = listeners
        self._acceptors = [asyncio.create_task(self._accept(sock)) for sock in listeners]

    async def close(self) -> None:
        if not self._listeners:
            return
        for acceptor in self._acceptors:
            acceptor.cancel()
        await asyncio.gather(*self._acceptors, return_exceptions=True)
        for listener in self._listeners:
            listener.close()
        self._listeners, self._acceptors = [], []
        tasks = list(self._connections.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError:
                # Out of file descriptors, or the client gave up: the next
                # connections wait in the kernel's backlog meanwhile.
                await self._clock.sleep(ACCEPT_RETRY_SECONDS)
                continue
            # Make room: first by hanging up on a connection still silent, else on
            # the oldest one being answered (a readiness check it waits on goes on,
            # shielded and cached), so a flood of slow probes cannot lock out the
            # liveness probe that decides whether the process is restarted.
            full = len(self._connections) >= self._max_connections
            if full and not self._evict_oldest_waiting():
                self._evict_oldest()
            conn.setblocking(False)
            task = asyncio.create_task(self._serve(conn))
            # Closes the socket of a task cancelled before it even started.
            task.add_done_callback(functools.partial(_close, conn))
            self._connections[conn] = task
            self._waiting[conn] = task
            # Lets a connection hung up on close its socket before the next accept
            # (a yield to the loop, not a wait).
            await asyncio.sleep(0)

    def _evict_oldest(self) -> None:
        """Hang up on the oldest held connection, if any."""
        if not self._connections:
            return
        conn, task = next(iter(self._connections.items()))
        self._waiting.pop(conn, None)
        del self._connections[conn]
        task.cancel()  # its socket is closed as the cancellation reaches it

    def _evict_oldest_waiting(self) -> bool:
        """Hang up on the connection waiting longest for its request head; False if none waits."""
        if not self._waiting:
            return False
        conn, task = next(iter(self._waiting.items()))
        del self._waiting[conn]
        del self._connections[conn]
        task.cancel()  # its socket is closed as the cancellation reaches it
        return True

    async def _serve(self, conn: socket.socket) -> None:
        try:
            status, content_type, body, headers, head_only = await self._answer(conn)
            lines = [
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
                f"Content-Type: {content_type}",
                f"Content-Length: {len(body)}",
                "Cache-Control: no-store",
                "Connection: close",
                *(f"{name}: {value}" for name, value in headers.items()),
            ]
            answer = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            if not head_only:
                answer += body
            loop = asyncio.get_running_loop()
            # A client that does not read its answer is dropped after the timeout.
            await within(loop.sock_sendall(conn, answer), self._read_timeout, self._clock)
        except (OSError, TimeoutError, asyncio.CancelledError):
            pass
        finally:
            conn.close()
            self._waiting.pop(conn, None)
            self._connections.pop(conn, None)

    async def _answer(self, conn: socket.socket) -> tuple[int, str, bytes, dict[str, str], bool]:
        try:
            head = await within(_read_head(conn), self._read_timeout, self._clock)
        except TimeoutError:
            return (*_json(408, {"error": "request not received in time"}), {}, False)
        except asyncio.LimitOverrunError:
            return (*_json(431, {"error": "request head too large"}), {}, False)
        except asyncio.IncompleteReadError:
            return (*_json(400, {"error": "incomplete request"}), {}, False)
        finally:
            self._waiting.pop(conn, None)  # answering now: no longer the first to evict
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return (*_json(400, {"error": "malformed request line"}), {}, False)
        method, target = parts[0], parts[1]
        path = target.split("?", 1)[0]
        if path not in ("/healthz", "/readyz", "/metrics"):
            return (*_json(404, {"error": "not found"}), {}, False)
        if method not in ("GET", "HEAD"):
            return (*_json(405, {"error": "method not allowed"}), {"Allow": "GET, HEAD"}, False)
        head_only = method == "HEAD"
        try:
            if path == "/metrics":
                return 200, self._routes.metrics_content_type, self._routes.metrics(), {}, head_only
            verdict = self._routes.live() if path == "/healthz" else await self._routes.ready()
        except Exception:  # a bug in a probe must read as unhealthy, not a dropped connection
            return (*_json(500, {"error": "internal error"}), {}, head_only)
        return (*_json(200 if verdict.ok else 503, _scrubbed(verdict.detail)), {}, head_only)


def _close(conn: socket.socket, _: object) -> None:
    conn.close()


async def _read_head(conn: socket.socket) -> bytes:
    """The request head up to its blank line; the reading is bounded by MAX_REQUEST_BYTES."""
    loop = asyncio.get_running_loop()
    data = b""
    while True:
        chunk = await loop.sock_recv(conn, 65536)
        if not chunk:
            raise asyncio.IncompleteReadError(data, None)
        data += chunk
        end = data.find(b"\r\n\r\n")
        if end >= 0 and end + 4 <= MAX_REQUEST_BYTES:
            return data[: end + 4]
        if end >= 0 or len(data) > MAX_REQUEST_BYTES:
            raise asyncio.LimitOverrunError("request head too large", len(data))


def _json(status: int, body: Mapping[str, Any]) -> tuple[int, str, bytes]:
    text = json.dumps(body, sort_keys=True, default=str) + "\n"
    return status, "application/json", text.encode("utf-8")


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {str(k): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v) for v in value]
    return value
