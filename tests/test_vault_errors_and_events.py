"""Vault errors that could quote request data are withheld; vault.* audit events are stable.

Everything runs against the Vault emulator (and, unless marked emulator_only, OpenBao)
over real HTTP through hvac and requests.
"""

from __future__ import annotations

import http.client
import http.server
import secrets
import threading
import traceback
import urllib.parse
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import hvac
import pytest
import requests

from rotator import events
from rotator.config import MoniteSettings, RotationSettings, VaultSettings
from rotator.engine import Engine
from rotator.errors import VaultError, VaultRequestError, VaultUnavailable
from rotator.model import Record
from rotator.monite import MoniteClient
from rotator.policy import Policy
from rotator.sandbox import record_issued
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from rotator.secret import Secret
from rotator.vault import VaultStore, translate_hvac_error
from tests.conftest import capture_audit
from tests.fixtures_vault import ROTATOR_POLICY

SUB_ID = "9b2f6c1e-0000-4000-8000-00000000b001"
CREDENTIALS_PATH = "monite/api"


def settings_for(vault: VaultEmulator | EchoingProxy, **values: Any) -> VaultSettings:
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


@pytest.mark.emulator_only("asserts no request reached Vault (request_count)")
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
    """Every vault.* name rotator.vault logs is in EVENTS, namespaced `vault.verb`."""
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
            assert store.token is not None
            tokens.append(store.token.reveal())
            vault.revoke_token(tokens[0])
            await store.read(SUB_ID)
            assert store.token is not None
            tokens.append(store.token.reveal())
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


@pytest.mark.emulator_only("advances virtual time to make a renewal due")
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


async def test_monite_credentials_are_read_trimmed(
    vault: VaultEmulator, vault_settings: VaultSettings
) -> None:
    """store.read_monite_credentials returns the id and secret Vault holds, trimmed."""
    vault.put_policy(
        "monite-credentials", 'path "secret/data/monite/api" { capabilities = ["read"] }'
    )
    token = vault.create_token(policies=["rotator", "monite-credentials"])
    vault.kv_write(
        "secret", CREDENTIALS_PATH, {"client_id": " cid-1 ", "client_secret": "cs-review\n"}
    )
    store = VaultStore(vault_settings.model_copy(update={"token": Secret(token)}))
    try:
        credentials = await store.read_monite_credentials(CREDENTIALS_PATH)
    finally:
        store.close()
    assert ("cid-1", Secret("cs-review")) == credentials


# ---------------------------------------------------------------------------
# A proxy in front of Vault that echoes request bodies
# ---------------------------------------------------------------------------

FRAGMENT = 8  # a run of this many characters of a secret counts as a leak


class EchoingProxy:
    """A loopback proxy in front of `upstream` that answers chosen requests itself, with
    their own body echoed back as an HTML error page (what a misconfigured proxy does)."""

    def __init__(self, upstream: str, echo: Callable[[str, str, int], bool], status: int) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.echo = echo  # (method, path, n-th write) -> answer with the echo
        self.status = status
        self.echoed = 0
        self._writes = 0
        self._lock = threading.Lock()
        handler = self._handler_class()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> EchoingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy._lock:
                    if self.command in ("POST", "PUT", "PATCH"):
                        proxy._writes += 1
                    echo = proxy.echo(self.command, self.path, proxy._writes)
                    proxy.echoed += echo
                if echo:
                    page = b"<html><body><h1>Bad gateway</h1><pre>" + body + b"</pre></html>"
                    self._answer(proxy.status, "text/html", page)
                    return
                upstream = http.client.HTTPConnection(
                    proxy.upstream.hostname or "127.0.0.1", proxy.upstream.port, timeout=5
                )
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    self._answer(
                        answer.status,
                        answer.getheader("Content-Type") or "application/json",
                        answer.read(),
                    )
                finally:
                    upstream.close()

            def _answer(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_LIST = _any

        return Handler


def fragments(values: list[str], texts: list[str]) -> list[str]:
    """Which values have a run of FRAGMENT+ characters in any text (values never printed)."""
    joined = "\n".join(texts)
    return [
        f"value #{i}"
        for i, v in enumerate(values)
        if any(v[s : s + FRAGMENT] in joined for s in range(len(v) - FRAGMENT + 1))
    ]


def echoed_secret() -> str:
    """A webhook-secret-like value (43 characters), registered for the suite's hygiene scan."""
    value = secrets.token_urlsafe(32)
    record_issued(value)
    return value


@pytest.mark.parametrize("status", [400, 403, 500, 502, 504])
async def test_echoed_write_body_is_withheld_from_error(
    vault: VaultEmulator, vault_token: str, status: int
) -> None:
    """A write answered with its own body (non-JSON): the error gives the status, no secret part."""
    secret = echoed_secret()
    with EchoingProxy(vault.address, lambda method, _p, _n: method != "GET", status) as proxy:
        store = VaultStore(
            settings_for(proxy, token=Secret(vault_token), path_prefix="monite/webhooks")
        )
        try:
            with capture_audit() as captured, pytest.raises(VaultError) as caught:
                await store.write(Record(SUB_ID, secret=Secret(secret), state="active"), cas=0)
        finally:
            store.close()
    assert 1 == proxy.echoed
    said = f"status {status}" if status != 504 else "an unexpected status"
    expected = (
        f"Vault write secret/data/monite/webhooks/{SUB_ID} failed "
        f"({type(caught.value.__cause__).__name__}): Vault answered {said}; "
        "response body withheld: the request carried a secret"
    )
    # The leak check first: a failing equality would print the message.
    assert [] == fragments([secret], [*chain_texts(caught.value), repr(captured)])
    assert expected == str(caught.value).split("; the Vault token")[0]


async def test_echoed_commit_leaves_no_secret_part_in_audit_log(
    monite: MoniteEmulator,
    monite_http: httpx.AsyncClient,
    monite_settings: MoniteSettings,
    vault: VaultEmulator,
    vault_token: str,
) -> None:
    """A cycle whose commit meets an echoing proxy: no 8-character run of the new secret logged."""
    sid = monite.seed(object_type="payable")  # no record yet: rotated as unmanaged
    # The claim (write 1) passes; the commit and its retries (the new secret) are echoed.
    with EchoingProxy(vault.address, lambda method, _p, n: method != "GET" and n >= 2, 502) as px:
        store = VaultStore(
            settings_for(px, token=Secret(vault_token), path_prefix="monite/webhooks")
        )
        engine = Engine(
            monite=MoniteClient(monite_http, monite_settings),
            store=store,
            policy=Policy(max_age=timedelta(days=30)),
            rotation=RotationSettings(
                claim_ttl=timedelta(seconds=30), commit_retry_for=timedelta(seconds=0.5)
            ),
            owner="test-rotator",
        )
        try:
            with capture_audit() as captured:
                report = await engine.run_cycle()
        finally:
            store.close()
    assert (1, 1) == (monite.regenerate_count(sid), report.count("failed"))
    assert px.echoed >= 1
    failed = [e for e in captured if e["event"] == "rotation.failed"]
    assert [sid] == [e["subscription_id"] for e in failed]
    assert [] == fragments([monite.current_secret(sid)], [repr(captured), report.summary()])


async def test_echoed_approle_login_body_is_withheld(vault: VaultEmulator) -> None:
    """An AppRole login answered with its own body: the error names the status, quotes nothing."""
    vault.put_policy("rotator", ROTATOR_POLICY)
    role_id, secret_id = vault.add_approle("rotator", policies=["rotator"])
    with EchoingProxy(vault.address, lambda _m, path, _n: path.endswith("/login"), 400) as proxy:
        store = VaultStore(
            settings_for(
                proxy, auth_method="approle", role_id=Secret(role_id), secret_id=Secret(secret_id)
            )
        )
        try:
            with capture_audit() as captured, pytest.raises(VaultError) as caught:
                await store.read(SUB_ID)
        finally:
            store.close()
    assert [] == fragments([role_id, secret_id], [*chain_texts(caught.value), repr(captured)])
    assert (
        "Vault login auth/approle/login failed (InvalidRequest): Vault answered status 400; "
        "response body withheld: the request carried a secret"
    ) == str(caught.value).split("; check vault.role_id")[0]


def test_body_text_is_redacted_before_it_is_cut() -> None:
    """A listed token straddling the 300-character cut leaves no piece of it in the message."""
    token = "hvs." + secrets.token_urlsafe(30)
    record_issued(token)
    body = "<html>" + "x" * 280 + token + "</html>"
    exc = hvac.exceptions.InternalServerError(body, method="GET", url="http://v/v1/secret/x")
    error = translate_hvac_error(exc, operation="read", path="secret/data/x", secrets=[token])
    assert [] == fragments([token], [str(error)])
