"""Vault: the record store in KV v2, its authentication, and the Monite credentials kept there.

The public face of the package; everything else in it is private:

    store.py         VaultStore: records (read, list, check-and-set write) and Vault's clock
    _pool.py         per-thread hvac clients on a worker pool; one call; bounded retries
    _auth.py         the shared token: lookup and renewal, AppRole and Kubernetes logins
    _errors.py       hvac/requests exceptions to the VaultError tree, from one table
    _verify.py       what `rotator check` promises: health, namespace, mount, capabilities
    _credentials.py  the Monite credentials at `monite.credentials_path`
    _wire.py         hvac client options, unauthenticated GETs, reading Vault's answers

Nothing in this package puts a token, a login credential or a secret value in
a repr, an exception message or a log line. The text of a library exception
that may quote the request it refused (requests' InvalidHeader quotes the
header value, that is the token) is never copied into a message, and is
blanked in the exception chained as the cause. Log lines are structlog events
with the stable `vault.*` names of `rotator.events`.
"""

from __future__ import annotations

from rotator.vault._errors import translate_hvac_error
from rotator.vault._verify import VaultSetup
from rotator.vault._wire import client_options
from rotator.vault.store import VaultStore

__all__ = [
    "VaultSetup",
    "VaultStore",
    "client_options",
    "translate_hvac_error",
]
