"""The swap strategy's acceptance test: the daemon swapping under live deliveries, no hook.

The world is `test_consumers_end_to_end`'s: the Monite emulator delivering
signed events every `DELIVERY_EVERY` seconds (one event per triple, fanned out
to every subscription that shares it, as during a swap's overlap), the
example consumer with the kit (re-read once on a mismatch, deduplication by
event id on, no hook), and the real daemon with `rotation.strategy = "swap"`,
until every original has been swapped at least `SWAPS` times and each
original has been deleted.

What must hold. No delivery through a subscription whose secret Vault held is
ever rejected: not through an original (its secret stays valid until it is
deleted), not through a successor once its record is committed. The one
rejection a swap cannot avoid is a delivery through a successor in the
milliseconds between Monite's create answer and the successor's commit:
nobody holds its secret yet (docs/swap.md, Q7). Monite retries it, and the
same event has already arrived through the original. Such rejections are
matched to that gap and counted, never failed. No delivery is given up, and
every event is handled once (duplicates answered 200 and dropped).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections import Counter
from pathlib import Path

import hvac
import pytest

from rotator.config import VaultSettings
from rotator.sandbox import record_issued
from rotator.sandbox.deliveries import DeliverySender
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from rotator.secret import Secret
from tests.conftest import remember_output
from tests.daemon_harness import Config, DaemonProcess, poll
from tests.test_consumers_end_to_end import (
    consumer_stats,
    example_consumer,
    history,
    seed,
    signed_by,
)

OBJECT_TYPES = ("payable", "receivable", "counterpart")  # one triple each: no twins
SWAPS = 2  # at least, per original lineage
DELIVERY_EVERY = 0.2
# monite.timeout 0.5 s -> claim_ttl 2 s (4 x timeout) -> overlap 4 s (2 x claim_ttl) < max_age.
ROTATION = {"claim_ttl": "2s", "strategy": "swap", "overlap": "4s", "shutdown_timeout": "10s"}
MAX_AGE = "5s"
# Bounds, not expectations: each wait ends as soon as its condition holds, and a
# loaded CI machine (the whole suite on two cores) runs three to four times slower.
SWAP_WITHIN = 90.0  # seconds for every lineage's swaps and deletions (about 15 s expected)
SETTLE_WITHIN = 30.0


def lineage_of(successor: str, predecessors: dict[str, str]) -> str:
    """The original a successor descends from, following predecessor links."""
    seen = 0
    while successor in predecessors and seen < 64:
        successor, seen = predecessors[successor], seen + 1
    return successor


@pytest.mark.timeout(400)
def test_swaps_under_live_deliveries_reject_nothing_vault_held(
    vault: VaultEmulator,
    vault_token: str,
    vault_settings: VaultSettings,
    monite: MoniteEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two swaps per subscription under live deliveries: no rejection Vault could answer."""
    began = time.monotonic()
    root = hvac.Client(url=vault.address, token=vault.root_token, timeout=10)
    root.secrets.kv.v2.configure(max_versions=100, mount_point="secret")
    hook_key = tmp_path / "hook-key"  # the consumer app wants one; no hook is configured
    key = secrets.token_hex(32)
    record_issued(key)
    hook_key.write_text(key + "\n")

    with contextlib.ExitStack() as stack:
        app, observed = stack.enter_context(example_consumer(vault, hook_key, monkeypatch))
        originals = []
        for object_type in OBJECT_TYPES:
            originals += seed(monite, vault_settings, f"{app.url}/webhooks", 1, object_type)
        config = Config(tmp_path, monite, vault, vault_token)
        config.write(
            monite={"timeout": "0.5s"},
            policy={"max_age": MAX_AGE},
            schedule={"interval": "1s"},
            rotation=ROTATION,
        )
        sender = DeliverySender(monite, every=DELIVERY_EVERY)
        stack.callback(sender.stop)
        sender.start()
        daemon = DaemonProcess(config.path)
        stack.callback(daemon.close)

        def swapped_enough() -> bool:
            predecessors = {
                e["successor_id"]: e["subscription_id"]
                for e in daemon.events
                if e["event"] == "swap.committed"
            }
            per_lineage = Counter(lineage_of(s, predecessors) for s in predecessors)
            retired = {e["subscription_id"] for e in daemon.events if e["event"] == "swap.retired"}
            return all(per_lineage[o] >= SWAPS for o in originals) and retired >= set(
                predecessors.values()
            ) - set(monite.subscription_ids())

        done = poll(swapped_enough, timeout=SWAP_WITHIN)
        # Stop between swaps: wait until no original is left alive beside its successor.
        calm = poll(lambda: len(monite.subscription_ids()) == len(originals), timeout=SWAP_WITHIN)
        assert (True, True, 0) == (done, calm, daemon.stop()), daemon.stderr[-2000:]
        live = monite.subscription_ids()

        def settled() -> bool:
            counts = sender.snapshot().subscriptions
            for sid in live:
                mine = counts.get(sid)
                current = Secret(monite.current_secret(sid)).fingerprint()
                if mine is None or mine.fingerprint != current:
                    return False
                if mine.sent != mine.delivered + mine.failed:
                    return False
            return True

        assert poll(settled, timeout=SETTLE_WITHIN, interval=0.1)
        sender.stop()
        snapshot = sender.snapshot()
        remember_output(json.dumps(snapshot.to_json()))
        stats = consumer_stats(app)

    events = daemon.events
    committed = [e for e in events if e["event"] == "swap.committed"]
    predecessors = {e["successor_id"]: e["subscription_id"] for e in committed}
    lineages = Counter(lineage_of(s, predecessors) for s in predecessors)

    # -- the end state: one live subscription per lineage, its secret active in Vault --
    assert sorted(originals) == sorted(lineage_of(s, predecessors) for s in live)
    for sid in live:
        versions = history(root, sid)
        assert (
            Secret(monite.current_secret(sid)).fingerprint()
            == Secret(versions[-1].secret).fingerprint()
        )
    assert 0 == sum(monite.regenerate_count(s) for s in live)  # swaps never regenerate
    assert [] == [e for e in events if e["event"] in ("swap.failed", "swap.aborted")]

    # -- deliveries: none given up; each rejection is a successor's create-to-commit gap --
    assert 0 == snapshot.totals.failed
    versions = {sid: history(root, sid) for sid in predecessors}
    gap, failures = [], []
    for delivery in observed.rejections():
        sid = delivery.subscription_id or ""
        found = versions.get(sid)
        first = found[0] if found else None
        version = signed_by(delivery, found) if found else None
        if first is not None and version is first and first.created > delivery.started:
            gap.append(delivery)
        else:
            failures.append((sid, delivery.error, sid in originals))
    assert [] == failures, "rejected although Vault held the secret, or not a successor's gap"

    # -- every event handled: each id verified at least once, duplicates dropped ------
    verified_ids = Counter(json.loads(d.body)["id"] for d in observed.deliveries if d.status == 200)
    all_ids = {json.loads(d.body)["id"] for d in observed.deliveries}
    assert set() == all_ids - set(verified_ids)
    duplicates = sum(s.get("duplicates", 0) for s in stats.values())
    print(
        f"\n[{vault.__class__.__name__}] swaps per lineage {sorted(lineages.values())}; "
        f"deliveries {snapshot.totals.delivered} delivered, {snapshot.totals.fanned_out} "
        f"fanned out, {duplicates} duplicates dropped, {len(observed.rejections())} rejected "
        f"(all create-to-commit gaps: {len(gap)}); {time.monotonic() - began:.1f}s"
    )
