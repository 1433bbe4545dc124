"""VaultStore against the Vault emulator and OpenBao over real HTTP, through the real hvac code."""

from __future__ import annotations

import asyncio
import inspect
import random
import socket
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import hvac
import hvac.exceptions
import pytest
import requests
import structlog

from rotator.config import VaultSettings
from rotator.errors import (
    VaultAuthError,
    VaultConflict,
    VaultError,
    VaultRequestError,
    VaultUnavailable,
)
from rotator.model import Record, Regenerated, Subscription
from rotator.secret import Secret
from rotator.vault import VaultStore, translate_hvac_error

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
SUB = Subscription(
    id="9b2f6c1e-0000-4000-8000-000000000001",
    url="https://hooks.example.com/monite",
    object_type="payable",
    status="enabled",
    event_types=("payable.created", "payable.updated"),
)


def active_record(subscription_id: str = SUB.id, secret: str = "whsec-one") -> Record:
    return Record(
        subscription_id=subscription_id,
        secret=Secret(secret),
        rotated_at=NOW,
        state="active",
        rotation_id="rot-1",
        url=SUB.url,
        object_type=SUB.object_type,
        event_types=SUB.event_types,
    )


def no_retries(settings: VaultSettings) -> VaultSettings:
    return settings.model_copy(update={"max_retries": 0})


def refusing(settings: VaultSettings) -> VaultSettings:
    """The same settings aimed at a loopback port nothing listens on: connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return settings.model_copy(update={"address": f"http://127.0.0.1:{port}"})


@pytest.fixture
async def store(vault_settings: VaultSettings) -> AsyncIterator[VaultStore]:
    s = VaultStore(vault_settings)
    yield s
    s.close()


@pytest.fixture
def root_client(vault: Any) -> Any:
    """An hvac client with the root token, to arrange state the store must not create."""
    client = hvac.Client(url=vault.address, token=vault.root_token, timeout=5)
    yield client
    client.adapter.close()


def record_path(settings: VaultSettings, subscription_id: str) -> str:
    return f"{settings.path_prefix}/{subscription_id}"


# -- reads and writes -------------------------------------------------------------


async def test_read_missing_record_is_version_zero(store: VaultStore) -> None:
    """A subscription with no record reads as an empty record at version 0."""
    assert Record(subscription_id=SUB.id) == await store.read(SUB.id)


async def test_create_with_cas_zero_and_read_back(
    store: VaultStore, vault: Any, vault_settings: VaultSettings
) -> None:
    """A cas=0 write creates version 1, and reading it back gives every field unchanged."""
    record = active_record()
    written = await store.write(record, cas=0)
    assert record.at_version(1) == written
    assert written == await store.read(SUB.id)
    stored = vault.kv_read(vault_settings.mount, record_path(vault_settings, SUB.id))
    assert (record.to_vault(), 1) == stored


async def test_cas_mismatch_is_conflict(store: VaultStore) -> None:
    """A write whose cas is not the current version raises VaultConflict and changes nothing."""
    await store.write(active_record(), cas=0)
    with pytest.raises(VaultConflict):
        await store.write(active_record(secret="other"), cas=0)
    with pytest.raises(VaultConflict):
        await store.write(active_record(secret="other"), cas=5)
    assert active_record().at_version(1) == await store.read(SUB.id)
    assert 2 == store.requests[("write", "VaultConflict")]


async def test_claim_commit_sequence(store: VaultStore) -> None:
    """The protocol's create, claim and commit writes make versions 1, 2 and 3 under cas."""
    v1 = await store.write(active_record(), cas=0)
    claim = v1.claimed(SUB, rotation_id="rot-2", owner="host:1", ttl=timedelta(minutes=2), now=NOW)
    v2 = await store.write(claim, cas=v1.version)
    assert 2 == v2.version
    assert v2 == await store.read(SUB.id)
    assert ("rotating", 120.0) == (v2.state, v2.claim_ttl_seconds)
    assert v2.created_time is not None
    assert v2.created_time + timedelta(minutes=2) == v2.fence_ends(timedelta(hours=1))
    commit = v2.committed(
        Regenerated(SUB, Secret("whsec-two")),
        rotation_id="rot-2",
        at=NOW + timedelta(seconds=1),
        settle_for=None,
    )
    v3 = await store.write(commit, cas=v2.version)
    assert 3 == v3.version
    read = await store.read(SUB.id)
    assert v3 == read
    assert ("active", None, Secret("whsec-two")) == (read.state, read.claimed_by, read.secret)
    with pytest.raises(VaultConflict):
        await store.write(claim, cas=v1.version)


async def test_deleted_latest_version_reads_current_version(
    store: VaultStore, root_client: Any, vault_settings: VaultSettings
) -> None:
    """After the latest version is deleted, read gives its version (stale, no data) for cas."""
    await store.write(active_record(), cas=0)
    await store.write(active_record(secret="whsec-2"), cas=1)
    root_client.secrets.kv.v2.delete_latest_version_of_secret(
        path=record_path(vault_settings, SUB.id), mount_point=vault_settings.mount
    )
    assert Record(subscription_id=SUB.id, version=2, state="stale") == await store.read(SUB.id)
    assert 3 == (await store.write(active_record(secret="whsec-3"), cas=2)).version


async def test_destroyed_latest_version_reads_current_version(
    store: VaultStore, root_client: Any, vault_settings: VaultSettings
) -> None:
    """After the latest version is destroyed, read gives its version (stale, no data) for cas."""
    await store.write(active_record(), cas=0)
    root_client.secrets.kv.v2.destroy_secret_versions(
        path=record_path(vault_settings, SUB.id), versions=[1], mount_point=vault_settings.mount
    )
    assert Record(subscription_id=SUB.id, version=1, state="stale") == await store.read(SUB.id)
    assert 2 == (await store.write(active_record(), cas=1)).version


async def test_invalid_subscription_id_is_refused(store: VaultStore) -> None:
    """An id that would leave the prefix or enter a sub-folder is refused before any request."""
    for bad in ("", "..", "a/b", "x\n"):
        with pytest.raises(VaultRequestError):
            await store.read(bad)
    assert 0 == sum(store.requests.values())


# -- listing ----------------------------------------------------------------------


async def test_list_ids_empty(store: VaultStore) -> None:
    """With no record under the prefix, list_ids is empty (Vault's 404 is not an error)."""
    assert [] == await store.list_ids()


async def test_list_ids_skips_folders(
    store: VaultStore, root_client: Any, vault_settings: VaultSettings
) -> None:
    """list_ids returns the records' ids and leaves out sub-folders."""
    for sid in ("b-sub", "a-sub"):
        await store.write(active_record(sid), cas=0)
    root_client.secrets.kv.v2.create_or_update_secret(
        path=f"{vault_settings.path_prefix}/folder/nested",
        secret={"x": "y"},
        mount_point=vault_settings.mount,
    )
    assert ["a-sub", "b-sub"] == await store.list_ids()


async def test_list_ids_then_read_gives_every_record_at_its_version(store: VaultStore) -> None:
    """Every listed id reads back as the record last written under it, at its version."""
    expected = {}
    for n in range(12):
        sid = f"sub-{n:02d}"
        expected[sid] = await store.write(active_record(sid, secret=f"s{n}"), cas=0)
    expected["sub-00"] = await store.write(active_record("sub-00", secret="again"), cas=1)
    ids = await store.list_ids()
    assert expected == dict(zip(ids, await asyncio.gather(*map(store.read, ids)), strict=True))


# -- failures ---------------------------------------------------------------------


async def test_sealed_vault_is_unavailable(vault: Any, vault_settings: VaultSettings) -> None:
    """A sealed Vault makes reads raise VaultUnavailable; unsealed, they work again."""
    store = VaultStore(no_retries(vault_settings))
    try:
        vault.seal()
        with pytest.raises(VaultUnavailable):
            await store.read(SUB.id)
        with pytest.raises(VaultUnavailable, match="sealed"):
            await store.check()
        vault.unseal()
        assert 0 == (await store.read(SUB.id)).version
    finally:
        vault.unseal()
        store.close()


@pytest.mark.emulator_only("refuses and then accepts connections on the same port")
async def test_connection_refused_is_unavailable(vault: Any, vault_settings: VaultSettings) -> None:
    """Refused connections raise VaultUnavailable; once Vault accepts again, calls succeed."""
    store = VaultStore(no_retries(vault_settings))
    try:
        vault.refuse_connections()
        with pytest.raises(VaultUnavailable):
            await store.read(SUB.id)
        with pytest.raises(VaultUnavailable):
            await store.write(active_record(), cas=0)
        vault.accept_connections()
        assert 1 == (await store.write(active_record(), cas=0)).version
    finally:
        vault.accept_connections()
        store.close()


@pytest.mark.emulator_only("injects latency (faults.latency)")
async def test_slow_vault_times_out_as_unavailable(
    vault: Any, vault_settings: VaultSettings
) -> None:
    """A Vault slower than the configured timeout raises VaultUnavailable naming the timeout."""
    store = VaultStore(
        no_retries(vault_settings).model_copy(update={"timeout": timedelta(seconds=0.2)})
    )
    try:
        vault.faults.latency = 0.6
        with pytest.raises(VaultUnavailable, match="timed out"):
            await store.read(SUB.id)
    finally:
        vault.faults.latency = 0.0
        store.close()


async def test_revoked_token_is_auth_error(store: VaultStore, vault: Any, vault_token: str) -> None:
    """A revoked token makes reads, writes and check raise VaultAuthError."""
    vault.revoke_token(vault_token)
    with pytest.raises(VaultAuthError):
        await store.read(SUB.id)
    with pytest.raises(VaultAuthError):
        await store.write(active_record(), cas=0)
    with pytest.raises(VaultAuthError, match="lookup-self"):
        await store.check()


async def test_least_privilege_token_cannot_write_outside_prefix(
    vault_settings: VaultSettings,
) -> None:
    """The fixture's least-privilege token is refused outside its prefix with VaultAuthError."""
    store = VaultStore(vault_settings.model_copy(update={"path_prefix": "other/place"}))
    try:
        with pytest.raises(VaultAuthError):
            await store.write(active_record(), cas=0)
    finally:
        store.close()


@pytest.mark.emulator_only("injects a 5xx (faults.fail_next) and counts the requests")
async def test_transient_read_error_is_retried(store: VaultStore, vault: Any) -> None:
    """One 5xx on a read is retried and the read then succeeds."""
    await store.write(active_record(), cas=0)
    before = vault.request_count("kv_read")
    vault.faults.fail_next = 1
    assert active_record().at_version(1) == await store.read(SUB.id)
    assert 2 == vault.request_count("kv_read") - before
    assert 1 == store.requests[("read", "VaultUnavailable")]
    assert 1 == store.requests[("read", "ok")]


@pytest.mark.emulator_only("injects 5xx (faults.fail_next) and counts the requests")
async def test_retries_are_bounded(vault: Any, vault_settings: VaultSettings) -> None:
    """A read that keeps failing stops after max_retries retries with VaultUnavailable."""
    store = VaultStore(vault_settings.model_copy(update={"max_retries": 2}))
    try:
        before = vault.request_count("kv_read")
        vault.faults.fail_next = 10
        with pytest.raises(VaultUnavailable):
            await store.read(SUB.id)
        assert 3 == vault.request_count("kv_read") - before
    finally:
        vault.faults.fail_next = 0
        store.close()


@pytest.mark.emulator_only("injects 5xx (faults.fail_next)")
async def test_retry_waits_are_jitter_from_the_injected_rng_on_the_injected_sleep(
    vault: Any, vault_settings: VaultSettings
) -> None:
    """Each retry sleeps on the injected `sleep` for jitter from the injected `rng`; vault.retry."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    settings = vault_settings.model_copy(update={"max_retries": 2})
    store = VaultStore(settings, sleep=sleep, rng=random.Random(7))
    try:
        vault.faults.fail_next = 10
        with structlog.testing.capture_logs() as logs, pytest.raises(VaultUnavailable):
            await store.read(SUB.id)
    finally:
        vault.faults.fail_next = 0
        store.close()
    rng = random.Random(7)
    expected = [rng.uniform(0.0, min(5.0, 0.2 * 2**n)) for n in range(2)]
    assert expected == waits
    retries = [e for e in logs if e["event"] == "vault.retry"]
    assert [(1, "read", round(expected[0], 2)), (2, "read", round(expected[1], 2))] == [
        (e["retry"], e["operation"], e["retry_in_seconds"]) for e in retries
    ]


@pytest.mark.emulator_only("injects a 5xx (faults.fail_next) and counts the requests")
async def test_write_error_is_not_retried(store: VaultStore, vault: Any) -> None:
    """A 5xx on a write raises VaultUnavailable after exactly one request."""
    await store.read(SUB.id)  # the token's first-use lookup is done, so the fault hits the write
    before = vault.request_count("kv_write")
    vault.faults.fail_next = 1
    with pytest.raises(VaultUnavailable):
        await store.write(active_record(), cas=0)
    assert 1 == vault.request_count("kv_write") - before
    assert 1 == store.requests[("write", "VaultUnavailable")]


# -- check ------------------------------------------------------------------------


async def test_check_passes(store: VaultStore) -> None:
    """check() passes for an unsealed Vault, a live token and a policy that may list."""
    await store.check()
    # every step succeeded; an empty prefix lists as not found, which check() accepts
    assert {
        ("health", "ok"): 1,
        ("login", "ok"): 1,
        ("lookup_self", "ok"): 1,
        ("list", "not_found"): 1,
    } == dict(store.requests)


@pytest.mark.emulator_only("counts the requests Vault received (request_count)")
async def test_check_sends_only_its_four_requests(store: VaultStore, vault: Any) -> None:
    """check() sends one health call, two token calls and one list, nothing else."""
    vault.reset_request_counts()
    await store.check()
    kinds = ("health", "token", "kv_list")
    assert {"health": 1, "token": 2, "kv_list": 1} == {k: vault.request_count(k) for k in kinds}
    assert 4 == vault.request_count()  # nothing beyond those


async def test_check_names_missing_list_capability(
    vault: Any, vault_settings: VaultSettings
) -> None:
    """check() raises VaultAuthError naming the path and `list` when the policy cannot list."""
    vault.put_policy(
        "read-only-data",
        'path "secret/data/monite/webhooks/*" { capabilities = ["read"] }',
    )
    token = vault.create_token(policies=["read-only-data"], ttl=3600)
    store = VaultStore(vault_settings.model_copy(update={"token": Secret(token)}))
    try:
        with pytest.raises(VaultAuthError) as caught:
            await store.check()
        assert "secret/metadata/monite/webhooks" in str(caught.value)
        assert '"list"' in str(caught.value)
    finally:
        store.close()


# -- concurrency and hygiene ------------------------------------------------------


async def test_concurrent_reads_and_writes_use_one_client_per_thread(
    vault_settings: VaultSettings,
) -> None:
    """Many concurrent writes and reads all succeed, each worker thread with its own client."""
    owners: list[int] = []

    def factory() -> hvac.Client:
        owners.append(threading.get_ident())
        return hvac.Client(
            url=vault_settings.address,
            token=vault_settings.token.reveal() if vault_settings.token else None,
            timeout=5,
        )

    store = VaultStore(vault_settings, client_factory=factory)
    try:
        ids = [f"conc-{n:03d}" for n in range(60)]
        written = await asyncio.gather(*(store.write(active_record(i), cas=0) for i in ids))
        assert [1] * len(ids) == [r.version for r in written]
        read = await asyncio.gather(*(store.read(i) for i in ids))
        assert written == read
        assert len(owners) == len(set(owners))
        assert 1 < len(owners) <= vault_settings.pool_size
        assert len(ids) * 2 == store.requests[("write", "ok")] + store.requests[("read", "ok")]
    finally:
        store.close()


async def test_pool_size_bounds_the_hvac_clients(vault_settings: VaultSettings) -> None:
    """With pool_size 2, forty concurrent reads share exactly two worker threads and clients."""
    made: list[int] = []

    def factory() -> hvac.Client:
        made.append(threading.get_ident())
        return hvac.Client(url=vault_settings.address, token=vault_settings.token.reveal())

    assert vault_settings.token is not None
    store = VaultStore(vault_settings.model_copy(update={"pool_size": 2}), client_factory=factory)
    try:
        await asyncio.gather(*(store.read(f"pool-{n}") for n in range(40)))
        assert 2 == len(set(made))
        assert 2 == len(made)
    finally:
        store.close()


async def test_close_then_reuse_opens_new_clients(store: VaultStore) -> None:
    """After close(), the store opens fresh clients instead of using closed sessions."""
    await store.read(SUB.id)
    store.close()
    assert 0 == (await store.read(SUB.id)).version


def _instances(module: Any, base: type[Exception]) -> list[Exception]:
    found = []
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if not issubclass(cls, base):
            continue
        try:
            found.append(cls("boom"))
        except TypeError:  # requests' JSONDecodeError takes (msg, doc, pos)
            found.append(cls("boom", "", 0))
    return found


def test_every_library_exception_maps_to_a_vault_error() -> None:
    """Every class in hvac.exceptions and requests.exceptions maps to a VaultError subclass."""
    hvac_errors = [
        cls(errors=["some vault error"], method="GET", url="http://v/v1/secret/data/x")
        for _, cls in inspect.getmembers(hvac.exceptions, inspect.isclass)
        if issubclass(cls, hvac.exceptions.VaultError)
    ]
    request_errors = _instances(requests.exceptions, requests.exceptions.RequestException)
    assert len(hvac_errors) >= 14
    assert len(request_errors) >= 15
    for exc in [*hvac_errors, *request_errors]:
        mapped = translate_hvac_error(exc, operation="read", path="secret/data/x")
        assert type(mapped) in (VaultUnavailable, VaultAuthError, VaultRequestError), exc
        assert str(mapped).startswith("Vault read secret/data/x")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (hvac.exceptions.Forbidden(errors=["permission denied"]), VaultAuthError),
        (hvac.exceptions.Unauthorized(), VaultAuthError),
        (hvac.exceptions.InvalidRequest(errors=["bad"]), VaultRequestError),
        (hvac.exceptions.InvalidPath(), VaultRequestError),
        (hvac.exceptions.VaultDown(errors=["Vault is sealed"]), VaultUnavailable),
        (hvac.exceptions.InternalServerError(), VaultUnavailable),
        (hvac.exceptions.RateLimitExceeded(), VaultUnavailable),
        (requests.exceptions.ConnectionError("refused"), VaultUnavailable),
        (requests.exceptions.ReadTimeout("slow"), VaultUnavailable),
        (requests.exceptions.SSLError("bad cert"), VaultUnavailable),
        (requests.exceptions.MissingSchema("no scheme"), VaultRequestError),
        (KeyError("data"), VaultRequestError),
    ],
)
def test_translation_of_key_classes(exc: Exception, expected: type[VaultError]) -> None:
    """The classes that decide retry or give-up map to the documented project error."""
    assert expected.__name__ == type(translate_hvac_error(exc, operation="op", path="p")).__name__


def test_cas_message_maps_to_conflict() -> None:
    """Vault's 400 check-and-set mismatch text maps to VaultConflict, not VaultRequestError."""
    exc = hvac.exceptions.InvalidRequest(
        errors=["check-and-set parameter did not match the current version"]
    )
    assert "VaultConflict" == type(translate_hvac_error(exc, operation="write", path="p")).__name__


def test_translation_redacts_given_secrets() -> None:
    """A token that shows up in Vault's error text is redacted from the message."""
    exc = hvac.exceptions.Forbidden(errors=["token hvs.SECRET-TOKEN is bad"])
    mapped = translate_hvac_error(exc, operation="read", path="p", secrets=["hvs.SECRET-TOKEN"])
    assert "hvs.SECRET-TOKEN" not in str(mapped)


async def test_no_token_or_secret_in_repr_or_errors(
    vault: Any, vault_settings: VaultSettings, vault_token: str
) -> None:
    """Neither the token nor a written secret appears in the store's repr or any error text."""
    store = VaultStore(no_retries(vault_settings))
    unreachable = VaultStore(refusing(no_retries(vault_settings)))
    texts = [repr(store), str(store)]
    failures: list[Callable[[], Any]] = []
    try:
        await store.write(active_record(secret="whsec-visible?"), cas=0)
        failures = [
            lambda: store.write(active_record(secret="whsec-visible?"), cas=0),
            lambda: store.write(active_record(secret="whsec-visible?"), cas=7),
        ]
        for make in failures:
            with pytest.raises(VaultError) as caught:
                await make()
            texts.append(str(caught.value))
        with pytest.raises(VaultUnavailable) as refused:
            await unreachable.write(active_record(secret="whsec-visible?"), cas=1)
        texts.append(str(refused.value))
        vault.revoke_token(vault_token)
        for call in (store.read(SUB.id), store.check()):
            with pytest.raises(VaultAuthError) as denied:
                await call
            texts.append(str(denied.value))
    finally:
        store.close()
        unreachable.close()
    assert 7 == len(texts)
    for text in texts:
        assert vault_token not in text
        assert "whsec-visible?" not in text


def _chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


async def test_failed_write_traceback_holds_no_token_or_secret(
    vault_settings: VaultSettings, vault_token: str
) -> None:
    """No frame left in a failed write's exception chain holds the token or secret as a local."""
    store = VaultStore(refusing(no_retries(vault_settings)))
    try:
        with pytest.raises(VaultUnavailable) as caught:
            await store.write(active_record(secret="whsec-in-flight"), cas=0)
    finally:
        store.close()
    seen = []
    for exc in _chain(caught.value):
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename != __file__:
                seen += [repr(v) for v in tb.tb_frame.f_locals.values()]
            tb = tb.tb_next
    assert seen, "the translated error keeps its own frames"
    assert [] == [text for text in seen if vault_token in text or "whsec-in-flight" in text]
