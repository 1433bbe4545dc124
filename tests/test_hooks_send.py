"""One hook attempt: every command is reaped on every path; a URL hook reads Retry-After.

Commands are small Python scripts; which processes the hooks started is seen
by wrapping the running loop's `subprocess_exec`, and whether each one was
reaped by asking the kernel (`os.waitpid` with WNOHANG). URL hooks talk to an
`httpx.MockTransport`: no socket at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from rotator.config import HookSettings
from rotator.hooks import Hooks, Notice
from rotator.retry import Backoff, full_jitter
from rotator.secret import Secret
from tests.clocks import FakeClock
from tests.conftest import capture_audit

KEY = Secret("hook-key-5e1b7d3f9a2c4e6b8d0f1a3c5e7b9d2f")
ONCE = Backoff(attempts=1, base=0.1, cap=0.1)
# Long enough for a Python script to start and print, short enough to keep the tests fast.
TIMEOUT = timedelta(milliseconds=500)


def notice(version: int) -> Notice:
    return Notice(
        event="rotation.succeeded",
        subscription_id="sub-1",
        object_type="payable",
        vault_mount="secret",
        vault_path="monite/webhooks/sub-1",
        vault_version=version,
        secret_fingerprint="0123456789ab",
        rotated_at="2024-06-01T00:00:00Z",
    )


def command_hooks(tmp_path: Path, script: str, timeout: timedelta, **kwargs: Any) -> Hooks:
    path = tmp_path / "hook.py"
    path.write_text(script)
    hook = HookSettings(command=(sys.executable, str(path)), secret=KEY, timeout=timeout)
    return Hooks([hook], vault_mount="secret", vault_prefix="monite/webhooks", **kwargs)


def child_state(pid: int) -> str:
    """What became of our child `pid`: reaped (waited for), a zombie (reaped now), or running."""
    try:
        found, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # no child of ours by that pid: it was waited for
        return "reaped"
    return "running" if 0 == found else "zombie"


@pytest.fixture
async def spawned(monkeypatch: pytest.MonkeyPatch) -> asyncio.Queue[int]:
    """The pid of every process started on this test's loop, in the order they start."""
    loop = asyncio.get_running_loop()
    started: asyncio.Queue[int] = asyncio.Queue()
    real = loop.subprocess_exec

    async def spawn(*args: Any, **kwargs: Any) -> Any:
        transport, protocol = await real(*args, **kwargs)
        started.put_nowait(transport.get_pid())
        return transport, protocol

    monkeypatch.setattr(loop, "subprocess_exec", spawn)
    return started


def failures(captured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in captured if "hook.failed" == e["event"]]


SCRIPTS = {
    "exit 0": "import sys\nsys.stdin.read()\n",
    "exit 3": "import sys\nsys.stdin.read()\nsys.exit(3)\n",
    "killed": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    "outlives its timeout": "import time\ntime.sleep(60)\n",
}


@pytest.mark.parametrize("script", SCRIPTS.values(), ids=SCRIPTS.keys())
async def test_every_command_is_reaped_whatever_its_outcome(
    tmp_path: Path, spawned: asyncio.Queue[int], script: str
) -> None:
    """Success, a non-zero exit, a signal or a kill at the timeout: no zombie is left."""
    hooks = command_hooks(tmp_path, script, TIMEOUT, backoff=ONCE)
    with capture_audit():
        hooks.notify(notice(1))
        await hooks.idle()
        await hooks.aclose(0.0)
    assert ["reaped"] == [child_state(spawned.get_nowait()) for _ in range(spawned.qsize())]


async def test_a_descendant_holding_the_output_cannot_keep_a_killed_command_unreaped(
    tmp_path: Path, spawned: asyncio.Queue[int]
) -> None:
    """A timed-out command is reaped even while a descendant outside its group holds stdout."""
    script = (
        "import subprocess, sys, time\n"
        "sys.stdin.read()\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " start_new_session=True)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    hooks = command_hooks(tmp_path, script, TIMEOUT, backoff=ONCE)
    with capture_audit() as captured:
        hooks.notify(notice(2))
        try:
            # A hang guard, not a timing check: waiting for the pipes to close would
            # last as long as the descendant (60 s).
            async with asyncio.timeout(30):
                await hooks.idle()
        finally:
            await hooks.aclose(0.0)
    (failed,) = failures(captured)
    descendant = int(failed["stdout"])
    with contextlib.suppress(ProcessLookupError):  # not ours to reap: init does
        os.kill(descendant, signal.SIGKILL)
    assert ("timed out after 0.5s; killed", "reaped") == (
        failed["reason"],
        child_state(spawned.get_nowait()),
    )


async def test_a_command_cancelled_by_shutdown_is_reaped(
    tmp_path: Path, spawned: asyncio.Queue[int]
) -> None:
    """A command outliving close's budget is reaped before close returns; its notice fails."""
    hooks = command_hooks(tmp_path, "import time\ntime.sleep(60)\n", timedelta(seconds=30))
    with capture_audit() as captured:
        hooks.notify(notice(3))
        pid = await spawned.get()
        await hooks.aclose(0.0)
    assert ("reaped", ["the daemon stopped before it was delivered"]) == (
        child_state(pid),
        [e["reason"] for e in failures(captured)],
    )


def answering(*responses: httpx.Response) -> httpx.MockTransport:
    """A transport that answers `responses` in turn, then 200."""
    queue = list(responses)

    def handle(request: httpx.Request) -> httpx.Response:
        return queue.pop(0) if queue else httpx.Response(200)

    return httpx.MockTransport(handle)


@pytest.mark.parametrize(
    ("value", "wait"),
    [
        ("2", 2.0),
        ("0.25", 0.25),
        ("Sat, 01 Jun 2024 00:00:03 GMT", 3.0),  # the FakeClock's now is 2024-06-01T00:00:00Z
        ("-1", full_jitter(0, base=0.5, cap=8.0, rng=random.Random(4))),
        ("soon", full_jitter(0, base=0.5, cap=8.0, rng=random.Random(4))),
    ],
)
async def test_a_url_hook_waits_out_a_retry_after_in_seconds_or_as_a_date(
    value: str, wait: float
) -> None:
    """A 503's Retry-After (seconds or HTTP date) is the wait; an unreadable one is ignored."""
    clock = FakeClock()
    hook = HookSettings(url="http://127.0.0.1/rotated", secret=KEY)
    hooks = Hooks(
        [hook],
        vault_mount="secret",
        vault_prefix="monite/webhooks",
        clock=clock,
        rng=random.Random(4),
        transport=answering(httpx.Response(503, headers={"Retry-After": value})),
        backoff=Backoff(attempts=2, base=0.5, cap=8.0),
    )
    with capture_audit() as captured:
        hooks.notify(notice(4))
        await hooks.idle()
        await hooks.aclose(0.0)
    outcomes = [e["event"] for e in captured if e["event"] in ("hook.delivered", "hook.failed")]
    assert ([wait], ["hook.delivered"]) == (clock.sleeps[:1], outcomes)
