"""Vault errors that could quote request data are withheld; vault.* audit events are stable.

Everything runs against the Vault emulator over real HTTP through hvac and requests.
"""

from __future__ import annotations

import traceback
from datetime import timedelta
from typing import Any

import pytest
import requests

from rotator import events
from rotator.config import VaultSettings
from rotator.errors import VaultError, VaultRequestError, VaultUnavailable
from rotator.model import Secret
from rotator.sandbox.vault import VaultEmulator
from rotator.vault import VaultStore, read_monite_credentials, translate_hvac_error
from tests.conftest import capture_audit
from tests.fixtures_vault import ROTATOR_POLICY

SUB_ID = "9b2f6c1e-0000-4000-8000-00000000b001"
CREDENTIALS_PATH = "monite/api"


def settings_for(vault: VaultEmulator, **values: Any) -> VaultSettings:
    """Settings for the emulator: short timeout, no read retries, then `values`."""
    return VaultSettings(
        address=vault.address, timeout=timedelta(seconds=2), max_retries=0, **values
    )


def forms(value: str) -> list[str]:
    """The value, its repr, and the escaped text a repr shows between the quotes."""
    return [value, repr(value), repr(value)[1:-1], *value.split()]


def chain_texts(exc: BaseException) -> list[str]:
    """str and repr of an exception and everything chained to it, plus the rendered traceback."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current)]
        stack += [current.__cause__, current.__context__]
    return texts


def leaks(values: list[str], texts: list[str]) -> list[str]:
    """Which of `values` occur in any of `texts` (the values themselves are never printed)."""
    return [f"value #{i}" for i, v in enumerate(values) if any(v and v in t for t in texts)]


# ---------------------------------------------------------------------------
# A token requests refuses to send: InvalidHeader must not echo it
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["trailing newline", "inner newline", "inner escape"])
async def test_token_requests_cannot_send_gives_vault_error_without_token(
    vault: VaultEmulator, vault_token: str, shape: str
) -> None:
    """A token with a control character (config bypassed) fails as VaultRequestError, text clean."""
    half = len(vault_token) // 2
    bad = {
        "trailing newline": f"{vault_token}\n",
        "inner newline": f"{vault_token[:half]}\n{vault_token[half:]}",
        "inner escape": f"{vault_token[:half]}\r{vault_token[half:]}",
    }[shape]
    store = VaultStore(settings_for(vault, token=Secret(bad)))
    try:
        with capture_audit() as captured, pytest.raises(VaultRequestError) as caught:
            await store.read(SUB_ID)
    finally:
        store.close()
    message = str(caught.value)
    assert message.startswith("Vault read secret/data/monite/webhooks/")
    assert "(InvalidHeader)" in message
    assert "one line without spaces or control characters" in message
    texts = [*chain_texts(caught.value), repr(captured)]
    assert [] == leaks([*forms(bad), vault_token], texts)
    lookups = [e for e in captured if e["event"] == events.VAULT_TOKEN_LOOKUP_FAILED]
    assert [(False, "warning")] == [(e["retrying"], e["log_level"]) for e in lookups]
    assert 0 == vault.request_count()  # nothing ever left the process


@pytest.mark.parametrize(
    "exc_type",
    [
        requests.exceptions.InvalidHeader,
        requests.exceptions.InvalidURL,
        requests.exceptions.InvalidJSONError,
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.RetryError,
    ],
)
def test_request_quoting_exception_text_is_never_copied(
    exc_type: type[requests.exceptions.RequestException],
) -> None:
    """Texts that may quote the request are replaced by the class name, even when not redactable."""
    quoted = "Invalid return character in header value: 'hvs.unknown-to-scrubber\\n'"
    error = translate_hvac_error(exc_type(quoted), operation="read", path="secret/data/x")
    assert isinstance(error, VaultError)
    assert f"Vault read secret/data/x failed ({exc_type.__name__})" == str(error).split(":")[0]
    assert "unknown-to-scrubber" not in str(error)


def test_transport_error_text_is_kept_and_scrubbed() -> None:
    """A connection error keeps its host and port text, and a listed secret is still redacted."""
    exc = requests.exceptions.ConnectionError("127.0.0.1:1 refused for hvs.listed-token\n")
    error = translate_hvac_error(exc, operation="read", path="p", secrets=["hvs.listed-token\n"])
    assert isinstance(error, VaultUnavailable)
    assert "127.0.0.1:1 refused" in str(error)
    assert "listed-token" not in str(error)


# ---------------------------------------------------------------------------
# Stable event names
# ---------------------------------------------------------------------------


def test_vault_event_names_are_registered() -> None:
    """Every vault.* name vault.py logs is in EVENTS, namespaced `vault.verb`."""
    names = {
        events.VAULT_LOGIN,
        events.VAULT_LOGIN_FAILED,
        events.VAULT_RELOGIN,
        events.VAULT_TOKEN_LOOKUP_FAILED,
        events.VAULT_TOKEN_RENEWED,
        events.VAULT_RENEW_FAILED,
        events.VAULT_TOKEN_MAX_TTL,
        events.VAULT_RETRY,
        events.VAULT_CLIENT_CLOSE_FAILED,
    }
    assert names == {e for e in events.EVENTS if e.startswith("vault.")}
    assert 40 == len(events.EVENTS)


async def test_approle_login_and_relogin_are_events_without_tokens(vault: VaultEmulator) -> None:
    """vault.login carries method, mount and ttl; a revoked token gives vault.relogin; no token."""
    vault.put_policy("rotator", ROTATOR_POLICY)
    role_id, secret_id = vault.add_approle("rotator", policies=["rotator"], token_ttl=600)
    store = VaultStore(
        settings_for(
            vault, auth_method="approle", role_id=Secret(role_id), secret_id=Secret(secret_id)
        ),
        clock=vault.now,
    )
    tokens: list[str] = []
    try:
        with capture_audit() as captured:
            await store.read(SUB_ID)
            assert store._auth._lease is not None
            tokens.append(store._auth._lease.token.reveal())
            vault.revoke_token(tokens[0])
            await store.read(SUB_ID)
            assert store._auth._lease is not None
            tokens.append(store._auth._lease.token.reveal())
    finally:
        store.close()
    vault_events = [e for e in captured if e["event"].startswith("vault.")]
    assert [
        (events.VAULT_LOGIN, "info", "approle", "approle", 600, 1),
        (events.VAULT_RELOGIN, "info", "approle", "approle", None, None),
        (events.VAULT_LOGIN, "info", "approle", "approle", 600, 2),
    ] == [
        (
            e["event"],
            e["log_level"],
            e["method"],
            e["mount"],
            e.get("ttl_seconds"),
            e.get("logins"),
        )
        for e in vault_events
    ]
    assert [] == leaks([*tokens, role_id, secret_id], [repr(captured)])


async def test_renewal_during_outage_is_renew_failed_event(vault: VaultEmulator) -> None:
    """A renewal that meets a sealed Vault logs vault.renew_failed (retrying) with time left."""
    vault.put_policy("rotator", ROTATOR_POLICY)
    token = vault.create_token(policies=["rotator"], ttl=300)
    store = VaultStore(settings_for(vault, token=Secret(token)), clock=vault.now)
    try:
        await store.read(SUB_ID)
        vault.advance_time(210)  # 90s left: under a third, renewal is due
        vault.seal()
        with capture_audit() as captured, pytest.raises(VaultUnavailable):
            await store.read(SUB_ID)
    finally:
        store.close()
    renewals = [e for e in captured if e["event"] == events.VAULT_RENEW_FAILED]
    assert [(True, 90, "warning")] == [
        (e["retrying"], e["expires_in_seconds"], e["log_level"]) for e in renewals
    ]
    assert "sealed" in renewals[0]["error"]
    assert [] == leaks([token], [repr(captured)])


# ---------------------------------------------------------------------------
# Monite credentials through the public method
# ---------------------------------------------------------------------------


async def test_read_monite_credentials_is_a_public_store_method(
    vault: VaultEmulator, vault_settings: VaultSettings
) -> None:
    """store.read_monite_credentials and the module function agree, values trimmed."""
    vault.put_policy(
        "monite-credentials", 'path "secret/data/monite/api" { capabilities = ["read"] }'
    )
    token = vault.create_token(policies=["rotator", "monite-credentials"])
    vault.kv_write(
        "secret", CREDENTIALS_PATH, {"client_id": " cid-1 ", "client_secret": "cs-review\n"}
    )
    store = VaultStore(vault_settings.model_copy(update={"token": Secret(token)}))
    try:
        by_method = await store.read_monite_credentials(CREDENTIALS_PATH)
        by_function = await read_monite_credentials(store, CREDENTIALS_PATH)
    finally:
        store.close()
    assert ("cid-1", Secret("cs-review")) == by_method
    assert by_method == by_function
