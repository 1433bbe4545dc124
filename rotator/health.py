"""The daemon's HTTP endpoint: `/healthz`, `/readyz` and `/metrics`.

Owns the wire (a deliberately small HTTP/1.1 server on asyncio streams: one
GET or HEAD per connection, bounded request size and read time) and the
probe cache that stops readiness checks from hammering Monite's rate limit.
What "alive", "ready" and the metrics text mean is decided by the daemon and
handed in as callables, so this module knows nothing about rotations.

Answers carry state and reasons only: never a secret, a token or a header of
the request (reasons pass through the audit redactor as a last line of defence).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rotator.audit import scrub_text

MAX_REQUEST_BYTES = 8192
READ_TIMEOUT_SECONDS = 5.0

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
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check = check
        self._ttl = ttl
        self._timeout = timeout
        self._monotonic = monotonic
        self._result: tuple[float, str | None] | None = None  # (when, error or None)
        self._running: asyncio.Task[str | None] | None = None

    def invalidate(self) -> None:
        self._result = None

    async def result(self) -> str | None:
        """None when the check passed (recently), else the one-line reason it failed."""
        now = self._monotonic()
        if self._result is not None and now - self._result[0] < self._ttl:
            return self._result[1]
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._run())
        # Shielded: one impatient caller going away must not cancel the shared run.
        return await asyncio.shield(self._running)

    async def _run(self) -> str | None:
        error: str | None
        try:
            await asyncio.wait_for(self._check(), timeout=self._timeout)
            error = None
        except TimeoutError:
            error = f"no answer within {self._timeout:g}s"
        except Exception as exc:  # any failure is a reason to be unready, never a crash
            error = str(exc) or type(exc).__name__
        self._result = (self._monotonic(), error)
        return error


class HealthServer:
    """Serves `routes` on host:port until `close()`."""

    def __init__(self, routes: Routes, host: str, port: int) -> None:
        self._routes = routes
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port): the real port when 0 was asked for."""
        if self._server is None or not self._server.sockets:
            return self._host, self._port
        name = self._server.sockets[0].getsockname()
        return str(name[0]), int(name[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve_connection, self._host, self._port, limit=MAX_REQUEST_BYTES
        )

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            status, content_type, body, headers, head_only = await self._answer(reader)
            lines = [
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
                f"Content-Type: {content_type}",
                f"Content-Length: {len(body)}",
                "Cache-Control: no-store",
                "Connection: close",
                *(f"{name}: {value}" for name, value in headers.items()),
            ]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            if not head_only:
                writer.write(body)
            await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._connections.discard(task)

    async def _answer(
        self, reader: asyncio.StreamReader
    ) -> tuple[int, str, bytes, dict[str, str], bool]:
        try:
            head = await asyncio.wait_for(
                reader.readuntil(b"\r\n\r\n"), timeout=READ_TIMEOUT_SECONDS
            )
        except TimeoutError:
            return (*_json(408, {"error": "request not received in time"}), {}, False)
        except asyncio.LimitOverrunError:
            return (*_json(431, {"error": "request head too large"}), {}, False)
        except asyncio.IncompleteReadError:
            return (*_json(400, {"error": "incomplete request"}), {}, False)
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


def _json(status: int, body: Mapping[str, Any]) -> tuple[int, str, bytes]:
    text = json.dumps(body, sort_keys=True, default=str) + "\n"
    return status, "application/json", text.encode("utf-8")


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {str(k): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v) for v in value]
    return value
