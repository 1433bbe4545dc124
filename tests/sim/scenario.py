"""Scenarios: a seed and parameters, a timed fault plan, a run, and the invariants.

A scenario runs real `rotator.engine.Engine` replicas (and one-shot
`rotate --force` engines) over `tests.sim.models` in virtual time:

- fault phase (`fault_phase` seconds): the plan's faults happen: Monite and
  Vault fault windows, record deletions (an operator deleting metadata),
  replica crashes (the replica's task is cancelled at whatever await point it
  is in; it restarts after `duration` with a new Engine, a new store and
  client, an empty cache), forced rotations (a one-shot engine, like
  `rotator rotate --force`, running one cycle beside the replicas).
- calm phase (`calm_phase()`): no new faults; every crashed replica restarts
  at its start; all replicas keep cycling. Its length is what the design
  promises for recovery, plus what the engine's cache adds (see `calm_phase`).
- drain: replicas start no new cycle, running cycles finish, and every
  regenerate still travelling resolves (within claim_ttl, the straggler
  assumption).

Invariants:
- safety, checked after every change at Vault or Monite, from the first
  event to the last: a record that is `active`, for a subscription with no
  regenerate unresolved at Monite (sent, and neither applied nor known never
  to apply), holds Monite's current secret. This is rule zero as something an
  observer can check: while a regenerate travels, or a straggler may land,
  Monite's secret legitimately differs from Vault's; once none can, an
  `active` record must be right. (`rotating`, `settling` and `stale` records
  promise nothing, by design.)
- liveness, after the drain: every subscription has a record, it is
  `active`, and its secret is Monite's current secret (no secret lost); none
  is left `rotating`, `settling` or `stale`.
- no rotation ended in `internal_error` (an unexpected exception in the
  protocol), no replica task died of an exception, no deadlock.

Swap scenarios (`strategy="swap"`, docs/swap.md section 8) check besides,
after every change: rule zero on every `active` record, successors included;
an original `swapping`/`retiring`/`deleting` holds its current secret (M2's
lost record excepted); at most one create per swap id ever lands at Monite; an
original is deleted only after its link's overlap deadline (unless a forced
regenerate hit its lineage) and never while no other member of its lineage has
a record with a secret. After the drain: every lineage (an original and its
successors) has exactly one live `active` subscription equal to Monite's,
besides at most an original `retiring` within its overlap; nothing `swapping`
or `deleting`; no subscription without a record holding its secret, except
the ids recovery reported as `swap.orphan_ambiguous`; retired records hold no
secret.

Also measured: regenerates per subscription, and the convergence time: from
the end of the fault phase to the first moment every subscription is
converged (record active, equal to Monite, nothing unresolved).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import json
import logging
import random
import sys
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from rotator.config import RotationSettings
from rotator.engine import CycleReport, Engine
from rotator.policy import Force, Policy, Strategy
from tests.sim.loop import Deadlock, SimClock, StepBudgetExceeded, VirtualLoop
from tests.sim.models import (
    MONITE_MODES,
    VAULT_MODES,
    Faults,
    MoniteModel,
    SimMonite,
    SimVaultStore,
    VaultModel,
    Window,
    fingerprint,
)

FAULT_KINDS = ("monite", "vault", "delete", "crash", "force")
# Record states that hold a claim: a delete armed "after_claim" fires on them.
_CLAIM_STATES = frozenset({"rotating", "swapping", "deleting"})
# An original's swap states in which its record still holds its (valid) secret.
_SWAP_LIVE_STATES = frozenset({"swapping", "retiring", "deleting"})
# How often generate() picks each kind: Monite trouble is where secrets die.
_KIND_WEIGHTS = (4, 2, 1, 3, 1)
DAY = 86400.0
YEAR = 365 * DAY


@dataclass(frozen=True, slots=True)
class Fault:
    """One timed fault of the plan (JSON-friendly).

    - monite / vault: a window from `at` for `duration`, `mode`, hitting `rate` of calls
    - delete: the record of subscription `target` is deleted (metadata) at `at`
    - crash: replica `target` is killed at `at` and restarts `duration` later
      (at the calm phase at the latest)
    - force: a one-shot `rotate --force` on host `target`; `mode` is "all" or a
      subscription id; killed after `duration` seconds when `duration` > 0;
      `strategy` "regenerate" is `rotate --strategy regenerate` (the emergency
      that ends an overlap at once)

    In a swap scenario a subscription id names a lineage (the original and
    its successors): a forced rotation of `sub-i` hits the oldest member still
    at Monite, and a delete of `latest:sub-i` the newest one's record.
    """

    kind: str
    at: float
    duration: float = 0.0
    mode: str = ""
    rate: float = 0.0
    target: str = ""
    strategy: str = ""

    def describe(self) -> str:
        if self.kind in ("monite", "vault"):
            return (
                f"{self.kind} {self.mode} rate={self.rate:.2f} "
                f"[{self.at:.1f}s, {self.at + self.duration:.1f}s)"
            )
        if self.kind == "delete":
            when = (
                f"{self.rate:.3f}s after its next claim from " if self.mode == "after_claim" else ""
            )
            return f"delete record {self.target} {when}{self.at:.3f}s"
        if self.kind == "crash":
            when = f"{self.rate:.3f}s into its next cycle from " if self.mode == "in_cycle" else ""
            return (
                f"crash replica-{self.target} {when}{self.at:.3f}s, "
                f"restart {self.duration:.1f}s later"
            )
        killed = f", killed after {self.duration:.3f}s" if self.duration > 0 else ""
        how = f" --strategy {self.strategy}" if self.strategy else ""
        return f"rotate --force {self.mode}{how} on host {self.target} at {self.at:.1f}s{killed}"


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything a run depends on: same scenario, same run, event for event."""

    seed: int
    replicas: int
    subscriptions: int
    skews: tuple[float, ...]  # per host (replica i runs on host i), seconds
    claim_ttl: float
    max_claim_ttl: float
    monite_timeout: float
    max_retries: int
    concurrency: int
    commit_retry_for: float
    interval: float
    jitter: float  # fraction of the interval
    max_age: float
    cache_refresh: float
    vault_offset: float
    fault_phase: float
    faults: tuple[Fault, ...] = ()
    strategy: str = "regenerate"  # rotation.strategy of every replica: "regenerate" or "swap"
    overlap: float = 0.0  # rotation.overlap (swap only): >= 2 x claim_ttl, < max_age

    def calm_phase(self) -> float:
        """How long after the faults every record must be converged.

        The design promises recovery in about claim_ttl: a claim left behind
        expires claim_ttl after it was written, a replica that saw it checks
        then (or at its next interval), takes it over and commits `settling`,
        whose horizon ends claim_ttl after that commit, and the next check
        rotates once more to `active`: 2 × claim_ttl + 2 × interval, plus
        commit backoff. One more claim_ttl and interval for a rotation
        refused at the last moment (`stale`, then rotated again). A claim that
        no live replica has seen (its writer was a one-shot process that died)
        is found only when a replica's cache is refreshed: add cache_refresh.

        A swap left behind needs more (docs/swap.md): an expired `swapping`
        claim is recovered claim_ttl after its fence ends, the undone original
        is swapped again, and its successor's overlap must run out before the
        original is deleted: add the overlap (overlap + 3 × claim_ttl + 2
        intervals in all, inside the sum above).
        """
        interval = self.interval * (1 + self.jitter)
        calm = self.cache_refresh + 3 * (self.claim_ttl + interval) + 120.0
        if self.strategy == "swap":
            calm += self.overlap
        return calm

    @property
    def swap(self) -> bool:
        return self.strategy == "swap"

    def sub_ids(self) -> list[str]:
        return [f"sub-{i}" for i in range(self.subscriptions)]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Scenario:
        raw = json.loads(text)
        raw["skews"] = tuple(raw["skews"])
        raw["faults"] = tuple(Fault(**f) for f in raw["faults"])
        return cls(**raw)

    def describe(self) -> str:
        lines = [
            f"seed={self.seed} replicas={self.replicas} subscriptions={self.subscriptions} "
            f"claim_ttl={self.claim_ttl:g}s max_claim_ttl={self.max_claim_ttl:g}s "
            f"monite_timeout={self.monite_timeout:g}s max_retries={self.max_retries} "
            f"concurrency={self.concurrency} commit_retry_for={self.commit_retry_for:g}s "
            f"interval={self.interval:g}s±{self.jitter:.0%} max_age={self.max_age:g}s "
            f"cache_refresh={self.cache_refresh:g}s vault_offset={self.vault_offset:.1f}s "
            f"skews={[round(s, 1) for s in self.skews]} fault_phase={self.fault_phase:.0f}s",
            f"faults ({len(self.faults)}):",
        ]
        if self.swap:
            lines.insert(1, f"strategy=swap overlap={self.overlap:g}s")
        lines += [f"  - {f.describe()}" for f in sorted(self.faults, key=lambda f: f.at)]
        return "\n".join(lines)


def _skew(rng: random.Random) -> float:
    size = rng.choice((0.0, 2.0, 300.0, 3600.0, DAY, YEAR))
    return rng.uniform(-size, size)


def _offset(rng: random.Random) -> float:
    """A delay after an event, spread over the await points of a rotation."""
    return rng.choice((rng.uniform(0.0, 0.05), rng.uniform(0.0, 0.5), rng.uniform(0.0, 20.0)))


STRATEGIES = ("regenerate", "swap", "mixed")


def strategy_of(seed: int, strategy: str) -> str:
    """The strategy seed `seed` runs under a profile's `strategy`: "mixed" swaps odd seeds."""
    if strategy == "mixed":
        return "swap" if seed % 2 else "regenerate"
    if strategy not in ("regenerate", "swap"):
        raise ValueError(f"unknown strategy {strategy!r}")
    return strategy


def _born(sid: str) -> tuple[int, int]:
    """Creation order: the originals (`sub-i`), then what creates made (`sub-new-N`)."""
    head, _, number = sid.rpartition("-")
    return (1 if head.endswith("new") else 0, int(number) if number.isdigit() else 0)


def generate(seed: int, strategy: str = "regenerate") -> Scenario:
    """The scenario for `seed` (the same on every machine and in every profile).

    A swap scenario is the regenerate scenario of the same seed (same draws,
    so same fault plan) with an overlap and the plan's lineage targets drawn
    from a separate rng: regenerate scenarios replay exactly as before.
    """
    base = _generate(seed)
    if strategy_of(seed, strategy) == "swap":
        return _as_swap(base)
    return base


def _as_swap(scenario: Scenario) -> Scenario:
    """The swap variant: overlap in [2 x claim_ttl, max_age), faults aimed at lineages."""
    rng = random.Random(f"monite-secret-rotator-sim:swap:{scenario.seed}")
    ttl = scenario.claim_ttl
    max_age = scenario.max_age
    if max_age <= 2 * ttl:
        max_age = rng.choice([m for m in (600.0, 1800.0, 7200.0) if m > 2 * ttl])
    upper = min(0.9 * max_age, 2 * ttl + 1800.0)
    overlap = rng.choice((2 * ttl, round(rng.uniform(2 * ttl, upper), 3)))
    faults: list[Fault] = []
    for fault in scenario.faults:
        if fault.kind == "delete" and rng.random() < 0.5:
            fault = replace(fault, target=f"latest:{fault.target}")
        elif fault.kind == "force" and rng.random() < 0.3:
            fault = replace(fault, strategy="regenerate")
        faults.append(fault)
    return replace(
        scenario, strategy="swap", overlap=overlap, max_age=max_age, faults=tuple(faults)
    )


def _generate(seed: int) -> Scenario:
    rng = random.Random(f"monite-secret-rotator-sim:{seed}")
    replicas = rng.randint(1, 3)
    subscriptions = rng.randint(1, 4)
    claim_ttl = rng.choice((60.0, 120.0, 120.0, 300.0))
    timeout = rng.choice([t for t in (2.0, 5.0, 10.0, 15.0) if 4 * t <= claim_ttl])
    interval = rng.choice((30.0, 60.0, 120.0, 300.0))
    fault_phase = rng.uniform(600.0, 3600.0)
    sub_ids = [f"sub-{i}" for i in range(subscriptions)]
    faults: list[Fault] = []
    for _ in range(rng.randint(0, 10)):
        kind = rng.choices(FAULT_KINDS, _KIND_WEIGHTS)[0]
        at = rng.uniform(0.0, fault_phase)
        if kind == "monite":
            duration = rng.uniform(5.0, fault_phase - at + 1.0)
            mode = rng.choice(MONITE_MODES)
            faults.append(Fault(kind, at, duration, mode, rng.choice((0.1, 0.3, 0.7, 1.0))))
        elif kind == "vault":
            duration = rng.uniform(1.0, min(900.0, fault_phase - at + 1.0))
            mode = rng.choice(VAULT_MODES)
            faults.append(Fault(kind, at, duration, mode, rng.choice((0.1, 0.3, 0.7, 1.0))))
        elif kind == "delete":
            # Right away, or `rate` seconds after the next claim on that record lands.
            mode = rng.choice(("now", "after_claim"))
            faults.append(Fault(kind, at, 0.0, mode, _offset(rng), rng.choice(sub_ids)))
        elif kind == "crash":
            # Right away, or `rate` seconds into the replica's next cycle (mid-rotation).
            down = rng.choice((0.0, 5.0, 60.0, 600.0))
            mode = rng.choice(("now", "in_cycle", "in_cycle"))
            target = str(rng.randrange(replicas))
            faults.append(Fault(kind, at, down, mode, _offset(rng), target))
        else:
            what = rng.choice(["all", *sub_ids])
            killed = rng.choice((0.0, 0.0, rng.uniform(0.0, 30.0)))
            faults.append(Fault(kind, at, killed, what, target=str(rng.randrange(replicas))))
    return Scenario(
        seed=seed,
        replicas=replicas,
        subscriptions=subscriptions,
        skews=tuple(_skew(rng) for _ in range(replicas)),
        claim_ttl=claim_ttl,
        max_claim_ttl=rng.choice((claim_ttl, 2 * claim_ttl, 3600.0)),
        monite_timeout=timeout,
        max_retries=rng.randint(0, 3),
        concurrency=rng.randint(1, 8),
        commit_retry_for=rng.choice((30.0, 120.0, 600.0)),
        interval=interval,
        jitter=rng.choice((0.0, 0.1, 0.5)),
        max_age=rng.choice((300.0, 600.0, 1800.0, 7200.0)),
        cache_refresh=rng.choice((300.0, 900.0, 3600.0)),
        vault_offset=_skew(rng),
        fault_phase=fault_phase,
        faults=tuple(sorted(faults, key=lambda f: (f.at, f.kind, f.target))),
    )


# -- a run ----------------------------------------------------------------------------


@dataclass(slots=True)
class Result:
    """What one run found; `failures` is empty when every invariant held."""

    scenario: Scenario
    failures: list[str] = field(default_factory=list)
    convergence: float | None = None  # virtual seconds after the fault phase
    regenerates: dict[str, int] = field(default_factory=dict)
    injected: collections.Counter[str] = field(default_factory=collections.Counter)
    events: collections.Counter[str] = field(default_factory=collections.Counter)
    trace: list[str] = field(default_factory=list)
    virtual_seconds: float = 0.0
    steps: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures

    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.trace).encode()).hexdigest()


StoreFactory = Callable[[VirtualLoop, VaultModel, SimClock, Faults], SimVaultStore]

# Bound on how long the drain waits for running cycles (virtual seconds).
_DRAIN_LIMIT = 4 * 3600.0


class _Counting:
    """Counts the run's structlog events by name (no output)."""

    def __init__(self) -> None:
        self.events: collections.Counter[str] = collections.Counter()
        # Candidates a swap recovery could not tell apart (`swap.orphan_ambiguous`).
        self.ambiguous: set[str] = set()

    def count(self, event: str, context: dict[str, Any], event_kw: dict[str, Any]) -> None:
        event = str(event)
        self.events[event] += 1
        if event == "swap.orphan_ambiguous":
            candidates = (
                event_kw["candidates"] if "candidates" in event_kw else context.get("candidates")
            )
            self.ambiguous.update(str(c) for c in candidates or ())


class _CountingLogger(structlog.make_filtering_bound_logger(logging.NOTSET)):  # type: ignore[misc]
    """A bound logger that hands each event, its context and keywords to the `_Counting` it wraps.

    It goes around the processor chain, and the DropEvent that ended it, and
    builds no event dict: a scenario logs hundreds of events. Every level
    counts, whatever level the process was configured with.
    """

    def _proxy_to_logger(self, method_name: str, event: str | None = None, **event_kw: Any) -> None:
        self._logger.count(event, self._context, event_kw)

    def info(self, event: str, *args: Any, **event_kw: Any) -> None:
        if args:  # %-style arguments: structlog's own path interpolates them
            self.log(logging.INFO, event, *args, **event_kw)
            return
        self._logger.count(event, self._context, event_kw)

    debug = warning = warn = error = critical = fatal = msg = info


# The class of the lazy proxy `structlog.get_logger()` returns (structlog does not export it).
_LAZY_LOGGER = type(structlog.get_logger())


@functools.lru_cache(maxsize=1)
def _product_modules(loaded: int) -> tuple[types.ModuleType, ...]:
    """The product's modules among the `loaded` ones: scanned again only when imports change."""
    return tuple(m for name, m in list(sys.modules.items()) if name.startswith("rotator."))


@contextlib.contextmanager
def _quiet_logs() -> Iterator[_Counting]:
    """Route every structlog event of the run to a counter, and restore the config after."""
    saved = structlog.get_config()
    counting = _Counting()
    structlog.configure(
        processors=[],
        wrapper_class=_CountingLogger,
        logger_factory=lambda *_: counting,
        context_class=dict,
        cache_logger_on_first_use=False,
    )
    # The product logs through module-level lazy proxies (`log = structlog.get_logger()`),
    # which build a logger anew at every call: for the run, each module logs
    # through the logger its proxy builds under this configuration, built once.
    namespaces = [vars(module) for module in _product_modules(len(sys.modules))]
    proxies = [(ns, ns["log"]) for ns in namespaces if isinstance(ns.get("log"), _LAZY_LOGGER)]
    for ns, proxy in proxies:
        ns["log"] = proxy.bind()
    try:
        yield counting
    finally:
        for ns, proxy in proxies:
            ns["log"] = proxy
        structlog.configure(**saved)


@contextlib.contextmanager
def _seeded_uuids(rng: random.Random) -> Iterator[None]:
    """rotation_id and run_id come from uuid4: make them seeded for the run."""
    original = uuid.uuid4

    def uuid4() -> uuid.UUID:
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    uuid.uuid4 = uuid4
    try:
        yield
    finally:
        uuid.uuid4 = original


class World:
    """One scenario's servers, hosts, replicas, and the invariant checker."""

    def __init__(
        self, scenario: Scenario, loop: VirtualLoop, store_factory: StoreFactory | None
    ) -> None:
        self.s = scenario
        self.loop = loop
        self.result = Result(scenario)
        self.trace = self.result.trace
        seed = scenario.seed
        self.faults = Faults(rng=random.Random(f"faults:{seed}"))
        self.faults.monite = [
            Window(f.at, f.duration, f.mode, f.rate) for f in scenario.faults if f.kind == "monite"
        ]
        self.faults.vault = [
            Window(f.at, f.duration, f.mode, f.rate) for f in scenario.faults if f.kind == "vault"
        ]
        self.vault = VaultModel(
            loop, offset=scenario.vault_offset, on_change=self.changed, trace=self.note
        )
        self.monite = MoniteModel(
            scenario.sub_ids(),
            rng=random.Random(f"secrets:{seed}"),
            on_change=self.changed,
            trace=self.note,
            before_delete=self.before_delete,
            after_create=self.after_create,
        )
        self.store_factory: StoreFactory = store_factory or SimVaultStore
        self.clocks = [
            SimClock(loop, skew=skew, boot=1000.0 * (i + 1) + (seed % 997))
            for i, skew in enumerate(scenario.skews)
        ]
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.incarnation: collections.Counter[str] = collections.Counter()
        self.in_cycle: set[asyncio.Task[Any]] = set()
        self.draining = False
        self.calm = False
        self.delete_after_claim: dict[str, list[float]] = {}
        self.crash_in_cycle: dict[str, list[Fault]] = {}
        # Swap bookkeeping: lineages whose records an operator deleted (M3 may leave
        # a duplicate), lineages (or "all") a forced regenerate hit, the log counter.
        self.lineages_hit: set[str] = set()
        self.forced_regenerate: set[str] = set()
        self.counting: _Counting | None = None
        self.drain_vault_time: datetime | None = None
        # The last swap state and successor seen of each record, to spot an abort.
        self.last_seen: dict[str, tuple[str, str | None]] = {}
        # (original, successor) -> overlap_ends_at as the link wrote it.
        self.deadlines: dict[tuple[str, str], datetime] = {}

    # -- observation ---------------------------------------------------------------

    def note(self, line: str) -> None:
        self.trace.append(f"{self.loop.time():.6f} {line}")

    def fail(self, message: str) -> None:
        if len(self.result.failures) < 20:
            self.result.failures.append(f"t={self.loop.time():.3f}s {message}")

    def changed(self, sid: str) -> None:
        """After every change at Vault or Monite: the safety invariant, and convergence."""
        if sid in self.monite.current:
            self._check_safety(sid)
            if sid in self.delete_after_claim and not self.calm:
                record = self.vault.record(sid)
                if record is not None and record.state in _CLAIM_STATES:
                    self.claimed(sid)
        if self.s.swap:
            self._check_swap_record(sid)
        if self.calm and self.result.convergence is None and self.converged():
            self.result.convergence = self.loop.time() - self.s.fault_phase

    def _check_safety(self, sid: str) -> None:
        record = self.vault.record(sid)
        if record is None or record.state != "active" or self.monite.unresolved[sid] > 0:
            return
        current = self.monite.current[sid]
        held = record.secret.reveal() if record.secret is not None else None
        if held != current:
            self.fail(
                f"SAFETY {sid}: record v{record.version} is active with secret "
                f"{fingerprint(held)} but Monite's current secret is {fingerprint(current)} "
                "and no regenerate is in flight"
            )

    def _check_swap_record(self, sid: str) -> None:
        """An original in a swap holds its current secret; a retired record holds none."""
        record = self.vault.record(sid)
        if record is None:
            self.last_seen.pop(sid, None)
            return
        before, successor = self.last_seen.get(sid, ("", None))
        self.last_seen[sid] = (record.state, record.successor_id)
        if record.state == "retiring" and record.successor_id and record.overlap_ends_at:
            # The link's deadline is the swap's: later versions only copy it.
            self.deadlines.setdefault((sid, record.successor_id), record.overlap_ends_at)
        if before == "deleting" and record.state in ("active", "stale") and successor:
            # An aborted deletion: was the successor gone because it swapped on itself?
            later = self.vault.record(successor)
            if later is not None and later.state in ("retiring", "deleting", "retired"):
                self.note(f"sim: {sid} aborted its deletion: successor {successor} {later.state}")
        held = record.secret.reveal() if record.secret is not None else None
        if record.state == "retired" and held is not None:
            self.fail(f"RETIRED {sid}: retired record v{record.version} still holds a secret")
        if record.state not in _SWAP_LIVE_STATES or sid not in self.monite.current:
            return
        if self.monite.unresolved[sid] > 0:
            return
        current = self.monite.current[sid]
        if held is None and record.state != "swapping":
            return  # M2: the original's record was lost and rewritten without its secret
        if held != current:
            self.fail(
                f"SWAP_SECRET {sid}: record v{record.version} is {record.state} with secret "
                f"{fingerprint(held)} but Monite's current secret is {fingerprint(current)}"
            )

    def after_create(self, sid: str) -> None:
        """A create landed at Monite: at most one successor per swap, ever."""
        swap_id, original = self.monite.origin.get(sid, (None, None))
        if swap_id is None:
            self.fail(f"CREATE {sid}: created at Monite by no swap")
            return
        made = self.monite.creates_per_swap[swap_id]
        if made > 1:
            self.fail(f"SWAP_TWICE {sid}: swap {swap_id[:12]} of {original} created {made}")

    def before_delete(self, sid: str) -> None:
        """A delete lands at Monite: originals only after their overlap, never the last one."""
        record = self.vault.record(sid)
        root = self.monite.root(sid)
        events = self.result.events
        if record is not None and record.state in ("retiring", "deleting", "retired"):
            events["sim.original_deleted"] += 1
            forced = "all" in self.forced_regenerate or root in self.forced_regenerate
            ends = record.overlap_ends_at
            if record.successor_id is not None:
                ends = self.deadlines.get((sid, record.successor_id), ends)
            now = self.vault.true_now()
            if record.secret is not None and ends is not None and now < ends and not forced:
                early = (ends - now).total_seconds()
                self.fail(
                    f"EARLY_DELETE {sid}: deleted at Monite {early:.3f}s before its overlap "
                    f"ends (record v{record.version} {record.state})"
                )
            if not self._lineage_keeps_a_secret(root, sid):
                if root in self.lineages_hit:
                    # An operator deleted the successor's record after step 9 read it
                    # (M4 between steps 9 and 10): nothing the protocol can prevent.
                    events["sim.deleted_after_successor_record_lost"] += 1
                    return
                self.fail(
                    f"DELETE_WITHOUT_SUCCESSOR {sid}: deleted at Monite (record "
                    f"v{record.version} {record.state}, successor {record.successor_id}) while "
                    f"no other subscription of lineage {root} has a record with a secret"
                )
        elif sid in self.monite.origin:
            for other in self.vault.list_ids():
                named = self.vault.record(other)
                if (
                    named is not None
                    and named.successor_id == sid
                    and named.state == "deleting"
                    and other not in self.monite.subscriptions
                    and (record is None or record.secret is None)
                ):
                    self.note(f"sim: {sid} deleted by {other}'s step 9 after {other} was deleted")
            if record is not None and record.secret is not None:
                events["sim.successor_with_record_deleted"] += 1
                self.note(
                    f"sim: {sid} deleted at Monite while its record v{record.version} "
                    f"({record.state}) holds a secret"
                )
            else:
                events["sim.orphan_deleted"] += 1
        elif sid in self.lineages_hit:
            events["sim.original_deleted_record_lost"] += 1
        else:
            state = "absent" if record is None else record.state
            self.fail(f"UNEXPECTED_DELETE {sid}: an original deleted while its record is {state}")

    def _lineage_keeps_a_secret(self, root: str, leaving: str) -> bool:
        for other in self.monite.subscriptions:
            if other == leaving or self.monite.root(other) != root:
                continue
            record = self.vault.record(other)
            if record is not None and record.secret is not None:
                return True
        return False

    def lineage(self, root: str) -> list[str]:
        """The members of `root`'s lineage at Monite, oldest first (orphans included)."""
        members = [x for x in self.monite.subscriptions if self.monite.root(x) == root]
        return sorted(members, key=_born)

    def ambiguous(self) -> set[str]:
        return set() if self.counting is None else self.counting.ambiguous

    def converged(self) -> bool:
        if self.s.swap:
            return self._swap_converged()
        for sid in self.s.sub_ids():
            record = self.vault.record(sid)
            if (
                record is None
                or record.state != "active"
                or self.monite.unresolved[sid] > 0
                or record.secret is None
                or record.secret.reveal() != self.monite.current[sid]
            ):
                return False
        return True

    def _swap_converged(self) -> bool:
        """Every lineage: one `active` subscription, at most an original `retiring`, all right."""
        ambiguous = self.ambiguous()
        for root in self.s.sub_ids():
            active = 0
            for sid in self.lineage(root):
                if sid in ambiguous:
                    continue
                record = self.vault.record(sid)
                if (
                    record is None
                    or record.secret is None
                    or self.monite.unresolved[sid] > 0
                    or record.secret.reveal() != self.monite.current[sid]
                ):
                    return False
                if record.state == "active":
                    active += 1
                elif record.state != "retiring":
                    return False
            if active != 1:
                return False
        return True

    def final_check_swap(self) -> None:
        """After the drain: one live subscription per lineage, nothing stuck, nothing unknown."""
        ambiguous = self.ambiguous()
        s = self.s
        grace = timedelta(seconds=s.interval * (1 + s.jitter) + 60.0)
        drained = self.drain_vault_time or self.vault.true_now()
        records = {k: r for k in self.vault.list_ids() if (r := self.vault.record(k)) is not None}
        for sid, record in sorted(records.items()):
            state = record.state
            if state in ("swapping", "deleting", "rotating", "settling", "stale"):
                self.fail(f"STUCK {sid}: record v{record.version} is {state}")
            elif state == "retired" and record.secret is not None:
                self.fail(f"RETIRED {sid}: retired record v{record.version} holds a secret")
            elif state == "retiring":
                ends = record.overlap_ends_at
                if ends is None or ends + grace < drained:
                    self.fail(
                        f"STUCK {sid}: record v{record.version} is retiring, its overlap "
                        f"ended at {ends} (drain at {drained})"
                    )
            if state in ("active", "retiring") and sid not in self.monite.subscriptions:
                self.result.events["sim.record_orphaned"] += 1
        for root in s.sub_ids():
            live = [x for x in self.lineage(root) if x not in ambiguous]
            if not live:
                self.fail(f"LOST {root}: no subscription of its lineage is left at Monite")
                continue
            active = []
            for sid in live:
                record = records.get(sid)
                current = self.monite.current[sid]
                if record is None or record.secret is None:
                    self.fail(
                        f"ORPHAN {sid}: at Monite (lineage {root}) with no record holding its "
                        "secret: nobody knows it"
                    )
                    continue
                if record.secret.reveal() != current:
                    self.fail(
                        f"LOST {sid}: record v{record.version} ({record.state}) holds "
                        f"{fingerprint(record.secret.reveal())}, Monite's current secret is "
                        f"{fingerprint(current)}"
                    )
                if record.state == "active":
                    active.append(sid)
                if self.monite.unresolved[sid]:
                    self.fail(f"UNRESOLVED {sid}: {self.monite.unresolved[sid]} regenerates travel")
            if len(active) > 1 and root in self.lineages_hit:
                # M3: a record deleted mid-swap loses the intent; both stay, both managed.
                self.result.events["sim.duplicates_m3"] += 1
                self.note(f"sim: lineage {root} keeps duplicates {active} (M3)")
            elif len(active) != 1:
                self.fail(f"LINEAGE {root}: {len(active)} active subscriptions {active}")
        if ambiguous:
            self.result.events["sim.orphans_ambiguous"] += len(ambiguous)
            self.note(f"sim: ambiguous orphans reported {sorted(ambiguous)}")

    def final_check(self) -> None:
        if self.s.swap:
            self.final_check_swap()
            return
        for sid in self.s.sub_ids():
            record = self.vault.record(sid)
            current = self.monite.current[sid]
            if record is None:
                self.fail(f"LOST {sid}: no record after the calm phase")
                continue
            held = record.secret.reveal() if record.secret is not None else None
            if record.state != "active":
                self.fail(f"STUCK {sid}: record v{record.version} is {record.state}")
            if held != current:
                self.fail(
                    f"LOST {sid}: record v{record.version} ({record.state}) holds "
                    f"{fingerprint(held)}, Monite's current secret is {fingerprint(current)}"
                )
            if self.monite.unresolved[sid]:
                self.fail(f"UNRESOLVED {sid}: {self.monite.unresolved[sid]} regenerates travel")

    # -- engines ---------------------------------------------------------------------

    def engine(self, host: int, owner: str) -> Engine:
        s = self.s
        clock = self.clocks[host]
        self.incarnation[owner] += 1
        incarnation = self.incarnation[owner]
        swap = {"strategy": "swap", "overlap": timedelta(seconds=s.overlap)} if s.swap else {}
        return Engine(
            monite=SimMonite(
                self.loop,
                self.monite,
                clock,
                self.faults,
                timeout=s.monite_timeout,
                straggle_for=s.claim_ttl,
            ),
            store=self.store_factory(self.loop, self.vault, clock, self.faults),
            policy=Policy(max_age=timedelta(seconds=s.max_age)),
            rotation=RotationSettings(
                claim_ttl=timedelta(seconds=s.claim_ttl),
                max_claim_ttl=timedelta(seconds=s.max_claim_ttl),
                commit_retry_for=timedelta(seconds=s.commit_retry_for),
                concurrency=s.concurrency,
                cache_refresh=timedelta(seconds=s.cache_refresh),
                **swap,
            ),
            owner=owner,
            clock=clock,
            rng=random.Random(f"engine:{s.seed}:{owner}:{incarnation}"),
            max_retries=s.max_retries,
        )

    def _record_report(self, owner: str, report: CycleReport) -> None:
        for outcome in report.outcomes:
            self.result.events[f"outcome.{outcome.kind}.{outcome.reason}"] += 1
            if outcome.reason == "internal_error" and outcome.error is not None:
                self.fail(f"INTERNAL {owner} {outcome.subscription_id}: {outcome.error}")
        self.note(f"{owner} cycle {report.summary()}")

    async def replica(self, index: int) -> None:
        """A daemon: a cycle at start, then every interval (jittered) or at next_check_in."""
        name = f"replica-{index}"
        engine = self.engine(index, name)
        rng = random.Random(f"schedule:{self.s.seed}:{name}:{self.incarnation[name]}")
        clock = self.clocks[index]
        immediate = 0
        self.note(f"{name} start #{self.incarnation[name]}")
        try:
            me = asyncio.current_task()
            assert me is not None
            while not self.draining:
                self.in_cycle.add(me)
                self.cycle_starts(name)
                try:
                    report = await engine.run_cycle()
                finally:
                    self.in_cycle.discard(me)
                self._record_report(name, report)
                jitter = self.s.interval * self.s.jitter
                delay = self.s.interval + rng.uniform(0.0, jitter)
                due = report.next_check_in
                if report.error is None and due is not None:
                    if due <= timedelta(0):
                        immediate += 1
                        delay = min(delay, self.s.claim_ttl, 2.0**immediate)
                    else:
                        immediate = 0
                        delay = min(delay, due.total_seconds() + 1.0)
                else:
                    immediate = 0
                await clock.sleep(delay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.fail(f"REPLICA {name} died: {type(exc).__name__}: {exc}")

    async def forced(self, index: int, fault: Fault) -> None:
        name = f"cli-{index}"
        engine = self.engine(int(fault.target), name)
        strategy: Strategy | None = "regenerate" if fault.strategy == "regenerate" else None
        target = fault.mode
        if self.s.swap and target != "all":
            # The lineage's oldest member at Monite: an original retiring, or the one.
            target = next(iter(self.lineage(target)), target)
        if strategy is not None:
            self.forced_regenerate.add("all" if target == "all" else self.monite.root(target))
        force = (
            Force(all=True, strategy=strategy)
            if target == "all"
            else Force(ids=frozenset({target}), strategy=strategy)
        )
        try:
            report = await engine.run_cycle(force=force)
        except Exception as exc:
            self.fail(f"FORCED {name} died: {type(exc).__name__}: {exc}")
            return
        self._record_report(name, report)

    def start_replica(self, index: int) -> None:
        name = f"replica-{index}"
        task = self.tasks.get(name)
        if task is not None and not task.done() and not task.cancelling():
            return
        self.tasks[name] = self.loop.create_task(self.replica(index), name=name)

    def crash(self, name: str) -> None:
        task = self.tasks.get(name)
        if task is not None and not task.done() and not task.cancelling():
            self.note(f"{name} crash")
            where = "in_cycle" if task in self.in_cycle or name.startswith("cli") else "idle"
            self.result.injected[f"crash.{where}"] += 1
            task.cancel()

    # -- the plan ----------------------------------------------------------------------

    def schedule(self) -> None:
        s = self.s
        loop = self.loop
        for i in range(s.replicas):
            self.start_replica(i)
        forced = 0
        for fault in s.faults:
            if fault.at >= s.fault_phase:
                continue
            if (
                fault.kind == "delete"
                and fault.target.removeprefix("latest:") in self.monite.current
            ):
                if fault.mode == "after_claim":
                    loop.call_at(fault.at, self._arm_delete, fault)
                else:
                    loop.call_at(fault.at, self._delete, fault.target)
            elif fault.kind == "crash" and int(fault.target) < s.replicas:
                loop.call_at(fault.at, self._arm_crash, fault)
            elif fault.kind == "force" and int(fault.target) < s.replicas:
                if fault.mode != "all" and fault.mode not in self.monite.current:
                    continue
                name = f"cli-{forced}"
                loop.call_at(fault.at, self._start_forced, forced, fault)
                if fault.duration > 0:
                    loop.call_at(fault.at + fault.duration, self.crash, name)
                forced += 1
        loop.call_at(s.fault_phase, self._calm)

    def _resolve(self, target: str) -> str:
        """`latest:sub-i`: the newest member of sub-i's lineage at Monite (else sub-i)."""
        if not target.startswith("latest:"):
            return target
        root = target.removeprefix("latest:")
        members = self.lineage(root)
        return members[-1] if members else root

    def _delete(self, sid: str) -> None:
        if self.calm:
            return
        sid = self._resolve(sid)
        self.result.injected["vault.record_deleted"] += 1
        if self.s.swap:
            self.lineages_hit.add(self.monite.root(sid))
        self.vault.delete_metadata(sid)

    def _arm_delete(self, fault: Fault) -> None:
        target = self._resolve(fault.target)
        self.delete_after_claim.setdefault(target, []).append(fault.rate)

    def claimed(self, sid: str) -> None:
        """A claim landed at Vault: fire the deletions armed for it."""
        for offset in self.delete_after_claim.pop(sid, []):
            self.loop.call_later(offset, self._delete, sid)

    def _arm_crash(self, fault: Fault) -> None:
        index = int(fault.target)
        name = f"replica-{index}"
        task = self.tasks.get(name)
        if fault.mode == "in_cycle" and (task is None or task not in self.in_cycle):
            self.crash_in_cycle.setdefault(name, []).append(fault)
            return
        self._crash_later(fault, fault.rate if fault.mode == "in_cycle" else 0.0)

    def _crash_later(self, fault: Fault, offset: float) -> None:
        index = int(fault.target)
        at = self.loop.time() + offset
        if at >= self.s.fault_phase:
            return
        self.loop.call_at(at, self.crash, f"replica-{index}")
        restart = min(at + fault.duration, self.s.fault_phase)
        self.loop.call_at(restart, self.start_replica, index)

    def cycle_starts(self, name: str) -> None:
        """A replica starts a cycle: fire the crashes armed for its next cycle."""
        for fault in self.crash_in_cycle.pop(name, []):
            self._crash_later(fault, fault.rate)

    def _start_forced(self, index: int, fault: Fault) -> None:
        self.result.injected["force"] += 1
        name = f"cli-{index}"
        self.tasks[name] = self.loop.create_task(self.forced(index, fault), name=name)

    def _calm(self) -> None:
        self.faults.enabled = False
        self.calm = True
        self.note("calm")
        for i in range(self.s.replicas):
            self.start_replica(i)
        if self.converged():
            self.result.convergence = 0.0

    async def main(self) -> None:
        s = self.s
        self.schedule()
        await asyncio.sleep(s.fault_phase + s.calm_phase())
        # Drain: no new cycles; idle replicas stop, running cycles finish.
        self.draining = True
        self.drain_vault_time = self.vault.true_now()
        self.note("drain")
        for name in sorted(self.tasks):
            if name.startswith("replica-") and self.tasks[name] not in self.in_cycle:
                self.tasks[name].cancel()
        waited = 0.0
        while any(not t.done() for t in self.tasks.values()) and waited < _DRAIN_LIMIT:
            await asyncio.sleep(1.0)
            waited += 1.0
        for name in sorted(self.tasks):
            if not self.tasks[name].done():
                self.fail(f"HUNG {name}: still running {waited:.0f}s into the drain")
                self.tasks[name].cancel()
        # Every regenerate still travelling lands or dies within claim_ttl.
        await asyncio.sleep(s.claim_ttl + 1.0)
        self.final_check()


def run(scenario: Scenario, *, store_factory: StoreFactory | None = None) -> Result:
    """Run one scenario to the end in virtual time; deterministic for a given scenario."""
    loop = VirtualLoop()
    world = World(scenario, loop, store_factory)
    with _quiet_logs() as counting, _seeded_uuids(random.Random(f"uuid:{scenario.seed}")):
        world.counting = counting
        try:
            loop.run_until_complete(world.main())
        except (Deadlock, StepBudgetExceeded) as exc:
            world.fail(f"LOOP {type(exc).__name__}: {exc}")
        finally:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            with contextlib.suppress(Deadlock, StepBudgetExceeded):
                loop.run_until_complete(asyncio.sleep(0))
            loop.close()
    result = world.result
    result.regenerates = {sid: world.monite.regenerates[sid] for sid in scenario.sub_ids()}
    result.injected.update(world.faults.injected)
    result.events.update(counting.events)
    result.virtual_seconds = loop.time()
    result.steps = loop.steps
    return result


# -- shrinking -------------------------------------------------------------------------


def _without_replica(scenario: Scenario) -> Scenario | None:
    if scenario.replicas <= 1:
        return None
    last = str(scenario.replicas - 1)
    faults = tuple(
        f for f in scenario.faults if not (f.kind in ("crash", "force") and f.target == last)
    )
    return replace(
        scenario, replicas=scenario.replicas - 1, skews=scenario.skews[:-1], faults=faults
    )


def _without_subscription(scenario: Scenario) -> Scenario | None:
    if scenario.subscriptions <= 1:
        return None
    last = f"sub-{scenario.subscriptions - 1}"
    faults = tuple(f for f in scenario.faults if f.target != last and f.mode != last)
    return replace(scenario, subscriptions=scenario.subscriptions - 1, faults=faults)


def shrink(
    scenario: Scenario, *, budget: int = 200, store_factory: StoreFactory | None = None
) -> tuple[Scenario, Result]:
    """The smallest plan found that still fails: drop faults, replicas, subscriptions greedily.

    Each candidate is a full run; a candidate is kept when it still fails.
    Dropping a fault shifts the seeded per-call draws of the rest, so the
    result is a small failing plan, not always the smallest.
    """
    best = scenario
    best_result = run(best, store_factory=store_factory)
    if best_result.ok:
        return best, best_result
    tries = 0
    progress = True
    while progress and tries < budget:
        progress = False
        candidates: list[Scenario] = []
        for smaller in (_without_replica(best), _without_subscription(best)):
            if smaller is not None:
                candidates.append(smaller)
        candidates += [
            replace(best, faults=best.faults[:i] + best.faults[i + 1 :])
            for i in range(len(best.faults))
        ]
        for candidate in candidates:
            tries += 1
            result = run(candidate, store_factory=store_factory)
            if not result.ok:
                best, best_result = candidate, result
                progress = True
                break
            if tries >= budget:
                break
    return best, best_result


__all__ = [
    "STRATEGIES",
    "Fault",
    "Result",
    "Scenario",
    "World",
    "generate",
    "run",
    "shrink",
    "strategy_of",
]
