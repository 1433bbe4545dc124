"""The Vault emulator's state: tokens, Kubernetes roles, namespaces, fault knobs, clock, seal.

`VaultState` is the base of the emulator's layers (`tokens`, `auth`, `sys_endpoints`,
`routing`, then `emulator.VaultEmulator`): it creates every attribute they
share, and owns the clock (`now`, `advance_time`), the seal, and creating
namespaces.
"""

from __future__ import annotations

import random
import secrets
import string
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from rotator.sandbox.vault.kv import KvMount
from rotator.sandbox.vault.namespaces import Namespace, clean_namespace

DEFAULT_TOKEN_TTL = 768 * 3600  # OpenBao's system default (and max) lease TTL
TOKEN_ALPHABET = string.ascii_letters + string.digits


@dataclass
class VaultFaults:
    """Fault knobs, read on every request; tests flip them at any time."""

    latency: float = 0.0  # seconds added to every request
    error_rate: float = 0.0  # fraction of requests (except sys/health) answered 500
    fail_next: int = 0  # the next N requests (except sys/health) answer error_status
    error_status: int = 500
    fail_writes: int = 0  # the next N KV data writes answer error_status without applying


@dataclass
class Token:
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
class KubernetesRole:
    name: str
    service_account: str
    namespace: str
    policies: list[str]
    token_ttl: float
    jwts: dict[str, str]  # jwt -> service account uid


class VaultState:
    """What the emulator holds, its clock and seal; the layers above add behaviour.

    The layers (tokens, auth, sys_endpoints, routing, then `VaultEmulator`) are one
    class in the end: every one of them works on these attributes, under
    `_lock`.
    """

    def __init__(
        self,
        *,
        kv_mounts: Sequence[str],
        kv1_mounts: Sequence[str],
        max_versions: int,
        seed: int | None,
    ) -> None:
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
        root = Namespace("")
        for name in kv_mounts:
            root.mounts[name.strip("/")] = KvMount(name.strip("/"), max_versions=max_versions)
        for name in kv1_mounts:
            root.mounts[name.strip("/")] = KvMount(name.strip("/"), version=1)
        self._namespaces: dict[str, Namespace] = {"": root}
        self._tokens: dict[str, Token] = {}
        self._k8s_roles: dict[str, KubernetesRole] = {}

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

    def _ns(self, namespace: str | None) -> Namespace:
        name = clean_namespace(namespace)
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
        path = clean_namespace(name)
        if not path:
            raise ValueError("the root namespace always exists")
        with self._lock:
            parts = path.split("/")
            for depth in range(1, len(parts) + 1):
                level = "/".join(parts[:depth])
                if level not in self._namespaces:
                    ns_id = "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(6))
                    self._namespaces[level] = Namespace(level, id=ns_id)

    def namespace(self, name: str) -> None:
        """Create namespace `name` with a KV v2 mount "secret" inside, when missing.

        The same call as tests.openbao.OpenBaoVault.namespace.
        """
        with self._lock:
            self.create_namespace(name)
            ns = self._ns(name)
            ns.mounts.setdefault("secret", KvMount("secret"))
