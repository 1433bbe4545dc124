"""`Secret`: a value whose repr is `<secret>`, and the registry of the values live Secrets hold.

The registry is what lets `rotator.redact.redact_text` find a secret's text
anywhere, even where it was not passed as a Secret. Pure: standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import weakref
from typing import Any


class Secret:
    """A secret value whose repr and str never show it.

    `reveal()` is the only way to the value, so every place that handles the
    plaintext is easy to find. Equality is constant-time.
    """

    __slots__ = ("__weakref__", "_value")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret takes a str")
        self._value = value
        if value:
            _remember(self, value)

    def reveal(self) -> str:
        """The plaintext. Only for the wire and the Vault record, never for logs."""
        return self._value

    def fingerprint(self) -> str:
        """First 12 hex chars of SHA-256: lets people compare secrets without seeing them."""
        return hashlib.sha256(self._value.encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "<secret>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        # Pickling would write the plaintext somewhere we do not control.
        raise TypeError("a Secret cannot be pickled")


# How many live Secret objects hold each value, so the log redactor can
# recognise a secret's text anywhere, even where it was not passed as a Secret.
# Counted, not one entry per value: two Secrets with the same value (a config
# reload, a record read back) must not make the first one forgotten when the
# second dies. A value is dropped when its last Secret is garbage.
_LIVE_SECRETS: dict[str, int] = {}
_live_lock = threading.Lock()


def _remember(secret: Secret, value: str) -> None:
    with _live_lock:
        _LIVE_SECRETS[value] = _LIVE_SECRETS.get(value, 0) + 1
    weakref.finalize(secret, _forget, value)


def _forget(value: str) -> None:
    with _live_lock:
        left = _LIVE_SECRETS.get(value, 0) - 1
        if left > 0:
            _LIVE_SECRETS[value] = left
        else:
            _LIVE_SECRETS.pop(value, None)


def is_known_secret(text: str) -> bool:
    """True when `text` is the exact value of a Secret this process holds."""
    return text in _LIVE_SECRETS
