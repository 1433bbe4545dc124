"""Vault authentication: the one token every per-thread client uses, and its lease.

Owns obtaining the token (a configured one, looked up once; or an AppRole or
Kubernetes login), renewing it or logging in again before it expires, logging
in again when Vault refuses a dead token, and remembering every credential
held so it can be redacted from messages. Never puts a token, a login
credential or a service account token in a repr, a message or a log line.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import hvac.exceptions
import structlog

from rotator.config import VaultSettings
from rotator.errors import VaultAuthError, VaultError, VaultRequestError, VaultUnavailable
from rotator.events import (
    VAULT_LOGIN,
    VAULT_LOGIN_FAILED,
    VAULT_RELOGIN,
    VAULT_RENEW_FAILED,
    VAULT_TOKEN_LOOKUP_FAILED,
    VAULT_TOKEN_MAX_TTL,
    VAULT_TOKEN_RENEWED,
)
from rotator.secret import Secret
from rotator.vault._errors import (
    namespace_error,
    namespace_missing,
    translate_hvac_error,
    vault_detail,
    without_tracebacks,
)
from rotator.vault._wire import as_mapping, seconds

log = structlog.get_logger("rotator.vault")

# A token is renewed (or a login repeated) once less than this share of its lease is left.
_REFRESH_SHARE = 1 / 3
# After a failed renewal or re-login, wait this long before the next attempt
# (the current token keeps working meanwhile), so a Vault hiccup is not a storm.
_REFRESH_BACKOFF = 10.0  # seconds
# Vault 1.17+ says this on a 403 for a dead token; older servers only "permission denied".
_INVALID_TOKEN = "invalid token"
_KEPT_TOKENS = 4  # recent tokens remembered so a stray one is redacted from messages


@dataclasses.dataclass(frozen=True, slots=True)
class Lease:
    """The token in use and what is known of its life; `expires_at` None: it never expires."""

    token: Secret
    generation: int  # bumped per new token, so a caller can tell its token was replaced
    expires_at: float | None = None
    period: float = 0.0  # the lease length a refresh is measured against
    renewable: bool = False


class Auth:
    """The one Vault token every per-thread client uses: obtained, renewed and replaced here.

    Each request copies the current token into its own thread's client first,
    so a login or renewal made by one worker thread serves all of them. The
    lock is held across the login or renewal request itself, so concurrent
    callers wait for one login instead of each starting their own.
    """

    def __init__(self, settings: VaultSettings, clock: Callable[[], float]) -> None:
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._lease: Lease | None = None
        self._generation = 0
        self._not_before = float("-inf")  # no renewal or re-login before this time
        self._tokens: collections.deque[str] = collections.deque(maxlen=_KEPT_TOKENS)
        self._jwt = ""  # the last service account token read, kept only for redaction
        self._pending_warning: dict[str, Any] | None = None  # see _acquire
        self.logins = 0

    def __repr__(self) -> str:
        return f"Auth(method={self._settings.auth_method!r}, logins={self.logins})"

    @property
    def token(self) -> Secret | None:
        """The token requests carry now; None before the first login."""
        lease = self._lease
        return None if lease is None else lease.token

    @property
    def _method(self) -> str:
        return self._settings.auth_method

    @property
    def _login_path(self) -> str:
        return f"auth/{self._settings.login_mount}/login"

    def secrets(self) -> tuple[str, ...]:
        """Every credential this store may hold, for redaction from error texts."""
        s = self._settings
        values = [*self._tokens, self._jwt]
        values += [v.reveal() for v in (s.token, s.role_id, s.secret_id) if v is not None]
        return tuple(v for v in values if v)

    # -- the per-request entry points (called in worker threads) ----------

    def prepare(self, client: Any) -> Lease | None:
        """Put the live token on `client`, logging in or renewing first when due."""
        with self._lock:
            lease = self._lease
            if lease is None:
                lease = self._acquire(client)
            elif self._due(lease):
                lease = self._refresh(client, lease)
        if lease is not None:
            client.token = lease.token.reveal()
        return lease

    def retry_after_refusal(self, client: Any, lease: Lease | None, exc: Exception) -> bool:
        """After a 403 with `lease`: True if the call should run once more (`prepare` logs in).

        Only login methods can get a new token. A 403 also means "the policy
        denies this path", which a login cannot fix; so unless Vault said
        "invalid token", the refused token is looked up first, and a live one
        means the refusal stands (no login per denied request).
        """
        if self._method == "token" or lease is None:
            return False
        with self._lock:
            current = self._lease
            if current is not None and current.generation != lease.generation:
                return True  # another thread has already logged in again
            detail = vault_detail(exc) if isinstance(exc, hvac.exceptions.VaultError) else ""
            if _INVALID_TOKEN not in detail.lower():
                client.token = lease.token.reveal()
                try:
                    client.auth.token.lookup_self()
                except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
                    pass  # the token itself is dead: log in again below
                except Exception:  # cannot tell why: let the original refusal stand
                    return False
                else:
                    return False
            log.info(VAULT_RELOGIN, method=self._method, mount=self._settings.login_mount)
            self._lease = None
            self._not_before = float("-inf")
            return True

    def served(self) -> None:
        """A request with the shared token worked: say what was held back until now."""
        with self._lock:
            warning, self._pending_warning = self._pending_warning, None
        if warning is not None:
            log.warning(VAULT_TOKEN_LOOKUP_FAILED, **warning)

    # -- obtaining and refreshing -------------------------------------------

    def _due(self, lease: Lease) -> bool:
        if lease.expires_at is None:
            return False
        if self._method == "token" and not lease.renewable:
            return False
        now = self._clock()
        if now >= lease.expires_at:
            return True  # an expired token can only fail: try even during the backoff
        if now < self._not_before:
            return False
        return lease.expires_at - now < lease.period * _REFRESH_SHARE

    def _acquire(self, client: Any) -> Lease | None:
        if self._method != "token":
            return self._login(client)
        configured = self._settings.token
        value = configured.reveal() if configured is not None else client.token
        if not value:
            return None  # no token anywhere: Vault's 403 will say so, per request
        self._generation += 1
        lease = Lease(Secret(value), self._generation)
        client.token = value
        now = self._clock()
        try:
            response = client.auth.token.lookup_self()
        except Exception as exc:
            if namespace_missing(exc, self._settings):
                raise namespace_error(self._settings.namespace) from without_tracebacks(exc)
            error = translate_hvac_error(
                exc, operation="lookup_self", path="auth/token/lookup-self", secrets=self.secrets()
            )
            if isinstance(error, VaultUnavailable):
                # Bookkeeping must not block work: this request goes ahead (and
                # meets the same outage, or not); the next one looks up again.
                log.debug(VAULT_TOKEN_LOOKUP_FAILED, retrying=True, error=str(error))
                return lease
            # A token without the "default" policy may not look itself up yet still
            # work for the KV paths: use it, without renewal, and let requests tell.
            warning = {
                "retrying": False,
                "renewed": False,
                "error": str(error),
                "note": "the token is used as is and will not be renewed",
            }
            if isinstance(error, VaultAuthError):
                # Refused: a dead token (the request itself then fails, and says
                # so) or a policy without lookup-self. Warned about once a request
                # has worked, so a dead token is one error, not a warning and an error.
                self._pending_warning = warning
            else:
                log.warning(VAULT_TOKEN_LOOKUP_FAILED, **warning)
        else:
            data = as_mapping(as_mapping(response).get("data"))
            ttl = seconds(data.get("ttl"))
            if ttl:
                lease = dataclasses.replace(
                    lease,
                    expires_at=now + ttl,
                    period=seconds(data.get("creation_ttl")) or ttl,
                    renewable=data.get("renewable") is True,
                )
        self._lease = lease
        return lease

    def _refresh(self, client: Any, lease: Lease) -> Lease:
        if self._method == "token":
            return self._renew(client, lease)
        try:
            return self._login(client)
        except VaultError as exc:
            now = self._clock()
            if lease.expires_at is not None and now < lease.expires_at:
                # The old token still works for a while: keep serving with it.
                self._not_before = now + _REFRESH_BACKOFF
                log.warning(
                    VAULT_LOGIN_FAILED,
                    method=self._method,
                    mount=self._settings.login_mount,
                    expires_in_seconds=max(0, round(lease.expires_at - now)),
                    retry_in_seconds=_REFRESH_BACKOFF,
                    error=str(exc),
                    note="the current token still serves",
                )
                return lease
            raise

    def _renew(self, client: Any, lease: Lease) -> Lease:
        client.token = lease.token.reveal()
        now = self._clock()
        try:
            response = client.auth.token.renew_self()
        except Exception as exc:
            error = translate_hvac_error(
                exc,
                operation="renew_self",
                path="auth/token/renew-self",
                secrets=self.secrets(),
                request_carried_secret=True,
            )
            left = max(0, round((lease.expires_at or now) - now))
            if isinstance(error, VaultUnavailable):
                self._not_before = now + _REFRESH_BACKOFF
                log.warning(
                    VAULT_RENEW_FAILED,
                    retrying=True,
                    expires_in_seconds=left,
                    retry_in_seconds=_REFRESH_BACKOFF,
                    error=str(error),
                )
                return lease
            log.warning(
                VAULT_RENEW_FAILED,
                retrying=False,
                expires_in_seconds=left,
                error=str(error),
                note="Vault refused to renew the token; give the daemon a new one before then",
            )
            lease = dataclasses.replace(lease, renewable=False)
            self._lease = lease
            return lease
        auth = as_mapping(as_mapping(response).get("auth"))
        ttl = seconds(auth.get("lease_duration"))
        renewable = auth.get("renewable") is True
        # Vault caps a renewal at the token's max TTL: a lease shorter than the
        # last one means the cap is near, and renewing again cannot help.
        if ttl + 1 < lease.period:
            renewable = False
            log.warning(
                VAULT_TOKEN_MAX_TTL,
                expires_in_seconds=round(ttl),
                note="the token cannot be renewed past its maximum TTL; give the daemon a new "
                "token (or use approle or kubernetes auth) before then",
            )
        lease = dataclasses.replace(
            lease,
            expires_at=now + ttl if ttl else None,
            period=max(ttl, 1.0) if renewable else lease.period,
            renewable=renewable,
        )
        self._lease = lease
        log.debug(VAULT_TOKEN_RENEWED, ttl_seconds=round(ttl), renewable=renewable)
        return lease

    def _login(self, client: Any) -> Lease:
        client.token = None  # a login needs no token, and a stale one is only noise
        now = self._clock()
        if self._method == "approle":
            response = self._approle_login(client)
        else:
            response = self._kubernetes_login(client)
        auth = as_mapping(as_mapping(response).get("auth"))
        token = auth.get("client_token")
        if not isinstance(token, str) or not token:
            raise VaultAuthError(f"Vault {self._method} login at {self._login_path} gave no token")
        ttl = seconds(auth.get("lease_duration"))
        self._tokens.append(token)
        self._generation += 1
        self.logins += 1
        self._not_before = float("-inf")
        lease = Lease(
            Secret(token), self._generation, expires_at=now + ttl if ttl else None, period=ttl
        )
        self._lease = lease
        log.info(
            VAULT_LOGIN,
            method=self._method,
            mount=self._settings.login_mount,
            ttl_seconds=round(ttl),
            logins=self.logins,
        )
        return lease

    def _approle_login(self, client: Any) -> Any:
        s = self._settings
        if s.role_id is None or s.secret_id is None:
            raise VaultAuthError("AppRole login needs vault.role_id and vault.secret_id; set both")
        try:
            return client.auth.approle.login(
                role_id=s.role_id.reveal(),
                secret_id=s.secret_id.reveal(),
                use_token=False,
                mount_point=s.login_mount,
            )
        except Exception as exc:
            raise self._login_error(exc) from without_tracebacks(exc)

    def _kubernetes_login(self, client: Any) -> Any:
        s = self._settings
        if s.role is None:
            raise VaultAuthError("Kubernetes login needs vault.role; set it")
        # Read at every login: the kubelet replaces projected tokens as they age.
        jwt = self._read_jwt()
        try:
            return client.auth.kubernetes.login(
                role=s.role, jwt=jwt, use_token=False, mount_point=s.login_mount
            )
        except Exception as exc:
            raise self._login_error(exc) from without_tracebacks(exc)

    def _read_jwt(self) -> str:
        path = self._settings.jwt_file
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise VaultAuthError(
                f"cannot read the Kubernetes service account token {path} ({reason}); mount "
                "it in the pod or point vault.jwt_file at it"
            ) from None
        if not text:
            raise VaultAuthError(
                f"the Kubernetes service account token file {path} is empty; point "
                "vault.jwt_file at the mounted token"
            )
        self._jwt = text
        return text

    def _login_error(self, exc: Exception) -> VaultError:
        if namespace_missing(exc, self._settings):
            return namespace_error(self._settings.namespace)
        error = translate_hvac_error(
            exc,
            operation="login",
            path=self._login_path,
            secrets=self.secrets(),
            request_carried_secret=True,
        )
        if not isinstance(error, VaultAuthError | VaultRequestError):
            return error  # Vault down or unreachable: retrying may help
        s = self._settings
        if self._method == "approle":
            fix = (
                "check vault.role_id and vault.secret_id (a secret ID can be wrong, expired "
                "or used up: issue a new one with `vault write -f "
                "auth/approle/role/NAME/secret-id`) and that vault.auth_mount names the "
                "AppRole mount"
            )
        else:
            fix = (
                f"check that the Vault role {s.role!r} is bound to this pod's service "
                f"account and namespace, that {s.jwt_file} holds its current token, and that "
                "vault.auth_mount names the Kubernetes auth mount"
            )
        return VaultAuthError(f"{error}; {fix}", status=error.status)
