"""The OAuth access token: owns its lifetime, its one shared fetch and its refresh.

A token is fetched once and shared by concurrent callers, refreshed before it
expires (with a margin of 5 minutes or 10% of its lifetime), and dropped when
Monite refuses it so the next caller fetches a fresh one. How it is fetched
(the request itself) is the client's business: `Tokens` is given a coroutine.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rotator.clock import Clock
from rotator.errors import MoniteProtocolError
from rotator.secret import Secret

TOKEN_REFRESH_MARGIN = 300.0  # refresh when less than this (or 10% of the lifetime) is left
TOKEN_FALLBACK_LIFETIME = 600.0  # used when Monite omits `expires_in`; a 401 covers the rest


@dataclass(frozen=True, slots=True)
class Token:
    """An access token and when (on `clock.monotonic()`) it expires and is refreshed."""

    value: Secret
    expires_at: float
    refresh_at: float


def parse_token(body: Any, now: float) -> Token:
    """The token in Monite's `/auth/token` answer, received at monotonic instant `now`."""
    if not isinstance(body, dict):
        raise MoniteProtocolError("Monite token: the response is not a JSON object")
    value = body.get("access_token")
    if not isinstance(value, str) or not value:
        raise MoniteProtocolError("Monite token: the response has no access_token")
    expires_in = body.get("expires_in")
    lifetime = (
        float(expires_in)
        if isinstance(expires_in, int | float)
        and not isinstance(expires_in, bool)
        and math.isfinite(expires_in)
        and expires_in > 0
        else TOKEN_FALLBACK_LIFETIME
    )
    margin = min(TOKEN_REFRESH_MARGIN, 0.1 * lifetime)
    return Token(Secret(value), expires_at=now + lifetime, refresh_at=now + lifetime - margin)


class Tokens:
    """The cached token: one fetch at a time, shared by every caller."""

    def __init__(self, clock: Clock, fetch: Callable[[], Awaitable[Token]]) -> None:
        self._clock = clock
        self._fetch = fetch
        self._lock = asyncio.Lock()
        self.current: Token | None = None

    async def get(self) -> Token:
        """A token that is not due for refresh, fetched when there is none."""
        token = self.current
        if token is not None and self._clock.monotonic() < token.refresh_at:
            return token
        async with self._lock:
            # Another caller may have refreshed it while this one waited.
            token = self.current
            if token is not None and self._clock.monotonic() < token.refresh_at:
                return token
            self.current = await self._fetch()
            return self.current

    def drop(self, used: Token) -> None:
        """Forget `used` after Monite refused it, unless a fresh one already replaced it."""
        if self.current is used:
            self.current = None

    def take(self) -> Token | None:
        """The cached token, forgotten here (to revoke it)."""
        token, self.current = self.current, None
        return token
