"""Subprocess of scenario e: list every subscription through the product, report RSS.

Run as `python -m tests.perf.list_worker` with the product's settings in the
environment. It runs one real cycle (`open_engine` + `run_cycle`), notes its
own resident memory after the imports, right after the cycle's listing
returns, and after the cycle, then prints one JSON object on stdout. A process
of its own so that neither the emulators nor the bench skew the figure.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from typing import Any

from rotator.app import open_engine
from rotator.audit import configure_logging
from rotator.config import load_settings
from rotator.model import Subscription
from tests.perf.common import hwm_mib, rss_mib


async def measure() -> dict[str, Any]:
    result: dict[str, Any] = {"rss_imported": rss_mib()}
    settings = load_settings(None, os.environ)
    async with open_engine(settings, owner="bench:list") as engine:
        monite = engine.monite
        original = monite.list_subscriptions
        started = time.perf_counter()

        # Wrapping the instance's method (not the product's code) lets the worker see
        # memory at the moment the cycle holds the complete listing.
        async def list_and_measure() -> list[Subscription]:
            subscriptions = await original()
            result["list_seconds"] = time.perf_counter() - started
            result["listed"] = len(subscriptions)
            result["rss_listed"] = rss_mib()
            return subscriptions

        monite.list_subscriptions = list_and_measure  # type: ignore[method-assign]
        report = await engine.run_cycle()
        result["cycle_seconds"] = time.perf_counter() - started
        result["rss_after_cycle"] = rss_mib()
        result["summary"] = report.summary()
        result["error"] = report.error
        del report
    gc.collect()
    result["rss_end"] = rss_mib()
    # VmHWM is synced from per-thread counters lazily and can trail a fresh VmRSS
    # reading by a little; the peak is whichever is higher.
    samples = [result.get(k) for k in ("rss_listed", "rss_after_cycle", "rss_end")]
    result["hwm"] = max([v for v in [hwm_mib(), *samples] if isinstance(v, float)], default=None)
    return result


def main() -> int:
    # Logged as deployed (json, info), but into /dev/null: the cost stays, the noise goes.
    with open(os.devnull, "w") as sink:
        configure_logging(fmt="json", level="info", stream=sink)
        result = asyncio.run(measure())
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
