"""The Vault emulator behaves like Vault's documented HTTP API, as seen through hvac itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import hvac
import hvac.exceptions
import pytest
import requests

from rotator.config import VaultSettings
from rotator.sandbox import ISSUED
from rotator.sandbox.vault import (
    CAS_MISMATCH,
    CAS_REQUIRED,
    PERMISSION_DENIED,
    VaultEmulator,
    parse_policy,
)
from tests.sandbox import SSL_CONTEXT

PREFIX = "monite/webhooks"
ROTATOR_POLICY_FOR_TESTS = (
    'path "secret/data/monite/webhooks/*" { capabilities = ["create", "read", "update"] }'
)


def client(vault: VaultEmulator, token: str | None = None) -> hvac.Client:
    return hvac.Client(url=vault.address, token=token or vault.root_token, timeout=2)


def write(c: hvac.Client, path: str, data: dict[str, Any], cas: int | None = None) -> Any:
    return c.secrets.kv.v2.create_or_update_secret(path=path, secret=data, cas=cas)


def read(c: hvac.Client, path: str, version: int | None = None) -> Any:
    return c.secrets.kv.v2.read_secret_version(
        path=path, version=version, raise_on_deleted_version=True
    )


def health(c: hvac.Client, **params: Any) -> tuple[int, dict[str, Any]]:
    """(status, body) of sys/health via GET: hvac hands back a dict on 200, a Response otherwise."""
    answer = c.sys.read_health_status(method="GET", **params)
    if isinstance(answer, dict):
        return 200, answer
    return answer.status_code, answer.json()


def _rfc3339_seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.fixture
def root(vault: VaultEmulator) -> Iterator[hvac.Client]:
    c = client(vault)
    yield c
    c.adapter.close()


@pytest.fixture
def raw(vault: VaultEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=vault.address + "/v1",
        headers={"X-Vault-Token": vault.root_token},
        verify=SSL_CONTEXT,
    ) as c:
        yield c


# -- KV v2 data --------------------------------------------------------------


def test_write_then_read_returns_data_and_version_metadata(root: hvac.Client) -> None:
    """A write answers the version metadata; a read answers data plus the same metadata."""
    written = write(root, f"{PREFIX}/a", {"secret": "s1", "state": "active"})
    assert {"created_time", "custom_metadata", "deletion_time", "destroyed", "version"} == set(
        written["data"]
    )
    assert 1 == written["data"]["version"]
    assert "" == written["data"]["deletion_time"]
    got = read(root, f"{PREFIX}/a")
    assert {"secret": "s1", "state": "active"} == got["data"]["data"]
    assert written["data"] == got["data"]["metadata"]
    assert "mount_type" not in got  # OpenBao's envelope has no mount_type (Vault 1.x's has)
    assert "" == got["lease_id"]


def test_versions_increment_and_old_versions_stay_readable(root: hvac.Client) -> None:
    """Each write makes a new version; `?version=N` reads an older one."""
    for n in range(3):
        write(root, f"{PREFIX}/a", {"n": n})
    assert 3 == read(root, f"{PREFIX}/a")["data"]["metadata"]["version"]
    assert {"n": 0} == read(root, f"{PREFIX}/a", version=1)["data"]["data"]


def test_missing_secret_is_404_with_empty_errors(root: hvac.Client, raw: httpx.Client) -> None:
    """A secret that was never written answers 404 {"errors": []}."""
    with pytest.raises(hvac.exceptions.InvalidPath):
        read(root, f"{PREFIX}/nope")
    response = raw.get("/secret/data/monite/webhooks/nope")
    assert (404, {"errors": []}) == (response.status_code, response.json())


def test_cas_zero_creates_only_once(root: hvac.Client, raw: httpx.Client) -> None:
    """cas=0 succeeds on a new key and fails with Vault's exact text once it exists."""
    assert 1 == write(root, f"{PREFIX}/a", {"v": 1}, cas=0)["data"]["version"]
    with pytest.raises(hvac.exceptions.InvalidRequest) as caught:
        write(root, f"{PREFIX}/a", {"v": 2}, cas=0)
    assert [CAS_MISMATCH] == caught.value.errors
    response = raw.post("/secret/data/monite/webhooks/a", json={"data": {}, "options": {"cas": 0}})
    assert (400, {"errors": [CAS_MISMATCH]}) == (response.status_code, response.json())


def test_cas_must_match_current_version(root: hvac.Client, vault: VaultEmulator) -> None:
    """A stale cas is refused and changes nothing; the current one succeeds."""
    write(root, f"{PREFIX}/a", {"v": 1})
    write(root, f"{PREFIX}/a", {"v": 2})
    with pytest.raises(hvac.exceptions.InvalidRequest, match="did not match"):
        write(root, f"{PREFIX}/a", {"v": "stale"}, cas=1)
    assert ({"v": 2}, 2) == vault.kv_read("secret", f"{PREFIX}/a")
    assert 3 == write(root, f"{PREFIX}/a", {"v": 3}, cas=2)["data"]["version"]


def test_cas_required_on_metadata_demands_cas(root: hvac.Client) -> None:
    """With cas_required set on the key, a write without cas is refused."""
    write(root, f"{PREFIX}/a", {"v": 1})
    root.secrets.kv.v2.update_metadata(path=f"{PREFIX}/a", cas_required=True)
    with pytest.raises(hvac.exceptions.InvalidRequest) as caught:
        write(root, f"{PREFIX}/a", {"v": 2})
    assert [CAS_REQUIRED] == caught.value.errors
    assert 2 == write(root, f"{PREFIX}/a", {"v": 2}, cas=1)["data"]["version"]


def test_no_data_is_400(raw: httpx.Client) -> None:
    """A write without a "data" object is refused as Vault does."""
    response = raw.post("/secret/data/monite/webhooks/a", json={"options": {}})
    assert (400, {"errors": ["no data provided"]}) == (response.status_code, response.json())


def test_mount_max_versions_prunes_oldest() -> None:
    """The mount's max_versions keeps only the newest versions; pruned ones read 404."""
    with VaultEmulator(max_versions=2) as vault:
        c = client(vault)
        for n in range(4):
            write(c, "k", {"n": n})
        meta = c.secrets.kv.v2.read_secret_metadata(path="k")["data"]
        assert (4, 3, ["3", "4"]) == (
            meta["current_version"],
            meta["oldest_version"],
            sorted(meta["versions"]),
        )
        with pytest.raises(hvac.exceptions.InvalidPath):
            read(c, "k", version=1)
        assert [3, 4] == vault.kv_versions("secret", "k")


def test_secret_max_versions_overrides_the_default(root: hvac.Client, vault: VaultEmulator) -> None:
    """A key's own max_versions prunes below Vault's default of ten."""
    root.secrets.kv.v2.update_metadata(path="k", max_versions=3)
    for n in range(5):
        write(root, "k", {"n": n})
    assert [3, 4, 5] == vault.kv_versions("secret", "k")


def test_default_max_versions_is_ten(root: hvac.Client, vault: VaultEmulator) -> None:
    """Without configuration Vault keeps ten versions."""
    for n in range(12):
        write(root, "k", {"n": n})
    assert list(range(3, 13)) == vault.kv_versions("secret", "k")


def test_mount_config_roundtrip(root: hvac.Client) -> None:
    """`{mount}/config` reads back what was written, durations in Go format."""
    root.secrets.kv.v2.configure(max_versions=5, cas_required=True, delete_version_after="1h30m")
    config = root.secrets.kv.v2.read_configuration()["data"]
    expected = {
        "max_versions": 5,
        "cas_required": True,
        "delete_version_after": "1h30m0s",
        "metadata_cas_required": False,
    }
    assert expected == config


def test_mount_cas_required_demands_cas(root: hvac.Client) -> None:
    """With cas_required on the mount, even a first write needs cas."""
    root.secrets.kv.v2.configure(cas_required=True)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="required"):
        write(root, "k", {"v": 1})
    assert 1 == write(root, "k", {"v": 1}, cas=0)["data"]["version"]


# -- custom metadata -----------------------------------------------------------


def test_custom_metadata_within_limits_is_stored(root: hvac.Client) -> None:
    """64 keys of 128 bytes with 512-byte values are accepted and shown on reads."""
    custom = {f"{i:03d}".ljust(128, "k"): "v" * 512 for i in range(64)}
    root.secrets.kv.v2.update_metadata(path="k", custom_metadata=custom)
    assert custom == root.secrets.kv.v2.read_secret_metadata(path="k")["data"]["custom_metadata"]
    assert custom == write(root, "k", {"v": 1})["data"]["custom_metadata"]


@pytest.mark.parametrize(
    ("custom", "message"),
    [
        (
            {str(i): "v" for i in range(65)},
            "1 error occurred:\n\t* custom_metadata validation failed: "
            "payload must contain at most 64 keys, provided 65\n\n",
        ),
        (
            {"k" * 129: "v"},
            f'1 error occurred:\n\t* custom_metadata validation failed: length of key "{"k" * 129}"'
            " is 129 but must be 0 < len(key) <= 128\n\n",
        ),
        (
            {"k": "v" * 513},
            '1 error occurred:\n\t* custom_metadata validation failed: length of value for key "k"'
            " is 513 but must be 0 < len(value) <= 512\n\n",
        ),
    ],
)
def test_custom_metadata_limits_are_400(
    raw: httpx.Client, custom: dict[str, str], message: str
) -> None:
    """Vault's limits (64 keys, 128-byte keys, 512-byte values) answer 400 with its text."""
    response = raw.post("/secret/metadata/k", json={"custom_metadata": custom})
    assert (400, {"errors": [message]}) == (response.status_code, response.json())


# -- list ------------------------------------------------------------------------


def test_list_shows_keys_and_folders(root: hvac.Client, raw: httpx.Client) -> None:
    """LIST and GET ?list=true answer sorted keys with sub-folders as `name/`."""
    for path in (f"{PREFIX}/b", f"{PREFIX}/a", f"{PREFIX}/team/x", f"{PREFIX}/team/y"):
        write(root, path, {"v": 1})
    listed = root.secrets.kv.v2.list_secrets(path=PREFIX)
    assert ["a", "b", "team/"] == listed["data"]["keys"]
    via_get = raw.get("/secret/metadata/monite/webhooks", params={"list": "true"})
    assert ["a", "b", "team/"] == via_get.json()["data"]["keys"]
    assert ["monite/"] == root.secrets.kv.v2.list_secrets(path="")["data"]["keys"]


def test_list_empty_folder_is_404(root: hvac.Client, raw: httpx.Client) -> None:
    """Listing a folder with nothing under it answers 404 {"errors": []}."""
    with pytest.raises(hvac.exceptions.InvalidPath):
        root.secrets.kv.v2.list_secrets(path=PREFIX)
    response = raw.request("LIST", "/secret/metadata/monite/webhooks")
    assert (404, {"errors": []}) == (response.status_code, response.json())


# -- delete, undelete, destroy, metadata ------------------------------------------


def test_soft_delete_makes_latest_404_with_version_metadata(
    root: hvac.Client, raw: httpx.Client
) -> None:
    """DELETE data soft-deletes the latest version; reading it is 404 with its metadata."""
    write(root, "k", {"v": 1})
    write(root, "k", {"v": 2})
    response = raw.delete("/secret/data/k")
    assert (204, b"") == (response.status_code, response.content)
    got = raw.get("/secret/data/k")
    assert 404 == got.status_code
    body = got.json()
    assert None is body["data"]["data"]
    assert 2 == body["data"]["metadata"]["version"]
    assert "" != body["data"]["metadata"]["deletion_time"]
    deleted = root.secrets.kv.v2.read_secret_version(path="k", raise_on_deleted_version=False)
    assert 2 == deleted["data"]["metadata"]["version"]
    with pytest.raises(hvac.exceptions.InvalidPath):
        read(root, "k")
    assert {"v": 1} == read(root, "k", version=1)["data"]["data"]


def test_undelete_and_destroy(root: hvac.Client, vault: VaultEmulator) -> None:
    """Undelete restores a soft-deleted version; destroy removes its data for good."""
    write(root, "k", {"v": 1})
    root.secrets.kv.v2.delete_secret_versions(path="k", versions=[1])
    assert None is vault.kv_read("secret", "k")
    root.secrets.kv.v2.undelete_secret_versions(path="k", versions=[1])
    assert ({"v": 1}, 1) == vault.kv_read("secret", "k")
    root.secrets.kv.v2.destroy_secret_versions(path="k", versions=[1])
    meta = root.secrets.kv.v2.read_secret_metadata(path="k")["data"]
    assert True is meta["versions"]["1"]["destroyed"]
    with pytest.raises(hvac.exceptions.InvalidPath):
        read(root, "k")


def test_versions_operation_without_versions_is_400(raw: httpx.Client) -> None:
    """delete/undelete/destroy need a version list."""
    response = raw.post("/secret/destroy/k", json={})
    assert (400, {"errors": ["no version number provided"]}) == (
        response.status_code,
        response.json(),
    )


def test_metadata_read_has_vaults_fields(root: hvac.Client) -> None:
    """Metadata shows current/oldest version, per-version times, settings and custom metadata."""
    write(root, "k", {"v": 1})
    write(root, "k", {"v": 2})
    meta = root.secrets.kv.v2.read_secret_metadata(path="k")["data"]
    expected = {
        "cas_required",
        "created_time",
        "current_metadata_version",
        "current_version",
        "custom_metadata",
        "delete_version_after",
        "max_versions",
        "metadata_cas_required",
        "oldest_version",
        "updated_time",
        "versions",
    }
    assert expected == set(meta)
    assert (2, 0, 0, "0s", None) == (
        meta["current_version"],
        meta["oldest_version"],
        meta["max_versions"],
        meta["delete_version_after"],
        meta["custom_metadata"],
    )
    assert {"created_time", "deletion_time", "destroyed"} == set(meta["versions"]["1"])


def test_metadata_delete_removes_everything(root: hvac.Client, raw: httpx.Client) -> None:
    """DELETE metadata answers 204 and forgets the key and all its versions."""
    write(root, "k", {"v": 1})
    response = raw.delete("/secret/metadata/k")
    assert (204, b"") == (response.status_code, response.content)
    assert 404 == raw.get("/secret/metadata/k").status_code


def test_metadata_write_is_204_and_creates_empty_key(raw: httpx.Client) -> None:
    """Writing metadata for a new key answers 204 and shows current_version 0."""
    response = raw.post("/secret/metadata/k", json={"max_versions": 4})
    assert (204, b"") == (response.status_code, response.content)
    assert 0 == raw.get("/secret/metadata/k").json()["data"]["current_version"]


@pytest.mark.emulator_only("advances virtual time")
def test_created_time_follows_advance_time(
    root: hvac.Client, raw: httpx.Client, vault: VaultEmulator
) -> None:
    """created_time in write answers, reads and metadata is the emulator's advanced clock."""
    write(root, "k", {"v": 1})
    vault.advance_time(10 * 86400)
    written = write(root, "k", {"v": 2})["data"]["created_time"]
    assert abs(vault.now() - _rfc3339_seconds(written)) < 5
    meta = raw.get("/secret/metadata/k").json()["data"]
    first = meta["versions"]["1"]["created_time"]
    assert abs(10 * 86400 - (_rfc3339_seconds(written) - _rfc3339_seconds(first))) < 5
    assert [written, written] == [
        meta["versions"]["2"]["created_time"],
        read(root, "k")["data"]["metadata"]["created_time"],
    ]
    assert ({"v": 2}, 2, written) == vault.kv_read_full("secret", "k")


def test_kv_read_full_gives_data_version_and_created_time(
    root: hvac.Client, vault: VaultEmulator
) -> None:
    """kv_read_full answers what an HTTP read shows, and None for a missing key."""
    write(root, "k", {"v": 1})
    metadata = write(root, "k", {"v": 2})["data"]
    assert ({"v": 2}, 2, metadata["created_time"]) == vault.kv_read_full("secret", "k")
    assert vault.kv_read_full("secret", "missing") is None


def test_kv_delete_metadata_removes_every_version(
    root: hvac.Client, raw: httpx.Client, vault: VaultEmulator
) -> None:
    """kv_delete_metadata forgets the key and its versions, like DELETE metadata over HTTP."""
    write(root, "k", {"v": 1})
    write(root, "k", {"v": 2})
    assert vault.kv_delete_metadata("secret", "k")
    assert (None, [], 404) == (
        vault.kv_read("secret", "k"),
        vault.kv_versions("secret", "k"),
        raw.get("/secret/metadata/k").status_code,
    )
    assert not vault.kv_delete_metadata("secret", "k")
    assert 1 == write(root, "k", {"v": 3})["data"]["version"]


def test_patch_merges_and_needs_merge_patch_content_type(
    root: hvac.Client, raw: httpx.Client, vault: VaultEmulator
) -> None:
    """PATCH data applies a JSON merge patch as a new version; other content types are 415."""
    write(root, "k", {"a": 1, "b": 2})
    wrong = raw.patch("/secret/data/k", json={"data": {"a": 3}})
    assert 415 == wrong.status_code
    patched = raw.patch(
        "/secret/data/k",
        content=b'{"data": {"a": 3, "b": null}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert 200 == patched.status_code
    assert ({"a": 3}, 2) == vault.kv_read("secret", "k")


def test_v1_style_path_on_v2_mount_is_404_with_warning(raw: httpx.Client) -> None:
    """A KV v1 call on a v2 mount answers 404 with Vault's warning."""
    response = raw.get("/secret/k")
    assert 404 == response.status_code
    assert "Invalid path for a versioned K/V secrets engine" in response.json()["warnings"][0]


# -- health and seal ---------------------------------------------------------------


def test_health_codes_follow_seal_state(vault: VaultEmulator, root: hvac.Client) -> None:
    """sys/health is 200 when unsealed and 503 when sealed, with the documented body."""
    status, body = health(root)
    assert (200, True, False, False) == (
        status,
        body["initialized"],
        body["sealed"],
        body["standby"],
    )
    vault.seal()
    status, body = health(root)
    assert (503, True) == (status, body["sealed"])
    assert 503 == root.sys.read_health_status(method="HEAD").status_code
    vault.unseal()
    assert 200 == root.sys.read_health_status(method="HEAD").status_code


def test_health_query_parameters_choose_codes(vault: VaultEmulator, root: hvac.Client) -> None:
    """sealedcode and activecode override the status codes; standbyok is accepted."""
    assert 299 == health(root, active_code=299, standby_ok=True)[0]
    vault.seal()
    status, body = health(root, sealed_code=200)
    assert (200, True) == (status, body["sealed"])


def test_sealed_vault_answers_503_vault_is_sealed(
    vault: VaultEmulator, root: hvac.Client, raw: httpx.Client
) -> None:
    """While sealed every other endpoint is 503 "Vault is sealed" (hvac: VaultDown)."""
    vault.seal()
    with pytest.raises(hvac.exceptions.VaultDown, match="Vault is sealed"):
        read(root, "k")
    response = raw.get("/auth/token/lookup-self")
    assert (503, {"errors": ["Vault is sealed"]}) == (response.status_code, response.json())
    assert True is raw.get("/sys/seal-status").json()["sealed"]
    assert True is root.sys.is_sealed()
    vault.unseal()
    assert False is root.sys.is_sealed()


# -- tokens and ACL ------------------------------------------------------------------


def test_missing_or_unknown_token_is_403(vault: VaultEmulator) -> None:
    """No token or an unknown one answers 403 "permission denied" (hvac: Forbidden)."""
    for token in ("", "hvs.unknown"):
        response = httpx.get(
            vault.address + "/v1/secret/data/k",
            headers={"X-Vault-Token": token},
            verify=SSL_CONTEXT,
        )
        assert (403, {"errors": ["permission denied"]}) == (response.status_code, response.json())
    with pytest.raises(hvac.exceptions.Forbidden):
        read(client(vault, "hvs.unknown"), "k")


def test_bearer_header_works_like_the_token_header(vault: VaultEmulator) -> None:
    """Authorization: Bearer works like X-Vault-Token, also inside an existing namespace."""
    vault.namespace("team-a")
    headers = {"Authorization": f"Bearer {vault.root_token}"}
    for namespace in (None, "team-a"):
        if namespace:
            headers["X-Vault-Namespace"] = namespace
        response = httpx.get(
            vault.address + "/v1/auth/token/lookup-self", headers=headers, verify=SSL_CONTEXT
        )
        assert 200 == response.status_code


@pytest.mark.emulator_only("namespaces_seen is the emulator's record")
def test_namespaces_seen_records_every_namespace_header(vault: VaultEmulator) -> None:
    """namespaces_seen has each X-Vault-Namespace received, existing namespace or not."""
    vault.namespace("team-a")
    for namespace in ("team-a", "nope"):
        httpx.get(
            vault.address + "/v1/secret/data/k",
            headers={"X-Vault-Token": vault.root_token, "X-Vault-Namespace": namespace},
            verify=SSL_CONTEXT,
        )
    assert {"team-a", "nope"} == vault.namespaces_seen()


def test_unknown_namespace_is_404(vault: VaultEmulator) -> None:
    """A namespace that was never created answers 404 "namespace not found", token or not."""
    for token in (vault.root_token, ""):
        response = httpx.get(
            vault.address + "/v1/secret/data/k",
            headers={"X-Vault-Token": token, "X-Vault-Namespace": "never-created"},
            verify=SSL_CONTEXT,
        )
        assert (404, {"errors": ["namespace not found"]}) == (
            response.status_code,
            response.json(),
        )


def test_health_inside_a_namespace_is_400(vault: VaultEmulator) -> None:
    """sys/health exists only in the root namespace: 400 inside any other."""
    vault.namespace("team-a")
    response = httpx.get(
        vault.address + "/v1/sys/health",
        headers={"X-Vault-Namespace": "team-a"},
        verify=SSL_CONTEXT,
    )
    assert (400, {"errors": ["operation unavailable in namespaces"]}) == (
        response.status_code,
        response.json(),
    )


def test_namespace_keeps_its_own_records(vault: VaultEmulator) -> None:
    """A KV write inside a namespace is invisible at the same path in the root namespace."""
    vault.namespace("team-a")
    inside = hvac.Client(url=vault.address, token=vault.root_token, namespace="team-a", timeout=2)
    write(inside, "k", {"where": "team-a"})
    assert {"where": "team-a"} == read(inside, "k")["data"]["data"]
    assert vault.kv_read("secret", "k") is None


def test_least_privilege_token_is_confined(vault: VaultEmulator, vault_token: str) -> None:
    """The fixture's token writes/reads/lists under the prefix and nowhere else."""
    c = client(vault, vault_token)
    write(c, f"{PREFIX}/a", {"secret": "x"})
    assert {"secret": "x"} == read(c, f"{PREFIX}/a")["data"]["data"]
    assert ["a"] == c.secrets.kv.v2.list_secrets(path=PREFIX)["data"]["keys"]
    with pytest.raises(hvac.exceptions.Forbidden) as caught:
        write(c, "elsewhere/a", {"secret": "x"})
    assert [PERMISSION_DENIED] == caught.value.errors
    with pytest.raises(hvac.exceptions.Forbidden):
        c.secrets.kv.v2.delete_metadata_and_all_versions(path=f"{PREFIX}/a")


def test_create_and_update_capabilities_are_distinct(
    vault: VaultEmulator, root: hvac.Client
) -> None:
    """Like Vault's KV existence check: "create" only creates, "update" only overwrites."""
    vault.put_policy("create-only", 'path "secret/data/*" { capabilities = ["create"] }')
    c = client(vault, vault.create_token(policies=["create-only"]))
    write(c, "k", {"v": 1})
    with pytest.raises(hvac.exceptions.Forbidden):
        write(c, "k", {"v": 2})
    vault.put_policy("update-only", 'path "secret/data/*" { capabilities = ["update"] }')
    u = client(vault, vault.create_token(policies=["update-only"]))
    write(u, "k", {"v": 3})
    assert {"v": 3} == read(root, "k")["data"]["data"]
    with pytest.raises(hvac.exceptions.Forbidden):
        write(u, "new", {"v": 1})


def test_acl_plus_matches_exactly_one_segment(vault: VaultEmulator, root: hvac.Client) -> None:
    """`+` matches one whole path segment, not more."""
    vault.put_policy("plus", 'path "secret/data/+/config" { capabilities = ["read"] }')
    write(root, "team/config", {"v": 1})
    write(root, "a/b/config", {"v": 1})
    c = client(vault, vault.create_token(policies=["plus"]))
    assert {"v": 1} == read(c, "team/config")["data"]["data"]
    with pytest.raises(hvac.exceptions.Forbidden):
        read(c, "a/b/config")


def test_acl_star_is_a_prefix_glob(vault: VaultEmulator, root: hvac.Client) -> None:
    """A trailing `*` matches any suffix, across segments, including the bare prefix."""
    vault.put_policy("glob", 'path "secret/data/app*" { capabilities = ["read"] }')
    for path in ("app", "apple", "app/deep/key", "other"):
        write(root, path, {"v": 1})
    c = client(vault, vault.create_token(policies=["glob"]))
    for path in ("app", "apple", "app/deep/key"):
        assert {"v": 1} == read(c, path)["data"]["data"]
    with pytest.raises(hvac.exceptions.Forbidden):
        read(c, "other")


def test_acl_most_specific_rule_wins_and_deny_overrides(
    vault: VaultEmulator, root: hvac.Client
) -> None:
    """The highest-priority matching path decides; `deny` there refuses everything."""
    vault.put_policy(
        "mixed",
        """
        # Everything under secret/data/ is readable ...
        path "secret/data/*" { capabilities = ["read"] }
        // ... except this one key.
        path "secret/data/private" { capabilities = ["deny"] }
        /* And one exact path may be written but not read. */
        path "secret/data/drop" { capabilities = ["create", "update"] }
        """,
    )
    for path in ("public", "private", "drop"):
        write(root, path, {"v": 1})
    c = client(vault, vault.create_token(policies=["mixed"]))
    assert {"v": 1} == read(c, "public")["data"]["data"]
    with pytest.raises(hvac.exceptions.Forbidden):
        read(c, "private")
    with pytest.raises(hvac.exceptions.Forbidden):
        read(c, "drop")
    write(c, "drop", {"v": 2})
    assert {"v": 2} == read(root, "drop")["data"]["data"]


def test_policy_parser_refuses_bad_input() -> None:
    """Unknown capabilities, a `*` mid-path and broken syntax are refused."""
    for hcl in (
        'path "a" { capabilities = ["fly"] }',
        'path "a*/b" { capabilities = ["read"] }',
        'path "a" { capabilities = ["read"]',
    ):
        with pytest.raises(ValueError, match="policy"):
            parse_policy(hcl)


def test_policy_via_http(vault: VaultEmulator, root: hvac.Client) -> None:
    """sys/policies/acl/:name writes a policy that tokens then get."""
    root.sys.create_or_update_acl_policy(
        name="reader", policy='path "secret/data/*" { capabilities = ["read"] }'
    )
    write(root, "k", {"v": 1})
    c = client(vault, vault.create_token(policies=["reader"]))
    assert {"v": 1} == read(c, "k")["data"]["data"]


def test_lookup_self_and_renew_self(vault: VaultEmulator) -> None:
    """The default policy allows lookup-self and renew-self; renewal extends the TTL."""
    token = vault.create_token(policies=["default"], ttl=60)
    c = client(vault, token)
    looked = c.auth.token.lookup_self()["data"]
    assert (token, ["default"], True, 60) == (
        looked["id"],
        looked["policies"],
        looked["renewable"],
        looked["creation_ttl"],
    )
    assert 55 <= looked["ttl"] <= 60
    renewed = c.auth.token.renew_self(increment="1h")["auth"]
    assert (token, 3600) == (renewed["client_token"], renewed["lease_duration"])
    assert 3590 <= c.auth.token.lookup_self()["data"]["ttl"] <= 3600
    # The default policy grants lookup-self as "read": a POST (update) is refused.
    post = httpx.post(
        vault.address + "/v1/auth/token/lookup-self",
        headers={"X-Vault-Token": token},
        verify=SSL_CONTEXT,
    )
    assert (403, {"errors": [PERMISSION_DENIED]}) == (post.status_code, post.json())


def test_non_renewable_token_renewal_is_400(vault: VaultEmulator) -> None:
    """renew-self on a non-renewable token answers 400 (hvac: InvalidRequest)."""
    c = client(vault, vault.create_token(ttl=60, renewable=False))
    with pytest.raises(hvac.exceptions.InvalidRequest):
        c.auth.token.renew_self()


@pytest.mark.emulator_only("advances virtual time")
def test_revoked_and_expired_tokens_are_403(vault: VaultEmulator) -> None:
    """A revoked token and one past its TTL both answer 403."""
    revoked = vault.create_token()
    vault.revoke_token(revoked)
    with pytest.raises(hvac.exceptions.Forbidden):
        client(vault, revoked).auth.token.lookup_self()
    expiring = vault.create_token(ttl=30)
    c = client(vault, expiring)
    assert True is c.is_authenticated()
    vault.advance_time(31)
    with pytest.raises(hvac.exceptions.Forbidden):
        c.auth.token.lookup_self()
    self_revoking = client(vault, vault.create_token())
    self_revoking.auth.token.revoke_self()
    assert False is self_revoking.is_authenticated()


def test_num_uses_limits_requests(vault: VaultEmulator) -> None:
    """A token with num_uses=2 serves two requests, then is gone."""
    c = client(vault, vault.create_token(num_uses=2))
    c.auth.token.lookup_self()
    c.auth.token.lookup_self()
    with pytest.raises(hvac.exceptions.Forbidden):
        c.auth.token.lookup_self()


def test_token_create_over_http(vault: VaultEmulator, root: hvac.Client) -> None:
    """auth/token/create issues a token; a child's policies must be a subset of its parent's."""
    vault.put_policy("p", 'path "secret/data/*" { capabilities = ["read"] }')
    auth = root.auth.token.create(policies=["p"], ttl="10m")["auth"]
    assert (["default", "p"], 600, True) == (
        auth["policies"],
        auth["lease_duration"],
        auth["renewable"],
    )
    child = client(vault, auth["client_token"])
    with pytest.raises(hvac.exceptions.Forbidden):
        child.auth.token.create(policies=["other"])


def test_approle_login(vault: VaultEmulator, vault_token: str) -> None:
    """AppRole login with the right ids returns a token with the role's policies."""
    role_id, secret_id = vault.add_approle("rotator", policies=["rotator"], token_ttl=120)
    c = hvac.Client(url=vault.address, timeout=2)
    auth = c.auth.approle.login(role_id=role_id, secret_id=secret_id)["auth"]
    assert (["default", "rotator"], 120, True) == (
        auth["policies"],
        auth["lease_duration"],
        auth["renewable"],
    )
    assert auth["client_token"] == c.token
    write(c, f"{PREFIX}/a", {"v": 1})
    assert secret_id in ISSUED
    with pytest.raises(hvac.exceptions.InvalidRequest) as caught:
        c.auth.approle.login(role_id=role_id, secret_id="wrong")
    assert ["invalid role or secret ID"] == caught.value.errors


@pytest.mark.emulator_only("Kubernetes login needs a TokenReview only the emulator fakes")
def test_kubernetes_login(vault: VaultEmulator) -> None:
    """Kubernetes login accepts the role's service-account JWT and nothing else."""
    jwt = vault.add_kubernetes_role(
        "rotator", service_account="rotator", namespace="ops", policies=["rotator"]
    )
    assert 3 == len(jwt.split("."))
    assert jwt in ISSUED
    c = hvac.Client(url=vault.address, timeout=2)
    auth = c.auth.kubernetes.login(role="rotator", jwt=jwt)["auth"]
    assert (["default", "rotator"], "ops") == (
        auth["policies"],
        auth["metadata"]["service_account_namespace"],
    )
    with pytest.raises(hvac.exceptions.Forbidden):
        c.auth.kubernetes.login(role="rotator", jwt=jwt[:-4] + "AAAA")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid role name"):
        c.auth.kubernetes.login(role="nobody", jwt=jwt)


# -- faults -----------------------------------------------------------------------


@pytest.mark.emulator_only("injects faults")
def test_fail_next_answers_error_status_but_spares_health(
    vault: VaultEmulator, root: hvac.Client
) -> None:
    """fail_next=N fails the next N requests except sys/health, then recovers."""
    write(root, "k", {"v": 1})
    vault.faults.fail_next = 2
    assert 200 == health(root)[0]
    for _ in range(2):
        with pytest.raises(hvac.exceptions.InternalServerError):
            read(root, "k")
    assert {"v": 1} == read(root, "k")["data"]["data"]
    vault.faults.fail_next = 1
    vault.faults.error_status = 502
    with pytest.raises(hvac.exceptions.BadGateway):
        read(root, "k")


@pytest.mark.emulator_only("injects faults")
def test_error_rate_one_fails_everything(vault: VaultEmulator, root: hvac.Client) -> None:
    """error_rate=1.0 answers every request 500 with an errors body."""
    vault.faults.error_rate = 1.0
    for _ in range(3):
        with pytest.raises(hvac.exceptions.InternalServerError):
            read(root, "k")


@pytest.mark.emulator_only("injects faults")
def test_fail_writes_refuses_without_applying(vault: VaultEmulator, root: hvac.Client) -> None:
    """fail_writes=1 fails one KV write, which leaves the store untouched."""
    write(root, "k", {"v": 1})
    vault.faults.fail_writes = 1
    with pytest.raises(hvac.exceptions.InternalServerError):
        write(root, "k", {"v": 2}, cas=1)
    assert ({"v": 1}, 1) == vault.kv_read("secret", "k")
    assert 2 == write(root, "k", {"v": 2}, cas=1)["data"]["version"]


@pytest.mark.emulator_only("injects latency")
def test_latency_delays_answers(vault: VaultEmulator, root: hvac.Client) -> None:
    """latency adds that many seconds to a request."""
    vault.faults.latency = 0.2
    started = time.monotonic()
    health(root)
    assert 0.2 <= time.monotonic() - started


@pytest.mark.emulator_only("refuses connections")
def test_refuse_then_accept_connections(vault: VaultEmulator, root: hvac.Client) -> None:
    """refuse_connections makes clients fail to connect; accept_connections restores the port."""
    write(root, "k", {"v": 1})
    vault.refuse_connections()
    with pytest.raises(requests.exceptions.ConnectionError):
        read(root, "k")
    with pytest.raises(httpx.ConnectError):
        httpx.get(vault.address + "/v1/sys/health", verify=SSL_CONTEXT)
    vault.accept_connections()
    assert {"v": 1} == read(root, "k")["data"]["data"]


# -- wire details -------------------------------------------------------------------


@pytest.mark.emulator_only("injects a fault for the 500")
def test_content_type_is_exactly_application_json(vault: VaultEmulator, raw: httpx.Client) -> None:
    """Every answer (200, 204, 4xx, 5xx) says exactly application/json; 204s have no body."""
    raw.post("/secret/data/k", json={"data": {"v": 1}})
    vault.faults.fail_next = 1
    responses = [
        raw.post("/secret/data/other", json={"data": {"v": 1}}),
        raw.get("/secret/data/k"),
        raw.get("/secret/data/missing"),
        raw.post("/secret/data/k", json={"data": {}, "options": {"cas": 0}}),
        httpx.get(vault.address + "/v1/secret/data/k", verify=SSL_CONTEXT),
        raw.get("/sys/health"),
    ]
    assert [500, 200, 404, 400, 403, 200] == [r.status_code for r in responses]
    assert ["application/json"] * 6 == [r.headers["content-type"] for r in responses]
    deleted = raw.delete("/secret/data/k")
    # OpenBao labels even its empty 204 answers application/json.
    assert (204, b"", "application/json") == (
        deleted.status_code,
        deleted.content,
        deleted.headers.get("content-type"),
    )


@pytest.mark.emulator_only("advances virtual time")
def test_date_header_follows_the_emulators_clock(vault: VaultEmulator, raw: httpx.Client) -> None:
    """Every answer has exactly one RFC 7231 Date, from the emulator's clock, not real time."""
    raw.post("/secret/data/k", json={"data": {"v": 1}})
    vault.advance_time(3 * 86400)
    responses = [
        raw.get("/secret/data/k"),
        raw.get("/secret/data/missing"),
        raw.delete("/secret/data/k"),
        raw.get("/sys/health"),
    ]
    vault.refuse_connections()
    vault.accept_connections()
    with httpx.Client(verify=SSL_CONTEXT) as fresh:
        responses.append(fresh.get(vault.address + "/v1/sys/health"))
    assert [200, 404, 204, 200, 200] == [r.status_code for r in responses]
    for response in responses:
        (date,) = response.headers.get_list("date")
        assert date.endswith(" GMT")
        assert abs(vault.now() - parsedate_to_datetime(date).timestamp()) < 5


def test_envelope_has_vaults_fields(raw: httpx.Client) -> None:
    """A success body carries Vault's full response envelope."""
    body = raw.get("/auth/token/lookup-self").json()
    expected = {
        "request_id",
        "lease_id",
        "renewable",
        "lease_duration",
        "data",
        "wrap_info",
        "warnings",
        "auth",
    }
    assert expected == set(body)


@pytest.mark.emulator_only("ISSUED holds what the emulator issues")
def test_written_secrets_and_tokens_are_recorded(vault: VaultEmulator, root: hvac.Client) -> None:
    """Tokens and the "secret" value of every KV write land in ISSUED for the log checks."""
    write(root, "k", {"secret": "whsec-emulator-test-value"})
    created = root.auth.token.create(policies=["default"], ttl="10m")["auth"]["client_token"]
    assert {vault.root_token, "whsec-emulator-test-value", created} <= ISSUED


@pytest.mark.emulator_only("counts requests")
def test_request_count_by_kind(vault: VaultEmulator, root: hvac.Client) -> None:
    """request_count tells KV reads, writes, lists and health checks apart."""
    write(root, "a/k", {"v": 1})
    read(root, "a/k")
    read(root, "a/k")
    root.secrets.kv.v2.list_secrets(path="a")
    health(root)
    counts = [vault.request_count(k) for k in ("kv_write", "kv_read", "kv_list", "health")]
    assert [1, 2, 1, 1] == counts
    assert 5 == vault.request_count()


def test_vault_settings_fixture_points_at_emulator(
    vault: VaultEmulator, vault_settings: VaultSettings, vault_token: str
) -> None:
    """vault_settings carries the emulator's address and the least-privilege token."""
    assert vault_settings.token is not None
    assert (vault.address, vault_token, "secret", PREFIX) == (
        vault_settings.address,
        vault_settings.token.reveal(),
        vault_settings.mount,
        vault_settings.path_prefix,
    )


def test_capabilities_self_reports_the_acl(vault: VaultEmulator, vault_token: str) -> None:
    """sys/capabilities-self answers what the token's policies allow on each path."""
    c = client(vault, vault_token)
    answer = c.sys.get_capabilities(
        paths=["secret/metadata/monite/webhooks/", "secret/data/elsewhere"]
    )["data"]
    assert ["list", "read"] == answer["secret/metadata/monite/webhooks/"]
    assert ["deny"] == answer["secret/data/elsewhere"]


# -- KV v1, internal/ui/mounts, TTL caps, namespaces (see also test_vault_differential) --


def test_kv1_mount_from_the_constructor_stores_plain_objects() -> None:
    """kv1_mounts makes KV v1 mounts; the admin calls seed and read them without versions."""
    with VaultEmulator(kv1_mounts=("kv1",)) as vault:
        assert 0 == vault.kv_write("kv1", "app/db", {"password": "pw"})
        assert ({"password": "pw"}, 0) == vault.kv_read("kv1", "app/db")
        c = client(vault)
        assert {"password": "pw"} == c.secrets.kv.v1.read_secret(path="app/db", mount_point="kv1")[
            "data"
        ]
        assert vault.kv_delete_metadata("kv1", "app/db")
        assert vault.kv_read("kv1", "app/db") is None


def test_kv2_client_on_a_kv1_mount_writes_a_secret_named_data(vault: VaultEmulator) -> None:
    """hvac's kv.v2 on a v1 mount writes the literal path data/<path>, body and all."""
    vault.remount("kv1", version=1)
    c = client(vault)
    assert (
        204
        == c.secrets.kv.v2.create_or_update_secret(
            path="k", secret={"v": 1}, cas=0, mount_point="kv1"
        ).status_code
    )
    listed = c.secrets.kv.v1.list_secrets(path="", mount_point="kv1")["data"]["keys"]
    assert ["data/"] == listed
    got = c.secrets.kv.v1.read_secret(path="data/k", mount_point="kv1")["data"]
    assert {"data": {"v": 1}, "options": {"cas": 0}} == got


def test_ui_mounts_tells_the_kv_version(vault: VaultEmulator, vault_token: str) -> None:
    """sys/internal/ui/mounts/<path> gives the mount's type and KV version to a token using it."""
    vault.remount("kv1", version=1)
    answers = {}
    for path, token in (
        ("secret/data/monite/webhooks/a", vault_token),
        ("kv1/x", vault.root_token),
    ):
        response = httpx.get(
            f"{vault.address}/v1/sys/internal/ui/mounts/{path}",
            headers={"X-Vault-Token": token},
            verify=SSL_CONTEXT,
        )
        data = response.json()["data"]
        answers[path] = (response.status_code, data["type"], data["options"], data["path"])
    assert {
        "secret/data/monite/webhooks/a": (200, "kv", {"version": "2"}, "secret/"),
        "kv1/x": (200, "kv", {"version": "1"}, "kv1/"),
    } == answers


@pytest.mark.emulator_only("advances virtual time")
def test_renewal_never_passes_explicit_max_ttl(vault: VaultEmulator) -> None:
    """A renewal asks for more than explicit_max_ttl leaves: it gets the rest, with a warning."""
    token = vault.create_token(ttl=60, explicit_max_ttl=100)
    c = client(vault, token)
    vault.advance_time(40)
    answer = c.auth.token.renew_self(increment="1h")
    assert (60, 1) == (answer["auth"]["lease_duration"], len(answer["warnings"]))
    assert 100 == c.auth.token.lookup_self()["data"]["explicit_max_ttl"]
    vault.advance_time(61)
    with pytest.raises(hvac.exceptions.Forbidden):
        c.auth.token.lookup_self()


@pytest.mark.emulator_only("advances virtual time")
def test_approle_token_max_ttl_caps_renewals(vault: VaultEmulator) -> None:
    """An AppRole token renews up to the role's token_max_ttl from login, never past it."""
    role_id, secret_id = vault.add_approle(
        "r", policies=["default"], token_ttl=60, token_max_ttl=90
    )
    c = hvac.Client(url=vault.address, timeout=2)
    c.auth.approle.login(role_id=role_id, secret_id=secret_id)
    vault.advance_time(50)
    assert 40 == c.auth.token.renew_self(increment="60s")["auth"]["lease_duration"]


def test_approle_login_missing_ids(vault: VaultEmulator) -> None:
    """A login without role_id answers 500 "missing role_id"; without secret_id 400."""
    role_id, _ = vault.add_approle("r", policies=["default"])
    answers = [
        httpx.post(f"{vault.address}/v1/auth/approle/login", json=body, verify=SSL_CONTEXT)
        for body in ({"secret_id": "x"}, {"role_id": role_id})
    ]
    assert [
        (500, {"errors": ["missing role_id"]}),
        (400, {"errors": ["missing secret_id"]}),
    ] == [(a.status_code, a.json()) for a in answers]


@pytest.mark.emulator_only("namespace arguments of the emulator's admin calls")
def test_namespace_tokens_policies_and_approles_stay_inside(vault: VaultEmulator) -> None:
    """A namespace's token acts on its own records; in the root namespace it may do nothing."""
    vault.namespace("team-a/payments")  # creates team-a too
    vault.put_policy("rotator", ROTATOR_POLICY_FOR_TESTS, namespace="team-a/payments")
    token = vault.create_token(policies=["rotator"], namespace="team-a/payments")
    inside = hvac.Client(url=vault.address, token=token, namespace="team-a/payments", timeout=2)
    write(inside, f"{PREFIX}/a", {"v": 1})
    assert ({"v": 1}, 1) == vault.kv_read("secret", f"{PREFIX}/a", namespace="team-a/payments")
    outside = client(vault, token)
    with pytest.raises(hvac.exceptions.Forbidden):
        read(outside, f"{PREFIX}/a")
    assert token.endswith("." + outside.auth.token.lookup_self()["data"]["accessor"].split(".")[1])
