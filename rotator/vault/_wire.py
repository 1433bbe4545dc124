"""The wire to Vault: hvac client options, unauthenticated GETs, and reading Vault's answers.

Owns how every hvac.Client is built (`client_options`: address, token, TLS,
namespace, timeout, all from the settings), the bare GET used for calls that
must carry no token, and the small readers that take Vault's JSON answers
apart without trusting their shape.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import hvac.adapters

from rotator.config import VaultSettings


def client_options(settings: VaultSettings) -> dict[str, Any]:
    """The keyword arguments every hvac.Client of a store is built with.

    TLS comes only from the settings (which already read VAULT_CACERT,
    VAULT_CLIENT_CERT and VAULT_CLIENT_KEY), so what `rotator check` reports is
    what the daemon uses.
    """
    s = settings
    # A login method must not pick up a stray VAULT_TOKEN: "" is not None to hvac.
    token: str | None = ""
    if s.auth_method == "token":
        # None lets hvac fall back to VAULT_TOKEN / ~/.vault-token, as Vault
        # users expect when no token is configured.
        token = s.token.reveal() if s.token is not None else None
    cert = (
        (str(s.client_cert), str(s.client_key))
        if s.client_cert is not None and s.client_key is not None
        else None
    )
    return {
        "url": s.address,
        "token": token,
        "namespace": s.namespace,
        "verify": str(s.ca_cert) if s.ca_cert is not None else True,
        "cert": cert,
        "timeout": s.timeout.total_seconds(),
    }


def bare_get(client: Any, url: str, *, in_namespace: bool = False) -> Any:
    """GET `url` with no token (and outside any namespace unless `in_namespace`); the
    raw response, whatever its status.

    For unauthenticated calls. `sys/health` in particular is served by the root
    namespace only: inside one (even one that exists) Vault and OpenBao answer 400
    "operation unavailable in namespaces". The client is this worker thread's own,
    so no other request sees the header and token taken off it for the call.
    """
    adapter = client.adapter
    saved = adapter.namespace, adapter.token
    adapter.token = None
    if not in_namespace:
        adapter.namespace = None
    try:
        # hvac's JSON adapter drops the headers (the Date header); the raw one keeps them.
        return hvac.adapters.RawAdapter.request(adapter, "GET", url, raise_exception=False)
    finally:
        adapter.namespace, adapter.token = saved


def no_request(client: Any) -> None:
    """A call that sends nothing: a call with it only obtains the token (a login)."""


def http_date(value: object) -> datetime | None:
    """An HTTP `Date` header as an aware UTC datetime, or None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def as_mapping(value: object) -> Mapping[str, Any]:
    """`value` if it is a mapping, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def as_version(value: object) -> int | None:
    """`value` if it is a KV version number (an int, not a bool, not negative)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def seconds(value: object) -> float:
    """`value` as a positive number of seconds, else 0."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return 0.0
