"""`HookLatencies`: a hook observer that keeps commit-to-delivered times, for the demo and bench.

The daemon counts hook deliveries in its metrics; a run in one process (the
demo, a benchmark) passes this to `open_engine(hook_observer=...)` instead.
"""

from __future__ import annotations

import threading


class HookLatencies:
    """Commit-to-notice-delivered latencies (seconds) and the count of notices given up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.delivered: list[float] = []
        self.failed = 0

    def hook_delivered(self, hook: str, latency_seconds: float) -> None:
        with self._lock:
            self.delivered.append(latency_seconds)

    def hook_failed(self, hook: str) -> None:
        with self._lock:
            self.failed += 1
