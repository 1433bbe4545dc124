"""The acceptance test: the daemon rotating under live deliveries to the example consumer.

The world: the Monite emulator with three enabled subscriptions delivering to
the example consumer (`rotator.consumer.app`, reading Vault with a token that
may only read the records, re-reading once on a mismatch, and in the `hooks`
variant told of each commit by the daemon's `[[hooks]]` notice; in the
`reread-only` variant the kit's re-read on a mismatch is all it has), the
emulator's `DeliverySender` sending signed events every `DELIVERY_EVERY`
seconds and retrying rejected ones, and the real daemon (`python -m rotator
run`) rotating each secret every few seconds, until every subscription has
been rotated at least `ROTATIONS` times.

What counts as a failure, exactly. Monite kills the old secret when it answers
the regenerate; the rotator commits the new one to Vault milliseconds later.
A delivery signed in that gap reaches a consumer whose one re-read still finds
the old secret: nobody has the new one yet, so it must be rejected, and Monite
delivers it again later, when it verifies. Such a *gap rejection* is expected
(rare, possibly none in a run) and is counted, not failed. A rejection of a
delivery signed with a secret whose Vault version was created before the
consumer started handling it is a failure of the consumer kit: its re-read
could have found it. So each rejection is matched, after the run, with the
first Vault version whose secret verifies it, and that version's
`created_time` must come after the consumer started handling the delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import statistics
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hvac
import pytest

from rotator import signature
from rotator.config import VaultSettings
from rotator.consumer import SecretRecord
from rotator.consumer.app import ConsumerApp, make_server
from rotator.model import Subscription
from rotator.sandbox import ISSUED, record_issued
from rotator.sandbox.deliveries import DeliverySender, DeliverySnapshot
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from rotator.secret import Secret
from tests.conftest import leaked, remember_output
from tests.consumer_support import commit
from tests.daemon_harness import PREFIX, Config, DaemonProcess, poll

SUBSCRIPTIONS = 3
ROTATIONS = 3  # at least, per subscription
MAX_AGE = "2s"  # policy.max_age: with 1 s cycles, a rotation every 2 to 3 s
DELIVERY_EVERY = 0.2  # seconds between the sender's rounds
HOOK_P99_LIMIT_MS = 1000.0  # the issue's acceptance figure
# Bounds, not expectations: each wait ends as soon as its condition holds, and a
# loaded CI machine (the whole suite on two cores) runs three to four times slower.
ROTATE_WITHIN = 60.0  # seconds for every subscription's rotations (about 10 s expected)
SETTLE_WITHIN = 30.0  # seconds for the deliveries after the last commit to be verified

CONSUMER_POLICY = """
path "secret/data/monite/webhooks/*" {
  capabilities = ["read"]
}
"""


@dataclass(frozen=True)
class Handled:
    """One `POST /webhooks` as the consumer handled it.

    `started`: unix time the consumer began handling it; `read`: (unix time,
    version got) of the Vault read it made, None when it answered from its
    cache alone (a re-read refused by the kit's token bucket is no read).
    """

    started: float
    subscription_id: str | None
    header: str | None = field(repr=False)
    body: bytes = field(repr=False)
    status: int
    error: str | None
    read: tuple[float, int | None] | None


@dataclass(frozen=True)
class Version:
    """One version of a record in Vault: its number, `created_time` (unix) and secret."""

    number: int
    created: float
    secret: str = field(repr=False)


class Observed:
    """Records what the consumer handled: every delivery (with its Vault read) and notice."""

    def __init__(self, app: ConsumerApp, monkeypatch: pytest.MonkeyPatch) -> None:
        self.deliveries: list[Handled] = []
        self.notices: list[tuple[int, bytes]] = []  # (status, body) of each POST /rotated
        self._lock = threading.Lock()
        self._local = threading.local()  # the Vault read of the request this thread handles
        handle_delivery, handle_hook, refresh = (
            app.handle_delivery,
            app.handle_hook,
            app.source.refresh,
        )

        def observed_refresh(subscription_id: str) -> SecretRecord | None:
            at = time.time()
            record = refresh(subscription_id)
            self._local.read = (at, None if record is None else record.version)
            return record

        def observed_delivery(
            headers: Mapping[str, str], body: bytes
        ) -> tuple[int, dict[str, Any]]:
            started = time.time()
            self._local.read = None
            status, answer = handle_delivery(headers, body)
            remember_output(json.dumps(answer))
            sid = answer.get("subscription_id")
            handled = Handled(
                started=started,
                subscription_id=sid if isinstance(sid, str) else None,
                header=headers.get(signature.HEADER),
                body=body,
                status=status,
                error=answer.get("error"),
                read=self._local.read,
            )
            with self._lock:
                self.deliveries.append(handled)
            return status, answer

        def observed_hook(headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
            status, answer = handle_hook(headers, body)
            remember_output(body.decode("utf-8", "replace"), json.dumps(answer))
            with self._lock:
                self.notices.append((status, body))
            return status, answer

        # The HTTP handler calls these through the app (and the Verifier through its source).
        monkeypatch.setattr(app.source, "refresh", observed_refresh)
        monkeypatch.setattr(app, "handle_delivery", observed_delivery)
        monkeypatch.setattr(app, "handle_hook", observed_hook)

    def rejections(self) -> list[Handled]:
        with self._lock:
            return [d for d in self.deliveries if d.status != 200]

    def first_verified(self) -> dict[str, float]:
        """When the consumer started handling each subscription's first verified delivery."""
        first: dict[str, float] = {}
        with self._lock:
            for d in self.deliveries:
                if d.status == 200 and d.subscription_id is not None:
                    first.setdefault(d.subscription_id, d.started)
        return first


def unix_time(rfc3339: str) -> float:
    """Unix time of Vault's `created_time` (RFC 3339 in UTC, up to nanoseconds)."""
    assert rfc3339.endswith("Z"), rfc3339
    whole, _, fraction = rfc3339[:-1].partition(".")
    seconds = datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp()
    return seconds + (float(f"0.{fraction}") if fraction else 0.0)


def history(root: Any, subscription_id: str) -> list[Version]:
    """Every version of a subscription's record, oldest first (read as root)."""
    path = f"{PREFIX}/{subscription_id}"
    metadata = root.secrets.kv.v2.read_secret_metadata(path=path, mount_point="secret")
    versions = []
    for number, meta in sorted(metadata["data"]["versions"].items(), key=lambda i: int(i[0])):
        data = root.secrets.kv.v2.read_secret_version(
            path=path, version=int(number), mount_point="secret", raise_on_deleted_version=True
        )["data"]["data"]
        versions.append(Version(int(number), unix_time(meta["created_time"]), data["secret"]))
    return versions


def signed_by(delivery: Handled, versions: list[Version]) -> Version | None:
    """The first (oldest) version whose secret verifies the delivery, if any."""
    stamp = signature.parse(delivery.header or "").timestamp
    for version in versions:
        if signature.is_valid(
            delivery.header, delivery.body, version.secret, now=stamp, tolerance=3600
        ):
            return version
    return None


def p99(samples: list[float]) -> float:
    """The 99th percentile by nearest rank (with 100 samples or fewer: the largest)."""
    ordered = sorted(samples)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


def settled(sender: DeliverySender, monite: MoniteEmulator, ids: list[str]) -> bool:
    """Every event sent was delivered or failed, the latest POST signed with Monite's secret."""
    counts = sender.snapshot().subscriptions
    for sid in ids:
        mine = counts.get(sid)
        current = Secret(monite.current_secret(sid)).fingerprint()
        if mine is None or mine.fingerprint != current or mine.sent != mine.delivered + mine.failed:
            return False
    return True


def consumer_stats(app: ConsumerApp) -> dict[str, dict[str, int]]:
    """The consumer's counters per subscription, from its `GET /stats` (joins the scan)."""
    with urllib.request.urlopen(app.url + "/stats", timeout=5) as response:  # loopback only
        text = response.read().decode()
    remember_output(text)
    return dict(json.loads(text)["subscriptions"])


@contextlib.contextmanager
def example_consumer(
    vault: VaultEmulator, hook_key: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ConsumerApp, Observed]]:
    """The example consumer, started, with a token that may only read the records."""
    vault.put_policy("consumer", CONSUMER_POLICY)
    token = vault.create_token(policies=["consumer"], no_default_policy=True)
    app = make_server(vault_addr=vault.address, vault_token=token, hook_key_file=hook_key)
    observed = Observed(app, monkeypatch)
    app.start()
    try:
        yield app, observed
    finally:
        app.stop()


def seed(
    monite: MoniteEmulator,
    vault_settings: VaultSettings,
    url: str,
    count: int,
    object_type: str = "payable",
) -> list[str]:
    """Enabled subscriptions delivering to `url`, their records `active` as a commit writes them."""
    ids = []
    due = datetime.now(UTC) - timedelta(hours=1)  # every first rotation is due at once
    for _ in range(count):
        sid = monite.seed(url=url, object_type=object_type, event_types=("created", "updated"))
        listed = monite.subscription(sid)
        subscription = Subscription(
            id=sid,
            url=listed["url"],
            object_type=listed["object_type"],
            status=listed["status"],
            event_types=tuple(listed["event_types"]),
        )
        secret = monite.current_secret(sid)
        asyncio.run(commit(vault_settings, sid, secret, cas=0, subscription=subscription, at=due))
        ids.append(sid)
    return ids


@pytest.mark.timeout(300)
@pytest.mark.parametrize("hooks", [True, False], ids=["hooks", "reread-only"])
def test_rotations_under_live_deliveries_reject_only_what_vault_did_not_hold(
    hooks: bool,
    vault: VaultEmulator,
    vault_token: str,
    vault_settings: VaultSettings,
    monite: MoniteEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three rotations each under live deliveries: no rejection Vault could answer; hooks < 1 s."""
    # reread-only: no hook, so after each commit only the kit's re-read on a mismatch
    # (its token bucket's burst covers the gap's re-read and the next one) finds the secret.
    began = time.monotonic()
    root = hvac.Client(url=vault.address, token=vault.root_token, timeout=10)
    root.secrets.kv.v2.configure(max_versions=100, mount_point="secret")  # keep every version
    hook_key = tmp_path / "hook-key"
    key = secrets.token_hex(32)
    record_issued(key)  # the hygiene scan looks for the hook key too
    hook_key.write_text(key + "\n")

    with contextlib.ExitStack() as stack:
        app, observed = stack.enter_context(example_consumer(vault, hook_key, monkeypatch))
        ids = seed(monite, vault_settings, f"{app.url}/webhooks", SUBSCRIPTIONS)
        config = Config(tmp_path, monite, vault, vault_token)
        if hooks:
            config.hooks.append(
                {"url": f"{app.url}/rotated", "secret_file": str(hook_key), "timeout": "2s"}
            )
        config.write(policy={"max_age": MAX_AGE}, schedule={"interval": "1s"})
        sender = DeliverySender(monite, every=DELIVERY_EVERY)
        stack.callback(sender.stop)
        sender.start()
        daemon = DaemonProcess(config.path)
        stack.callback(daemon.close)

        rotated = poll(
            lambda: all(monite.regenerate_count(sid) >= ROTATIONS for sid in ids),
            timeout=ROTATE_WITHIN,
        )
        assert (True, 0) == (rotated, daemon.stop()), daemon.stderr[-2000:]
        # No rotation now: every delivery signed after the last commit must verify.
        assert poll(lambda: settled(sender, monite, ids), timeout=SETTLE_WITHIN, interval=0.1)
        sender.stop()
        snapshot: DeliverySnapshot = sender.snapshot()
        remember_output(json.dumps(snapshot.to_json()))
        stats = consumer_stats(app)

    regenerations = {sid: monite.regenerate_count(sid) for sid in ids}
    versions = {sid: history(root, sid) for sid in ids}
    events = daemon.events

    # -- every issued secret reached Vault, one commit per regenerate -----------------
    commits = sorted(
        (e["subscription_id"], e["vault_version"])
        for e in events
        if e["event"] in ("rotation.succeeded", "rotation.recovered")
    )
    assert regenerations == dict(Counter(sid for sid, _ in commits))
    assert {sid: n + 1 for sid, n in regenerations.items()} == {
        sid: len({v.secret for v in found}) for sid, found in versions.items()
    }
    assert {sid: Secret(monite.current_secret(sid)).fingerprint() for sid in ids} == {
        sid: Secret(found[-1].secret).fingerprint() for sid, found in versions.items()
    }

    # -- deliveries: none given up, every one sent delivered --------------------------
    assert 0 == snapshot.totals.failed
    assert {sid: (c.sent, 0) for sid, c in snapshot.subscriptions.items()} == {
        sid: (c.delivered, c.failed) for sid, c in snapshot.subscriptions.items()
    }
    assert {
        sid: (c.sent + c.retried, c.delivered) for sid, c in snapshot.subscriptions.items()
    } == {sid: (stats[sid]["received"], stats[sid]["verified"]) for sid in ids}

    # -- rejections: only gap ones, only mismatches after the first verified delivery --
    first = observed.first_verified()
    rejections = observed.rejections()
    assert [] == [
        (d.subscription_id, d.error)
        for d in rejections
        if d.error != "mismatch" and d.started >= first.get(d.subscription_id or "", 0.0)
    ]
    gap, failures = [], []
    for delivery in rejections:
        assert delivery.subscription_id in versions, delivery
        version = signed_by(delivery, versions[delivery.subscription_id])
        if version is not None and version.created > delivery.started:
            gap.append((delivery, version))
        else:
            failures.append((delivery, None if version is None else version.number))
    assert [] == failures, (
        "rejected although Vault held the secret (or no version verifies); read=None means "
        "the consumer read no Vault (its re-read token bucket was empty)"
    )

    exposures = [float(e["exposure_ms"]) for e in events if e["event"] == "rotation.succeeded"]
    summary = (
        f"\n[{vault.__class__.__name__}, {'hooks' if hooks else 'reread-only'}] rotations "
        f"{sorted(regenerations.values())}; deliveries "
        f"{snapshot.totals.delivered} delivered, {snapshot.totals.retried} retried, "
        f"{len(rejections)} rejected, of which gap rejections {len(gap)} "
        f"(versions created {[round((v.created - d.started) * 1000, 1) for d, v in gap]} ms "
        f"after the consumer took the delivery); regenerate-to-commit ms p50 "
        f"{statistics.median(exposures):.1f} max {max(exposures):.1f}"
    )
    if not hooks:
        assert ([], []) == (
            observed.notices,
            [e["event"] for e in events if e["event"].startswith("hook.")],
        )
        assert all(regenerations[sid] >= ROTATIONS for sid in ids)
        print(f"{summary}; {time.monotonic() - began:.1f}s")
        return

    # -- hook notices: one per commit, never a secret, delivered within 1 s (p99) -----
    bodies = [body.decode() for status, body in observed.notices if status == 200]
    notices = [json.loads(body) for body in bodies]
    assert len(observed.notices) == len(bodies)  # every notice verified with the hook key
    assert commits == sorted((n["subscription_id"], n["vault_version"]) for n in notices)
    issued_here = {v.secret for found in versions.values() for v in found}
    assert 0 == sum(1 for body in bodies for value in issued_here if value in body)
    assert 0 == len(leaked(set(ISSUED), bodies))
    latencies = [float(e["latency_ms"]) for e in events if e["event"] == "hook.delivered"]
    assert (len(commits), []) == (
        len(latencies),
        [e["event"] for e in events if e["event"] == "hook.failed"],
    )
    assert len(latencies) >= SUBSCRIPTIONS * ROTATIONS
    assert p99(latencies) < HOOK_P99_LIMIT_MS, latencies

    print(
        f"{summary}; hook latency ms p50 {statistics.median(latencies):.1f} "
        f"p99 {p99(latencies):.1f} (n={len(latencies)}); {time.monotonic() - began:.1f}s"
    )
