"""Bench scenario g's arithmetic: which answer counts as a consumer's reload, what is counted.

The benchmark itself (`python -m tests.perf --only g`) is not run here; these
check, on made-up answers, the definitions it prints: a reload is the first
delivery verified with the committed version (not an old-secret delivery
verified after the commit), and a rotation never verified on its own version
is counted apart, never as a sample.
"""

from __future__ import annotations

import types

from rotator.sandbox.deliveries import DeliverySnapshot, DeliveryStats, SubscriptionDeliveries
from rotator.sandbox.hook_latencies import HookLatencies
from tests.perf.consumers import KINDS, Commit, Continuity, Probe, analyse, spread

HOOK = KINDS[0]


def _result(answers: list[tuple[float, str, int, int]], commits: list[Commit]) -> Continuity:
    probe = Probe()
    probe.answers.extend(answers)
    per_subscription = {"s1": SubscriptionDeliveries(sent=9, delivered=8, retried=2, failed=1)}
    return Continuity(
        kinds=[HOOK],
        subscriptions={HOOK.key: ["s1", "s2"]},
        probes={HOOK.key: [probe]},
        commits=commits,
        not_committed=0,
        deliveries=DeliverySnapshot(DeliveryStats(), types.MappingProxyType(per_subscription), ()),
        hooks=HookLatencies(),
        seconds=1.0,
    )


def test_reload_is_the_first_delivery_verified_with_the_committed_version() -> None:
    answers = [
        (100.0, "s1", 200, 3),  # before the commit
        (100.3, "s1", 200, 3),  # after it, but still the old record: not a reload
        (100.4, "s1", 401, 3),  # the new secret, refused
        (100.7, "s1", 200, 5),  # the reload
        (100.9, "s1", 200, 5),
        (200.5, "s2", 200, 7),  # s2's first rotation; its second (version 9) never verified
    ]
    commits = [Commit("s1", 5, 100.2), Commit("s2", 7, 200.0), Commit("s2", 9, 201.0)]
    found = analyse(_result(answers, commits), HOOK)
    assert 3 == found.rotations
    assert [0.5, 0.5] == [round(v, 6) for v in sorted(found.latencies)]
    assert 1 == found.not_reloaded
    assert 1 == found.rejected
    assert 5 == found.verified
    assert (1, 2) == (found.gave_up, found.retried)


def test_a_later_version_verified_first_means_this_one_was_not_reloaded() -> None:
    answers = [(300.5, "s1", 200, 9)]
    commits = [Commit("s1", 7, 300.0), Commit("s1", 9, 300.2)]
    found = analyse(_result(answers, commits), HOOK)
    assert 1 == found.not_reloaded
    assert [0.3] == [round(v, 6) for v in found.latencies]


def test_spread_is_the_range_over_the_median() -> None:
    assert 0.02 == round(spread([99.0, 100.0, 101.0]), 6)
