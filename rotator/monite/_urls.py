"""URL pieces the client builds and names: a subscription id as one path segment, the host."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import httpx


def host_of(url: str) -> str | None:
    try:
        return httpx.URL(url).host or None
    except httpx.InvalidURL:
        return None


def without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def path_id(subscription_id: str) -> str:
    # Ids come from the command line too; never let one change the path.
    return quote(subscription_id, safe="")
