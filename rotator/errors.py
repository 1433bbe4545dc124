"""The project's one exception tree; adapters translate library errors into it.

    RotatorError
    ├── ConfigError              bad configuration: exit 78, nothing contacted
    ├── DependencyError          a service failed us; `retryable` says if trying again may help
    │   ├── MoniteError
    │   │   ├── MoniteUnavailable    transport failure, timeout, 5xx, 429 after retries
    │   │   ├── MoniteAuthError      credentials or token refused (401/403)
    │   │   ├── MoniteNotFound       the subscription does not exist (404)
    │   │   ├── MoniteRequestError   any other 4xx, 422 included
    │   │   └── MoniteProtocolError  a response we cannot trust: bad JSON, shape, pagination loop
    │   └── VaultError
    │       ├── VaultUnavailable     transport failure, timeout, 5xx, sealed
    │       ├── VaultAuthError       token missing, expired or lacking permission (403)
    │       ├── VaultRequestError    any other 4xx
    │       │   └── VaultConfigError Vault's answer shows a setting is wrong: exit 78
    │       └── VaultConflict        check-and-set lost: someone else wrote first

Messages never contain a secret, a token or a client secret: callers pass only
identifiers, status codes and the service's own error text.

Also here, because Vault's adapter (hvac/requests) and Monite's (httpx) both
need it: `unreachable_message`, the one line that says a service cannot be
reached, naming the setting, the host and port, and the fix.
"""

from __future__ import annotations

import errno
import urllib.parse
from collections.abc import Iterator


class RotatorError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(RotatorError):
    """The configuration is invalid; the message names the key and the fix."""


class DependencyError(RotatorError):
    """Monite or Vault did not do what we asked.

    `may_have_applied` is True when the request may have reached the service
    and changed something there although we got no usable answer (a timeout
    after sending, a 5xx, a 2xx we could not read): for a regenerate, the old
    secret may be dead; for a create, a subscription may exist that we know
    nothing of (such an error is not `retryable`: another create makes another).
    """

    retryable: bool = False

    def __init__(
        self, message: str, *, status: int | None = None, may_have_applied: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.may_have_applied = may_have_applied


class MoniteError(DependencyError):
    """Monite failed a request."""


class MoniteUnavailable(MoniteError):
    """Monite could not be reached or answered 5xx/429; trying again may help.

    `retryable` is False only for a request that must not be sent twice (a
    create) when this one may have been applied: asking again would repeat it.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        may_have_applied: bool = False,
        retryable: bool = True,
    ) -> None:
        super().__init__(message, status=status, may_have_applied=may_have_applied)
        self.retry_after = retry_after
        self.retryable = retryable


class MoniteAuthError(MoniteError):
    """Monite refused our credentials or token."""


class MoniteNotFound(MoniteError):
    """The webhook subscription does not exist (any more)."""


class MoniteRequestError(MoniteError):
    """Monite rejected the request itself (4xx other than 401/403/404/429)."""


class MoniteProtocolError(MoniteError):
    """Monite answered with something we cannot trust (bad JSON, wrong shape, paging loop).

    `retryable` is False unless the caller knows asking again is safe and may
    succeed (a body that could not be decoded, a regenerate answer with no secret).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        may_have_applied: bool = False,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, status=status, may_have_applied=may_have_applied)
        self.retryable = retryable


class VaultError(DependencyError):
    """Vault failed a request."""


class VaultUnavailable(VaultError):
    """Vault could not be reached, is sealed, or answered 5xx; trying again may help."""

    retryable = True


class VaultAuthError(VaultError):
    """Vault refused our token or login, or the policy denies the path."""


class VaultRequestError(VaultError):
    """Vault rejected the request itself (4xx other than 403 and a CAS mismatch)."""


class VaultConflict(VaultError):
    """A check-and-set write lost: the record changed since we read it."""


class VaultConfigError(VaultRequestError):
    """Vault answered, and its answer shows a setting is wrong: no such namespace, no
    mount at `vault.mount` or one that is not KV v2, nothing at
    `monite.credentials_path`. The message names the setting and the fix; exit 78,
    since waiting cannot fix a setting."""


# ---------------------------------------------------------------------------
# "cannot connect": one line an operator can act on

# getaddrinfo's "no such host" and "try again" codes (EAI_NONAME, EAI_AGAIN,
# EAI_NODATA, EAI_FAIL on Linux): socket is not imported here, so the protocol
# layers that import this module stay free of it.
_DNS_ERRNOS = frozenset({-2, -3, -4, -5})


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and everything it wraps: causes, contexts, urllib3's `reason`, exception args."""
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        current = stack.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        stack += list(current.args)
        stack += list(getattr(current, "exceptions", ()))  # an ExceptionGroup's members


def connection_failure_reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words: "connection refused", "host name not
    found", "timed out", "TLS certificate not trusted", ...; "connection failed" when
    nothing more precise is known.

    Judged on exception types, errno values and class names only, so no text of the
    exception (which may quote a URL with credentials in it) reaches the answer.
    """
    chain = list(_chain(exc))
    names = [type(e).__name__ for e in chain]
    numbers = {e.errno for e in chain if isinstance(e, OSError) and isinstance(e.errno, int)}
    if "SSLCertVerificationError" in names or any(
        "CERTIFICATE_VERIFY_FAILED" in str(getattr(e, "reason", "")) for e in chain
    ):
        return "TLS certificate not trusted"
    if any("SSL" in name for name in names):
        return "TLS handshake failed"
    if errno.ECONNREFUSED in numbers or ConnectionRefusedError.__name__ in names:
        return "connection refused"
    if numbers & _DNS_ERRNOS or {"gaierror", "NameResolutionError"} & set(names):
        return "host name not found"
    if errno.ENETUNREACH in numbers:
        return "network unreachable"
    if errno.EHOSTUNREACH in numbers:
        return "host unreachable"
    if any(isinstance(e, ConnectionResetError | ConnectionAbortedError) for e in chain):
        return "connection reset"
    if any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in chain):
        return "timed out"
    return "connection failed"


def host_and_port(url: str) -> str:
    """`host:port` of `url` (`[v6]:port`), the scheme's port when none is given.

    Never the user info a URL may carry (credentials), nor its path or query.
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"https": 443, "http": 80}.get(parts.scheme.lower())
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def unreachable_message(
    setting: str, url: str, exc: BaseException, *, service: str, tls_setting: str | None = None
) -> str:
    """One line for an operator when `service` at `url` (the value of `setting`) cannot
    be reached, e.g. "vault.address: cannot connect to 127.0.0.1:8200 (connection
    refused); check that Vault is running and the address is right".

    TLS failures point at the scheme and at `tls_setting` (the CA bundle key) instead.
    Nothing of the exception's own text is used: only its types and errno values.
    """
    reason = connection_failure_reason(exc)
    where = host_and_port(url)
    if reason.startswith("TLS"):
        fix = "check that the address should use https"
        if tls_setting is not None:
            fix += f" and that {tls_setting} names the CA that signed {service}'s certificate"
        return f"{setting}: cannot connect to {where} ({reason}); {fix}"
    return (
        f"{setting}: cannot connect to {where} ({reason}); check that {service} is running "
        "and the address is right"
    )
