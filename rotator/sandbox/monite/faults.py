"""The Monite emulator's fault knobs (`MoniteFaults`) and the record of a held regeneration.

The knobs are read on every request; `fault_injection` is where they act
(regenerate_secret's, create's and delete's faults, injected errors,
malformed bodies), the
pagination faults act in `pagination`, latency and hang in `emulator`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


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
    drop_after_create: int = 0
    """The next N valid creates are applied, then the connection closes with no answer."""
    fail_create: int = 0
    """The next N valid creates answer `error_status` without creating anything."""
    drop_after_delete: int = 0
    """The next N deletes of an existing subscription are applied, then the connection
    closes with no answer."""
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


@dataclass(eq=False)
class Straggler:
    """A regeneration Monite received but has not applied (the straggle fault)."""

    subscription_id: str
    after: float | None  # seconds until it applies by itself
    settled: threading.Event = field(default_factory=threading.Event)
