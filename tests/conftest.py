"""Shared fixtures and the suite-wide secret hygiene check.

Every secret, token and credential the emulators issue lands in
`rotator.sandbox.ISSUED`. Everything the suite captures (structlog events,
stdout/stderr and log records of every test, exception texts, CLI output) is
collected here and searched for those values when the session ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from rotator.sandbox import ISSUED
from tests.forkserver import FORK_SERVER

# The suite starts several hundred `python -m rotator` processes. Where the
# environment sets PYTHONDONTWRITEBYTECODE (some images do), every one of them,
# and every xdist worker, compiled each rotator module from source again: about
# a sixth of a process's start-up CPU. Bytecode caches change nothing a test sees.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

pytest_plugins = [
    "pytester",
    "tests.fixtures_engine",
    "tests.fixtures_monite",
    "tests.fixtures_vault",
]

# The files whose tests take longest (5 to 50 s each), longest first. xdist
# hands tests out in collection order, so these start at once on every worker
# while the many short tests fill the gaps; collected in file order, the demo
# and end-to-end tests came last and ran alone at the end of the run. The
# simulation's quick profiles come first: they wait for CPU, not time, and
# take 25 to 50 s on two busy cores.
REAL_TIME_FIRST = (
    "tests/sim/test_sim.py",
    "tests/chaos/",
    "tests/test_demo.py",
    "tests/test_swap_end_to_end.py",
    "tests/test_consumers_end_to_end.py",
    "tests/test_perf_swap.py",
    "tests/test_openbao_live.py",
    "tests/test_swap.py",
)


def _real_time_rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    ranks = (n for n, prefix in enumerate(REAL_TIME_FIRST) if path.startswith(prefix))
    return next(ranks, len(REAL_TIME_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_real_time_rank)  # stable: each file keeps its own order


CAPTURED: list[str] = []
WHERE: list[str] = []  # the test each CAPTURED text came from
_current_test = ["(collection)"]


def remember_output(*texts: str) -> None:
    """Add text the suite saw (for example a subprocess's output) to the hygiene scan."""
    for text in texts:
        CAPTURED.append(text)
        WHERE.append(_current_test[0])


def leaking_tests(values: set[str]) -> list[str]:
    """The tests whose captured text contains any of the values (names only, no values)."""
    return sorted({WHERE[i] for i, text in enumerate(CAPTURED) if leaked(values, [text])})


_WORD = re.compile(r"[A-Za-z0-9_\-]+")


def leaked(values: set[str], texts: list[str]) -> list[str]:
    """The values that occur anywhere in the texts, glued to other characters or not.

    URL-safe values (every secret the emulators make) are looked for inside the
    distinct runs of URL-safe characters: a run equal to a value, or longer and
    holding one (`whsec_<secret>`, `Bearer-<secret>-x`). Other values (Vault's
    `hvs.` tokens) fall back to a plain substring search.
    """
    urlsafe = {v for v in values if _WORD.fullmatch(v)}
    others = values - urlsafe
    lengths = sorted({len(v) for v in urlsafe})
    runs: set[str] = set()
    for text in texts:
        runs.update(_WORD.findall(text))
    hits = set(urlsafe & runs)
    if lengths:
        for run in runs:
            for size in lengths:
                if size >= len(run):
                    break
                for start in range(len(run) - size + 1):
                    piece = run[start : start + size]
                    if piece in urlsafe:
                        hits.add(piece)
    joined = "\n".join(texts)
    hits.update(v for v in others if v in joined)
    return sorted(hits)


def capture_audit() -> contextlib.AbstractContextManager[list[dict[str, Any]]]:
    """Capture audit events as the real pipeline sees them: with run_id from contextvars."""
    return structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars])


@pytest.fixture(autouse=True)
def _capture_audit_events() -> Iterator[None]:
    """Every structlog event of every test joins the hygiene scan, unredacted."""
    with structlog.testing.capture_logs() as events:
        yield
    remember_output(repr(events))


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    _current_test[0] = nodeid


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    for _name, content in report.sections:
        remember_output(content)
    if report.longrepr is not None:
        remember_output(str(report.longrepr))
    if call.excinfo is not None:
        remember_output(str(call.excinfo.value))
    return report


def _hygiene_message() -> str:
    """The failure line for this process's captured output, or "" when it is clean."""
    hits = leaked(set(ISSUED), CAPTURED)
    if not hits:
        return ""
    return (
        f"SECRET HYGIENE: {len(hits)} issued secret(s)/token(s) appeared in captured "
        "output (values not shown), in: " + ", ".join(leaking_tests(set(hits)))
    )


@pytest.fixture(scope="session", autouse=True)
def _stop_fork_server() -> Iterator[None]:
    """Stop this worker's fork server (if one started) when the session ends: no stray process."""
    yield
    FORK_SERVER.close()


_WORKER_FINDINGS: list[str] = []  # on the xdist controller: what each worker found


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    # Each xdist worker issues its own secrets and captures its own output, so
    # each scans in its own session end and hands the verdict to the controller,
    # whose exit status is the one CI sees.
    finding = getattr(node, "workeroutput", {}).get("hygiene", "")
    if finding:
        _WORKER_FINDINGS.append(finding)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    message = _hygiene_message()
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["hygiene"] = message
        return
    findings = [*([message] if message else []), *_WORKER_FINDINGS]
    if not findings:
        return
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for finding in findings:
        if reporter is not None:
            reporter.write_line(finding, red=True)
