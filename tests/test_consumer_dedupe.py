"""rotator.consumer.Deduplicator: event ids remembered for a ttl on an injected clock, bounded."""

from __future__ import annotations

import math
import threading

import pytest

from rotator.consumer import Deduplicator


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_first_sight_is_new_and_a_second_within_the_ttl_is_a_duplicate() -> None:
    """seen() records an id and says False; the same id again within the ttl says True."""
    clock = Clock()
    dedupe = Deduplicator(60, clock=clock)
    first = dedupe.seen("evt-1")
    clock.now += 59.9
    assert (False, True, False) == (first, dedupe.seen("evt-1"), dedupe.seen("evt-2"))
    assert (1, 2) == (dedupe.duplicates, len(dedupe))


def test_an_id_is_new_again_once_its_ttl_has_passed_on_the_injected_clock() -> None:
    """At ttl seconds after its first sight an id is forgotten, and counts as new."""
    clock = Clock()
    dedupe = Deduplicator(60, clock=clock)
    dedupe.seen("evt-1")
    clock.now += 60
    assert (0, False, 0) == (len(dedupe), dedupe.seen("evt-1"), dedupe.duplicates)


def test_a_duplicate_does_not_extend_the_ttl() -> None:
    """The window runs from the first sight: duplicates inside it do not push it back."""
    clock = Clock()
    dedupe = Deduplicator(60, clock=clock)
    dedupe.seen("evt-1")
    clock.now += 50
    during = dedupe.seen("evt-1")
    clock.now += 10
    assert (True, False) == (during, dedupe.seen("evt-1"))


def test_beyond_max_entries_the_oldest_id_is_evicted_first() -> None:
    """With room for two ids, a third evicts the oldest (new again), the other stays a duplicate."""
    clock = Clock()
    dedupe = Deduplicator(3600, max_entries=2, clock=clock)
    for event_id in ("evt-1", "evt-2", "evt-3"):
        dedupe.seen(event_id)
        clock.now += 1
    assert (2, 1) == (len(dedupe), dedupe.evicted)
    assert (True, True) == (dedupe.seen("evt-3"), dedupe.seen("evt-2"))
    assert False is dedupe.seen("evt-1")  # evicted before its ttl ended, so new again


def test_forget_makes_the_next_delivery_of_an_event_new() -> None:
    """After forget (handling failed), the retry of the event is not a duplicate."""
    dedupe = Deduplicator(60, clock=Clock())
    dedupe.seen("evt-1")
    dedupe.forget("evt-1")
    dedupe.forget("never-seen")
    assert (False, True) == (dedupe.seen("evt-1"), dedupe.seen("evt-1"))


def test_an_id_expired_behind_a_later_one_counts_as_new_when_the_clock_stepped_back() -> None:
    """An injected clock that steps back cannot keep an expired id alive behind the front."""
    clock = Clock()
    dedupe = Deduplicator(10, clock=clock)
    dedupe.seen("late")  # expires at 110
    clock.now = 0.0
    dedupe.seen("early")  # expires at 10, behind "late"
    clock.now = 12.0
    assert (False, True) == (dedupe.seen("early"), dedupe.seen("late"))


def test_concurrent_sightings_of_the_same_ids_let_exactly_one_through_each() -> None:
    """Eight threads racing over 500 shared ids: each id is new exactly once."""
    dedupe = Deduplicator(3600)
    ids = [f"evt-{n}" for n in range(500)]
    new: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        mine = [event_id for event_id in ids if not dedupe.seen(event_id)]
        with lock:
            new.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(ids) == sorted(new)
    assert (7 * 500, 500) == (dedupe.duplicates, len(dedupe))


@pytest.mark.parametrize(
    ("ttl", "max_entries", "named"),
    [
        (0, 10, "ttl"),
        (-1, 10, "ttl"),
        (math.nan, 10, "ttl"),
        (math.inf, 10, "ttl"),
        (60, 0, "max_entries"),
    ],
)
def test_a_ttl_that_is_not_a_positive_number_or_an_empty_bound_is_refused(
    ttl: float, max_entries: int, named: str
) -> None:
    """A window of no time, of no end, or room for no id is a ValueError naming it."""
    with pytest.raises(ValueError, match=f"^{named} must"):
        Deduplicator(ttl, max_entries=max_entries)


def test_repr_shows_the_window_and_the_bound() -> None:
    """The repr says the ttl and the bound, and nothing about the ids held."""
    dedupe = Deduplicator(90, max_entries=5)
    dedupe.seen("evt-secretive")
    assert "Deduplicator(ttl=90, max_entries=5)" == repr(dedupe)
