"""Vault's clock as the rotator sees it, and records of protocol versions 1 and 2."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rotator.clock import ServerClock
from rotator.config import VaultSettings
from rotator.errors import VaultUnavailable
from rotator.model import Record
from rotator.sandbox.vault import VaultEmulator
from rotator.secret import Secret
from rotator.vault import VaultStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.value = 100.0

    def __call__(self) -> float:
        return self.value


def test_server_clock_is_unknown_before_an_observation() -> None:
    """With nothing seen from Vault there is no Vault time to judge a claim by."""
    assert ServerClock(Ticks()).now() is None


def test_server_clock_advances_on_the_monotonic_clock() -> None:
    """Between answers, Vault's time moves with local monotonic time, not the wall clock."""
    ticks = Ticks()
    clock = ServerClock(ticks)
    clock.observe(T0)
    ticks.value += 42.5
    assert T0 + timedelta(seconds=42.5) == clock.now()


def test_server_clock_never_moves_back() -> None:
    """An older observation (the created_time of an old version) does not lower the estimate."""
    ticks = Ticks()
    clock = ServerClock(ticks)
    clock.observe(T0)
    ticks.value += 10
    clock.observe(T0 - timedelta(days=1))
    assert T0 + timedelta(seconds=10) == clock.now()
    clock.observe(T0 + timedelta(hours=1))
    assert T0 + timedelta(hours=1) == clock.now()


@pytest.mark.emulator_only("sets Vault's clock 10 days off the host's (advance_time)")
async def test_store_reads_vaults_time_not_the_hosts(
    vault: VaultEmulator, vault_settings: VaultSettings
) -> None:
    """vault_now follows Vault's clock (Date header, created_time), however far it is off."""
    vault.advance_time(timedelta(days=10).total_seconds())  # within the token's ttl
    # Time carried forward on the emulator's clock, so `advance_time` reads as time passing.
    store = VaultStore(vault_settings, clock=vault.now)
    try:
        seen = await store.vault_now()
        vault_time = datetime.fromtimestamp(vault.now(), UTC)
        # A Date header is whole seconds: a lower bound within a second.
        assert timedelta(0) <= vault_time - seen < timedelta(seconds=2)
        written = await store.write(Record("s1", secret=Secret("whsec_vault_time")), cas=0)
        assert written.created_time is not None
        assert abs(written.created_time - datetime.fromtimestamp(vault.now(), UTC)) < timedelta(
            seconds=1
        )
        read = await store.read("s1")
        assert written.created_time == read.created_time
        vault.advance_time(3600)
        later = await store.vault_now(refresh=True)  # whole seconds: up to 1 s behind
        assert later > written.created_time + timedelta(hours=1) - timedelta(seconds=1)
    finally:
        store.close()


def test_version_1_record_reads_as_it_was_written() -> None:
    """A v1 record (no claim_ttl_seconds) parses; its claim is measured from claim_expires_at."""
    data = {
        "secret": "whsec_v1_record",
        "rotated_at": "2025-12-31T00:00:00Z",
        "state": "rotating",
        "rotation_id": "r1",
        "claimed_by": "old-host:1",
        "claim_expires_at": "2026-01-01T00:02:00Z",
        "subscription_id": "s1",
    }
    record = Record.from_vault("s1", data, 4, created_time=T0)
    assert "rotating" == record.state
    assert record.claim_ttl_seconds is None
    assert T0 + timedelta(minutes=2) == record.fence_ends(timedelta(hours=1))


def test_unknown_state_reads_as_stale_and_missing_state_as_active() -> None:
    """Rule zero: a state this version cannot vouch for is rotated; a hand-made record is not."""
    assert "stale" == Record.from_vault("s1", {"secret": "x", "state": "paused"}, 1).state
    assert "active" == Record.from_vault("s1", {"secret": "x"}, 1).state


def test_v2_fields_round_trip_through_vault_data() -> None:
    """claim_ttl_seconds and the new states survive to_vault/from_vault."""
    record = Record("s1", secret=Secret("whsec_round_trip"), state="settling", claim_ttl_seconds=90)
    back = Record.from_vault("s1", record.to_vault(), 2)
    assert ("settling", 90.0) == (back.state, back.claim_ttl_seconds)


@pytest.mark.emulator_only("refuses and then accepts connections on the same port")
async def test_a_failed_refresh_keeps_the_estimate_carried_forward(
    vault: VaultEmulator, vault_settings: VaultSettings
) -> None:
    """Vault unreachable at refresh: the lower bound carried forward is used, no error."""
    store = VaultStore(vault_settings, clock=vault.now)
    try:
        written = await store.write(Record("s1", secret=Secret("whsec_refresh_fails")), cas=0)
        assert written.created_time is not None
        vault.refuse_connections()
        try:
            seen = await store.vault_now(refresh=True)
        finally:
            vault.accept_connections()
        assert timedelta(0) <= seen - written.created_time < timedelta(seconds=5)
    finally:
        store.close()


async def test_no_estimate_and_no_vault_is_an_error(vault_settings: VaultSettings) -> None:
    """With nothing seen from Vault and Vault unreachable, Vault's time is unknown: an error."""
    unreachable = vault_settings.model_copy(update={"address": "http://127.0.0.1:9"})
    store = VaultStore(unreachable)
    try:
        with pytest.raises(VaultUnavailable):
            await store.vault_now(refresh=True)
    finally:
        store.close()
