"""Emulators of Monite and Vault on loopback, for the tests, the demo and the benchmarks.

Never imported by the product itself (an import-linter contract checks it).
`ISSUED` collects every secret, token and credential the emulators hand out in
this process, so the test suite can search all captured output for them.
"""

from __future__ import annotations

import threading

ISSUED: set[str] = set()
_issued_lock = threading.Lock()


def record_issued(value: str) -> None:
    """Remember a secret value an emulator handed out (for the hygiene checks)."""
    if value:
        with _issued_lock:
            ISSUED.add(value)
