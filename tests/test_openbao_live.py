"""The product against a real OpenBao server, with real TTLs: what an emulator cannot prove.

Every test drives `rotator.vault.VaultStore` (or the whole engine) against
`bao server -dev` (`tests.openbao`) with the shipped least-privilege policy
(deploy/vault/policy.hcl). Tokens live for a few real seconds, so renewal,
max TTL and re-login happen as they do in production, only faster; the sleeps
are what lets those TTLs pass, and nothing is asserted about how long anything
took. Monite, where needed, is the emulator.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hvac.exceptions
import pytest

from rotator import events
from rotator.app import open_engine
from rotator.config import DEFAULT_POLICY, MoniteSettings, Settings, VaultSettings
from rotator.errors import VaultAuthError, VaultConfigError, VaultConflict, VaultUnavailable
from rotator.model import Record
from rotator.policy import Force
from rotator.sandbox.monite import MoniteEmulator
from rotator.secret import Secret
from rotator.vault import VaultStore
from tests.conftest import capture_audit
from tests.daemon_harness import run_rotator
from tests.fixtures_vault import ROTATOR_POLICY
from tests.openbao import OpenBaoVault

PREFIX = "monite/webhooks"
SUB_ID = "9b2f6c1e-0000-4000-8000-00000000c001"


def settings_for(openbao: OpenBaoVault, **values: Any) -> VaultSettings:
    """Product settings for the server: short timeout, no read retries, then `values`."""
    return VaultSettings(
        address=openbao.address, timeout=timedelta(seconds=2), max_retries=0, **values
    )


def record(subscription_id: str = SUB_ID, secret: str = "whsec-live-one") -> Record:
    return Record(
        subscription_id=subscription_id,
        secret=Secret(secret),
        rotated_at=datetime(2026, 1, 1, tzinfo=UTC),
        state="active",
        rotation_id="rot-live",
    )


def least_privilege_token(openbao: OpenBaoVault, **values: Any) -> str:
    """A token holding only the shipped policy: no "default" policy at all."""
    openbao.put_policy("rotator", ROTATOR_POLICY)
    return openbao.create_token(policies=["rotator"], no_default_policy=True, **values)


def named(captured: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in captured if e["event"] == name]


async def until_dead(openbao: OpenBaoVault, token: str, within: float = 6.0) -> bool:
    """Wait until the server no longer honours `token` (it expires it on its own timer)."""
    for _ in range(int(within / 0.05)):
        if not await asyncio.to_thread(openbao.token_alive, token):
            return True
        await asyncio.sleep(0.05)
    return False


def stored(openbao: OpenBaoVault, subscription_id: str) -> tuple[Secret, bool, int] | None:
    """(secret, committed, version) of a record as root reads it; a Secret, so never printed.

    Committed: `active` or `settling` (a commit that says another rotation follows).
    """
    found = openbao.kv_read("secret", f"{PREFIX}/{subscription_id}")
    if found is None:
        return None
    data, version = found
    return Secret(str(data.get("secret"))), data.get("state") in ("active", "settling"), version


@pytest.fixture
def approle(openbao: OpenBaoVault) -> tuple[str, str]:
    """(role_id, secret_id) of an AppRole holding only the shipped policy, 3 s tokens."""
    openbao.put_policy("rotator", ROTATOR_POLICY)
    return openbao.add_approle("rotator-live", policies=["rotator"], token_ttl=3)


# -- tokens ---------------------------------------------------------------------------


async def test_renewable_token_is_renewed_and_outlives_its_first_ttl(
    openbao: OpenBaoVault,
) -> None:
    """A renewable 4 s token is renewed with under a third left, so calls work past 4 s."""
    store = VaultStore(settings_for(openbao, token=Secret(least_privilege_token(openbao, ttl=4))))
    try:
        with capture_audit() as captured:
            await store.read(SUB_ID)  # looks the token up: under 4 s to live
            await asyncio.sleep(3.0)
            await store.write(record(), cas=0)  # about 1 s left: renewed to 4 s first
            await asyncio.sleep(1.5)  # 4.5 s after creation: the first ttl is over
            read = await store.read(SUB_ID)
    finally:
        store.close()
    assert record().at_version(1) == read
    assert (1, [], 0) == (
        len(named(captured, events.VAULT_TOKEN_RENEWED)),
        named(captured, events.VAULT_TOKEN_MAX_TTL),
        store.logins,
    )


async def test_token_at_its_max_ttl_warns_then_fails_as_auth_error(openbao: OpenBaoVault) -> None:
    """A token whose explicit max TTL stops renewal warns once, then fails with VaultAuthError."""
    token = least_privilege_token(openbao, ttl=4, explicit_max_ttl=4)
    store = VaultStore(settings_for(openbao, token=Secret(token)))
    try:
        with capture_audit() as captured:
            await store.read(SUB_ID)
            await asyncio.sleep(2.9)  # under a third left: the renewal Vault caps at the max
            assert 0 == (await store.read(SUB_ID)).version
            assert await until_dead(openbao, token)  # the max TTL has passed
            with pytest.raises(VaultAuthError) as caught:
                await store.read(SUB_ID)
    finally:
        store.close()
    warnings = named(captured, events.VAULT_TOKEN_MAX_TTL)
    assert ["warning"] == [e["log_level"] for e in warnings]
    assert "the Vault token is expired or revoked" in str(caught.value)
    leaked = token in repr(captured) + str(caught.value)  # a bool: a failure prints no token
    assert not leaked


async def test_non_renewable_token_is_used_as_is_until_vault_expires_it(
    openbao: OpenBaoVault,
) -> None:
    """A non-renewable 2 s token is never renewed; once Vault expires it, calls are refused."""
    token = least_privilege_token(openbao, ttl=2, renewable=False)
    store = VaultStore(settings_for(openbao, token=Secret(token)))
    try:
        with capture_audit() as captured:
            await store.write(record(), cas=0)
            assert await until_dead(openbao, token)
            with pytest.raises(VaultAuthError) as caught:
                await store.read(SUB_ID)
    finally:
        store.close()
    renewals = [e for e in captured if e["event"].startswith("vault.") and "renew" in e["event"]]
    assert ([], 0) == (renewals, store.logins)
    assert "the Vault token is expired or revoked" in str(caught.value)


# -- AppRole --------------------------------------------------------------------------


async def test_approle_logs_in_again_before_its_token_expires(
    openbao: OpenBaoVault, approle: tuple[str, str]
) -> None:
    """With under a third of a 3 s login token left, the next call logs in first, unrefused."""
    role_id, secret_id = approle
    settings = settings_for(
        openbao, auth_method="approle", role_id=Secret(role_id), secret_id=Secret(secret_id)
    )
    store = VaultStore(settings)
    try:
        await store.write(record(), cas=0)
        await asyncio.sleep(2.3)
        assert 1 == (await store.read(SUB_ID)).version
        await asyncio.sleep(2.3)  # the second token's turn
        assert 1 == (await store.read(SUB_ID)).version
    finally:
        store.close()
    assert (3, 0) == (store.logins, store.requests[("read", "VaultAuthError")])


async def test_approle_logs_in_again_after_vault_expired_its_token(
    openbao: OpenBaoVault, approle: tuple[str, str]
) -> None:
    """A login token Vault expired while the store's clock stood still is refused, replaced."""
    role_id, secret_id = approle
    settings = settings_for(
        openbao, auth_method="approle", role_id=Secret(role_id), secret_id=Secret(secret_id)
    )
    store = VaultStore(settings, clock=lambda: 0.0)  # never sees time pass: no early login
    try:
        await store.write(record(), cas=0)
        assert store.token is not None
        assert await until_dead(openbao, store.token.reveal())  # its 3 s are over
        with capture_audit() as captured:
            assert 1 == (await store.read(SUB_ID)).version
    finally:
        store.close()
    assert (2, 1) == (store.logins, store.requests[("read", "ok")])
    assert [events.VAULT_RELOGIN, events.VAULT_LOGIN] == [
        e["event"] for e in captured if e["event"].startswith("vault.")
    ]


# -- seal -------------------------------------------------------------------------------


async def test_sealed_then_unsealed_vault_keeps_the_login(
    openbao: OpenBaoVault, approle: tuple[str, str]
) -> None:
    """Sealed: calls and verify raise VaultUnavailable "sealed"; unsealed, the same token works."""
    role_id, secret_id = approle
    store = VaultStore(
        settings_for(
            openbao, auth_method="approle", role_id=Secret(role_id), secret_id=Secret(secret_id)
        )
    )
    try:
        await store.write(record(), cas=0)
        openbao.seal()
        try:
            with pytest.raises(VaultUnavailable) as on_read:
                await store.read(SUB_ID)
            with pytest.raises(VaultUnavailable, match="sealed"):
                await store.verify()
        finally:
            openbao.unseal()
        assert 1 == (await store.read(SUB_ID)).version
    finally:
        store.close()
    assert "sealed" in str(on_read.value).lower()
    assert 1 == store.logins


# -- the mount's own settings -------------------------------------------------------------


async def test_max_versions_and_cas_required_on_the_mount(openbao: OpenBaoVault) -> None:
    """With max_versions 2 and cas_required, CAS writes still land and old versions are pruned."""
    root = openbao.client()
    root.secrets.kv.v2.configure(max_versions=2, cas_required=True, mount_point="secret")
    store = VaultStore(settings_for(openbao, token=Secret(least_privilege_token(openbao))))
    try:
        for n in range(4):
            await store.write(record(secret=f"whsec-live-{n}"), cas=n)
        latest = await store.read(SUB_ID)
        pruned = await store.read(SUB_ID, version=1)
        with pytest.raises(VaultConflict):
            await store.write(record(), cas=2)
    finally:
        store.close()
    assert (4, Secret("whsec-live-3")) == (latest.version, latest.secret)
    assert Record(subscription_id=SUB_ID, version=1, state="stale") == pruned
    assert [3, 4] == openbao.kv_versions("secret", f"{PREFIX}/{SUB_ID}")
    # cas_required is in force: a write without cas (not the product's) is refused
    with pytest.raises(hvac.exceptions.InvalidRequest, match="check-and-set parameter required"):
        root.secrets.kv.v2.create_or_update_secret(
            path=f"{PREFIX}/{SUB_ID}", secret={"x": "y"}, mount_point="secret"
        )


async def test_rotation_cycle_on_a_cas_required_mount_with_two_versions(
    openbao: OpenBaoVault, monite: MoniteEmulator, monite_settings: MoniteSettings
) -> None:
    """Claim and commit work on a mount that demands CAS and keeps two versions."""
    openbao.client().secrets.kv.v2.configure(
        max_versions=2, cas_required=True, mount_point="secret"
    )
    sid = monite.seed()
    settings = Settings(
        monite=monite_settings,
        vault=settings_for(openbao, token=Secret(least_privilege_token(openbao))),
        policy=DEFAULT_POLICY,
    )
    async with open_engine(settings, owner="live:1") as engine:
        first = await engine.run_cycle()
        forced = await engine.run_cycle(Force(ids=frozenset({sid})))
    assert ([("rotated", "unmanaged")], [("rotated", "forced")]) == (
        [(o.kind, o.reason) for o in first.outcomes],
        [(o.kind, o.reason) for o in forced.outcomes],
    )
    assert (Secret(monite.current_secret(sid)), True, 4) == stored(openbao, sid)
    assert [3, 4] == openbao.kv_versions("secret", f"{PREFIX}/{sid}")


# -- namespaces ---------------------------------------------------------------------------


async def test_namespace_keeps_the_records_inside_it(openbao: OpenBaoVault) -> None:
    """With vault.namespace, verify, write, read and list work there, and nothing lands in root."""
    namespace = f"team-{uuid.uuid4().hex[:8]}"
    openbao.namespace(namespace)
    openbao.put_policy("rotator", ROTATOR_POLICY, namespace=namespace)
    token = openbao.create_token(policies=["rotator"], no_default_policy=True, namespace=namespace)
    store = VaultStore(settings_for(openbao, token=Secret(token), namespace=namespace))
    try:
        setup = await store.verify()
        written = await store.write(record(), cas=0)
        read = await store.read(SUB_ID)
        listed = await store.list_ids()
    finally:
        store.close()
    inside = openbao.client(namespace).secrets.kv.v2.read_secret_version(
        path=f"{PREFIX}/{SUB_ID}", mount_point="secret", raise_on_deleted_version=True
    )
    assert (1, written, [SUB_ID]) == (written.version, read, listed)
    assert "whsec-live-one" == inside["data"]["data"]["secret"]
    assert openbao.kv_read("secret", f"{PREFIX}/{SUB_ID}") is None
    assert "secret" == setup.mount


async def test_a_mount_removed_at_run_time_is_a_config_error_not_an_empty_store(
    openbao: OpenBaoVault,
) -> None:
    """After the KV mount is disabled, reads and lists fail naming vault.mount, not "no record"."""
    store = VaultStore(settings_for(openbao, token=Secret(least_privilege_token(openbao))))
    try:
        await store.verify()
        await store.write(record(), cas=0)
        openbao.client().sys.disable_secrets_engine(path="secret")
        with pytest.raises(VaultConfigError) as read_error:
            await store.read(SUB_ID)
        with pytest.raises(VaultConfigError) as list_error:
            await store.list_ids()
    finally:
        store.close()
    expected = 'vault.mount: no secrets engine is mounted at "secret"'
    assert (True, True) == (
        str(read_error.value).startswith(expected),
        str(list_error.value).startswith(expected),
    )


async def test_a_namespace_deleted_at_run_time_is_a_config_error_not_an_empty_store(
    openbao: OpenBaoVault,
) -> None:
    """After the namespace is deleted, reads and lists fail naming vault.namespace."""
    namespace = f"gone-{uuid.uuid4().hex[:8]}"
    openbao.namespace(namespace)
    openbao.put_policy("rotator", ROTATOR_POLICY, namespace=namespace)
    token = openbao.create_token(policies=["rotator"], no_default_policy=True, namespace=namespace)
    store = VaultStore(settings_for(openbao, token=Secret(token), namespace=namespace))
    try:
        await store.verify()
        root = openbao.client()
        root.sys.delete_namespace(path=namespace)
        # OpenBao deletes a namespace in the background; bounded wait until it is gone.
        for _ in range(200):
            try:
                left = root.sys.list_namespaces()["data"]["keys"]
            except hvac.exceptions.InvalidPath:  # 404: no namespace left at all
                left = []
            if namespace + "/" not in left:
                break
            await asyncio.sleep(0.05)
        with pytest.raises(VaultConfigError) as read_error:
            await store.read(SUB_ID)
        with pytest.raises(VaultConfigError) as list_error:
            await store.list_ids()
    finally:
        store.close()
    expected = f'vault.namespace: Vault has no namespace "{namespace}"'
    assert (True, True) == (
        str(read_error.value).startswith(expected),
        str(list_error.value).startswith(expected),
    )


# -- the shipped least privilege ------------------------------------------------------------


async def test_least_privilege_token_does_the_whole_store_round_trip(
    openbao: OpenBaoVault,
) -> None:
    """Only policy.hcl, no default policy: verify, create, read, list, CAS, versions, deletes."""
    store = VaultStore(settings_for(openbao, token=Secret(least_privilege_token(openbao))))
    root = openbao.client()
    path = f"{PREFIX}/{SUB_ID}"
    try:
        setup = await store.verify()
        v1 = await store.write(record(), cas=0)
        v2 = await store.write(record(secret="whsec-live-two"), cas=v1.version)
        listed = await store.list_ids()
        by_version = await store.read(SUB_ID, version=1)
        latest = await store.read(SUB_ID)
        root.secrets.kv.v2.delete_latest_version_of_secret(path=path, mount_point="secret")
        deleted = await store.read(SUB_ID)
        v3 = await store.write(record(secret="whsec-live-three"), cas=deleted.version)
        root.secrets.kv.v2.destroy_secret_versions(path=path, versions=[3], mount_point="secret")
        destroyed = await store.read(SUB_ID)
    finally:
        store.close()
    assert (1, 2, 3) == (v1.version, v2.version, v3.version)
    assert [SUB_ID] == listed
    assert v1 == by_version
    assert v2 == latest
    assert Record(subscription_id=SUB_ID, version=2, state="stale") == deleted
    assert Record(subscription_id=SUB_ID, version=3, state="stale") == destroyed
    assert (None, "secret") == (setup.unchecked, setup.mount)


def test_run_once_with_only_the_shipped_policy(
    openbao: OpenBaoVault, monite: MoniteEmulator, tmp_path: Path
) -> None:
    """`rotator run --once` (a real process) rotates into OpenBao with only policy.hcl."""
    ids = [monite.seed() for _ in range(3)]
    client_id, client_secret = monite.credentials
    (tmp_path / "client_secret").write_text(client_secret)
    (tmp_path / "vault_token").write_text(least_privilege_token(openbao))
    for name in ("client_secret", "vault_token"):
        (tmp_path / name).chmod(0o600)
    config = tmp_path / "rotator.toml"
    config.write_text(
        f'[monite]\nbase_url = "{monite.base_url}"\nclient_id = "{client_id}"\n'
        f'client_secret_file = "{tmp_path / "client_secret"}"\ntimeout = "2s"\n'
        f'[vault]\naddress = "{openbao.address}"\ntoken_file = "{tmp_path / "vault_token"}"\n'
        f'mount = "secret"\npath_prefix = "{PREFIX}"\n'
    )
    result = run_rotator("run", "--once", "--config", str(config), env={"HOME": str(tmp_path)})
    assert 0 == result.returncode, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert 3 == [line["event"] for line in lines].count("rotation.succeeded")
    assert {sid: (Secret(monite.current_secret(sid)), True, 2) for sid in ids} == {
        sid: stored(openbao, sid) for sid in ids
    }
