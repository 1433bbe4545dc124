"""`rotator demo` as a newcomer runs it: emulators, seeded subscriptions, cycles, the table."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import remember_output


def test_demo_runs_and_vault_matches_monite_everywhere() -> None:
    """A short demo exits 0, shows audit lines and a table where every row says Vault = Monite."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATOR_", "VAULT_"))}
    result = subprocess.run(
        [sys.executable, "-m", "rotator", "demo", "--duration", "6"],
        capture_output=True,
        text=True,
        env=environ,
        timeout=90,
        check=False,
    )
    remember_output(result.stdout, result.stderr)
    assert 0 == result.returncode, result.stderr
    out = result.stdout
    for event in ("cycle.started", "rotation.claimed", "rotation.succeeded", "cycle.finished"):
        assert event in out
    assert "reason=forced" in out
    table = out[out.index("SUBSCRIPTION") :].splitlines()
    rows = [line for line in table[1:] if line.strip() and not line.startswith("Every")]
    assert 12 == len(rows)
    assert all(row.rstrip().endswith("yes") for row in rows), "\n".join(rows)
    assert "nothing was lost" in out
