"""Emulators of Monite and Vault on loopback, for the tests, the demo and the benchmarks.

Never imported by the product itself (an import-linter contract checks it).
`ISSUED` collects every secret, token and credential the emulators hand out in
this process, so the test suite can search all captured output for them.
"""

from __future__ import annotations

import threading

ISSUED: set[str] = set()
_issued_lock = threading.Lock()


# Shorter values are test placeholders such as "s1"; they would match ordinary
# words in captured output. Every value the emulators generate is far longer.
MIN_TRACKED_LENGTH = 8


def record_issued(value: str) -> None:
    """Remember a secret value an emulator handed out (for the hygiene checks)."""
    if len(value) >= MIN_TRACKED_LENGTH:
        with _issued_lock:
            ISSUED.add(value)
