"""The Monite emulator's listing: filters, sort order, and cursor pagination with opaque tokens.

Keyset pagination: a token names the sort key its page continues from (kept
server-side, bounded), so a concurrent create or delete shifts nothing
already listed; a token overrides every other query parameter, as Monite
documents. The pagination faults (a looping token, an item repeated across
pages) act here.
"""

from __future__ import annotations

import bisect
import dataclasses
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from rotator.sandbox._http import Request, Response
from rotator.sandbox.monite.auth import MoniteAuth
from rotator.sandbox.monite.responses import err
from rotator.sandbox.monite.store import Subscription
from rotator.sandbox.monite.validation import (
    OBJECT_TYPES,
    ORDERS,
    SORT_FIELDS,
    query_datetime,
    query_enum,
    query_int,
)

# Tokens handed out by listing are kept server-side; a bound keeps a client
# that pages forever (the pagination-loop fault) from growing memory forever.
MAX_PAGINATION_TOKENS = 50_000


@dataclass(frozen=True)
class ListQuery:
    object_type: str | None
    sort: str
    order: str
    limit: int
    created_gt: datetime | None
    created_lt: datetime | None
    created_gte: datetime | None
    created_lte: datetime | None


@dataclass(frozen=True)
class Cursor:
    query: ListQuery
    direction: Literal["next", "prev"]
    anchor: tuple[datetime, int]  # sort key of the item the page starts after / ends before
    anchor_id: str


@dataclass(frozen=True)
class ListRequest:
    query: ListQuery
    cursor: Cursor | None
    token: str | None  # the pagination token the client sent, if any


def sort_key(sub: Subscription, sort: str) -> tuple[datetime, int]:
    return (sub.updated_at if sort == "updated_at" else sub.created_at, sub.seq)


def matches(sub: Subscription, query: ListQuery) -> bool:
    created = sub.created_at
    return (
        (query.object_type is None or sub.object_type == query.object_type)
        and (query.created_gt is None or created > query.created_gt)
        and (query.created_lt is None or created < query.created_lt)
        and (query.created_gte is None or created >= query.created_gte)
        and (query.created_lte is None or created <= query.created_lte)
    )


class Paginated(MoniteAuth):
    """Listing: `GET /webhook_subscriptions` with its filters, order and pagination tokens."""

    def _sorted_locked(self, query: ListQuery) -> tuple[list[Subscription], list[Any]]:
        """Matching subscriptions in ascending key order, cached until the next change.

        Listing 10,000 subscriptions page by page must not re-sort them for every
        page, or the emulator, not the client, sets the pace of a benchmark.
        """
        shape = dataclasses.replace(query, limit=0, order="asc")
        cached = self._sorted_cache.get(shape)
        if cached is not None and cached[0] == self._version:
            return cached[1], cached[2]
        items = sorted(
            (s for s in self._subs.values() if matches(s, query)),
            key=lambda s: sort_key(s, query.sort),
        )
        keys = [sort_key(s, query.sort) for s in items]
        self._sorted_cache = {shape: (self._version, items, keys)}
        return items, keys

    def _list(self, request: ListRequest) -> Response:
        faults = self.faults
        query, cursor = request.query, request.cursor
        with self._lock:
            items, keys = self._sorted_locked(query)
            descending = query.order == "desc"

            # Keyset pagination: a cursor names the sort key it continues from,
            # so a concurrent create or delete shifts nothing already listed.
            def after(anchor: tuple[datetime, int], n: int) -> list[Subscription]:
                """The first n items after `anchor`, in listing order."""
                if descending:
                    i = bisect.bisect_left(keys, anchor)
                    return items[max(0, i - n) : i][::-1]
                i = bisect.bisect_right(keys, anchor)
                return items[i : i + n]

            def before(anchor: tuple[datetime, int], n: int) -> list[Subscription]:
                """The last n items before `anchor`, in listing order."""
                if descending:
                    i = bisect.bisect_right(keys, anchor)
                    return items[i : i + n][::-1]
                i = bisect.bisect_left(keys, anchor)
                return items[max(0, i - n) : i]

            page: list[Subscription]
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
                last_key = sort_key(page[-1], query.sort)
                first_key = sort_key(page[0], query.sort)
                if after(last_key, 1) or (faults.pagination_loop and request.token is None):
                    next_token = self._mint_locked(Cursor(query, "next", last_key, page[-1].id))
                if cursor is not None and before(first_key, 1):
                    prev_token = self._mint_locked(Cursor(query, "prev", first_key, page[0].id))
            if faults.pagination_loop and request.token is not None:
                next_token = request.token
            body = {
                "data": [s.resource() for s in page],
                "next_pagination_token": next_token,
                "prev_pagination_token": prev_token,
            }
        return Response(200, body)

    def _mint_locked(self, cursor: Cursor) -> str:
        token = secrets.token_urlsafe(24)
        self._pagination[token] = cursor
        while len(self._pagination) > MAX_PAGINATION_TOKENS:
            del self._pagination[next(iter(self._pagination))]
        return token

    def _parse_list(self, req: Request, detail: list[dict[str, Any]]) -> ListRequest | None:
        limit = query_int(req, "limit", 100, 1, 100, detail)
        order = query_enum(req, "order", ORDERS, detail) or "asc"
        sort = query_enum(req, "sort", SORT_FIELDS, detail) or "created_at"
        object_type = query_enum(req, "object_type", OBJECT_TYPES, detail)
        bounds = [
            query_datetime(req, f"created_at__{op}", detail) for op in ("gt", "lt", "gte", "lte")
        ]
        token = req.param("pagination_token")
        cursor: Cursor | None = None
        if token is not None:
            with self._lock:
                cursor = self._pagination.get(token)
            if cursor is None:
                detail.append(
                    err(("query", "pagination_token"), "Invalid pagination token", "value_error")
                )
        if detail:
            return None
        if cursor is not None:
            # The documented rule: a pagination token overrides every other parameter.
            return ListRequest(cursor.query, cursor, token)
        query = ListQuery(object_type, sort, order, limit, *bounds)
        return ListRequest(query, None, None)
