"""`rotator demo`: the whole product on embedded emulators, with no setup.

Starts Monite and Vault emulators on loopback, seeds a dozen subscriptions of
every kind (old, fresh, unmanaged, disabled, under a stricter rule), runs
accelerated cycles (seconds instead of days) with one forced rotation and one
dropped connection after Monite applied a regenerate, then prints a table that
shows Vault holding exactly Monite's current secret for every subscription.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TextIO

from rotator.app import open_engine
from rotator.audit import configure_logging, reset_logging
from rotator.clock import SystemClock
from rotator.config import Settings, load_settings
from rotator.engine import Engine
from rotator.model import Record
from rotator.policy import Force, Rule
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from rotator.secret import Secret
from rotator.vault import VaultStore

MAX_AGE = timedelta(seconds=20)
INTERVAL = 4.0

ROTATOR_POLICY_HCL = """
path "secret/data/monite/webhooks/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/monite/webhooks" {
  capabilities = ["list"]
}
path "secret/metadata/monite/webhooks/*" {
  capabilities = ["read", "list"]
}
"""

# (label, object_type, status, age of the secret in Vault, or None for no record)
SEED: tuple[tuple[str, str, str, timedelta | None], ...] = (
    ("old", "payable", "enabled", timedelta(seconds=45)),
    ("old", "receivable", "enabled", timedelta(seconds=30)),
    ("old", "counterpart", "enabled", timedelta(seconds=25)),
    ("fresh", "payable", "enabled", timedelta(seconds=2)),
    ("fresh", "entity", "enabled", timedelta(seconds=8)),
    ("fresh", "payment", "enabled", timedelta(seconds=12)),
    ("unmanaged", "receivable", "enabled", None),
    ("unmanaged", "approval", "enabled", None),
    ("unmanaged", "product", "enabled", None),
    ("disabled", "payable", "disabled", timedelta(seconds=40)),
    ("disabled", "tag", "disabled", timedelta(seconds=3)),
    ("strict rule", "batch_payment", "enabled", timedelta(seconds=6)),
)


def demo_environment(monite: MoniteEmulator, vault: VaultEmulator) -> dict[str, str]:
    """The settings the demo runs with, as the environment a user would set."""
    client_id, client_secret = monite.add_client()
    vault.put_policy("rotator", ROTATOR_POLICY_HCL)
    token = vault.create_token(policies=["rotator"])
    return {
        "ROTATOR_MONITE__BASE_URL": monite.base_url,
        "ROTATOR_MONITE__CLIENT_ID": client_id,
        "ROTATOR_MONITE__CLIENT_SECRET": client_secret,
        "ROTATOR_MONITE__TIMEOUT": "1s",
        "VAULT_ADDR": vault.address,
        "VAULT_TOKEN": token,
        "ROTATOR_POLICY__MAX_AGE": f"{int(MAX_AGE.total_seconds())}s",
        "ROTATOR_SCHEDULE__INTERVAL": f"{int(INTERVAL)}s",
        "ROTATOR_ROTATION__CLAIM_TTL": "6s",
        "ROTATOR_LOG__FORMAT": "console",
    }


def demo_settings(environ: Mapping[str, str]) -> Settings:
    """Demo settings plus one rule: batch payments rotate every 10 seconds."""
    settings = load_settings(None, environ)
    rule = Rule(object_type="batch_payment", max_age=timedelta(seconds=10))
    policy = dataclasses.replace(settings.policy, rules=(rule,))
    return settings.model_copy(update={"policy": policy})


async def seed(monite: MoniteEmulator, settings: Settings, now: datetime) -> list[str]:
    """Create the subscriptions and, for the managed ones, their Vault records."""
    store = VaultStore(settings.vault)
    ids = []
    try:
        for n, (label, object_type, status, age) in enumerate(SEED):
            url = f"https://hooks.example.com/{label.replace(' ', '-')}/{n}"
            sid = monite.seed(
                url=url,
                object_type=object_type,
                status=status,
                event_types=("created", "updated"),
            )
            ids.append(sid)
            if age is not None:
                record = Record(
                    subscription_id=sid,
                    secret=Secret(monite.current_secret(sid)),
                    rotated_at=now - age,
                    url=url,
                    object_type=object_type,
                )
                await store.write(record, cas=0)
    finally:
        store.close()
    return ids


async def run_cycles(
    engine: Engine, monite: MoniteEmulator, ids: list[str], duration: float
) -> None:
    """Cycles every INTERVAL seconds; a forced rotation and a dropped connection midway."""
    clock = SystemClock()
    start = clock.monotonic()
    cycle = 0
    forced_done = False
    while clock.monotonic() - start < duration:
        cycle += 1
        if cycle == 2:
            # The ambiguous case: Monite applies the regenerate, the answer never arrives.
            monite.faults.drop_after_regenerate = 1
        force = None
        if not forced_done and clock.monotonic() - start >= duration / 2:
            force = Force(ids=frozenset({ids[3]}))
            forced_done = True
        await engine.run_cycle(force)
        remaining = duration - (clock.monotonic() - start)
        await clock.sleep(min(INTERVAL, max(0.0, remaining)))
    if not forced_done:
        await engine.run_cycle(Force(ids=frozenset({ids[3]})))


def final_table(
    monite: MoniteEmulator, vault: VaultEmulator, settings: Settings, ids: list[str], now: datetime
) -> tuple[list[tuple[str, ...]], bool]:
    """Rows for the closing table, and whether every managed record matches Monite."""
    rows: list[tuple[str, ...]] = []
    all_match = True
    subs = {
        sid: (label, object_type, status)
        for sid, (label, object_type, status, _) in zip(ids, SEED, strict=True)
    }
    for sid in ids:
        label, object_type, status = subs[sid]
        found = vault.kv_read(settings.vault.mount, f"{settings.vault.path_prefix}/{sid}")
        state = "-"
        if found is None:
            age, matches = "-", "no record"
        else:
            data, _version = found
            record = Record.from_vault(sid, data, _version)
            state = record.state
            record_age = record.age(now)
            age = "-" if record_age is None else f"{record_age.total_seconds():.0f}s"
            same = data.get("secret") == monite.current_secret(sid)
            matches = "yes" if same else "NO"
            all_match = all_match and same
        rows.append(
            (
                sid[:8],
                label,
                object_type,
                status,
                age,
                state,
                str(monite.regenerate_count(sid)),
                matches,
            )
        )
    return rows, all_match


def print_table(rows: list[tuple[str, ...]], out: TextIO) -> None:
    header = (
        "SUBSCRIPTION",
        "KIND",
        "OBJECT TYPE",
        "STATUS",
        "SECRET AGE",
        "STATE",
        "ROTATIONS",
        "VAULT = MONITE",
    )
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)), file=out
        )


async def _demo(duration: float, out: TextIO) -> int:
    with MoniteEmulator(rate_limit=50) as monite, VaultEmulator() as vault:
        settings = demo_settings(demo_environment(monite, vault))
        configure_logging(fmt="console", level="info", stream=out)
        print(
            f"Monite emulator on {monite.base_url}, Vault emulator on {vault.address}\n"
            f"Policy: max_age {MAX_AGE.total_seconds():g}s (batch_payment 10s), "
            f"a cycle every {INTERVAL:g}s for {duration:g}s\n",
            file=out,
        )
        ids = await seed(monite, settings, SystemClock().now())
        async with open_engine(settings, owner="demo") as engine:
            await run_cycles(engine, monite, ids, duration)
        rows, all_match = final_table(monite, vault, settings, ids, SystemClock().now())
        reset_logging()
        print("", file=out)
        print_table(rows, out)
        verdict = (
            "Every record in Vault holds Monite's current secret: nothing was lost."
            if all_match
            else "MISMATCH: some record in Vault does not hold Monite's current secret."
        )
        print(f"\n{verdict}", file=out)
        if any(row[5] == "settling" for row in rows):
            print(
                "A `settling` record is rotated once more when its window has passed: it was\n"
                "just taken under management, or an earlier regenerate could still land.",
                file=out,
            )
        return 0 if all_match else 1


def run_demo(*, duration: float = 30.0, out: TextIO | None = None) -> int:
    """Run the demo; returns the exit code (0 when Vault matches Monite everywhere)."""
    return asyncio.run(_demo(duration, out or sys.stdout))
