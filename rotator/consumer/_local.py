"""The sources that need no Vault: secrets in memory, and one file per subscription.

Owns `StaticSecretSource` (tests, or secrets loaded some other way),
`DirectorySecretSource` (the files a Vault Agent template or a Kubernetes
Secret volume renders) and `subscription_id_file_name`, which names a
directory source reads.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

from rotator.consumer._sources import (
    DEFAULT_CACHE_TTL,
    CachedSource,
    SecretRecord,
    SecretSourceError,
)
from rotator.secret import Secret

# Monite's webhook subscription ids are UUIDs (`format: uuid` in its OpenAPI
# schema), in the 8-4-4-4-12 hex form its API and payloads write them in.
_SUBSCRIPTION_ID_FILE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_SHOWN_IGNORED = 5  # file names a directory source's start-up warning lists at most

_log = logging.getLogger("rotator.consumer")


def subscription_id_file_name(name: str) -> bool:
    """True for a file name shaped like a Monite webhook subscription id (a UUID, 8-4-4-4-12 hex).

    What `DirectorySecretSource` reads as a secret; any other name in its
    directory (an agent's pid file, a template's `secret`) is never read.
    """
    return _SUBSCRIPTION_ID_FILE.fullmatch(name) is not None


class StaticSecretSource(CachedSource):
    """Secrets given in memory (tests, or a consumer that loads them some other way).

    `set` replaces one; the cache then still answers the old one until
    invalidated, as a real cache would.
    """

    def __init__(self, secrets: Mapping[str, str] | None = None, *, ttl: float = 0.0) -> None:
        self._secrets: dict[str, Secret] = {
            k: _static_secret(k, v) for k, v in (secrets or {}).items()
        }
        super().__init__(self._lookup, ttl=ttl)

    def __repr__(self) -> str:
        return f"StaticSecretSource({len(self._secrets)} subscriptions)"

    def set(self, subscription_id: str, secret: str) -> None:
        """Replace one subscription's secret; an empty one is a ValueError, as at construction."""
        self._secrets[subscription_id] = _static_secret(subscription_id, secret)

    def _lookup(self, subscription_id: str) -> SecretRecord | None:
        secret = self._secrets.get(subscription_id)
        return None if secret is None else SecretRecord(subscription_id, secret, "active")


def _static_secret(subscription_id: str, secret: str) -> Secret:
    """`secret` as a Secret; ValueError (naming the subscription, never the value) unless usable.

    Refused when the source is built: an empty key would fail every delivery
    with a 500 when it is used, and anyone can sign with one.
    """
    if not isinstance(secret, str):
        raise TypeError(
            f"StaticSecretSource: the secret of subscription {subscription_id!r} is a "
            f"{type(secret).__name__}; give its signing secret as a str"
        )
    if not secret:
        raise ValueError(
            f"StaticSecretSource: the secret of subscription {subscription_id!r} is empty; "
            "give its signing secret (Monite's, as the rotator keeps it in Vault), "
            "or leave the subscription out"
        )
    return Secret(secret)


class DirectorySecretSource(CachedSource):
    """One file per subscription, named by its id, holding the secret (trailing newline ignored).

    The layout a Vault Agent template or a Kubernetes Secret volume renders
    (deploy/consumers/): the agent rewrites the file, its `exec` (or a
    rotator hook) calls `invalidate`, and the next delivery reads the new file.

    Only a file named like a subscription id (a UUID: `subscription_id_file_name`)
    is read as a secret; a delivery naming anything else is `unknown_subscription`
    without a read. So an agent's pid file, token sink or a Kubernetes volume's
    `..data` beside the secrets never verifies a delivery that names it. Other
    files found in the directory when the source is built are reported in one
    WARNING line on the `rotator.consumer` logger (their names, never their
    contents): a secret rendered under the wrong name would otherwise go unnoticed.
    """

    def __init__(self, directory: Path | str, *, ttl: float = DEFAULT_CACHE_TTL) -> None:
        self._directory = Path(directory)
        super().__init__(self._lookup, ttl=ttl)
        self._warn_of_other_files()

    def __repr__(self) -> str:
        return f"DirectorySecretSource({str(self._directory)!r})"

    def _warn_of_other_files(self) -> None:
        """One WARNING naming the files (not dot files) that will never be read as a secret."""
        try:
            names = sorted(
                entry.name
                for entry in self._directory.iterdir()
                if not entry.name.startswith(".") and not subscription_id_file_name(entry.name)
            )
        except OSError:
            return  # an unreadable directory is reported by the first read, with its error
        if not names:
            return
        shown = ", ".join(repr(name) for name in names[:_SHOWN_IGNORED])
        more = f" and {len(names) - _SHOWN_IGNORED} more" if len(names) > _SHOWN_IGNORED else ""
        _log.warning(
            "DirectorySecretSource: ignoring %d file(s) in %s not named like a Monite webhook "
            "subscription id (a UUID): %s%s; render each secret to <directory>/<subscription id>",
            len(names),
            self._directory,
            shown,
            more,
        )

    def _lookup(self, subscription_id: str) -> SecretRecord | None:
        # Quiet on purpose: the id comes from the sender, so a line per refusal
        # would let a forger write the log; the counters show these as unknown.
        if not subscription_id_file_name(subscription_id):
            return None
        try:
            text = (self._directory / subscription_id).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SecretSourceError(
                f"cannot read the secret file of {subscription_id!r}: {type(exc).__name__}"
            ) from None
        value = text.rstrip("\r\n")
        return SecretRecord(subscription_id, Secret(value) if value else None, "active")
