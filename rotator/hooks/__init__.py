"""Hooks: after every commit, a signed JSON notice to a URL or a command (the README's "Hooks").

The public face: `Notice` (what is sent, canonical JSON, never the secret),
`Hooks` (the dispatcher: one queue and worker per hook, `notify` never blocks,
`aclose(grace)` flushes within a budget), `HookObserver` (what metrics
implement), and the names of the signature header and environment variable.
The modules behind it: `_notice`, `_send` (one attempt: POST or command),
`_dispatch` (queues, retries, events).
"""

from __future__ import annotations

from rotator.hooks._dispatch import HOOK_BACKOFF, QUEUE_LIMIT, HookObserver, Hooks
from rotator.hooks._notice import NOTICE_EVENTS, Notice
from rotator.hooks._send import CHILD_ENV, OUTPUT_LIMIT, SIGNATURE_ENV, SIGNATURE_HEADER

__all__ = [
    "CHILD_ENV",
    "HOOK_BACKOFF",
    "NOTICE_EVENTS",
    "OUTPUT_LIMIT",
    "QUEUE_LIMIT",
    "SIGNATURE_ENV",
    "SIGNATURE_HEADER",
    "HookObserver",
    "Hooks",
    "Notice",
]
