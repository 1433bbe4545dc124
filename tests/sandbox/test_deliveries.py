"""Signed webhook deliveries from the Monite emulator, to each subscription's own URL, on loopback.

Every delivery is checked with `rotator.signature.verify` under the secret the
emulator holds for its subscription; retries wait through an injected `wait`,
so nothing here sleeps for a backoff. Started senders mostly run on an injected
`monotonic` clock that only the test moves; the tests poll the counters,
bounded, for what the sender's thread did.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from rotator.retry import exponential
from rotator.sandbox import ISSUED
from rotator.sandbox.deliveries import (
    MAX_BACKOFF,
    DeliverySender,
    DeliverySnapshot,
    DeliveryStats,
    SubscriptionDeliveries,
    _events,
    backoff_delay,
)
from rotator.sandbox.monite import MoniteEmulator
from rotator.secret import Secret
from rotator.signature import SignatureError, verify
from tests.conftest import leaked, remember_output
from tests.receiver import Delivery, Receiver, subscription_action
from tests.sandbox import SSL_CONTEXT

T = 1_700_000_000  # the senders' fixed clock, so signatures are checked at a known time
BODY_FIELDS = ("id", "webhook_subscription_id", "object_type", "action", "object")


class Waits:
    """The injected backoff wait: records each pause and returns at once (never stops)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    def __call__(self, seconds: float) -> bool:
        self.pauses.append(seconds)
        return False


class Monotonic:
    """The injected monotonic clock of a started sender: it moves only when the test says."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _until(sender: DeliverySender, done: Callable[[DeliverySnapshot], bool]) -> DeliverySnapshot:
    """The first snapshot `done` holds for, polling about 10 s at most; else the last one."""
    snapshot = sender.snapshot()
    for _ in range(1000):
        if done(snapshot):
            break
        time.sleep(0.01)
        snapshot = sender.snapshot()
    return snapshot


def _counts(snapshot: DeliverySnapshot, sub: str) -> tuple[int, int, int, int]:
    """A subscription's (sent, delivered, retried, failed); zeros before its first POST."""
    c = snapshot.subscriptions.get(sub, SubscriptionDeliveries())
    return (c.sent, c.delivered, c.retried, c.failed)


def _reached(good: str, bad: str, rounds: int) -> Callable[[DeliverySnapshot], bool]:
    """Whether `good` accepted and `bad` was sent an event from each of `rounds` rounds."""
    return lambda s: (rounds, rounds) == (_counts(s, good)[1], _counts(s, bad)[0])


@pytest.fixture
def monite() -> Iterator[MoniteEmulator]:
    emulator = MoniteEmulator()
    emulator.add_client()
    with emulator:
        yield emulator


def _sender(monite: MoniteEmulator, waits: Waits | None = None, **kwargs: Any) -> DeliverySender:
    return DeliverySender(
        monite, clock=lambda: float(T), wait=waits or Waits(), timeout=5.0, **kwargs
    )


def _verifies(delivery: Delivery, secret: str) -> bool:
    try:
        verify(delivery.signature, delivery.body, secret, now=T)
    except SignatureError:
        return False
    return True


def _regenerate(monite: MoniteEmulator, subscription_id: str) -> None:
    """Regenerate the secret the way the rotator does: over Monite's API."""
    subscription_action(monite, subscription_id, "regenerate_secret")


def _fingerprint(secret: str) -> str:
    return Secret(secret).fingerprint()


def test_each_enabled_subscription_is_delivered_to_its_own_url_and_verifies(
    monite: MoniteEmulator,
) -> None:
    """Two URLs each get their own subscription's event, signed with its current secret."""
    with Receiver() as first, Receiver() as second:
        a = monite.seed(url=first.url("/a"), object_type="payable")
        b = monite.seed(url=second.url("/b"), object_type="receivable")
        with _sender(monite) as sender:
            result = sender.deliver_now()
        got_a, got_b = first.drain(), second.drain()
    assert (2, 0, 0, 0) == (result.delivered, result.failed, result.retried, result.abandoned)
    assert [(a, "/a")] == [(d.event["webhook_subscription_id"], d.path) for d in got_a]
    assert [(b, "/b")] == [(d.event["webhook_subscription_id"], d.path) for d in got_b]
    for delivery, sub in ((got_a[0], a), (got_b[0], b)):
        assert T == verify(delivery.signature, delivery.body, monite.current_secret(sub), now=T)
        assert "application/json" == delivery.headers["content-type"]
    other = monite.current_secret(b)
    assert False is _verifies(got_a[0], other)  # each is keyed with its own subscription's


def test_the_body_carries_id_subscription_object_type_action_and_object(
    monite: MoniteEmulator,
) -> None:
    """The event names its subscription and kind, and carries an object with an id."""
    with Receiver() as receiver:
        sub = monite.seed(url=receiver.url(), object_type="payable", event_types=("created",))
        with _sender(monite) as sender:
            sender.deliver_now()
        (delivery,) = receiver.drain()
    event = delivery.event
    assert [] == [name for name in BODY_FIELDS if name not in event]
    assert (sub, "payable", "payable.created") == (
        event["webhook_subscription_id"],
        event["object_type"],
        event["action"],
    )
    assert isinstance(event["object"], dict)
    assert isinstance(event["object"].get("id"), str)


def test_after_regenerate_the_next_delivery_verifies_with_the_new_secret_only(
    monite: MoniteEmulator,
) -> None:
    """Once Monite regenerated the secret, deliveries verify with the new one and not the old."""
    with Receiver() as receiver:
        sub = monite.seed(url=receiver.url())
        old = monite.current_secret(sub)
        with _sender(monite) as sender:
            sender.deliver_now()
            _regenerate(monite, sub)
            new = monite.current_secret(sub)
            sender.deliver_now()
            snapshot = sender.snapshot()
        before, after = receiver.drain()
    assert old != new
    assert (True, False) == (_verifies(before, old), _verifies(before, new))
    assert (False, True) == (_verifies(after, old), _verifies(after, new))
    assert [_fingerprint(old), _fingerprint(new)] == [r.fingerprint for r in snapshot.records]
    assert _fingerprint(new) == snapshot.subscriptions[sub].fingerprint


def test_a_500_then_a_200_is_retried_once_after_the_backoff_and_counted(
    monite: MoniteEmulator,
) -> None:
    """The retry carries the same event id and waits `backoff`; counters show one retry."""
    waits = Waits()
    with Receiver(statuses=(500,)) as receiver:
        sub = monite.seed(url=receiver.url())
        with _sender(monite, waits, retries=3, backoff=0.5) as sender:
            result = sender.deliver_now()
            snapshot = sender.snapshot()
        arrived = receiver.drain()
    assert (1, 0, 1) == (result.delivered, result.failed, result.retried)
    assert [0.5] == waits.pauses
    assert 1 == len({d.event["id"] for d in arrived})
    assert 2 == len(arrived)
    assert (
        SubscriptionDeliveries(
            sent=1,
            delivered=1,
            retried=1,
            failed=0,
            fingerprint=_fingerprint(monite.current_secret(sub)),
        )
        == snapshot.subscriptions[sub]
    )
    assert DeliveryStats(rounds=1, sent=1, attempts=2, delivered=1, retried=1, failed=0) == (
        snapshot.totals
    )
    assert [("delivered", 2, None)] == [(r.outcome, r.attempts, r.error) for r in result.records]


def test_a_receiver_that_always_fails_is_given_up_after_the_retries_and_counted(
    monite: MoniteEmulator,
) -> None:
    """Four attempts with doubling pauses, then one failed event, counted for its subscription."""
    waits = Waits()
    reports: list[str] = []
    with Receiver(then=500) as down, Receiver() as up:
        bad = monite.seed(url=down.url())
        good = monite.seed(url=up.url())
        with _sender(monite, waits, retries=3, backoff=0.5, report=reports.append) as sender:
            result = sender.deliver_now()
            snapshot = sender.snapshot()
        attempts_down, attempts_up = len(down.drain()), len(up.drain())
    assert (1, 1, 3, "HTTP 500") == (
        result.delivered,
        result.failed,
        result.retried,
        result.last_error,
    )
    assert [0.5, 1.0, 2.0] == waits.pauses
    assert (4, 1) == (attempts_down, attempts_up)
    assert (1, 0, 3, 1) == _counts(snapshot, bad)
    assert (1, 1, 0, 0) == _counts(snapshot, good)
    failed = [r for r in snapshot.records if r.outcome == "failed"]
    assert [(bad, 4, "HTTP 500", _fingerprint(monite.current_secret(bad)))] == [
        (r.subscription_id, r.attempts, r.error, r.fingerprint) for r in failed
    ]
    remember_output(*reports)


def test_an_unreachable_url_fails_without_naming_it(monite: MoniteEmulator) -> None:
    """A refused connection is retried, then failed as `connection failed`, no URL in the cause."""
    with Receiver() as receiver:
        url = receiver.url()
    sub = monite.seed(url=url.replace("http://", "http://user:pw@"))  # nothing listens now
    with _sender(monite, retries=1, backoff=0.0) as sender:
        result = sender.deliver_now()
    assert (0, 1, "connection failed") == (result.delivered, result.failed, result.last_error)
    assert 1 == sender.snapshot().subscriptions[sub].failed


def test_disabled_subscriptions_receive_nothing(monite: MoniteEmulator) -> None:
    """A subscription disabled at seeding, or since the last round, gets no event and no count."""
    with Receiver() as receiver:
        off = monite.seed(url=receiver.url("/off"), status="disabled")
        later = monite.seed(url=receiver.url("/later"))
        with _sender(monite) as sender:
            first = sender.deliver_now()
            monite.seed(url=receiver.url("/on"))
            subscription_action(monite, later, "disable")
            second = sender.deliver_now()
            snapshot = sender.snapshot()
        paths = [d.path for d in receiver.drain()]
    assert ["/later", "/on"] == paths
    assert (1, 1) == (first.delivered, second.delivered)
    assert off not in snapshot.subscriptions
    assert 1 == snapshot.subscriptions[later].delivered


def test_the_admin_route_triggers_a_round_and_reads_the_counters(monite: MoniteEmulator) -> None:
    """POST /_sandbox/deliveries sends a round now; GET answers the per-subscription counters."""
    origin = monite.origin
    with (
        httpx.Client(base_url=origin, trust_env=False, verify=SSL_CONTEXT) as http,
        Receiver() as receiver,
    ):
        a = monite.seed(url=receiver.url("/a"))
        b = monite.seed(url=receiver.url("/b"))
        assert 404 == http.post("/_sandbox/deliveries").status_code  # no sender attached yet
        with _sender(monite) as sender:
            posted = http.post("/_sandbox/deliveries")
            counters = http.get("/_sandbox/deliveries")
            assert 405 == http.delete("/_sandbox/deliveries").status_code
        after = http.post("/_sandbox/deliveries").status_code
        paths = sorted(d.path for d in receiver.drain())
    assert (200, 200, 404) == (posted.status_code, counters.status_code, after)
    assert (2, 0) == (posted.json()["delivered"], posted.json()["failed"])
    assert ["/a", "/b"] == paths
    per_subscription = counters.json()["subscriptions"]
    assert {a, b} == set(per_subscription)
    assert {"sent": 1, "delivered": 1, "retried": 0, "failed": 0} == {
        k: v for k, v in per_subscription[a].items() if k != "fingerprint"
    }
    assert _fingerprint(monite.current_secret(a)) == per_subscription[a]["fingerprint"]
    assert 1 == counters.json()["totals"]["rounds"]
    remember_output(posted.text, counters.text)
    assert 1 == sender.stats.rounds


@pytest.mark.timeout(20)
def test_started_it_delivers_a_round_at_once_and_then_every_period(
    monite: MoniteEmulator,
) -> None:
    """start() sends a round now and more on its period, until stop()."""
    with Receiver() as receiver:
        monite.seed(url=receiver.url())
        sender = DeliverySender(monite, every=0.05)
        sender.start()
        try:
            arrivals = [receiver.received.get(timeout=5) for _ in range(3)]
        finally:
            sender.stop()
    assert 3 == len({d.event["id"] for d in arrivals})
    assert 3 <= sender.stats.rounds


def test_a_stopped_sender_refuses_a_round(monite: MoniteEmulator) -> None:
    """deliver_now() after stop() raises instead of sending with a closed client."""
    sender = _sender(monite)
    sender.stop()
    with pytest.raises(RuntimeError):
        sender.deliver_now()


def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    """Pauses before retries 1, 2, 3, ...: backoff, twice it, four times, never above the cap."""
    assert [0.5, 1.0, 2.0, 4.0, MAX_BACKOFF, MAX_BACKOFF] == [
        backoff_delay(n, 0.5) for n in range(1, 7)
    ]


def test_the_backoff_is_the_retry_modules_growth_without_jitter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """backoff_delay(n) is rotator.retry.exponential(n - 1) under the emulator's cap: one growth."""
    calls: list[tuple[int, float, float]] = []

    def spy(retry: int, *, base: float, cap: float) -> float:
        calls.append((retry, base, cap))
        return exponential(retry, base=base, cap=cap)

    monkeypatch.setattr(_events, "exponential", spy)
    delays = [backoff_delay(n, 0.5) for n in (1, 2, 7)]
    assert [(0, 0.5, MAX_BACKOFF), (1, 0.5, MAX_BACKOFF), (6, 0.5, MAX_BACKOFF)] == calls
    assert [0.5, 1.0, MAX_BACKOFF] == delays


def test_no_secret_appears_in_results_snapshots_reports_or_targets(
    monite: MoniteEmulator,
) -> None:
    """What the sender returns, reports and serves carries fingerprints, never a secret."""
    reports: list[str] = []
    with Receiver(then=500) as receiver:
        sub = monite.seed(url=receiver.url())
        monite.seed(url=receiver.url())
        sender = DeliverySender(monite, every=3600, retries=1, backoff=0.0, report=reports.append)
        sender.start()
        try:
            for _ in range(200):  # the first round reports once it gave up; bounded
                if reports:
                    break
                time.sleep(0.01)
            result = sender.deliver_now()
            snapshot = sender.snapshot()
        finally:
            sender.stop()
    texts = [
        *reports,
        repr(result),
        json.dumps(result.to_json()),
        repr(snapshot),
        json.dumps(snapshot.to_json()),
        repr(monite.delivery_target(sub)),
    ]
    remember_output(*texts)
    assert 1 == len(reports)
    assert [] == leaked(set(ISSUED), texts)


@pytest.mark.timeout(30)
def test_started_a_rejecting_subscription_holds_back_no_other_while_its_retries_wait(
    monite: MoniteEmulator,
) -> None:
    """Each round reaches the healthy URL while the failing one's retries are still scheduled."""
    clock = Monotonic()
    with Receiver(then=500) as down, Receiver() as up:
        bad = monite.seed(url=down.url())
        good = monite.seed(url=up.url())
        sender = _sender(monite, every=0.05, retries=1, backoff=1.0, monotonic=clock)
        sender.start()
        try:
            progress = []
            for n in range(1, 7):  # six rounds, all before the first retry is due
                if n > 1:
                    clock.advance(0.05)
                snapshot = _until(sender, _reached(good, bad, n))
                progress.append((snapshot.totals.rounds, _counts(snapshot, good)))
                waiting = _counts(snapshot, bad)
            clock.advance(1.0)  # every retry due, and one more round
            after = _until(sender, lambda s: (6, 7) == (_counts(s, bad)[3], _counts(s, good)[1]))
        finally:
            sender.stop()
        to_down, to_up = down.drain(), up.drain()
    assert [(n, (n, n, 0, 0)) for n in range(1, 7)] == progress
    assert (6, 0, 0, 0) == waiting
    assert (7, 0, 6, 6) == _counts(after, bad)
    assert (7, 7, 0, 0) == _counts(after, good)
    failed = [r for r in after.records if r.outcome == "failed"]
    assert [(bad, 2, "HTTP 500")] * 6 == [(r.subscription_id, r.attempts, r.error) for r in failed]
    per_event = [sum(d.event["id"] == r.event_id for d in to_down) for r in failed]
    assert [2] * 6 == per_event
    assert 7 == len({d.event["id"] for d in to_up})
    assert 1 == sender.stats.abandoned  # the seventh round's event, its retry still scheduled
    assert 6 == sender.stats.failed


@pytest.mark.timeout(30)
def test_started_on_the_real_clock_failures_overlap_rounds_and_fail_after_every_attempt(
    monite: MoniteEmulator,
) -> None:
    """Several failing events wait for retries at once; each fails after 1 + retries attempts."""
    reports: list[str] = []
    with Receiver(then=500) as down, Receiver() as up:
        bad = monite.seed(url=down.url())
        good = monite.seed(url=up.url())
        sender = DeliverySender(monite, every=0.05, retries=2, backoff=0.05, report=reports.append)
        sender.start()
        try:
            most_pending = 0
            for _ in range(1000):  # bounded: about 10 s
                snapshot = sender.snapshot()
                sent, _, _, failed = _counts(snapshot, bad)
                most_pending = max(most_pending, sent - failed)
                if failed >= 3 and most_pending >= 2:
                    break
                time.sleep(0.01)
        finally:
            sender.stop()
        to_down = down.drain()
    assert True is (most_pending >= 2)  # one round at a time would leave at most one pending
    rounds, (sent, delivered, retried, failed_up) = snapshot.totals.rounds, _counts(snapshot, good)
    assert (0, 0) == (retried, failed_up)
    assert True is (delivered >= rounds - 1)  # the round under way may not have reached it yet
    failed_records = [r for r in snapshot.records if r.outcome == "failed"]
    assert True is (len(failed_records) >= 3)
    assert {(bad, 3, "HTTP 500")} == {
        (r.subscription_id, r.attempts, r.error) for r in failed_records
    }
    assert [3] * len(failed_records) == [
        sum(d.event["id"] == r.event_id for d in to_down) for r in failed_records
    ]
    assert True is bool(reports)
    remember_output(*reports)


@pytest.mark.timeout(20)
def test_started_a_retry_is_signed_with_the_secret_current_when_it_is_due(
    monite: MoniteEmulator,
) -> None:
    """Regenerated between the first attempt and its retry: the retry verifies with the new one."""
    clock = Monotonic()
    with Receiver(statuses=(500,)) as receiver:
        sub = monite.seed(url=receiver.url())
        old = monite.current_secret(sub)
        sender = _sender(monite, every=3600, retries=1, backoff=0.1, monotonic=clock)
        sender.start()
        try:
            first = receiver.received.get(timeout=5)
            _regenerate(monite, sub)
            new = monite.current_secret(sub)
            clock.advance(0.1)
            retry = receiver.received.get(timeout=5)
            snapshot = _until(sender, lambda s: 1 == _counts(s, sub)[1])
        finally:
            sender.stop()
    assert old != new
    assert first.event["id"] == retry.event["id"]
    assert (True, False) == (_verifies(first, old), _verifies(first, new))
    assert (False, True) == (_verifies(retry, old), _verifies(retry, new))
    assert (1, 1, 1, 0) == _counts(snapshot, sub)
    assert [("delivered", 2, _fingerprint(new))] == [
        (r.outcome, r.attempts, r.fingerprint) for r in snapshot.records
    ]


@pytest.mark.timeout(20)
def test_started_stop_abandons_the_scheduled_retries_without_failing_them(
    monite: MoniteEmulator,
) -> None:
    """stop() while a retry waits: the event counts abandoned, not failed, and is not re-sent."""
    clock = Monotonic()
    with Receiver(then=500) as receiver:
        sub = monite.seed(url=receiver.url())
        sender = _sender(monite, every=3600, retries=3, backoff=1.0, monotonic=clock)
        sender.start()
        try:
            _until(sender, lambda s: 1 == _counts(s, sub)[0])
        finally:
            sender.stop()
        arrived = receiver.drain()
    assert 1 == len(arrived)
    assert (1, 0, 0, 0) == _counts(sender.snapshot(), sub)
    assert DeliveryStats(rounds=1, sent=1, attempts=1, abandoned=1) == sender.stats
    assert () == sender.snapshot().records


@pytest.mark.timeout(20)
def test_started_beyond_the_retry_queue_bound_an_event_fails_at_once(
    monite: MoniteEmulator,
) -> None:
    """With room for one scheduled retry, the second failing event fails as `retry queue full`."""
    clock = Monotonic()
    with Receiver(then=500) as receiver:
        first = monite.seed(url=receiver.url("/first"))
        second = monite.seed(url=receiver.url("/second"))
        sender = _sender(
            monite, every=3600, retries=3, backoff=1.0, monotonic=clock, max_pending_retries=1
        )
        sender.start()
        try:
            snapshot = _until(sender, lambda s: 1 == s.totals.failed)
        finally:
            sender.stop()
    assert ((1, 0, 0, 0), (1, 0, 0, 1)) == (_counts(snapshot, first), _counts(snapshot, second))
    assert [(second, 1, "retry queue full")] == [
        (r.subscription_id, r.attempts, r.error) for r in snapshot.records
    ]
    assert (1, 1) == (sender.stats.failed, sender.stats.abandoned)


def test_one_event_fans_out_to_every_subscription_of_a_triple_each_signed_with_its_own_secret(
    monite: MoniteEmulator,
) -> None:
    """O and S (one triple) get the same id and object, each naming itself, keyed with its own."""
    with Receiver() as receiver:
        original = monite.seed(url=receiver.url(), event_types=("created", "updated"))
        successor = monite.seed(url=receiver.url(), event_types=("updated", "created"))
        other = monite.seed(url=receiver.url(), object_type="receivable")
        with _sender(monite) as sender:
            result = sender.deliver_now()
            snapshot = sender.snapshot()
        by_sub = {d.event["webhook_subscription_id"]: d for d in receiver.drain()}
    o, s, c = by_sub[original], by_sub[successor], by_sub[other]
    assert [original, successor, other] == list(by_sub)  # creation order, as before
    assert (o.event["id"], o.event["object"], o.event["action"]) == (
        s.event["id"],
        s.event["object"],
        s.event["action"],
    )
    assert (True, True) == (o.event["id"] != c.event["id"], o.event["object"] != c.event["object"])
    secrets = {sub: monite.current_secret(sub) for sub in (original, successor)}
    assert (True, False) == (_verifies(o, secrets[original]), _verifies(o, secrets[successor]))
    assert (True, False) == (_verifies(s, secrets[successor]), _verifies(s, secrets[original]))
    assert (3, 1, 1) == (result.delivered, result.fanned_out, snapshot.totals.fanned_out)
    assert [(1, 1, 0, 0)] * 3 == [_counts(snapshot, sub) for sub in (original, successor, other)]
    assert 1 == result.to_json()["fanned_out"]


def test_a_disabled_twin_gets_nothing_and_the_event_is_not_fanned_out(
    monite: MoniteEmulator,
) -> None:
    """Only enabled subscriptions share the event: a disabled one of the triple makes no fan-out."""
    with Receiver() as receiver:
        on = monite.seed(url=receiver.url())
        monite.seed(url=receiver.url(), status="disabled")
        with _sender(monite) as sender:
            result = sender.deliver_now()
        arrived = [d.event["webhook_subscription_id"] for d in receiver.drain()]
    assert ([on], 0, 0) == (arrived, result.fanned_out, sender.stats.fanned_out)


def test_each_rounds_fan_out_has_a_new_event_and_is_counted_in_the_totals(
    monite: MoniteEmulator,
) -> None:
    """Two rounds over one triple of two: two ids, each sent to both; fanned_out totals 2."""
    with Receiver() as receiver:
        first = monite.seed(url=receiver.url())
        second = monite.seed(url=receiver.url())
        with _sender(monite) as sender:
            rounds = [sender.deliver_now().fanned_out for _ in range(2)]
            totals = sender.stats
        arrived = receiver.drain()
    ids = [d.event["id"] for d in arrived]
    assert ([1, 1], 2, 2) == (rounds, totals.fanned_out, len(set(ids)))
    assert [first, second] * 2 == [d.event["webhook_subscription_id"] for d in arrived]
    assert [ids[0], ids[0], ids[2], ids[2]] == ids


def test_a_fanned_out_delivery_that_fails_is_retried_alone_with_the_same_id(
    monite: MoniteEmulator,
) -> None:
    """O's 500 is retried for O only, same event id, re-signed with O's secret; S got it once."""
    waits = Waits()
    with Receiver(statuses=(500,)) as receiver:
        original = monite.seed(url=receiver.url())
        successor = monite.seed(url=receiver.url())
        with _sender(monite, waits, retries=2, backoff=0.5) as sender:
            result = sender.deliver_now()
            snapshot = sender.snapshot()
        arrived = receiver.drain()
    assert [(original, 500), (successor, 200), (original, 200)] == [
        (d.event["webhook_subscription_id"], d.status) for d in arrived
    ]
    assert 1 == len({d.event["id"] for d in arrived})
    assert True is _verifies(arrived[2], monite.current_secret(original))
    assert (2, 1, 1) == (result.delivered, result.retried, result.fanned_out)
    assert [(1, 1, 1, 0), (1, 1, 0, 0)] == [_counts(snapshot, s) for s in (original, successor)]
