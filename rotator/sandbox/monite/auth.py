"""The Monite emulator's auth: partner clients, access tokens, revocation, Bearer checks.

`POST /auth/token` (client_credentials; entity users do not exist here),
`POST /auth/revoke` (RFC 7009: an unknown token revokes fine), the Bearer
check on every other operation, and `add_client` / `expire_tokens` for tests.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

from rotator.sandbox import record_issued
from rotator.sandbox._http import Request, Response
from rotator.sandbox.monite.responses import error
from rotator.sandbox.monite.store import AccessToken, MoniteState


class MoniteAuth(MoniteState):
    """Partner credentials and access tokens."""

    def add_client(
        self, client_id: str | None = None, client_secret: str | None = None
    ) -> tuple[str, str]:
        """Register partner credentials; returns (client_id, client_secret)."""
        secret = client_secret if client_secret is not None else secrets.token_urlsafe(32)
        record_issued(secret)
        with self._lock:
            cid = client_id if client_id is not None else self._new_id()
            self._clients[cid] = secret
        return cid, secret

    @property
    def credentials(self) -> tuple[str, str]:
        """The first registered client's (client_id, client_secret)."""
        with self._lock:
            for cid, secret in self._clients.items():
                return cid, secret
        raise LookupError("no client registered; call add_client() first")

    def expire_tokens(self) -> None:
        """Every access token issued so far is now expired."""
        with self._lock:
            past = time.monotonic() - 1.0
            for token in self._tokens.values():
                token.expires_at = past

    # -- over HTTP -----------------------------------------------------------

    def _issue_token(self, body: Mapping[str, Any]) -> Response:
        with self._lock:
            known = self._clients.get(body["client_id"])
            if known is None or not secrets.compare_digest(
                known.encode(), body["client_secret"].encode()
            ):
                return error(401, "Wrong client credentials")
            if body["grant_type"] == "entity_user":
                # Entity users do not exist here; webhook subscriptions are partner-level.
                return error(401, "Entity user not found")
            value = secrets.token_urlsafe(32)
            record_issued(value)
            self._tokens[value] = AccessToken(
                client_id=body["client_id"], expires_at=time.monotonic() + self.token_ttl
            )
        return Response(
            200, {"access_token": value, "expires_in": self.token_ttl, "token_type": "Bearer"}
        )

    def _revoke(self, body: Mapping[str, Any]) -> Response:
        with self._lock:
            known = self._clients.get(body["client_id"])
            if known is None or not secrets.compare_digest(
                known.encode(), body["client_secret"].encode()
            ):
                return error(401, "Wrong client credentials")
            token = self._tokens.get(body["token"])
            # Revoking an unknown token succeeds, as OAuth revocation does (RFC 7009).
            if token is not None and token.client_id == body["client_id"]:
                token.revoked = True
        return Response(200, {"message": "Token revoked"})

    def _authenticate(self, req: Request) -> Response | None:
        header = req.header("authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return error(401, "Not authenticated: a Bearer access token is required")
        with self._lock:
            token = self._tokens.get(value.strip())
            if token is None:
                return error(401, "Invalid access token")
            if token.revoked:
                return error(401, "Access token has been revoked")
            if token.expires_at <= time.monotonic():
                return error(401, "Access token has expired")
        return None
