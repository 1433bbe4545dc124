"""The HTTP endpoint, the readiness probe cache and the metrics, in process with fakes."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import resource
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rotator.clock import SystemClock
from rotator.engine import CycleReport, Outcome
from rotator.health import MAX_CONNECTIONS, CachedProbe, HealthServer, Routes, Verdict
from rotator.metrics import CONTENT_TYPE, Metrics
from rotator.model import Record, Subscription
from rotator.policy import Decision
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from tests.conftest import remember_output
from tests.daemon_harness import PREFIX, Config, DaemonProcess


class StoppedClock(SystemClock):
    """The real sleep, but wall and monotonic time stand still until a test moves them."""

    def __init__(self, wall: datetime, monotonic: float = 100.0) -> None:
        self.wall = wall
        self.seconds = monotonic

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.seconds


async def fetch(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole answer: (status, lower-cased headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


@pytest.fixture
async def server() -> object:
    """A HealthServer on an ephemeral port whose answers the test controls through `state`."""
    state = {"live": True, "ready": False}

    async def ready() -> Verdict:
        return Verdict(state["ready"], {"ready": state["ready"], "reasons": ["vault: sealed"]})

    routes = Routes(
        live=lambda: Verdict(state["live"], {"status": "ok"}),
        ready=ready,
        metrics=lambda: b"rotator_up 1\n",
        metrics_content_type=CONTENT_TYPE,
    )
    health = HealthServer(routes, "127.0.0.1", 0)
    await health.start()
    yield health, state
    await health.close()


async def test_routes_answer_with_status_and_json(server: tuple[HealthServer, dict]) -> None:
    """/healthz and /readyz answer 200 or 503 with JSON; /metrics serves the exposition text."""
    health, state = server
    port = health.address[1]
    status, headers, body = await fetch(port, get("/healthz"))
    assert (200, "application/json") == (status, headers["content-type"])
    assert {"status": "ok"} == json.loads(body)
    status, _, body = await fetch(port, get("/readyz"))
    assert 503 == status
    assert ["vault: sealed"] == json.loads(body)["reasons"]
    state["ready"] = True
    assert 200 == (await fetch(port, get("/readyz?verbose=1")))[0]
    status, headers, body = await fetch(port, get("/metrics"))
    assert (200, "text/plain; version=0.0.4; charset=utf-8") == (status, headers["content-type"])
    assert b"rotator_up 1\n" == body
    state["live"] = False
    assert 503 == (await fetch(port, get("/healthz")))[0]


async def test_unknown_paths_methods_and_garbage(server: tuple[HealthServer, dict]) -> None:
    """Unknown paths are 404, other methods 405, HEAD has no body, garbage is 400."""
    health, _ = server
    port = health.address[1]
    assert 404 == (await fetch(port, get("/admin")))[0]
    status, headers, _ = await fetch(port, get("/metrics", method="POST"))
    assert (405, "GET, HEAD") == (status, headers["allow"])
    status, headers, body = await fetch(port, get("/healthz", method="HEAD"))
    assert (200, b"") == (status, body)
    assert int(headers["content-length"]) > 0
    assert 400 == (await fetch(port, b"hello\r\n\r\n"))[0]
    assert (
        431 == (await fetch(port, b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n"))[0]
    )


async def test_close_drops_idle_connections(server: tuple[HealthServer, dict]) -> None:
    """Closing the server does not wait for a client that never finishes its request."""
    health, _ = server
    reader, writer = await asyncio.open_connection("127.0.0.1", health.address[1])
    writer.write(b"GET /healthz HTTP/1.1\r\n")
    await writer.drain()
    await asyncio.sleep(0.05)
    await asyncio.wait_for(health.close(), timeout=2)
    try:
        # the server hung up on the idle client: end of stream, no answer
        assert b"" == await asyncio.wait_for(reader.read(), timeout=2)
    finally:
        writer.close()


def plain_routes(metrics: bytes = b"rotator_up 1\n") -> Routes:
    async def ready() -> Verdict:
        return Verdict(True, {"ready": True})

    return Routes(
        live=lambda: Verdict(True, {"status": "ok"}),
        ready=ready,
        metrics=lambda: metrics,
        metrics_content_type=CONTENT_TYPE,
    )


async def hung_up(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the server closed the connection without an answer within `within` seconds."""
    try:
        return b"" == await asyncio.wait_for(reader.read(), timeout=within)
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def test_idle_connections_beyond_the_cap_make_room_for_probes() -> None:
    """Cap 4, 10 idle connections: 6 oldest closed at once, /healthz answers, the rest time out."""
    health = HealthServer(plain_routes(), "127.0.0.1", 0, max_connections=4, read_timeout=1.0)
    await health.start()
    port = health.address[1]
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(10):
            idle.append(await asyncio.open_connection("127.0.0.1", port))
            await asyncio.sleep(0.01)  # the server takes each one before the next arrives
        closed = await asyncio.gather(*(hung_up(reader, 0.3) for reader, _ in idle))
        assert ([True] * 6 + [False] * 4, 4) == (closed, health.open_connections)
        assert 200 == (await asyncio.wait_for(fetch(port, get("/healthz")), timeout=2))[0]
        answers = await asyncio.gather(
            *(asyncio.wait_for(reader.read(), timeout=3) for reader, _ in idle[7:])
        )
        assert [b"HTTP/1.1 408"] * 3 == [answer[:12] for answer in answers]
        await asyncio.sleep(0.05)
        assert 0 == health.open_connections
    finally:
        for _, writer in idle:
            writer.close()
        await health.close()


async def test_liveness_probe_gets_in_while_slow_readiness_checks_fill_the_cap() -> None:
    """Cap 2, both held connections waiting on a slow readiness check: /healthz is answered.

    The oldest of the two is hung up on to make room; the other is answered
    once the check returns.
    """
    release = asyncio.Event()

    async def slow_ready() -> Verdict:
        await release.wait()
        return Verdict(True, {"ready": True})

    routes = plain_routes()
    routes = Routes(routes.live, slow_ready, routes.metrics, routes.metrics_content_type)
    health = HealthServer(routes, "127.0.0.1", 0, max_connections=2, read_timeout=2.0)
    await health.start()
    port = health.address[1]
    try:
        oldest = asyncio.create_task(fetch(port, get("/readyz")))
        await asyncio.sleep(0.1)
        newer = asyncio.create_task(fetch(port, get("/readyz")))
        await asyncio.sleep(0.1)
        live = await asyncio.wait_for(fetch(port, get("/healthz")), 2.0)
        release.set()
        answers = await asyncio.gather(oldest, newer, return_exceptions=True)
        statuses = [a[0] if isinstance(a, tuple) else None for a in answers]
        assert (200, [None, 200]) == (live[0], statuses)
    finally:
        release.set()
        await health.close()


async def test_client_that_never_reads_its_answer_is_dropped() -> None:
    """A client that asks for a 32 MB answer and never reads it is dropped after the timeout."""
    health = HealthServer(plain_routes(b"x" * (32 << 20)), "127.0.0.1", 0, read_timeout=0.5)
    await health.start()
    _, writer = await asyncio.open_connection("127.0.0.1", health.address[1])
    try:
        writer.write(get("/metrics"))
        await writer.drain()
        await asyncio.sleep(0.2)
        assert 1 == health.open_connections
        for _ in range(30):  # bounded: 3 s
            if not health.open_connections:
                break
            await asyncio.sleep(0.1)
        assert 0 == health.open_connections
    finally:
        writer.close()
        await health.close()


async def test_probe_is_cached_and_shared() -> None:
    """Concurrent and repeated readiness probes within the ttl run the check once."""
    calls = []
    clock = StoppedClock(datetime(2024, 6, 1, tzinfo=UTC))

    async def check() -> None:
        calls.append(1)
        await asyncio.sleep(0.05)
        raise RuntimeError("Vault is sealed")

    probe = CachedProbe(check, ttl=5, timeout=1, clock=clock)
    results = await asyncio.gather(*(probe.result() for _ in range(5)))
    assert ["Vault is sealed"] * 5 == results
    assert "Vault is sealed" == await probe.result()
    assert 1 == len(calls)
    clock.seconds += 6
    await probe.result()
    assert 2 == len(calls)


async def test_probe_times_out() -> None:
    """A check that hangs is a reason to be unready, reported within the timeout."""

    async def hang() -> None:
        await asyncio.sleep(30)

    probe = CachedProbe(hang, ttl=5, timeout=0.1)
    assert "no answer within 0.1s" == await asyncio.wait_for(probe.result(), timeout=2)


def _decision(sub_id: str, record: Record, reason: str) -> Decision:
    sub = Subscription(
        id=sub_id,
        url="https://example.com/h",
        object_type="payable",
        event_types=("created",),
        status="enabled",
    )
    action = "rotate" if reason in ("unmanaged", "max_age_exceeded") else "skip"
    return Decision(sub, record, action, reason, None, timedelta(days=30))


def test_metrics_from_a_cycle_report() -> None:
    """A report becomes counters, histograms and gauges with Prometheus names and units."""
    start = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    old = Record("b", version=3, rotated_at=start - timedelta(days=10))
    report = CycleReport(
        run_id="r1",
        started_at=start,
        finished_at=start + timedelta(seconds=2),
        decisions=[
            _decision("a", Record("a"), "unmanaged"),
            _decision("b", old, "fresh"),
            _decision("c", Record("c"), "unmanaged_skip"),
        ],
        outcomes=[
            Outcome("a", "payable", "rotated", "unmanaged", exposure_seconds=0.004),
            Outcome("b", "payable", "skipped", "fresh"),
            Outcome("c", "payable", "skipped", "unmanaged_skip"),
        ],
        orphans=["z"],
    )
    metrics = Metrics(clock=StoppedClock(start + timedelta(days=11)))
    metrics.observe(report)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }
    assert 1.0 == samples[("rotator_rotations_total", (("outcome", "rotated"),))]
    assert 2.0 == samples[("rotator_rotations_total", (("outcome", "skipped"),))]
    assert 0.0 == samples[("rotator_rotations_total", (("outcome", "failed"),))]
    assert 1.0 == samples[("rotator_cycles_total", (("result", "ok"),))]
    assert 1.0 == samples[("rotator_cycle_duration_seconds_count", ())]
    assert 2.0 == samples[("rotator_cycle_duration_seconds_sum", ())]
    assert 1.0 == samples[("rotator_exposure_window_seconds_bucket", (("le", "0.005"),))]
    assert 0.0 == samples[("rotator_exposure_window_seconds_bucket", (("le", "0.0025"),))]
    assert 21 * 86400.0 == samples[("rotator_oldest_managed_secret_age_seconds", ())]
    assert 1.0 == samples[("rotator_unmanaged_subscriptions", ())]
    assert 1.0 == samples[("rotator_orphaned_records", ())]
    assert (start + timedelta(seconds=2)).timestamp() == samples[
        ("rotator_last_success_timestamp_seconds", ())
    ]


def test_failed_cycle_keeps_gauges() -> None:
    """A cycle that could not run counts as an error and leaves the last gauges alone."""
    start = datetime(2024, 6, 1, tzinfo=UTC)
    metrics = Metrics()
    ok = CycleReport(run_id="1", started_at=start, finished_at=start, orphans=["x", "y"])
    metrics.observe(ok)
    metrics.observe(CycleReport(run_id="2", started_at=start, finished_at=start, error="down"))
    registry = metrics.registry
    assert 1.0 == registry.get_sample_value("rotator_cycles_total", {"result": "error"})
    assert 2.0 == registry.get_sample_value("rotator_orphaned_records")


# ---------------------------------------------------------------------------
# A real daemon under a flood of idle connections to its probe port
# ---------------------------------------------------------------------------

FLOOD = 300
FD_LIMIT = 128  # the daemon's open-file limit in the flood test


def probe_connections_held(pid: int, port: int) -> int:
    """How many connections to `port` process `pid` holds open (not its listening socket)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            listening = "0A" == fields[3]
            if local_port == port and not listening and fields[9] in inodes:
                held += 1
    return held


def healthz_status(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        remember_output(response.read().decode())
        return response.status
    finally:
        conn.close()


def test_idle_connection_flood_starves_neither_probes_nor_rotations(
    tmp_path: Path, monite: MoniteEmulator, vault: VaultEmulator, vault_token: str
) -> None:
    """300 idle probe connections, 128 files: the daemon holds 32, /healthz answers, all rotate."""
    ids = [monite.seed() for _ in range(3)]
    vault.seal()  # the daemon waits in preflight: endpoint up, no cycle yet
    config = Config(tmp_path, monite, vault, vault_token)
    config.write()
    daemon = DaemonProcess(config.path)
    flood: list[socket.socket] = []
    try:
        daemon.wait_for("daemon.preflight_failed")
        pid = daemon.proc.pid
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
        for _ in range(FLOOD):
            sock = socket.socket()
            flood.append(sock)
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", config.port))
        held = []
        for _ in range(8):  # bounded: about a second
            time.sleep(0.12)
            held.append(probe_connections_held(pid, config.port))
        # The cap is reached and held. The count is of sockets the kernel still
        # shows the process holding: the one being accepted and up to two evicted
        # ones whose close has not finished yet (seen under CI load) come on top,
        # against 300 offered.
        too_many = [n for n in held if n > MAX_CONNECTIONS + 2]
        assert (True, []) == (max(held) >= MAX_CONNECTIONS, too_many)
        assert 200 == healthz_status(config.port)
        vault.unseal()
        # Preflight retries with full jitter, doubling from 2 s up to 60 s: after a
        # few sealed attempts the next one may be half a minute away.
        daemon.wait_for("cycle.finished", timeout=70)
        assert 200 == healthz_status(config.port)
        assert [monite.current_secret(sid) for sid in ids] == [
            (vault.kv_read("secret", f"{PREFIX}/{sid}") or ({},))[0].get("secret") for sid in ids
        ]
        assert [] == [e for e in daemon.events if e["level"] in ("error", "critical")]
        assert 0 == daemon.stop()
    finally:
        for sock in flood:
            sock.close()
        daemon.close()
