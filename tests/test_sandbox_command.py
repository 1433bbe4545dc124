"""`rotator sandbox` as a newcomer runs it, its signed deliveries, and `rotator.signature`."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import locale
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import httpx
import pytest
from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]

from rotator.config import load_settings
from rotator.sandbox.deliveries import DeliverySender
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.standalone import (
    CREDENTIALS_PATH,
    SHIPPED_POLICY_HCL,
    overriding_variables,
)
from rotator.sandbox.vault import parse_policy
from rotator.signature import HEADER, SignatureError, compute, parse, sign, verify
from tests.conftest import leaked, remember_output
from tests.daemon_harness import invoke_rotator, rotator_environ, run_rotator, text_of
from tests.forkserver import ForkedProcess, start_process
from tests.receiver import Delivery, Receiver, subscription_action

ROOT = Path(__file__).resolve().parents[1]
SCHEMA: dict[str, Any] = json.loads((ROOT / "tests" / "schema" / "monite-openapi.json").read_text())
MAX_BANNER_LINES = 200
OPEN_SUBSCRIPTIONS = 7  # of the default 8 seeded, one is disabled and gets no deliveries


@dataclass
class Running:
    """A `rotator sandbox` process (forked: tests/forkserver.py) and what its banner said."""

    process: subprocess.Popen[bytes] | ForkedProcess
    stdout: TextIO  # the pipe: the banner is read as it comes, the rest at the end
    stderr_file: BinaryIO
    lines: list[str] = field(default_factory=list)
    rest: str = ""  # output after the banner, complete once the process ended
    stderr: str = ""
    _drain: threading.Thread | None = None
    _scanned: bool = False

    def value(self, label: str) -> str:
        """The text after `label` on the first banner line that starts with it."""
        return next(line[len(label) :].strip() for line in self.lines if line.startswith(label))

    @property
    def monite(self) -> str:
        return self.value("Monite:")

    @property
    def vault(self) -> str:
        return self.value("Vault:")

    @property
    def config(self) -> Path:
        return Path(self.value("Config:"))

    @property
    def token_file(self) -> Path:
        return Path(self.value("  Vault token (policy monite-secret-rotator):"))

    @property
    def client_secret_file(self) -> Path:
        return Path(self.value("  Monite client secret:"))

    @property
    def snippet(self) -> str:
        start = self.lines.index("----- 8< -----")
        end = self.lines.index("----- >8 -----")
        return "\n".join(self.lines[start + 1 : end]) + "\n"

    def secrets(self) -> set[str]:
        return {
            self.token_file.read_text().strip(),
            self.client_secret_file.read_text().strip(),
        }

    def start_draining(self) -> None:
        """Read the rest of stdout as it comes: the process never blocks on a full pipe."""
        if self._drain is None:
            self._drain = threading.Thread(target=self._read_rest, daemon=True)
            self._drain.start()

    def _read_rest(self) -> None:
        with self.stdout:
            self.rest += self.stdout.read()  # to the end: the process has exited

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send `signum`, wait for the exit, collect the remaining output; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        self.start_draining()
        try:
            return int(self.process.wait(timeout=15))
        finally:
            if not self._scanned:  # once, whatever the wait did
                self._scanned = True
                assert self._drain is not None
                self._drain.join(timeout=5)
                self.stderr = text_of(self.stderr_file)
                self.stderr_file.close()
                remember_output("\n".join(self.lines), self.rest, self.stderr)

    def output(self) -> str:
        return "\n".join(self.lines) + "\n" + self.rest + self.stderr


@contextlib.contextmanager
def sandbox(*args: str) -> Iterator[Running]:
    """Start `python -m rotator sandbox ARGS`, wait for its banner; SIGTERM it afterwards."""
    out_read, out_write = os.pipe()
    stderr_file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by Running.stop)
    try:
        process, _ = start_process(
            ["sandbox", *args], rotator_environ(), os.getcwd(), out_write, stderr_file.fileno()
        )
    except BaseException:
        os.close(out_read)
        stderr_file.close()
        raise
    finally:
        os.close(out_write)  # the child holds its own copy: EOF when it ends
    stdout = open(out_read, encoding=locale.getpreferredencoding(False))  # noqa: SIM115
    running = Running(process, stdout, stderr_file)
    try:
        for _ in range(MAX_BANNER_LINES):
            line = stdout.readline()
            if not line:
                break
            running.lines.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C"):
                break
        assert running.lines, "the sandbox printed nothing"
        assert running.lines[-1].startswith("Ctrl-C"), running.lines
        running.start_draining()
        yield running
    finally:
        running.stop()


def rotator(*commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run `rotator COMMAND...` for each command, all at once; their results in order."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda command: run_rotator(*command), commands))


def vault_record(running: Running, subscription_id: str) -> dict[str, Any]:
    """The record's KV v2 `data` envelope, read with the sandbox's least-privilege token."""
    response = httpx.get(
        f"{running.vault}/v1/secret/data/monite/webhooks/{subscription_id}",
        headers={"X-Vault-Token": running.token_file.read_text().strip()},
    )
    assert 200 == response.status_code
    data: dict[str, Any] = response.json()["data"]
    return data


def monite_secret(running: Running, subscription_id: str) -> str:
    """The subscription's current secret, from the emulator's test-only route."""
    origin = running.monite.removesuffix("/v1")
    response = httpx.get(f"{origin}/_sandbox/webhook_subscriptions/{subscription_id}/secret")
    assert 200 == response.status_code
    secret: str = response.json()["secret"]
    return secret


@pytest.fixture(scope="module")
def shared() -> Iterator[Running]:
    """One sandbox with the default eight subscriptions, for the tests that only read or rotate."""
    with sandbox() as running:
        yield running


# -- the command --------------------------------------------------------------


@pytest.mark.timeout(60)
def test_check_plan_and_run_once_work_against_the_sandbox(shared: Running) -> None:
    """check and plan exit 0; run --once rotates the due ones into Vault, equal to Monite's."""
    config = str(shared.config)
    check, plan = rotator(["check", "--config", config], ["plan", "--json", "--config", config])
    assert 0 == check.returncode, check.stderr
    assert check.stdout.startswith("ok: ")
    assert 0 == plan.returncode, plan.stderr
    due = {
        row["subscription_id"]: row["vault_version"]
        for row in json.loads(plan.stdout)["decisions"]
        if row["action"] == "rotate" and row["vault_version"] is not None
    }
    assert 3 == len(due)

    (run,) = rotator(["run", "--once", "--config", config])
    assert 0 == run.returncode, run.stderr

    secrets: set[str] = set()
    for subscription_id, version in due.items():
        record = vault_record(shared, subscription_id)
        assert version + 2 == record["metadata"]["version"]  # a claim, then the commit
        assert "active" == record["data"]["state"]
        current = monite_secret(shared, subscription_id)
        assert current == record["data"]["secret"]
        secrets.add(current)
    texts = [check.stdout, check.stderr, plan.stdout, plan.stderr, run.stdout, run.stderr]
    assert [] == leaked(secrets | shared.secrets(), texts)


@pytest.mark.timeout(30)
def test_printed_config_is_valid_and_is_the_file(shared: Running, tmp_path: Path) -> None:
    """The printed snippet is the config file, and the product's loader accepts it."""
    assert shared.config.read_text() == shared.snippet
    copy = tmp_path / "rotator.toml"
    copy.write_text(shared.snippet)
    settings = load_settings(copy, {})
    assert shared.monite == settings.monite.base_url
    assert CREDENTIALS_PATH == settings.monite.credentials_path
    assert shared.vault == settings.vault.address
    assert settings.vault.token is not None
    assert shared.token_file.read_text().strip() == settings.vault.token.reveal()


@pytest.mark.timeout(30)
def test_secret_files_are_private_and_never_printed(shared: Running) -> None:
    """Token and client secret sit in 0600 files in a 0700 directory; the banner has neither."""
    for path in (shared.token_file, shared.client_secret_file, shared.config):
        assert 0o600 == path.stat().st_mode & 0o777
    assert 0o700 == shared.config.parent.stat().st_mode & 0o777
    assert [] == leaked(shared.secrets(), [shared.output()])
    client_id = shared.value("Monite client id:")
    assert 36 == len(client_id)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_with_exit_0_and_removes_its_files(signum: int, tmp_path: Path) -> None:
    """SIGTERM or SIGINT: exit 0, the temp directory and the --config-out file are gone."""
    config_out = tmp_path / "sandbox.toml"
    with sandbox("--subscriptions", "2", "--config-out", str(config_out)) as running:
        assert config_out == running.config
        workdir = running.token_file.parent
        assert config_out.is_file()
        assert workdir.is_dir()
        secrets = running.secrets()
        code = running.stop(signum)
    assert 0 == code, running.stderr
    assert not config_out.exists()
    assert not workdir.exists()
    assert "stopped (" + signal.Signals(signum).name + ")" in running.rest
    assert [] == leaked(secrets, [running.output()])


def test_a_port_in_use_is_one_line_and_exit_2() -> None:
    """A busy --monite-port is refused in one line naming the flag, with no traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke_rotator("sandbox", "--monite-port", str(port))
    code, err = result.returncode, result.stderr
    assert 2 == code
    expected = (
        f"rotator sandbox: --monite-port {port}: address already in use; "
        "choose another port or omit it\n"
    )
    assert expected == err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--deliver-every", "2"], "--deliver-every needs --deliver-to URL"),
        (["--deliver-to", "ftp://example.com"], "is not an http(s) URL"),
        (["--subscriptions", "0"], "is not a whole number between 1 and 1000"),
        (["--vault-port", "70000"], "is not a TCP port"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    """Each bad flag gets exit 2 and a single line on stderr that says what is wrong."""
    result = invoke_rotator("sandbox", *args)
    code, err = result.returncode, result.stderr
    assert 2 == code
    assert 1 == len(err.splitlines())
    assert message in err


def test_an_existing_config_out_is_never_overwritten(tmp_path: Path) -> None:
    """--config-out naming an existing file: exit 2, the file untouched."""
    existing = tmp_path / "mine.toml"
    existing.write_text("# mine\n")
    result = invoke_rotator("sandbox", "--config-out", str(existing))
    assert 2 == result.returncode
    assert "file exists" in result.stderr
    assert "# mine\n" == existing.read_text()


def test_variables_that_override_the_config_are_named() -> None:
    """VAULT_* and ROTATOR_* (not ROTATOR_CONFIG, not empty ones) are named, sorted."""
    environ = {
        "VAULT_TOKEN": "x",
        "ROTATOR_POLICY__MAX_AGE": "1d",
        "VAULT_ADDR": "http://vault",
        "ROTATOR_CONFIG": "/etc/rotator.toml",
        "VAULT_NAMESPACE": "",
        "HOME": "/root",
    }
    expected = ["ROTATOR_POLICY__MAX_AGE", "VAULT_ADDR", "VAULT_TOKEN"]
    assert expected == overriding_variables(environ)


def test_the_sandbox_token_holds_exactly_the_shipped_policy() -> None:
    """The policy the sandbox installs has the same rules as deploy/vault/policy.hcl."""

    def rules(hcl: str) -> set[tuple[str, frozenset[str]]]:
        return {(rule.pattern, rule.capabilities) for rule in parse_policy(hcl)}

    shipped = (ROOT / "deploy" / "vault" / "policy.hcl").read_text()
    assert rules(shipped) == rules(SHIPPED_POLICY_HCL)


# -- deliveries -----------------------------------------------------------------


def _event_errors(body: Any) -> list[str]:
    schema = {
        "$ref": "#/components/schemas/EventResourceForWebhookClient",
        "components": SCHEMA["components"],
    }
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    return sorted(e.message for e in validator.iter_errors(body))


@pytest.mark.timeout(30)
def test_signed_deliveries_reach_a_receiver_and_verify() -> None:
    """Every enabled subscription's event arrives, matches the schema, verifies with its secret."""
    with (
        Receiver() as receiver,
        sandbox("--deliver-to", receiver.url(), "--deliver-every", "0.2") as running,
    ):
        seen: dict[str, Delivery] = {}
        for _ in range(100):  # a few rounds at most; the pytest timeout bounds the wait
            delivery = receiver.received.get()
            seen[json.loads(delivery.body)["webhook_subscription_id"]] = delivery
            if OPEN_SUBSCRIPTIONS == len(seen):
                break
        assert OPEN_SUBSCRIPTIONS == len(seen)
        for subscription_id, delivery in seen.items():
            body = json.loads(delivery.body)
            assert [] == _event_errors(body)
            assert "application/json" == delivery.headers["content-type"]
            header = delivery.headers[HEADER.lower()]
            secret = monite_secret(running, subscription_id)
            timestamp = parse(header).timestamp
            assert timestamp == verify(header, delivery.body, secret, now=time.time())
            with pytest.raises(SignatureError) as wrong:
                verify(header, delivery.body, secret[::-1], now=time.time())
            assert "mismatch" == wrong.value.reason
        code = running.stop()
    assert 0 == code, running.stderr
    assert "deliveries: " in running.rest


@pytest.mark.timeout(30)
def test_the_emulators_admin_route_triggers_a_round_from_another_process() -> None:
    """POST /_sandbox/deliveries on a running sandbox delivers to every enabled subscription now."""
    with (
        Receiver() as receiver,
        sandbox("--deliver-to", receiver.url(), "--deliver-every", "3600") as running,
    ):
        origin = running.monite.removesuffix("/v1")
        assert any(f"curl -X POST {origin}/_sandbox/deliveries" in line for line in running.lines)
        with httpx.Client(base_url=origin, trust_env=False, timeout=20) as http:
            posted = http.post("/_sandbox/deliveries")  # waits for the round at start, if running
            for _ in range(200):  # the round at start may still be under way; bounded
                counters = http.get("/_sandbox/deliveries").json()
                if 2 * OPEN_SUBSCRIPTIONS == counters["totals"]["delivered"]:
                    break
                time.sleep(0.05)
        code = running.stop()
        remember_output(posted.text, json.dumps(counters))
    assert 0 == code, running.stderr
    assert (200, OPEN_SUBSCRIPTIONS, 0) == (
        posted.status_code,
        posted.json()["delivered"],
        posted.json()["failed"],
    )
    assert (2, 2 * OPEN_SUBSCRIPTIONS) == (
        counters["totals"]["rounds"],
        counters["totals"]["delivered"],
    )
    assert [2] * OPEN_SUBSCRIPTIONS == [c["delivered"] for c in counters["subscriptions"].values()]
    assert 2 * OPEN_SUBSCRIPTIONS == receiver.received.qsize()


def test_failed_deliveries_are_retried_then_counted() -> None:
    """500s are retried with the same event id; a receiver that never accepts counts failures."""
    monite = MoniteEmulator()
    with monite, Receiver(statuses=(500, 503)) as flaky, Receiver(statuses=(500,) * 10) as down:
        sub = monite.seed(url=flaky.url())
        monite.seed(url=flaky.url(), status="disabled")
        sender = DeliverySender(monite, retries=3, backoff=0.01)
        try:
            result = sender.deliver_now()
        finally:
            sender.stop()
        arrived = flaky.drain()
        assert (1, 0) == (result.delivered, result.failed)
        assert 3 == len(arrived)
        assert {sub} == {json.loads(d.body)["webhook_subscription_id"] for d in arrived}
        assert 1 == len({json.loads(d.body)["id"] for d in arrived})
        stats = sender.stats
        assert (3, 2, 1, 0) == (stats.attempts, stats.retried, stats.delivered, stats.failed)

        monite.remove(sub)
        monite.seed(url=down.url())
        sender = DeliverySender(monite, retries=2, backoff=0.01)
        try:
            result = sender.deliver_now()
        finally:
            sender.stop()
        assert (0, 1, "HTTP 500") == (result.delivered, result.failed, result.last_error)
        assert (3, 1) == (sender.stats.attempts, sender.stats.failed)


def test_each_attempt_is_signed_with_the_secret_current_at_send_time() -> None:
    """A retry after a regeneration carries a signature made with the new secret."""
    monite = MoniteEmulator()
    monite.add_client()
    with monite:
        # The receiver refuses the first attempt after a rotation regenerated the secret.
        seeded: list[str] = []  # the receiver's URL is known once it is up

        def regenerate() -> None:
            subscription_action(monite, seeded[0], "regenerate_secret")

        with Receiver(statuses=(500,), on_first=regenerate) as receiver:
            sub = monite.seed(url=receiver.url())
            seeded.append(sub)
            old = monite.current_secret(sub)
            sender = DeliverySender(monite, retries=1, backoff=0.01)
            try:
                sender.deliver_now()
            finally:
                sender.stop()
        first, second = receiver.drain()
        new = monite.current_secret(sub)
        assert old != new
        now = time.time()
        assert parse(first.headers["monite-signature"]).timestamp == verify(
            first.headers["monite-signature"], first.body, old, now=now
        )
        assert parse(second.headers["monite-signature"]).timestamp == verify(
            second.headers["monite-signature"], second.body, new, now=now
        )


# -- rotator.signature ------------------------------------------------------------

SECRET = "whsec_0123456789abcdefghij"
BODY = b'{"id":"e1","webhook_subscription_id":"s1","object_type":"payable"}'
T = 1_700_000_000


def _reference(secret: str, timestamp: int, body: bytes) -> str:
    """The scheme computed here independently: HMAC-SHA256 over "{t}.{raw body}"."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def test_sign_matches_an_independently_computed_vector() -> None:
    """sign() writes t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{body}">."""
    expected = f"t={T},v1={_reference(SECRET, T, BODY)}"
    assert expected == sign(SECRET, BODY, timestamp=T)
    assert _reference(SECRET, T, BODY) == compute(SECRET, T, BODY)


def test_a_known_vector_verifies() -> None:
    """A header built by hand with hmac verifies and returns its timestamp."""
    header = f"t={T},v1={_reference(SECRET, T, BODY)}"
    assert T == verify(header, BODY, SECRET, now=T + 10)


@pytest.mark.parametrize(
    ("body", "secret"),
    [
        (BODY.replace(b"payable", b"receivable"), SECRET),
        (BODY + b" ", SECRET),
        (BODY, SECRET + "x"),
    ],
)
def test_a_tampered_body_or_another_secret_is_a_mismatch(body: bytes, secret: str) -> None:
    """Any change to the body, or a different secret, fails with reason mismatch."""
    header = sign(SECRET, BODY, timestamp=T)
    with pytest.raises(SignatureError) as caught:
        verify(header, body, secret, now=T)
    assert "mismatch" == caught.value.reason


@pytest.mark.parametrize("offset", [301, -301, 86_400])
def test_a_timestamp_outside_the_tolerance_is_expired(offset: int) -> None:
    """A delivery more than 300 s old (or ahead) is refused, even with a valid signature."""
    header = sign(SECRET, BODY, timestamp=T)
    with pytest.raises(SignatureError) as caught:
        verify(header, BODY, SECRET, now=T + offset)
    assert "expired" == caught.value.reason


def test_the_tolerance_edge_and_a_custom_tolerance() -> None:
    """Exactly `tolerance` seconds away still verifies; a tighter tolerance refuses it."""
    header = sign(SECRET, BODY, timestamp=T)
    assert T == verify(header, BODY, SECRET, now=T + 300)
    with pytest.raises(SignatureError):
        verify(header, BODY, SECRET, now=T + 300, tolerance=60)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        f"v1={'a' * 64}",
        f"t={T}",
        f"t=abc,v1={'a' * 64}",
        f"t=-5,v1={'a' * 64}",
        f"t={T},t={T + 1},v1={'a' * 64}",
        f"t={T},v1=nothex",
        f"t={T},v1={'a' * 63}",
        f"t={T},v0={'a' * 64}",
        f"t={T}," + "x=y," * 2000 + f"v1={'a' * 64}",
    ],
)
def test_a_malformed_header_is_refused(header: str | None) -> None:
    """Missing, unparseable, timestamp-less or signature-less headers: reason malformed."""
    with pytest.raises(SignatureError) as caught:
        verify(header, BODY, SECRET, now=T)
    assert "malformed" == caught.value.reason


def test_spaces_uppercase_and_several_signatures_are_accepted() -> None:
    """Any one matching v1 verifies; hex case and spaces around parts do not matter."""
    good = _reference(SECRET, T, BODY).upper()
    header = f" t={T} , v1={'0' * 64}, v0=old , v1={good} "
    assert T == verify(header, BODY, SECRET, now=T)


def test_errors_never_carry_the_secret_or_the_signature() -> None:
    """The message of every refusal names the problem, not the values."""
    header = sign(SECRET, BODY, timestamp=T)
    digest = header.split("v1=")[1]
    for call in (
        lambda: verify(header, BODY, SECRET + "x", now=T),
        lambda: verify(header, BODY, SECRET, now=T + 999),
    ):
        with pytest.raises(SignatureError) as caught:
            call()
        assert [] == leaked({SECRET, digest}, [str(caught.value)])


def test_an_empty_secret_never_verifies() -> None:
    """Signing or verifying with an empty secret is a ValueError, never a pass."""
    header = f"t={T},v1={hmac.new(b'', f'{T}.'.encode() + BODY, hashlib.sha256).hexdigest()}"
    with pytest.raises(ValueError, match="empty secret"):
        verify(header, BODY, "", now=T)
    with pytest.raises(ValueError, match="empty secret"):
        sign("", BODY, timestamp=T)
