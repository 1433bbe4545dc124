"""Reading the Monite credentials that may live in Vault (`monite.credentials_path`).

Owns reading one KV v2 secret besides the records, and judging it as Monite
credentials: the string keys `client_id` and `client_secret`, with messages
that name the setting, the path and the keys, never a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rotator.config import VaultSettings
from rotator.errors import VaultAuthError, VaultConfigError, VaultRequestError
from rotator.secret import Secret
from rotator.vault._errors import absent
from rotator.vault._pool import Pool
from rotator.vault._wire import as_mapping

_MONITE_KEYS = ("client_id", "client_secret")


class Credentials:
    """Reads the Monite credentials from the store's KV v2 mount."""

    def __init__(self, settings: VaultSettings, pool: Pool) -> None:
        self._pool = pool
        self._call = pool.call
        self._retrying = pool.retrying
        self._mount = settings.mount.strip("/")

    def _display(self, kind: str, path: str) -> str:
        return f"{self._mount}/{kind}/{path}"

    async def _read_data(self, path: str) -> Mapping[str, Any] | None:
        """The latest data at `path` in the mount, or None when there is none."""

        def read(client: Any) -> Any:
            return client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=self._mount, raise_on_deleted_version=True
            )

        async def once() -> Mapping[str, Any] | None:
            try:
                response = await self._call("read", self._display("data", path), read)
            except VaultRequestError as exc:
                if absent(exc):
                    return None
                raise
            data = as_mapping(as_mapping(response).get("data")).get("data")
            return data if isinstance(data, Mapping) else None

        return await self._retrying("read", once)

    async def read(self, path: str) -> tuple[str, Secret]:
        """The Monite client id and secret kept at `path` in this store's KV v2 mount.

        The secret there must hold the string keys `client_id` and `client_secret`.
        A missing secret or key is a VaultConfigError that names the setting, the
        path and the keys (never a value); a policy that denies the read is a
        VaultAuthError naming the setting and the policy stanza to add.
        """
        where = self._display("data", path)
        expected = "a KV v2 secret with the keys client_id and client_secret"
        hint = (
            f"write them with `vault kv put -mount={self._mount} {path} client_id=... "
            "client_secret=...`, or fix monite.credentials_path"
        )
        try:
            data = await self._read_data(path)
        except VaultAuthError as exc:
            raise VaultAuthError(
                f"monite.credentials_path: Vault refused to read the Monite credentials at "
                f'{where}: the policy needs "read" on {where} (add path "{where}" '
                '{ capabilities = ["read"] } to it), or point monite.credentials_path at a '
                "path it may read",
                status=exc.status,
            ) from exc
        if data is None:
            raise VaultConfigError(
                f"monite.credentials_path: Vault has nothing at {where}; expected {expected}; "
                f"{hint}",
                status=404,
            )
        client_id, client_secret = (data.get(key) for key in _MONITE_KEYS)
        missing = [
            key
            for key, value in zip(_MONITE_KEYS, (client_id, client_secret), strict=True)
            if not isinstance(value, str) or not value.strip()
        ]
        if missing or not isinstance(client_id, str) or not isinstance(client_secret, str):
            raise VaultConfigError(
                f"monite.credentials_path: the secret at {where} has no usable "
                f"{' or '.join(missing)} (a non-empty string); expected {expected}; {hint}"
            )
        return client_id.strip(), Secret(client_secret.strip())
