"""rotator.consumer.app and examples/consumer_app.py over loopback: deliveries, hook notices."""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.simple_server import make_server as make_wsgi_server

import hvac
import pytest

from examples.consumer_app import make_application
from rotator import signature
from rotator.config import VaultSettings
from rotator.consumer import Deduplicator, StaticSecretSource, VaultSecretSource, Verifier
from rotator.consumer.app import (
    DEFAULT_DEDUPE_TTL,
    HOOK_HEADER,
    ConsumerApp,
    _duration,
    handle_hook_notice,
    make_server,
    read_hook_key,
)
from rotator.sandbox.deliveries import DeliverySender
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from rotator.secret import Secret
from tests.conftest import remember_output
from tests.consumer_support import commit, delivery, new_secret, put_record_data


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # loopback only
            text = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as exc:
        text, status = exc.read().decode(), exc.code
    remember_output(text)
    return status, json.loads(text)


def get_stats(app: ConsumerApp) -> dict[str, Any]:
    with urllib.request.urlopen(app.url + "/stats", timeout=5) as response:
        text = response.read().decode()
    remember_output(text)
    return dict(json.loads(text)["subscriptions"])


def notice(
    hook_key: str, subscription_id: str | None, *, key: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """A hook notice as the rotator sends it, signed with `key` (default: the right one)."""
    payload: dict[str, Any] = {"event": "rotation.succeeded", "vault_version": 2}
    if subscription_id is not None:
        payload["subscription_id"] = subscription_id
    body = json.dumps(payload).encode()
    header = signature.sign(key or hook_key, body, timestamp=int(time.time()))
    return body, {HOOK_HEADER: header, "Content-Type": "application/json"}


@pytest.fixture
def hook_key() -> str:
    return new_secret()


@pytest.fixture
def app(vault: VaultEmulator, vault_token: str, hook_key: str) -> Iterator[ConsumerApp]:
    """The example app on a free loopback port; one re-read on mismatch per hour."""
    client = hvac.Client(url=vault.address, token=vault_token, timeout=5)
    verifier = Verifier(VaultSecretSource(client, ttl=3600), refresh_interval=3600, refresh_burst=1)
    consumer = ConsumerApp(verifier, hook_key=Secret(hook_key))
    consumer.start()
    try:
        yield consumer
    finally:
        consumer.stop()


async def test_signed_deliveries_are_verified_and_counted(
    app: ConsumerApp, vault_settings: VaultSettings
) -> None:
    """A signed delivery gets 200, a forged one 401, a malformed one 400; stats count them."""
    sid, secret = str(uuid.uuid4()), new_secret()
    await commit(vault_settings, sid, secret, cas=0)
    headers, body = delivery(sid, secret)
    assert (200, "verified") == (lambda r: (r[0], r[1]["status"]))(
        post(app.url + "/webhooks", body, headers)
    )
    forged_headers, forged_body = delivery(sid, new_secret())
    assert (401, {"error": "mismatch", "subscription_id": sid}) == post(
        app.url + "/webhooks", forged_body, forged_headers
    )
    assert (400, {"error": "malformed"}) == post(app.url + "/webhooks", b"{}", {})
    stats = get_stats(app)
    assert {"received": 2, "verified": 1, "rejected": 1, "reloaded": 0, "duplicates": 0} == stats[
        sid
    ]
    assert {"received": 1, "verified": 0, "rejected": 1, "reloaded": 0, "duplicates": 0} == stats[
        "(none)"
    ]


async def test_hook_notice_invalidates_so_the_next_delivery_loads_the_new_secret(
    app: ConsumerApp, vault_settings: VaultSettings, hook_key: str
) -> None:
    """With re-reads used up, the rotated secret fails until the hook's notice drops the cache."""
    sid, old, new = str(uuid.uuid4()), new_secret(), new_secret()
    first = await commit(vault_settings, sid, old, cas=0)
    assert 200 == post(app.url + "/webhooks", *reversed(delivery(sid, old)))[0]
    forged_headers, forged_body = delivery(sid, new_secret())
    assert 401 == post(app.url + "/webhooks", forged_body, forged_headers)[0]  # uses the re-read
    await commit(vault_settings, sid, new, cas=first.version)
    new_headers, new_body = delivery(sid, new)
    assert 401 == post(app.url + "/webhooks", new_body, new_headers)[0]
    assert (200, {"invalidated": [sid]}) == post(app.url + "/rotated", *notice(hook_key, sid))
    new_headers, new_body = delivery(sid, new)
    assert 200 == post(app.url + "/webhooks", new_body, new_headers)[0]
    assert {
        "received": 4,
        "verified": 2,
        "rejected": 2,
        "reloaded": 1,
        "duplicates": 0,
    } == get_stats(app)[sid]


async def test_hook_notice_with_a_wrong_signature_changes_nothing(
    app: ConsumerApp, vault_settings: VaultSettings, hook_key: str
) -> None:
    """A notice signed with another key is refused 401 and invalidates nothing."""
    sid, secret = str(uuid.uuid4()), new_secret()
    await commit(vault_settings, sid, secret, cas=0)
    assert 200 == post(app.url + "/webhooks", *reversed(delivery(sid, secret)))[0]
    body, headers = notice(hook_key, sid, key=new_secret())
    assert (401, {"error": "mismatch"}) == post(app.url + "/rotated", body, headers)
    assert (401, {"error": "malformed"}) == post(app.url + "/rotated", body, {})
    assert 0 == get_stats(app)[sid]["reloaded"]
    assert [sid] == app.source.known()


async def test_hook_notice_naming_no_subscription_drops_every_cached_secret(
    app: ConsumerApp, vault_settings: VaultSettings, hook_key: str
) -> None:
    """A notice without a subscription id invalidates the whole cache."""
    sid, secret = str(uuid.uuid4()), new_secret()
    await commit(vault_settings, sid, secret, cas=0)
    post(app.url + "/webhooks", *reversed(delivery(sid, secret)))
    assert (200, {"invalidated": [sid]}) == post(app.url + "/rotated", *notice(hook_key, None))
    assert [] == app.source.known()


def test_hook_route_without_a_key_is_forbidden(vault: VaultEmulator, vault_token: str) -> None:
    """An app started without a hook key refuses notices with 403."""
    consumer = make_server(vault_addr=vault.address, vault_token=vault_token)
    consumer.start()
    try:
        assert (403, {"error": "no hook key configured"}) == post(
            consumer.url + "/rotated", *notice("k" * 16, None)
        )
    finally:
        consumer.stop()


async def test_polling_picks_up_a_rotation_without_a_hook(
    vault: VaultEmulator, vault_token: str, vault_settings: VaultSettings, tmp_path: Path
) -> None:
    """With --poll-interval the app re-reads known records, so the rotated secret verifies."""
    key_file = tmp_path / "hook-key"
    key_file.write_text(new_secret() + "\n")
    consumer = make_server(
        vault_addr=vault.address,
        vault_token=vault_token,
        hook_key_file=key_file,
        poll_interval=0.1,
        cache_ttl=3600,
    )
    consumer.verifier = Verifier(consumer.source, reread=False)  # only the poll reloads
    consumer.start()
    try:
        sid, old, new = str(uuid.uuid4()), new_secret(), new_secret()
        first = await commit(vault_settings, sid, old, cas=0)
        assert 200 == post(consumer.url + "/webhooks", *reversed(delivery(sid, old)))[0]
        await commit(vault_settings, sid, new, cas=first.version)
        status = 0
        for _ in range(50):  # up to about 5 s
            headers, body = delivery(sid, new)
            status = post(consumer.url + "/webhooks", body, headers)[0]
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert 200 == status
        assert 1 <= get_stats(consumer)[sid]["reloaded"]
    finally:
        consumer.stop()


def test_hook_key_file_strips_the_newline_and_hides_the_key(tmp_path: Path) -> None:
    """The hook key is read from its file without the trailing newline, as a Secret."""
    value = new_secret()
    (tmp_path / "key").write_text(value + "\n")
    key = read_hook_key(tmp_path / "key")
    assert (value, "<secret>") == (key.reveal(), repr(key))


class QuietHandler(WSGIRequestHandler):
    """wsgiref's handler without its request log on stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def wsgi_example(
    vault: VaultEmulator, vault_token: str, hook_key: str
) -> Iterator[tuple[str, VaultSecretSource]]:
    """The WSGI example under wsgiref on a free loopback port; only the hook notice reloads."""
    client = hvac.Client(url=vault.address, token=vault_token, timeout=5)
    source = VaultSecretSource(client, ttl=3600)
    application = make_application(Verifier(source, reread=False), Secret(hook_key))
    server: WSGIServer = make_wsgi_server("127.0.0.1", 0, application, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="wsgi-example", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", source
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_wsgi_example_verifies_deliveries_and_takes_hook_notices(
    wsgi_example: tuple[str, VaultSecretSource], vault_settings: VaultSettings, hook_key: str
) -> None:
    """Under wsgiref: signed 200, forged 401, and a signed notice makes the new secret load."""
    url, source = wsgi_example
    sid, old, new = str(uuid.uuid4()), new_secret(), new_secret()
    first = await commit(vault_settings, sid, old, cas=0)
    headers, body = delivery(sid, old)
    assert (200, "verified") == (lambda r: (r[0], r[1]["status"]))(
        post(url + "/webhooks", body, headers)
    )
    forged_headers, forged_body = delivery(sid, new_secret())
    assert (401, {"error": "mismatch", "subscription_id": sid}) == post(
        url + "/webhooks", forged_body, forged_headers
    )
    await commit(vault_settings, sid, new, cas=first.version)
    new_headers, new_body = delivery(sid, new)
    assert 401 == post(url + "/webhooks", new_body, new_headers)[0]  # the cache holds the old
    assert (200, {"invalidated": [sid]}) == post(url + "/rotated", *notice(hook_key, sid))
    new_headers, new_body = delivery(sid, new)
    assert 200 == post(url + "/webhooks", new_body, new_headers)[0]
    assert 2 == source.reads


def run_app_module(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m rotator.consumer.app ARGS` without VAULT_ADDR and VAULT_TOKEN."""
    env = {k: v for k, v in os.environ.items() if k not in ("VAULT_ADDR", "VAULT_TOKEN")}
    result = subprocess.run(
        [sys.executable, "-m", "rotator.consumer.app", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    remember_output(result.stdout + result.stderr)
    return result


def test_app_module_runs_with_help() -> None:
    """`python -m rotator.consumer.app --help` prints its usage and exits 0."""
    result = run_app_module("--help")
    assert (0, True) == (result.returncode, "--hook-key-file" in result.stdout)


def test_app_module_without_vault_settings_names_them_and_exits_2() -> None:
    """Without VAULT_ADDR and VAULT_TOKEN the module exits 2 on one line naming both."""
    result = run_app_module("--listen", "127.0.0.1:0")
    naming = [line for line in result.stderr.splitlines() if "VAULT_TOKEN" in line]
    assert (2, 1) == (result.returncode, len(naming))
    assert "VAULT_ADDR" in naming[0]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("--poll-interval", "-1"), "--poll-interval"),
        (("--cache-ttl", "nan"), "--cache-ttl"),
        (("--hook-key-file", "/nonexistent/hook-key"), "--hook-key-file"),
        (("--hook-key-file", "EMPTY"), "--hook-key-file"),
        (("--secret-dir", "/nonexistent/secrets"), "--secret-dir"),
        (("--dedupe-ttl", "soon"), "--dedupe-ttl"),
        (("--dedupe-ttl", "-5m"), "--dedupe-ttl"),
    ],
)
def test_app_module_bad_arguments_name_the_flag_and_exit_2(
    args: tuple[str, ...], flag: str, tmp_path: Path
) -> None:
    """A bad flag value is one error line (after the usage) naming the flag; no traceback."""
    empty = tmp_path / "empty-key"
    empty.write_text("\n")
    result = run_app_module(*(str(empty) if a == "EMPTY" else a for a in args))
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert (2, 1, False) == (result.returncode, len(errors), "Traceback" in result.stderr)
    assert (True, errors[0]) == (flag in errors[0], result.stderr.splitlines()[-1])


class AppProcess:
    """`python -m rotator.consumer.app` in a subprocess on a free loopback port."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rotator.consumer.app", "--listen", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        stdout = self.process.stdout
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=30)
        except queue.Empty:
            line = ""
        remember_output(line)
        assert line.startswith("consumer listening on "), line
        self.url = line.split()[-1]

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/stats", timeout=5) as response:  # loopback
            text = response.read().decode()
        remember_output(text)
        return dict(json.loads(text)["subscriptions"])

    def finish(self) -> tuple[int, str]:
        """SIGTERM, then the exit status and stderr (killed after 10 s)."""
        self.process.terminate()
        try:
            _, stderr = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate(timeout=10)
        remember_output(stderr)
        return self.process.returncode, stderr

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=10)


def app_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VAULT_ADDR", "VAULT_TOKEN")}
    env.update(extra)
    return env


async def test_app_module_reloads_on_sighup_and_removes_its_pid_file(
    vault: VaultEmulator, vault_token: str, vault_settings: VaultSettings, tmp_path: Path
) -> None:
    """SIGHUP to the pid in --pid-file drops the cache (one stderr line); SIGTERM exits 0."""
    pid_file = tmp_path / "consumer.pid"
    app = AppProcess(
        ["--pid-file", str(pid_file)],
        app_env(VAULT_ADDR=vault.address, VAULT_TOKEN=vault_token),
    )
    try:
        assert str(app.process.pid) == pid_file.read_text().strip()
        sid, old, new = str(uuid.uuid4()), new_secret(), new_secret()
        first = await commit(vault_settings, sid, old, cas=0)
        assert 200 == post(app.url + "/webhooks", *reversed(delivery(sid, old)))[0]
        await commit(vault_settings, sid, new, cas=first.version)
        os.kill(int(pid_file.read_text()), signal.SIGHUP)  # what reload.sh does
        reloaded = 0
        for _ in range(100):  # up to about 5 s
            reloaded = app.stats()[sid]["reloaded"]
            if reloaded:
                break
            await asyncio.sleep(0.05)
        assert (1, None) == (reloaded, app.process.poll())
        assert 200 == post(app.url + "/webhooks", *reversed(delivery(sid, new)))[0]
        status, stderr = app.finish()
    finally:
        app.close()
    hangups = [line for line in stderr.splitlines() if "SIGHUP" in line]
    assert (0, False, 1) == (status, pid_file.exists(), len(hangups))
    assert "dropped 1 cached secret" in hangups[0]


def test_app_module_reads_secrets_from_a_directory(tmp_path: Path) -> None:
    """--secret-dir verifies with DIR/<subscription id>; a rewritten file loads after SIGHUP."""
    sid, old, new = str(uuid.uuid4()), new_secret(), new_secret()
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    (secret_dir / sid).write_text(old)
    app = AppProcess(
        ["--secret-dir", str(secret_dir), "--pid-file", str(tmp_path / "pid")], app_env()
    )
    try:
        assert 200 == post(app.url + "/webhooks", *reversed(delivery(sid, old)))[0]
        (secret_dir / sid).write_text(new)  # as the agent renders it
        app.process.send_signal(signal.SIGHUP)
        for _ in range(100):  # up to about 5 s
            if app.stats()[sid]["reloaded"]:
                break
            time.sleep(0.05)
        assert 200 == post(app.url + "/webhooks", *reversed(delivery(sid, new)))[0]
        token = new_secret()
        (secret_dir / ".agent-token").write_text(token)  # never read as a secret
        for other, key in (("other", new), (".agent-token", token)):
            assert (401, {"error": "unknown_subscription", "subscription_id": other}) == post(
                app.url + "/webhooks", *reversed(delivery(other, key))
            )
        assert 0 == app.finish()[0]
    finally:
        app.close()


def test_app_module_names_non_id_files_at_start_and_never_verifies_with_them(
    tmp_path: Path,
) -> None:
    """--secret-dir: an agent.pid beside the secrets is one stderr warning, then never a secret."""
    sid, secret = str(uuid.uuid4()), new_secret()
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    (secret_dir / sid).write_text(secret)
    (secret_dir / "agent.pid").write_text("4242\n")  # what the old agent.hcl wrote here
    app = AppProcess(["--secret-dir", str(secret_dir)], app_env())
    try:
        assert 200 == post(app.url + "/webhooks", *reversed(delivery(sid, secret)))[0]
        assert (401, {"error": "unknown_subscription", "subscription_id": "agent.pid"}) == post(
            app.url + "/webhooks", *reversed(delivery("agent.pid", "4242"))
        )
        status, stderr = app.finish()
    finally:
        app.close()
    warnings = [line for line in stderr.splitlines() if "DirectorySecretSource" in line]
    assert (0, 1, False) == (status, len(warnings), "Traceback" in stderr)
    assert (True, False) == ("'agent.pid'" in warnings[0], "4242" in warnings[0])


@pytest.mark.parametrize("tolerance", [math.nan, math.inf, -1.0])
def test_a_bad_hook_tolerance_is_refused_when_the_app_is_built(tolerance: float) -> None:
    """ConsumerApp refuses a NaN, infinite or negative hook_tolerance in one line naming it."""
    with pytest.raises(ValueError, match=r"^hook_tolerance must be a finite number") as caught:
        ConsumerApp(Verifier(StaticSecretSource()), hook_tolerance=tolerance)
    assert 1 == len(str(caught.value).splitlines())


def test_a_bad_tolerance_given_to_make_server_is_refused_before_it_serves(tmp_path: Path) -> None:
    """make_server(tolerance=nan) raises a ValueError naming `tolerance`, not a 500 later."""
    with pytest.raises(ValueError, match=r"^tolerance must be a finite number of seconds"):
        make_server(secret_dir=tmp_path, tolerance=math.nan)


def test_an_empty_hook_key_is_refused_when_built_and_is_no_key_to_the_notice_handler() -> None:
    """ConsumerApp refuses Secret(""); handle_hook_notice answers it 403, as no key, not a 500."""
    with pytest.raises(ValueError, match=r"^hook_key is empty; give the rotator's hook key"):
        ConsumerApp(Verifier(StaticSecretSource()), hook_key=Secret(""))
    body, headers = notice("k" * 16, None)
    assert (403, {"error": "no hook key configured"}) == handle_hook_notice(
        StaticSecretSource(), Secret(""), headers, body
    )


def chunked_post(url: str, chunks: list[bytes], headers: dict[str, str]) -> tuple[int, Any]:
    """POST with Transfer-Encoding: chunked (http.client frames each chunk)."""
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname or "", parsed.port, timeout=5)
    try:
        connection.request("POST", parsed.path, body=iter(chunks), headers=headers)
        response = connection.getresponse()
        text = response.read().decode()
    finally:
        connection.close()
    remember_output(text)
    return response.status, json.loads(text)


def raw_post(url: str, request: bytes) -> tuple[int, Any]:
    """Send raw request bytes after the request line's path; the status and JSON answer."""
    parsed = urllib.parse.urlsplit(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        for _ in range(100):  # bounded: the server closes after answering
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    remember_output(answer.decode("latin-1"))
    return int(head.split()[1]), json.loads(body)


async def test_chunked_deliveries_are_read_up_to_the_size_cap(
    app: ConsumerApp, vault_settings: VaultSettings
) -> None:
    """A chunked delivery verifies; over 1 MiB is 413, bad framing 400, no body at all 411."""
    sid, secret = str(uuid.uuid4()), new_secret()
    await commit(vault_settings, sid, secret, cas=0)
    headers, body = delivery(sid, secret)
    status, answer = chunked_post(app.url + "/webhooks", [body[:10], body[10:]], headers)
    assert (200, "verified") == (status, answer["status"])
    big = [b"x" * 65536] * 17  # 1.06 MiB
    assert 413 == chunked_post(app.url + "/webhooks", big, headers)[0]
    host = f"Host: 127.0.0.1\r\n{signature.HEADER}: {headers[signature.HEADER]}\r\n"
    assert (
        400
        == raw_post(
            app.url,
            f"POST /webhooks HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\nzz\r\n".encode(),
        )[0]
    )
    assert (
        400
        == raw_post(
            app.url,
            (
                f"POST /webhooks HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n"
                "Content-Length: 3\r\n\r\n0\r\n\r\n"
            ).encode(),
        )[0]
    )
    status, answer = raw_post(app.url, f"POST /webhooks HTTP/1.1\r\n{host}\r\n".encode())
    assert (411, True) == (status, "chunked" in answer["error"])
    # A length that str.isdigit() accepts but int() does not: an answer, not a traceback.
    superscript = f"POST /webhooks HTTP/1.1\r\n{host}Content-Length: \u00b2\r\n\r\n"
    assert 413 == raw_post(app.url, superscript.encode("latin-1"))[0]
    assert {
        "received": 1,
        "verified": 1,
        "rejected": 0,
        "reloaded": 0,
        "duplicates": 0,
    } == get_stats(app)[sid]


class FakeMonotonic:
    """The deduplicator's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
        text = response.read().decode()
    remember_output(text)
    return dict(json.loads(text))


def swap_records(vault: VaultEmulator, token: str, secrets: dict[str, str]) -> tuple[str, str]:
    """An original O `retiring` and its successor S `active` in Vault (KV v2 data of protocol 3)."""
    original, successor = (str(uuid.uuid4()) for _ in range(2))
    put_record_data(
        vault.address,
        token,
        original,
        {"secret": secrets["O"], "state": "retiring", "successor_id": successor, "swap_id": "w"},
        cas=0,
    )
    put_record_data(
        vault.address,
        token,
        successor,
        {
            "secret": secrets["S"],
            "state": "active",
            "predecessor_id": original,
            "swap_id": "w",
            "overlap_seconds": 900.0,
        },
        cas=0,
    )
    return original, successor


@pytest.fixture
def dedupe_clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def dedupe_app(
    vault: VaultEmulator, vault_token: str, dedupe_clock: FakeMonotonic
) -> Iterator[ConsumerApp]:
    """The example app deduplicating for 60 s of the test's clock."""
    client = hvac.Client(url=vault.address, token=vault_token, timeout=5)
    consumer = ConsumerApp(
        Verifier(VaultSecretSource(client)),
        deduplicator=Deduplicator(60, clock=dedupe_clock),
    )
    consumer.start()
    try:
        yield consumer
    finally:
        consumer.stop()


def test_a_duplicate_event_is_answered_200_counted_and_not_handled_twice(
    dedupe_app: ConsumerApp, vault: VaultEmulator, vault_token: str, dedupe_clock: FakeMonotonic
) -> None:
    """One event via O then S: both 200, the second "duplicate", counted under S; new after ttl."""
    secrets = {"O": new_secret(), "S": new_secret()}
    original, successor = swap_records(vault, vault_token, secrets)
    event = str(uuid.uuid4())
    url = dedupe_app.url + "/webhooks"
    first = post(url, *reversed(delivery(original, secrets["O"], event_id=event)))
    second = post(url, *reversed(delivery(successor, secrets["S"], event_id=event)))
    assert (200, "verified") == (first[0], first[1]["status"])
    assert (200, {"status": "duplicate", "event_id": event, "subscription_id": successor}) == second
    stats = get_json(dedupe_app.url + "/stats")
    assert {"received": 1, "verified": 1, "rejected": 0, "reloaded": 0, "duplicates": 0} == (
        stats["subscriptions"][original]
    )
    assert {"received": 1, "verified": 1, "rejected": 0, "reloaded": 0, "duplicates": 1} == (
        stats["subscriptions"][successor]
    )
    assert {
        "ttl_seconds": 60.0,
        "max_entries": 100_000,
        "remembered": 1,
        "duplicates": 1,
        "evicted": 0,
    } == stats["deduplication"]
    dedupe_clock.now += 60
    third = post(url, *reversed(delivery(successor, secrets["S"], event_id=event)))
    assert (200, "verified") == (third[0], third[1]["status"])


def test_a_forged_delivery_does_not_mark_its_event_as_seen(
    dedupe_app: ConsumerApp, vault: VaultEmulator, vault_token: str
) -> None:
    """A forgery naming a real event's id is refused 401 and the real delivery still verifies."""
    secrets = {"O": new_secret(), "S": new_secret()}
    original, _ = swap_records(vault, vault_token, secrets)
    event = str(uuid.uuid4())
    url = dedupe_app.url + "/webhooks"
    forged = post(url, *reversed(delivery(original, new_secret(), event_id=event)))
    genuine = post(url, *reversed(delivery(original, secrets["O"], event_id=event)))
    assert (401, 200, "verified") == (forged[0], genuine[0], genuine[1]["status"])
    assert 0 == dedupe_app.stats()[original]["duplicates"]


def test_make_server_deduplicates_for_an_hour_by_default_and_not_at_all_with_0(
    vault: VaultEmulator, vault_token: str
) -> None:
    """Default dedupe_ttl is 1 h; with 0 both deliveries of one event are handled, stats null."""
    secrets = {"O": new_secret(), "S": new_secret()}
    original, successor = swap_records(vault, vault_token, secrets)
    default = make_server(vault_addr=vault.address, vault_token=vault_token)
    off = make_server(vault_addr=vault.address, vault_token=vault_token, dedupe_ttl=0)
    default.stop()
    off.start()
    try:
        event = str(uuid.uuid4())
        answers = [
            post(off.url + "/webhooks", *reversed(delivery(sid, secrets[key], event_id=event)))
            for sid, key in ((original, "O"), (successor, "S"))
        ]
        deduplication = get_json(off.url + "/stats")["deduplication"]
    finally:
        off.stop()
    dedupe = default.deduplicator
    assert (3600.0, 3600.0) == (DEFAULT_DEDUPE_TTL, None if dedupe is None else dedupe.ttl)
    assert [(200, "verified"), (200, "verified")] == [(a[0], a[1]["status"]) for a in answers]
    assert None is deduplication


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("90", 90.0), ("90s", 90.0), ("15m", 900.0), ("1h", 3600.0), ("1.5d", 129600.0)],
)
def test_dedupe_ttl_reads_seconds_minutes_hours_and_days(text: str, seconds: float) -> None:
    """--dedupe-ttl takes a bare number of seconds or one with a unit; 0 turns it off."""
    assert seconds == _duration(text)


def test_app_module_drops_a_duplicate_by_default(tmp_path: Path) -> None:
    """`python -m rotator.consumer.app` answers the same event twice 200, the second "duplicate"."""
    sid, secret = str(uuid.uuid4()), new_secret()
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    (secret_dir / sid).write_text(secret)
    app = AppProcess(["--secret-dir", str(secret_dir)], app_env())
    try:
        event = str(uuid.uuid4())
        statuses = [
            post(app.url + "/webhooks", *reversed(delivery(sid, secret, event_id=event)))[1]
            for _ in range(2)
        ]
        duplicates = app.stats()[sid]["duplicates"]
        assert 0 == app.finish()[0]
    finally:
        app.close()
    assert (["verified", "duplicate"], 1) == ([a["status"] for a in statuses], duplicates)


def test_the_emulators_fanned_out_event_verifies_via_both_and_is_handled_once(
    vault: VaultEmulator, vault_token: str, monite: MoniteEmulator
) -> None:
    """One event fanned out to a swap's O and S verifies via each; the app handles it once."""
    consumer = make_server(vault_addr=vault.address, vault_token=vault_token)
    consumer.start()
    try:
        url = consumer.url + "/webhooks"
        original = monite.seed(url=url, object_type="payable", event_types=("created", "updated"))
        successor = monite.seed(url=url, object_type="payable", event_types=("updated", "created"))
        secrets = {"O": monite.current_secret(original), "S": monite.current_secret(successor)}
        put_record_data(
            vault.address,
            vault_token,
            original,
            {"secret": secrets["O"], "state": "retiring", "successor_id": successor},
            cas=0,
        )
        put_record_data(
            vault.address,
            vault_token,
            successor,
            {"secret": secrets["S"], "state": "active", "predecessor_id": original},
            cas=0,
        )
        with DeliverySender(monite, retries=0) as sender:
            result = sender.deliver_now()
        stats = get_json(consumer.url + "/stats")
    finally:
        consumer.stop()
    assert (2, 0, 1) == (result.delivered, result.failed, result.fanned_out)
    assert [(1, 0), (1, 1)] == [
        (stats["subscriptions"][sid]["verified"], stats["subscriptions"][sid]["duplicates"])
        for sid in (original, successor)
    ]
    assert 1 == len({r.event_id for r in result.records})


def test_deliveries_naming_unknown_ids_are_counted_together(
    dedupe_app: ConsumerApp, vault: VaultEmulator, vault_token: str
) -> None:
    """Forged ids with no record add to one "(none)" row, not a row each (the stats stay small)."""
    url = dedupe_app.url + "/webhooks"
    for _ in range(3):
        status, _answer = post(url, *reversed(delivery(str(uuid.uuid4()), new_secret())))
        assert 401 == status
    stats = dedupe_app.stats()
    assert (["(none)"], 3) == (sorted(stats), stats["(none)"]["rejected"])
