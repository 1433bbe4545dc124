"""`MoniteEmulator`, the Monite emulator's public class: lifecycle, counters, and the handlers.

It stacks the layers (`store`, `auth`, `pagination`, `fault_injection`) into
one object served on a loopback port. `_handle` stamps every answer with
Monite's headers; `/v1` requests go through latency and hang faults, the
gateway's rate limit, the `x-monite-version` check, routing, authentication,
FastAPI-ordered validation, then the operation. The test-only `/_sandbox`
routes: `GET /_sandbox/webhook_subscriptions/<id>/secret` reads a current
secret; `POST /_sandbox/deliveries` sends a round of signed webhook events now
and answers what it did, `GET /_sandbox/deliveries` answers the delivery
counters (both 404 unless a sender is attached, see `attach_deliveries`).
"""

from __future__ import annotations

import threading
import uuid
from typing import Any, Protocol

from rotator.sandbox._http import Drop, LoopbackServer, Request, Response
from rotator.sandbox.monite.fault_injection import FaultInjection
from rotator.sandbox.monite.responses import (
    MISSING_API_VERSION,
    MISSING_API_VERSION_MESSAGE,
    err,
    error,
    response_version,
    truncate,
)
from rotator.sandbox.monite.routing import Route, resolve
from rotator.sandbox.monite.store import utc_now
from rotator.sandbox.monite.validation import BODIES, check_version, is_uuid, parse_body


class Jsonable(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class Deliveries(Protocol):
    """What `/_sandbox/deliveries` drives: `rotator.sandbox.deliveries.DeliverySender`."""

    def deliver_now(self) -> Jsonable: ...

    def snapshot(self) -> Jsonable: ...


class MoniteEmulator(FaultInjection):
    """Monite's partner API for webhook subscriptions, served on 127.0.0.1."""

    def __init__(
        self,
        *,
        rate_limit: float = 30.0,
        burst: int | None = None,
        token_ttl: int = 86400,
        seed: int | None = None,
        port: int = 0,
    ) -> None:
        """`port` 0 takes a free loopback port; another binds it now (OSError if taken)."""
        if rate_limit <= 0:
            raise ValueError("rate_limit must be positive")
        super().__init__(rate_limit=rate_limit, burst=burst, token_ttl=token_ttl, seed=seed)
        self._server = LoopbackServer(self._handle, port=port)
        self._deliveries: Deliveries | None = None
        self._deliveries_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._server.start()

    def stop(self) -> None:
        # Wakes requests parked by the hang fault so the server can shut down.
        self._stopping.set()
        with self._lock:
            for held in list(self._stragglers):
                self._settle_locked(held, apply=False)
        self._server.stop()

    def __enter__(self) -> MoniteEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"{self._server.origin}/v1"

    @property
    def origin(self) -> str:
        """`http://127.0.0.1:PORT`, where the test-only `/_sandbox` routes live."""
        return self._server.origin

    def request_count(self, route: str | None = None) -> int:
        """Requests received under /v1, all of them or one operation's.

        Operation names: token, revoke, list, create, get, patch, delete,
        enable, disable, regenerate_secret, and not_found / method_not_allowed.
        Rate-limited and failed requests count: they reached the server.
        """
        with self._lock:
            if route is None:
                return sum(self._requests.values())
            return self._requests[route]

    def request_ids(self, route: str | None = None, status: int | None = None) -> list[str]:
        """The `x-request-id` of the answers sent, oldest first, all or one operation's.

        Only answers under /v1 count, narrowed to one status if asked; the
        last `MAX_REQUEST_LOG` are kept. Operation names as in `request_count`.
        """
        with self._lock:
            return [
                request_id
                for name, code, request_id in self._answers
                if (route is None or name == route) and (status is None or code == status)
            ]

    def attach_deliveries(self, deliveries: Deliveries) -> None:
        """Let `/_sandbox/deliveries` drive `deliveries` (the last one attached wins)."""
        with self._deliveries_lock:
            self._deliveries = deliveries

    def detach_deliveries(self, deliveries: Deliveries) -> None:
        """Undo `attach_deliveries(deliveries)`, unless another was attached since."""
        with self._deliveries_lock:
            if self._deliveries is deliveries:
                self._deliveries = None

    # -- the wire ---------------------------------------------------------------

    def _handle(self, req: Request) -> Response:
        """Answer `req`, stamped with the headers Monite puts on every response."""
        if req.path.startswith("/_sandbox/"):
            response = self._sandbox(req)
            route_name: str | None = None
        elif req.path != "/v1" and not req.path.startswith("/v1/"):
            response = error(404, "Not Found")
            route_name = None
        else:
            route, allowed = resolve(req.method, req.path)
            route_name = route.name
            response = self._v1(req, route, allowed)
        request_id = str(uuid.uuid4())
        response.headers["x-monite-version"] = response_version(req)
        response.headers["x-request-id"] = request_id
        entity_id = req.header("x-monite-entity-id")
        if entity_id is not None and is_uuid(entity_id):
            # Documented as returned back; only a well-formed id is echoed.
            response.headers["x-monite-entity-id"] = entity_id
        if route_name is not None:
            with self._lock:
                self._answers.append((route_name, response.status, request_id))
        return response

    def _v1(self, req: Request, route: Route, allowed: tuple[str, ...]) -> Response:
        with self._lock:
            self._requests[route.name] += 1
        latency, hang = self.faults.latency, self.faults.hang
        if latency > 0 and self._stopping.wait(latency):
            raise Drop
        if hang > 0 and route.name != "token" and self._stopping.wait(hang):
            raise Drop
        with self._lock:
            ok, limit_headers = self._bucket.take()
        if not ok:
            # The gateway refuses before the API sees the request.
            return error(429, "Too Many Requests", limit_headers)
        if not (req.header("x-monite-version") or "").strip():
            # Checked ahead of routing and authentication, on every API path.
            response = error(400, MISSING_API_VERSION_MESSAGE, kind=MISSING_API_VERSION)
        elif route.name == "not_found":
            response = error(404, "Not Found")
        elif route.name == "method_not_allowed":
            response = error(405, "Method Not Allowed", {"Allow": ", ".join(allowed)})
        else:
            try:
                response = self._operation(route, req)
            except Drop:
                raise
            except Exception:
                # A bug in the emulator must look like a server error to the
                # client, not a dropped connection that would mask it.
                response = error(500, "Internal Server Error")
        response.headers.update(limit_headers)
        return response

    def _sandbox(self, req: Request) -> Response:
        parts = req.path.strip("/").split("/")
        if parts == ["_sandbox", "deliveries"]:
            return self._sandbox_deliveries(req)
        if len(parts) == 4 and parts[1] == "webhook_subscriptions" and parts[3] == "secret":
            if req.method != "GET":
                return error(405, "Method Not Allowed", {"Allow": "GET"})
            with self._lock:
                sub = self._subs.get(parts[2])
                if sub is None:
                    return error(404, "Webhook subscription not found")
                return Response(200, {"secret": sub.secret})
        return error(404, "Not Found")

    def _sandbox_deliveries(self, req: Request) -> Response:
        """POST: send a round of signed events now, answer what it did. GET: the counters."""
        if req.method not in ("GET", "POST"):
            return error(405, "Method Not Allowed", {"Allow": "GET, POST"})
        with self._deliveries_lock:
            deliveries = self._deliveries
        if deliveries is None:
            return error(404, "Deliveries are off: no sender is attached to this emulator")
        if req.method == "GET":
            return Response(200, deliveries.snapshot().to_json())
        try:
            done = deliveries.deliver_now()
        except RuntimeError:  # stopped meanwhile
            return error(409, "Deliveries have stopped")
        return Response(200, done.to_json())

    def _operation(self, route: Route, req: Request) -> Response:
        if route.name != "token":
            denied = self._authenticate(req)
            if denied is not None:
                return denied
        # FastAPI's order of errors: path, then query, then headers, then body.
        detail: list[dict[str, Any]] = []
        if route.subscription_id is not None and not is_uuid(route.subscription_id):
            detail.append(
                err(
                    ("path", "webhook_subscription_id"),
                    "Input should be a valid UUID",
                    "uuid_parsing",
                )
            )
        if route.name == "list":
            parsed = self._parse_list(req, detail)
            check_version(req, detail)
        else:
            check_version(req, detail)
            parsed = self._parse(route.name, req, detail)
        if detail:
            return Response(422, {"detail": detail})
        if route.name != "token" and self._roll_error():
            return self._fault_error()
        response = self._apply(route, parsed)
        if route.name != "token" and 200 <= response.status < 300 and self._take_malformed():
            return Response(200, raw=truncate(response.body))
        return response

    def _apply(self, route: Route, parsed: Any) -> Response:
        name = route.name
        if name == "token":
            return self._issue_token(parsed)
        if name == "revoke":
            return self._revoke(parsed)
        if name == "list":
            return self._list(parsed)
        if name == "create":
            return self._create(parsed)
        sub_id = route.subscription_id
        assert sub_id is not None
        if name == "regenerate_secret":
            return self._regenerate(sub_id)
        if name == "delete":
            return self._delete(sub_id)
        with self._lock:
            sub = self._subs.get(sub_id)
            if sub is None:
                return error(404, "Webhook subscription not found")
            if name == "get":
                return Response(200, sub.resource())
            if name in ("enable", "disable"):
                sub.status = "enabled" if name == "enable" else "disabled"
            elif name == "patch":
                # PATCH semantics of the schema: an absent or null field is left as it is.
                for key in ("url", "object_type", "event_types"):
                    if parsed.get(key) is not None:
                        setattr(sub, key, parsed[key])
            sub.updated_at = utc_now()
            self._version += 1
            return Response(200, sub.resource())

    def _parse(self, name: str, req: Request, detail: list[dict[str, Any]]) -> Any:
        """Validate the query or body of operation `name`, appending to `detail`."""
        if name == "list":
            return self._parse_list(req, detail)
        spec = BODIES.get(name)
        if spec is None:
            return None
        return parse_body(req, spec, detail)
