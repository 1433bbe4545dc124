"""Vault authentication of VaultStore against the emulator and OpenBao, over HTTP through hvac.

Covers token lookup and renewal, AppRole and Kubernetes login, re-login after
expiry or revocation, the namespace header, the TLS options handed to hvac,
and the Monite credentials read from Vault.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import hvac
import pytest

from rotator.app import open_engine
from rotator.config import DEFAULT_POLICY, MoniteSettings, Settings, VaultSettings, load_settings
from rotator.errors import VaultAuthError, VaultError, VaultRequestError
from rotator.model import Record
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from rotator.secret import Secret
from rotator.vault import VaultStore, client_options
from tests.fixtures_vault import ROTATOR_POLICY

SUB_ID = "9b2f6c1e-0000-4000-8000-00000000a001"
CREDENTIALS_PATH = "monite/api"
CREDENTIALS_POLICY = 'path "secret/data/monite/api" { capabilities = ["read"] }'


def settings_for(vault: VaultEmulator, **values: Any) -> VaultSettings:
    """Settings for the emulator: short timeout, no read retries, then `values`."""
    return VaultSettings(
        address=vault.address, timeout=timedelta(seconds=2), max_retries=0, **values
    )


def approle_settings(
    vault: VaultEmulator, role_id: str, secret_id: str, **values: Any
) -> VaultSettings:
    return settings_for(
        vault,
        auth_method="approle",
        role_id=Secret(role_id),
        secret_id=Secret(secret_id),
        **values,
    )


@pytest.fixture
def approle(vault: VaultEmulator) -> tuple[str, str]:
    """(role_id, secret_id) of an AppRole holding the rotator policy, tokens valid for 600s."""
    vault.put_policy("rotator", ROTATOR_POLICY)
    vault.put_policy("monite-credentials", CREDENTIALS_POLICY)
    return vault.add_approle("rotator", policies=["rotator", "monite-credentials"], token_ttl=600)


@pytest.fixture
def jwt_file(vault: VaultEmulator, tmp_path: Path) -> Path:
    """A service account token file the emulator's Kubernetes role "rotator" accepts."""
    vault.put_policy("rotator", ROTATOR_POLICY)
    jwt = vault.add_kubernetes_role(
        "rotator",
        service_account="monite-secret-rotator",
        namespace="payments",
        policies=["rotator"],
        token_ttl=600,
    )
    path = tmp_path / "token"
    path.write_text(jwt, encoding="utf-8")
    return path


@pytest.fixture
async def approle_store(
    vault: VaultEmulator, approle: tuple[str, str]
) -> AsyncIterator[VaultStore]:
    """A store logging in with the `approle` credentials; its clock is Vault's."""
    store = VaultStore(approle_settings(vault, *approle), clock=vault.now)
    yield store
    store.close()


class RecordingFactory:
    """A client factory that keeps every hvac client it makes, to see the token they carry."""

    def __init__(self, settings: VaultSettings) -> None:
        self.settings = settings
        self.clients: list[hvac.Client] = []

    def __call__(self) -> hvac.Client:
        client = hvac.Client(**client_options(self.settings))
        self.clients.append(client)
        return client


def record(subscription_id: str = SUB_ID) -> Record:
    return Record(subscription_id=subscription_id, secret=Secret("whsec-auth"), state="active")


def current_token(store: VaultStore) -> str:
    token = store.token
    assert token is not None
    return token.reveal()


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def chain_texts(exc: BaseException) -> list[str]:
    """str and repr of an exception and of everything chained to it."""
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return texts


# -- AppRole ------------------------------------------------------------------------


async def test_approle_login_serves_every_call(approle_store: VaultStore) -> None:
    """One AppRole login at first use serves the following reads and writes."""
    assert 0 == (await approle_store.read(SUB_ID)).version
    assert 1 == (await approle_store.write(record(), cas=0)).version
    assert 1 == (await approle_store.read(SUB_ID)).version
    assert 1 == approle_store.logins


async def test_approle_secret_id_from_file(
    vault: VaultEmulator, approle: tuple[str, str], tmp_path: Path
) -> None:
    """Settings loaded with role_id and secret_id_file log in and write."""
    role_id, secret_id = approle
    (tmp_path / "secret-id").write_text(secret_id + "\n", encoding="utf-8")
    env = {
        "ROTATOR_MONITE__CLIENT_ID": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
        "ROTATOR_MONITE__CLIENT_SECRET": "unused-client-secret",
        "VAULT_ADDR": vault.address,
        "ROTATOR_VAULT__AUTH_METHOD": "approle",
        "ROTATOR_VAULT__ROLE_ID": role_id,
        "ROTATOR_VAULT__SECRET_ID_FILE": str(tmp_path / "secret-id"),
    }
    store = VaultStore(load_settings(None, env).vault)
    try:
        assert 1 == (await store.write(record(), cas=0)).version
    finally:
        store.close()
    assert 1 == store.logins


async def test_concurrent_first_calls_log_in_once(approle_store: VaultStore) -> None:
    """Many calls starting together on several threads share one login."""
    ids = [f"sub-{n:02d}" for n in range(24)]
    await asyncio.gather(*(approle_store.read(i) for i in ids))
    assert 1 == approle_store.logins


@pytest.mark.emulator_only("advances virtual time past two thirds of a 600s token")
async def test_approle_logs_in_again_before_the_token_expires(
    approle_store: VaultStore, vault: Any
) -> None:
    """With less than a third of the token's 600s left, the next call logs in first."""
    await approle_store.read(SUB_ID)
    vault.advance_time(350)
    await approle_store.read(SUB_ID)
    assert 1 == vault.request_count("login")
    vault.advance_time(120)
    await approle_store.read(SUB_ID)
    assert 2 == vault.request_count("login")
    assert 0 == approle_store.requests[("read", "VaultAuthError")]


@pytest.mark.emulator_only("advances virtual time past the token's ttl (live: test_openbao_live)")
async def test_approle_logs_in_again_after_the_token_expired(
    vault: VaultEmulator, approle: tuple[str, str]
) -> None:
    """A token Vault expired (unknown to the store's clock) is refused, replaced and retried."""
    store = VaultStore(approle_settings(vault, *approle))  # its own clock: no early re-login
    try:
        await store.write(record(), cas=0)
        vault.advance_time(601)
        assert 1 == (await store.read(SUB_ID)).version
    finally:
        store.close()
    assert (2, 2) == (vault.request_count("login"), store.logins)
    assert 1 == store.requests[("read", "ok")]


async def test_approle_logs_in_again_after_the_token_is_revoked(
    vault: VaultEmulator, approle: tuple[str, str]
) -> None:
    """After its token is revoked, the next call logs in again and succeeds."""
    settings = approle_settings(vault, *approle)
    factory = RecordingFactory(settings)
    store = VaultStore(settings, client_factory=factory)
    try:
        await store.read(SUB_ID)
        vault.revoke_token(factory.clients[0].token)
        assert 1 == (await store.write(record(), cas=0)).version
    finally:
        store.close()
    assert 2 == store.logins


async def test_policy_denial_does_not_log_in_again(
    vault: VaultEmulator, approle: tuple[str, str]
) -> None:
    """A 403 on a path the policy denies stays an error; the live token is kept, no new login."""
    store = VaultStore(approle_settings(vault, *approle, path_prefix="other/place"))
    try:
        for _ in range(3):
            with pytest.raises(VaultAuthError) as caught:
                await store.write(record(), cas=0)
    finally:
        store.close()
    assert 1 == store.logins
    assert "policies of the Vault approle role do not allow this" in str(caught.value)


async def test_wrong_secret_id_is_auth_error_without_the_secret(
    vault: VaultEmulator, approle: tuple[str, str]
) -> None:
    """A wrong secret_id fails once with VaultAuthError naming the fix, never the credentials."""
    role_id, _ = approle
    wrong = "5d0c7a8e-1111-4222-8333-944455556666"
    store = VaultStore(
        approle_settings(vault, role_id, wrong).model_copy(update={"max_retries": 3})
    )
    try:
        with pytest.raises(VaultAuthError) as caught:
            await store.read(SUB_ID)
    finally:
        store.close()
    message = str(caught.value)
    # A login carries credentials: Vault's answer body is withheld, the status is given.
    assert "Vault answered status 400; response body withheld" in message
    assert "check vault.role_id and vault.secret_id" in message
    assert [] == [t for t in chain_texts(caught.value) if wrong in t or role_id in t]
    # one attempt, no retries (max_retries 3): a refused login is not retried
    assert ({("read", "VaultAuthError"): 1}, 0) == (dict(store.requests), store.logins)


async def test_check_logs_in_and_reports_a_refused_login_as_such(
    vault: VaultEmulator, approle: tuple[str, str]
) -> None:
    """check() passes with a good AppRole and names the login, not the token, when it is refused."""
    role_id, secret_id = approle
    good = VaultStore(approle_settings(vault, role_id, secret_id))
    bad = VaultStore(approle_settings(vault, role_id, secret_id + "-wrong"))
    try:
        await good.check()
        with pytest.raises(VaultAuthError) as caught:
            await bad.check()
    finally:
        good.close()
        bad.close()
    assert str(caught.value).startswith("Vault login auth/approle/login failed")


# -- Kubernetes ---------------------------------------------------------------------


@pytest.mark.emulator_only("Kubernetes login needs a TokenReview API (add_kubernetes_role)")
async def test_kubernetes_login_with_jwt_file(vault: VaultEmulator, jwt_file: Path) -> None:
    """Kubernetes login with the role and the service account token file, then KV calls."""
    store = VaultStore(
        settings_for(vault, auth_method="kubernetes", role="rotator", jwt_file=jwt_file)
    )
    try:
        assert 1 == (await store.write(record(), cas=0)).version
        assert 1 == (await store.read(SUB_ID)).version
    finally:
        store.close()
    assert 1 == vault.request_count("login")


@pytest.mark.emulator_only("Kubernetes login needs a TokenReview API; advances virtual time")
async def test_kubernetes_jwt_file_is_read_at_each_login(
    vault: VaultEmulator, jwt_file: Path
) -> None:
    """Each login reads the token file anew: a bad token fails the login, a good one fixes it."""
    store = VaultStore(
        settings_for(vault, auth_method="kubernetes", role="rotator", jwt_file=jwt_file),
        clock=vault.now,
    )
    good = read_text(jwt_file)
    try:
        await store.read(SUB_ID)
        write_text(jwt_file, "eyJub3QiOiJ2YWxpZCJ9.e30.c2ln")
        vault.advance_time(601)
        with pytest.raises(VaultAuthError) as caught:
            await store.read(SUB_ID)
        write_text(jwt_file, good)
        assert 0 == (await store.read(SUB_ID)).version
    finally:
        store.close()
    assert 3 == vault.request_count("login")
    assert "is bound to this pod's service account" in str(caught.value)
    assert [] == [t for t in chain_texts(caught.value) if good in t or "c2ln" in t]


@pytest.mark.emulator_only("counts the login requests sent (request_count): none")
async def test_kubernetes_missing_jwt_file_is_auth_error(
    vault: VaultEmulator, tmp_path: Path
) -> None:
    """A missing service account token file is a VaultAuthError naming the file, with no request."""
    missing = tmp_path / "absent"
    store = VaultStore(settings_for(vault, auth_method="kubernetes", role="r", jwt_file=missing))
    try:
        with pytest.raises(VaultAuthError, match="cannot read the Kubernetes service account"):
            await store.read(SUB_ID)
    finally:
        store.close()
    assert 0 == vault.request_count("login")


# -- tokens -------------------------------------------------------------------------


@pytest.mark.emulator_only("advances virtual time over a 300s token (live: test_openbao_live)")
async def test_token_is_renewed_before_it_expires(vault: VaultEmulator) -> None:
    """A renewable 300s token is renewed with under a third left, so it outlives its first ttl."""
    vault.put_policy("rotator", ROTATOR_POLICY)
    token = vault.create_token(policies=["rotator"], ttl=300)
    store = VaultStore(settings_for(vault, token=Secret(token)), clock=vault.now)
    try:
        await store.read(SUB_ID)  # lookup-self
        vault.advance_time(150)
        await store.read(SUB_ID)  # 150s left: nothing to do
        assert 1 == vault.request_count("token")
        vault.advance_time(110)
        await store.read(SUB_ID)  # 40s left: renewed to 300s
        vault.advance_time(250)
        await store.read(SUB_ID)  # 50s left: renewed again
        vault.advance_time(150)
        assert 0 == (await store.read(SUB_ID)).version  # 660s after creation, 150s left
    finally:
        store.close()
    assert 3 == vault.request_count("token")
    assert 0 == vault.request_count("login")


@pytest.mark.emulator_only("advances virtual time past a 300s token (live: test_openbao_live)")
async def test_non_renewable_token_is_not_renewed(vault: VaultEmulator) -> None:
    """A non-renewable token is used as is; once expired, calls fail with VaultAuthError."""
    vault.put_policy("rotator", ROTATOR_POLICY)
    token = vault.create_token(policies=["rotator"], ttl=300, renewable=False)
    store = VaultStore(settings_for(vault, token=Secret(token)), clock=vault.now)
    try:
        await store.read(SUB_ID)
        vault.advance_time(250)
        await store.read(SUB_ID)
        vault.advance_time(100)
        with pytest.raises(VaultAuthError, match="expired or revoked"):
            await store.read(SUB_ID)
    finally:
        store.close()
    assert 1 == vault.request_count("token")


@pytest.mark.emulator_only("advances virtual time by 90 days and counts token requests")
async def test_root_token_is_never_renewed(vault: VaultEmulator) -> None:
    """A token without a ttl (root) is looked up once and never renewed."""
    store = VaultStore(settings_for(vault, token=Secret(vault.root_token)), clock=vault.now)
    try:
        await store.read(SUB_ID)
        vault.advance_time(90 * 86400)
        await store.read(SUB_ID)
    finally:
        store.close()
    assert 1 == vault.request_count("token")


@pytest.mark.emulator_only("counts the requests a revoked token causes (request_count)")
async def test_revoked_plain_token_fails_without_retry_storm(
    vault: VaultEmulator, vault_settings: VaultSettings, vault_token: str
) -> None:
    """A revoked configured token: one refused request per call, no login, no renewal."""
    store = VaultStore(vault_settings.model_copy(update={"max_retries": 4}))
    try:
        await store.read(SUB_ID)
        vault.revoke_token(vault_token)
        vault.reset_request_counts()
        for _ in range(2):
            with pytest.raises(VaultAuthError) as caught:
                await store.read(SUB_ID)
    finally:
        store.close()
    assert (2, 2) == (vault.request_count(), vault.request_count("kv_read"))
    assert "the Vault token is expired or revoked" in str(caught.value)
    assert [] == [t for t in chain_texts(caught.value) if vault_token in t]


# -- namespace and TLS --------------------------------------------------------------


@pytest.mark.emulator_only("reads the namespace headers received (live: test_openbao_live)")
async def test_namespace_header_is_sent(vault: VaultEmulator) -> None:
    """vault.namespace goes out as X-Vault-Namespace, on the login and the KV calls."""
    vault.namespace("admin/payments")
    vault.put_policy("rotator", ROTATOR_POLICY, namespace="admin/payments")
    role = vault.add_approle("rotator", policies=["rotator"], namespace="admin/payments")
    store = VaultStore(approle_settings(vault, *role, namespace="admin/payments"))
    try:
        await store.read(SUB_ID)
    finally:
        store.close()
    assert {"admin/payments"} == vault.namespaces_seen()


async def test_tls_options_reach_hvac_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CA bundle, client certificate and namespace are what the store gives hvac.Client."""
    made: list[dict[str, Any]] = []

    def fake_client(**kwargs: Any) -> object:
        made.append(kwargs)
        return object()  # no Vault behind it: the request that made it fails

    monkeypatch.setattr(hvac, "Client", fake_client)
    settings = VaultSettings(
        address="https://vault.test:8200",
        auth_method="approle",
        role_id=Secret("r"),
        secret_id=Secret("s"),
        namespace="admin",
        ca_cert=Path("/etc/ca.pem"),
        client_cert=Path("/etc/client.pem"),
        client_key=Path("/etc/client-key.pem"),
    )
    store = VaultStore(settings)
    try:
        with pytest.raises(VaultRequestError):
            await store.read(SUB_ID)
    finally:
        store.close()
    assert [
        {
            "url": "https://vault.test:8200",
            "token": "",
            "namespace": "admin",
            "verify": "/etc/ca.pem",
            "cert": ("/etc/client.pem", "/etc/client-key.pem"),
            "timeout": 10.0,
        }
    ] == made


def test_default_tls_options_verify_with_system_cas() -> None:
    """Without TLS settings, hvac verifies against the system CAs and sends no client cert."""
    options = client_options(VaultSettings(address="https://vault.test:8200", token=Secret("t")))
    assert (True, None, "t") == (options["verify"], options["cert"], options["token"])


# -- Monite credentials from Vault --------------------------------------------------


async def test_monite_credentials_from_vault_drive_a_real_client(
    vault: VaultEmulator,
    approle: tuple[str, str],
    monite: MoniteEmulator,
    monite_credentials: tuple[str, str],
) -> None:
    """open_engine reads client_id and client_secret from Vault and Monite accepts them."""
    client_id, client_secret = monite_credentials
    vault.kv_write(
        "secret", CREDENTIALS_PATH, {"client_id": client_id, "client_secret": client_secret}
    )
    subscription_id = monite.seed()
    settings = Settings(
        monite=MoniteSettings(
            base_url=monite.base_url,
            credentials_path=CREDENTIALS_PATH,
            timeout=timedelta(seconds=2),
        ),
        vault=approle_settings(vault, *approle),
        policy=DEFAULT_POLICY,
    )
    async with open_engine(settings, owner="test:1") as engine:
        listed = await engine.monite.list_subscriptions()
        assert [] == [t for t in (repr(engine.monite), repr(engine.store)) if client_secret in t]
    assert [subscription_id] == [s.id for s in listed]
    assert 1 == monite.request_count("token")


async def test_monite_credentials_missing_path_names_path_and_keys(
    approle_store: VaultStore,
) -> None:
    """No secret at credentials_path is a VaultRequestError naming the path and expected keys."""
    with pytest.raises(VaultRequestError) as caught:
        await approle_store.read_monite_credentials(CREDENTIALS_PATH)
    message = str(caught.value)
    assert "Vault has nothing at secret/data/monite/api" in message
    assert "the keys client_id and client_secret" in message


async def test_monite_credentials_missing_key_is_named(
    approle_store: VaultStore, vault: VaultEmulator
) -> None:
    """A secret without client_secret is a VaultRequestError naming that key, not the values."""
    vault.kv_write("secret", CREDENTIALS_PATH, {"client_id": "cid-visible", "secret": "x-visible"})
    with pytest.raises(VaultRequestError) as caught:
        await approle_store.read_monite_credentials(CREDENTIALS_PATH)
    message = str(caught.value)
    assert "has no usable client_secret" in message
    assert [] == [v for v in ("cid-visible", "x-visible") if v in message]


async def test_monite_credentials_denied_names_the_capability(
    vault: VaultEmulator, vault_settings: VaultSettings
) -> None:
    """A policy that cannot read credentials_path gives a VaultAuthError saying what to grant."""
    vault.kv_write("secret", CREDENTIALS_PATH, {"client_id": "c", "client_secret": "s"})
    store = VaultStore(vault_settings)
    try:
        with pytest.raises(VaultAuthError) as caught:
            await store.read_monite_credentials(CREDENTIALS_PATH)
    finally:
        store.close()
    assert 'the policy needs "read" on secret/data/monite/api' in str(caught.value)


# -- hygiene ------------------------------------------------------------------------


async def test_no_credential_in_any_error_or_repr(
    vault: VaultEmulator, approle: tuple[str, str], tmp_path: Path
) -> None:
    """No token, role_id, secret_id or jwt appears in reprs or the text of any error's chain."""
    role_id, secret_id = approle
    # A JWT-shaped service account token no Kubernetes role accepts: the login is refused.
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyb3RhdG9yIn0." + secrets.token_urlsafe(32)
    jwt_file = tmp_path / "token"
    settings = approle_settings(vault, role_id, secret_id)
    store = VaultStore(settings)
    texts = [repr(settings), str(settings), repr(store)]
    errors: list[VaultError] = []
    try:
        await store.read(SUB_ID)
        texts += [repr(store), repr(store.token)]
        first_token = current_token(store)
        vault.revoke_token(first_token)
        await store.read(SUB_ID)  # logs in again
        second_token = current_token(store)
        texts += [repr(store), repr(store.token)]
        denied = VaultStore(approle_settings(vault, role_id, secret_id, path_prefix="elsewhere"))
        try:
            with pytest.raises(VaultAuthError) as caught_denied:
                await denied.write(record(), cas=0)
            errors.append(caught_denied.value)
        finally:
            denied.close()
        wrong = VaultStore(approle_settings(vault, role_id, secret_id + "-wrong"))
        try:
            with pytest.raises(VaultAuthError) as caught_wrong:
                await wrong.read(SUB_ID)
            errors.append(caught_wrong.value)
        finally:
            wrong.close()
        write_text(jwt_file, jwt)
        k8s = VaultStore(
            settings_for(vault, auth_method="kubernetes", role="rotator", jwt_file=jwt_file)
        )
        try:
            with pytest.raises(VaultAuthError) as caught_k8s:
                await k8s.read(SUB_ID)
            errors.append(caught_k8s.value)
            texts.append(repr(k8s))
        finally:
            k8s.close()
    finally:
        store.close()
    for error in errors:
        texts += chain_texts(error)
    assert 3 == len(errors)
    assert 2 == len({first_token, second_token})
    credentials = [first_token, second_token, role_id, secret_id, jwt]
    assert [] == [c for c in credentials for text in texts if c in text]
