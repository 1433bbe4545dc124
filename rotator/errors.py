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
    │       └── VaultConflict        check-and-set lost: someone else wrote first

Messages never contain a secret, a token or a client secret: callers pass only
identifiers, status codes and the service's own error text.
"""

from __future__ import annotations


class RotatorError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(RotatorError):
    """The configuration is invalid; the message names the key and the fix."""


class DependencyError(RotatorError):
    """Monite or Vault did not do what we asked.

    `may_have_applied` is True when the request may have reached the service
    and changed something there although we got no usable answer (a timeout
    after sending, a 5xx, a 2xx we could not read): for a regenerate, the old
    secret may be dead.
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
    """Monite could not be reached or answered 5xx/429; trying again may help."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        may_have_applied: bool = False,
    ) -> None:
        super().__init__(message, status=status, may_have_applied=may_have_applied)
        self.retry_after = retry_after


class MoniteAuthError(MoniteError):
    """Monite refused our credentials or token."""


class MoniteNotFound(MoniteError):
    """The webhook subscription does not exist (any more)."""


class MoniteRequestError(MoniteError):
    """Monite rejected the request itself (4xx other than 401/403/404/429)."""


class MoniteProtocolError(MoniteError):
    """Monite answered with something we cannot trust (bad JSON, wrong shape, paging loop)."""


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
