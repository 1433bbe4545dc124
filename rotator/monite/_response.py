"""Reading what a Monite answer says besides its data: owns headers and error bodies.

`Retry-After`, the `RateLimit-*` numbers, the `x-request-id` Monite's support
asks for, and Monite's own error text (`error.message`, the 422 `detail`) and
`error.type`. All of it is data from the network: nothing here may raise on
a hostile value, and nothing here echoes a body.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import httpx

from rotator.clock import Clock
from rotator.redact import redact_text
from rotator.retry import retry_after_seconds

MAX_ERROR_TEXT = 300  # characters of Monite's error text kept in a message

# What reading a body Monite sent can raise: bad JSON (or text) is a ValueError;
# JSON nested thousands deep is a RecursionError, in parsing or in walking it.
UNREADABLE = (ValueError, RecursionError)

# Monite names every response in `x-request-id` ("always provide this ID when reporting
# any issues"). Only an id of this shape is repeated: it is data from the network.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def retry_after(response: httpx.Response, clock: Clock) -> float | None:
    """`Retry-After` in seconds (delta or HTTP date), or None when absent or unreadable
    (`rotator.retry.retry_after_seconds`, the one parser, which the hooks use too)."""
    return retry_after_seconds(response.headers.get("Retry-After"), clock)


def header_number(response: httpx.Response, name: str) -> int | None:
    """An integer rate-limit header, or None when absent or not a number."""
    try:
        value = float(response.headers[name])
    except (KeyError, ValueError):
        return None
    # A header is data from the network: inf, nan or 1e999 must not raise here.
    return int(value) if math.isfinite(value) else None


def request_id(response: httpx.Response, credentials: Iterable[str]) -> str | None:
    """Monite's `x-request-id` for this response, when it is safe to repeat in a message.

    A value of an unexpected shape, or one that holds a secret (`credentials`
    or any live Secret) or occurs in the body (where a new secret may be), is left out.
    """
    value = response.headers.get("x-request-id", "").strip()
    if _REQUEST_ID.fullmatch(value) is None or redact_text(value, also=credentials) != value:
        return None
    try:
        in_body = value in response.text
    except UNREADABLE:
        in_body = True
    return None if in_body else value


def error_text(response: httpx.Response) -> str:
    """Monite's own explanation: `error.message`, or the 422 `detail` (never its `input`)."""
    try:
        body = response.json()
    except UNREADABLE:
        return ""
    try:
        return _explanation(body)
    except RecursionError:
        return ""


def error_type(response: httpx.Response) -> str | None:
    """Monite's `error.type` (some errors carry one, like `missing_api_version`), if any."""
    try:
        body = response.json()
    except UNREADABLE:
        return None
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) else None


def _explanation(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return _clip(error["message"])
    details = body.get("detail")
    if isinstance(details, list):
        parts = []
        for item in details:
            if not isinstance(item, dict):
                continue
            msg = item.get("msg")
            loc = item.get("loc")
            where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
            if isinstance(msg, str):
                parts.append(f"{where}: {msg}" if where else msg)
        return _clip("; ".join(parts))
    if isinstance(details, str):
        return _clip(details)
    return ""


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 3] + "..."
