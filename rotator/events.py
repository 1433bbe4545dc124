"""The audit log's event names: stable and namespaced, `area.verb`.

Dashboards and alerts key on these strings, so they only ever get added to.
Every module that logs an audit event takes its name from here; `audit`
re-exports them.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CHECK_FAILED",
    "CHECK_PASSED",
    "CONFIG_LOADED",
    "CONFIG_RELOADED",
    "CONFIG_RELOAD_FAILED",
    "CONFIG_SECRET_FILE_EXPOSED",
    "CYCLE_FAILED",
    "CYCLE_FINISHED",
    "CYCLE_STARTED",
    "DAEMON_CLAIM_CHECK",
    "DAEMON_DRAIN_TIMEOUT",
    "DAEMON_FAILED",
    "DAEMON_PREFLIGHT_FAILED",
    "DAEMON_READY",
    "DAEMON_STARTED",
    "DAEMON_STOPPED",
    "DAEMON_STOPPING",
    "DAEMON_UNHEALTHY",
    "EVENTS",
    "HOOK_DELIVERED",
    "HOOK_FAILED",
    "HOOK_RETRY",
    "MONITE_LIST_ITEMS_SKIPPED",
    "MONITE_RETRY",
    "ROTATION_CLAIMED",
    "ROTATION_COMMIT_RETRY",
    "ROTATION_CONFLICT",
    "ROTATION_FAILED",
    "ROTATION_RECOVERED",
    "ROTATION_RELEASED",
    "ROTATION_SETTLING",
    "ROTATION_SKIPPED",
    "ROTATION_SUCCEEDED",
    "ROTATION_SUPERSEDED",
    "SUBSCRIPTION_ORPHANED",
    "SUBSCRIPTION_UNMANAGED",
    "SWAP_ABORTED",
    "SWAP_COMMITTED",
    "SWAP_CREATED",
    "SWAP_DELETED",
    "SWAP_DUPLICATE_SUSPECTED",
    "SWAP_FAILED",
    "SWAP_FALLBACK",
    "SWAP_LINKED",
    "SWAP_ORPHAN_AMBIGUOUS",
    "SWAP_ORPHAN_DELETED",
    "SWAP_OVERLAP_ENDED",
    "SWAP_RECOVERED",
    "SWAP_RELEASED",
    "SWAP_RETIRED",
    "SWAP_STARTED",
    "SWAP_SUCCESSOR_ADOPTED",
    "SWAP_SUCCESSOR_DISABLED",
    "VAULT_CLIENT_CLOSE_FAILED",
    "VAULT_LOGIN",
    "VAULT_LOGIN_FAILED",
    "VAULT_RELOGIN",
    "VAULT_RENEW_FAILED",
    "VAULT_RETRY",
    "VAULT_TOKEN_LOOKUP_FAILED",
    "VAULT_TOKEN_MAX_TTL",
    "VAULT_TOKEN_RENEWED",
]

CYCLE_STARTED: Final = "cycle.started"
CYCLE_FINISHED: Final = "cycle.finished"
CYCLE_FAILED: Final = "cycle.failed"
ROTATION_CLAIMED: Final = "rotation.claimed"
ROTATION_SUCCEEDED: Final = "rotation.succeeded"
ROTATION_FAILED: Final = "rotation.failed"
ROTATION_SKIPPED: Final = "rotation.skipped"
ROTATION_RECOVERED: Final = "rotation.recovered"
ROTATION_CONFLICT: Final = "rotation.conflict"
ROTATION_COMMIT_RETRY: Final = "rotation.commit_retry"
# Committed, but an earlier attempt timed out and may still land at Monite: the
# record stays claimed and is rotated again when the claim expires.
ROTATION_SETTLING: Final = "rotation.settling"
# A commit lost its check-and-set to a rotation that took over an expired
# claim: our secret is dropped (Monite has since replaced it) and the other
# rotation settles; worth a look, because it means a claim ran out mid-rotation.
ROTATION_SUPERSEDED: Final = "rotation.superseded"
# Monite refused every attempt, so the claim was given back (the old record
# restored, or marked stale when its secret may be dead).
ROTATION_RELEASED: Final = "rotation.released"
SUBSCRIPTION_ORPHANED: Final = "subscription.orphaned"
SUBSCRIPTION_UNMANAGED: Final = "subscription.unmanaged"
CONFIG_LOADED: Final = "config.loaded"
CHECK_PASSED: Final = "check.passed"
CHECK_FAILED: Final = "check.failed"
CONFIG_RELOADED: Final = "config.reloaded"
CONFIG_RELOAD_FAILED: Final = "config.reload_failed"
# A secret file (a *_file key, a systemd credential, ~/.vault-token, the service
# account token, the TLS client key) that users other than its owner may read
# or write: a warning naming the file and its mode, never its content.
CONFIG_SECRET_FILE_EXPOSED: Final = "config.secret_file_exposed"
DAEMON_STARTED: Final = "daemon.started"
DAEMON_READY: Final = "daemon.ready"
DAEMON_STOPPING: Final = "daemon.stopping"
DAEMON_STOPPED: Final = "daemon.stopped"
DAEMON_PREFLIGHT_FAILED: Final = "daemon.preflight_failed"
DAEMON_DRAIN_TIMEOUT: Final = "daemon.drain_timeout"
DAEMON_FAILED: Final = "daemon.failed"  # an unexpected exception ended the daemon (exit 70)
DAEMON_UNHEALTHY: Final = "daemon.unhealthy"
DAEMON_CLAIM_CHECK: Final = "daemon.claim_check_scheduled"
MONITE_RETRY: Final = "monite.retry"
MONITE_LIST_ITEMS_SKIPPED: Final = "monite.list_items_skipped"
# Vault authentication and transport (rotator.vault); fields never carry a token.
VAULT_LOGIN: Final = "vault.login"  # an AppRole/Kubernetes login gave a new token
VAULT_LOGIN_FAILED: Final = "vault.login_failed"  # a re-login failed; the current token serves on
VAULT_RELOGIN: Final = "vault.relogin"  # Vault refused the token as dead: log in again
VAULT_TOKEN_LOOKUP_FAILED: Final = "vault.token_lookup_failed"
VAULT_TOKEN_RENEWED: Final = "vault.token_renewed"
VAULT_RENEW_FAILED: Final = "vault.renew_failed"  # retrying=True: an outage; False: refused
VAULT_TOKEN_MAX_TTL: Final = "vault.token_max_ttl"  # renewal cannot pass the max TTL
VAULT_RETRY: Final = "vault.retry"  # a read or list is tried again after an outage
VAULT_CLIENT_CLOSE_FAILED: Final = "vault.client_close_failed"
# Hooks (rotator.hooks): a notice of a commit reached a consumer, or did not
# after every attempt (or the queue overflowed, or the daemon stopped first).
# Fields: hook (URL without credentials or query, or argv[0]), subscription_id,
# vault_version, attempts, latency_ms (commit to delivered), reason on failure,
# and a command's stdout/stderr (truncated, redacted). Never the secret.
HOOK_DELIVERED: Final = "hook.delivered"
HOOK_FAILED: Final = "hook.failed"
HOOK_RETRY: Final = "hook.retry"  # debug: an attempt failed and is tried again
# Swaps (rotator.rotation.swap, docs/swap.md). Fields: swap_id, subscription_id
# (the original), successor_id, phase, fingerprints, overlap_ends_at; never a secret.
SWAP_STARTED: Final = "swap.started"
SWAP_CREATED: Final = "swap.created"
SWAP_COMMITTED: Final = "swap.committed"
SWAP_LINKED: Final = "swap.linked"
SWAP_OVERLAP_ENDED: Final = "swap.overlap_ended"
SWAP_DELETED: Final = "swap.deleted"
SWAP_RETIRED: Final = "swap.retired"
SWAP_RECOVERED: Final = "swap.recovered"
SWAP_ORPHAN_DELETED: Final = "swap.orphan_deleted"
SWAP_ORPHAN_AMBIGUOUS: Final = "swap.orphan_ambiguous"
SWAP_SUCCESSOR_ADOPTED: Final = "swap.successor_adopted"
# An operator disabled the original during the overlap: the successor is disabled too.
SWAP_SUCCESSOR_DISABLED: Final = "swap.successor_disabled"
SWAP_ABORTED: Final = "swap.aborted"
SWAP_RELEASED: Final = "swap.released"
SWAP_FAILED: Final = "swap.failed"
SWAP_FALLBACK: Final = "swap.fallback"
SWAP_DUPLICATE_SUSPECTED: Final = "swap.duplicate_suspected"

EVENTS: Final[frozenset[str]] = frozenset(
    {
        CYCLE_STARTED,
        CYCLE_FINISHED,
        CYCLE_FAILED,
        ROTATION_CLAIMED,
        ROTATION_SUCCEEDED,
        ROTATION_FAILED,
        ROTATION_SKIPPED,
        ROTATION_RECOVERED,
        ROTATION_CONFLICT,
        ROTATION_COMMIT_RETRY,
        ROTATION_SETTLING,
        ROTATION_SUPERSEDED,
        ROTATION_RELEASED,
        SUBSCRIPTION_ORPHANED,
        SUBSCRIPTION_UNMANAGED,
        CONFIG_LOADED,
        CHECK_PASSED,
        CHECK_FAILED,
        CONFIG_RELOADED,
        CONFIG_RELOAD_FAILED,
        CONFIG_SECRET_FILE_EXPOSED,
        DAEMON_STARTED,
        DAEMON_READY,
        DAEMON_STOPPING,
        DAEMON_STOPPED,
        DAEMON_PREFLIGHT_FAILED,
        DAEMON_DRAIN_TIMEOUT,
        DAEMON_FAILED,
        DAEMON_UNHEALTHY,
        DAEMON_CLAIM_CHECK,
        MONITE_RETRY,
        MONITE_LIST_ITEMS_SKIPPED,
        VAULT_LOGIN,
        VAULT_LOGIN_FAILED,
        VAULT_RELOGIN,
        VAULT_TOKEN_LOOKUP_FAILED,
        VAULT_TOKEN_RENEWED,
        VAULT_RENEW_FAILED,
        VAULT_TOKEN_MAX_TTL,
        VAULT_RETRY,
        VAULT_CLIENT_CLOSE_FAILED,
        HOOK_DELIVERED,
        HOOK_FAILED,
        HOOK_RETRY,
        SWAP_STARTED,
        SWAP_CREATED,
        SWAP_COMMITTED,
        SWAP_LINKED,
        SWAP_OVERLAP_ENDED,
        SWAP_DELETED,
        SWAP_RETIRED,
        SWAP_RECOVERED,
        SWAP_ORPHAN_DELETED,
        SWAP_ORPHAN_AMBIGUOUS,
        SWAP_SUCCESSOR_ADOPTED,
        SWAP_SUCCESSOR_DISABLED,
        SWAP_ABORTED,
        SWAP_RELEASED,
        SWAP_FAILED,
        SWAP_FALLBACK,
        SWAP_DUPLICATE_SUSPECTED,
    }
)
