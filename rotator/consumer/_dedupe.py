"""Dropping a delivery whose event was already handled: `Deduplicator`, by event `id`.

Monite delivers an event again when an attempt failed, and during a swap
(`rotation.strategy = "swap"`, docs/swap.md) it delivers every event through
both the original subscription and its successor: the same `id` and `object`,
each naming its own `webhook_subscription_id` and signed with its own secret.
A consumer that must act once per event keeps the ids it handled for at least
the rotator's `rotation.overlap` plus Monite's retry horizon.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_MAX_ENTRIES = 100_000
"""Event ids a Deduplicator keeps at most (about 20 MB of UUIDs); beyond, the oldest go first."""


class Deduplicator:
    """The event ids seen in the last `ttl` seconds, in memory, for this process; thread-safe.

        dedupe = Deduplicator(ttl=3600)
        delivery = verifier.verify(headers, body)        # verify first, always
        if delivery.event_id and dedupe.seen(delivery.event_id):
            return 200                                   # handled already: answer, skip
        handle(delivery.payload)

    Ask only after the delivery verified: recording an unverified id would let
    a forger mark a real event as handled before it arrives. `seen` records
    the id, so of two deliveries of one event racing each other exactly one
    gets False. If handling then fails, `forget` the id so Monite's retry is
    handled.

    An id is remembered for `ttl` seconds from its first sight (a duplicate does
    not extend it), on `clock` (monotonic seconds; default `time.monotonic`).
    Bounded: at most `max_entries` ids are kept, and when a new one would
    exceed that the oldest is evicted first, even before its `ttl` ends (then a
    late duplicate of it is treated as new; `evicted` counts those). Per
    process: several instances of a consumer each see their own deliveries, so
    they need a store they share (a database's unique key, Redis `SET NX EX`).
    """

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(ttl) and ttl > 0):
            raise ValueError("ttl must be a positive number of seconds")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.ttl = float(ttl)
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: OrderedDict[str, float] = OrderedDict()  # id: when it is forgotten
        self.duplicates = 0
        """How many times `seen` answered True."""
        self.evicted = 0
        """Ids dropped before their ttl ended to stay within `max_entries`."""

    def __repr__(self) -> str:
        return f"Deduplicator(ttl={self.ttl:g}, max_entries={self.max_entries})"

    def __len__(self) -> int:
        """How many ids are remembered now (expired ones are dropped first)."""
        with self._lock:
            self._expire(self._clock())
            return len(self._expiry)

    def seen(self, event_id: str) -> bool:
        """True if `event_id` was seen within `ttl` (a duplicate); else record it and say False."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            expires = self._expiry.get(event_id)
            if expires is not None:
                if expires > now:
                    self.duplicates += 1
                    return True
                del self._expiry[event_id]  # expired behind the front (a clock stepped back)
            self._expiry[event_id] = now + self.ttl
            while len(self._expiry) > self.max_entries:
                self._expiry.popitem(last=False)
                self.evicted += 1
            return False

    def forget(self, event_id: str) -> None:
        """Drop `event_id`, so its next delivery counts as new (when handling it failed)."""
        with self._lock:
            self._expiry.pop(event_id, None)

    def _expire(self, now: float) -> None:
        """Drop the ids whose ttl ended, from the front: insertion order is expiry order."""
        while self._expiry:
            event_id, expires = next(iter(self._expiry.items()))
            if expires > now:
                return
            del self._expiry[event_id]
