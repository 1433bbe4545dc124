"""An OpenBao (Vault API) emulator on loopback: real HTTP, driven by hvac like a real server.

Owns the Vault side of the sandbox: KV version 2 and version 1 mounts (data,
metadata, config, delete/undelete/destroy, check-and-set, version pruning),
namespaces (each with its own mounts, policies, AppRole roles and tokens),
token auth (lookup/renew/revoke/create, TTL caps by explicit_max_ttl and a
role's token_max_ttl), AppRole and Kubernetes login, ACL policies in the HCL
subset the product needs, `sys/capabilities-self`, `sys/internal/ui/mounts`,
seal state with `sys/health`, and fault knobs.

Answers follow OpenBao's (status codes, envelope, error texts), and
tests/sandbox/test_vault_differential.py holds the emulator to a real OpenBao
server request by request: the product's tests prove nothing against a
friendlier server.

Every credential it issues and every KV value stored under "secret" goes
through `record_issued`, so the suite can prove none of them leaks into logs.
"""

from __future__ import annotations

import base64
import json
import random
import re
import secrets
import string
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from rotator.sandbox import record_issued
from rotator.sandbox._http import Drop, LoopbackServer, Request, Response
from rotator.sandbox._vault_acl import CAPABILITIES, DEFAULT_POLICY, Acl, Rule, parse_policy
from rotator.sandbox._vault_common import (
    CAS_MISMATCH,
    CAS_REQUIRED,
    INVALID_APPROLE,
    NAMESPACE_NOT_FOUND,
    PERMISSION_DENIED,
    SEALED,
    UNAVAILABLE_IN_NAMESPACES,
    Reply,
    envelope,
    error,
    multierror,
    no_content,
    parse_body,
    parse_bool,
    parse_duration,
    parse_int,
    rfc3339,
    short_duration,
    unsupported,
)
from rotator.sandbox._vault_kv import (
    DEFAULT_MAX_VERSIONS,
    OPENBAO_BUILD,
    KvMount,
    read_v2,
    seed_v2,
)

__all__ = [
    "CAPABILITIES",
    "CAS_MISMATCH",
    "CAS_REQUIRED",
    "DEFAULT_MAX_VERSIONS",
    "DEFAULT_POLICY",
    "DEFAULT_TOKEN_TTL",
    "INVALID_APPROLE",
    "NAMESPACE_NOT_FOUND",
    "PERMISSION_DENIED",
    "SEALED",
    "UNAVAILABLE_IN_NAMESPACES",
    "VAULT_VERSION",
    "VaultEmulator",
    "VaultFaults",
    "parse_policy",
]

VAULT_VERSION = "2.7.2"  # the OpenBao release the emulator is held to
_COMMIT_DATE = "2026-10-26T20:32:27Z"
DEFAULT_TOKEN_TTL = 768 * 3600  # OpenBao's system default (and max) lease TTL

_TOKEN_ALPHABET = string.ascii_letters + string.digits
# Token-store paths that act on the calling token: OpenBao serves them in the
# token's own namespace, whichever namespace the request names.
_SELF_PATHS = frozenset(
    {"auth/token/lookup-self", "auth/token/renew-self", "auth/token/revoke-self"}
)
_MAX_NAMESPACE_DEPTH = 16


@dataclass
class VaultFaults:
    """Fault knobs, read on every request; tests flip them at any time."""

    latency: float = 0.0  # seconds added to every request
    error_rate: float = 0.0  # fraction of requests (except sys/health) answered 500
    fail_next: int = 0  # the next N requests (except sys/health) answer error_status
    error_status: int = 500
    fail_writes: int = 0  # the next N KV data writes answer error_status without applying


# ---------------------------------------------------------------------------
# State


@dataclass
class _Token:
    id: str
    accessor: str
    policies: list[str]
    creation_ttl: int  # seconds; 0 = never expires (root)
    issued_at: float
    expires_at: float | None
    renewable: bool
    num_uses: int
    path: str
    display_name: str
    orphan: bool
    meta: dict[str, str] | None = None
    namespace: str = ""  # "" = the root namespace
    explicit_max_ttl: int = 0
    max_ttl: int = 0  # a role's token_max_ttl (0 = none)
    ttl: int = 0  # the current lease's TTL: a renewal without increment asks for it again
    last_renewal: float | None = None
    entity_id: str = ""


@dataclass
class _AppRole:
    name: str
    role_id: str
    secret_ids: set[str]
    policies: list[str]
    token_ttl: float
    token_max_ttl: float = 0
    entity_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class _Policy:
    hcl: str
    rules: list[Rule]
    modified: float
    version: int = 1

    def update(self, hcl: str, rules: list[Rule], now: float) -> None:
        self.hcl, self.rules, self.modified = hcl, rules, now
        self.version += 1


@dataclass
class _KubernetesRole:
    name: str
    service_account: str
    namespace: str
    policies: list[str]
    token_ttl: float
    jwts: dict[str, str]  # jwt -> service account uid


def _builtin_mount(kind: str) -> dict[str, Any]:
    """The entry sys/internal/ui/mounts shows for a mount every namespace has."""
    config: dict[str, Any] = {"default_lease_ttl": 0, "force_no_cache": False, "max_lease_ttl": 0}
    description = {
        "system": "system endpoints used for control, policy and debugging",
        "cubbyhole": "per-token private secret storage",
        "identity": "identity store",
        "token": "token based credentials",
        "approle": "",
        "kubernetes": "",
    }[kind]
    if kind == "system":
        config["passthrough_request_headers"] = ["Accept"]
    elif kind == "identity":
        config["passthrough_request_headers"] = ["Authorization"]
    elif kind in ("token", "approle", "kubernetes"):
        config["token_type"] = "default-service"
    accessor = f"auth_{kind}" if kind in ("token", "approle", "kubernetes") else kind
    info: dict[str, Any] = {
        "accessor": f"{accessor}_{secrets.token_hex(4)}",
        "config": config,
        "description": description,
        "external_entropy_access": False,
        "local": kind == "cubbyhole",
        "options": {} if kind in ("approle", "kubernetes") else None,
        "plugin_version": "",
        "running_plugin_version": OPENBAO_BUILD,
        "running_sha256": "",
        "seal_wrap": kind == "system",
        "type": kind,
        "uuid": str(uuid.uuid4()),
    }
    if kind in ("approle", "kubernetes"):
        info["deprecation_status"] = "supported"
    return info


@dataclass
class _Namespace:
    path: str  # "" for root, else "team-a" or "admin/payments" (no slashes around)
    id: str = ""
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    mounts: dict[str, KvMount] = field(default_factory=dict)
    policies: dict[str, _Policy] = field(default_factory=dict)
    approle_mounts: dict[str, dict[str, _AppRole]] = field(default_factory=dict)
    builtin: dict[str, dict[str, Any]] = field(default_factory=dict)  # "sys/" -> mount entry

    def __post_init__(self) -> None:
        self.policies["default"] = _Policy(
            DEFAULT_POLICY, parse_policy(DEFAULT_POLICY), time.time()
        )
        for path, kind in (
            ("cubbyhole/", "cubbyhole"),
            ("identity/", "identity"),
            ("sys/", "system"),
            ("auth/token/", "token"),
        ):
            self.builtin[path] = _builtin_mount(kind)

    def view(self) -> dict[str, Any]:
        return {
            "custom_metadata": {},
            "id": self.id,
            "locked": False,
            "path": self.path + "/",
            "tainted": False,
            "uuid": self.uuid,
        }


# ---------------------------------------------------------------------------
# Small helpers


def _new_token_id(namespace: _Namespace) -> str:
    suffix = f".{namespace.id}" if namespace.id else ""
    return "s." + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(24)) + suffix


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _ttl_warning(requested: float, allowed: float) -> str:
    return (
        f'TTL of "{short_duration(requested)}" exceeded the effective max_ttl of '
        f'"{short_duration(allowed)}"; TTL value is capped accordingly'
    )


def _clean_namespace(value: str | None) -> str:
    return (value or "").strip().strip("/")


# ---------------------------------------------------------------------------
# The emulator


class VaultEmulator:
    """OpenBao on 127.0.0.1: KV mounts, namespaces, token/AppRole/Kubernetes auth, ACLs, faults."""

    def __init__(
        self,
        *,
        kv_mounts: Sequence[str] = ("secret",),
        kv1_mounts: Sequence[str] = (),
        max_versions: int = 0,
        seed: int | None = None,
        port: int = 0,
    ) -> None:
        """`port` 0 takes a free loopback port; another binds it now (OSError if taken)."""
        self._lock = threading.RLock()
        self.faults = VaultFaults()
        self._rng = random.Random(seed)  # fault injection, not cryptography
        self._clock_offset = 0.0
        self._sealed = False
        self._refusing = False
        self._started = False
        self._counts: Counter[str] = Counter()
        self._namespaces_seen: set[str] = set()
        self._cluster_id = str(uuid.uuid4())
        root = _Namespace("")
        for name in kv_mounts:
            root.mounts[name.strip("/")] = KvMount(name.strip("/"), max_versions=max_versions)
        for name in kv1_mounts:
            root.mounts[name.strip("/")] = KvMount(name.strip("/"), version=1)
        self._namespaces: dict[str, _Namespace] = {"": root}
        self._tokens: dict[str, _Token] = {}
        self._k8s_roles: dict[str, _KubernetesRole] = {}
        # Like OpenBao's dev server (-dev-root-token-id), whose root token comes from token create.
        self.root_token = self._issue_token(
            policies=["root"],
            ttl=0,
            renewable=False,
            num_uses=0,
            path="auth/token/create",
            orphan=True,
        ).id
        self._server: LoopbackServer | None = LoopbackServer(
            self._handle, port=port, clock=self.now
        )
        self._port = self._server.port

    # -- lifecycle ----------------------------------------------------------

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> None:
        with self._lock:
            self._started = True
            server = self._server
        if server is not None:
            server.start()

    def stop(self) -> None:
        with self._lock:
            self._started = False
            server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> VaultEmulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def refuse_connections(self) -> None:
        """Close the listening socket (and open connections): clients get connection refused."""
        with self._lock:
            self._refusing = True
            server, self._server = self._server, None
        if server is not None:
            server.stop()

    def accept_connections(self) -> None:
        """Listen again on the same port, so clients configured with `address` recover."""
        with self._lock:
            self._refusing = False
            if self._server is not None:
                return
            self._server = LoopbackServer(self._handle, port=self._port, clock=self.now)
            server, started = self._server, self._started
        if started:
            server.start()

    # -- seal ---------------------------------------------------------------

    @property
    def sealed(self) -> bool:
        with self._lock:
            return self._sealed

    def seal(self) -> None:
        with self._lock:
            self._sealed = True

    def unseal(self) -> None:
        with self._lock:
            self._sealed = False

    # -- time ---------------------------------------------------------------

    def now(self) -> float:
        """The emulator's wall clock (real time plus `advance_time` offsets)."""
        return time.time() + self._clock_offset

    def advance_time(self, seconds: float) -> None:
        """Move the emulator's clock forward: expires tokens without sleeping."""
        with self._lock:
            self._clock_offset += seconds

    # -- administration (no HTTP) -------------------------------------------

    def _ns(self, namespace: str | None) -> _Namespace:
        name = _clean_namespace(namespace)
        found = self._namespaces.get(name)
        if found is None:
            raise KeyError(f"namespace {name!r} does not exist (create_namespace first)")
        return found

    def create_namespace(self, name: str) -> None:
        """Create namespace `name` ("a" or "a/b"), and any missing parent, with no mounts.

        Like `POST sys/namespaces/<name>` in OpenBao (which creates one level at
        a time): a fresh namespace has its own "default" policy, token store and
        system mounts, but no secrets engine.
        """
        path = _clean_namespace(name)
        if not path:
            raise ValueError("the root namespace always exists")
        with self._lock:
            parts = path.split("/")
            for depth in range(1, len(parts) + 1):
                level = "/".join(parts[:depth])
                if level not in self._namespaces:
                    ns_id = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(6))
                    self._namespaces[level] = _Namespace(level, id=ns_id)

    def namespace(self, name: str) -> None:
        """Create namespace `name` with a KV v2 mount "secret" inside, when missing.

        The same call as tests.openbao.OpenBaoVault.namespace.
        """
        with self._lock:
            self.create_namespace(name)
            ns = self._ns(name)
            ns.mounts.setdefault("secret", KvMount("secret"))

    def remount(
        self, mount: str, *, version: int = 2, namespace: str | None = None, **config: Any
    ) -> None:
        """Replace `mount` by an empty KV mount of `version` (its data is gone).

        `config` (OpenBao's mount tuning, such as default_lease_ttl) is accepted
        and ignored.
        """
        if version not in (1, 2):
            raise ValueError("KV version must be 1 or 2")
        with self._lock:
            name = mount.strip("/")
            self._ns(namespace).mounts[name] = KvMount(name, version=version)

    def put_policy(self, name: str, hcl: str, *, namespace: str | None = None) -> None:
        rules = parse_policy(hcl)
        with self._lock:
            self._set_policy(self._ns(namespace), name, hcl, rules)

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
                ns.builtin[f"auth/{name}/"] = _builtin_mount("approle")
            roles = ns.approle_mounts[name]
            role = roles.get(role_name)
            if role is None:
                role = _AppRole(role_name, str(uuid.uuid4()), set(), [], token_ttl)
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
                entry = _KubernetesRole(role, service_account, namespace, [], token_ttl, {})
                self._k8s_roles[role] = entry
            entry.service_account = service_account
            entry.namespace = namespace
            entry.policies = list(policies)
            entry.token_ttl = token_ttl
            entry.jwts[jwt] = sa_uid
            root = self._namespaces[""]
            root.builtin.setdefault("auth/kubernetes/", _builtin_mount("kubernetes"))
        return jwt

    def _kv_mount(self, mount: str, namespace: str | None) -> KvMount | None:
        return self._ns(namespace).mounts.get(mount.strip("/"))

    def kv_read(
        self, mount: str, path: str, *, namespace: str | None = None
    ) -> tuple[dict[str, Any], int] | None:
        """The current data and version of a secret, or None (absent, deleted or destroyed).

        On a KV v1 mount: the stored object and version 0.
        """
        full = self.kv_read_full(mount, path, namespace=namespace)
        return None if full is None else (full[0], full[1])

    def kv_read_full(
        self, mount: str, path: str, *, namespace: str | None = None
    ) -> tuple[dict[str, Any], int, str] | None:
        """Like `kv_read`, plus the version's `created_time` exactly as the HTTP API prints it."""
        with self._lock:
            kv = self._kv_mount(mount, namespace)
            if kv is None:
                return None
            key = path.strip("/")
            if kv.version == 1:
                value = kv.values.get(key)
                return None if value is None else (dict(value), 0, "")
            return read_v2(kv, key, self.now())

    def kv_delete_metadata(self, mount: str, path: str, *, namespace: str | None = None) -> bool:
        """Remove a secret and all its versions, as `DELETE {mount}/metadata/{path}` does.

        No HTTP, so no ACL and no faults. True if there was something to remove.
        """
        with self._lock:
            kv = self._ns(namespace).mounts[mount.strip("/")]
            if kv.version == 1:
                return kv.values.pop(path.strip("/"), None) is not None
            return kv.secrets.pop(path.strip("/"), None) is not None

    def kv_write(
        self, mount: str, path: str, data: dict[str, Any], *, namespace: str | None = None
    ) -> int:
        """Seed a secret without HTTP (no ACL, no faults, no CAS); returns the new version.

        On a KV v1 mount the object replaces what was there and the answer is 0.
        """
        with self._lock:
            kv = self._ns(namespace).mounts[mount.strip("/")]
            if kv.version == 1:
                kv.seed_v1(path.strip("/"), data)
                return 0
            return seed_v2(kv, path.strip("/"), data, self.now())

    def kv_versions(self, mount: str, path: str, *, namespace: str | None = None) -> list[int]:
        """Version numbers still stored for a secret (after pruning), oldest first."""
        with self._lock:
            kv = self._kv_mount(mount, namespace)
            secret = kv.secrets.get(path.strip("/")) if kv else None
            return sorted(secret.versions) if secret else []

    def request_count(self, kind: str | None = None) -> int:
        """Requests received, by kind: kv_read, kv_write, kv_list, kv_delete, kv_metadata_read,
        kv_metadata_write, kv_config, health, seal_status, login, token, sys, other."""
        with self._lock:
            return self._counts.total() if kind is None else self._counts[kind]

    def reset_request_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    def namespaces_seen(self) -> set[str]:
        """Values of X-Vault-Namespace received (existing namespaces or not)."""
        with self._lock:
            return set(self._namespaces_seen)

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
        namespace: _Namespace | None = None,
        explicit_max_ttl: int = 0,
        max_ttl: int = 0,
        entity_id: str = "",
    ) -> _Token:
        """A new token; its TTL is capped at the effective max (see `_capped_ttl`)."""
        ns = namespace or self._namespaces[""]
        now = self.now()
        if ttl > 0:
            ttl = min(ttl, self._max_ttl(explicit_max_ttl, max_ttl))
        suffix = f".{ns.id}" if ns.id else ""
        token = _Token(
            id=_new_token_id(ns),
            accessor="".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(24)) + suffix,
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

    def _authenticate(self, request: Request) -> _Token:
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

    def _acl(self, token: _Token, ns: _Namespace, path: str, *, self_path: bool) -> tuple[Acl, str]:
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

    def _token_view(self, token: _Token) -> dict[str, Any]:
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

    def _auth_block(self, token: _Token) -> dict[str, Any]:
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

    # -- HTTP -----------------------------------------------------------------

    def _handle(self, request: Request) -> Response:
        path = request.path
        rel = path[len("/v1/") :].strip("/") if path.startswith("/v1/") else None
        rel = re.sub(r"/{2,}", "/", rel) if rel is not None else None
        with self._lock:
            kind = self._kind(request, rel)
            self._counts[kind] += 1
            latency = self.faults.latency
            namespace = request.header("X-Vault-Namespace")
            if namespace:
                self._namespaces_seen.add(namespace)
        if latency > 0:
            time.sleep(latency)
        with self._lock:
            if self._refusing:
                # A pooled keep-alive connection may still reach us: treat it as refused too.
                raise Drop()
            try:
                injected = self._injected_fault(kind)
                if injected is not None:
                    return injected
                if rel is None:
                    return error(404)
                return self._route(request, rel, kind)
            except Reply as reply:
                return reply.response

    def _injected_fault(self, kind: str) -> Response | None:
        if kind == "health":
            return None
        faults = self.faults
        if faults.fail_next > 0:
            faults.fail_next -= 1
            return error(faults.error_status, multierror(["injected fault"]))
        if faults.error_rate > 0 and self._rng.random() < faults.error_rate:
            return error(500, multierror(["injected fault"]))
        return None

    def _kind(self, request: Request, rel: str | None) -> str:
        method = request.method
        if rel is None:
            return "other"
        if rel == "sys/health":
            return "health"
        if rel == "sys/seal-status":
            return "seal_status"
        if rel.startswith("auth/") and rel.endswith("/login"):
            return "login"
        if rel.startswith("auth/token/"):
            return "token"
        if rel.startswith("sys/"):
            return "sys"
        ns = self._namespaces.get(_clean_namespace(request.header("X-Vault-Namespace")))
        hit = self._split_mount(ns, rel) if ns is not None else None
        if hit is None:
            return "other"
        kv, sub = hit
        head = sub.split("/", 1)[0] if kv.version == 2 else "data"
        if head == "data":
            if self._operation(request) == "list":
                return "kv_list"
            if method in ("POST", "PUT", "PATCH"):
                return "kv_write"
            return "kv_delete" if method == "DELETE" else "kv_read"
        if head in ("delete", "undelete", "destroy"):
            return "kv_delete"
        if head == "metadata":
            if self._operation(request) == "list":
                return "kv_list"
            return "kv_metadata_read" if method == "GET" else "kv_metadata_write"
        if head == "config":
            return "kv_config"
        return "other"

    @staticmethod
    def _split_mount(ns: _Namespace, rel: str) -> tuple[KvMount, str] | None:
        best: KvMount | None = None
        for name, kv in ns.mounts.items():
            if (rel == name or rel.startswith(name + "/")) and (
                best is None or len(name) > len(best.name)
            ):
                best = kv
        if best is None:
            return None
        return best, rel[len(best.name) :].lstrip("/")

    def _path_namespace(self, ns: _Namespace, rel: str) -> tuple[_Namespace, str]:
        """OpenBao also takes a namespace as the path's first segments ("team-a/secret/...")."""
        for _ in range(_MAX_NAMESPACE_DEPTH):
            first, _, rest = rel.partition("/")
            child = f"{ns.path}/{first}" if ns.path else first
            if not rest or first in ("sys", "auth") or first in ns.mounts:
                return ns, rel
            found = self._namespaces.get(child)
            if found is None:
                return ns, rel
            ns, rel = found, rest
        return ns, rel

    @staticmethod
    def _operation(request: Request) -> str:
        method = request.method
        if method == "LIST" or (
            method == "GET" and (request.param("list") or "").lower() in ("true", "1")
        ):
            return "list"
        return {
            "GET": "read",
            "HEAD": "read",
            "POST": "update",
            "PUT": "update",
            "DELETE": "delete",
            "PATCH": "patch",
        }.get(method, "unsupported")

    def _route(self, request: Request, rel: str, kind: str) -> Response:
        header_ns = _clean_namespace(request.header("X-Vault-Namespace"))
        if rel == "sys/health":
            if header_ns:
                return error(400, UNAVAILABLE_IN_NAMESPACES)
            return self._health(request)
        if rel == "sys/seal-status":
            # OpenBao answers this one in any namespace, even one that does not exist.
            return Response(200, self._seal_status(), headers={"Cache-Control": "no-store"})
        ns = self._namespaces.get(header_ns)
        if ns is None:
            return error(404, NAMESPACE_NOT_FOUND)
        ns, rel = self._path_namespace(ns, rel)
        if self._sealed:
            return error(503, SEALED)
        op = self._operation(request)
        body = parse_body(request) if request.method in ("POST", "PUT", "PATCH") else None

        login = self._login(request, ns, rel, op, body)
        if login is not None:
            return login

        token = self._authenticate(request)
        if rel == "sys/internal/ui/mounts" or rel.startswith("sys/internal/ui/mounts/"):
            if op != "read":
                return unsupported()
            return self._ui_mounts(token, ns, rel[len("sys/internal/ui/mounts") :])
        if op == "unsupported":
            return unsupported()
        hit = self._split_mount(ns, rel)
        capability = op
        if op == "update" and hit is not None:
            # KV has an existence check: a new key needs "create", an existing one "update".
            capability = "update" if hit[0].exists(hit[1]) else "create"
        # OpenBao checks LIST against the path with a trailing slash ("foo/" not "foo").
        acl_path = rel + "/" if op == "list" and not rel.endswith("/") else rel
        acl, checked = self._acl(token, ns, acl_path, self_path=rel in _SELF_PATHS)
        if not acl.allows(checked, capability):
            return error(403, PERMISSION_DENIED)

        if rel.startswith("auth/token/"):
            return self._token_endpoint(rel[len("auth/token/") :], op, token, ns, body or {})
        if rel.startswith("sys/policies/acl/"):
            return self._policy_endpoint(rel[len("sys/policies/acl/") :], op, ns, body or {})
        if rel.startswith("sys/namespaces/"):
            return self._namespace_endpoint(rel[len("sys/namespaces/") :], op, ns)
        if rel == "sys/capabilities-self":
            if op != "update":
                return unsupported()
            return self._capabilities_self(token, ns, body or {})
        if hit is not None:
            if kind == "kv_write" and self.faults.fail_writes > 0:
                self.faults.fail_writes -= 1
                return error(self.faults.error_status, multierror(["injected write fault"]))
            # KV v1 refuses to write "dir/": keep the trailing slash the route lost.
            sub = hit[1] + "/" if hit[1] and request.path.endswith("/") else hit[1]
            return hit[0].handle(request, sub, op, body, self.now())
        return error(404, f'no handler for route "{rel}". route entry not found.')

    # -- sys ------------------------------------------------------------------

    def _seal_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "type": "shamir",
            "initialized": True,
            "sealed": self._sealed,
            "t": 1,
            "n": 1,
            "progress": 0,
            "nonce": "",
            "recovery_seal": False,
            "version": VAULT_VERSION,
            "commit_date": _COMMIT_DATE,
            "migration": False,
        }
        if not self._sealed:
            status["cluster_name"] = "vault-cluster-sandbox"
            status["cluster_id"] = self._cluster_id
        status["storage_type"] = "inmem"
        return status

    def _health(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return error(405)
        codes = {
            "activecode": 200,
            "standbycode": 429,
            "drsecondarycode": 472,
            "performancestandbycode": 473,
            "sealedcode": 503,
            "uninitcode": 501,
        }
        for name in codes:
            raw = request.param(name)
            if raw is not None:
                if not re.fullmatch(r"\d+", raw.strip()):
                    return error(400)
                codes[name] = int(raw)
        # standbyok/perfstandbyok only matter on standbys; this node is always the active one.
        replication = "unknown" if self._sealed else "disabled"
        body: dict[str, Any] = {
            "initialized": True,
            "sealed": self._sealed,
            "standby": self._sealed,
            "replication_performance_mode": replication,
            "replication_dr_mode": replication,
            "server_time_utc": int(self.now()),
            "version": VAULT_VERSION,
        }
        if not self._sealed:
            body["cluster_name"] = "vault-cluster-sandbox"
            body["cluster_id"] = self._cluster_id
        status = codes["sealedcode"] if self._sealed else codes["activecode"]
        return Response(status, body, headers={"Cache-Control": "no-store"})

    def _capabilities_self(self, token: _Token, ns: _Namespace, body: dict[str, Any]) -> Response:
        raw = body.get("paths")
        if raw in (None, "", []):
            raw = body.get("path")
        if isinstance(raw, str):
            paths = [p.strip() for p in raw.split(",") if p.strip()]
        elif isinstance(raw, list):
            paths = [str(p) for p in raw]
        else:
            paths = []
        if not paths:
            return error(400, "paths must be supplied")
        data: dict[str, Any] = {}
        for path in paths:
            acl, checked = self._acl(token, ns, path.lstrip("/"), self_path=False)
            data[path] = acl.capabilities(checked)
        if len(paths) == 1:
            # OpenBao keeps the pre-1.0 answer for a single path as well.
            data["capabilities"] = data[paths[0]]
        return envelope(200, data=dict(sorted(data.items())), top_level=data)

    def _mount_entry(self, ns: _Namespace, path: str) -> tuple[dict[str, Any], str] | None:
        """The mount holding `path` (which ends in "/"): its ui/mounts entry and full path."""
        candidates: dict[str, dict[str, Any]] = dict(ns.builtin)
        for name, kv in ns.mounts.items():
            candidates[name + "/"] = kv.info()
        best = max((m for m in candidates if path.startswith(m)), key=len, default=None)
        if best is None:
            return None
        entry = dict(candidates[best])
        entry["path"] = best[len("auth/") :] if best.startswith("auth/") else best
        return dict(sorted(entry.items())), best

    def _ui_mounts(self, token: _Token, ns: _Namespace, tail: str) -> Response:
        """sys/internal/ui/mounts[/<path>]: the mount(s) the token may see, as OpenBao's UI asks."""
        if not tail.strip("/"):
            return self._ui_mounts_list(token, ns)
        path = tail.strip("/") + "/"
        denied = error(
            403,
            "preflight capability check returned 403, please ensure client's policies "
            f'grant access to path "{path}"',
        )
        found = self._mount_entry(ns, path)
        if found is None:
            # OpenBao answers 403, not 404, so the endpoint cannot enumerate mounts.
            return denied
        entry, full = found
        acl, checked = self._acl(token, ns, full, self_path=False)
        if not acl.has_mount_access(checked):
            return denied
        return envelope(200, data=entry)

    def _ui_mounts_list(self, token: _Token, ns: _Namespace) -> Response:
        listing: dict[str, dict[str, Any]] = {"auth": {}, "secret": {}}
        candidates: dict[str, dict[str, Any]] = dict(ns.builtin)
        for name, kv in ns.mounts.items():
            candidates[name + "/"] = kv.info()
        for full, info in sorted(candidates.items()):
            acl, checked = self._acl(token, ns, full, self_path=False)
            if not acl.has_mount_access(checked):
                continue
            entry = {k: v for k, v in info.items() if k != "path"}
            if full.startswith("auth/"):
                listing["auth"][full[len("auth/") :]] = entry
            else:
                listing["secret"][full] = entry
        return envelope(200, data=listing)

    def _set_policy(self, ns: _Namespace, name: str, hcl: str, rules: list[Rule]) -> None:
        entry = ns.policies.get(name)
        if entry is None:
            ns.policies[name] = _Policy(hcl, rules, self.now())
        else:
            entry.update(hcl, rules, self.now())

    def _policy_endpoint(
        self, name: str, op: str, ns: _Namespace, body: dict[str, Any]
    ) -> Response:
        if op == "read":
            entry = ns.policies.get(name)
            if entry is None:
                return error(404)
            data = {
                "allow_slashes_in_identity_templates": False,
                "allow_wildcards_in_identity_templates": False,
                "cas_required": False,
                "modified": rfc3339(entry.modified),
                "name": name,
                "policy": entry.hcl,
                "version": entry.version,
            }
            return envelope(200, data=data)
        if op == "update":
            hcl = body.get("policy")
            if not isinstance(hcl, str) or not hcl:
                return error(400, "'policy' parameter not supplied or empty")
            try:
                rules = parse_policy(hcl)
            except ValueError as exc:
                return error(400, f"failed to parse policy: {exc}")
            self._set_policy(ns, name, hcl, rules)
            return no_content()
        if op == "delete":
            if name in ("default", "root"):
                return error(400, f"cannot delete {name} policy")
            ns.policies.pop(name, None)
            return no_content()
        return unsupported()

    def _namespace_endpoint(self, name: str, op: str, ns: _Namespace) -> Response:
        name = name.strip("/")
        full = f"{ns.path}/{name}" if ns.path else name
        if op == "update":
            if "/" in name:
                return error(400, "namespace name cannot contain /")
            self.create_namespace(full)
            return envelope(200, data=self._namespaces[full].view())
        if op == "read":
            found = self._namespaces.get(full)
            if found is None or not name:
                return error(404)
            return envelope(200, data=found.view())
        return unsupported()

    # -- auth -----------------------------------------------------------------

    def _token_endpoint(
        self, action: str, op: str, token: _Token, ns: _Namespace, body: dict[str, Any]
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

    def _renew(self, token: _Token, body: dict[str, Any]) -> Response:
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
        self, body: dict[str, Any], parent: _Token, ns: _Namespace, *, orphan: bool
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

    def _login(
        self, request: Request, ns: _Namespace, rel: str, op: str, body: dict[str, Any] | None
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

    def _approle_login(self, ns: _Namespace, mount: str, body: dict[str, Any]) -> Response:
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
