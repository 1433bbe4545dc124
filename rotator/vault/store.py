"""`VaultStore`: subscription records in Vault KV v2, one per subscription, check-and-set writes.

Owns the records (read, including deleted and destroyed versions; list;
write with check-and-set), Vault's clock (claims are judged on Vault's time,
not the host's), and the store's public face over the pool (`_pool`), the
verification (`_verify`) and the Monite credentials (`_credentials`).
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import hvac

from rotator.clock import ServerClock
from rotator.config import VaultSettings
from rotator.errors import VaultAuthError, VaultError, VaultRequestError, VaultUnavailable
from rotator.model import Record, parse_time
from rotator.secret import Secret
from rotator.vault._credentials import Credentials
from rotator.vault._errors import absent
from rotator.vault._pool import Pool, StoreClock
from rotator.vault._verify import VaultSetup, Verifier
from rotator.vault._wire import as_mapping, as_version, bare_get, http_date


class VaultStore:
    """Reads and check-and-set writes of subscription records in Vault KV v2."""

    def __init__(
        self,
        settings: VaultSettings,
        *,
        client_factory: Callable[[], hvac.Client] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        """A store on one clock: `clock` and `sleep` are the engine's injected clock.

        `clock` (seconds) times token leases and carries Vault's time forward
        between answers; `sleep` waits between retries, whose jitter comes from
        `rng` (a fresh `random.Random` when not given). Tests may pass the Vault
        emulator's clock.
        """
        self._settings = settings
        self._prefix = settings.path_prefix.strip("/")
        self._mount = settings.mount.strip("/")
        self._pool = Pool(
            settings,
            client_factory=client_factory,
            clock=StoreClock(clock, sleep),
            rng=rng if rng is not None else random.Random(),
        )
        self._auth = self._pool.auth
        self._call = self._pool.call
        self._retrying = self._pool.retrying
        self._verifier = Verifier(settings, self._pool)
        self._credentials = Credentials(settings, self._pool)
        self._vault_clock = ServerClock(clock)
        self.requests: collections.Counter[tuple[str, str]] = self._pool.requests

    def __repr__(self) -> str:
        return (
            f"VaultStore(address={self._settings.address!r}, mount={self._mount!r}, "
            f"path_prefix={self._prefix!r})"
        )

    @property
    def logins(self) -> int:
        """How many AppRole or Kubernetes logins this store has made."""
        return self._auth.logins

    @property
    def token(self) -> Secret | None:
        """The Vault token the store's requests carry now (a `Secret`); None before the first login.

        What hvac's `Client.token` shows: which token Vault sees, so it can be looked up or revoked.
        """
        return self._auth.token

    def close(self) -> None:
        """Close every client's HTTP session and the worker threads; later calls open new ones."""
        self._pool.close()

    def _record_path(self, subscription_id: str) -> str:
        # The id becomes a path segment: one that could climb out of the
        # prefix or into a sub-folder would address another record.
        if (
            not subscription_id
            or "/" in subscription_id
            or subscription_id in (".", "..")
            or any(ord(c) < 0x20 for c in subscription_id)
        ):
            raise VaultRequestError(f"{subscription_id!r} is not a valid subscription id")
        return f"{self._prefix}/{subscription_id}" if self._prefix else subscription_id

    def _display(self, kind: str, path: str) -> str:
        return f"{self._mount}/{kind}/{path}"

    # -- records ---------------------------------------------------------

    async def read(self, subscription_id: str, *, version: int | None = None) -> Record:
        """The latest version (or `version`); version 0 when there is none.

        A deleted or destroyed version reads as a record without data, in state
        `stale`: whatever it held, nobody can vouch for the secret at Monite.
        """
        path = self._record_path(subscription_id)
        return await self._retrying("read", lambda: self._read_once(subscription_id, path, version))

    async def _read_once(self, subscription_id: str, path: str, version: int | None) -> Record:
        def read(client: Any) -> Any:
            return client.secrets.kv.v2.read_secret_version(
                path=path, version=version, mount_point=self._mount, raise_on_deleted_version=True
            )

        try:
            response = await self._call("read", self._display("data", path), read)
        except VaultRequestError as exc:
            if not absent(exc):
                raise
            if version is not None:
                return without_data(subscription_id, version, exc.__cause__)
            return await self._read_deleted(subscription_id, path, exc.__cause__)

        body = as_mapping(as_mapping(response).get("data"))
        metadata = as_mapping(body.get("metadata"))
        number = as_version(metadata.get("version"))
        created = parse_time(metadata.get("created_time"))
        data = body.get("data")
        if number is None:
            raise VaultUnavailable(
                f"Vault read {self._display('data', path)}: answer has no version"
            )
        if not isinstance(data, Mapping):
            # Deleted or destroyed version answered with 200.
            return Record(subscription_id, version=number, state="stale", created_time=created)
        return Record.from_vault(subscription_id, data, number, created)

    async def _read_deleted(
        self, subscription_id: str, path: str, cause: BaseException | None
    ) -> Record:
        """A 404 on read: no record, or a latest version that was deleted or destroyed.

        The next check-and-set write must carry the current version, so it is
        taken from the 404 body (Vault includes the metadata of a deleted or
        destroyed version) or else from the metadata endpoint.
        """
        deleted = without_data(subscription_id, 0, cause)
        if deleted.version:
            return deleted

        def metadata(client: Any) -> Any:
            return client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=self._mount)

        try:
            response = await self._call("read_metadata", self._display("metadata", path), metadata)
        except VaultRequestError as exc:
            if absent(exc):
                return Record(subscription_id=subscription_id)
            raise
        except VaultAuthError:
            # A token allowed to read data but not metadata: Vault's plain 404
            # already said "no record", and a wrong guess only costs a CAS conflict.
            return Record(subscription_id=subscription_id)
        current = as_version(as_mapping(as_mapping(response).get("data")).get("current_version"))
        return Record(subscription_id=subscription_id, version=current or 0)

    async def list_ids(self) -> list[str]:
        """Subscription ids with a record under the prefix (sub-folders skipped)."""
        return await self._retrying("list", self._list_once)

    async def _list_once(self) -> list[str]:
        def list_(client: Any) -> Any:
            return client.secrets.kv.v2.list_secrets(path=self._prefix, mount_point=self._mount)

        try:
            response = await self._call("list", self._display("metadata", self._prefix), list_)
        except VaultRequestError as exc:
            if absent(exc):
                return []
            raise
        keys = as_mapping(as_mapping(response).get("data")).get("keys")
        if not isinstance(keys, list):
            return []
        return sorted(k for k in keys if isinstance(k, str) and k and not k.endswith("/"))

    async def write(self, record: Record, *, cas: int) -> Record:
        """Write `record` as the version after `cas`; VaultConflict if someone moved first.

        Not retried: an error here may hide a write that was applied.
        """
        path = self._record_path(record.subscription_id)

        # The plaintext payload is built inside the worker call so no frame that
        # outlives the request (a traceback's, say) holds it as a local.
        def write(client: Any) -> Any:
            return client.secrets.kv.v2.create_or_update_secret(
                path=path, secret=record.to_vault(), cas=cas, mount_point=self._mount
            )

        response = await self._call(
            "write", self._display("data", path), write, carries_secret=True
        )
        answer = as_mapping(as_mapping(response).get("data"))
        version = as_version(answer.get("version"))
        if not version:
            raise VaultUnavailable(
                f"Vault write {self._display('data', path)}: answer has no version"
            )
        created = parse_time(answer.get("created_time"))
        self._vault_clock.observe(created)
        return record.at_version(version, created)

    # -- Vault's clock ---------------------------------------------------

    async def vault_now(self, *, refresh: bool = False) -> datetime:
        """Vault's current time (a lower bound), the clock every claim is judged on.

        Learned from `created_time` in Vault's answers and carried forward on the
        local monotonic clock; with `refresh` (once per cycle), or when nothing
        has been seen yet, also from the `Date` header of one unauthenticated
        `sys/health` call, which catches up after the host was suspended.
        """
        now = self._vault_clock.now()
        if now is not None and not refresh:
            return now

        def date_header(client: Any) -> Any:
            return bare_get(client, "/v1/sys/health").headers.get("Date")

        try:
            raw = await self._retrying(
                "time", lambda: self._call("time", "sys/health", date_header, auth=False)
            )
        except VaultError:
            if now is None:
                raise
            # A refresh only sharpens the estimate; the one carried forward is
            # still a lower bound, and the claims that follow fail on their own.
            return now
        self._vault_clock.observe_date(http_date(raw))
        now = self._vault_clock.now()
        if now is None:
            raise VaultUnavailable(
                "Vault's answer carries no usable Date header, so claims cannot be judged on "
                "Vault's clock; check that no proxy strips it"
            )
        return now

    # -- health ----------------------------------------------------------

    async def check(self) -> None:
        """Vault is reachable and unsealed, the token is live, and it may list the prefix.

        The light check, for readiness probes; `verify` is the full one.
        """
        await self._verifier.check_health()
        await self._verifier.check_token()
        list_path = self._display("metadata", self._prefix)
        try:
            await self._list_once()
        except VaultAuthError as exc:
            raise VaultAuthError(
                f"the Vault token may not list {list_path}: its policy needs the "
                f'"list" capability on {list_path} (and read, create, update on '
                f"{self._display('data', self._prefix)}/*)",
                status=exc.status,
            ) from exc

    async def verify(self, credentials_path: str | None = None) -> VaultSetup:
        """Everything `rotator check` promises about Vault (see `_verify.Verifier.verify`):
        Vault answers and is unsealed, the namespace exists, the token or login works,
        `vault.mount` is KV v2, and the token holds every capability rotation needs
        (plus "read" on `credentials_path` when given). Writes nothing."""
        return await self._verifier.verify(credentials_path)

    # -- other secrets ----------------------------------------------------

    async def read_monite_credentials(self, path: str) -> tuple[str, Secret]:
        """The Monite client id and secret kept at `path` in this store's KV v2 mount.

        The secret there must hold the string keys `client_id` and `client_secret`.
        A missing secret or key is a VaultConfigError that names the setting, the
        path and the keys (never a value); a policy that denies the read is a
        VaultAuthError naming the setting and the policy stanza to add.
        """
        return await self._credentials.read(path)


def without_data(subscription_id: str, version: int, cause: BaseException | None) -> Record:
    """A deleted or destroyed version, from the metadata Vault puts in its 404 body.

    Version 0 when the body names none. Its state is `stale`: a record whose
    data is gone vouches for nothing.
    """
    body = getattr(cause, "json", None)
    meta = as_mapping(as_mapping(as_mapping(body).get("data")).get("metadata"))
    number = as_version(meta.get("version")) or version
    if not number:
        return Record(subscription_id=subscription_id)
    created = parse_time(meta.get("created_time"))
    return Record(subscription_id, version=number, state="stale", created_time=created)
