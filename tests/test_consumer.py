"""rotator.consumer: verifying deliveries against records the rotator wrote (emulator, OpenBao)."""

from __future__ import annotations

import http.client
import logging
import math
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import hvac
import pytest

from rotator import signature
from rotator.config import VaultSettings
from rotator.consumer import (
    ABSENT_TTL,
    ACCEPTED_STATES,
    RECORD_STATES,
    CachedSource,
    DirectorySecretSource,
    Rejected,
    SecretRecord,
    StaticSecretSource,
    VaultSecretSource,
    Verifier,
    record_from_data,
    signature_header,
    subscription_id_file_name,
    verify_request,
)
from rotator.sandbox.vault import VaultEmulator
from rotator.secret import Secret
from tests.conftest import remember_output
from tests.consumer_support import commit, delivery, new_secret, put_record_data


class FakeMonotonic:
    """A monotonic clock the test moves by hand (re-read rate limits)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def source_for(vault: VaultEmulator, token: str, **kwargs: Any) -> VaultSecretSource:
    client = hvac.Client(url=vault.address, token=token, timeout=5)
    return VaultSecretSource(client, mount="secret", prefix="monite/webhooks", **kwargs)


def sub_id() -> str:
    return str(uuid.uuid4())


async def committed(settings: VaultSettings, state: str = "active") -> tuple[str, str]:
    """A new subscription id and secret, committed as its first rotation writes them."""
    sid, secret = sub_id(), new_secret()
    await commit(settings, sid, secret, cas=0, state=state)
    return sid, secret


async def test_verifies_a_delivery_signed_with_the_records_secret(
    vault: VaultEmulator, vault_token: str, vault_settings: VaultSettings
) -> None:
    """A delivery signed with the committed secret verifies, with its ids and payload."""
    sid, secret = await committed(vault_settings)
    verifier = Verifier(source_for(vault, vault_token))
    headers, body = delivery(sid, secret)
    verified = verifier.verify(headers, body)
    assert sid == verified.subscription_id
    assert verified.payload["id"] == verified.event_id
    assert "payable.created" == verified.payload["action"]


async def test_mismatch_rereads_once_and_accepts_the_rotated_secret(
    vault: VaultEmulator, vault_token: str, vault_settings: VaultSettings
) -> None:
    """After a rotation the cached secret fails, one re-read finds the new one, and it verifies."""
    sid, old, new = sub_id(), new_secret(), new_secret()
    first = await commit(vault_settings, sid, old, cas=0)
    source = source_for(vault, vault_token)
    verifier = Verifier(source)
    verifier.verify(*delivery(sid, old))
    await commit(vault_settings, sid, new, cas=first.version)
    verified = verifier.verify(*delivery(sid, new))
    assert (sid, 2, 1) == (verified.subscription_id, source.reads, verifier.refreshes)
    verifier.verify(*delivery(sid, new))
    assert 2 == source.reads  # the new secret is cached now


async def test_forged_delivery_is_rejected_with_exactly_one_extra_read(
    vault: VaultEmulator, vault_token: str, vault_settings: VaultSettings
) -> None:
    """A delivery signed with a wrong secret costs one cache-bypassing read, then is refused."""
    sid, secret = await committed(vault_settings)
    source = source_for(vault, vault_token)
    verifier = Verifier(source)
    verifier.verify(*delivery(sid, secret))
    before = source.reads
    with pytest.raises(Rejected) as caught:
        verifier.verify(*delivery(sid, new_secret()))
    assert ("mismatch", sid, 1) == (
        caught.value.reason,
        caught.value.subscription_id,
        source.reads - before,
    )


async def test_rereads_are_rate_limited_per_subscription(
    vault: VaultEmulator, vault_token: str, vault_settings: VaultSettings
) -> None:
    """Forgeries re-read a subscription burst times, then once per interval; others keep theirs."""
    sid, secret = await committed(vault_settings)
    other, other_secret = await committed(vault_settings)
    source = source_for(vault, vault_token)
    clock = FakeMonotonic()
    verifier = Verifier(source, refresh_interval=1.0, refresh_burst=3, monotonic=clock)
    verifier.verify(*delivery(sid, secret))
    verifier.verify(*delivery(other, other_secret))
    before = source.reads
    for _ in range(20):
        with pytest.raises(Rejected):
            verifier.verify(*delivery(sid, new_secret()))
    assert (3, 3, 17) == (source.reads - before, verifier.refreshes, verifier.refreshes_refused)
    with pytest.raises(Rejected):
        verifier.verify(*delivery(other, new_secret()))
    assert 4 == source.reads - before  # another subscription has its own allowance
    clock.now += 1.0
    for _ in range(2):
        with pytest.raises(Rejected):
            verifier.verify(*delivery(sid, new_secret()))
    assert (5, 18) == (source.reads - before, verifier.refreshes_refused)  # one token refilled


def test_a_delivery_after_the_rotations_gap_gets_its_own_reread() -> None:
    """In the gap a re-read finds the old secret; after the commit the next one re-reads again."""
    sid, old, new = sub_id(), new_secret(), new_secret()
    source = StaticSecretSource({sid: old}, ttl=3600)
    clock = FakeMonotonic()
    verifier = Verifier(source, refresh_interval=1.0, monotonic=clock)
    verifier.verify(*delivery(sid, old))  # cached
    with pytest.raises(Rejected) as caught:  # Monite signs with `new`; Vault still holds `old`
        verifier.verify(*delivery(sid, new))
    assert ("mismatch", 1) == (caught.value.reason, verifier.refreshes)
    source.set(sid, new)  # the rotator's commit
    clock.now += 0.2
    verified = verifier.verify(*delivery(sid, new))
    assert (sid, 2, 0, 3) == (
        verified.subscription_id,
        verifier.refreshes,
        verifier.refreshes_refused,
        source.reads,
    )


def test_a_flood_of_forgeries_costs_at_most_burst_plus_one_read_per_second() -> None:
    """Forged deliveries over 10 s cost at most burst + 10 reads, the rest refused unread."""
    sid, secret = sub_id(), new_secret()
    source = StaticSecretSource({sid: secret}, ttl=3600)
    clock = FakeMonotonic()
    verifier = Verifier(source, refresh_interval=1.0, refresh_burst=3, monotonic=clock)
    verifier.verify(*delivery(sid, secret))
    before, started = source.reads, clock.now
    for _ in range(200):
        with pytest.raises(Rejected):
            verifier.verify(*delivery(sid, new_secret()))
        clock.now += 0.05
    elapsed = clock.now - started
    made = source.reads - before
    assert (True, True) == (made <= 3 + elapsed, made >= 3 + elapsed - 1)
    assert (made, 200) == (verifier.refreshes, verifier.refreshes + verifier.refreshes_refused)


async def test_expired_timestamp_is_rejected_before_any_read(
    vault: VaultEmulator, vault_token: str, vault_settings: VaultSettings
) -> None:
    """A delivery older than the tolerance is refused as expired without asking Vault."""
    sid, secret = await committed(vault_settings)
    source = source_for(vault, vault_token)
    verifier = Verifier(source, tolerance=300)
    with pytest.raises(Rejected) as caught:
        verifier.verify(*delivery(sid, secret, at=time.time() - 301))
    assert ("expired", 0) == (caught.value.reason, source.reads)


async def test_unknown_subscription_is_rejected(
    vault: VaultEmulator, vault_token: str, vault_settings: VaultSettings
) -> None:
    """A delivery naming a subscription with no record is refused as unknown_subscription."""
    verifier = Verifier(source_for(vault, vault_token))
    sid = sub_id()
    with pytest.raises(Rejected) as caught:
        verifier.verify(*delivery(sid, new_secret()))
    assert ("unknown_subscription", sid) == (caught.value.reason, caught.value.subscription_id)


async def test_a_new_subscription_is_found_after_a_cached_miss(
    vault: VaultEmulator, vault_token: str, vault_settings: VaultSettings
) -> None:
    """A cached "no record" is read again once, so a subscription created since is accepted."""
    sid, secret = sub_id(), new_secret()
    source = source_for(vault, vault_token)
    verifier = Verifier(source)
    with pytest.raises(Rejected):
        verifier.verify(*delivery(sid, secret))
    await commit(vault_settings, sid, secret, cas=0)
    assert sid == verifier.verify(*delivery(sid, secret)).subscription_id


async def test_settling_records_secret_verifies_by_default(
    vault: VaultEmulator, vault_token: str, vault_settings: VaultSettings
) -> None:
    """A settling record's secret (committed, one more rotation to come) is used by default."""
    sid, secret = sub_id(), new_secret()
    written = await commit(vault_settings, sid, secret, cas=0, state="settling")
    assert "settling" == written.state
    verifier = Verifier(source_for(vault, vault_token))
    assert sid == verifier.verify(*delivery(sid, secret)).subscription_id


async def test_strict_states_answer_no_active_secret(
    vault: VaultEmulator, vault_token: str, vault_settings: VaultSettings
) -> None:
    """With accepted_states={"active"} a settling record gives no_active_secret."""
    sid, secret = await committed(vault_settings, state="settling")
    verifier = Verifier(source_for(vault, vault_token, accepted_states={"active"}))
    with pytest.raises(Rejected) as caught:
        verifier.verify(*delivery(sid, secret))
    assert "no_active_secret" == caught.value.reason


def test_record_without_usable_secret_has_none() -> None:
    """A deleted version, an empty secret, an unknown state: read as the rotator reads them."""
    assert (None, "stale") == (
        record_from_data("s", None, 3).secret,
        record_from_data("s", None, 3).state,
    )
    assert None is record_from_data("s", {"secret": "", "state": "active"}).secret
    assert "stale" == record_from_data("s", {"secret": "x" * 20, "state": "new-kind"}).state
    assert "active" == record_from_data("s", {"secret": "x" * 20}).state


SWAP_STATES_WITH_A_SECRET = ("swapping", "retiring", "deleting")


def test_the_record_states_are_protocol_3s_and_every_one_with_a_secret_is_accepted() -> None:
    """The kit knows v2's four states and the swap's four, and accepts all but `retired`."""
    assert (
        "active",
        "rotating",
        "settling",
        "stale",
        "swapping",
        "retiring",
        "deleting",
        "retired",
    ) == RECORD_STATES
    assert frozenset(RECORD_STATES) - {"retired"} == ACCEPTED_STATES


@pytest.mark.parametrize("state", SWAP_STATES_WITH_A_SECRET)
def test_an_originals_record_in_a_swap_state_yields_its_secret_by_default(state: str) -> None:
    """swapping, retiring, deleting: the original's secret is still valid and verifies."""
    data = {"secret": "o" * 24, "state": state, "swap_id": "abc", "successor_id": "S"}
    record = record_from_data("O", data, 4)
    assert (state, "o" * 24, 4) == (
        record.state,
        None if record.secret is None else record.secret.reveal(),
        record.version,
    )


def test_a_retired_record_yields_no_secret_even_with_one_left_in_it() -> None:
    """A retired original is never current: null secret or not, the kit gets none from it."""
    retired = {"secret": None, "state": "retired", "successor_id": "S"}
    left_over = {"secret": "o" * 24, "state": "retired", "successor_id": "S"}
    assert [("retired", None), ("retired", None)] == [
        (r.state, r.secret)
        for r in (record_from_data("O", retired), record_from_data("O", left_over))
    ]


def test_strict_states_refuse_the_originals_secret_unless_the_swap_states_are_added() -> None:
    """accepted_states={"active"} drops a retiring original's secret; adding the three keeps it."""
    data = {"secret": "o" * 24, "state": "retiring"}
    strict = record_from_data("O", data, accepted_states={"active"})
    swap_aware = record_from_data("O", data, accepted_states={"active", *SWAP_STATES_WITH_A_SECRET})
    assert (None, True) == (strict.secret, swap_aware.secret is not None)


def _swap_records(
    vault: VaultEmulator, token: str, original: str, successor: str, secrets: dict[str, str]
) -> None:
    """O `retiring` and S `active` with its swap fields, as a v3 rotator's steps 5-6 leave them."""
    swap_id = uuid.uuid4().hex
    if successor in secrets:
        put_record_data(
            vault.address,
            token,
            successor,
            {
                "secret": secrets[successor],
                "state": "active",
                "predecessor_id": original,
                "swap_id": swap_id,
                "overlap_seconds": 900.0,
                "lineage": [original],
            },
            cas=0,
        )
    put_record_data(
        vault.address,
        token,
        original,
        {
            "secret": secrets[original],
            "state": "retiring",
            "swap_id": swap_id,
            "successor_id": successor,
            "overlap_ends_at": "2030-01-01T00:15:00Z",
        },
        cas=0,
    )


def test_a_successor_is_verified_on_its_first_delivery_beside_its_original(
    vault: VaultEmulator, vault_token: str
) -> None:
    """One event via O (retiring) and S (new id, record in Vault): both verify, one read each."""
    original, successor, event = sub_id(), sub_id(), str(uuid.uuid4())
    secrets = {original: new_secret(), successor: new_secret()}
    _swap_records(vault, vault_token, original, successor, secrets)
    source = source_for(vault, vault_token)
    verifier = Verifier(source)
    via_original = verifier.verify(*delivery(original, secrets[original], event_id=event))
    via_successor = verifier.verify(*delivery(successor, secrets[successor], event_id=event))
    assert [(original, event), (successor, event)] == [
        (d.subscription_id, d.event_id) for d in (via_original, via_successor)
    ]
    assert (2, 0) == (source.reads, verifier.refreshes)


def test_a_successor_refused_before_its_commit_verifies_on_the_next_delivery_after_it(
    vault: VaultEmulator, vault_token: str
) -> None:
    """S delivering before its record exists is unknown_subscription; committed, it verifies."""
    original, successor = sub_id(), sub_id()
    secrets = {original: new_secret()}
    _swap_records(vault, vault_token, original, successor, secrets)
    verifier = Verifier(source_for(vault, vault_token))
    s_secret = new_secret()
    with pytest.raises(Rejected) as caught:
        verifier.verify(*delivery(successor, s_secret))
    put_record_data(
        vault.address,
        vault_token,
        successor,
        {"secret": s_secret, "state": "active", "predecessor_id": original},
        cas=0,
    )
    assert ("unknown_subscription", successor) == (
        caught.value.reason,
        verifier.verify(*delivery(successor, s_secret)).subscription_id,
    )


def test_a_retired_originals_delivery_is_refused_as_no_active_secret(
    vault: VaultEmulator, vault_token: str
) -> None:
    """Once O's record is retired (secret null), a delivery signed with O's old one is refused."""
    original, successor, old = sub_id(), sub_id(), new_secret()
    put_record_data(
        vault.address,
        vault_token,
        original,
        {"secret": None, "state": "retired", "successor_id": successor, "swap_id": "x"},
        cas=0,
    )
    with pytest.raises(Rejected) as caught:
        Verifier(source_for(vault, vault_token)).verify(*delivery(original, old))
    assert ("no_active_secret", original) == (caught.value.reason, caught.value.subscription_id)


@pytest.mark.parametrize(
    ("header", "body"),
    [
        (None, b"{}"),
        ("t=1", b"{}"),
        ("garbage", b"{}"),
    ],
)
def test_malformed_headers_are_rejected(header: str | None, body: bytes) -> None:
    """A missing or unparseable Monite-Signature is malformed."""
    verifier = Verifier(StaticSecretSource())
    with pytest.raises(Rejected) as caught:
        verifier.verify(header, body)
    assert "malformed" == caught.value.reason


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1]", b"{}", b'{"webhook_subscription_id": "../x"}', b"[" * 100_000],
)
def test_malformed_bodies_are_rejected(body: bytes) -> None:
    """A body that is not a JSON object naming a safe subscription id is malformed."""
    verifier = Verifier(StaticSecretSource())
    header = signature.sign("k" * 16, body, timestamp=int(time.time()))
    with pytest.raises(Rejected) as caught:
        verifier.verify(header, body)
    assert "malformed" == caught.value.reason


def test_verify_request_maps_outcomes_to_statuses() -> None:
    """verify_request answers 200, 400, 401 and 503 with JSON-able bodies naming the reason."""
    sid, secret = sub_id(), new_secret()
    verifier = Verifier(StaticSecretSource({sid: secret}))
    headers, body = delivery(sid, secret)
    status, answer = verify_request(verifier, headers, body)
    assert (200, "verified", sid) == (status, answer["status"], answer["subscription_id"])
    assert (400, {"error": "malformed"}) == verify_request(verifier, {}, body)
    forged_headers, forged_body = delivery(sid, new_secret())
    assert (401, {"error": "mismatch", "subscription_id": sid}) == verify_request(
        verifier, forged_headers, forged_body
    )


def test_vault_down_is_503_not_a_rejection() -> None:
    """When Vault cannot be read the answer is 503 unavailable, so Monite delivers again."""
    client = hvac.Client(url="http://127.0.0.1:9", token="t", timeout=1)
    verifier = Verifier(VaultSecretSource(client))
    sid = sub_id()
    assert (503, {"error": "unavailable"}) == verify_request(verifier, *delivery(sid, "k" * 16))


def test_headers_are_found_in_any_case_and_in_a_wsgi_environ() -> None:
    """The signature header is found case-insensitively, and as HTTP_MONITE_SIGNATURE."""
    assert "v" == signature_header({"monite-signature": "v"})
    assert "v" == signature_header({"HTTP_MONITE_SIGNATURE": "v", "wsgi.input": "x"})


async def test_no_secret_in_exceptions_or_reprs(
    vault: VaultEmulator, vault_token: str, vault_settings: VaultSettings
) -> None:
    """Nothing the kit shows (reprs, rejections, results) holds the secret or the forged one."""
    sid, secret = await committed(vault_settings)
    forged = new_secret()
    source = source_for(vault, vault_token)
    verifier = Verifier(source)
    verified = verifier.verify(*delivery(sid, secret))
    texts = [repr(verifier), repr(source), repr(verified), repr(source.get(sid))]
    for reason_case in (delivery(sid, forged), delivery(sid, secret, at=0)):
        with pytest.raises(Rejected) as caught:
            verifier.verify(*reason_case)
        texts += [str(caught.value), repr(caught.value)]
    remember_output(*texts)
    assert [] == [text for text in texts if secret in text or forged in text]


def test_hvac_is_imported_only_by_the_vault_source() -> None:
    """Importing the kit and verifying with another source loads no hvac."""
    code = (
        "import sys, time; from rotator import consumer, signature;"
        "v = consumer.Verifier(consumer.StaticSecretSource({'s1': 'k' * 16}));"
        'b = b\'{"webhook_subscription_id": "s1"}\';'
        "v.verify(signature.sign('k' * 16, b, timestamp=int(time.time())), b);"
        "print('hvac' in sys.modules, 'httpx' in sys.modules, 'structlog' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    remember_output(result.stdout, result.stderr)
    assert (0, "False False False") == (result.returncode, result.stdout.strip())


def test_parse_skips_empty_parts_and_reads_keys_in_any_case() -> None:
    """A trailing comma, an empty part and `T=`/`V1=` keys parse as the lowercase header does."""
    digest = "ab" * 32
    expected = signature.ParsedSignature(1700000000, (digest,))
    for header in (
        f"t=1700000000,v1={digest},",
        f"t=1700000000,,v1={digest}",
        f" , T=1700000000, V1={digest.upper()} ,",
    ):
        assert expected == signature.parse(header)


def test_parse_still_refuses_bad_values_and_differing_timestamps() -> None:
    """Lenient keys keep the values' rules: no t, a bad t, two different t are malformed."""
    digest = "ab" * 32
    for header in (f",,v1={digest}", f"T=soon,V1={digest}", f"t=1,v1={digest}, t=2,v1={digest}"):
        with pytest.raises(signature.SignatureError) as caught:
            signature.parse(header)
        assert "malformed" == caught.value.reason


def test_a_header_sent_twice_has_all_its_signatures_tried() -> None:
    """The right v1 in a repeated header verifies: list value, WSGI comma-join, HTTPMessage."""
    sid, secret = sub_id(), new_secret()
    verifier = Verifier(StaticSecretSource({sid: secret}))
    headers, body = delivery(sid, secret)
    good = headers[signature.HEADER]
    wrong = signature.sign(new_secret(), body, timestamp=int(signature.parse(good).timestamp))
    message = http.client.HTTPMessage()
    message[signature.HEADER] = wrong
    message[signature.HEADER] = good
    for request_headers in (
        {signature.HEADER: [wrong, good]},
        {"HTTP_MONITE_SIGNATURE": f"{wrong}, {good}"},
        {"monite-signature": wrong, "Monite-Signature": good},
        message,
    ):
        status, answer = verify_request(verifier, request_headers, body)
        assert (200, sid) == (status, answer.get("subscription_id"))


def test_verify_request_takes_raw_asgi_headers() -> None:
    """An ASGI scope's (bytes, bytes) header pairs are read like a mapping, in any case."""
    sid, secret = sub_id(), new_secret()
    verifier = Verifier(StaticSecretSource({sid: secret}))
    headers, body = delivery(sid, secret)
    raw = [
        (b"content-type", b"application/json"),
        (b"monite-signature", headers[signature.HEADER].encode("latin-1")),
    ]
    assert (200, "verified") == (lambda r: (r[0], r[1]["status"]))(
        verify_request(verifier, raw, body)
    )
    assert (400, {"error": "malformed"}) == verify_request(verifier, [(b"x", b"y")], body)


def test_absent_ids_are_bounded_believed_briefly_and_never_polled() -> None:
    """Forged ids cost one read each, evict the oldest beyond the bound, and stay out of polls."""
    now = [0.0]
    records = {"real": SecretRecord("real", Secret("whsec_real_value"), "active", 1)}
    source = CachedSource(records.get, ttl=300, clock=lambda: now[0], max_absent=2)
    for forged in ("f1", "f2", "f3", "real", "f3"):
        source.get(forged)
    assert (4, ["real"]) == (source.reads, source.known())
    now[0] += 0.5
    assert (True, True) == (source.get("f3").cached, source.get("f1").cached is False)
    now[0] += ABSENT_TTL
    assert False is source.get("f3").cached  # "no record" is re-read after ABSENT_TTL


def test_a_read_in_flight_during_an_invalidate_does_not_cache_its_old_answer() -> None:
    """A hook's invalidate wins over a read that began before it (stale answer not cached)."""
    answers = iter(["old", "new"])
    invalidated: list[CachedSource] = []

    def load(subscription_id: str) -> SecretRecord:
        value = next(answers)
        if value == "old":
            invalidated[0].invalidate(subscription_id)  # the hook lands mid-read
        return SecretRecord(subscription_id, Secret(f"whsec_{value}_value"), "active", 1)

    source = CachedSource(load, ttl=300)
    invalidated.append(source)
    first = source.refresh("s1")
    second = source.get("s1")
    assert (Secret("whsec_old_value"), False, Secret("whsec_new_value")) == (
        first.secret if first else None,
        second.cached,
        second.record.secret if second.record else None,
    )


# -- a directory source reads only files named like a subscription id ----------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("3fa85f64-5717-4562-b3fc-2c963f66afa6", True),
        ("3FA85F64-5717-4562-B3FC-2C963F66AFA6", True),
        ("agent.pid", False),
        ("secret", False),
        (".agent-token", False),
        ("..data", False),
        ("3fa85f6457174562b3fc2c963f66afa6", False),
        ("{3fa85f64-5717-4562-b3fc-2c963f66afa6}", False),
        ("3fa85f64-5717-4562-b3fc-2c963f66afa6.tmp", False),
        ("3fa85f64-5717-4562-b3fc-2c963f66afag", False),
    ],
)
def test_only_a_uuid_shaped_name_is_a_subscription_id_file(name: str, expected: bool) -> None:
    """A file name is a subscription's secret only in Monite's 8-4-4-4-12 hex UUID form."""
    assert expected == subscription_id_file_name(name)


def test_a_directory_source_never_verifies_with_an_agents_pid_file(tmp_path: Path) -> None:
    """A delivery naming `agent.pid`, signed with that file's content, is unknown, not verified."""
    sid, secret = sub_id(), new_secret()
    (tmp_path / sid).write_text(secret + "\n")
    (tmp_path / "agent.pid").write_text("4242\n")
    (tmp_path / "secret").write_text(new_secret())
    source = DirectorySecretSource(tmp_path)
    verifier = Verifier(source)
    assert 200 == verify_request(verifier, *delivery(sid, secret))[0]
    assert (401, {"error": "unknown_subscription", "subscription_id": "agent.pid"}) == (
        verify_request(verifier, *delivery("agent.pid", "4242"))
    )
    assert (None, None) == (source.get("agent.pid").record, source.get("secret").record)


def test_a_directory_source_warns_once_naming_other_files_never_their_contents(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Non-id files present when the source is built get one WARNING with their names only."""
    pid, rendered, token = "4242", new_secret(), new_secret()
    (tmp_path / sub_id()).write_text(new_secret())
    (tmp_path / "agent.pid").write_text(pid)
    (tmp_path / "secret").write_text(rendered)
    (tmp_path / ".agent-token").write_text(token)
    with caplog.at_level(logging.WARNING, logger="rotator.consumer"):
        DirectorySecretSource(tmp_path).get("agent.pid")
    lines = [r.getMessage() for r in caplog.records if r.name == "rotator.consumer"]
    remember_output(*lines)
    assert (1, 1) == (len(lines), len(lines[0].splitlines()))
    line = lines[0]
    assert (True, True, False) == ("'agent.pid'" in line, "'secret'" in line, "token" in line)
    assert [] == [value for value in (pid, rendered, token) if value in line]


def test_a_directory_of_secrets_alone_is_not_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Id-named files and dot files (a Kubernetes volume's `..data`) raise no warning."""
    (tmp_path / sub_id()).write_text(new_secret())
    (tmp_path / "..data").mkdir()
    with caplog.at_level(logging.WARNING, logger="rotator.consumer"):
        DirectorySecretSource(tmp_path)
    assert [] == [r.getMessage() for r in caplog.records if r.name == "rotator.consumer"]


def test_the_shipped_vault_agent_writes_no_pid_file_into_the_consumers_volume() -> None:
    """deploy/consumers/vault-agent/agent.hcl sets no pid_file under /run/monite-webhooks."""
    agent = Path(__file__).resolve().parent.parent / "deploy/consumers/vault-agent/agent.hcl"
    settings = [line.strip() for line in agent.read_text().splitlines()]
    pid_files = [line for line in settings if line.startswith("pid_file")]
    assert [] == [line for line in pid_files if "/run/monite-webhooks" in line]


# -- a bad setting fails when built, never as a 500 on a delivery ----------------------


@pytest.mark.parametrize("tolerance", [math.nan, math.inf, -math.inf, -1.0])
def test_a_tolerance_that_is_not_finite_seconds_is_refused_when_the_verifier_is_built(
    tolerance: float,
) -> None:
    """NaN, infinite or negative tolerance: a one-line ValueError naming it and the fix."""
    with pytest.raises(ValueError, match=r"^tolerance must be a finite number of seconds") as e:
        Verifier(StaticSecretSource(), tolerance=tolerance)
    message = str(e.value)
    assert (1, True) == (len(message.splitlines()), "give e.g. 300" in message)


@pytest.mark.parametrize(
    ("secrets", "empty"), [({"s1": ""}, "s1"), ({"s1": "k" * 16, "s2": ""}, "s2")]
)
def test_an_empty_static_secret_is_refused_when_the_source_is_built(
    secrets: dict[str, str], empty: str
) -> None:
    """StaticSecretSource refuses an empty secret at once, naming its subscription."""
    with pytest.raises(ValueError, match=r"^StaticSecretSource: the secret of") as caught:
        StaticSecretSource(secrets)
    message = str(caught.value)
    assert (1, True, True) == (
        len(message.splitlines()),
        f"subscription {empty!r} is empty" in message,
        "give its signing secret" in message,
    )


def test_setting_an_empty_static_secret_is_refused_and_keeps_the_old_one() -> None:
    """StaticSecretSource.set with an empty secret raises and the subscription still verifies."""
    sid, secret = sub_id(), new_secret()
    source = StaticSecretSource({sid: secret})
    with pytest.raises(ValueError, match="is empty"):
        source.set(sid, "")
    assert 200 == verify_request(Verifier(source), *delivery(sid, secret))[0]


def test_an_empty_secret_from_a_source_of_ones_own_is_401_not_an_error() -> None:
    """A record holding an empty Secret answers 401 no_active_secret, never raises (a 500)."""
    sid = sub_id()
    source = CachedSource(lambda s: SecretRecord(s, Secret(""), "active", 1), ttl=0)
    answer = verify_request(Verifier(source), *delivery(sid, "k" * 16))
    assert (401, {"error": "no_active_secret", "subscription_id": sid}) == answer


# -- one timestamp check: rotator.signature's -------------------------------------------


@pytest.mark.parametrize("offset", [-61, -60, 60, 61])
def test_the_verifier_judges_a_timestamp_exactly_as_signature_verify_does(offset: int) -> None:
    """At and past the tolerance, both sides, the kit's answer and message are signature's."""
    sid, secret = sub_id(), new_secret()
    headers, body = delivery(sid, secret, at=1_700_000_000)
    now = 1_700_000_000 + offset
    verifier = Verifier(StaticSecretSource({sid: secret}), tolerance=60, clock=lambda: now)
    header = headers[signature.HEADER]
    try:
        signature.verify(header, body, secret, now=now, tolerance=60)
        expected: tuple[str, str] = ("verified", "")
    except signature.SignatureError as exc:
        expected = (exc.reason, str(exc))
    try:
        verifier.verify(headers, body)
        actual: tuple[str, str] = ("verified", "")
    except Rejected as exc:
        actual = (exc.reason, str(exc))
    assert expected == actual


def test_the_verifier_and_signature_verify_call_the_one_timestamp_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`signature.check_timestamp` is what both run, once per delivery each."""
    calls: list[int] = []
    original = signature.check_timestamp

    def counted(timestamp: int, **kwargs: Any) -> None:
        calls.append(timestamp)
        original(timestamp, **kwargs)

    monkeypatch.setattr(signature, "check_timestamp", counted)
    sid, secret = sub_id(), new_secret()
    headers, body = delivery(sid, secret)
    Verifier(StaticSecretSource({sid: secret})).verify(headers, body)
    signature.verify(headers[signature.HEADER], body, secret, now=time.time())
    stamp = signature.parse(headers[signature.HEADER]).timestamp
    assert [stamp, stamp] == calls


@pytest.mark.parametrize("now", [math.nan, math.inf])
def test_the_timestamp_check_refuses_when_the_clock_is_not_a_number(now: float) -> None:
    """A NaN or infinite `now` is expired, never accepted: the check fails closed."""
    with pytest.raises(signature.SignatureError) as caught:
        signature.check_timestamp(1_700_000_000, now=now, tolerance=300)
    assert "expired" == caught.value.reason


def test_check_tolerance_names_the_setting_it_was_given() -> None:
    """The error names the caller's setting (say `hook_tolerance`), and a good value is a float."""
    with pytest.raises(ValueError, match=r"^hook_tolerance must be a finite number"):
        signature.check_tolerance(math.nan, setting="hook_tolerance")
    assert 5.0 == signature.check_tolerance(5)
