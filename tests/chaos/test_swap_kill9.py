"""Scenario 8: `kill -9` at every step of a swap (docs/swap.md, section 3), then restart.

`rotation.strategy = "swap"` with claim_ttl = CLAIM_TTL and the shortest
overlap config validation allows (2 x claim_ttl). Every original is due, so
each trial swaps all of them; a kill lands at one step of one swap, held
open by a fault, and the step is confirmed from the emulators afterwards:

- after_claim: Vault is slow; the `swapping` claim lands after the kill, no create.
- create_applied_answer_lost: Monite applies the create and drops the answer (C4).
- create_in_flight: Monite hangs; the create is applied after the process died (C4).
- before_successor_commit: Vault refuses writes after the create; the
  successor's secret is only in memory when the process dies (C8).
- after_successor_commit: the successor's record is in Vault, the link refused (C9).
- after_link: an original is `retiring` and the process is still at work (C12).
- after_delete_claim: an original is `deleting`, its delete not sent (C13).
- delete_applied_answer_lost: Monite deletes the original, drops the answer (C14).
- random: a random moment of the create phase or of the delete phase.

The same mode restarts and converges. Claims, straggler windows and overlaps
are judged on Vault's clock, so the harness moves the Vault emulator's clock
to the next moment a record falls due instead of sleeping (`_converge_*`;
a running daemon would see the jump only at its next write, so the overlap of
a swap it starts passes in real time).
Recovery seconds run on Vault's clock from the kill to the end state, so the
time skipped counts as time passed: they read as the time a deployment would
take. The restart comes when the dead process's claims can be recovered.

Two of the three originals are twins (one triple), so step 3 serialises their
swaps and recovery must tell a twin's subscriptions from an orphan.

The end state (docs/swap.md, section 3): every original's lineage has exactly
one live subscription at Monite, `active` in Vault with Monite's current
secret; no subscription at Monite without its secret in Vault; no original
left listed or mid-swap, and each retired no earlier than its overlap's end,
pointing at its lineage's live subscription; no secret lost.

Also: SIGTERM while creates are at Monite (the drain commits every successor),
and a twin killed while backing off at step 3 (xfail: a known recovery bug).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rotator.model import DEFAULT_MAX_CLAIM_TTL, Record, Subscription, parse_time
from rotator.policy import Decision, Policy, decide, next_claim_expiry
from tests.chaos.conftest import WorldFactory
from tests.chaos.harness import (
    CLAIM_TTL,
    FIGURES,
    MOUNT,
    PREFIX,
    Proc,
    World,
    parallel,
    rng,
    tracebacks,
    trials,
    wait_until,
)

STEPS = (
    "after_claim",
    "create_applied_answer_lost",
    "create_in_flight",
    "before_successor_commit",
    "after_successor_commit",
    "after_link",
    "after_delete_claim",
    "delete_applied_answer_lost",
)
# Steps whose kill lands after the overlap: the swaps are linked first.
DELETE_PHASE = frozenset({"after_delete_claim", "delete_applied_answer_lost"})
SUBSCRIPTIONS = 3
TWIN_URL = "https://example.com/hooks/twins"
OVERLAP = 2 * CLAIM_TTL  # the least config validation allows
# docs/swap.md, section 8: overlap + 3T + 10 s, on Vault's clock.
RECOVERY_BOUND = OVERLAP + 3 * CLAIM_TTL + 10
MAX_CYCLES = 8  # `run --once` restarts before giving up
# Runs after a kill: recover the claim, swap again (the twin one run later),
# then delete (the twin's a run later). Bounded in runs, not seconds: on Vault's
# clock a run also counts its start-up under the suite's CPU load.
RUNS_BOUND = 5
DAEMON_WALL_BUDGET = 40.0  # seconds of real time a restarted daemon gets
SETTLE = 0.5  # seconds for requests a dead process left behind to finish at the emulators
SWAP_STATES = ("swapping", "retiring", "deleting")
POLICY = Policy(max_age=timedelta(days=30))  # the harness's policy.max_age
# States whose claim or window a dead process leaves behind.
CLAIM_STATES = frozenset({"swapping", "deleting", "rotating", "settling"})


@dataclass(frozen=True)
class Trial:
    step: str
    mode: str  # "once": kill `run --once`, recover with `run --once`; "daemon": `run`
    number: int


@dataclass(frozen=True)
class Result:
    trial: Trial
    reached: bool  # the emulators showed the intended step at the kill
    landed: str  # the swap states and orphans the kill left behind
    recovery_s: float  # Vault's clock, kill to end state (inf if never)
    runs: int  # `run --once` restarts it took (0 for the daemon)
    startup_s: float  # the restarted daemon's start-up, spawn to first cycle (0 for once)
    wall_s: float  # real time, kill to end state
    orphans_deleted: int  # `swap.orphan_deleted` in every process's audit log
    duplicates_left: int  # live subscriptions beyond one per original's lineage
    lost: int  # listed subscriptions whose current secret is not in Vault
    problems: list[str] = field(default_factory=list)  # end-state violations
    tracebacks: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------
# Reading the world


def _record(world: World, sid: str) -> Record | None:
    found = world.vault.kv_read_full(MOUNT, f"{PREFIX}/{sid}")
    if found is None:
        return None
    data, version, created = found
    return Record.from_vault(sid, data, version, parse_time(created))


def _vault_now(world: World) -> datetime:
    return datetime.fromtimestamp(world.vault.now(), UTC)


def _due_in(world: World, *, claims_only: bool = False) -> float:
    """Seconds of Vault's clock until a cycle has work: 0 when a decision rotates now, else
    until the next claim, window or overlap ends (call with no rotator running).

    `claims_only`: until the first claim or window a dead process left can be recovered.
    """
    listed = [world.monite.subscription(sid) for sid in world.monite.subscription_ids()]
    subscriptions = [
        Subscription(
            id=s["id"],
            url=s["url"],
            object_type=s["object_type"],
            status=s["status"],
            event_types=tuple(s["event_types"]),
        )
        for s in listed
    ]
    ids = {s.id for s in subscriptions} | set(world.seeded)
    records = {r.subscription_id: r for r in map(lambda sid: _record(world, sid), ids) if r}
    now = _vault_now(world)
    ttl = timedelta(seconds=CLAIM_TTL)
    decisions = decide(
        subscriptions,
        records,
        POLICY,
        now,
        max_claim_ttl=DEFAULT_MAX_CLAIM_TTL,
        claim_ttl=ttl,
        strategy="swap",
    )
    # A swap backs off while a twin is `swapping` (step 3): no work until that one moves on.
    busy = {r.triple: r.subscription_id for r in records.values() if r.state == "swapping"}

    def works(d: Decision) -> bool:
        sub = d.subscription
        twin = busy.get((sub.url, sub.object_type, tuple(sorted(sub.event_types))))
        return d.rotate and (d.strategy != "swap" or twin in (None, sub.id))

    if claims_only:
        records = {i: r for i, r in records.items() if r.state in CLAIM_STATES}
    elif any(works(d) for d in decisions):
        return 0.0
    expiry = next_claim_expiry(records.values(), now, DEFAULT_MAX_CLAIM_TTL, ttl)
    return 0.0 if expiry is None else max(0.0, (expiry - now).total_seconds())


def _states(world: World) -> list[str]:
    return [str((world.record(sid) or {}).get("state")) for sid in world.seeded]


def _orphans(world: World) -> list[str]:
    """Listed subscriptions with no record: nobody knows their secret."""
    return [sid for sid in world.monite.subscription_ids() if world.record(sid) is None]


def _landed(world: World) -> str:
    states = _states(world)
    parts = [f"{s}={states.count(s)}" for s in (*SWAP_STATES, "retired") if s in states]
    return " ".join([*parts, f"orphans={len(_orphans(world))}"])


def _lineage_live(world: World, original: str) -> list[str]:
    """Listed subscriptions of `original`'s lineage: itself, or ones descending from it."""
    return [
        sid
        for sid in world.monite.subscription_ids()
        if sid == original or original in ((world.record(sid) or {}).get("lineage") or [])
    ]


def end_state(world: World) -> list[str]:
    """What breaks the end state of docs/swap.md; empty once every original is swapped."""
    problems = []
    listed = world.monite.subscription_ids()
    for sid in listed:
        record = world.record(sid)
        if record is None:
            problems.append(f"{sid}: at Monite, no record (secret unknown)")
        elif record.get("secret") != world.monite.current_secret(sid):
            problems.append(f"{sid}: Monite's current secret is not in Vault")
        elif record.get("state") != "active":
            problems.append(f"{sid}: listed, record {record.get('state')}")
    for original in world.seeded:
        live = _lineage_live(world, original)
        if len(live) != 1:
            problems.append(f"{original}: {len(live)} live subscriptions in its lineage")
        state = (world.record(original) or {}).get("state")
        if original in listed and state != "active":
            problems.append(f"{original}: original listed, record {state}")
        if original not in listed and state != "retired":
            problems.append(f"{original}: original gone, record {state}")
        kept = _record(world, original) if original in live and state == "active" else None
        age = None if kept is None else kept.age(_vault_now(world))
        if kept is not None and (age is None or age >= POLICY.max_age):
            problems.append(f"{original}: neither swapped nor regenerated (still due)")
        retired = _record(world, original) if state == "retired" else None
        if retired is not None and retired.successor_id not in live:
            problems.append(f"{original}: retired, its successor is not its lineage's live one")
        if retired is not None and not (
            retired.overlap_ends_at is not None
            and retired.retired_at is not None
            and retired.overlap_ends_at <= retired.retired_at
        ):
            problems.append(f"{original}: retired before its overlap ended")
    if len(listed) != len(world.seeded):
        problems.append(f"{len(listed)} subscriptions listed for {len(world.seeded)} lineages")
    return problems


def _settled(world: World) -> bool:
    """The end state, read while a daemon may be deleting subscriptions."""
    try:
        return not end_state(world)
    except KeyError:  # a subscription went away between two reads: look again
        return False


def _count(procs: list[Proc], event: str) -> int:
    return sum(1 for p in procs for e in p.events() if e.get("event") == event)


# ---------------------------------------------------------------------------
# Killing at a step


def _cfg(world: World) -> Path:
    return world.config(rotation={"strategy": "swap", "overlap": f"{OVERLAP:g}s", "concurrency": 1})


def _clear_faults(world: World) -> None:
    world.monite.faults.latency = 0.0
    world.monite.faults.hang = 0.0
    world.monite.faults.drop_after_create = 0
    world.monite.faults.drop_after_delete = 0
    world.vault.faults.latency = 0.0
    world.vault.faults.fail_writes = 0


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    """`wait_until` every 10 ms: tight enough for every window here (0.2 s or more),
    loose enough that 18 trials polling leave the emulators' threads the GIL."""
    return wait_until(predicate, timeout, 0.01)


def _kill_at(world: World, trial: Trial, cfg: Path, delay: float) -> tuple[bool, float]:
    """Start a rotator, hold the step's window open, kill -9 in it; (reached, kill time)."""
    monite, vault = world.monite, world.vault
    args = ("run", "--once") if trial.mode == "once" else ("run",)
    step = trial.step
    late = step in DELETE_PHASE or (step == "random" and delay >= 1.0)
    reached = True
    if late:
        world.run_once(config=cfg)  # every original swapped, `retiring`
        reached = ["retiring"] * SUBSCRIPTIONS == _states(world)
    if step == "after_claim":
        vault.faults.latency = 0.4
    elif step == "create_applied_answer_lost":
        monite.faults.latency = 0.1
        monite.faults.drop_after_create = 1
    elif step == "create_in_flight":
        monite.faults.hang = 0.6
    elif step in ("before_successor_commit", "after_link"):
        monite.faults.latency = 0.2
    elif step == "after_successor_commit":
        vault.faults.latency = 0.25
    elif step == "after_delete_claim":
        monite.faults.hang = 0.6  # the check of the successor (GET) waits at Monite
    elif step == "delete_applied_answer_lost":
        monite.faults.latency = 0.2  # the client's retry of the delete comes late
        monite.faults.drop_after_delete = 1
    else:  # random
        monite.faults.latency = 0.1
    if late:
        _advance_to_work(world)  # the overlaps end
    lists = monite.request_count("list")
    proc = world.spawn(*args, config=cfg)
    listed = set(world.seeded)

    def created() -> bool:
        return bool(set(monite.subscription_ids()) - listed)

    def state_seen(state: str) -> Callable[[], bool]:
        return lambda: state in _states(world)

    if step == "after_claim":
        writes = vault.request_count("kv_write")
        reached = _wait(lambda: vault.request_count("kv_write") > writes, 20)
        at = proc.kill9()
        # The claim write is still in Vault's hands: it lands, and Monite is never asked.
        reached = reached and _wait(state_seen("swapping"), 20)
        reached = reached and 0 == monite.request_count("create")
    elif step == "create_applied_answer_lost":
        reached = _wait(created, 20)
        at = proc.kill9()
        reached = reached and bool(_orphans(world))
    elif step == "create_in_flight":
        reached = _wait(lambda: monite.request_count("create") >= 1, 20)
        at = proc.kill9()
        # Monite applies the create after the hang; its answer has nobody to go to.
        reached = reached and _wait(created, 20) and bool(_orphans(world))
    elif step == "before_successor_commit":
        reached = _wait(lambda: monite.request_count("create") >= 1, 20)
        # The claim is in (the create follows it); from now on Vault refuses writes.
        vault.faults.fail_writes = 10**6
        writes = vault.request_count("kv_write")
        reached = reached and _wait(
            lambda: created() and vault.request_count("kv_write") > writes, 30
        )
        at = proc.kill9()
        reached = reached and bool(_orphans(world))
    elif step == "after_successor_commit":

        def committed() -> bool:
            return any(world.record(s) for s in set(monite.subscription_ids()) - listed)

        reached = _wait(committed, 20)
        vault.faults.fail_writes = 10**6  # the link, still in Vault's hands, is refused
        at = proc.kill9()
    elif step == "after_link":
        reached = _wait(state_seen("retiring"), 20)
        reached = reached and proc.alive()
        at = proc.kill9()
    elif step == "after_delete_claim":
        reached = reached and _wait(state_seen("deleting"), 20)
        at = proc.kill9()
        reached = reached and 0 == monite.request_count("delete")
    elif step == "delete_applied_answer_lost":

        def deleted_unanswered() -> bool:
            return bool(listed - set(monite.subscription_ids())) and "deleting" in _states(world)

        reached = reached and _wait(deleted_unanswered, 20)
        at = proc.kill9()
    else:  # random: a moment of the cycle, from its listing on
        reached = reached and _wait(lambda: monite.request_count("list") > lists, 20)
        time.sleep(delay % 1.0 * 0.8)
        at = proc.kill9()
    time.sleep(SETTLE + max(monite.faults.hang, vault.faults.latency))
    _clear_faults(world)
    if step == "after_successor_commit":  # the successor's record is in, the link is not
        reached = reached and "swapping" in _states(world)
    return reached, at


# ---------------------------------------------------------------------------
# Recovery


def _advance_to_work(world: World, *, claims_only: bool = False) -> None:
    """Move Vault's clock to the moment a cycle has work (no rotator may be running)."""
    wait = _due_in(world, claims_only=claims_only)
    if wait > 0:
        world.vault.advance_time(wait + 0.2)


def _converge_once(world: World, cfg: Path) -> int:
    """`run --once` until the end state; between runs Vault's clock moves to the next due.

    The first run comes when the dead process's claims can be recovered.
    Returns the runs it took (MAX_CYCLES + 1 when it never got there).
    """
    _advance_to_work(world, claims_only=True)
    for runs in range(1, MAX_CYCLES + 1):
        world.run_once(config=cfg)
        if not end_state(world):
            return runs
        _advance_to_work(world)
    return MAX_CYCLES + 1


def _startup_s(proc: Proc, spawned: float) -> float:
    """Seconds from the spawn (`time.time()`) to the process's first cycle: its start-up."""
    for event in proc.events():
        if event.get("event") == "cycle.started":
            at = datetime.fromisoformat(str(event.get("timestamp")).replace("Z", "+00:00"))
            return max(0.0, at.timestamp() - spawned)
    return 0.0


def _converge_daemon(world: World, cfg: Path) -> tuple[bool, float]:
    """A restarted `rotator run` until the end state; (reached, its start-up seconds).

    It starts when the dead process's claims can be recovered.

    Vault's clock moves only before the start: a running daemon's estimate of
    Vault's time is a lower bound carried from its own last write, so it would
    not see a jump until it wrote again. Later windows (the overlap of a new
    swap) pass in real time.
    """
    _advance_to_work(world, claims_only=True)
    spawned = time.time()
    daemon = world.spawn("run", config=cfg)
    deadline = time.monotonic() + DAEMON_WALL_BUDGET
    done = False
    try:
        while time.monotonic() < deadline and not done:
            done = _settled(world)
            time.sleep(0.25)
    finally:
        daemon.signal(signal.SIGTERM)
        if daemon.wait(25) is None:
            daemon.close()
        daemon.remember()
    return done, _startup_s(daemon, spawned)


def _run_trial(make_world: WorldFactory, trial: Trial, delay: float) -> Result:
    world = make_world()
    # Two twins (one triple: swapped one at a time, step 3) and one of its own.
    world.seed(2, managed=True, age_days=31, url=TWIN_URL)
    world.seed(SUBSCRIPTIONS - 2, managed=True, age_days=31)
    cfg = _cfg(world)
    reached, killed_at = _kill_at(world, trial, cfg, delay)
    landed = _landed(world)
    vault_at_kill = world.vault.now() - (time.monotonic() - killed_at)
    startup_s = 0.0
    if trial.mode == "once":
        runs = _converge_once(world, cfg)
        done = runs <= MAX_CYCLES
    else:
        runs, (done, startup_s) = 0, _converge_daemon(world, cfg)
    everyone = world.procs
    listed = world.monite.subscription_ids()
    live = {sid for original in world.seeded for sid in _lineage_live(world, original)}
    return Result(
        trial=trial,
        reached=reached,
        landed=landed,
        recovery_s=world.vault.now() - vault_at_kill if done else float("inf"),
        runs=runs,
        startup_s=startup_s,
        wall_s=time.monotonic() - killed_at,
        orphans_deleted=_count(everyone, "swap.orphan_deleted"),
        duplicates_left=len(listed)
        - len(live)
        + sum(len(_lineage_live(world, o)) > 1 for o in world.seeded),
        lost=len(world.mismatched()),
        problems=end_state(world),
        tracebacks=tracebacks(everyone),
    )


# ---------------------------------------------------------------------------
# The tests


def _plan(mode: str, per_step: int, random_trials: int) -> list[Trial]:
    plan = [Trial(step, mode, n) for step in STEPS for n in range(per_step)]
    return plan + [Trial("random", mode, n) for n in range(random_trials)]


def _record_figures(results: list[Result]) -> None:
    print("\nswap kill -9: mode step reached landed recovery_s wall_s runs|startup_s orphans dups")
    for r in results:
        mode = r.trial.mode
        command = "run --once" if mode == "once" else "run"
        print(
            f"  {mode:6} {r.trial.step:27} {r.reached!s:5} {r.landed:34}"
            f" {r.recovery_s:5.1f} {r.wall_s:5.1f}"
            f" {r.runs if mode == 'once' else round(r.startup_s, 1):4} {r.orphans_deleted:2}"
            f" {r.duplicates_left:2}"
        )
        FIGURES.add(
            f"8-swap-kill9-{mode}",
            title=f"kill -9 of `{command}` at each step of a swap",
            command="CHAOS_PROFILE=full .venv/bin/pytest tests/chaos/test_swap_kill9.py -k kill9",
            fault=f"kill -9 {r.trial.step}",
            lost=r.lost,
            recovery_s=r.recovery_s,
            orphans_deleted=r.orphans_deleted,
            duplicates_left=r.duplicates_left,
            wall_s=round(r.wall_s, 1),
            **({"runs": r.runs} if mode == "once" else {"startup_s": round(r.startup_s, 1)}),
            **{
                f"recovery_s[{r.trial.step}]": round(r.recovery_s, 1),
                f"reached[{r.trial.step}]": r.reached,
            },
        )


def _in_bound(r: Result) -> bool:
    """`run --once` within RUNS_BOUND runs; the daemon within docs/swap.md's bound on Vault's
    clock, its own start-up (an interpreter starting under the suite's CPU load) left out."""
    if r.trial.mode == "once":
        return r.runs <= RUNS_BOUND
    return r.recovery_s - r.startup_s <= RECOVERY_BOUND


@pytest.mark.timeout(300)
def test_swap_kill9_of_run_once_and_daemon_at_every_step(make_world: WorldFactory) -> None:
    """kill -9 at every swap step, then restart: one live, known subscription per lineage."""
    random = rng("swap-kill9")
    once, daemon = (
        _plan("once", trials(1, 3), trials(1, 8)),
        _plan("daemon", trials(1, 3), trials(1, 8)),
    )
    # Interleaved: daemon trials mostly wait out overlaps in real time, `run --once`
    # trials mostly start processes, so the CPU is shared evenly.
    plan = [trial for pair in zip(once, daemon, strict=True) for trial in pair]
    delays = [random.uniform(0.0, 2.0) for _ in plan]
    results = parallel(
        lambda i: _run_trial(make_world, plan[i], delays[i]), range(len(plan)), trials(18, 10)
    )
    _record_figures(results)
    expected = [(r.trial, True, [], 0, 0, True, []) for r in results]
    actual = [
        (
            r.trial,
            r.reached,
            r.problems,
            r.lost,
            r.duplicates_left,
            _in_bound(r),
            r.tracebacks,
        )
        for r in results
    ]
    assert expected == actual, [(r.trial, r.landed, round(r.recovery_s, 1)) for r in results]


# ---------------------------------------------------------------------------
# SIGTERM mid-swap


@dataclass(frozen=True)
class Stop:
    delay: float  # seconds after Monite received the first create
    exit_code: int | None
    creates: int  # creates Monite had received when the signal was sent
    orphans: list[str]  # listed without a record: a successor whose secret nobody knows
    mid_swap: list[str]  # originals left `swapping` or `deleting`
    mismatched: list[str]  # listed, Monite's current secret not in Vault
    tracebacks: list[str]


def _sigterm_mid_swap(make_world: WorldFactory, delay: float) -> Stop:
    world = make_world()
    world.seed(2, managed=True, age_days=31, url=TWIN_URL)
    world.seed(SUBSCRIPTIONS - 2, managed=True, age_days=31)
    world.monite.faults.latency = 0.2  # each create is in Monite's hands this long
    cfg = world.config(rotation={"strategy": "swap", "overlap": f"{OVERLAP:g}s"})
    proc = world.spawn("run", config=cfg)
    wait_until(lambda: world.monite.request_count("create") >= 1, 20, 0.005)
    time.sleep(delay)
    creates = world.monite.request_count("create")
    proc.signal(signal.SIGTERM)
    code = proc.wait(30)
    proc.close()
    time.sleep(SETTLE)  # requests the process left behind finish at the emulators
    world.monite.faults.latency = 0.0
    return Stop(
        delay=round(delay, 2),
        exit_code=code,
        creates=creates,
        orphans=_orphans(world),
        mid_swap=[
            sid
            for sid in world.seeded
            if (world.record(sid) or {}).get("state") in ("swapping", "deleting")
        ],
        mismatched=world.mismatched(),
        tracebacks=tracebacks([proc]),
    )


@pytest.mark.timeout(120)
def test_sigterm_mid_swap_never_leaves_a_successor_without_its_record(
    make_world: WorldFactory,
) -> None:
    """SIGTERM while creates are at Monite: the drain commits every successor; exit 0."""
    random = rng("swap-sigterm")
    delays = [random.uniform(0.0, 0.4) for _ in range(trials(3, 12))]
    stops = parallel(lambda d: _sigterm_mid_swap(make_world, d), delays, workers=4)
    for stop in stops:
        FIGURES.add(
            "8b-swap-sigterm",
            title="SIGTERM to the daemon while a swap's create is at Monite",
            command="CHAOS_PROFILE=full .venv/bin/pytest tests/chaos/test_swap_kill9.py -k sigterm",
            fault="SIGTERM after the first create",
            lost=len(stop.mismatched),
            orphans_left=len(stop.orphans),
            creates_before_signal=stop.creates,
        )
    expected = [(s.delay, 0, True, [], [], [], []) for s in stops]
    actual = [
        (s.delay, s.exit_code, s.creates >= 1, s.orphans, s.mid_swap, s.mismatched, s.tracebacks)
        for s in stops
    ]
    assert expected == actual


# ---------------------------------------------------------------------------
# Twins: a kill at step 3 leaves two intents on one triple unresolved


@pytest.mark.timeout(60)
def test_a_twin_killed_while_backing_off_leaves_the_other_twins_orphan_alone(
    make_world: WorldFactory,
) -> None:
    """A twin's intent left `swapping` at step 3 deletes nothing and counts no failure."""
    world = make_world()
    twins = world.seed(2, managed=True, age_days=31, url=TWIN_URL)
    cfg = _cfg(world)  # concurrency 1: the first twin creates, then the second claims
    world.monite.faults.drop_after_create = 1  # the first twin's create: an orphan (C4)
    world.vault.faults.latency = 0.05
    proc = world.spawn("run", "--once", config=cfg)
    both = _wait(lambda: ["swapping"] * 2 == _states(world), 20)
    world.vault.faults.fail_writes = 10**6  # the second twin's release (step 3) never lands
    proc.kill9()
    time.sleep(SETTLE)
    _clear_faults(world)
    claims = [r for r in (_record(world, sid) for sid in twins) if r is not None]
    # The later claim (Vault's created_time) is the twin that backed off.
    backed_off = max(claims, key=lambda r: (str(r.created_time), r.subscription_id))
    _advance_to_work(world, claims_only=True)
    run = world.run_once(config=cfg)
    released = _record(world, backed_off.subscription_id)
    # One orphan, deleted by the intent that created it; the other intent undone without
    # a failure (it never created anything). When the older intent's recovery runs
    # first, the other's finds the orphan gone (at most one DELETE answered 404).
    assert (True, 1, True, 0) == (
        both,
        _count([run], "swap.orphan_deleted"),
        len(world.monite.request_ids("delete", 404)) <= 1,
        None if released is None else released.swap_failures,
    )
