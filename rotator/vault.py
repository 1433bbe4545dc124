"""Vault KV v2 record store: one record per subscription, written with check-and-set.

Owns every conversation with Vault: the hvac clients (one per worker thread,
because hvac's Client is synchronous and not thread-safe), driving them from
the event loop with `asyncio.to_thread`, bounded retries of reads and lists,
and the translation of hvac and requests exceptions into the project's
`VaultError` tree. Writes are never retried here: a write whose answer was
lost may have been applied, and only the engine knows what is safe next.

Nothing in this module puts a token or a secret value in a repr, an exception
message or a log line.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests

from rotator.config import VaultSettings
from rotator.errors import (
    VaultAuthError,
    VaultConflict,
    VaultError,
    VaultRequestError,
    VaultUnavailable,
)
from rotator.model import Record

__all__ = ["VaultStore", "translate_hvac_error"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_RETRY_BASE = 0.2  # seconds; doubled per attempt
_RETRY_CAP = 5.0  # seconds; no single wait is longer
_MAX_DETAIL = 300  # characters of Vault's error text kept in a message
_CAS_MISMATCH = "check-and-set parameter did not match"

# Status codes hvac encodes only in the exception class; kept so callers (and
# metrics) can see the status without parsing messages.
_HVAC_STATUS: dict[type[Exception], int] = {
    hvac.exceptions.InvalidRequest: 400,
    hvac.exceptions.Unauthorized: 401,
    hvac.exceptions.Forbidden: 403,
    hvac.exceptions.InvalidPath: 404,
    hvac.exceptions.PreconditionFailed: 412,
    hvac.exceptions.RateLimitExceeded: 429,
    hvac.exceptions.InternalServerError: 500,
    hvac.exceptions.VaultNotInitialized: 501,
    hvac.exceptions.BadGateway: 502,
    hvac.exceptions.VaultDown: 503,
}


def _vault_detail(exc: hvac.exceptions.VaultError) -> str:
    """Vault's own error text, without hvac's `on METHOD url` suffix."""
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list) and errors:
        text = ", ".join(str(e) for e in errors)
    elif exc.args and exc.args[0]:
        text = str(exc.args[0])
    else:
        text = ""
    # A proxy in front of Vault may answer with an HTML page: keep one short line.
    text = " ".join(text.split())
    return text[:_MAX_DETAIL]


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        if value:
            text = text.replace(value, "<redacted>")
    return text


def translate_hvac_error(
    exc: Exception, *, operation: str, path: str, secrets: Iterable[str] = ()
) -> VaultError:
    """Map an hvac or requests exception to the project's `VaultError` tree.

    The message names the operation, the Vault path and Vault's own error text,
    never a request body; any string in `secrets` (the token) is redacted
    should it appear anyway. Callers `raise translate_hvac_error(...) from exc`.
    """
    where = f"Vault {operation} {path}"

    if isinstance(exc, VaultError):
        return exc

    if isinstance(exc, hvac.exceptions.VaultError):
        detail = _vault_detail(exc)
        status = next((code for cls, code in _HVAC_STATUS.items() if isinstance(exc, cls)), None)
        suffix = f": {detail}" if detail else ""
        message = _scrub(f"{where} failed ({type(exc).__name__}){suffix}", secrets)
        if isinstance(exc, hvac.exceptions.InvalidRequest):
            if _CAS_MISMATCH in detail:
                return VaultConflict(
                    _scrub(
                        f"{where}: check-and-set lost, the record changed since it was read",
                        secrets,
                    ),
                    status=400,
                )
            return VaultRequestError(message, status=status)
        if isinstance(exc, hvac.exceptions.Unauthorized | hvac.exceptions.Forbidden):
            return VaultAuthError(message, status=status)
        if isinstance(
            exc,
            hvac.exceptions.InvalidPath
            | hvac.exceptions.UnsupportedOperation
            | hvac.exceptions.ParamValidationError,
        ):
            return VaultRequestError(message, status=status)
        if isinstance(exc, hvac.exceptions.VaultDown):
            # 503 is also what a sealed Vault answers; say so plainly.
            if "sealed" in detail.lower():
                return VaultUnavailable(
                    _scrub(f"{where} failed: Vault is sealed", secrets), status=503
                )
            return VaultUnavailable(message, status=status)
        if isinstance(
            exc,
            hvac.exceptions.InternalServerError
            | hvac.exceptions.BadGateway
            | hvac.exceptions.VaultNotInitialized
            | hvac.exceptions.RateLimitExceeded
            # 412: a performance standby has not caught up with the write yet.
            | hvac.exceptions.PreconditionFailed
            # UnexpectedError carries no status (504 from a proxy is the usual
            # one); trying again, boundedly, is the cautious reading.
            | hvac.exceptions.UnexpectedError,
        ):
            return VaultUnavailable(message, status=status)
        # A bare hvac.VaultError or a class hvac adds later: hvac raised it on
        # purpose, so the request itself is suspect.
        return VaultRequestError(message, status=status)

    if isinstance(exc, requests.exceptions.RequestException):
        # str(exc) names host, port and URL path: useful, and never the headers.
        detail = _scrub(" ".join(str(exc).split())[:_MAX_DETAIL], secrets)
        name = type(exc).__name__
        if isinstance(exc, requests.exceptions.SSLError):
            return VaultUnavailable(
                f"{where} failed: TLS error (check vault.ca_cert and the address): {detail}"
            )
        if isinstance(
            exc,
            requests.exceptions.InvalidURL
            | requests.exceptions.MissingSchema
            | requests.exceptions.InvalidSchema
            | requests.exceptions.URLRequired
            | requests.exceptions.InvalidHeader
            | requests.exceptions.TooManyRedirects
            | requests.exceptions.StreamConsumedError
            | requests.exceptions.UnrewindableBodyError,
        ):
            # Retrying cannot fix a bad address or a request we cannot send.
            return VaultRequestError(f"{where} failed ({name}): {detail}")
        if isinstance(exc, requests.exceptions.Timeout):
            return VaultUnavailable(f"{where} timed out ({name})")
        return VaultUnavailable(f"{where} failed ({name}): {detail}")

    if isinstance(exc, OSError):
        return VaultUnavailable(f"{where} failed ({type(exc).__name__})")
    # Anything else (a KeyError from a malformed answer, ...): report the class
    # only, since its text could quote the response it choked on.
    return VaultRequestError(f"{where} failed: unexpected {type(exc).__name__}")


def _without_tracebacks(exc: BaseException) -> BaseException:
    """Drop the library frames from `exc` and everything chained to it.

    Their locals hold the request headers (the token) and body (the secret); a
    traceback renderer that shows locals must never see them. Types and
    messages stay, so the chain still says what went wrong.
    """
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        stack += [current.__cause__, current.__context__]
    return exc


def _as_mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _as_version(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


class _ThreadClient(threading.local):
    generation: int = -1
    client: Any = None


class VaultStore:
    """Reads and check-and-set writes of subscription records in Vault KV v2."""

    def __init__(
        self,
        settings: VaultSettings,
        *,
        client_factory: Callable[[], hvac.Client] | None = None,
    ) -> None:
        self._settings = settings
        self._factory: Callable[[], Any] = client_factory or self._default_client
        self._local = _ThreadClient()
        self._clients: list[Any] = []
        self._clients_lock = threading.Lock()
        self._generation = 0
        self._prefix = settings.path_prefix.strip("/")
        self._mount = settings.mount.strip("/")
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()

    def __repr__(self) -> str:
        return (
            f"VaultStore(address={self._settings.address!r}, mount={self._mount!r}, "
            f"path_prefix={self._prefix!r})"
        )

    # -- clients ---------------------------------------------------------

    def _default_client(self) -> hvac.Client:
        s = self._settings
        return hvac.Client(
            url=s.address,
            # None lets hvac fall back to VAULT_TOKEN / ~/.vault-token, as
            # Vault users expect when no token is configured.
            token=s.token.reveal() if s.token is not None else None,
            namespace=s.namespace,
            verify=str(s.ca_cert) if s.ca_cert is not None else True,
            timeout=s.timeout.total_seconds(),
        )

    def _client(self) -> Any:
        """This thread's client; made on first use, and again after `close()`."""
        local = self._local
        if local.client is None or local.generation != self._generation:
            client = self._factory()
            with self._clients_lock:
                self._clients.append(client)
            local.client = client
            local.generation = self._generation
        return local.client

    def close(self) -> None:
        """Close every client's HTTP session; later calls open new ones."""
        with self._clients_lock:
            clients, self._clients = self._clients, []
            self._generation += 1
        for client in clients:
            try:
                client.adapter.close()
            except Exception:  # a close that fails leaves nothing to clean up
                log.debug("closing a Vault client failed", exc_info=False)

    # -- plumbing --------------------------------------------------------

    def _secrets(self) -> tuple[str, ...]:
        token = self._settings.token
        return (token.reveal(),) if token is not None else ()

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

    async def _call(self, operation: str, display_path: str, fn: Callable[[Any], T]) -> T:
        """Run `fn(client)` in a worker thread once; translate and count the outcome."""
        try:
            result = await asyncio.to_thread(lambda: fn(self._client()))
        except Exception as exc:
            error = translate_hvac_error(
                exc, operation=operation, path=display_path, secrets=self._secrets()
            )
            # A 404 is an ordinary answer (no record yet), not a failure to count.
            missing = isinstance(error, VaultRequestError) and error.status == 404
            self.requests[(operation, "not_found" if missing else type(error).__name__)] += 1
            raise error from _without_tracebacks(exc)
        self.requests[(operation, "ok")] += 1
        return result

    async def _retrying(self, operation: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Retry VaultUnavailable with capped, fully jittered exponential backoff."""
        retries = max(0, self._settings.max_retries)
        for n in range(retries + 1):
            try:
                return await attempt()
            except VaultUnavailable as exc:
                if n >= retries:
                    raise
                delay = random.uniform(0, min(_RETRY_CAP, _RETRY_BASE * 2**n))
                log.debug("vault %s: %s; retry %d in %.2fs", operation, exc, n + 1, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- records ---------------------------------------------------------

    async def read(self, subscription_id: str) -> Record:
        """The latest version of a record; version 0 when there is none."""
        path = self._record_path(subscription_id)
        return await self._retrying("read", lambda: self._read_once(subscription_id, path))

    async def _read_once(self, subscription_id: str, path: str) -> Record:
        def read(client: Any) -> Any:
            return client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=self._mount, raise_on_deleted_version=True
            )

        try:
            response = await self._call("read", self._display("data", path), read)
        except VaultRequestError as exc:
            if exc.status != 404:
                raise
            return await self._read_deleted(subscription_id, path, exc.__cause__)

        body = _as_mapping(_as_mapping(response).get("data"))
        version = _as_version(_as_mapping(body.get("metadata")).get("version"))
        data = body.get("data")
        if version is None:
            raise VaultUnavailable(
                f"Vault read {self._display('data', path)}: answer has no version"
            )
        if not isinstance(data, Mapping):
            # Deleted or destroyed latest version answered with 200.
            return Record(subscription_id=subscription_id, version=version)
        return Record.from_vault(subscription_id, data, version)

    async def _read_deleted(
        self, subscription_id: str, path: str, cause: BaseException | None
    ) -> Record:
        """A 404 on read: no record, or a latest version that was deleted or destroyed.

        The next check-and-set write must carry the current version, so it is
        taken from the 404 body (Vault includes the metadata of a deleted or
        destroyed version) or else from the metadata endpoint.
        """
        body = getattr(cause, "json", None)
        meta = _as_mapping(_as_mapping(_as_mapping(body).get("data")).get("metadata"))
        version = _as_version(meta.get("version"))
        if version:
            return Record(subscription_id=subscription_id, version=version)

        def metadata(client: Any) -> Any:
            return client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=self._mount)

        try:
            response = await self._call("read_metadata", self._display("metadata", path), metadata)
        except VaultRequestError as exc:
            if exc.status == 404:
                return Record(subscription_id=subscription_id)
            raise
        except VaultAuthError:
            # A token allowed to read data but not metadata: Vault's plain 404
            # already said "no record", and a wrong guess only costs a CAS conflict.
            return Record(subscription_id=subscription_id)
        current = _as_version(_as_mapping(_as_mapping(response).get("data")).get("current_version"))
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
            if exc.status == 404:
                return []
            raise
        keys = _as_mapping(_as_mapping(response).get("data")).get("keys")
        if not isinstance(keys, list):
            return []
        return sorted(k for k in keys if isinstance(k, str) and k and not k.endswith("/"))

    async def read_all(self, concurrency: int = 8) -> dict[str, Record]:
        """Every record under the prefix, read with at most `concurrency` in flight."""
        ids = await self.list_ids()
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(subscription_id: str) -> Record:
            async with gate:
                return await self.read(subscription_id)

        records = await asyncio.gather(*(one(i) for i in ids))
        return {r.subscription_id: r for r in records}

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

        response = await self._call("write", self._display("data", path), write)
        version = _as_version(_as_mapping(_as_mapping(response).get("data")).get("version"))
        if not version:
            raise VaultUnavailable(
                f"Vault write {self._display('data', path)}: answer has no version"
            )
        return record.at_version(version)

    # -- health ----------------------------------------------------------

    async def check(self) -> None:
        """Vault is reachable and unsealed, the token is live, and it may list the prefix."""

        def health(client: Any) -> Any:
            return client.sys.read_health_status(method="GET")

        response = await self._call("health", "sys/health", health)
        self._judge_health(response)

        def lookup(client: Any) -> Any:
            return client.auth.token.lookup_self()

        try:
            await self._call("lookup_self", "auth/token/lookup-self", lookup)
        except VaultAuthError as exc:
            raise VaultAuthError(
                "Vault refused the token (auth/token/lookup-self): it is missing, "
                "expired or revoked",
                status=exc.status,
            ) from exc

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

    @staticmethod
    def _judge_health(response: Any) -> None:
        # hvac answers 200 with a dict and any other status with the raw Response.
        if isinstance(response, Mapping):
            status, body = 200, response
        else:
            status = int(getattr(response, "status_code", 0))
            try:
                body = _as_mapping(response.json())
            except Exception:  # an empty or non-JSON body still has a status
                body = {}
        if body.get("sealed") is True:
            raise VaultUnavailable("Vault is sealed", status=status)
        if body.get("initialized") is False or status == 501:
            raise VaultUnavailable("Vault is not initialized", status=status)
        # 429 standby and 473 performance standby still serve (or forward) requests.
        if status not in (200, 429, 473):
            raise VaultUnavailable(f"Vault health check answered {status}", status=status)
