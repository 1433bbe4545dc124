"""Listing: every page of `GET /webhook_subscriptions`, following pagination tokens to the end.

A page token that comes back is a loop (refused, never followed again); a
listing longer than `max_pages` is refused with the setting to raise; a
subscription listed twice keeps its first listing; items without an id are
counted and logged once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from rotator import events
from rotator.errors import MoniteProtocolError
from rotator.model import Subscription
from rotator.monite._parse import Page

log = structlog.get_logger("rotator.monite")

MAX_PAGE_SIZE = 100  # the schema's maximum for `limit`

FetchPage = Callable[[dict[str, str | int]], Awaitable[Page]]


async def list_all(
    fetch: FetchPage, *, limit: int, max_pages: int, follow: bool = True
) -> list[Subscription]:
    """Every subscription, page by page through `fetch(params)` (only one page unless `follow`)."""
    limit = max(1, min(MAX_PAGE_SIZE, limit))
    by_id: dict[str, Subscription] = {}
    seen_tokens: set[str] = set()
    skipped = 0
    params: dict[str, str | int] = {"limit": limit}
    pages = 0
    while True:
        pages += 1
        if pages > max_pages:
            raise MoniteProtocolError(
                f"Monite list: more than {max_pages} pages; raise monite.max_pages "
                "if there really are that many subscriptions"
            )
        page = await fetch(params)
        skipped += page.skipped
        for sub in page.items:
            # A subscription seen on an earlier page keeps its first listing.
            by_id.setdefault(sub.id, sub)
        token = page.next_token
        if not follow or token is None:
            break
        if token in seen_tokens:
            raise MoniteProtocolError(
                f"Monite list: pagination loop, a page token came back after {pages} pages"
            )
        seen_tokens.add(token)
        # With a pagination token Monite ignores every other query parameter.
        params = {"pagination_token": token}
    if skipped:
        log.warning(events.MONITE_LIST_ITEMS_SKIPPED, skipped=skipped, reason="no id")
    return list(by_id.values())
