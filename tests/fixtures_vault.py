"""Fixtures for Vault: the emulator and a real OpenBao server, a least-privilege token, settings.

Every test that asks for `vault` runs twice, against the emulator and against
OpenBao (`tests.openbao`), unless it is marked
`@pytest.mark.emulator_only("why")`: virtual time, injected faults, request
counts, refused connections and Kubernetes logins exist only in the emulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from rotator.config import VaultSettings
from rotator.sandbox.vault import VaultEmulator
from rotator.secret import Secret
from tests.openbao import OpenBaoServer, OpenBaoVault

# The policy operators install (deploy/vault/policy.hcl): every test that talks
# to Vault proves the least privilege we ship is also enough.
ROTATOR_POLICY = (Path(__file__).parent.parent / "deploy" / "vault" / "policy.hcl").read_text()


BACKENDS = ("emulator", "openbao")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "emulator_only(reason): the test needs what only the Vault emulator offers "
        "(virtual time, faults, request counts); it does not run against OpenBao",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "vault" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("emulator_only")
    if marker is not None and not (marker.args or marker.kwargs.get("reason")):
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: emulator_only needs a reason, "
            'e.g. @pytest.mark.emulator_only("advances virtual time")'
        )
    backends = ("emulator",) if marker is not None else BACKENDS
    metafunc.parametrize("vault", backends, indirect=True)


@pytest.fixture(scope="session")
def openbao_server() -> Iterator[OpenBaoServer]:
    """One real OpenBao dev server per test session (per xdist worker), on loopback."""
    server = OpenBaoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def openbao(openbao_server: OpenBaoServer) -> Iterator[OpenBaoVault]:
    """The OpenBao server with an empty KV v2 mount "secret", unsealed."""
    backend = OpenBaoVault(openbao_server)
    backend.start()
    try:
        yield backend
    finally:
        backend.stop()


@pytest.fixture
def vault(request: pytest.FixtureRequest) -> Iterator[VaultEmulator]:
    """A Vault with the KV v2 mount "secret": the emulator, or OpenBao (parametrized)."""
    if getattr(request, "param", "emulator") == "openbao":
        # Same administration calls, real server: typed as the emulator so the
        # tests need no casts; emulator-only calls are absent (AttributeError).
        yield request.getfixturevalue("openbao")
        return
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
    """Product settings pointing at the Vault under test with the least-privilege token."""
    return VaultSettings(
        address=vault.address,
        token=Secret(vault_token),
        mount="secret",
        path_prefix="monite/webhooks",
        timeout=timedelta(seconds=2),
    )
