"""Fixtures for the Vault emulator: a started emulator, a least-privilege token, settings.

Owned by the emulator's author; every test that talks to Vault builds on these.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from rotator.config import VaultSettings
from rotator.model import Secret
from rotator.sandbox.vault import VaultEmulator

# The policy operators install (deploy/vault/policy.hcl): every test that talks
# to Vault proves the least privilege we ship is also enough.
ROTATOR_POLICY = (Path(__file__).parent.parent / "deploy" / "vault" / "policy.hcl").read_text()


@pytest.fixture
def vault() -> Iterator[VaultEmulator]:
    """A started emulator with the KV v2 mount "secret"; stopped after the test."""
    emulator = VaultEmulator()
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def vault_token(vault: VaultEmulator) -> str:
    """A token holding the "rotator" least-privilege policy plus "default"."""
    vault.put_policy("rotator", ROTATOR_POLICY)
    return vault.create_token(policies=["rotator", "default"])


@pytest.fixture
def vault_settings(vault: VaultEmulator, vault_token: str) -> VaultSettings:
    """Product settings pointing at the emulator with the least-privilege token."""
    return VaultSettings(
        address=vault.address,
        token=Secret(vault_token),
        mount="secret",
        path_prefix="monite/webhooks",
        timeout=timedelta(seconds=2),
    )
