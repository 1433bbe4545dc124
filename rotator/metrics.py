"""Prometheus metrics of the daemon, on a registry of its own.

Owns the metric names, their types, labels and buckets, and how a CycleReport
and the clients' request counters become samples. A dedicated
CollectorRegistry (never prometheus_client's global one) keeps library
defaults out and lets tests build as many as they like.

Only counts, durations, ages and timestamps are exported: labels are outcome
kinds, operation names, status codes and hook names, never an id or a secret.
A hook's name is its `name` when set, else its command's program, else its
URL's scheme://host[:port] and "/…" for a path (a path may hold a token; no
credentials, query or fragment either): operators chose it, so it cannot grow
without bound.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector

from rotator.clock import Clock, SystemClock
from rotator.engine import CycleReport, Engine
from rotator.reasons import OutcomeKind, Reason

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

OUTCOMES = tuple(kind.value for kind in OutcomeKind)
SWAP_PHASES = ("swapping", "retiring", "deleting")
# What a swap step came to (rotator_swaps_total{step}); `fallback`: regenerated instead.
SWAP_STEPS = ("committed", "retired", "undone", "aborted", "fallback")
# rotation.overlap is minutes to hours; the tail is deletions that kept failing.
OVERLAP_BUCKETS = (10, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, math.inf)
CYCLE_RESULTS = ("ok", "failed", "error")  # all good / some rotation failed / could not run

# A cycle lists, then rotates at the rate limit: seconds for a few, minutes for thousands.
CYCLE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, math.inf)
# Monite response to Vault commit: one CAS write, so milliseconds; the tail is commit retries.
EXPOSURE_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    5,
    30,
    120,
    math.inf,
)


class _RequestCounters(Collector):
    """Exports the clients' request Counters, which stay monotonic across engine rebuilds."""

    def __init__(self) -> None:
        self._engine: Engine | None = None
        # Counts of engines that were replaced, so a rebuild never makes a counter go back.
        self._monite_base: Counter[tuple[str, int]] = Counter()
        self._vault_base: Counter[tuple[str, str]] = Counter()

    def attach(self, engine: Engine | None) -> None:
        if self._engine is not None and self._engine is not engine:
            self._monite_base.update(self._engine.monite.requests)
            self._vault_base.update(self._engine.store.requests)
        self._engine = engine

    def collect(self) -> Iterable[Metric]:
        monite = Counter(self._monite_base)
        vault = Counter(self._vault_base)
        if self._engine is not None:
            monite.update(self._engine.monite.requests)
            vault.update(self._engine.store.requests)
        monite_family = CounterMetricFamily(
            "rotator_monite_requests",
            "HTTP exchanges with Monite by operation and status code (0: no answer).",
            labels=["operation", "status"],
        )
        for (operation, status), count in sorted(monite.items()):
            monite_family.add_metric([operation, str(status)], count)
        yield monite_family
        vault_family = CounterMetricFamily(
            "rotator_vault_requests",
            "Requests to Vault by operation and outcome (ok, not_found, or the error class).",
            labels=["operation", "outcome"],
        )
        for (operation, outcome), count in sorted(vault.items()):
            vault_family.add_metric([operation, outcome], count)
        yield vault_family


# Commit to delivered: loopback answers in milliseconds; the tail is retries and backoff.
HOOK_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, math.inf)


# Decisions that leave a subscription alone by policy; they are not "managed".
DELIBERATELY_SKIPPED = frozenset({"disabled", "rule_skip", "unknown_status"})


def _labelled_counter(
    name: str, documentation: str, label: str, values: Iterable[str], registry: CollectorRegistry
) -> PromCounter:
    """A counter with one label, exported at 0 for each of `values` before any is counted."""
    counter = PromCounter(name, documentation, [label], registry=registry)
    for value in values:
        counter.labels(value)
    return counter


class Metrics:
    """Every metric of the daemon; `observe` feeds it one finished cycle."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.rotations = _labelled_counter(
            "rotator_rotations",
            "Subscriptions handled by cycles, by outcome.",
            "outcome",
            OUTCOMES,
            r,
        )
        self.cycles = _labelled_counter(
            "rotator_cycles",
            "Cycles run, by result: ok, failed (some rotation failed), error (could not run).",
            "result",
            CYCLE_RESULTS,
            r,
        )
        self.cycle_duration = Histogram(
            "rotator_cycle_duration_seconds",
            "Wall time of one cycle, listing to last commit.",
            buckets=CYCLE_BUCKETS,
            registry=r,
        )
        self.exposure = Histogram(
            "rotator_exposure_window_seconds",
            "Time a new secret existed only in memory: Monite's response to the Vault commit.",
            buckets=EXPOSURE_BUCKETS,
            registry=r,
        )
        self._oldest_rotated_at: float | None = None
        self.oldest_age = Gauge(
            "rotator_oldest_managed_secret_age_seconds",
            "Age of the oldest secret the rotator manages, as of the last cycle's records.",
            registry=r,
        )
        self.oldest_age.set_function(self._oldest_age)
        self.unmanaged = Gauge(
            "rotator_unmanaged_subscriptions",
            "Subscriptions the last cycle left without a record (unknown secret age).",
            registry=r,
        )
        self.orphaned = Gauge(
            "rotator_orphaned_records",
            "Vault records whose subscription Monite no longer lists.",
            registry=r,
        )
        self.quarantined = Gauge(
            "rotator_quarantined_subscriptions",
            "Subscriptions this process stopped regenerating after repeated answers it could "
            "not read (rotation.failed, reason quarantined); restart or force to try again.",
            registry=r,
        )
        self.last_success = Gauge(
            "rotator_last_success_timestamp_seconds",
            "Unix time the last cycle with no failed rotation finished (0: none yet).",
            registry=r,
        )
        self.hook_deliveries = PromCounter(
            "rotator_hook_deliveries",
            "Notices a hook accepted (2xx answer or exit status 0), by hook.",
            ["hook"],
            registry=r,
        )
        self.hook_failures = PromCounter(
            "rotator_hook_failures",
            "Notices a hook did not get after every attempt (or a full queue, or shutdown), "
            "by hook; each is a hook.failed audit event naming the subscription.",
            ["hook"],
            registry=r,
        )
        self.hook_latency = Histogram(
            "rotator_hook_delivery_latency_seconds",
            "Time from a commit to its notice's delivery, retries included.",
            buckets=HOOK_LATENCY_BUCKETS,
            registry=r,
        )
        self.swaps_in_flight = Gauge(
            "rotator_swaps_in_flight",
            "Originals in a swap (docs/swap.md), by phase, as of the last cycle's records.",
            ["phase"],
            registry=r,
        )
        for phase in SWAP_PHASES:
            self.swaps_in_flight.labels(phase)
        self.swaps = _labelled_counter(
            "rotator_swaps",
            "Swap steps by result: successor committed, original retired, swap undone "
            "(no successor), aborted (successor gone or changed, or the original adopted), "
            "fallback (regenerated after three swaps without a successor).",
            "step",
            SWAP_STEPS,
            r,
        )
        self.swap_overlap = Histogram(
            "rotator_swap_overlap_seconds",
            "How long an original and its successor both delivered: the successor's commit "
            "to the original's deletion, on Vault's clock.",
            buckets=OVERLAP_BUCKETS,
            registry=r,
        )
        self.swap_duplicates = Gauge(
            "rotator_swap_duplicates_alive",
            "Originals still listed after their successor was committed: each event is "
            "delivered twice until the overlap ends (consumers deduplicate by event id).",
            registry=r,
        )
        self.swap_orphans = Gauge(
            "rotator_swap_orphans_alive",
            "Subscriptions without a record that an unfinished swap may have created (secret "
            "unknown until its recovery deletes them); alert if it stays above 0.",
            registry=r,
        )
        self.swap_orphans_ambiguous = PromCounter(
            "rotator_swap_orphans_ambiguous",
            "Swap recoveries that found more than one subscription that may be their lost "
            "successor and deleted none (swap.orphan_ambiguous): an operator must look.",
            registry=r,
        )
        self.retired_records = Gauge(
            "rotator_retired_records",
            "Records kept `retired` for audit after their original was deleted, as of the "
            "last cycle's records (they are never handed out as current).",
            registry=r,
        )
        self._requests = _RequestCounters()
        r.register(self._requests)

    def attach(self, engine: Engine | None) -> None:
        """Export this engine's request counters from now on (carrying over the old one's)."""
        self._requests.attach(engine)

    def hook_delivered(self, hook: str, latency_seconds: float) -> None:
        """A hook accepted a notice `latency_seconds` after its commit (rotator.hooks)."""
        self.hook_deliveries.labels(hook).inc()
        self.hook_latency.observe(latency_seconds)

    def hook_failed(self, hook: str) -> None:
        """A hook missed a notice (rotator.hooks)."""
        self.hook_failures.labels(hook).inc()

    def observe(self, report: CycleReport) -> None:
        """Account for one finished cycle."""
        for outcome in report.outcomes:
            self.rotations.labels(outcome.kind).inc()
            if outcome.exposure_seconds is not None:
                self.exposure.observe(outcome.exposure_seconds)
            if outcome.swap_step is not None:
                self.swaps.labels(outcome.swap_step).inc()
            if outcome.overlap_seconds is not None:
                self.swap_overlap.observe(outcome.overlap_seconds)
            if outcome.reason == Reason.ORPHAN_AMBIGUOUS:
                self.swap_orphans_ambiguous.inc()
        for decision in report.decisions:
            if decision.action == "rotate" and decision.strategy_reason == Reason.SWAP_FALLBACK:
                self.swaps.labels("fallback").inc()
        finished = report.finished_at or report.started_at
        self.cycle_duration.observe(max(0.0, (finished - report.started_at).total_seconds()))
        if report.error is not None:
            # The cycle saw nothing: keep the gauges from the last cycle that did.
            self.cycles.labels("error").inc()
            return
        self.cycles.labels("ok" if report.ok else "failed").inc()
        if report.ok:
            self.last_success.set(finished.timestamp())
        self.orphaned.set(len(report.orphans))
        self.quarantined.set(len(report.quarantined))
        self._observe_records(report, finished)
        self._observe_swaps(report)

    def _observe_swaps(self, report: CycleReport) -> None:
        phases = Counter[str](
            d.record.state for d in report.decisions if d.record.state in SWAP_PHASES
        )
        for phase in SWAP_PHASES:
            self.swaps_in_flight.labels(phase).set(phases[phase])
        self.swap_duplicates.set(
            sum(
                1
                for d in report.decisions
                if d.record.state in ("retiring", "deleting")
                and d.subscription.status != "unlisted"
            )
        )
        self.swap_orphans.set(
            sum(1 for d in report.decisions if d.reason == Reason.SWAP_SUCCESSOR_PENDING)
        )
        self.retired_records.set(report.retired)

    def _observe_records(self, report: CycleReport, finished: datetime) -> None:
        renewed = {o.subscription_id for o in report.outcomes if o.kind in ("rotated", "recovered")}
        oldest: float | None = None
        unmanaged = 0
        for decision in report.decisions:
            sub_id = decision.subscription.id
            if decision.reason in DELIBERATELY_SKIPPED or decision.record.state in SWAP_PHASES:
                # ...and an original being swapped: its successor holds the fresh secret.
                # Left alone on purpose (disabled, a skip rule): an age alert on
                # them would fire forever.
                continue
            if sub_id in renewed:
                rotated_at = finished.timestamp()
            elif decision.record.exists and decision.record.rotated_at is not None:
                rotated_at = decision.record.rotated_at.timestamp()
            else:
                unmanaged += 1
                continue
            oldest = rotated_at if oldest is None else min(oldest, rotated_at)
        self._oldest_rotated_at = oldest
        self.unmanaged.set(unmanaged)

    def _oldest_age(self) -> float:
        if self._oldest_rotated_at is None:
            return 0.0
        return max(0.0, self._clock.now().timestamp() - self._oldest_rotated_at)

    def render(self) -> bytes:
        """The exposition text (format 0.0.4) of every metric."""
        return generate_latest(self.registry)
