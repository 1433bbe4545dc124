"""The consumer kit: verify Monite webhook deliveries with the secret the rotator keeps in Vault.

For the services that *receive* Monite's webhooks, not for the rotator itself.
Standard library only, plus hvac inside `VaultSecretSource` (imported when one
is built), so a consumer that loads its secrets another way needs no hvac.
From this project it uses only `rotator.signature` (the one place of the
signing scheme) and `rotator.secret` (a value whose repr is `<secret>`);
import-linter checks that.

    verifier = Verifier(VaultSecretSource(hvac.Client(...), mount="secret",
                                          prefix="monite/webhooks"))
    status, answer = verify_request(verifier, request_headers, raw_body)

`Verifier.verify` checks, in this order, so that the cheap refusals cost no
Vault read: the `Monite-Signature` header parses (malformed), its timestamp is
within `tolerance` of this host's clock (expired; `rotator.signature`'s own
check, the one `signature.verify` makes), the body is a JSON object
naming a `webhook_subscription_id` (malformed), that subscription has a record
(unknown_subscription) holding a usable secret (no_active_secret), and one of
the header's signatures matches it, compared in constant time (mismatch).

When the cached secret does not verify (or the subscription looked unknown or
secretless in the cache) the record is read again from the source once,
bypassing the cache, and the delivery verified again: right after a rotation
Monite signs with a secret the cache has not seen yet. Those re-reads are
limited by a token bucket per subscription: `refresh_burst` (3) in a row, then
one more per `refresh_interval` (1 s). The burst is for the rotation's gap: a
delivery signed between Monite's answer and the rotator's commit to Vault
re-reads and still finds the old secret, and the next delivery, a moment
later, must re-read again to find the new one. A flood of forged deliveries
costs Vault at most the burst, then one read per subscription per second; a
delivery that would need a re-read when the bucket is empty is rejected as it
stands (`Verifier.refreshes` counts the re-reads made, `refreshes_refused`
those refused). Headers are taken as any mapping, a WSGI environ or an ASGI
scope's raw `(name, value)` byte pairs; a header sent several times counts
with all its values.

A subscription the kit has not seen is read from the source on its first
delivery, so a swap's successor (`rotation.strategy = "swap"`, a new
`webhook_subscription_id` with its own record) verifies at once. During the
swap's overlap Monite sends every event through both subscriptions with the
same event `id`: `Deduplicator(ttl)` remembers the ids of verified deliveries
(in memory, per process, bounded) so a consumer handles each event once.

No secret value ever appears in a repr, an exception or a message of this
package: secrets are held as `rotator.secret.Secret`. A bad setting fails when
the object is built, never on a delivery: a `tolerance` that is not a finite
number of seconds >= 0, an empty secret given to `StaticSecretSource` or an
empty hook key is a one-line ValueError naming it. `DirectorySecretSource`
reads only files named like a subscription id (a UUID).

The package's face re-exports the kit; its private modules own the parts:
`_sources` where secrets come from (records, the Vault source, their cache),
`_local` the sources that need no Vault (in memory, a directory), `_verify`
how a delivery is checked and answered, `_dedupe` which events were
handled. `rotator.consumer.app` is a complete HTTP consumer built on it
(`python -m rotator.consumer.app`, and the one `rotator demo` runs);
`examples/consumer_app.py` embeds the kit in a WSGI app.
"""

from __future__ import annotations

# The names of __all__, and (imported `as` themselves) the constants and the
# id checks (`valid_subscription_id`, `subscription_id_file_name`) kept outside it.
from rotator.consumer._dedupe import DEFAULT_MAX_ENTRIES as DEFAULT_MAX_ENTRIES
from rotator.consumer._dedupe import Deduplicator
from rotator.consumer._local import DirectorySecretSource, StaticSecretSource
from rotator.consumer._local import subscription_id_file_name as subscription_id_file_name
from rotator.consumer._sources import ABSENT_TTL as ABSENT_TTL
from rotator.consumer._sources import (
    ACCEPTED_STATES,
    CachedSource,
    Lookup,
    SecretRecord,
    SecretSource,
    SecretSourceError,
    VaultSecretSource,
    record_from_data,
)
from rotator.consumer._sources import DEFAULT_CACHE_TTL as DEFAULT_CACHE_TTL
from rotator.consumer._sources import RECORD_STATES as RECORD_STATES
from rotator.consumer._sources import valid_subscription_id as valid_subscription_id
from rotator.consumer._verify import DEFAULT_REFRESH_BURST as DEFAULT_REFRESH_BURST
from rotator.consumer._verify import DEFAULT_REFRESH_INTERVAL as DEFAULT_REFRESH_INTERVAL
from rotator.consumer._verify import MAX_BODY_BYTES as MAX_BODY_BYTES
from rotator.consumer._verify import STATUS_BY_REASON as STATUS_BY_REASON
from rotator.consumer._verify import SUBSCRIPTION_FIELD as SUBSCRIPTION_FIELD
from rotator.consumer._verify import Headers as Headers
from rotator.consumer._verify import (
    Rejected,
    RejectReason,
    VerifiedDelivery,
    Verifier,
    header_value,
    signature_header,
    verify_request,
)

__all__ = [
    "ACCEPTED_STATES",
    "CachedSource",
    "Deduplicator",
    "DirectorySecretSource",
    "Lookup",
    "RejectReason",
    "Rejected",
    "SecretRecord",
    "SecretSource",
    "SecretSourceError",
    "StaticSecretSource",
    "VaultSecretSource",
    "VerifiedDelivery",
    "Verifier",
    "header_value",
    "record_from_data",
    "signature_header",
    "verify_request",
]
