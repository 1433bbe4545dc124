"""A HashiCorp Vault emulator on loopback: real HTTP, driven by hvac like a real server.

Owns the Vault side of the sandbox: KV v2 mounts (data, metadata, config,
delete/undelete/destroy, check-and-set, version pruning), token auth
(lookup/renew/revoke/create), AppRole and Kubernetes login, ACL policies in the
HCL subset the product needs, seal state with `sys/health`, and fault knobs.
Responses follow Vault's documented HTTP API (envelope, status codes, error
texts) because the product's tests prove nothing against a friendlier server.

Every credential it issues and every KV value stored under "secret" goes
through `record_issued`, so the suite can prove none of them leaks into logs.
"""

from __future__ import annotations

import base64
import copy
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
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from rotator.sandbox import record_issued
from rotator.sandbox._http import Drop, LoopbackServer, Request, Response

VAULT_VERSION = "1.17.6"
DEFAULT_TOKEN_TTL = 768 * 3600  # Vault's system default (and max) lease TTL
DEFAULT_MAX_VERSIONS = 10  # KV v2 keeps ten versions unless configured

CUSTOM_METADATA_MAX_KEYS = 64
CUSTOM_METADATA_MAX_KEY_BYTES = 128
CUSTOM_METADATA_MAX_VALUE_BYTES = 512

PERMISSION_DENIED = "1 error occurred:\n\t* permission denied\n\n"
CAS_MISMATCH = "check-and-set parameter did not match the current version"
CAS_REQUIRED = "check-and-set parameter required for this call"
SEALED = "Vault is sealed"
INVALID_APPROLE = "invalid role or secret ID"

CAPABILITIES = frozenset({"create", "read", "update", "delete", "list", "sudo", "deny", "patch"})

# The part of Vault's built-in "default" policy a client relies on: managing its own token.
DEFAULT_POLICY = """
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/revoke-self" {
  capabilities = ["update"]
}
path "sys/capabilities-self" {
  capabilities = ["update"]
}
"""

_KV_V1_PATH_WARNING = (
    "Invalid path for a versioned K/V secrets engine. See the API docs for the "
    "appropriate API endpoints to use. If using the Vault CLI, use 'vault kv get' "
    "for this operation."
)
_TOKEN_ALPHABET = string.ascii_letters + string.digits


@dataclass
class VaultFaults:
    """Fault knobs, read on every request; tests flip them at any time."""

    latency: float = 0.0  # seconds added to every request
    error_rate: float = 0.0  # fraction of requests (except sys/health) answered 500
    fail_next: int = 0  # the next N requests (except sys/health) answer error_status
    error_status: int = 500
    fail_writes: int = 0  # the next N KV data writes answer error_status without applying


# ---------------------------------------------------------------------------
# ACL policies: the HCL subset `path "glob" { capabilities = [...] }`


@dataclass(frozen=True)
class _Rule:
    pattern: str
    capabilities: frozenset[str]

    @property
    def glob(self) -> bool:
        return self.pattern.endswith("*")

    def matches(self, path: str) -> bool:
        body = self.pattern[:-1] if self.glob else self.pattern
        pattern_segments = body.split("/")
        if "+" not in pattern_segments:
            return path.startswith(body) if self.glob else path == body
        path_segments = path.split("/")
        if self.glob:
            if len(path_segments) < len(pattern_segments):
                return False
        elif len(path_segments) != len(pattern_segments):
            return False
        last = len(pattern_segments) - 1
        for index, (want, got) in enumerate(zip(pattern_segments, path_segments, strict=False)):
            if want == "+":
                continue
            if self.glob and index == last:
                if not got.startswith(want):
                    return False
            elif want != got:
                return False
        return True

    def priority(self) -> tuple[int, bool, int, int, str]:
        """Vault's documented order: a later first wildcard, no glob, fewer `+`, longer, larger."""
        wildcards = [i for i, char in enumerate(self.pattern) if char in "+*"]
        first = wildcards[0] if wildcards else len(self.pattern) + 1
        plus = self.pattern.split("/").count("+")
        return (first, not self.glob, -plus, len(self.pattern), self.pattern)


_HCL_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<comment>\#[^\n]*|//[^\n]*|/\*.*?\*/)
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<punct>[{}\[\]=,])
      | (?P<word>[A-Za-z0-9_.\-+:*/]+)""",
    re.VERBOSE | re.DOTALL,
)


def _hcl_tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _HCL_TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"policy: unexpected character {text[pos]!r} at offset {pos}")
        kind = match.lastgroup or ""
        if kind == "string":
            tokens.append((kind, json.loads(match.group())))
        elif kind not in ("ws", "comment"):
            tokens.append((kind, match.group()))
        pos = match.end()
    return tokens


class _HclParser:
    """Just enough HCL for policies: statements, labelled blocks, strings, lists, maps."""

    def __init__(self, text: str) -> None:
        self._tokens = _hcl_tokens(text)
        self._pos = 0

    def _peek(self) -> tuple[str, str] | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _take(self, value: str | None = None) -> tuple[str, str]:
        token = self._peek()
        if token is None or (value is not None and token[1] != value):
            raise ValueError(f"policy: expected {value or 'a token'}, got {token}")
        self._pos += 1
        return token

    def statements(self, closing: str | None) -> list[tuple[str, str | None, Any]]:
        result: list[tuple[str, str | None, Any]] = []
        for _ in range(len(self._tokens) + 1):
            token = self._peek()
            if token is None:
                if closing is not None:
                    raise ValueError("policy: unterminated block")
                return result
            if token == ("punct", closing):
                self._take()
                return result
            key = self._take()
            if key[0] not in ("word", "string"):
                raise ValueError(f"policy: unexpected {key[1]!r}")
            label: str | None = None
            nxt = self._peek()
            if nxt is not None and nxt[0] == "string":
                label = self._take()[1]
                nxt = self._peek()
            if nxt == ("punct", "="):
                self._take()
            result.append((key[1], label, self._value()))
        raise ValueError("policy: runaway parse")

    def _value(self) -> Any:
        token = self._take()
        if token == ("punct", "{"):
            return self.statements("}")
        if token == ("punct", "["):
            items: list[Any] = []
            for _ in range(len(self._tokens) + 1):
                if self._peek() == ("punct", "]"):
                    self._take()
                    return items
                items.append(self._value())
                if self._peek() == ("punct", ","):
                    self._take()
            raise ValueError("policy: unterminated list")
        if token[0] in ("string", "word"):
            return token[1]
        raise ValueError(f"policy: unexpected {token[1]!r}")


def parse_policy(hcl: str) -> list[_Rule]:
    """Parse the HCL subset into rules; raises ValueError the way `vault policy write` refuses."""
    merged: dict[str, set[str]] = {}
    for key, label, value in _HclParser(hcl).statements(None):
        if key != "path":
            continue
        if label is None or not isinstance(value, list):
            raise ValueError('policy: expected path "<glob>" { ... }')
        if "*" in label[:-1]:
            raise ValueError(f"policy: path {label!r}: '*' is only allowed at the end")
        capabilities: list[str] = []
        for attr, _, attr_value in value:
            if attr == "capabilities":
                if not isinstance(attr_value, list) or not all(
                    isinstance(c, str) for c in attr_value
                ):
                    raise ValueError(f"policy: path {label!r}: capabilities must be a list")
                capabilities.extend(attr_value)
        unknown = set(capabilities) - CAPABILITIES
        if unknown:
            raise ValueError(f"policy: path {label!r}: invalid capabilities {sorted(unknown)}")
        merged.setdefault(label, set()).update(capabilities)
    return [_Rule(pattern, frozenset(caps)) for pattern, caps in merged.items()]


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


@dataclass
class _Version:
    created: float
    data: dict[str, Any] | None
    deletion_time: float | None = None
    destroyed: bool = False

    def deleted(self, now: float) -> bool:
        return self.deletion_time is not None and self.deletion_time <= now


@dataclass
class _Secret:
    created: float
    updated: float
    current_version: int = 0
    oldest_version: int = 0
    versions: dict[int, _Version] = field(default_factory=dict)
    max_versions: int = 0
    cas_required: bool = False
    delete_version_after: int = 0
    custom_metadata: dict[str, str] | None = None


@dataclass
class _KvMount:
    name: str
    max_versions: int = 0
    cas_required: bool = False
    delete_version_after: int = 0
    secrets: dict[str, _Secret] = field(default_factory=dict)


@dataclass
class _AppRole:
    name: str
    role_id: str
    secret_ids: set[str]
    policies: list[str]
    token_ttl: float


@dataclass
class _KubernetesRole:
    name: str
    service_account: str
    namespace: str
    policies: list[str]
    token_ttl: float
    jwts: dict[str, str]  # jwt -> service account uid


class _Reply(Exception):
    """Raised inside a handler to answer at once (errors, mostly)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


# ---------------------------------------------------------------------------
# Small helpers


def _rfc3339(ts: float | None) -> str:
    """Go's RFC3339Nano as Vault prints it (trailing zeros trimmed); "" for no time."""
    if ts is None:
        return ""
    text = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    seconds, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0")
    return f"{seconds}.{fraction}Z" if fraction else f"{seconds}Z"


def _go_duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _parse_duration(value: Any, field_name: str) -> float:
    """Seconds from an int or a Go-style duration string ("90s", "1h30m"), as Vault accepts."""
    if isinstance(value, bool):
        raise _Reply(_error(400, f"invalid duration for field {field_name!r}"))
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return float(text)
        parts = _DURATION_PART.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    raise _Reply(_error(400, f"invalid duration for field {field_name!r}: {value!r}"))


def _parse_int(value: Any, message: str) -> int:
    if isinstance(value, bool):
        raise _Reply(_error(400, message))
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise _Reply(_error(400, message))


def _parse_bool(value: Any, field_name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise _Reply(_error(400, f"invalid boolean for field {field_name!r}"))


def _multierror(messages: Sequence[str]) -> str:
    """go-multierror's text, which Vault passes through verbatim."""
    if len(messages) == 1:
        return f"1 error occurred:\n\t* {messages[0]}\n\n"
    points = "\n\t".join(f"* {m}" for m in messages)
    return f"{len(messages)} errors occurred:\n\t{points}\n\n"


def _error(status: int, *messages: str) -> Response:
    return Response(status, {"errors": list(messages)}, headers={"Cache-Control": "no-store"})


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as Vault applies to KV PATCH requests."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _require_merge_patch(request: Request) -> None:
    """Vault answers 415 to a PATCH that is not a JSON merge patch."""
    content_type = (request.header("Content-Type") or "").split(";")[0].strip()
    if content_type != "application/merge-patch+json":
        message = f"PATCH requires Content-Type application/merge-patch+json, got {content_type!r}"
        raise _Reply(_error(415, message))


def _new_token_id() -> str:
    return "hvs." + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(24))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# ---------------------------------------------------------------------------
# The emulator


class VaultEmulator:
    """Vault on 127.0.0.1 with KV v2 mounts, token/AppRole/Kubernetes auth, ACLs and faults."""

    def __init__(
        self,
        *,
        kv_mounts: Sequence[str] = ("secret",),
        max_versions: int = 0,
        seed: int | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self.faults = VaultFaults()
        self._rng = random.Random(seed)  # fault injection, not cryptography
        self._clock_offset = 0.0
        self._sealed = False
        self._refusing = False
        self._started = False
        self._counts: Counter[str] = Counter()
        self._namespaces: set[str] = set()
        self._cluster_id = str(uuid.uuid4())
        self._mounts = {
            m.strip("/"): _KvMount(m.strip("/"), max_versions=max_versions) for m in kv_mounts
        }
        self._policies: dict[str, tuple[str, list[_Rule]]] = {}
        self._tokens: dict[str, _Token] = {}
        self._approles: dict[str, _AppRole] = {}  # by role name
        self._k8s_roles: dict[str, _KubernetesRole] = {}
        self.put_policy("default", DEFAULT_POLICY)
        self.root_token = self._issue_token(
            policies=["root"], ttl=0, renewable=False, num_uses=0, path="auth/token/root"
        ).id
        self._server: LoopbackServer | None = LoopbackServer(self._handle, clock=self.now)
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

    def put_policy(self, name: str, hcl: str) -> None:
        rules = parse_policy(hcl)
        with self._lock:
            self._policies[name] = (hcl, rules)

    def create_token(
        self,
        *,
        policies: Sequence[str] = ("default",),
        ttl: float | None = None,
        renewable: bool = True,
        num_uses: int = 0,
    ) -> str:
        """A service token; like Vault, every non-root token also gets "default"."""
        with self._lock:
            return self._issue_token(
                policies=self._with_default(policies),
                ttl=DEFAULT_TOKEN_TTL if ttl is None else ttl,
                renewable=renewable,
                num_uses=num_uses,
                path="auth/token/create",
            ).id

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def add_approle(
        self, role_name: str, *, policies: Sequence[str], token_ttl: float = 3600
    ) -> tuple[str, str]:
        """Create (or extend) an AppRole; returns (role_id, a fresh secret_id)."""
        secret_id = str(uuid.uuid4())
        record_issued(secret_id)
        with self._lock:
            role = self._approles.get(role_name)
            if role is None:
                role = _AppRole(role_name, str(uuid.uuid4()), set(), [], token_ttl)
                self._approles[role_name] = role
            role.policies = list(policies)
            role.token_ttl = token_ttl
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
        return jwt

    def kv_read(self, mount: str, path: str) -> tuple[dict[str, Any], int] | None:
        """The current data and version of a secret, or None (absent, deleted or destroyed)."""
        full = self.kv_read_full(mount, path)
        return None if full is None else (full[0], full[1])

    def kv_read_full(self, mount: str, path: str) -> tuple[dict[str, Any], int, str] | None:
        """Like `kv_read`, plus the version's `created_time` exactly as the HTTP API prints it."""
        with self._lock:
            kv = self._mounts.get(mount.strip("/"))
            secret = kv.secrets.get(path.strip("/")) if kv else None
            if secret is None:
                return None
            version = secret.versions.get(secret.current_version)
            if version is None or version.destroyed or version.deleted(self.now()):
                return None
            data = copy.deepcopy(version.data or {})
            return data, secret.current_version, _rfc3339(version.created)

    def kv_delete_metadata(self, mount: str, path: str) -> bool:
        """Remove a secret and all its versions, as `DELETE {mount}/metadata/{path}` does.

        No HTTP, so no ACL and no faults. True if there was something to remove.
        """
        with self._lock:
            kv = self._mounts[mount.strip("/")]
            return kv.secrets.pop(path.strip("/"), None) is not None

    def kv_write(self, mount: str, path: str, data: dict[str, Any]) -> int:
        """Seed a secret without HTTP (no ACL, no faults, no CAS); returns the new version."""
        with self._lock:
            kv = self._mounts[mount.strip("/")]
            return self._append_version(kv, path.strip("/"), copy.deepcopy(data)).current_version

    def kv_versions(self, mount: str, path: str) -> list[int]:
        """Version numbers still stored for a secret (after pruning), oldest first."""
        with self._lock:
            kv = self._mounts.get(mount.strip("/"))
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
        """Values of X-Vault-Namespace received (namespaces are accepted, not enforced)."""
        with self._lock:
            return set(self._namespaces)

    # -- tokens and ACL -------------------------------------------------------

    @staticmethod
    def _with_default(policies: Iterable[str], *, no_default: bool = False) -> list[str]:
        chosen = set(policies)
        if "root" not in chosen and not no_default:
            chosen.add("default")
        return sorted(chosen)

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
    ) -> _Token:
        now = self.now()
        token = _Token(
            id=_new_token_id(),
            accessor="".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(24)),
            policies=policies,
            creation_ttl=round(ttl),
            issued_at=now,
            expires_at=now + ttl if ttl > 0 else None,
            renewable=renewable and ttl > 0,
            num_uses=num_uses,
            path=path,
            display_name=display_name,
            orphan=orphan or path == "auth/token/root",
            meta=meta,
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
            raise _Reply(_error(403, "permission denied"))
        if token.expires_at is not None and token.expires_at <= self.now():
            del self._tokens[token.id]
            raise _Reply(_error(403, "permission denied"))
        if token.num_uses > 0:
            token.num_uses -= 1
            if token.num_uses == 0:
                # The use being spent now is the last one: Vault revokes on exhaustion.
                del self._tokens[token.id]
        return token

    def _capabilities(self, token: _Token, path: str) -> list[str]:
        """What the token may do on `path`: Vault merges its policies, then the best match wins."""
        if "root" in token.policies:
            return ["root"]
        merged: dict[str, set[str]] = {}
        for name in token.policies:
            entry = self._policies.get(name)
            for rule in entry[1] if entry else ():
                merged.setdefault(rule.pattern, set()).update(rule.capabilities)
        rules = [_Rule(pattern, frozenset(caps)) for pattern, caps in merged.items()]
        matching = [rule for rule in rules if rule.matches(path)]
        if not matching:
            return ["deny"]
        best = max(matching, key=_Rule.priority)
        if "deny" in best.capabilities or not best.capabilities:
            return ["deny"]
        return sorted(best.capabilities)

    def _allowed(self, token: _Token, path: str, capability: str) -> bool:
        capabilities = self._capabilities(token, path)
        return "root" in capabilities or capability in capabilities

    def _token_view(self, token: _Token) -> dict[str, Any]:
        now = self.now()
        ttl = 0 if token.expires_at is None else max(0, round(token.expires_at - now))
        return {
            "accessor": token.accessor,
            "creation_time": int(token.issued_at),
            "creation_ttl": token.creation_ttl,
            "display_name": token.display_name,
            "entity_id": "",
            "expire_time": None if token.expires_at is None else _rfc3339(token.expires_at),
            "explicit_max_ttl": 0,
            "id": token.id,
            "issue_time": _rfc3339(token.issued_at),
            "meta": token.meta,
            "num_uses": token.num_uses,
            "orphan": token.orphan,
            "path": token.path,
            "policies": list(token.policies),
            "renewable": token.renewable,
            "ttl": ttl,
            "type": "service",
        }

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
            "entity_id": "",
            "token_type": "service",
            "orphan": token.orphan,
            "mfa_requirement": None,
            "num_uses": token.num_uses,
        }

    # -- HTTP -----------------------------------------------------------------

    def _envelope(
        self,
        status: int,
        *,
        data: Any = None,
        auth: Any = None,
        mount_type: str = "",
        warnings: list[str] | None = None,
    ) -> Response:
        body = {
            "request_id": str(uuid.uuid4()),
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": data,
            "wrap_info": None,
            "warnings": warnings,
            "auth": auth,
            "mount_type": mount_type,
        }
        return Response(status, body, headers={"Cache-Control": "no-store"})

    @staticmethod
    def _no_content() -> Response:
        return Response(204, None, headers={"Cache-Control": "no-store"})

    def _handle(self, request: Request) -> Response:
        path = request.path
        rel = path[len("/v1/") :].strip("/") if path.startswith("/v1/") else None
        rel = re.sub(r"/{2,}", "/", rel) if rel is not None else None
        kind = self._kind(request, rel)
        with self._lock:
            self._counts[kind] += 1
            latency = self.faults.latency
            namespace = request.header("X-Vault-Namespace")
            if namespace:
                self._namespaces.add(namespace)
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
                    return _error(404)
                return self._route(request, rel)
            except _Reply as reply:
                return reply.response

    def _injected_fault(self, kind: str) -> Response | None:
        if kind == "health":
            return None
        faults = self.faults
        if faults.fail_next > 0:
            faults.fail_next -= 1
            return _error(faults.error_status, _multierror(["injected fault"]))
        if faults.error_rate > 0 and self._rng.random() < faults.error_rate:
            return _error(500, _multierror(["injected fault"]))
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
        with self._lock:
            hit = self._split_mount(rel)
        if hit is None:
            return "other"
        sub = hit[1]
        head = sub.split("/", 1)[0]
        if head == "data":
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

    def _split_mount(self, rel: str) -> tuple[_KvMount, str] | None:
        best: _KvMount | None = None
        for name, kv in self._mounts.items():
            if (rel == name or rel.startswith(name + "/")) and (
                best is None or len(name) > len(best.name)
            ):
                best = kv
        if best is None:
            return None
        return best, rel[len(best.name) :].lstrip("/")

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

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        if not request.body.strip():
            return {}
        try:
            parsed = json.loads(request.body)
        except ValueError as exc:
            raise _Reply(_error(400, f"failed to parse JSON input: {exc}")) from exc
        if not isinstance(parsed, dict):
            raise _Reply(_error(400, "failed to parse JSON input: expected a JSON object"))
        return parsed

    def _route(self, request: Request, rel: str) -> Response:
        op = self._operation(request)
        if rel == "sys/health":
            return self._health(request)
        if rel == "sys/seal-status":
            return Response(200, self._seal_status(), headers={"Cache-Control": "no-store"})
        if self._sealed:
            return _error(503, SEALED)
        if rel == "auth/approle/login" and op == "update":
            return self._approle_login(request)
        if rel == "auth/kubernetes/login" and op == "update":
            return self._kubernetes_login(request)

        token = self._authenticate(request)
        if op == "unsupported":
            return _error(405, "unsupported operation")
        hit = self._split_mount(rel)
        capability = op
        if op == "update" and hit is not None:
            # KV v2 has an existence check: a new key needs "create", an existing one "update".
            capability = "update" if self._exists(*hit) else "create"
        if rel == "auth/token/lookup-self":
            # Vault serves lookup-self on POST too; the default policy grants it as a read.
            capability = "read"
        # Vault checks LIST against the path with a trailing slash ("foo/" not "foo").
        acl_path = rel + "/" if op == "list" and not rel.endswith("/") else rel
        if not self._allowed(token, acl_path, capability):
            return _error(403, PERMISSION_DENIED)

        if rel.startswith("auth/token/"):
            return self._token_endpoint(request, rel[len("auth/token/") :], op, token)
        if rel.startswith("sys/policies/acl/"):
            return self._policy_endpoint(request, rel[len("sys/policies/acl/") :], op)
        if rel == "sys/capabilities-self" and op == "update":
            return self._capabilities_self(request, token)
        if hit is not None:
            return self._kv(request, hit[0], hit[1], op)
        return _error(404, f'no handler for route "{rel}". route entry not found.')

    def _exists(self, kv: _KvMount, sub: str) -> bool:
        head, _, key = sub.partition("/")
        return head in ("data", "metadata") and key.strip("/") in kv.secrets

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
            "version": VAULT_VERSION,
            "build_date": "2024-09-24T19:48:40Z",
            "migration": False,
            "recovery_seal": False,
            "storage_type": "inmem",
        }
        if not self._sealed:
            status["cluster_name"] = "vault-cluster-sandbox"
            status["cluster_id"] = self._cluster_id
        return status

    def _health(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _error(405, "unsupported operation")
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
                codes[name] = _parse_int(raw, f"bad code: {raw!r}")
        # standbyok/perfstandbyok only matter on standbys; this node is always the active one.
        body: dict[str, Any] = {
            "initialized": True,
            "sealed": self._sealed,
            "standby": self._sealed,
            "performance_standby": False,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": int(self.now()),
            "version": VAULT_VERSION,
            "enterprise": False,
            "echo_duration_ms": 0,
            "clock_skew_ms": 0,
        }
        if not self._sealed:
            body["cluster_name"] = "vault-cluster-sandbox"
            body["cluster_id"] = self._cluster_id
        status = codes["sealedcode"] if self._sealed else codes["activecode"]
        return Response(status, body, headers={"Cache-Control": "no-store"})

    def _capabilities_self(self, request: Request, token: _Token) -> Response:
        body = self._body(request)
        paths = body.get("paths", body.get("path"))
        if isinstance(paths, str):
            paths = [paths]
        if not isinstance(paths, list) or not paths:
            return _error(400, "missing paths")
        data: dict[str, Any] = {str(p): self._capabilities(token, str(p)) for p in paths}
        if len(paths) == 1:
            data["capabilities"] = data[str(paths[0])]
        return self._envelope(200, data=data, mount_type="system")

    def _policy_endpoint(self, request: Request, name: str, op: str) -> Response:
        if op == "read":
            entry = self._policies.get(name)
            if entry is None:
                return _error(404)
            return self._envelope(200, data={"name": name, "policy": entry[0]}, mount_type="system")
        if op == "update":
            hcl = self._body(request).get("policy")
            if not isinstance(hcl, str):
                return _error(400, "'policy' parameter not supplied or empty")
            try:
                rules = parse_policy(hcl)
            except ValueError as exc:
                return _error(400, f"failed to parse policy: {exc}")
            self._policies[name] = (hcl, rules)
            return self._no_content()
        if op == "delete":
            if name in ("default", "root"):
                return _error(400, f'cannot delete "{name}" policy')
            self._policies.pop(name, None)
            return self._no_content()
        return _error(405, "unsupported operation")

    # -- auth -----------------------------------------------------------------

    def _token_endpoint(self, request: Request, action: str, op: str, token: _Token) -> Response:
        if action == "lookup-self" and op in ("read", "update"):
            return self._envelope(200, data=self._token_view(token), mount_type="token")
        if action == "lookup" and op == "update":
            target = self._tokens.get(str(self._body(request).get("token", "")))
            if target is None:
                return _error(403, "bad token")
            return self._envelope(200, data=self._token_view(target), mount_type="token")
        if action == "renew-self" and op == "update":
            body = self._body(request)
            if not token.renewable or token.id not in self._tokens:
                return _error(400, "lease is not renewable")
            increment = body.get("increment")
            ttl = (
                _parse_duration(increment, "increment")
                if increment not in (None, "", 0)
                else float(token.creation_ttl)
            )
            token.expires_at = self.now() + min(ttl, DEFAULT_TOKEN_TTL)
            return self._envelope(200, auth=self._auth_block(token), mount_type="token")
        if action == "revoke-self" and op == "update":
            self._tokens.pop(token.id, None)
            return self._no_content()
        if action == "revoke" and op == "update":
            self._tokens.pop(str(self._body(request).get("token", "")), None)
            return self._no_content()
        if action in ("create", "create-orphan") and op == "update":
            return self._create_token_http(request, token, orphan=action == "create-orphan")
        return _error(405, "unsupported operation")

    def _create_token_http(self, request: Request, parent: _Token, *, orphan: bool) -> Response:
        body = self._body(request)
        requested = body.get("policies") or [p for p in parent.policies if p != "root"] or []
        if isinstance(requested, str):
            requested = [p.strip() for p in requested.split(",") if p.strip()]
        no_default = _parse_bool(body.get("no_default_policy", False), "no_default_policy")
        policies = (
            ["root"]
            if "root" in requested
            else self._with_default(requested, no_default=no_default)
        )
        if "root" not in parent.policies and not set(policies) <= set(parent.policies):
            return _error(400, "child policies must be subset of parent")
        ttl_raw = body.get("ttl")
        ttl = _parse_duration(ttl_raw, "ttl") if ttl_raw not in (None, "") else DEFAULT_TOKEN_TTL
        if "root" in policies and ttl_raw in (None, ""):
            ttl = 0
        meta = body.get("meta")
        token = self._issue_token(
            policies=policies,
            ttl=ttl,
            renewable=_parse_bool(body.get("renewable", True), "renewable"),
            num_uses=_parse_int(body.get("num_uses", 0), "invalid num_uses"),
            path="auth/token/create",
            meta={str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else None,
            orphan=orphan or _parse_bool(body.get("no_parent", False), "no_parent"),
            display_name="token-" + str(body.get("display_name", "")).strip("-")
            if body.get("display_name")
            else "token",
        )
        return self._envelope(200, auth=self._auth_block(token), mount_type="token")

    def _approle_login(self, request: Request) -> Response:
        body = self._body(request)
        role_id = body.get("role_id")
        if not role_id:
            return _error(400, "missing role_id")
        secret_id = body.get("secret_id")
        role = next((r for r in self._approles.values() if r.role_id == role_id), None)
        if role is None or secret_id not in role.secret_ids:
            return _error(400, INVALID_APPROLE)
        token = self._issue_token(
            policies=self._with_default(role.policies),
            ttl=role.token_ttl,
            renewable=True,
            num_uses=0,
            path="auth/approle/login",
            meta={"role_name": role.name},
            orphan=True,
            display_name="approle",
        )
        return self._envelope(200, auth=self._auth_block(token), mount_type="approle")

    def _kubernetes_login(self, request: Request) -> Response:
        body = self._body(request)
        role_name = body.get("role")
        if not role_name:
            return _error(400, "missing role")
        jwt = body.get("jwt")
        if not jwt:
            return _error(400, "missing jwt")
        role = self._k8s_roles.get(str(role_name))
        if role is None:
            return _error(400, f'invalid role name "{role_name}"')
        sa_uid = role.jwts.get(str(jwt))
        if sa_uid is None:
            return _error(403, "permission denied")
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
        return self._envelope(200, auth=self._auth_block(token), mount_type="kubernetes")

    # -- KV v2 ----------------------------------------------------------------

    def _kv(self, request: Request, kv: _KvMount, sub: str, op: str) -> Response:
        head, _, key = sub.partition("/")
        key = key.strip("/")
        if head == "config" and not key:
            return self._kv_config(request, kv, op)
        if head == "data" and key:
            if op == "read":
                return self._kv_read(request, kv, key)
            if op == "update":
                return self._kv_write(request, kv, key, patch=False)
            if op == "patch":
                return self._kv_write(request, kv, key, patch=True)
            if op == "delete":
                return self._kv_delete_latest(kv, key)
        if head in ("delete", "undelete", "destroy") and key and op == "update":
            return self._kv_versions_op(request, kv, key, head)
        if head == "metadata":
            if op == "list":
                return self._kv_list(kv, key)
            if key and op == "read":
                return self._kv_metadata_read(kv, key)
            if key and op in ("update", "patch"):
                return self._kv_metadata_write(request, kv, key, patch=op == "patch")
            if key and op == "delete":
                kv.secrets.pop(key, None)
                return self._no_content()
        if head in ("data", "metadata", "delete", "undelete", "destroy", "config"):
            return _error(405, "unsupported operation")
        # A KV v1-style path on a v2 mount: Vault answers 404 with this warning.
        return self._envelope(404, mount_type="kv", warnings=[_KV_V1_PATH_WARNING])

    def _kv_config(self, request: Request, kv: _KvMount, op: str) -> Response:
        if op == "read":
            data = {
                "cas_required": kv.cas_required,
                "delete_version_after": _go_duration(kv.delete_version_after),
                "max_versions": kv.max_versions,
            }
            return self._envelope(200, data=data, mount_type="kv")
        if op == "update":
            body = self._body(request)
            if "max_versions" in body:
                kv.max_versions = _parse_int(body["max_versions"], "invalid max_versions")
            if "cas_required" in body:
                kv.cas_required = _parse_bool(body["cas_required"], "cas_required")
            if "delete_version_after" in body:
                kv.delete_version_after = round(
                    _parse_duration(body["delete_version_after"], "delete_version_after")
                )
            return self._no_content()
        return _error(405, "unsupported operation")

    def _version_metadata(self, secret: _Secret, number: int) -> dict[str, Any]:
        version = secret.versions[number]
        return {
            "created_time": _rfc3339(version.created),
            "custom_metadata": dict(secret.custom_metadata) if secret.custom_metadata else None,
            "deletion_time": _rfc3339(version.deletion_time),
            "destroyed": version.destroyed,
            "version": number,
        }

    def _kv_read(self, request: Request, kv: _KvMount, key: str) -> Response:
        secret = kv.secrets.get(key)
        if secret is None:
            return _error(404)
        number = secret.current_version
        raw = request.param("version")
        if raw not in (None, ""):
            requested = _parse_int(raw, f"invalid version {raw!r}")
            if requested > 0:
                number = requested
        version = secret.versions.get(number)
        if version is None:
            return _error(404)
        metadata = self._version_metadata(secret, number)
        if version.destroyed or version.deleted(self.now()):
            # Vault still tells which version it was and when it went away.
            return self._envelope(404, data={"data": None, "metadata": metadata}, mount_type="kv")
        data = {"data": copy.deepcopy(version.data), "metadata": metadata}
        return self._envelope(200, data=data, mount_type="kv")

    def _append_version(self, kv: _KvMount, key: str, data: dict[str, Any]) -> _Secret:
        now = self.now()
        secret = kv.secrets.get(key)
        if secret is None:
            secret = _Secret(created=now, updated=now)
            kv.secrets[key] = secret
        after = secret.delete_version_after or kv.delete_version_after
        secret.current_version += 1
        secret.versions[secret.current_version] = _Version(
            created=now, data=data, deletion_time=now + after if after > 0 else None
        )
        secret.updated = now
        limit = secret.max_versions or kv.max_versions or DEFAULT_MAX_VERSIONS
        # Vault's sliding window: once current - oldest reaches the limit, drop the oldest.
        if secret.current_version - secret.oldest_version >= limit:
            drop_through = secret.current_version - limit
            for number in [n for n in secret.versions if n <= drop_through]:
                del secret.versions[number]
            secret.oldest_version = drop_through + 1
        value = data.get("secret")
        if isinstance(value, str):
            record_issued(value)
        return secret

    def _kv_write(self, request: Request, kv: _KvMount, key: str, *, patch: bool) -> Response:
        if patch:
            _require_merge_patch(request)
        body = self._body(request)
        if self.faults.fail_writes > 0:
            self.faults.fail_writes -= 1
            return _error(self.faults.error_status, _multierror(["injected write fault"]))
        data = body.get("data")
        if not isinstance(data, dict):
            return _error(400, "no data provided")
        options = body.get("options") or {}
        if not isinstance(options, dict):
            return _error(400, "error parsing options")
        secret = kv.secrets.get(key)
        current = secret.current_version if secret else 0
        if patch:
            latest = secret.versions.get(current) if secret else None
            if latest is None or latest.destroyed or latest.deleted(self.now()):
                return _error(404)
            data = _merge_patch(latest.data or {}, data)
        if "cas" in options:
            cas = _parse_int(options["cas"], "error parsing check-and-set parameter")
            if cas != current:
                return _error(400, CAS_MISMATCH)
        elif kv.cas_required or (secret is not None and secret.cas_required):
            return _error(400, CAS_REQUIRED)
        secret = self._append_version(kv, key, copy.deepcopy(data))
        return self._envelope(
            200, data=self._version_metadata(secret, secret.current_version), mount_type="kv"
        )

    def _kv_delete_latest(self, kv: _KvMount, key: str) -> Response:
        secret = kv.secrets.get(key)
        latest = secret.versions.get(secret.current_version) if secret else None
        if latest is not None and not latest.destroyed and not latest.deleted(self.now()):
            latest.deletion_time = self.now()
        return self._no_content()

    def _kv_versions_op(self, request: Request, kv: _KvMount, key: str, action: str) -> Response:
        raw = self._body(request).get("versions")
        if isinstance(raw, int | str):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            return _error(400, "no version number provided")
        numbers = [_parse_int(v, "invalid version number") for v in raw]
        secret = kv.secrets.get(key)
        now = self.now()
        for number in numbers:
            version = secret.versions.get(number) if secret else None
            if version is None or version.destroyed:
                continue
            if action == "delete" and not version.deleted(now):
                version.deletion_time = now
            elif action == "undelete":
                version.deletion_time = None
            elif action == "destroy":
                version.destroyed = True
                version.data = None
        return self._no_content()

    def _kv_list(self, kv: _KvMount, key: str) -> Response:
        prefix = key + "/" if key else ""
        keys: set[str] = set()
        for name in kv.secrets:
            if name.startswith(prefix):
                rest = name[len(prefix) :]
                head, slash, _ = rest.partition("/")
                keys.add(head + slash)
        if not keys:
            return _error(404)
        return self._envelope(200, data={"keys": sorted(keys)}, mount_type="kv")

    def _kv_metadata_read(self, kv: _KvMount, key: str) -> Response:
        secret = kv.secrets.get(key)
        if secret is None:
            return _error(404)
        versions = {
            str(n): {
                "created_time": _rfc3339(v.created),
                "deletion_time": _rfc3339(v.deletion_time),
                "destroyed": v.destroyed,
            }
            for n, v in sorted(secret.versions.items())
        }
        data = {
            "cas_required": secret.cas_required,
            "created_time": _rfc3339(secret.created),
            "current_version": secret.current_version,
            "custom_metadata": dict(secret.custom_metadata) if secret.custom_metadata else None,
            "delete_version_after": _go_duration(secret.delete_version_after),
            "max_versions": secret.max_versions,
            "oldest_version": secret.oldest_version,
            "updated_time": _rfc3339(secret.updated),
            "versions": versions,
        }
        return self._envelope(200, data=data, mount_type="kv")

    @staticmethod
    def _custom_metadata(raw: Any, *, patch: bool) -> dict[str, str | None]:
        if not isinstance(raw, dict):
            raise _Reply(_error(400, "custom_metadata validation failed: expected a map"))
        parsed: dict[str, str | None] = {}
        for k, v in raw.items():
            if v is None and patch:
                parsed[str(k)] = None  # merge-patch: remove this key
            elif isinstance(v, dict | list):
                raise _Reply(_error(400, f"custom_metadata validation failed: value of {k!r}"))
            else:
                parsed[str(k)] = (
                    "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                )
        present = {k: v for k, v in parsed.items() if v is not None}
        prefix = "custom_metadata validation failed"
        if len(present) > CUSTOM_METADATA_MAX_KEYS:
            message = (
                f"{prefix}: payload must contain at most {CUSTOM_METADATA_MAX_KEYS} keys, "
                f"provided {len(present)}"
            )
            raise _Reply(_error(400, _multierror([message])))
        problems: list[str] = []
        for k, v in present.items():
            quoted = json.dumps(k, ensure_ascii=False)
            key_len, value_len = len(k.encode()), len(v.encode())
            if not 0 < key_len <= CUSTOM_METADATA_MAX_KEY_BYTES:
                problems.append(
                    f"{prefix}: length of key {quoted} is {key_len} but must be "
                    f"0 < len(key) <= {CUSTOM_METADATA_MAX_KEY_BYTES}"
                )
            if not 0 < value_len <= CUSTOM_METADATA_MAX_VALUE_BYTES:
                problems.append(
                    f"{prefix}: length of value for key {quoted} is {value_len} but must be "
                    f"0 < len(value) <= {CUSTOM_METADATA_MAX_VALUE_BYTES}"
                )
            if not k.isprintable():
                problems.append(f"{prefix}: key {quoted} ({k}) contains unprintable characters")
            if not v.isprintable():
                problems.append(f"{prefix}: value for key {quoted} contains unprintable characters")
        if problems:
            raise _Reply(_error(400, _multierror(problems)))
        return parsed

    def _kv_metadata_write(
        self, request: Request, kv: _KvMount, key: str, *, patch: bool
    ) -> Response:
        if patch:
            _require_merge_patch(request)
        body = self._body(request)
        custom = (
            self._custom_metadata(body["custom_metadata"], patch=patch)
            if "custom_metadata" in body
            else None
        )
        max_versions = (
            _parse_int(body["max_versions"], "invalid max_versions")
            if "max_versions" in body
            else None
        )
        cas_required = (
            _parse_bool(body["cas_required"], "cas_required") if "cas_required" in body else None
        )
        after = (
            round(_parse_duration(body["delete_version_after"], "delete_version_after"))
            if "delete_version_after" in body
            else None
        )
        if after is not None and after < 0:
            return _error(400, "delete_version_after cannot be negative")
        secret = kv.secrets.get(key)
        if secret is None:
            if patch:
                return _error(404)
            now = self.now()
            secret = _Secret(created=now, updated=now)
            kv.secrets[key] = secret
        if max_versions is not None:
            secret.max_versions = max_versions
        if cas_required is not None:
            secret.cas_required = cas_required
        if after is not None:
            secret.delete_version_after = after
        if custom is not None:
            base = dict(secret.custom_metadata or {}) if patch else {}
            for k, v in custom.items():
                if v is None:
                    base.pop(k, None)
                else:
                    base[k] = v
            secret.custom_metadata = base or None
        if cas_required is False and kv.cas_required:
            warning = (
                '"cas_required" set to false, but is mandated by backend config. '
                "This value will be ignored."
            )
            return self._envelope(200, mount_type="kv", warnings=[warning])
        return self._no_content()
