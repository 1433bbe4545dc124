"""`VaultEmulator`, the Vault emulator's public class: lifecycle and administration without HTTP.

It stacks the layers (`state`, `tokens`, `auth`, `sys_endpoints`, `routing`) into one
object, serves them on a loopback port, and adds what tests do behind the
API's back: remount, read/write/delete KV data, request counts, connection
refusal.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

from rotator.sandbox._http import LoopbackServer
from rotator.sandbox.vault.kv import KvMount
from rotator.sandbox.vault.kv_v2 import read_v2, seed_v2
from rotator.sandbox.vault.routing import Router


class VaultEmulator(Router):
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
        super().__init__(
            kv_mounts=kv_mounts, kv1_mounts=kv1_mounts, max_versions=max_versions, seed=seed
        )
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

    # -- administration (no HTTP) -------------------------------------------

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
