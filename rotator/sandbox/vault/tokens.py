"""The Vault emulator's token store: tokens, their TTLs, the ACL they carry, `auth/token/*`.

Issuing (with OpenBao's TTL caps: the system max, explicit_max_ttl, a role's
token_max_ttl), authenticating a request (X-Vault-Token or a Bearer header,
use counts, expiry), the ACL a token has in a namespace, and the token
store's endpoints: lookup(-self), renew-self, revoke(-self), create(-orphan).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from rotator.sandbox import record_issued
from rotator.sandbox._http import Request, Response
from rotator.sandbox.vault.acl import Acl
from rotator.sandbox.vault.common import (
    Reply,
    envelope,
    error,
    no_content,
    parse_bool,
    parse_duration,
    parse_int,
    rfc3339,
    short_duration,
    unsupported,
)
from rotator.sandbox.vault.namespaces import Namespace
from rotator.sandbox.vault.state import DEFAULT_TOKEN_TTL, TOKEN_ALPHABET, Token, VaultState

# Token-store paths that act on the calling token: OpenBao serves them in the
# token's own namespace, whichever namespace the request names.
SELF_PATHS = frozenset(
    {"auth/token/lookup-self", "auth/token/renew-self", "auth/token/revoke-self"}
)


def _new_token_id(namespace: Namespace) -> str:
    suffix = f".{namespace.id}" if namespace.id else ""
    return "s." + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(24)) + suffix


def _ttl_warning(requested: float, allowed: float) -> str:
    return (
        f'TTL of "{short_duration(requested)}" exceeded the effective max_ttl of '
        f'"{short_duration(allowed)}"; TTL value is capped accordingly'
    )


class TokenStore(VaultState):
    """Tokens: issuing, authenticating a request, the ACL it gets, and `auth/token/*`."""

    # -- administration (no HTTP) -------------------------------------------

    def create_token(
        self,
        *,
        policies: Sequence[str] = ("default",),
        ttl: float | None = None,
        renewable: bool = True,
        num_uses: int = 0,
        explicit_max_ttl: float | None = None,
        no_default_policy: bool = False,
        namespace: str | None = None,
    ) -> str:
        """A service token (a child of root); like OpenBao, it also gets "default" unless told."""
        with self._lock:
            ns = self._ns(namespace)
            chosen = self._with_default(policies, no_default=no_default_policy)
            max_ttl = round(explicit_max_ttl or 0)
            wanted = DEFAULT_TOKEN_TTL if ttl is None else ttl
            if "root" in chosen and ttl is None:
                wanted = 0
            return self._issue_token(
                policies=chosen,
                ttl=wanted,
                renewable=renewable,
                num_uses=num_uses,
                path="auth/token/create",
                # What hvac's token create (display_name="token") makes of it.
                display_name="token-token",
                namespace=ns,
                explicit_max_ttl=max_ttl,
            ).id

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    # -- tokens and ACL -------------------------------------------------------

    @staticmethod
    def _with_default(policies: Iterable[str], *, no_default: bool = False) -> list[str]:
        chosen = set(policies)
        if "root" not in chosen and not no_default:
            chosen.add("default")
        return sorted(chosen)

    @staticmethod
    def _max_ttl(explicit_max_ttl: float, role_max_ttl: float) -> float:
        """The effective max TTL: the system's, lowered by explicit_max_ttl and a role's."""
        limits = [DEFAULT_TOKEN_TTL] + [m for m in (explicit_max_ttl, role_max_ttl) if m > 0]
        return float(min(limits))

    def _issue_token(
        self,
        *,
        policies: list[str],
        ttl: float,
        renewable: bool,
        num_uses: int,
        path: str,
        meta: dict[str, str] | None = None,
        orphan: bool = False,
        display_name: str = "token",
        namespace: Namespace | None = None,
        explicit_max_ttl: int = 0,
        max_ttl: int = 0,
        entity_id: str = "",
    ) -> Token:
        """A new token; its TTL is capped at the effective max (see `_capped_ttl`)."""
        ns = namespace or self._namespaces[""]
        now = self.now()
        if ttl > 0:
            ttl = min(ttl, self._max_ttl(explicit_max_ttl, max_ttl))
        suffix = f".{ns.id}" if ns.id else ""
        token = Token(
            id=_new_token_id(ns),
            accessor="".join(secrets.choice(TOKEN_ALPHABET) for _ in range(24)) + suffix,
            policies=policies,
            creation_ttl=round(ttl),
            issued_at=now,
            expires_at=now + ttl if ttl > 0 else None,
            renewable=renewable and ttl > 0,
            num_uses=num_uses,
            path=path,
            display_name=display_name,
            orphan=orphan,
            meta=meta,
            namespace=ns.path,
            explicit_max_ttl=explicit_max_ttl,
            max_ttl=max_ttl,
            ttl=round(ttl),
            entity_id=entity_id,
        )
        record_issued(token.id)
        self._tokens[token.id] = token
        return token

    def _authenticate(self, request: Request) -> Token:
        """The request's live token (consuming one use), or 403 "permission denied"."""
        token_id = request.header("X-Vault-Token")
        if not token_id:
            auth = request.header("Authorization") or ""
            if auth.startswith("Bearer "):
                token_id = auth[len("Bearer ") :].strip()
        token = self._tokens.get(token_id or "")
        if token is None:
            raise Reply(error(403, "permission denied"))
        if token.expires_at is not None and token.expires_at <= self.now():
            del self._tokens[token.id]
            raise Reply(error(403, "permission denied"))
        if token.num_uses > 0:
            token.num_uses -= 1
            if token.num_uses == 0:
                # The use being spent now is the last one: OpenBao marks the token -1
                # (a lookup-self on this last use shows it) and revokes it.
                token.num_uses = -1
                del self._tokens[token.id]
        return token

    def _acl(self, token: Token, ns: Namespace, path: str, *, self_path: bool) -> tuple[Acl, str]:
        """The token's ACL and the path it is checked against, for a request in `ns`.

        Policies live in the token's namespace. A token used in a namespace
        below its own sees the path prefixed with the namespaces in between
        ("team-a/secret/..."); anywhere else it may do nothing. The token's own
        lookup/renew/revoke are served in the token's namespace.
        """
        home = self._namespaces.get(token.namespace)
        if home is None:
            return Acl([]), path
        acl = Acl(
            (home.policies[p].rules for p in token.policies if p in home.policies),
            root="root" in token.policies,
        )
        if self_path or token.namespace == ns.path:
            return acl, path
        if token.namespace == "" or ns.path.startswith(token.namespace + "/"):
            between = ns.path[len(token.namespace) :].strip("/")
            return acl, f"{between}/{path}"
        return Acl([]), path

    def _token_view(self, token: Token) -> dict[str, Any]:
        now = self.now()
        ttl = 0 if token.expires_at is None else max(0, round(token.expires_at - now))
        view: dict[str, Any] = {
            "accessor": token.accessor,
            "creation_time": int(token.issued_at),
            "creation_ttl": token.creation_ttl,
            "display_name": token.display_name,
            "entity_id": token.entity_id,
            "expire_time": None if token.expires_at is None else rfc3339(token.expires_at),
            "explicit_max_ttl": token.explicit_max_ttl,
            "id": token.id,
            "issue_time": rfc3339(token.issued_at),
            "meta": token.meta,
            "num_uses": token.num_uses,
            "orphan": token.orphan,
            "path": token.path,
            "policies": list(token.policies),
            "renewable": token.renewable,
            "ttl": ttl,
            "type": "service",
        }
        if token.last_renewal is not None:
            view["last_renewal"] = rfc3339(token.last_renewal)
            view["last_renewal_time"] = int(token.last_renewal)
        if token.namespace:
            view["namespace_path"] = token.namespace + "/"
        return dict(sorted(view.items()))

    def _auth_block(self, token: Token) -> dict[str, Any]:
        ttl = 0 if token.expires_at is None else max(0, round(token.expires_at - self.now()))
        return {
            "client_token": token.id,
            "accessor": token.accessor,
            "policies": list(token.policies),
            "token_policies": list(token.policies),
            "metadata": token.meta,
            "lease_duration": ttl,
            "renewable": token.renewable,
            "entity_id": token.entity_id,
            "token_type": "service",
            "orphan": token.orphan,
            "mfa_requirement": None,
            "num_uses": token.num_uses,
        }

    # -- auth/token/* ---------------------------------------------------------

    def _token_endpoint(
        self, action: str, op: str, token: Token, ns: Namespace, body: dict[str, Any]
    ) -> Response:
        if action == "lookup-self" and op in ("read", "update"):
            return envelope(200, data=self._token_view(token))
        if action == "lookup" and op == "update":
            target = self._tokens.get(str(body.get("token", "")))
            if target is None:
                return error(403, "bad token")
            return envelope(200, data=self._token_view(target))
        if action == "renew-self" and op == "update":
            return self._renew(token, body)
        if action == "revoke-self" and op == "update":
            self._tokens.pop(token.id, None)
            return no_content()
        if action == "revoke" and op == "update":
            self._tokens.pop(str(body.get("token", "")), None)
            return no_content()
        if action in ("create", "create-orphan") and op == "update":
            return self._create_token_http(body, token, ns, orphan=action == "create-orphan")
        return unsupported()

    def _renew(self, token: Token, body: dict[str, Any]) -> Response:
        """OpenBao's LeaseExtend: the increment (or the current TTL), capped at the max TTL."""
        increment = (
            parse_duration(body["increment"], "increment")
            if body.get("increment") not in (None, "")
            else 0.0
        )
        if not token.renewable or token.id not in self._tokens:
            return error(400, "lease is not renewable")
        now = self.now()
        max_valid = token.issued_at + self._max_ttl(token.explicit_max_ttl, token.max_ttl) - now
        if max_valid <= 0:
            return error(500, "past the max TTL, cannot renew")
        ttl = increment if increment > 0 else float(token.ttl)
        warnings: list[str] | None = None
        if ttl > max_valid:
            if increment > 0:
                warnings = [_ttl_warning(increment, max_valid)]
            ttl = max_valid
        token.expires_at = now + ttl
        token.ttl = round(ttl)
        token.last_renewal = now
        return envelope(200, auth=self._auth_block(token), warnings=warnings)

    def _create_token_http(
        self, body: dict[str, Any], parent: Token, ns: Namespace, *, orphan: bool
    ) -> Response:
        raw = body.get("policies")
        if isinstance(raw, str):
            raw = [p.strip() for p in raw.split(",") if p.strip()]
        requested = [str(p) for p in raw] if isinstance(raw, list) and raw else None
        if requested is None:
            requested = list(parent.policies)
        no_default = parse_bool(body.get("no_default_policy", False), "no_default_policy")
        policies = (
            ["root"]
            if "root" in requested
            else self._with_default(requested, no_default=no_default)
        )
        if "root" not in parent.policies and not set(policies) - {"default"} <= set(
            parent.policies
        ):
            return error(400, "child policies must be subset of parent")
        explicit_max = (
            round(parse_duration(body["explicit_max_ttl"], "explicit_max_ttl"))
            if body.get("explicit_max_ttl") not in (None, "")
            else 0
        )
        ttl_raw = body.get("ttl")
        ttl = parse_duration(ttl_raw, "ttl") if ttl_raw not in (None, "") else DEFAULT_TOKEN_TTL
        if "root" in policies and ttl_raw in (None, ""):
            ttl = 0
        warnings = [
            f'Policy "{p}" does not exist' for p in policies if p not in ns.policies and p != "root"
        ]
        allowed = self._max_ttl(explicit_max, 0)
        if ttl > allowed:
            warnings.append(_ttl_warning(ttl, allowed))
        meta = body.get("meta")
        display = str(body.get("display_name") or "").strip("-")
        token = self._issue_token(
            policies=policies,
            ttl=ttl,
            renewable=parse_bool(body.get("renewable", True), "renewable"),
            num_uses=parse_int(body.get("num_uses", 0), "num_uses"),
            path="auth/token/create",
            meta={str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else None,
            orphan=orphan or parse_bool(body.get("no_parent", False), "no_parent"),
            display_name=f"token-{display}" if display else "token",
            namespace=ns,
            explicit_max_ttl=explicit_max,
        )
        return envelope(200, auth=self._auth_block(token), warnings=warnings)
