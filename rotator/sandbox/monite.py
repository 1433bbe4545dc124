"""An emulator of the Monite partner API (webhook subscriptions and auth) on loopback.

It owns the behaviour of Monite as the official OpenAPI schema describes it
(`tests/schema/monite-openapi.json`): client-credentials tokens, the
`/webhook_subscriptions*` operations, cursor pagination with opaque tokens,
FastAPI-shaped 422s, the gateway's rate limit and its headers. From Monite's
API concept pages it also owns the 400 `missing_api_version` answer to a
request without `x-monite-version`, and the `x-monite-version` and
`x-request-id` headers on every response. On top of that
it owns the faults the rotator must survive (`MoniteFaults`), and a test-only
introspection route outside `/v1` that reads a subscription's current secret.

Every secret, access token and client secret it hands out is passed to
`record_issued`, so the suite can prove none of them reaches a log.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import random
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, NoReturn
from urllib.parse import urlsplit

from rotator.model import MONITE_OBJECT_TYPES
from rotator.sandbox import record_issued
from rotator.sandbox._http import Drop, LoopbackServer, Request, Response

OBJECT_TYPES = MONITE_OBJECT_TYPES
GRANT_TYPES = ("client_credentials", "entity_user")
SORT_FIELDS = ("created_at", "updated_at")
ORDERS = ("asc", "desc")
MAX_URL_LENGTH = 2083
# The schema's version: what `x-monite-version` says on an answer to a request
# that named no valid version (Monite adds the header to every response).
DEFAULT_API_VERSION = "2024-05-25"
# Monite's documented answer to a request without `x-monite-version`.
MISSING_API_VERSION = "missing_api_version"
MISSING_API_VERSION_MESSAGE = "Missing the x-monite-version HTTP header"
# How many (operation, status, x-request-id) answers `request_ids()` remembers.
_MAX_REQUEST_LOG = 10_000
# Tokens handed out by listing are kept server-side; a bound keeps a client
# that pages forever (the pagination-loop fault) from growing memory forever.
_MAX_PAGINATION_TOKENS = 50_000


@dataclass
class MoniteFaults:
    """Mutable fault knobs, read on every request; counters count down as they fire."""

    latency: float = 0.0
    """Seconds added to every /v1 request."""
    error_rate: float = 0.0
    """Fraction of /v1 API requests (not /auth/token) answered with `error_status`."""
    error_status: int = 500
    retry_after: float | None = None
    """Seconds in the Retry-After of injected 429/503 answers; None sends "1".

    The gateway's own rate-limit 429 keeps computing its value from the bucket.
    """
    hang: float = 0.0
    """Every /v1 API request (not /auth/token) sleeps this long before it is processed."""
    drop_after_regenerate: int = 0
    """The next N regenerations are applied, then the connection closes with no answer."""
    fail_regenerate: int = 0
    """The next N regenerations answer `error_status` without applying."""
    regenerate_not_found: int = 0
    """The next N regenerations answer 404 "Webhook subscription not found" without applying."""
    straggle_regenerate: int = 0
    """The next N valid regenerations are held unanswered and applied only later.

    The client times out, or sees the connection drop when the request is
    released; the new secret is minted at `release_stragglers()` (or after
    `straggle_after`), long after the client gave up. On `stop()` held
    requests are dropped unapplied.
    """
    straggle_after: float | None = None
    """Seconds after which a held regeneration applies by itself; None waits for a release."""
    malformed_json: int = 0
    """The next N successful /v1 API responses are 200 with a body that is not JSON."""
    pagination_loop: bool = False
    """A page fetched with a pagination token names that same token as the next page."""
    duplicate_across_pages: bool = False
    """The last item of a page is repeated as the first item of the next page."""


@dataclass
class _Subscription:
    id: str
    url: str
    object_type: str
    status: str
    event_types: list[str]
    secret: str
    seq: int
    created_at: datetime
    updated_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)

    def resource(self, *, with_secret: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = dict(self.extra)
        body.update(
            id=self.id,
            event_types=list(self.event_types),
            object_type=self.object_type,
            status=self.status,
            url=self.url,
        )
        if with_secret:
            body["secret"] = self.secret
        return body


@dataclass
class _AccessToken:
    client_id: str
    expires_at: float  # time.monotonic()
    revoked: bool = False


@dataclass(frozen=True)
class _ListQuery:
    object_type: str | None
    sort: str
    order: str
    limit: int
    created_gt: datetime | None
    created_lt: datetime | None
    created_gte: datetime | None
    created_lte: datetime | None


@dataclass(frozen=True)
class _Cursor:
    query: _ListQuery
    direction: Literal["next", "prev"]
    anchor: tuple[datetime, int]  # sort key of the item the page starts after / ends before
    anchor_id: str


@dataclass(eq=False)
class _Straggler:
    """A regeneration Monite received but has not applied (the straggle fault)."""

    subscription_id: str
    after: float | None  # seconds until it applies by itself
    settled: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class _Route:
    name: str  # operation name as counted by request_count
    subscription_id: str | None = None


def _err(loc: Sequence[str | int], msg: str, kind: str) -> dict[str, Any]:
    # Pydantic also echoes `input`; never here, since the input may be a secret.
    return {"loc": list(loc), "msg": msg, "type": kind}


def _error(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    kind: str | None = None,
) -> Response:
    """Monite's ErrorSchemaResponse; `kind` adds the `error.type` some answers carry."""
    error: dict[str, str] = {"message": message}
    if kind is not None:
        error = {"type": kind, **error}
    return Response(status, {"error": error}, headers=dict(headers or {}))


def _response_version(req: Request) -> str:
    """The version an answer names: the request's own when it is a date, else the default."""
    value = (req.header("x-monite-version") or "").strip()
    try:
        date.fromisoformat(value)
    except ValueError:
        return DEFAULT_API_VERSION
    return value


def _now() -> datetime:
    return datetime.now(UTC)


def _seconds(value: float) -> str:
    """A delay for a header: whole seconds as HTTP writes them, a fraction only if there is one."""
    return str(int(value)) if float(value).is_integer() else str(value)


class _TokenBucket:
    """The gateway's limiter: `rate` tokens a second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self) -> tuple[bool, dict[str, str]]:
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now
        allowed = self._tokens >= 1.0
        if allowed:
            self._tokens -= 1.0
        remaining = int(self._tokens)
        limit_second = max(1, round(self.rate))
        if allowed:
            until_reset = (self.burst - self._tokens) / self.rate
            reset = math.ceil(until_reset)
        else:
            until_reset = (1.0 - self._tokens) / self.rate
            reset = max(1, math.ceil(until_reset))
        headers = {
            "RateLimit-Limit": str(self.burst),
            "RateLimit-Remaining": str(remaining),
            # Documented as the timestamp at which the quota resets (Retry-After is seconds).
            "RateLimit-Reset": str(math.ceil(time.time() + until_reset)),
            "X-RateLimit-Limit-Second": str(limit_second),
            "X-RateLimit-Remaining-Second": str(remaining),
        }
        if not allowed:
            headers["Retry-After"] = str(reset)
        return allowed, headers


class MoniteEmulator:
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
        self.faults = MoniteFaults()
        self.token_ttl = token_ttl
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._rng = random.Random(seed)
        self._bucket = _TokenBucket(
            rate_limit, burst if burst is not None else math.ceil(rate_limit)
        )
        self._clients: dict[str, str] = {}
        self._tokens: dict[str, _AccessToken] = {}
        self._subs: dict[str, _Subscription] = {}
        # Bumped by every change to a subscription; keys the sorted-listing cache.
        self._version = 0
        self._sorted_cache: dict[_ListQuery, tuple[int, list[_Subscription], list[Any]]] = {}
        self._seq = 0
        self._pagination: dict[str, _Cursor] = {}
        self._regenerations: Counter[str] = Counter()
        self._stragglers: list[_Straggler] = []  # in arrival order
        self._requests: Counter[str] = Counter()
        self._answers: deque[tuple[str, int, str]] = deque(maxlen=_MAX_REQUEST_LOG)
        self._server = LoopbackServer(self._handle, port=port)

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

    # -- test-side setup and introspection --------------------------------------

    def add_client(
        self, client_id: str | None = None, client_secret: str | None = None
    ) -> tuple[str, str]:
        """Register partner credentials; returns (client_id, client_secret)."""
        secret = client_secret if client_secret is not None else secrets.token_urlsafe(32)
        record_issued(secret)
        with self._lock:
            cid = client_id if client_id is not None else self._new_id()
            self._clients[cid] = secret
        return cid, secret

    @property
    def credentials(self) -> tuple[str, str]:
        """The first registered client's (client_id, client_secret)."""
        with self._lock:
            for cid, secret in self._clients.items():
                return cid, secret
        raise LookupError("no client registered; call add_client() first")

    def seed(
        self,
        *,
        url: str | None = None,
        object_type: str = "payable",
        status: str = "enabled",
        event_types: Sequence[str] = ("created", "updated"),
        extra: Mapping[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> str:
        """Create a subscription (with a secret) and return its id.

        Nothing is validated, so tests can seed values Monite may add tomorrow.
        `url` defaults to a unique https://example.com/hooks/N.
        """
        with self._lock:
            sub = self._create_locked(
                url=url if url is not None else f"https://example.com/hooks/{self._seq + 1}",
                object_type=object_type,
                event_types=list(event_types),
                status=status,
                extra=dict(extra or {}),
                created_at=created_at,
            )
            return sub.id

    def remove(self, subscription_id: str) -> None:
        """Delete a subscription behind the client's back (an orphaned record)."""
        with self._lock:
            del self._subs[subscription_id]
            self._version += 1

    def subscription(self, subscription_id: str) -> dict[str, Any]:
        """The subscription as the API lists it (no secret)."""
        with self._lock:
            return self._subs[subscription_id].resource()

    def current_secret(self, subscription_id: str) -> str:
        with self._lock:
            return self._subs[subscription_id].secret

    def subscription_ids(self) -> list[str]:
        """Ids in creation order."""
        with self._lock:
            return [s.id for s in sorted(self._subs.values(), key=lambda s: s.seq)]

    def regenerate_count(self, subscription_id: str) -> int:
        """How many regenerations were applied (dropped, malformed and released ones included)."""
        with self._lock:
            return self._regenerations[subscription_id]

    def held_stragglers(self) -> int:
        """How many regenerations the straggle fault holds unapplied right now."""
        with self._lock:
            return len(self._stragglers)

    def release_stragglers(self) -> int:
        """Apply every held regeneration now, in arrival order; returns how many applied.

        The subscription is looked up now: one deleted meanwhile gets nothing.
        A client still waiting on a released request sees its connection drop.
        """
        with self._lock:
            return sum(self._settle_locked(held, apply=True) for held in list(self._stragglers))

    def expire_tokens(self) -> None:
        """Every access token issued so far is now expired."""
        with self._lock:
            past = time.monotonic() - 1.0
            for token in self._tokens.values():
                token.expires_at = past

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
        last `_MAX_REQUEST_LOG` are kept. Operation names as in `request_count`.
        """
        with self._lock:
            return [
                request_id
                for name, code, request_id in self._answers
                if (route is None or name == route) and (status is None or code == status)
            ]

    # -- the wire ---------------------------------------------------------------

    def _handle(self, req: Request) -> Response:
        """Answer `req`, stamped with the headers Monite puts on every response."""
        if req.path.startswith("/_sandbox/"):
            response = self._sandbox(req)
            route_name: str | None = None
        elif req.path != "/v1" and not req.path.startswith("/v1/"):
            response = _error(404, "Not Found")
            route_name = None
        else:
            route, allowed = _resolve(req.method, req.path)
            route_name = route.name
            response = self._v1(req, route, allowed)
        request_id = str(uuid.uuid4())
        response.headers["x-monite-version"] = _response_version(req)
        response.headers["x-request-id"] = request_id
        entity_id = req.header("x-monite-entity-id")
        if entity_id is not None and _is_uuid(entity_id):
            # Documented as returned back; only a well-formed id is echoed.
            response.headers["x-monite-entity-id"] = entity_id
        if route_name is not None:
            with self._lock:
                self._answers.append((route_name, response.status, request_id))
        return response

    def _v1(self, req: Request, route: _Route, allowed: tuple[str, ...]) -> Response:
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
            return _error(429, "Too Many Requests", limit_headers)
        if not (req.header("x-monite-version") or "").strip():
            # Checked ahead of routing and authentication, on every API path.
            response = _error(400, MISSING_API_VERSION_MESSAGE, kind=MISSING_API_VERSION)
        elif route.name == "not_found":
            response = _error(404, "Not Found")
        elif route.name == "method_not_allowed":
            response = _error(405, "Method Not Allowed", {"Allow": ", ".join(allowed)})
        else:
            try:
                response = self._operation(route, req)
            except Drop:
                raise
            except Exception:
                # A bug in the emulator must look like a server error to the
                # client, not a dropped connection that would mask it.
                response = _error(500, "Internal Server Error")
        response.headers.update(limit_headers)
        return response

    def _sandbox(self, req: Request) -> Response:
        parts = req.path.strip("/").split("/")
        if len(parts) == 4 and parts[1] == "webhook_subscriptions" and parts[3] == "secret":
            if req.method != "GET":
                return _error(405, "Method Not Allowed", {"Allow": "GET"})
            with self._lock:
                sub = self._subs.get(parts[2])
                if sub is None:
                    return _error(404, "Webhook subscription not found")
                return Response(200, {"secret": sub.secret})
        return _error(404, "Not Found")

    def _operation(self, route: _Route, req: Request) -> Response:
        if route.name != "token":
            denied = self._authenticate(req)
            if denied is not None:
                return denied
        # FastAPI's order of errors: path, then query, then headers, then body.
        detail: list[dict[str, Any]] = []
        if route.subscription_id is not None and not _is_uuid(route.subscription_id):
            detail.append(
                _err(
                    ("path", "webhook_subscription_id"),
                    "Input should be a valid UUID",
                    "uuid_parsing",
                )
            )
        if route.name == "list":
            parsed = self._parse_list(req, detail)
            _check_version(req, detail)
        else:
            _check_version(req, detail)
            parsed = self._parse(route.name, req, detail)
        if detail:
            return Response(422, {"detail": detail})
        if route.name != "token" and self._roll_error():
            return self._fault_error()
        response = self._apply(route, parsed)
        if route.name != "token" and 200 <= response.status < 300 and self._take_malformed():
            return Response(200, raw=_truncate(response.body))
        return response

    def _apply(self, route: _Route, parsed: Any) -> Response:
        name = route.name
        if name == "token":
            return self._issue_token(parsed)
        if name == "revoke":
            return self._revoke(parsed)
        if name == "list":
            return self._list(parsed)
        if name == "create":
            with self._lock:
                created = self._create_locked(
                    url=parsed["url"],
                    object_type=parsed["object_type"],
                    event_types=list(parsed.get("event_types") or []),
                    status="enabled",
                    extra={},
                    created_at=None,
                )
                return Response(201, created.resource(with_secret=True))
        sub_id = route.subscription_id
        assert sub_id is not None
        if name == "regenerate_secret":
            return self._regenerate(sub_id)
        with self._lock:
            sub = self._subs.get(sub_id)
            if sub is None:
                return _error(404, "Webhook subscription not found")
            if name == "get":
                return Response(200, sub.resource())
            if name == "delete":
                del self._subs[sub_id]
                self._version += 1
                return Response(204)
            if name in ("enable", "disable"):
                sub.status = "enabled" if name == "enable" else "disabled"
            elif name == "patch":
                # PATCH semantics of the schema: an absent or null field is left as it is.
                for key in ("url", "object_type", "event_types"):
                    if parsed.get(key) is not None:
                        setattr(sub, key, parsed[key])
            sub.updated_at = _now()
            self._version += 1
            return Response(200, sub.resource())

    # -- operations ----------------------------------------------------------

    def _issue_token(self, body: Mapping[str, Any]) -> Response:
        with self._lock:
            known = self._clients.get(body["client_id"])
            if known is None or not secrets.compare_digest(
                known.encode(), body["client_secret"].encode()
            ):
                return _error(401, "Wrong client credentials")
            if body["grant_type"] == "entity_user":
                # Entity users do not exist here; webhook subscriptions are partner-level.
                return _error(401, "Entity user not found")
            value = secrets.token_urlsafe(32)
            record_issued(value)
            self._tokens[value] = _AccessToken(
                client_id=body["client_id"], expires_at=time.monotonic() + self.token_ttl
            )
        return Response(
            200, {"access_token": value, "expires_in": self.token_ttl, "token_type": "Bearer"}
        )

    def _revoke(self, body: Mapping[str, Any]) -> Response:
        with self._lock:
            known = self._clients.get(body["client_id"])
            if known is None or not secrets.compare_digest(
                known.encode(), body["client_secret"].encode()
            ):
                return _error(401, "Wrong client credentials")
            token = self._tokens.get(body["token"])
            # Revoking an unknown token succeeds, as OAuth revocation does (RFC 7009).
            if token is not None and token.client_id == body["client_id"]:
                token.revoked = True
        return Response(200, {"message": "Token revoked"})

    def _regenerate(self, sub_id: str) -> Response:
        faults = self.faults
        with self._lock:
            sub = self._subs.get(sub_id)
            if sub is None:
                return _error(404, "Webhook subscription not found")
            if faults.regenerate_not_found > 0:
                faults.regenerate_not_found -= 1
                return _error(404, "Webhook subscription not found")
            if faults.fail_regenerate > 0:
                faults.fail_regenerate -= 1
                return self._fault_error()
            if faults.straggle_regenerate > 0:
                faults.straggle_regenerate -= 1
                if self._stopping.is_set():
                    raise Drop  # stop() already emptied the queue; nothing would wake this
                held = _Straggler(sub_id, faults.straggle_after)
                self._stragglers.append(held)
            else:
                held = None
                body = self._rotate_locked(sub)
                drop = faults.drop_after_regenerate > 0
                if drop:
                    faults.drop_after_regenerate -= 1
        if held is not None:
            self._await_straggler(held)  # never returns: this client gets no answer
        if drop:
            raise Drop
        return Response(200, body)

    def _await_straggler(self, held: _Straggler) -> NoReturn:
        if not held.settled.wait(held.after):
            with self._lock:
                self._settle_locked(held, apply=True)
        # Even if the client is somehow still connected, it must not read
        # success: at Monite this request's answer never came.
        raise Drop

    def _settle_locked(self, held: _Straggler, *, apply: bool) -> bool:
        """Take `held` off the queue, applying it if asked; True if a secret changed.

        Release, the straggle_after timeout and stop() may race; only the first settles it.
        """
        if held not in self._stragglers:
            return False
        self._stragglers.remove(held)
        held.settled.set()
        sub = self._subs.get(held.subscription_id)
        if not apply or sub is None:
            return False
        self._rotate_locked(sub)
        return True

    def _rotate_locked(self, sub: _Subscription) -> dict[str, Any]:
        """Mint a new secret (the old one stops working at once); the resource with it."""
        sub.secret = secrets.token_urlsafe(32)
        record_issued(sub.secret)
        sub.updated_at = _now()
        self._version += 1
        self._regenerations[sub.id] += 1
        return sub.resource(with_secret=True)

    def _sorted_locked(self, query: _ListQuery) -> tuple[list[_Subscription], list[Any]]:
        """Matching subscriptions in ascending key order, cached until the next change.

        Listing 10,000 subscriptions page by page must not re-sort them for every
        page, or the emulator, not the client, sets the pace of a benchmark.
        """
        shape = dataclasses.replace(query, limit=0, order="asc")
        cached = self._sorted_cache.get(shape)
        if cached is not None and cached[0] == self._version:
            return cached[1], cached[2]
        items = sorted(
            (s for s in self._subs.values() if _matches(s, query)),
            key=lambda s: _sort_key(s, query.sort),
        )
        keys = [_sort_key(s, query.sort) for s in items]
        self._sorted_cache = {shape: (self._version, items, keys)}
        return items, keys

    def _list(self, request: _ListRequest) -> Response:
        faults = self.faults
        query, cursor = request.query, request.cursor
        with self._lock:
            items, keys = self._sorted_locked(query)
            descending = query.order == "desc"

            # Keyset pagination: a cursor names the sort key it continues from,
            # so a concurrent create or delete shifts nothing already listed.
            def after(anchor: tuple[datetime, int], n: int) -> list[_Subscription]:
                """The first n items after `anchor`, in listing order."""
                if descending:
                    i = bisect.bisect_left(keys, anchor)
                    return items[max(0, i - n) : i][::-1]
                i = bisect.bisect_right(keys, anchor)
                return items[i : i + n]

            def before(anchor: tuple[datetime, int], n: int) -> list[_Subscription]:
                """The last n items before `anchor`, in listing order."""
                if descending:
                    i = bisect.bisect_right(keys, anchor)
                    return items[i : i + n][::-1]
                i = bisect.bisect_left(keys, anchor)
                return items[max(0, i - n) : i]

            page: list[_Subscription]
            if cursor is None:
                page = items[::-1][: query.limit] if descending else items[: query.limit]
            elif cursor.direction == "prev":
                page = before(cursor.anchor, query.limit)
            else:
                repeated = (
                    self._subs.get(cursor.anchor_id) if faults.duplicate_across_pages else None
                )
                if repeated is not None:
                    # At least one new item, so even limit=1 still moves forward.
                    page = [repeated, *after(cursor.anchor, max(1, query.limit - 1))]
                else:
                    page = after(cursor.anchor, query.limit)

            next_token: str | None = None
            prev_token: str | None = None
            if page:
                last_key = _sort_key(page[-1], query.sort)
                first_key = _sort_key(page[0], query.sort)
                if after(last_key, 1) or (faults.pagination_loop and request.token is None):
                    next_token = self._mint_locked(_Cursor(query, "next", last_key, page[-1].id))
                if cursor is not None and before(first_key, 1):
                    prev_token = self._mint_locked(_Cursor(query, "prev", first_key, page[0].id))
            if faults.pagination_loop and request.token is not None:
                next_token = request.token
            body = {
                "data": [s.resource() for s in page],
                "next_pagination_token": next_token,
                "prev_pagination_token": prev_token,
            }
        return Response(200, body)

    # -- helpers (call the *_locked ones with self._lock held) -------------------

    def _authenticate(self, req: Request) -> Response | None:
        header = req.header("authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return _error(401, "Not authenticated: a Bearer access token is required")
        with self._lock:
            token = self._tokens.get(value.strip())
            if token is None:
                return _error(401, "Invalid access token")
            if token.revoked:
                return _error(401, "Access token has been revoked")
            if token.expires_at <= time.monotonic():
                return _error(401, "Access token has expired")
        return None

    def _roll_error(self) -> bool:
        with self._lock:
            rate = self.faults.error_rate
            return rate > 0 and self._rng.random() < rate

    def _take_malformed(self) -> bool:
        with self._lock:
            if self.faults.malformed_json <= 0:
                return False
            self.faults.malformed_json -= 1
            return True

    def _fault_error(self) -> Response:
        status, retry_after = self.faults.error_status, self.faults.retry_after
        headers: dict[str, str] = {}
        if status in (429, 503):
            headers["Retry-After"] = "1" if retry_after is None else _seconds(retry_after)
        return _error(
            status, "Internal Server Error" if status >= 500 else "Injected error", headers
        )

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _create_locked(
        self,
        *,
        url: str,
        object_type: str,
        event_types: list[str],
        status: str,
        extra: dict[str, Any],
        created_at: datetime | None,
    ) -> _Subscription:
        self._seq += 1
        created = created_at if created_at is not None else _now()
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        secret = secrets.token_urlsafe(32)
        record_issued(secret)
        sub = _Subscription(
            id=self._new_id(),
            url=url,
            object_type=object_type,
            status=status,
            event_types=event_types,
            secret=secret,
            seq=self._seq,
            created_at=created,
            updated_at=created,
            extra=extra,
        )
        self._subs[sub.id] = sub
        self._version += 1
        return sub

    def _mint_locked(self, cursor: _Cursor) -> str:
        token = secrets.token_urlsafe(24)
        self._pagination[token] = cursor
        while len(self._pagination) > _MAX_PAGINATION_TOKENS:
            del self._pagination[next(iter(self._pagination))]
        return token

    def _parse(self, name: str, req: Request, detail: list[dict[str, Any]]) -> Any:
        """Validate the query or body of operation `name`, appending to `detail`."""
        if name == "list":
            return self._parse_list(req, detail)
        spec = _BODIES.get(name)
        if spec is None:
            return None
        return _parse_body(req, spec, detail)

    def _parse_list(self, req: Request, detail: list[dict[str, Any]]) -> _ListRequest | None:
        limit = _query_int(req, "limit", 100, 1, 100, detail)
        order = _query_enum(req, "order", ORDERS, detail) or "asc"
        sort = _query_enum(req, "sort", SORT_FIELDS, detail) or "created_at"
        object_type = _query_enum(req, "object_type", OBJECT_TYPES, detail)
        bounds = [
            _query_datetime(req, f"created_at__{op}", detail) for op in ("gt", "lt", "gte", "lte")
        ]
        token = req.param("pagination_token")
        cursor: _Cursor | None = None
        if token is not None:
            with self._lock:
                cursor = self._pagination.get(token)
            if cursor is None:
                detail.append(
                    _err(("query", "pagination_token"), "Invalid pagination token", "value_error")
                )
        if detail:
            return None
        if cursor is not None:
            # The documented rule: a pagination token overrides every other parameter.
            return _ListRequest(cursor.query, cursor, token)
        query = _ListQuery(object_type, sort, order, limit, *bounds)
        return _ListRequest(query, None, None)


@dataclass(frozen=True)
class _ListRequest:
    query: _ListQuery
    cursor: _Cursor | None
    token: str | None  # the pagination token the client sent, if any


# -- routing ------------------------------------------------------------------

_ACTIONS = ("enable", "disable", "regenerate_secret")


def _resolve(method: str, path: str) -> tuple[_Route, tuple[str, ...]]:
    """The operation for `method path` (or not_found / method_not_allowed) and its methods."""
    parts = path.split("/")[2:]  # drop "" and "v1"
    table: dict[str, str]
    sub_id: str | None = None
    if parts == ["auth", "token"]:
        table = {"POST": "token"}
    elif parts == ["auth", "revoke"]:
        table = {"POST": "revoke"}
    elif parts == ["webhook_subscriptions"]:
        table = {"GET": "list", "POST": "create"}
    elif len(parts) == 2 and parts[0] == "webhook_subscriptions" and parts[1]:
        table = {"GET": "get", "PATCH": "patch", "DELETE": "delete"}
        sub_id = parts[1]
    elif (
        len(parts) == 3
        and parts[0] == "webhook_subscriptions"
        and parts[1]
        and parts[2] in _ACTIONS
    ):
        table = {"POST": parts[2]}
        sub_id = parts[1]
    else:
        return _Route("not_found"), ()
    name = table.get(method)
    if name is None:
        return _Route("method_not_allowed"), tuple(table)
    return _Route(name, sub_id), tuple(table)


# -- validation, shaped like FastAPI + pydantic v2 ------------------------------


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _enum_msg(values: Sequence[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    return f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}"


def _check_version(req: Request, detail: list[dict[str, Any]]) -> None:
    """A present x-monite-version must be a date (a missing one never gets this far)."""
    value = req.header("x-monite-version")
    if value is None:
        return
    try:
        date.fromisoformat(value)
    except ValueError:
        detail.append(
            _err(("header", "x-monite-version"), "Input should be a valid date", "date_parsing")
        )


def _query_int(
    req: Request, name: str, default: int, low: int, high: int, detail: list[dict[str, Any]]
) -> int:
    raw = req.param(name)
    if raw is None:
        return default
    loc = ("query", name)
    try:
        value = int(raw.strip())
    except ValueError:
        detail.append(
            _err(
                loc,
                "Input should be a valid integer, unable to parse string as an integer",
                "int_parsing",
            )
        )
        return default
    if value < low:
        detail.append(
            _err(loc, f"Input should be greater than or equal to {low}", "greater_than_equal")
        )
    elif value > high:
        detail.append(_err(loc, f"Input should be less than or equal to {high}", "less_than_equal"))
    return value


def _query_enum(
    req: Request, name: str, values: Sequence[str], detail: list[dict[str, Any]]
) -> str | None:
    raw = req.param(name)
    if raw is not None and raw not in values:
        detail.append(_err(("query", name), _enum_msg(values), "enum"))
        return None
    return raw


def _query_datetime(req: Request, name: str, detail: list[dict[str, Any]]) -> datetime | None:
    raw = req.param(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        detail.append(_err(("query", name), "Input should be a valid datetime", "datetime_parsing"))
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_Check = Callable[[Any, tuple[str | int, ...], list[dict[str, Any]]], None]


@dataclass(frozen=True)
class _Field:
    check: _Check
    required: bool = False
    nullable: bool = False


def _check_str(value: Any, loc: tuple[str | int, ...], detail: list[dict[str, Any]]) -> None:
    if not isinstance(value, str):
        detail.append(_err(loc, "Input should be a valid string", "string_type"))


def _check_uuid(value: Any, loc: tuple[str | int, ...], detail: list[dict[str, Any]]) -> None:
    if not isinstance(value, str):
        detail.append(_err(loc, "UUID input should be a string, bytes or UUID object", "uuid_type"))
    elif not _is_uuid(value):
        detail.append(_err(loc, "Input should be a valid UUID", "uuid_parsing"))


def _check_enum(values: Sequence[str]) -> _Check:
    def check(value: Any, loc: tuple[str | int, ...], detail: list[dict[str, Any]]) -> None:
        if not isinstance(value, str) or value not in values:
            detail.append(_err(loc, _enum_msg(values), "enum"))

    return check


def _check_url(value: Any, loc: tuple[str | int, ...], detail: list[dict[str, Any]]) -> None:
    if not isinstance(value, str):
        detail.append(_err(loc, "URL input should be a string or URL", "url_type"))
        return
    if not value:
        detail.append(_err(loc, "Input should be a valid URL, input is empty", "url_parsing"))
        return
    if len(value) > MAX_URL_LENGTH:
        detail.append(
            _err(loc, f"URL should have at most {MAX_URL_LENGTH} characters", "url_too_long")
        )
        return
    try:
        parts = urlsplit(value)
    except ValueError:
        detail.append(_err(loc, "Input should be a valid URL", "url_parsing"))
        return
    if parts.scheme not in ("http", "https"):
        detail.append(_err(loc, "URL scheme should be 'http' or 'https'", "url_scheme"))
    elif not parts.hostname:
        detail.append(_err(loc, "Input should be a valid URL, empty host", "url_parsing"))


def _check_str_list(value: Any, loc: tuple[str | int, ...], detail: list[dict[str, Any]]) -> None:
    if not isinstance(value, list):
        detail.append(_err(loc, "Input should be a valid list", "list_type"))
        return
    for index, item in enumerate(value):
        _check_str(item, (*loc, index), detail)


_BODIES: dict[str, dict[str, _Field]] = {
    "token": {
        "client_id": _Field(_check_uuid, required=True),
        "client_secret": _Field(_check_str, required=True),
        "entity_user_id": _Field(_check_uuid, nullable=True),
        "grant_type": _Field(_check_enum(GRANT_TYPES), required=True),
    },
    "revoke": {
        "client_id": _Field(_check_uuid, required=True),
        "client_secret": _Field(_check_str, required=True),
        "token": _Field(_check_str, required=True),
    },
    "create": {
        "event_types": _Field(_check_str_list),
        "object_type": _Field(_check_enum(OBJECT_TYPES), required=True),
        "url": _Field(_check_url, required=True),
    },
    "patch": {
        "event_types": _Field(_check_str_list, nullable=True),
        "object_type": _Field(_check_enum(OBJECT_TYPES), nullable=True),
        "url": _Field(_check_url, nullable=True),
    },
}


def _parse_body(
    req: Request, spec: Mapping[str, _Field], detail: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The JSON object body checked against `spec` (extra keys forbidden, as the schema says)."""
    if not req.body:
        detail.append(_err(("body",), "Field required", "missing"))
        return None
    try:
        body = json.loads(req.body)
    except json.JSONDecodeError as exc:
        detail.append(_err(("body", exc.pos), "JSON decode error", "json_invalid"))
        return None
    except UnicodeDecodeError:
        detail.append(_err(("body", 0), "JSON decode error", "json_invalid"))
        return None
    if not isinstance(body, dict):
        detail.append(
            _err(
                ("body",),
                "Input should be a valid dictionary or object to extract fields from",
                "model_attributes_type",
            )
        )
        return None
    before = len(detail)
    for name, rule in spec.items():
        if name not in body:
            if rule.required:
                detail.append(_err(("body", name), "Field required", "missing"))
            continue
        value = body[name]
        if value is None and rule.nullable:
            continue
        rule.check(value, ("body", name), detail)
    for name in body:
        if name not in spec:
            detail.append(
                _err(("body", str(name)), "Extra inputs are not permitted", "extra_forbidden")
            )
    return body if len(detail) == before else None


# -- listing ----------------------------------------------------------------


def _sort_key(sub: _Subscription, sort: str) -> tuple[datetime, int]:
    return (sub.updated_at if sort == "updated_at" else sub.created_at, sub.seq)


def _matches(sub: _Subscription, query: _ListQuery) -> bool:
    created = sub.created_at
    return (
        (query.object_type is None or sub.object_type == query.object_type)
        and (query.created_gt is None or created > query.created_gt)
        and (query.created_lt is None or created < query.created_lt)
        and (query.created_gte is None or created >= query.created_gte)
        and (query.created_lte is None or created <= query.created_lte)
    )


def _truncate(body: Any) -> bytes:
    """A cut-off JSON document: what a proxy that dropped the tail would deliver.

    The secret is removed first: a broken answer must not be a second place a
    new secret appears (the one in the emulator's state is still recorded).
    """
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "secret"}
    text = json.dumps(body).encode() if body is not None else b"{}"
    return text[: max(1, len(text) // 2)]
