"""The Monite emulator's answers: error bodies, the headers on every response, the rate limit.

Monite's ErrorSchemaResponse and FastAPI's 422 detail items, the
`x-monite-version` an answer names, the gateway's token bucket with its
RateLimit-* and Retry-After headers, and the cut-off body of the
malformed-JSON fault.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from datetime import date
from typing import Any

from rotator.sandbox._http import Request, Response

# The schema's version: what `x-monite-version` says on an answer to a request
# that named no valid version (Monite adds the header to every response).
DEFAULT_API_VERSION = "2024-05-25"
# Monite's documented answer to a request without `x-monite-version`.
MISSING_API_VERSION = "missing_api_version"
MISSING_API_VERSION_MESSAGE = "Missing the x-monite-version HTTP header"


def err(loc: Sequence[str | int], msg: str, kind: str) -> dict[str, Any]:
    # Pydantic also echoes `input`; never here, since the input may be a secret.
    return {"loc": list(loc), "msg": msg, "type": kind}


def error(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    kind: str | None = None,
) -> Response:
    """Monite's ErrorSchemaResponse; `kind` adds the `error.type` some answers carry."""
    fields: dict[str, str] = {"message": message}
    if kind is not None:
        fields = {"type": kind, **fields}
    return Response(status, {"error": fields}, headers=dict(headers or {}))


def response_version(req: Request) -> str:
    """The version an answer names: the request's own when it is a date, else the default."""
    value = (req.header("x-monite-version") or "").strip()
    try:
        date.fromisoformat(value)
    except ValueError:
        return DEFAULT_API_VERSION
    return value


def header_seconds(value: float) -> str:
    """A delay for a header: whole seconds as HTTP writes them, a fraction only if there is one."""
    return str(int(value)) if float(value).is_integer() else str(value)


class TokenBucket:
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


def truncate(body: Any) -> bytes:
    """A cut-off JSON document: what a proxy that dropped the tail would deliver.

    The secret is removed first: a broken answer must not be a second place a
    new secret appears (the one in the emulator's state is still recorded).
    """
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "secret"}
    text = json.dumps(body).encode() if body is not None else b"{}"
    return text[: max(1, len(text) // 2)]
