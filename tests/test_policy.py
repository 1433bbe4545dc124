"""The pure decision core: every reason code, the order of checks and of results."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rotator.model import CLOCK_MARGIN, Record, Subscription
from rotator.policy import (
    FUTURE_TOLERANCE,
    Decision,
    Force,
    Policy,
    Rule,
    decide,
    lost_rules,
    next_claim_expiry,
    orphans,
)
from rotator.reasons import DECISIONS, EXPLANATIONS, Reason
from rotator.secret import Secret

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
POLICY = Policy(max_age=30 * DAY)
CLAIM_TTL = timedelta(minutes=10)


def sub(
    id: str = "s1",
    *,
    url: str = "https://hooks.example.com/monite",
    object_type: str = "payable",
    status: str = "enabled",
) -> Subscription:
    return Subscription(id=id, url=url, object_type=object_type, status=status)


def rec(
    id: str = "s1",
    *,
    age: timedelta | None = DAY,
    version: int = 3,
    secret: str | None = "whsec_policy_test_value",
    state: str = "active",
    claim_in: timedelta | None = None,
) -> Record:
    # A claim of CLAIM_TTL whose Vault created_time puts its end `claim_in` from NOW.
    return Record(
        subscription_id=id,
        version=version,
        secret=Secret(secret) if secret is not None else None,
        rotated_at=NOW - age if age is not None else None,
        state=state,  # type: ignore[arg-type]
        claim_ttl_seconds=CLAIM_TTL.total_seconds() if claim_in is not None else None,
        created_time=NOW + claim_in - CLAIM_TTL if claim_in is not None else None,
    )


def intent(record: Record, *known: str) -> Record:
    """`record` as a swap's intent: sub()'s triple, with `known` listed before the create."""
    base = sub(record.subscription_id)
    return replace(
        record,
        url=base.url,
        object_type=base.object_type,
        event_types=base.event_types,
        swap_known_ids=(record.subscription_id, *known),
    )


def one(
    subscription: Subscription,
    record: Record | None = None,
    policy: Policy = POLICY,
    force: Force | None = None,
) -> Decision:
    records = {record.subscription_id: record} if record is not None else {}
    (decision,) = decide([subscription], records, policy, NOW, force)
    return decision


def outcome(decision: Decision) -> tuple[str, str]:
    return (decision.action, decision.reason)


# --- each reason -------------------------------------------------------------


def test_live_claim_is_skipped_as_claimed() -> None:
    """A record under a live claim is left alone."""
    assert ("skip", "claimed") == outcome(one(sub(), rec(state="rotating", claim_in=DAY)))


def test_live_claim_wins_over_force() -> None:
    """Forcing never regenerates under someone else's live claim."""
    record = rec(state="rotating", claim_in=timedelta(seconds=1))
    force = Force(ids=frozenset({"s1"}), all=True)
    assert ("skip", "claimed") == outcome(one(sub(), record, force=force))


def test_expired_claim_is_recovered_whatever_the_policy() -> None:
    """An expired claim is due at once even when disabled, rule-skipped or fresh."""
    record = rec(age=timedelta(0), state="rotating", claim_in=-timedelta(seconds=1))
    policy = Policy(max_age=30 * DAY, rules=(Rule(object_type="payable", skip=True),))
    decision = one(sub(status="disabled"), record, policy)
    assert ("rotate", "claim_expired") == outcome(decision)
    assert decision.recovery


def test_claim_is_live_for_the_clock_margin_after_its_end() -> None:
    """A claim still fences for CLOCK_MARGIN past its end (Date headers are whole seconds)."""
    assert ("skip", "claimed") == outcome(one(sub(), rec(state="rotating", claim_in=timedelta(0))))
    assert ("rotate", "claim_expired") == outcome(
        one(sub(), rec(state="rotating", claim_in=-CLOCK_MARGIN))
    )


def test_forced_id_overrides_disabled_rules_and_unmanaged_skip() -> None:
    """An explicitly forced id rotates even when disabled, rule-skipped and unmanaged."""
    policy = Policy(
        max_age=30 * DAY, unmanaged="skip", rules=(Rule(subscription_id="s1", skip=True),)
    )
    decision = one(sub(status="disabled"), None, policy, Force(ids=frozenset({"s1"})))
    assert ("rotate", "forced") == outcome(decision)
    assert not decision.recovery


def test_disabled_subscription_is_skipped() -> None:
    """Disabled subscriptions are skipped unless the policy includes them."""
    assert ("skip", "disabled") == outcome(one(sub(status="disabled"), rec(age=99 * DAY)))


def test_disabled_subscription_is_rotated_when_included() -> None:
    """include_disabled lets the normal age rule apply to disabled subscriptions."""
    policy = Policy(max_age=30 * DAY, include_disabled=True)
    assert ("rotate", "max_age_exceeded") == outcome(
        one(sub(status="disabled"), rec(age=99 * DAY), policy)
    )


def test_unknown_status_is_reported_as_such_and_skipped() -> None:
    """A status neither enabled nor disabled skips as unknown_status, include_disabled or not."""
    include = Policy(max_age=30 * DAY, include_disabled=True)
    decisions = [
        outcome(one(sub(status=status), rec(age=99 * DAY), policy))
        for status in ("paused", "")
        for policy in (POLICY, include)
    ]
    assert [("skip", "unknown_status")] * 4 == decisions


def test_rule_skip_is_skipped() -> None:
    """A matching skip rule leaves an old secret alone."""
    policy = Policy(max_age=30 * DAY, rules=(Rule(url="https://hooks.example.com/*", skip=True),))
    assert ("skip", "rule_skip") == outcome(one(sub(), rec(age=99 * DAY), policy))


def test_force_all_rotates_fresh_secrets() -> None:
    """force.all ignores age."""
    assert ("rotate", "forced") == outcome(one(sub(), rec(age=timedelta(0)), force=Force(all=True)))


def test_force_all_respects_disabled_and_rule_skip() -> None:
    """force.all stays within scope: disabled and rule-skipped subscriptions stay skipped."""
    policy = Policy(max_age=30 * DAY, rules=(Rule(object_type="receivable", skip=True),))
    force = Force(all=True)
    assert ("skip", "disabled") == outcome(one(sub(status="disabled"), rec(), policy, force))
    assert ("skip", "rule_skip") == outcome(
        one(sub(object_type="receivable"), rec(), policy, force)
    )


def test_no_record_is_rotated_as_unmanaged() -> None:
    """A subscription without a record is brought under management by default."""
    decision = one(sub())
    assert ("rotate", "unmanaged") == outcome(decision)
    assert 0 == decision.record.version
    assert "s1" == decision.record.subscription_id
    assert decision.age is None


def test_record_without_secret_is_unmanaged() -> None:
    """A record that exists but holds no secret counts as unmanaged."""
    assert ("rotate", "unmanaged") == outcome(one(sub(), rec(secret=None)))


def test_unmanaged_is_skipped_when_policy_says_skip() -> None:
    """unmanaged='skip' reports instead of rotating."""
    policy = Policy(max_age=30 * DAY, unmanaged="skip")
    assert ("skip", "unmanaged_skip") == outcome(one(sub(), None, policy))


def test_record_with_secret_but_no_rotation_time_is_due() -> None:
    """A hand-edited record with no rotated_at has an unknown age and is rotated."""
    assert ("rotate", "age_unknown") == outcome(one(sub(), rec(age=None)))


def test_old_secret_is_rotated_and_fresh_one_skipped() -> None:
    """Age at or past max_age rotates; younger is fresh."""
    assert ("rotate", "max_age_exceeded") == outcome(one(sub(), rec(age=30 * DAY)))
    assert ("skip", "fresh") == outcome(one(sub(), rec(age=30 * DAY - timedelta(seconds=1))))


def test_age_rule_grid() -> None:
    """Over a grid of ages and limits, rotate exactly when age >= max_age."""
    ages = [timedelta(seconds=s) for s in (0, 1, 59, 3600, 86399, 86400, 86401, 10**7)]
    limits = [timedelta(seconds=s) for s in (1, 60, 3600, 86400, 10**6)]
    for age, limit in itertools.product(ages, limits):
        decision = one(sub(), rec(age=age), Policy(max_age=limit))
        expected = ("rotate", "max_age_exceeded") if age >= limit else ("skip", "fresh")
        assert expected == outcome(decision), (age, limit)
        assert age == decision.age
        assert limit == decision.max_age


def test_a_decision_explains_itself_from_the_one_table() -> None:
    """A decision's explanation is its code's sentence in rotator.reasons.EXPLANATIONS."""
    assert EXPLANATIONS[Reason.FRESH] == one(sub(), rec()).explanation


def test_decide_produces_every_reason_in_reasons() -> None:
    """For each decision code there is an input for which decide gives exactly that code."""
    skip_rule = Policy(max_age=30 * DAY, rules=(Rule(object_type="payable", skip=True),))
    cases = {
        "claimed": one(sub(), rec(state="rotating", claim_in=DAY)),
        "claim_expired": one(sub(), rec(state="rotating", claim_in=-DAY)),
        "forced": one(sub(), rec(), force=Force(ids=frozenset({"s1"}))),
        "disabled": one(sub(status="disabled"), rec()),
        "unknown_status": one(sub(status="paused"), rec()),
        "rule_skip": one(sub(), rec(), skip_rule),
        "unmanaged": one(sub()),
        "unmanaged_skip": one(sub(), None, Policy(max_age=30 * DAY, unmanaged="skip")),
        "age_unknown": one(sub(), rec(age=None)),
        "max_age_exceeded": one(sub(), rec(age=31 * DAY)),
        "fresh": one(sub(), rec()),
        "settling": one(sub(), rec(state="settling", claim_in=DAY)),
        "settled": one(sub(), rec(state="settling", claim_in=-DAY)),
        "stale": one(sub(), rec(state="stale")),
        "rotated_in_future": one(sub(), rec(age=-DAY)),
        "swap_settling": one(sub(), rec(state="swapping", claim_in=-timedelta(seconds=2))),
        "swap_claim_expired": one(sub(), rec(state="swapping", claim_in=-DAY)),
        "overlap": one(sub(), replace(rec(state="retiring"), overlap_ends_at=NOW + DAY)),
        "overlap_ended": one(sub(), replace(rec(state="retiring"), overlap_ends_at=NOW - DAY)),
        "delete_claim_expired": one(sub(), rec(state="deleting", claim_in=-DAY)),
        "retired_still_listed": one(sub(), rec(state="retired", secret=None)),
        "predecessor_retiring": decide(
            [sub(), sub("s2")],
            {
                "s1": replace(rec(state="retiring"), overlap_ends_at=NOW + DAY, successor_id="s2"),
                "s2": replace(rec("s2", age=31 * DAY), predecessor_id="s1"),
            },
            POLICY,
            NOW,
            strategy="swap",
        )[1],
        "swap_predecessor": decide(
            [sub(), sub("s2")],
            {"s2": replace(rec("s2"), predecessor_id="s1")},
            POLICY,
            NOW,
        )[0],
        "swap_successor_pending": decide(
            [sub(), sub("s2")], {"s1": intent(rec(state="swapping", claim_in=DAY))}, POLICY, NOW
        )[1],
    }
    assert sorted(DECISIONS) == sorted(cases)
    assert {code: code for code in cases} == {code: d.reason for code, d in cases.items()}


# --- rules ---------------------------------------------------------------------


def test_rule_max_age_overrides_default() -> None:
    """A matching rule's max_age becomes the effective limit."""
    policy = Policy(max_age=30 * DAY, rules=(Rule(object_type="payable", max_age=7 * DAY),))
    decision = one(sub(), rec(age=8 * DAY), policy)
    assert ("rotate", "max_age_exceeded") == outcome(decision)
    assert 7 * DAY == decision.max_age


def test_rule_without_max_age_keeps_default() -> None:
    """A matching rule that sets no max_age falls back to the policy default."""
    policy = Policy(max_age=30 * DAY, rules=(Rule(object_type="payable"),))
    assert 30 * DAY == one(sub(), rec(), policy).max_age


def test_first_matching_rule_wins() -> None:
    """Rules are tried in order and only the first match applies."""
    policy = Policy(
        max_age=30 * DAY,
        rules=(
            Rule(object_type="receivable", skip=True),
            Rule(url="https://hooks.example.com/*", max_age=2 * DAY),
            Rule(object_type="payable", skip=True),
        ),
    )
    decision = one(sub(), rec(age=3 * DAY), policy)
    assert ("rotate", "max_age_exceeded") == outcome(decision)
    assert 2 * DAY == decision.max_age


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (Rule(), False),
        (Rule(max_age=DAY, skip=True), False),
        (Rule(object_type="payable"), True),
        (Rule(object_type="Payable"), False),
        (Rule(subscription_id="s1"), True),
        (Rule(subscription_id="s2"), False),
        (Rule(url="https://hooks.example.com/*"), True),
        (Rule(url="https://HOOKS.example.com/*"), False),
        (Rule(url="https://hooks.example.com/monite"), True),
        (Rule(url="*.example.com"), False),
        (Rule(url="https://hooks.example.com/monit?"), True),
        (Rule(object_type="payable", url="https://other/*"), False),
        (Rule(object_type="payable", subscription_id="s1", url="*"), True),
    ],
)
def test_rule_matches(rule: Rule, expected: bool) -> None:
    """Every matcher set must match; url is a case-sensitive glob; no matchers never matches."""
    assert expected == rule.matches(sub())


# --- order and identity -------------------------------------------------------------


def test_duplicate_ids_keep_the_first() -> None:
    """A subscription listed twice gets one decision, from its first listing."""
    first = sub("s1", object_type="payable")
    second = sub("s1", object_type="receivable")
    decisions = decide([first, second], {}, POLICY, NOW)
    assert [first] == [d.subscription for d in decisions]


def test_order_rotations_first_recoveries_then_oldest_then_id() -> None:
    """Recoveries, then unknown ages, then oldest first (ties by id), then skips by id."""
    subs = [sub(i) for i in ("f2", "f1", "old_b", "old_a", "older", "new", "rec", "forced")]
    records = {
        "f2": rec("f2", age=DAY),
        "f1": rec("f1", age=2 * DAY),
        "old_b": rec("old_b", age=40 * DAY),
        "old_a": rec("old_a", age=40 * DAY),
        "older": rec("older", age=50 * DAY),
        "rec": rec("rec", age=DAY, state="rotating", claim_in=-DAY),
        "forced": rec("forced", age=5 * DAY),
    }
    decisions = decide(subs, records, POLICY, NOW, Force(ids=frozenset({"forced"})))
    assert [
        ("rec", "claim_expired"),
        ("new", "unmanaged"),
        ("older", "max_age_exceeded"),
        ("old_a", "max_age_exceeded"),
        ("old_b", "max_age_exceeded"),
        ("forced", "forced"),
        ("f1", "fresh"),
        ("f2", "fresh"),
    ] == [(d.subscription.id, d.reason) for d in decisions]


def test_decide_on_nothing_is_empty() -> None:
    """No subscriptions, no decisions."""
    assert [] == decide([], {"s1": rec()}, POLICY, NOW)


def test_records_without_subscription_are_ignored_by_decide() -> None:
    """decide only decides listed subscriptions; forcing an unknown id adds nothing."""
    decisions = decide([sub("s1")], {"zz": rec("zz")}, POLICY, NOW, Force(ids=frozenset({"zz"})))
    assert ["s1"] == [d.subscription.id for d in decisions]


# --- orphans and claim expiry ---------------------------------------------------------


def test_orphans_are_record_ids_without_subscription_sorted() -> None:
    """Orphans are the record ids Monite no longer lists, sorted and unique."""
    assert ["a", "z"] == orphans([sub("s1"), sub("s2")], ["z", "s1", "a", "a"])
    assert [] == orphans([sub("s1")], [])


def test_next_claim_expiry_is_earliest_fence_end_plus_margin() -> None:
    """Rotating and settling records count, active ones do not; the earliest end wins."""
    records = [
        rec("a", state="rotating", claim_in=timedelta(minutes=9)),
        rec("b", state="settling", claim_in=timedelta(minutes=2)),
        rec("c", state="active", claim_in=timedelta(seconds=1)),
    ]
    assert NOW + timedelta(minutes=2) + 2 * CLOCK_MARGIN == next_claim_expiry(records, NOW)


def test_next_claim_expiry_none_without_claims() -> None:
    """No rotating, settling or stale record means no recovery check to schedule."""
    assert next_claim_expiry([rec("a"), rec("b", state="active")], NOW) is None
    assert next_claim_expiry([], NOW) is None


def test_next_claim_expiry_is_now_for_a_malformed_claim_or_a_stale_record() -> None:
    """A claim that cannot be measured, or a stale record, is due at once."""
    assert NOW == next_claim_expiry([rec("a", state="rotating", claim_in=None)], NOW)
    assert NOW == next_claim_expiry([rec("a", state="stale")], NOW)


# --- protocol version 2: Vault's clock, capped claims, settle after doubt --------


def test_claim_is_judged_on_created_time_not_the_claim_expires_at_a_host_wrote() -> None:
    """A claim_expires_at a year ahead (a skewed host) does not extend the claim."""
    record = replace(
        rec(state="rotating", claim_in=-timedelta(minutes=1)),
        claim_expires_at=NOW + 365 * DAY,
    )
    assert ("rotate", "claim_expired") == outcome(one(sub(), record))


def test_claim_ttl_is_capped_by_max_claim_ttl() -> None:
    """A record claiming a ttl of a year fences for max_claim_ttl only."""
    record = replace(
        rec(state="rotating"),
        claim_ttl_seconds=(365 * DAY).total_seconds(),
        created_time=NOW - timedelta(hours=2),
    )
    (decision,) = decide([sub()], {"s1": record}, POLICY, NOW, max_claim_ttl=timedelta(hours=1))
    assert ("rotate", "claim_expired") == outcome(decision)
    (decision,) = decide([sub()], {"s1": record}, POLICY, NOW, max_claim_ttl=timedelta(hours=3))
    assert ("skip", "claimed") == outcome(decision)


@pytest.mark.parametrize(
    "broken",
    [
        {"claim_ttl_seconds": None, "claim_expires_at": None},
        {"claim_ttl_seconds": -5.0},
        {"claim_ttl_seconds": float("nan")},
        {"created_time": None},
    ],
)
def test_malformed_claim_counts_as_expired(broken: dict[str, object]) -> None:
    """A rotating record whose claim cannot be measured is not claimed forever."""
    record = replace(rec(state="rotating", claim_in=DAY), **broken)  # type: ignore[arg-type]
    assert ("rotate", "claim_expired") == outcome(one(sub(), record))


def test_version_1_claim_reads_its_ttl_from_claim_expires_at() -> None:
    """A v1 record (no claim_ttl_seconds) is fenced until its claim_expires_at, capped."""
    live = replace(
        rec(state="rotating"),
        created_time=NOW - timedelta(minutes=1),
        claim_expires_at=NOW + timedelta(minutes=1),
    )
    assert ("skip", "claimed") == outcome(one(sub(), live))
    expired = replace(
        live, created_time=NOW - timedelta(minutes=3), claim_expires_at=NOW - timedelta(seconds=2)
    )
    assert ("rotate", "claim_expired") == outcome(one(sub(), expired))
    # A v1 host whose clock ran behind Vault's wrote an expiry before created_time:
    # the claim still lasts our own claim_ttl (2m by default), not zero.
    behind = replace(live, claim_expires_at=NOW - timedelta(hours=1))
    assert ("skip", "claimed") == outcome(one(sub(), behind))
    a_year = replace(live, claim_expires_at=NOW + 365 * DAY)
    (decision,) = decide([sub()], {"s1": a_year}, POLICY, NOW, max_claim_ttl=timedelta(seconds=30))
    assert ("rotate", "claim_expired") == outcome(decision)


def test_settling_record_is_rotated_once_its_horizon_passed() -> None:
    """Settling is left alone until created_time + ttl, then rotated as a recovery."""
    waiting = one(sub(), rec(state="settling", claim_in=timedelta(seconds=30)))
    assert ("skip", "settling") == outcome(waiting)
    done = one(sub(), rec(state="settling", claim_in=-timedelta(seconds=30)))
    assert ("rotate", "settled") == outcome(done)
    assert done.recovery


def test_stale_record_rotates_at_once_whatever_the_policy() -> None:
    """A stale record is due even when disabled, rule-skipped or fresh."""
    skip_rule = Policy(max_age=30 * DAY, rules=(Rule(object_type="payable", skip=True),))
    decision = one(sub(status="disabled"), rec(state="stale"), skip_rule)
    assert ("rotate", "stale") == outcome(decision)
    assert decision.recovery


def test_forced_rotation_may_start_from_a_settling_record() -> None:
    """Forcing a settling subscription rotates it (the commit will settle again)."""
    record = rec(state="settling", claim_in=DAY)
    assert ("rotate", "forced") == outcome(one(sub(), record, force=Force(ids=frozenset({"s1"}))))
    assert ("rotate", "forced") == outcome(one(sub(), record, force=Force(all=True)))


def test_forced_rotation_never_breaks_a_live_claim() -> None:
    """A live claim fences a forced rotation too."""
    record = rec(state="rotating", claim_in=DAY)
    assert ("skip", "claimed") == outcome(one(sub(), record, force=Force(all=True)))


def test_rotation_time_in_the_future_is_not_trusted() -> None:
    """A rotated_at ahead of Vault's time (a skewed writer) makes the age unknown: rotate."""
    assert ("rotate", "rotated_in_future") == outcome(one(sub(), rec(age=-DAY)))
    assert ("skip", "fresh") == outcome(one(sub(), rec(age=-FUTURE_TOLERANCE)))


def test_next_claim_expiry_in_the_past_means_now() -> None:
    """An already expired claim asks for a check at once, never in the past."""
    records = [rec("a", state="rotating", claim_in=-DAY)]
    assert NOW == next_claim_expiry(records, NOW)


# --- swap (docs/swap.md) ---------------------------------------------------------


def swap_decision(record: Record | None = None, force: Force | None = None) -> Decision:
    records = {record.subscription_id: record} if record is not None else {}
    (decision,) = decide([sub()], records, POLICY, NOW, force, strategy="swap")
    return decision


def test_swap_is_chosen_only_for_an_active_secret_that_is_merely_old() -> None:
    """Swap keeps a live secret valid; recoveries, unmanaged and disabled ones regenerate."""
    due = rec(age=31 * DAY)
    cases = {
        "due": swap_decision(due),
        "forced": swap_decision(rec(), Force(ids=frozenset({"s1"}))),
        "forced regenerate": swap_decision(
            rec(), Force(ids=frozenset({"s1"}), strategy="regenerate")
        ),
        "stale": swap_decision(rec(state="stale")),
        "unmanaged": swap_decision(None),
        "failed thrice": swap_decision(replace(due, swap_failures=3)),
    }
    assert {
        "due": ("swap", None),
        "forced": ("swap", None),
        "forced regenerate": ("regenerate", None),
        "stale": ("regenerate", "stale"),
        "unmanaged": ("regenerate", "unmanaged"),
        "failed thrice": ("regenerate", "swap_fallback"),
    } == {name: (d.strategy, d.strategy_reason) for name, d in cases.items()}


def test_swap_states_decide_by_phase_whatever_the_age_or_force() -> None:
    """A swapping claim fences even a forced rotation; a retiring record is not swapped twice."""
    live = rec(state="swapping", claim_in=DAY, age=90 * DAY)
    retiring = replace(rec(state="retiring"), overlap_ends_at=NOW + DAY)
    forced = Force(ids=frozenset({"s1"}))
    assert [("skip", "claimed"), ("skip", "overlap")] == [
        outcome(swap_decision(live, forced)),
        outcome(swap_decision(retiring, forced)),
    ]


def test_a_swap_record_no_longer_listed_still_gets_its_decision() -> None:
    """An original deleted at Monite mid-swap is still retired; a retired one is left alone."""
    deleting = rec("gone", state="deleting", claim_in=-DAY)
    retired = rec("done", state="retired", secret=None)
    decisions = decide([], {"gone": deleting, "done": retired}, POLICY, NOW)
    assert [("gone", "rotate", "delete_claim_expired")] == [
        (d.subscription.id, d.action, d.reason) for d in decisions
    ]
    assert True is decisions[0].swap_phase


def test_the_adoption_fence_holds_only_subscriptions_the_intent_did_not_know() -> None:
    """A twin listed before the intent, or another triple, is adopted; a new one waits."""
    swapping = intent(rec(state="swapping", claim_in=DAY), "s2")
    subs = [sub("s2"), sub("s3"), sub("s4", url="https://other.example/hook")]
    decisions = {d.subscription.id: d.reason for d in decide(subs, {"s1": swapping}, POLICY, NOW)}
    expected = {"s2": "unmanaged", "s3": "swap_successor_pending", "s4": "unmanaged"}
    assert expected | {"s1": "claimed"} == decisions


def test_a_named_successor_without_a_record_is_never_adopted() -> None:
    """M4: an original names its successor; if the successor's record is gone it still waits."""
    retiring = replace(rec(state="retiring"), overlap_ends_at=NOW + DAY, successor_id="s2")
    decisions = {
        d.subscription.id: d.reason
        for d in decide([sub(), sub("s2")], {"s1": retiring}, POLICY, NOW)
    }
    assert {"s1": "overlap", "s2": "swap_successor_pending"} == decisions


def test_next_check_covers_the_swap_straggler_window_and_the_overlap_end() -> None:
    """A swapping claim is due a claim ttl after its fence; a retiring one at its overlap end."""
    swapping = rec(state="swapping", claim_in=timedelta(minutes=1))
    retiring = replace(rec(state="retiring"), overlap_ends_at=NOW + timedelta(minutes=5))
    margin = 2 * CLOCK_MARGIN
    assert [NOW + timedelta(minutes=11) + margin, NOW + timedelta(minutes=5) + margin] == [
        next_claim_expiry([swapping], NOW, claim_ttl=CLAIM_TTL),
        next_claim_expiry([retiring], NOW, claim_ttl=CLAIM_TTL),
    ]


def test_an_id_rule_follows_the_successors_lineage() -> None:
    """A rule naming the original keeps matching its successor, and the successor's successor."""
    policy = Policy(max_age=30 * DAY, rules=(Rule(subscription_id="s0", max_age=7 * DAY),))
    successor = replace(rec("s2", age=8 * DAY), lineage=("s0", "s1"))
    (decision,) = decide([sub("s2")], {"s2": successor}, policy, NOW)
    assert ("rotate", "max_age_exceeded", 7 * DAY) == (*outcome(decision), decision.max_age)


def test_a_rules_strategy_overrides_the_configured_one_and_force_overrides_both() -> None:
    """A rule can swap what the config regenerates; `rotate --strategy` beats the rule."""
    policy = Policy(max_age=30 * DAY, rules=(Rule(object_type="payable", strategy="swap"),))
    due = {"s1": rec(age=31 * DAY)}
    (ruled,) = decide([sub()], due, policy, NOW, strategy="regenerate")
    (forced,) = decide(
        [sub()], due, policy, NOW, Force(ids=frozenset({"s1"}), strategy="regenerate")
    )
    assert ("swap", "regenerate") == (ruled.strategy, forced.strategy)


def test_an_id_rule_that_matches_nothing_any_more_is_reported() -> None:
    """A rule on a deleted original is fine while a successor descends from it, then reported."""
    policy = Policy(max_age=30 * DAY, rules=(Rule(subscription_id="s0", max_age=7 * DAY),))
    successor = replace(rec("s2"), lineage=("s0",))
    assert [] == lost_rules(policy, [sub("s2")], {"s2": successor})
    (sentence,) = lost_rules(policy, [sub("s2")], {"s2": rec("s2")})
    assert sentence.startswith("rule 1 names subscription s0, which Monite no longer lists")


def test_a_successor_whose_original_is_still_retiring_waits() -> None:
    """A second swap must not race the first, nor a regenerate make consumers reject: S waits."""
    retiring = replace(rec("s1", state="retiring"), overlap_ends_at=NOW + DAY, successor_id="s2")
    due = replace(rec("s2", age=31 * DAY), predecessor_id="s1")
    decisions = decide(
        [sub(), sub("s2")], {"s1": retiring, "s2": due}, POLICY, NOW, strategy="swap"
    )
    successor = next(d for d in decisions if d.subscription.id == "s2")
    assert ("skip", "predecessor_retiring") == (successor.action, successor.reason)
