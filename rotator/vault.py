"""Vault KV v2 record store: one record per subscription, written with check-and-set.

Owns every conversation with Vault: the hvac clients (one per worker thread,
because hvac's Client is synchronous and not thread-safe), driving them from
the event loop on a pool of `pool_size` worker threads, bounded retries of reads and lists,
and the translation of hvac and requests exceptions into the project's
`VaultError` tree. Writes are never retried here: a write whose answer was
lost may have been applied, and only the engine knows what is safe next.

Also owns authentication: one token shared by every per-thread client, from a
configured token (looked up once, renewed before it expires) or from an
AppRole or Kubernetes login (repeated before the token expires, and when Vault
refuses it), plus the TLS and namespace options of the clients; and reading
the Monite credentials that may live in Vault.

Nothing in this module puts a token, a login credential or a secret value in a
repr, an exception message or a log line. The text of a library exception that
may quote the request it refused (requests' InvalidHeader quotes the header
value, that is the token) is never copied into a message, and is blanked in
the exception chained as the cause. Log lines are structlog events with the
stable `vault.*` names of `rotator.events`.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import dataclasses
import email.utils
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import hvac
import hvac.adapters
import hvac.exceptions
import requests
import structlog

from rotator.clock import ServerClock, full_jitter
from rotator.config import VaultSettings
from rotator.errors import (
    VaultAuthError,
    VaultConfigError,
    VaultConflict,
    VaultError,
    VaultRequestError,
    VaultUnavailable,
    unreachable_message,
)
from rotator.events import (
    VAULT_CLIENT_CLOSE_FAILED,
    VAULT_LOGIN,
    VAULT_LOGIN_FAILED,
    VAULT_RELOGIN,
    VAULT_RENEW_FAILED,
    VAULT_RETRY,
    VAULT_TOKEN_LOOKUP_FAILED,
    VAULT_TOKEN_MAX_TTL,
    VAULT_TOKEN_RENEWED,
)
from rotator.model import Record, Secret, parse_time

__all__ = [
    "VaultSetup",
    "VaultStore",
    "client_options",
    "read_monite_credentials",
    "translate_hvac_error",
]

log = structlog.get_logger("rotator.vault")

T = TypeVar("T")

_RETRY_BASE = 0.2  # seconds; doubled per attempt
_RETRY_CAP = 5.0  # seconds; no single wait is longer
_RNG = random.Random()  # jitter, not cryptography
_MAX_DETAIL = 300  # characters of Vault's error text kept in a message
_CAS_MISMATCH = "check-and-set parameter did not match"
# A token is renewed (or a login repeated) once less than this share of its lease is left.
_REFRESH_SHARE = 1 / 3
# After a failed renewal or re-login, wait this long before the next attempt
# (the current token keeps working meanwhile), so a Vault hiccup is not a storm.
_REFRESH_BACKOFF = 10.0  # seconds
# Vault 1.17+ says this on a 403 for a dead token; older servers only "permission denied".
_INVALID_TOKEN = "invalid token"
_KEPT_TOKENS = 4  # recent tokens remembered so a stray one is redacted from messages
_MONITE_KEYS = ("client_id", "client_secret")
# What Vault (and OpenBao) answer, in the namespace given, when it does not exist.
_NAMESPACE_NOT_FOUND = "namespace not found"
# What Vault answers for a path no secrets engine is mounted at.
_NO_ROUTE = "no handler for route"
# A record path to ask capabilities-self about: policies grant records by glob
# (`.../*`), and subscription ids are UUIDs, so any UUID stands for all of them.
_PROBE_ID = "00000000-0000-0000-0000-000000000000"
_POLICY_FILE = "deploy/vault/policy.hcl"

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


def _vault_detail(exc: hvac.exceptions.VaultError, secrets: Iterable[str] = ()) -> str:
    """Vault's own error text, without hvac's `on METHOD url` suffix, `secrets` redacted.

    Redacted before it is cut: a cut first could split a secret, and the
    piece left would no longer match (nor would the audit log's redactor).
    """
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list) and errors:
        text = ", ".join(str(e) for e in errors)
    elif exc.args and exc.args[0]:
        text = str(exc.args[0])
    else:
        text = ""
    # A proxy in front of Vault may answer with an HTML page: keep one short line.
    return _one_line(text, secrets)


def _one_line(text: str, secrets: Iterable[str]) -> str:
    """`text` redacted, folded onto one line, redacted again (folding may join a
    secret's pieces), and only then cut to `_MAX_DETAIL` characters."""
    secrets = tuple(secrets)
    return _scrub(" ".join(_scrub(text, secrets).split()), secrets)[:_MAX_DETAIL]


def _withhold_body(exc: hvac.exceptions.VaultError) -> None:
    """Forget the response body `exc` carries (its text, JSON, errors and message).

    For answers to requests that carried a secret: a proxy that echoes request
    bodies would otherwise keep the secret in an exception chained to ours.
    """
    exc.errors = None
    exc.text = None
    exc.json = None
    exc.args = (_BODY_WITHHELD,)


_BODY_WITHHELD = "response body withheld: the request carried a secret"
_MIN_SCRUB_PART = 8  # shorter pieces of a secret are not hunted for on their own


def _scrub_forms(value: str) -> list[str]:
    """The texts `value` may show up as: itself, as a repr() escapes it, trimmed, and its
    whitespace-separated pieces (messages are folded onto one line), longest first."""
    found = {value, value.encode("unicode_escape").decode("ascii"), value.strip()}
    found.update(part for part in value.split() if len(part) >= _MIN_SCRUB_PART)
    return sorted((f for f in found if f), key=len, reverse=True)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        for form in _scrub_forms(value):
            text = text.replace(form, "<redacted>")
    return text


# requests exceptions whose text only describes the transport (host, port, URL
# path, the socket or TLS error). Every other one may quote the request it
# refused, a header value (the token) or a body, so its text is never used.
_TRANSPORT_ERRORS = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)


def _text_withheld(exc: BaseException) -> bool:
    """Whether the text of `exc` may quote request data and must never be shown."""
    return isinstance(exc, requests.exceptions.RequestException) and not isinstance(
        exc, _TRANSPORT_ERRORS
    )


def translate_hvac_error(
    exc: Exception,
    *,
    operation: str,
    path: str,
    secrets: Iterable[str] = (),
    request_carried_secret: bool = False,
) -> VaultError:
    """Map an hvac or requests exception to the project's `VaultError` tree.

    The message names the operation, the Vault path and Vault's own error text,
    never a request body; any string in `secrets` (the token) is redacted
    should it appear anyway, before the text is cut. With
    `request_carried_secret` (a KV write, a login, a token renewal) the answer's
    body is never quoted at all, since a proxy may echo the request in it: the
    message gives the status and says the body was withheld, and the body is
    also dropped from `exc` itself. Callers `raise translate_hvac_error(...) from exc`.
    """
    where = f"Vault {operation} {path}"
    secrets = tuple(secrets)

    if isinstance(exc, VaultError):
        return exc

    if isinstance(exc, hvac.exceptions.VaultError):
        # The detail still classifies the error (check-and-set lost, sealed);
        # whether it may appear in the message is decided below.
        detail = _vault_detail(exc, secrets)
        status = next((code for cls, code in _HVAC_STATUS.items() if isinstance(exc, cls)), None)
        if request_carried_secret:
            _withhold_body(exc)
            said = f"status {status}" if status is not None else "an unexpected status"
            suffix = f": Vault answered {said}; {_BODY_WITHHELD}"
        else:
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
        name = type(exc).__name__
        if isinstance(exc, requests.exceptions.Timeout):
            return VaultUnavailable(f"{where} timed out ({name})")
        if isinstance(exc, _TRANSPORT_ERRORS):
            # Only these texts are used: they name host, port and URL path, never
            # a header or a body. Scrubbed all the same.
            detail = _one_line(str(exc), secrets)
            if isinstance(exc, requests.exceptions.SSLError):
                return VaultUnavailable(
                    f"{where} failed: TLS error (check vault.ca_cert and the address): {detail}"
                )
            return VaultUnavailable(f"{where} failed ({name}): {detail}")
        # From here on the text may quote the request (InvalidHeader quotes the
        # header value: the token), so a fixed hint stands in for it.
        if isinstance(exc, requests.exceptions.InvalidHeader):
            return VaultRequestError(
                f"{where} failed ({name}): a request header holds a value HTTP cannot carry; "
                "check that the Vault token and credentials are one line without spaces or "
                "control characters"
            )
        if isinstance(
            exc,
            requests.exceptions.InvalidURL
            | requests.exceptions.MissingSchema
            | requests.exceptions.InvalidSchema
            | requests.exceptions.URLRequired,
        ):
            return VaultRequestError(
                f"{where} failed ({name}): the request URL is not valid; check vault.address, "
                "vault.mount and vault.path_prefix"
            )
        if isinstance(exc, requests.exceptions.TooManyRedirects):
            return VaultRequestError(
                f"{where} failed ({name}): Vault redirected too often; check vault.address"
            )
        if isinstance(exc, requests.exceptions.JSONDecodeError):
            # The answer, not the request: a proxy page, say. Trying again may help.
            return VaultUnavailable(f"{where} failed ({name}): the answer is not JSON")
        if isinstance(
            exc,
            requests.exceptions.InvalidJSONError
            | requests.exceptions.StreamConsumedError
            | requests.exceptions.UnrewindableBodyError,
        ):
            # Retrying cannot fix a request we cannot send.
            return VaultRequestError(f"{where} failed ({name}): the request could not be sent")
        return VaultUnavailable(f"{where} failed ({name})")

    if isinstance(exc, OSError):
        return VaultUnavailable(f"{where} failed ({type(exc).__name__})")
    # Anything else (a KeyError from a malformed answer, ...): report the class
    # only, since its text could quote the response it choked on.
    return VaultRequestError(f"{where} failed: unexpected {type(exc).__name__}")


def _without_tracebacks(exc: BaseException) -> BaseException:
    """Drop the library frames from `exc` and everything chained to it.

    Their locals hold the request headers (the token) and body (the secret); a
    traceback renderer that shows locals must never see them. Types stay, and
    messages too, except those that may quote the request (`_text_withheld`):
    they are replaced, so a rendered chain cannot show the token. The request
    object a requests exception carries (with its headers) is dropped as well.
    """
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        if isinstance(current, requests.exceptions.RequestException):
            current.request = None
            if _text_withheld(current):
                current.args = (
                    f"{type(current).__name__} (text withheld: it may quote the request)",
                )
        stack += [current.__cause__, current.__context__]
    return exc


def _without_data(subscription_id: str, version: int, cause: BaseException | None) -> Record:
    """A deleted or destroyed version, from the metadata Vault puts in its 404 body.

    Version 0 when the body names none. Its state is `stale`: a record whose
    data is gone vouches for nothing.
    """
    body = getattr(cause, "json", None)
    meta = _as_mapping(_as_mapping(_as_mapping(body).get("data")).get("metadata"))
    number = _as_version(meta.get("version")) or version
    if not number:
        return Record(subscription_id=subscription_id)
    created = parse_time(meta.get("created_time"))
    return Record(subscription_id, version=number, state="stale", created_time=created)


def _http_date(value: object) -> datetime | None:
    """An HTTP `Date` header as an aware UTC datetime, or None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _as_mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _as_version(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _bare_get(client: Any, url: str, *, in_namespace: bool = False) -> Any:
    """GET `url` with no token (and outside any namespace unless `in_namespace`); the
    raw response, whatever its status.

    For unauthenticated calls. `sys/health` in particular is served by the root
    namespace only: inside one (even one that exists) Vault and OpenBao answer 400
    "operation unavailable in namespaces". The client is this worker thread's own,
    so no other request sees the header and token taken off it for the call.
    """
    adapter = client.adapter
    saved = adapter.namespace, adapter.token
    adapter.token = None
    if not in_namespace:
        adapter.namespace = None
    try:
        # hvac's JSON adapter drops the headers (the Date header); the raw one keeps them.
        return hvac.adapters.RawAdapter.request(adapter, "GET", url, raise_exception=False)
    finally:
        adapter.namespace, adapter.token = saved


def _absent(exc: VaultRequestError) -> bool:
    """A 404 that means "nothing stored there", not "no such namespace or mount"."""
    return exc.status == 404 and not isinstance(exc, VaultConfigError)


def _no_request(client: Any) -> None:
    """A call that sends nothing: `_call` with it only obtains the token (a login)."""


def _namespace_missing(exc: BaseException, settings: VaultSettings) -> bool:
    """Whether `exc` is Vault saying that the configured namespace does not exist."""
    return (
        bool(settings.namespace)
        and isinstance(exc, hvac.exceptions.InvalidPath)
        and _NAMESPACE_NOT_FOUND in _vault_detail(exc).lower()
    )


def _namespace_error(namespace: str | None) -> VaultConfigError:
    return VaultConfigError(
        f'vault.namespace: Vault has no namespace "{namespace}" (it answered "namespace not '
        'found"); set vault.namespace (or VAULT_NAMESPACE) to an existing namespace, or unset '
        "it to use the root namespace",
        status=404,
    )


# urllib3's names for a connection that was never made (refused, no such host, no
# answer to the connect, TLS handshake): "cannot connect" says so. A connection
# dropped after the request was sent is not one of them and keeps its own text.
_CONNECT_FAILURES = frozenset(
    {"NewConnectionError", "NameResolutionError", "ConnectTimeoutError", "SSLError"}
)


def _connect_failure(exc: BaseException) -> BaseException | None:
    """The requests exception behind `exc` (itself or its cause) when no connection was made."""
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, requests.exceptions.ConnectionError):
            if isinstance(
                candidate, requests.exceptions.SSLError | requests.exceptions.ConnectTimeout
            ):
                return candidate
            reason = getattr(candidate.args[0] if candidate.args else None, "reason", None)
            if type(reason).__name__ in _CONNECT_FAILURES:
                return candidate
    return None


def client_options(settings: VaultSettings) -> dict[str, Any]:
    """The keyword arguments every hvac.Client of a store is built with.

    TLS comes only from the settings (which already read VAULT_CACERT,
    VAULT_CLIENT_CERT and VAULT_CLIENT_KEY), so what `rotator check` reports is
    what the daemon uses.
    """
    s = settings
    # A login method must not pick up a stray VAULT_TOKEN: "" is not None to hvac.
    token: str | None = ""
    if s.auth_method == "token":
        # None lets hvac fall back to VAULT_TOKEN / ~/.vault-token, as Vault
        # users expect when no token is configured.
        token = s.token.reveal() if s.token is not None else None
    cert = (
        (str(s.client_cert), str(s.client_key))
        if s.client_cert is not None and s.client_key is not None
        else None
    )
    return {
        "url": s.address,
        "token": token,
        "namespace": s.namespace,
        "verify": str(s.ca_cert) if s.ca_cert is not None else True,
        "cert": cert,
        "timeout": s.timeout.total_seconds(),
    }


def _seconds(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class _Lease:
    """The token in use and what is known of its life; `expires_at` None: it never expires."""

    token: Secret
    generation: int  # bumped per new token, so a caller can tell its token was replaced
    expires_at: float | None = None
    period: float = 0.0  # the lease length a refresh is measured against
    renewable: bool = False


class _Auth:
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
        self._lease: _Lease | None = None
        self._generation = 0
        self._not_before = float("-inf")  # no renewal or re-login before this time
        self._tokens: collections.deque[str] = collections.deque(maxlen=_KEPT_TOKENS)
        self._jwt = ""  # the last service account token read, kept only for redaction
        self._pending_warning: dict[str, Any] | None = None  # see _acquire
        self.logins = 0

    def __repr__(self) -> str:
        return f"_Auth(method={self._settings.auth_method!r}, logins={self.logins})"

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

    def prepare(self, client: Any) -> _Lease | None:
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

    def retry_after_refusal(self, client: Any, lease: _Lease | None, exc: Exception) -> bool:
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
            detail = _vault_detail(exc) if isinstance(exc, hvac.exceptions.VaultError) else ""
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

    def _due(self, lease: _Lease) -> bool:
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

    def _acquire(self, client: Any) -> _Lease | None:
        if self._method != "token":
            return self._login(client)
        configured = self._settings.token
        value = configured.reveal() if configured is not None else client.token
        if not value:
            return None  # no token anywhere: Vault's 403 will say so, per request
        self._generation += 1
        lease = _Lease(Secret(value), self._generation)
        client.token = value
        now = self._clock()
        try:
            response = client.auth.token.lookup_self()
        except Exception as exc:
            if _namespace_missing(exc, self._settings):
                raise _namespace_error(self._settings.namespace) from _without_tracebacks(exc)
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
            data = _as_mapping(_as_mapping(response).get("data"))
            ttl = _seconds(data.get("ttl"))
            if ttl:
                lease = dataclasses.replace(
                    lease,
                    expires_at=now + ttl,
                    period=_seconds(data.get("creation_ttl")) or ttl,
                    renewable=data.get("renewable") is True,
                )
        self._lease = lease
        return lease

    def _refresh(self, client: Any, lease: _Lease) -> _Lease:
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

    def _renew(self, client: Any, lease: _Lease) -> _Lease:
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
        auth = _as_mapping(_as_mapping(response).get("auth"))
        ttl = _seconds(auth.get("lease_duration"))
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

    def _login(self, client: Any) -> _Lease:
        client.token = None  # a login needs no token, and a stale one is only noise
        now = self._clock()
        if self._method == "approle":
            response = self._approle_login(client)
        else:
            response = self._kubernetes_login(client)
        auth = _as_mapping(_as_mapping(response).get("auth"))
        token = auth.get("client_token")
        if not isinstance(token, str) or not token:
            raise VaultAuthError(f"Vault {self._method} login at {self._login_path} gave no token")
        ttl = _seconds(auth.get("lease_duration"))
        self._tokens.append(token)
        self._generation += 1
        self.logins += 1
        self._not_before = float("-inf")
        lease = _Lease(
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
            raise self._login_error(exc) from _without_tracebacks(exc)

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
            raise self._login_error(exc) from _without_tracebacks(exc)

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
        if _namespace_missing(exc, self._settings):
            return _namespace_error(self._settings.namespace)
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


@dataclasses.dataclass(frozen=True, slots=True)
class VaultSetup:
    """What `VaultStore.verify` found: the KV v2 mount, and what the token may do there.

    `granted` describes each capability checked ("create, read, update on
    secret/data/monite/webhooks/*"); `unchecked` says why they could not be asked.
    """

    mount: str
    granted: tuple[str, ...] = ()
    unchecked: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Need:
    """Capabilities rotation needs on one path."""

    path: str  # asked of sys/capabilities-self
    shown: str  # the path as a policy names it, for messages
    capabilities: tuple[str, ...]
    policy_path: str  # the policy stanza that grants it
    setting: str = "vault.mount and vault.path_prefix"  # the settings that chose the path

    def describe(self) -> str:
        return f"{', '.join(self.capabilities)} on {self.shown}"


def _allows(granted: frozenset[str] | None, capability: str) -> bool:
    if not granted or "deny" in granted:
        return False
    return "root" in granted or capability in granted


def _stanza(policy_path: str, needs: list[_Need]) -> list[str]:
    """Every capability `needs` want under one policy stanza, sorted as policy.hcl lists them."""
    wanted = {c for need in needs if need.policy_path == policy_path for c in need.capabilities}
    return sorted(wanted)


def _quoted(items: list[str]) -> str:
    return ", ".join(f'"{item}"' for item in items)


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
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """A store on one clock: `clock` and `sleep` are the engine's injected clock.

        `clock` (seconds) times token leases and carries Vault's time forward
        between answers; `sleep` waits between retries. Tests may pass the
        Vault emulator's clock.
        """
        self._sleep = sleep
        self._settings = settings
        self._factory: Callable[[], Any] = client_factory or self._default_client
        self._auth = _Auth(settings, clock)
        self._local = _ThreadClient()
        self._clients: list[Any] = []
        self._clients_lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._generation = 0
        self._prefix = settings.path_prefix.strip("/")
        self._mount = settings.mount.strip("/")
        self._vault_clock = ServerClock(clock)
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()

    def __repr__(self) -> str:
        return (
            f"VaultStore(address={self._settings.address!r}, mount={self._mount!r}, "
            f"path_prefix={self._prefix!r})"
        )

    # -- clients ---------------------------------------------------------

    def _default_client(self) -> hvac.Client:
        return hvac.Client(**client_options(self._settings))

    @property
    def logins(self) -> int:
        """How many AppRole or Kubernetes logins this store has made."""
        return self._auth.logins

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

    async def _in_pool(self, run: Callable[[Callable[[Any], T]], T], fn: Callable[[Any], T]) -> T:
        """`run(fn)` on one of our `pool_size` worker threads, with the caller's log context."""
        with self._clients_lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self._settings.pool_size, thread_name_prefix="vault"
                )
            pool = self._pool
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(pool, context.run, run, fn)

    def close(self) -> None:
        """Close every client's HTTP session and the worker threads; later calls open new ones."""
        with self._clients_lock:
            clients, self._clients = self._clients, []
            pool, self._pool = self._pool, None
            self._generation += 1
        if pool is not None:
            pool.shutdown(wait=False)
        for client in clients:
            try:
                client.adapter.close()
            except Exception:  # a close that fails leaves nothing to clean up
                log.debug(VAULT_CLIENT_CLOSE_FAILED)

    # -- plumbing --------------------------------------------------------

    def _secrets(self) -> tuple[str, ...]:
        return self._auth.secrets()

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

    def _authenticated(self, fn: Callable[[Any], T]) -> T:
        """`fn(client)` with the shared token; once more after a re-login if Vault refused it."""
        client = self._client()
        lease = self._auth.prepare(client)
        try:
            result = fn(client)
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized) as exc:
            if not self._auth.retry_after_refusal(client, lease, exc):
                raise
        else:
            return self._served(fn, result)
        # Outside the handler, so a second failure does not chain the first.
        self._auth.prepare(client)
        return self._served(fn, fn(client))

    def _served(self, fn: Callable[[Any], T], result: T) -> T:
        if fn is not _no_request:  # only an answer from Vault proves the token works
            self._auth.served()
        return result

    def _refusal_hint(self) -> str:
        if self._settings.auth_method == "token":
            return (
                "the Vault token is expired or revoked, or its policies do not allow this; "
                "check it with `vault token lookup` and give the daemon a live token"
            )
        return (
            f"the policies of the Vault {self._settings.auth_method} role do not allow "
            "this; grant them on this path"
        )

    async def _call(
        self,
        operation: str,
        display_path: str,
        fn: Callable[[Any], T],
        *,
        auth: bool = True,
        carries_secret: bool = False,
    ) -> T:
        """Run `fn(client)` in a worker thread once; translate and count the outcome.

        `carries_secret`: the request body holds a secret, so no error text may
        quote the answer's body (see `translate_hvac_error`).
        """
        try:
            if auth:
                result = await self._in_pool(self._authenticated, fn)
            else:
                result = await self._in_pool(lambda f: f(self._client()), fn)
        except Exception as exc:
            error = translate_hvac_error(
                exc,
                operation=operation,
                path=display_path,
                secrets=self._secrets(),
                request_carried_secret=carries_secret,
            )
            unreached = _connect_failure(exc)
            if _namespace_missing(exc, self._settings):
                error = _namespace_error(self._settings.namespace)
            elif isinstance(exc, hvac.exceptions.InvalidPath) and _NO_ROUTE in _vault_detail(exc):
                # The mount went away (or never was): not "no record", which would
                # make every subscription look unmanaged.
                error = self._no_mount_error()
            elif isinstance(exc, hvac.exceptions.Forbidden):
                error = VaultAuthError(f"{error}; {self._refusal_hint()}", status=error.status)
            elif unreached is not None:
                # One line an operator can act on, instead of urllib3's retry text.
                error = VaultUnavailable(
                    unreachable_message(
                        "vault.address",
                        self._settings.address,
                        unreached,
                        service="Vault",
                        tls_setting="vault.ca_cert",
                    )
                )
            # A 404 is an ordinary answer (no record yet), not a failure to count.
            missing = isinstance(error, VaultRequestError) and error.status == 404
            self.requests[(operation, "not_found" if missing else type(error).__name__)] += 1
            if error is exc:
                # Already ours (a failed login): keep its cause, drop the worker frames.
                cause = error.__cause__
                _without_tracebacks(error)
                raise error from cause
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
                delay = full_jitter(n, base=_RETRY_BASE, cap=_RETRY_CAP, rng=_RNG)
                log.debug(
                    VAULT_RETRY,
                    operation=operation,
                    retry=n + 1,
                    retry_in_seconds=round(delay, 2),
                    error=str(exc),
                )
                await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

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
            if not _absent(exc):
                raise
            if version is not None:
                return _without_data(subscription_id, version, exc.__cause__)
            return await self._read_deleted(subscription_id, path, exc.__cause__)

        body = _as_mapping(_as_mapping(response).get("data"))
        metadata = _as_mapping(body.get("metadata"))
        number = _as_version(metadata.get("version"))
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
        deleted = _without_data(subscription_id, 0, cause)
        if deleted.version:
            return deleted

        def metadata(client: Any) -> Any:
            return client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=self._mount)

        try:
            response = await self._call("read_metadata", self._display("metadata", path), metadata)
        except VaultRequestError as exc:
            if _absent(exc):
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
            if _absent(exc):
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

        response = await self._call(
            "write", self._display("data", path), write, carries_secret=True
        )
        answer = _as_mapping(_as_mapping(response).get("data"))
        version = _as_version(answer.get("version"))
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
            return _bare_get(client, "/v1/sys/health").headers.get("Date")

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
        self._vault_clock.observe_date(_http_date(raw))
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
        await self._check_health()
        await self._check_token()
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
        """Everything `rotator check` promises about Vault, before a record is read or written.

        Vault answers and is unsealed; `vault.namespace` exists; the token or the
        login works; `vault.mount` is a KV v2 mount (asked with
        `sys/internal/ui/mounts`, as the vault CLI does); and the token holds every
        capability rotation needs, plus "read" on `credentials_path` when given
        (asked with `sys/capabilities-self`, not guessed from a refused call). Each
        failure is one line naming the setting and the fix: VaultConfigError for a
        wrong setting, VaultAuthError for a refused credential or a missing
        permission, VaultUnavailable when trying again may help. Writes nothing.
        """
        await self._check_health()
        await self._check_namespace()
        await self._check_token()
        entry = await self._mount_entry()
        if entry is not None:
            self._judge_mount(entry)
        needs = self._needs(credentials_path)
        granted = await self._capabilities([need.path for need in needs])
        if granted is None:
            # The token may not ask; the old probe still finds a missing mount or
            # listing permission, and the caller is told the rest went unchecked.
            await self._probe_list()
            return VaultSetup(
                self._mount,
                unchecked=(
                    "the Vault token may not call sys/capabilities-self, so only listing "
                    f"{self._display('metadata', self._prefix)} was tried; add "
                    'path "sys/capabilities-self" { capabilities = ["update"] } to its policy '
                    f"(as {_POLICY_FILE} does) to have every permission checked"
                ),
            )
        missing = [
            (need, [c for c in need.capabilities if not _allows(granted.get(need.path), c)])
            for need in needs
        ]
        missing = [(need, lacking) for need, lacking in missing if lacking]
        if missing:
            raise self._missing_error(missing, needs)
        if entry is None:
            # The token holds its capabilities under the mount, yet Vault would not
            # describe the mount: it answers 403 for a mount that does not exist.
            raise self._no_mount_error()
        return VaultSetup(self._mount, granted=tuple(need.describe() for need in needs))

    async def _check_health(self) -> None:
        response = await self._call(
            "health", "sys/health", lambda client: _bare_get(client, "/v1/sys/health"), auth=False
        )
        self._judge_health(response)

    async def _check_namespace(self) -> None:
        """A clear error when `vault.namespace` does not exist, before any login is tried.

        `sys/internal/ui/mounts` answers without a token in every namespace, and
        with 404 "namespace not found" in one that does not exist.
        """
        if not self._settings.namespace:
            return

        def probe(client: Any) -> Any:
            return _bare_get(client, "/v1/sys/internal/ui/mounts", in_namespace=True)

        response = await self._call("namespace", "sys/internal/ui/mounts", probe, auth=False)
        if int(getattr(response, "status_code", 0)) == 404 and _NAMESPACE_NOT_FOUND in str(
            getattr(response, "text", "")
        ):
            raise _namespace_error(self._settings.namespace)

    async def _check_token(self) -> None:
        # Log in (or look the token up) on its own first, so a refused login
        # keeps its own message instead of reading as a dead token below.
        login_path = (
            "auth/token/lookup-self"
            if self._settings.auth_method == "token"
            else f"auth/{self._settings.login_mount}/login"
        )
        await self._call("login", login_path, _no_request)

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

    async def _mount_entry(self) -> Mapping[str, Any] | None:
        """What Vault says of the mount holding the records; None when it will not say.

        Vault answers 403 both for a mount that does not exist (so mounts cannot be
        probed for) and for a token granted nothing under it: the capabilities
        tell the two apart.
        """
        display = "sys/internal/ui/mounts/" + "/".join(p for p in (self._mount, self._prefix) if p)

        def read(client: Any) -> Any:
            return client.adapter.get(f"/v1/{display}")

        try:
            response = await self._call("mount", display, read)
        except VaultConfigError:
            raise
        except (VaultAuthError, VaultRequestError):
            return None
        entry = _as_mapping(_as_mapping(response).get("data"))
        return entry if entry.get("type") else None

    def _judge_mount(self, entry: Mapping[str, Any]) -> None:
        mount = self._mount
        found = str(entry.get("path") or "").strip("/")
        kind = str(entry.get("type"))
        version = str(_as_mapping(entry.get("options")).get("version") or "1")
        if found != mount:
            full = "/".join(p for p in (mount, self._prefix) if p)
            rest = full[len(found) + 1 :] if full.startswith(f"{found}/") else ""
            raise VaultConfigError(
                f'vault.mount: "{mount}" is not a mount; the secrets engine holding {full} is '
                f'mounted at "{found}": set vault.mount = "{found}" and vault.path_prefix = '
                f'"{rest}"'
            )
        if kind not in ("kv", "generic"):
            raise VaultConfigError(
                f'vault.mount: "{mount}" is a {kind} secrets engine, not KV v2; point '
                "vault.mount at a KV v2 mount (create one with `vault secrets enable "
                "-path=NAME kv-v2`)"
            )
        if version != "2":
            raise VaultConfigError(
                f'vault.mount: "{mount}" is a KV version {version} mount; the rotator needs KV '
                "v2 (versions and check-and-set): upgrade it with `vault kv enable-versioning "
                f"{mount}`, or point vault.mount at a KV v2 mount"
            )

    def _no_mount_error(self) -> VaultConfigError:
        where = f' in namespace "{self._settings.namespace}"' if self._settings.namespace else ""
        return VaultConfigError(
            f'vault.mount: no secrets engine is mounted at "{self._mount}"{where}; create it '
            f"with `vault secrets enable -path={self._mount} kv-v2`, or set vault.mount to "
            "an existing KV v2 mount",
            status=404,
        )

    def _needs(self, credentials_path: str | None) -> list[_Need]:
        """The paths rotation uses, with the capabilities each needs."""

        def join(*parts: str) -> str:
            return "/".join(p for p in parts if p)

        data, metadata = join(self._mount, "data", self._prefix), join(self._mount, "metadata")
        metadata = join(metadata, self._prefix)
        needs = [
            # Claims and commits: check-and-set writes, "create" for a first record.
            _Need(f"{data}/{_PROBE_ID}", f"{data}/*", ("create", "read", "update"), f"{data}/*"),
            # Listing the records, and a record's version when its latest is deleted.
            _Need(f"{metadata}/", f"{metadata}/", ("list",), f"{metadata}/*"),
            _Need(f"{metadata}/{_PROBE_ID}", f"{metadata}/*", ("read",), f"{metadata}/*"),
        ]
        if credentials_path is not None:
            path = join(self._mount, "data", credentials_path.strip("/"))
            needs.append(_Need(path, path, ("read",), path, "monite.credentials_path"))
        return needs

    async def _capabilities(self, paths: list[str]) -> dict[str, frozenset[str]] | None:
        """The token's capabilities on each path; None when its policy may not ask."""

        def ask(client: Any) -> Any:
            return client.sys.get_capabilities(paths=paths)

        try:
            response = await self._call("capabilities", "sys/capabilities-self", ask)
        except VaultConfigError:
            raise
        except VaultAuthError:
            return None
        body = _as_mapping(response)
        data = _as_mapping(body.get("data")) or body
        granted: dict[str, frozenset[str]] = {}
        for path in paths:
            listed = data.get(path)
            if listed is None and len(paths) == 1:
                listed = data.get("capabilities")  # older servers, asked about one path
            items = listed if isinstance(listed, list) else []
            granted[path] = frozenset(c for c in items if isinstance(c, str))
        return granted

    def _missing_error(
        self, missing: list[tuple[_Need, list[str]]], needs: list[_Need]
    ) -> VaultAuthError:
        """One line: what is lacking where, and the policy stanzas that grant it."""
        who = self._grantee()
        lacking = " and ".join(f"{_quoted(caps)} on {need.shown}" for need, caps in missing)
        # Whole stanzas, as deploy/vault/policy.hcl writes them, for every path short of something.
        policy_paths = dict.fromkeys(need.policy_path for need, _ in missing)
        stanzas = " and ".join(
            f'path "{path}" {{ capabilities = [{_quoted(_stanza(path, needs))}] }}'
            for path in policy_paths
        )
        settings = sorted({need.setting for need, _ in missing})
        if settings == ["monite.credentials_path"]:
            return VaultAuthError(
                f"monite.credentials_path: {who} lack {lacking}; add {stanzas} to its policy, "
                "or point monite.credentials_path at a path it may read",
                status=403,
            )
        return VaultAuthError(
            f"{' and '.join(settings)}: {who} lack {lacking}; add {stanzas} to its policy "
            f"(as {_POLICY_FILE} does for the default paths)",
            status=403,
        )

    def _grantee(self) -> str:
        s = self._settings
        if s.auth_method == "token":
            return "the policies of the Vault token"
        if s.auth_method == "kubernetes":
            return f'the policies of the Vault kubernetes role "{s.role}"'
        return "the policies of the Vault approle role"

    async def _probe_list(self) -> None:
        """Without capabilities-self: list the records once, as `check` did before it."""
        list_path = self._display("metadata", self._prefix)

        def list_(client: Any) -> Any:
            return client.secrets.kv.v2.list_secrets(path=self._prefix, mount_point=self._mount)

        try:
            await self._call("list", list_path, list_)
        except VaultConfigError:
            raise
        except VaultAuthError as exc:
            raise VaultAuthError(
                f"vault.path_prefix: the Vault token may not list {list_path}: its policy "
                f'needs "list" on {list_path} (and "create", "read", "update" on '
                f"{self._display('data', self._prefix)}/*; see {_POLICY_FILE})",
                status=exc.status,
            ) from exc
        except VaultRequestError as exc:
            if not _absent(exc):
                raise
            # A plain 404: no record yet.

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

    # -- other secrets ----------------------------------------------------

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
                if _absent(exc):
                    return None
                raise
            data = _as_mapping(_as_mapping(response).get("data")).get("data")
            return data if isinstance(data, Mapping) else None

        return await self._retrying("read", once)

    async def read_monite_credentials(self, path: str) -> tuple[str, Secret]:
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


async def read_monite_credentials(store: VaultStore, path: str) -> tuple[str, Secret]:
    """`store.read_monite_credentials(path)`; kept as a function for existing callers."""
    return await store.read_monite_credentials(path)
