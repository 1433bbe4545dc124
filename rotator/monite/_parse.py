"""Reading Monite's successful answers: owns the shapes of pages, subscriptions and secrets.

Each parser takes a JSON body and returns the model, or raises
MoniteProtocolError naming what is wrong without quoting the body (a body
can hold the new secret); `parse_success` turns that, and a body that is no
JSON at all, into the attempt's Failure. Unknown enum values stay strings and unknown
fields go to `extra`, so a field Monite adds tomorrow does not stop today's rotator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from rotator.errors import MoniteProtocolError
from rotator.model import Created, Regenerated, Subscription
from rotator.monite._errors import Failure
from rotator.monite._response import UNREADABLE
from rotator.secret import Secret

T = TypeVar("T")

# The longest webhook secret accepted from Monite: real ones are tens of characters;
# a response holding more is not the answer this client knows how to read.
MAX_SECRET_BYTES = 4096

# Fields of a subscription this client understands; anything else goes to `extra`.
# `secret` is neither: it must never sit in a plain mapping that outlives the call.
_KNOWN_FIELDS = frozenset({"id", "url", "object_type", "status", "event_types", "secret"})


def parse_success(
    operation: str, response: httpx.Response, parse: Callable[[Any], T]
) -> T | Failure:
    """A 2xx answer read with `parse`, or the Failure of a body we cannot trust.

    A 2xx did whatever it was asked, even if we cannot read it: every such
    failure may have applied. None chains the parser's exception: a
    half-parsed body can hold the new secret.
    """
    status = response.status_code
    body: Any = None  # No Content (204) has no body to read
    if status != 204:
        try:
            body = response.json()
        except UNREADABLE:
            return Failure(
                MoniteProtocolError,
                f"Monite {operation}: HTTP {status} with a body that is not readable JSON",
                status=status,
                may_have_applied=True,
                retryable_protocol=True,
            )
    try:
        return parse(body)
    except MoniteProtocolError as exc:
        return Failure(
            MoniteProtocolError,
            str(exc),
            status=status,
            may_have_applied=True,
            retryable_protocol=exc.retryable,
        )
    except RecursionError:
        return Failure(
            MoniteProtocolError,
            f"Monite {operation}: HTTP {status} with JSON nested too deeply",
            status=status,
            may_have_applied=True,
        )


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the listing: its usable items, the next page's token, how many were dropped."""

    items: list[Subscription]
    next_token: str | None
    skipped: int


def parse_page(body: Any) -> Page:
    """A listing page; items without a usable id are counted in `skipped` and dropped."""
    if not isinstance(body, dict):
        raise MoniteProtocolError("Monite list: the response is not a JSON object")
    data = body.get("data")
    if not isinstance(data, list):
        raise MoniteProtocolError("Monite list: the response has no `data` list")
    items: list[Subscription] = []
    skipped = 0
    for raw in data:
        sub = _subscription(raw)
        if sub is None:
            skipped += 1
        else:
            items.append(sub)
    token = body.get("next_pagination_token")
    if token is not None and not isinstance(token, str):
        # Ending the listing here would hide every later page's subscriptions.
        raise MoniteProtocolError(
            f"Monite list: next_pagination_token is a {_json_type(token)}, not a string"
        )
    return Page(items, token or None, skipped)


def parse_single(body: Any, operation: str) -> Subscription:
    """One subscription, as `get` answers it."""
    sub = _subscription(body)
    if sub is None:
        raise MoniteProtocolError(f"Monite {operation}: the response is not a subscription")
    return sub


def parse_regenerated(body: Any) -> Regenerated:
    """A regenerate answer: the subscription and its new secret's only copy."""
    sub = parse_single(body, "regenerate_secret")
    problem = _secret_problem(body.get("secret"))
    if problem is not None:
        # Only the last regenerate counts, so asking again is safe and may succeed.
        raise MoniteProtocolError(f"Monite regenerate_secret: {problem}", retryable=True)
    return Regenerated(subscription=sub, secret=Secret(body["secret"]))


def parse_created(body: Any) -> Created:
    """A create answer: the new subscription and its secret's only copy."""
    sub = parse_single(body, "create")
    problem = _secret_problem(body.get("secret"))
    if problem is not None:
        # The subscription exists now, its secret unknown: name it (an id is no
        # secret) so it can be found and deleted. Another create makes another.
        raise MoniteProtocolError(f"Monite create: {problem} (subscription {sub.id} was created)")
    return Created(subscription=sub, secret=Secret(body["secret"]))


def parse_deleted(body: Any) -> None:
    """A delete answer: 204 and no body (another 2xx's JSON body means nothing more)."""


def _secret_problem(secret: object) -> str | None:
    """What is wrong with an answer's `secret` (never a part of its value), or None."""
    if not isinstance(secret, str) or not secret:
        if secret is not None and not isinstance(secret, str):
            return f"the response's secret is a {_json_type(secret)}, not a string"
        return "the response has no secret"
    if len(secret.encode("utf-8", "surrogatepass")) > MAX_SECRET_BYTES:
        # The size only: never a part of the value.
        return f"the response's secret is longer than {MAX_SECRET_BYTES} bytes"
    return None


def _json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages that must not echo the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _subscription(raw: Any) -> Subscription | None:
    """A subscription from one JSON item, or None when it has no usable id."""
    if not isinstance(raw, dict):
        return None
    sub_id = raw.get("id")
    if not isinstance(sub_id, str) or not sub_id:
        return None
    events = raw.get("event_types")
    return Subscription(
        id=sub_id,
        url=_str(raw.get("url")),
        object_type=_str(raw.get("object_type")),
        status=_str(raw.get("status")),
        event_types=tuple(str(e) for e in events) if isinstance(events, list) else (),
        extra={k: v for k, v in raw.items() if k not in _KNOWN_FIELDS},
    )


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""
