"""The Vault emulator's login methods: AppRole (per namespace, any mount) and Kubernetes.

Roles are created without HTTP (`add_approle`, `add_kubernetes_role`, which
mints a service-account JWT the role accepts); `auth/<mount>/login` answers
as OpenBao does, with a token from the token store.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from rotator.sandbox import record_issued
from rotator.sandbox._http import Request, Response
from rotator.sandbox.vault.common import INVALID_APPROLE, envelope, error
from rotator.sandbox.vault.namespaces import AppRole, Namespace, builtin_mount
from rotator.sandbox.vault.state import KubernetesRole
from rotator.sandbox.vault.tokens import TokenStore


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class LoginAuth(TokenStore):
    """AppRole and Kubernetes: roles set up without HTTP, and their login endpoints."""

    # -- administration (no HTTP) -------------------------------------------

    def add_approle(
        self,
        role_name: str,
        *,
        policies: Sequence[str],
        token_ttl: float = 3600,
        token_max_ttl: float | None = None,
        mount: str = "approle",
        namespace: str | None = None,
    ) -> tuple[str, str]:
        """Enable AppRole at `mount` if missing, create or update the role: (role_id, secret_id)."""
        secret_id = str(uuid.uuid4())
        record_issued(secret_id)
        with self._lock:
            ns = self._ns(namespace)
            name = mount.strip("/")
            if name not in ns.approle_mounts:
                ns.approle_mounts[name] = {}
                ns.builtin[f"auth/{name}/"] = builtin_mount("approle")
            roles = ns.approle_mounts[name]
            role = roles.get(role_name)
            if role is None:
                role = AppRole(role_name, str(uuid.uuid4()), set(), [], token_ttl)
                roles[role_name] = role
            role.policies = list(policies)
            role.token_ttl = token_ttl
            role.token_max_ttl = token_max_ttl or 0
            role.secret_ids.add(secret_id)
            return role.role_id, secret_id

    def add_kubernetes_role(
        self,
        role: str,
        *,
        service_account: str,
        namespace: str,
        policies: Sequence[str],
        token_ttl: float = 3600,
    ) -> str:
        """Create a Kubernetes auth role; returns a service-account JWT it accepts at login."""
        now = int(self.now())
        sa_uid = str(uuid.uuid4())
        issuer = "https://kubernetes.default.svc.cluster.local"
        header = {"alg": "RS256", "kid": secrets.token_hex(8)}
        claims = {
            "aud": [issuer],
            "exp": now + 365 * 86400,
            "iat": now,
            "iss": issuer,
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": service_account, "uid": sa_uid},
            },
            "nbf": now,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
        }
        jwt = ".".join(
            (
                _b64url(json.dumps(header).encode()),
                _b64url(json.dumps(claims).encode()),
                _b64url(secrets.token_bytes(256)),
            )
        )
        record_issued(jwt)
        with self._lock:
            entry = self._k8s_roles.get(role)
            if entry is None:
                entry = KubernetesRole(role, service_account, namespace, [], token_ttl, {})
                self._k8s_roles[role] = entry
            entry.service_account = service_account
            entry.namespace = namespace
            entry.policies = list(policies)
            entry.token_ttl = token_ttl
            entry.jwts[jwt] = sa_uid
            root = self._namespaces[""]
            root.builtin.setdefault("auth/kubernetes/", builtin_mount("kubernetes"))
        return jwt

    # -- login over HTTP -----------------------------------------------------

    def _login(
        self, request: Request, ns: Namespace, rel: str, op: str, body: dict[str, Any] | None
    ) -> Response | None:
        """The answer of a login endpoint, or None when `rel` is not one (then a token is due)."""
        if op != "update" or not rel.startswith("auth/") or not rel.endswith("/login"):
            return None
        mount = rel[len("auth/") : -len("/login")]
        if mount in ns.approle_mounts:
            return self._approle_login(ns, mount, body or {})
        if mount == "kubernetes" and not ns.path:
            return self._kubernetes_login(body or {})
        return None

    def _approle_login(self, ns: Namespace, mount: str, body: dict[str, Any]) -> Response:
        role_id = str(body.get("role_id") or "")
        if not role_id:
            # OpenBao's AppRole returns this as a plain error, hence the 500.
            return error(500, "missing role_id")
        roles = ns.approle_mounts[mount]
        role = next((r for r in roles.values() if r.role_id == role_id), None)
        if role is None:
            return error(400, INVALID_APPROLE)
        secret_id = str(body.get("secret_id") or "")
        if not secret_id:
            return error(400, "missing secret_id")
        if secret_id not in role.secret_ids:
            return error(400, INVALID_APPROLE)
        token = self._issue_token(
            policies=self._with_default(role.policies),
            ttl=role.token_ttl,
            renewable=True,
            num_uses=0,
            path=f"auth/{mount}/login",
            meta={"role_name": role.name},
            orphan=True,
            display_name=mount,
            namespace=ns,
            max_ttl=round(role.token_max_ttl),
            entity_id=role.entity_id,
        )
        return envelope(200, auth=self._auth_block(token))

    def _kubernetes_login(self, body: dict[str, Any]) -> Response:
        role_name = body.get("role")
        if not role_name:
            return error(400, "missing role")
        jwt = body.get("jwt")
        if not jwt:
            return error(400, "missing jwt")
        role = self._k8s_roles.get(str(role_name))
        if role is None:
            return error(400, f'invalid role name "{role_name}"')
        sa_uid = role.jwts.get(str(jwt))
        if sa_uid is None:
            return error(403, "permission denied")
        token = self._issue_token(
            policies=self._with_default(role.policies),
            ttl=role.token_ttl,
            renewable=True,
            num_uses=0,
            path=f"auth/kubernetes/login/{role.name}",
            meta={
                "role": role.name,
                "service_account_name": role.service_account,
                "service_account_namespace": role.namespace,
                "service_account_secret_name": "",
                "service_account_uid": sa_uid,
            },
            orphan=True,
            display_name=f"kubernetes-{role.namespace}-{role.service_account}",
        )
        return envelope(200, auth=self._auth_block(token))
