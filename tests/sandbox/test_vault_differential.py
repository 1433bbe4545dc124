"""The Vault emulator answers raw HTTP exactly as a real OpenBao server does.

Each case below is a short script of HTTP requests. It runs twice, on a fresh
emulator and on the test session's OpenBao dev server (`tests.openbao`), both
set up alike through the same administration calls, and every answer is
compared: status code, Content-Type, and the JSON body. Bodies are compared
in full (keys, JSON types, values, list order) except where two servers differ
by nature: ids, accessors and tokens by JSON type only (`_VOLATILE`), points in
time by type and emptiness (`_TIMES`), TTLs within two seconds (`_TICKING`),
and digits in warnings (a TTL warning prints the remaining time). A difference
fails the case, naming the step and the JSON path, never a token's value.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from rotator.sandbox.vault import VaultEmulator
from tests.fixtures_vault import ROTATOR_POLICY
from tests.openbao import OpenBaoVault
from tests.sandbox import SSL_CONTEXT

Backend = VaultEmulator | OpenBaoVault
PREFIX = "secret/data/monite/webhooks"
META = "secret/metadata/monite/webhooks"
BOGUS_TOKEN = "s.bogusbogusbogusbogusbogu"
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
# The shipped policy's KV and token grants without sys/capabilities-self: does a
# token holding only this (no "default") get to ask for its capabilities?
KV_ONLY_POLICY = """
path "secret/data/monite/webhooks/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/monite/webhooks/*" {
  capabilities = ["list", "read"]
}
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
"""

# Values that differ between any two servers (random ids, clocks, cluster
# names): compared by JSON type only.
_VOLATILE = frozenset(
    {
        "request_id",
        "accessor",
        "client_token",
        "id",
        "entity_id",
        "uuid",
        "cluster_id",
        "cluster_name",
        "creation_time",
        "server_time_utc",
        "last_renewal_time",
        "role_id",
        "secret_id",
        "secret_id_accessor",
    }
)
# Points in time: compared by type and by being empty ("" = never) or not.
_TIMES = frozenset(
    {
        "created_time",
        "updated_time",
        "deletion_time",
        "issue_time",
        "expire_time",
        "last_renewal",
        "modified",
    }
)
# Seconds that tick while a case runs: equal within this tolerance.
_TICKING = frozenset({"ttl", "lease_duration", "creation_ttl"})
_TICK_TOLERANCE = 2


@dataclass(frozen=True)
class Step:
    """One HTTP request; `{name}` in the path or body is replaced from the case's context."""

    method: str
    path: str
    token: str = "root"  # a context name, "none" for no token, "bogus" for an unknown one
    body: Any = None
    raw: bytes | None = None
    namespace: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    save: dict[str, str] = field(default_factory=dict)  # context name -> dotted JSON path


@dataclass(frozen=True)
class Case:
    id: str
    steps: tuple[Step, ...]
    setup: Callable[[Backend, dict[str, str]], None] | None = None
    check: Callable[[list[Answer]], None] | None = None  # holds on both servers


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str | None
    body: Any

    def at(self, dotted: str) -> Any:
        value = self.body
        for part in dotted.split("."):
            value = value[part]
        return value


def get(path: str, **kw: Any) -> Step:
    return Step("GET", path, **kw)


def post(path: str, body: Any = None, **kw: Any) -> Step:
    return Step("POST", path, body=body, **kw)


def lst(path: str, **kw: Any) -> Step:
    return Step("LIST", path, **kw)


def delete(path: str, **kw: Any) -> Step:
    return Step("DELETE", path, **kw)


# -- setups ---------------------------------------------------------------------


def seed(*writes: tuple[str, dict[str, Any]]) -> Callable[[Backend, dict[str, str]], None]:
    """Setup: write these KV v2 records under secret/ without HTTP."""

    def run(backend: Backend, ctx: dict[str, str]) -> None:
        for path, data in writes:
            backend.kv_write("secret", path, data)

    return run


def kv1(backend: Backend, ctx: dict[str, str]) -> None:
    """Setup: a KV version 1 mount at kv1/."""
    backend.remount("kv1", version=1)


def sealed(backend: Backend, ctx: dict[str, str]) -> None:
    backend.seal()


def capped_token(backend: Backend, ctx: dict[str, str]) -> None:
    """Setup: a token with a 60 s TTL that may never live past 100 s."""
    ctx["capped"] = backend.create_token(policies=["rotator"], ttl=60, explicit_max_ttl=100)


def approle(backend: Backend, ctx: dict[str, str]) -> None:
    """Setup: AppRole role r1 (tokens 60 s, at most 100 s) with a role_id and secret_id."""
    ctx["role_id"], ctx["secret_id"] = backend.add_approle(
        "r1", policies=["rotator"], token_ttl=60, token_max_ttl=100
    )


def namespace(backend: Backend, ctx: dict[str, str]) -> None:
    """Setup: namespace {ns} with a KV v2 mount secret/ inside."""
    backend.namespace(ctx["ns"])


GLOB_POLICY = """
path "secret/data/+/webhooks/*" {
  capabilities = ["read"]
}
path "secret/data/team/*" {
  capabilities = ["read", "list"]
}
path "secret/data/team/locked" {
  capabilities = ["deny"]
}
"""


def globs(backend: Backend, ctx: dict[str, str]) -> None:
    """Setup: a token whose policy has a `+` segment glob, a prefix glob and a deny."""
    backend.put_policy("globs", GLOB_POLICY)
    ctx["globs"] = backend.create_token(policies=["globs"], ttl=3600)


def one_use(backend: Backend, ctx: dict[str, str]) -> None:
    """Setup: a token good for two requests."""
    ctx["twice"] = backend.create_token(policies=["default"], ttl=3600, num_uses=2)


def both(
    *setups: Callable[[Backend, dict[str, str]], None],
) -> Callable[[Backend, dict[str, str]], None]:
    def run(backend: Backend, ctx: dict[str, str]) -> None:
        for setup in setups:
            setup(backend, ctx)

    return run


# -- checks that must hold on both servers ----------------------------------------


def renewal_capped_at(limit: int) -> Callable[[list[Answer]], None]:
    def check(answers: list[Answer]) -> None:
        last = answers[-1]
        assert last.at("auth.lease_duration") <= limit
        assert 1 == len(last.body["warnings"])

    return check


def lease_at_most(limit: int) -> Callable[[list[Answer]], None]:
    def check(answers: list[Answer]) -> None:
        assert answers[-1].at("auth.lease_duration") <= limit

    return check


CASES: list[Case] = [
    # -- sys/health and sys/seal-status ----------------------------------------------
    Case("health", (get("sys/health", token="none"),)),
    Case("health-head", (Step("HEAD", "sys/health", token="none"),)),
    Case("health-post-405", (post("sys/health", token="none"),)),
    Case("health-bad-code-400", (get("sys/health?activecode=abc", token="none"),)),
    Case("health-custom-code", (get("sys/health?activecode=299", token="none"),)),
    Case("health-sealed", (get("sys/health", token="none"),), setup=sealed),
    Case(
        "health-in-namespace",
        (get("sys/health", token="none", namespace="{ns}"),),
        setup=namespace,
    ),
    Case("health-in-unknown-namespace", (get("sys/health", token="none", namespace="{ns}"),)),
    Case("seal-status", (get("sys/seal-status", token="none"),)),
    Case("seal-status-sealed", (get("sys/seal-status", token="none"),), setup=sealed),
    Case(
        "seal-status-in-namespace",
        (get("sys/seal-status", token="none", namespace="{ns}"),),
        setup=namespace,
    ),
    Case(
        "sealed-requests-503",
        (
            get(f"{PREFIX}/a"),
            get(f"{PREFIX}/a", token="none"),
            get("auth/token/lookup-self"),
            post("sys/capabilities-self", {"paths": ["a"]}),
        ),
        setup=sealed,
    ),
    # -- KV v2 writes --------------------------------------------------------------
    Case("kv2-write", (post(f"{PREFIX}/a", {"data": {"secret": "s1", "n": 1}}),)),
    Case("kv2-write-cas0-new", (post(f"{PREFIX}/a", {"data": {"v": 1}, "options": {"cas": 0}}),)),
    Case(
        "kv2-write-cas-mismatch",
        (post(f"{PREFIX}/a", {"data": {"v": 2}, "options": {"cas": 0}}),),
        setup=seed(("monite/webhooks/a", {"v": 1})),
    ),
    Case(
        "kv2-write-cas-match",
        (post(f"{PREFIX}/a", {"data": {"v": 2}, "options": {"cas": 1}}),),
        setup=seed(("monite/webhooks/a", {"v": 1})),
    ),
    Case(
        "kv2-cas-required-on-mount",
        (
            post("secret/config", {"cas_required": True}),
            get("secret/config"),
            post(f"{PREFIX}/a", {"data": {"v": 1}}),
            post(f"{PREFIX}/a", {"data": {"v": 1}, "options": {"cas": 0}}),
        ),
    ),
    Case(
        "kv2-cas-required-on-metadata",
        (
            post(f"{META}/a", {"cas_required": True}),
            post(f"{PREFIX}/a", {"data": {"v": 2}}),
            post(f"{PREFIX}/a", {"data": {"v": 2}, "options": {"cas": 1}}),
        ),
        setup=seed(("monite/webhooks/a", {"v": 1})),
    ),
    Case(
        "kv2-metadata-cas-false-under-mount-cas",
        (
            post("secret/config", {"cas_required": True}),
            post(f"{META}/a", {"cas_required": False}),
        ),
        setup=seed(("monite/webhooks/a", {"v": 1})),
    ),
    Case(
        "kv2-config-max-versions-prunes",
        (
            post("secret/config", {"max_versions": 2}),
            get("secret/config"),
            post(f"{PREFIX}/a", {"data": {"v": 1}}),
            post(f"{PREFIX}/a", {"data": {"v": 2}}),
            post(f"{PREFIX}/a", {"data": {"v": 3}}),
            get(f"{META}/a"),
            get(f"{PREFIX}/a?version=1"),
            get(f"{PREFIX}/a?version=2"),
        ),
    ),
    Case("kv2-config-bad-max-versions", (post("secret/config", {"max_versions": "abc"}),)),
    Case(
        "kv2-config-delete-version-after",
        (
            post("secret/config", {"delete_version_after": "1h30m"}),
            get("secret/config"),
            post(f"{PREFIX}/a", {"data": {"v": 1}}),
        ),
    ),
    Case(
        "kv2-write-bad-cas",
        (post(f"{PREFIX}/a", {"data": {"v": 1}, "options": {"cas": "abc"}}),),
    ),
    Case(
        "kv2-patch-missing-404",
        (Step("PATCH", f"{PREFIX}/nope", body={"data": {"w": 1}}, headers=MERGE_PATCH),),
    ),
    Case(
        "kv2-metadata-patch",
        (
            Step(
                "PATCH",
                f"{META}/a",
                body={"custom_metadata": {"owner": "ops", "gone": None}},
                headers=MERGE_PATCH,
            ),
            get(f"{META}/a"),
        ),
        setup=seed(("monite/webhooks/a", {"v": 1})),
    ),
    Case(
        "kv2-custom-metadata-limits",
        (post(f"{META}/a", {"custom_metadata": {"k": "x" * 600}}),),
        setup=seed(("monite/webhooks/a", {"v": 1})),
    ),
    Case("kv2-no-data-400", (post(f"{PREFIX}/a", {"options": {}}),)),
    Case("kv2-empty-body-400", (post(f"{PREFIX}/a", raw=b""),)),
    Case("kv2-malformed-json-400", (post(f"{PREFIX}/a", raw=b"{bad"),)),
    Case("kv2-array-json-400", (post(f"{PREFIX}/a", raw=b"[1]"),)),
    Case(
        "kv2-patch-needs-merge-patch",
        (Step("PATCH", f"{PREFIX}/a", body={"data": {"w": 1}}),),
        setup=seed(("monite/webhooks/a", {"v": 1})),
    ),
    Case(
        "kv2-patch-merges",
        (
            Step("PATCH", f"{PREFIX}/a", body={"data": {"w": 1}}, headers=MERGE_PATCH),
            get(f"{PREFIX}/a"),
        ),
        setup=seed(("monite/webhooks/a", {"v": 1})),
    ),
    # -- KV v2 reads -------------------------------------------------------------------
    Case(
        "kv2-read-latest-and-by-version",
        (get(f"{PREFIX}/a"), get(f"{PREFIX}/a?version=1"), get(f"{PREFIX}/a?version=9")),
        setup=seed(("monite/webhooks/a", {"v": 1}), ("monite/webhooks/a", {"v": 2})),
    ),
    Case("kv2-read-missing", (get(f"{PREFIX}/nope"),)),
    Case(
        "kv2-read-bad-version",
        (get(f"{PREFIX}/a?version=abc"),),
        setup=seed(("monite/webhooks/a", {"v": 1})),
    ),
    Case(
        "kv2-list",
        (lst(f"{META}/"), get(f"{META}/?list=true"), lst(f"{META}/b")),
        setup=seed(("monite/webhooks/a", {"v": 1}), ("monite/webhooks/b/c", {"v": 1})),
    ),
    Case("kv2-list-missing", (lst(f"{META}/"),)),
    Case("kv2-list-on-data-405", (lst(f"{PREFIX}/"),)),
    Case(
        "kv2-metadata-read",
        (get(f"{META}/a"), get(f"{META}/nope")),
        setup=seed(("monite/webhooks/a", {"v": 1}), ("monite/webhooks/a", {"v": 2})),
    ),
    Case(
        "kv2-metadata-write-then-read",
        (
            post(f"{META}/a", {"max_versions": 5, "custom_metadata": {"owner": "ops"}}),
            get(f"{META}/a"),
            post(f"{META}/new", {"max_versions": 3}),
            get(f"{META}/new"),
            get(f"{PREFIX}/new"),
        ),
        setup=seed(("monite/webhooks/a", {"v": 1})),
    ),
    Case("kv2-v1-style-path-404", (get("secret/monite/webhooks/a"),)),
    # -- KV v2 delete, undelete, destroy -------------------------------------------
    Case(
        "kv2-delete-latest-then-read",
        (delete(f"{PREFIX}/a"), get(f"{PREFIX}/a"), get(f"{PREFIX}/a?version=1")),
        setup=seed(("monite/webhooks/a", {"v": 1}), ("monite/webhooks/a", {"v": 2})),
    ),
    Case(
        "kv2-delete-versions-then-read",
        (
            post("secret/delete/monite/webhooks/a", {"versions": [1]}),
            get(f"{PREFIX}/a?version=1"),
            get(f"{PREFIX}/a"),
            get(f"{META}/a"),
        ),
        setup=seed(("monite/webhooks/a", {"v": 1}), ("monite/webhooks/a", {"v": 2})),
    ),
    Case(
        "kv2-undelete",
        (
            post("secret/delete/monite/webhooks/a", {"versions": [1]}),
            post("secret/undelete/monite/webhooks/a", {"versions": [1]}),
            get(f"{PREFIX}/a?version=1"),
        ),
        setup=seed(("monite/webhooks/a", {"v": 1})),
    ),
    Case(
        "kv2-destroy",
        (
            post("secret/destroy/monite/webhooks/a", {"versions": [1]}),
            get(f"{PREFIX}/a?version=1"),
            post("secret/undelete/monite/webhooks/a", {"versions": [1]}),
            get(f"{PREFIX}/a?version=1"),
            get(f"{META}/a"),
        ),
        setup=seed(("monite/webhooks/a", {"v": 1}), ("monite/webhooks/a", {"v": 2})),
    ),
    Case(
        "kv2-versions-op-without-versions-400",
        (
            post("secret/delete/monite/webhooks/a", {}),
            post("secret/undelete/monite/webhooks/a", {"versions": []}),
            post("secret/destroy/monite/webhooks/a", {}),
            post("secret/destroy/monite/webhooks/a", {"versions": ["abc"]}),
        ),
        setup=seed(("monite/webhooks/a", {"v": 1})),
    ),
    Case(
        "kv2-delete-missing-is-204",
        (delete(f"{PREFIX}/zz"), post("secret/delete/monite/webhooks/zz", {"versions": [1]})),
    ),
    Case(
        "kv2-delete-metadata",
        (delete(f"{META}/a"), get(f"{PREFIX}/a"), get(f"{META}/a"), lst(f"{META}/")),
        setup=seed(("monite/webhooks/a", {"v": 1})),
    ),
    # -- permissions -------------------------------------------------------------------
    Case("no-token-403", (get(f"{PREFIX}/a", token="none"),)),
    Case("unknown-token-403", (get(f"{PREFIX}/a", token="bogus"),)),
    Case(
        "token-without-policy-403",
        (
            get(f"{PREFIX}/a", token="plain"),
            post(f"{PREFIX}/a", {"data": {"v": 1}}, token="plain"),
            lst(f"{META}/", token="plain"),
        ),
    ),
    Case(
        "rotator-token-confined",
        (
            post(f"{PREFIX}/a", {"data": {"v": 1}, "options": {"cas": 0}}, token="rotator"),
            get(f"{PREFIX}/a", token="rotator"),
            lst(f"{META}/", token="rotator"),
            get(f"{META}/a", token="rotator"),
            get("secret/data/other", token="rotator"),
            delete(f"{PREFIX}/a", token="rotator"),
            get("secret/config", token="rotator"),
        ),
    ),
    Case(
        "acl-globs-and-deny",
        (
            get("secret/data/a/webhooks/x", token="globs"),
            get("secret/data/a/b/webhooks/x", token="globs"),
            get("secret/data/team/x", token="globs"),
            get("secret/data/team/locked", token="globs"),
            post(
                "sys/capabilities-self",
                {
                    "paths": [
                        "secret/data/a/webhooks/x",
                        "secret/data/team/x",
                        "secret/data/team/locked",
                        "secret/data/a/b/webhooks/x",
                    ]
                },
                token="globs",
            ),
        ),
        setup=both(globs, seed(("team/x", {"v": 1}), ("a/webhooks/x", {"v": 1}))),
    ),
    Case(
        "num-uses-runs-out",
        (
            get("auth/token/lookup-self", token="twice"),
            get("auth/token/lookup-self", token="twice"),
            get("auth/token/lookup-self", token="twice"),
        ),
        setup=one_use,
    ),
    Case(
        "policy-over-http",
        (
            post("sys/policies/acl/extra", {"policy": 'path "x/*" { capabilities = ["read"] }'}),
            get("sys/policies/acl/extra"),
            post("sys/policies/acl/extra", {}),
            delete("sys/policies/acl/extra"),
            get("sys/policies/acl/extra"),
            delete("sys/policies/acl/default"),
        ),
    ),
    Case("unmounted-path-root-404", (get("nomount/x"),)),
    Case("unmounted-path-no-token-403", (get("nomount/x", token="none"),)),
    # -- tokens --------------------------------------------------------------------------
    Case("lookup-self-root", (get("auth/token/lookup-self"),)),
    Case(
        "lookup-self-service-token",
        (
            get("auth/token/lookup-self", token="rotator"),
            post("auth/token/lookup-self", token="rotator"),
        ),
    ),
    Case("renew-self", (post("auth/token/renew-self", {}, token="rotator"),)),
    Case(
        "renew-self-increment",
        (post("auth/token/renew-self", {"increment": "30s"}, token="rotator"),),
    ),
    Case(
        "renew-self-capped-by-explicit-max-ttl",
        (post("auth/token/renew-self", {"increment": "3600s"}, token="capped"),),
        setup=capped_token,
        check=renewal_capped_at(100),
    ),
    Case(
        "renew-self-without-increment-keeps-ttl",
        (post("auth/token/renew-self", token="capped"),),
        setup=capped_token,
        check=lease_at_most(60),
    ),
    Case(
        "renew-self-then-lookup",
        (
            post("auth/token/renew-self", {"increment": "1h"}, token="capped"),
            get("auth/token/lookup-self", token="capped"),
        ),
        setup=capped_token,
    ),
    Case("renew-self-root-400", (post("auth/token/renew-self"),)),
    Case(
        "renew-self-past-system-max",
        (post("auth/token/renew-self", {"increment": "7200h"}, token="rotator"),),
        check=lease_at_most(768 * 3600),
    ),
    Case(
        "token-lookup-by-root",
        (post("auth/token/lookup", {"token": "{rotator}"}),),
    ),
    Case(
        "token-create",
        (post("auth/token/create", {"policies": ["rotator"], "ttl": "1h"}),),
    ),
    Case(
        "token-create-no-default-policy",
        (post("auth/token/create", {"policies": ["rotator"], "no_default_policy": True}),),
    ),
    Case(
        "token-create-ttl-over-explicit-max",
        (
            post(
                "auth/token/create",
                {"policies": ["rotator"], "ttl": "200s", "explicit_max_ttl": "100s"},
            ),
        ),
        check=lease_at_most(100),
    ),
    Case(
        "token-create-unknown-policy-warns",
        (post("auth/token/create", {"policies": ["nonexistent"], "ttl": "1h"}),),
    ),
    Case(
        "token-create-unprivileged-403",
        (post("auth/token/create", {"policies": ["rotator"]}, token="rotator"),),
    ),
    Case(
        "revoke-self-then-lookup-403",
        (
            post("auth/token/revoke-self", token="rotator"),
            get("auth/token/lookup-self", token="rotator"),
        ),
    ),
    # -- AppRole ---------------------------------------------------------------------------
    Case(
        "approle-login",
        (
            post(
                "auth/approle/login",
                {"role_id": "{role_id}", "secret_id": "{secret_id}"},
                token="none",
                save={"login": "auth.client_token"},
            ),
            get("auth/token/lookup-self", token="login"),
        ),
        setup=approle,
    ),
    Case(
        "approle-missing-role-id",
        (post("auth/approle/login", {"secret_id": "{secret_id}"}, token="none"),),
        setup=approle,
    ),
    Case(
        "approle-missing-secret-id",
        (post("auth/approle/login", {"role_id": "{role_id}"}, token="none"),),
        setup=approle,
    ),
    Case(
        "approle-empty-body",
        (post("auth/approle/login", {}, token="none"),),
        setup=approle,
    ),
    Case(
        "approle-wrong-secret-id",
        (
            post(
                "auth/approle/login",
                {"role_id": "{role_id}", "secret_id": "wrong"},
                token="none",
            ),
        ),
        setup=approle,
    ),
    Case(
        "approle-wrong-role-id",
        (
            post(
                "auth/approle/login",
                {"role_id": "wrong", "secret_id": "{secret_id}"},
                token="none",
            ),
        ),
        setup=approle,
    ),
    Case(
        "approle-malformed-json",
        (post("auth/approle/login", raw=b"{bad", token="none"),),
        setup=approle,
    ),
    Case(
        "approle-token-max-ttl-caps-renewal",
        (
            post(
                "auth/approle/login",
                {"role_id": "{role_id}", "secret_id": "{secret_id}"},
                token="none",
                save={"login": "auth.client_token"},
            ),
            post("auth/token/renew-self", {"increment": "3600s"}, token="login"),
        ),
        setup=approle,
        check=renewal_capped_at(100),
    ),
    # -- sys/capabilities-self -------------------------------------------------------
    Case(
        "capabilities-self-paths",
        (
            post(
                "sys/capabilities-self",
                {
                    "paths": [
                        f"{PREFIX}/a",
                        f"{META}/",
                        "secret/data/monite/api-credentials",
                        "auth/token/renew-self",
                        "nothing/here",
                    ]
                },
                token="rotator",
            ),
        ),
    ),
    Case(
        "capabilities-self-one-path",
        (post("sys/capabilities-self", {"paths": [f"{PREFIX}/a"]}, token="rotator"),),
    ),
    Case(
        "capabilities-self-legacy-path",
        (post("sys/capabilities-self", {"path": f"{PREFIX}/a"}, token="rotator"),),
    ),
    Case(
        "capabilities-self-comma-string",
        (post("sys/capabilities-self", {"paths": f"{PREFIX}/a,secret/x"}, token="rotator"),),
    ),
    Case(
        "capabilities-self-leading-slash",
        (post("sys/capabilities-self", {"paths": [f"/{PREFIX}/a"]}, token="rotator"),),
    ),
    Case(
        "capabilities-self-root",
        (post("sys/capabilities-self", {"paths": [f"{PREFIX}/a", "x"]}),),
    ),
    Case(
        "capabilities-self-plain-token",
        (post("sys/capabilities-self", {"paths": [f"{PREFIX}/a"]}, token="plain"),),
    ),
    Case(
        "capabilities-self-without-a-grant-403",
        (post("sys/capabilities-self", {"paths": [f"{PREFIX}/a"]}, token="kvonly"),),
    ),
    Case(
        "capabilities-self-shipped-policy-without-default",
        (post("sys/capabilities-self", {"paths": [f"{PREFIX}/a"]}, token="bare"),),
    ),
    Case(
        "capabilities-self-no-paths-400",
        (
            post("sys/capabilities-self", {}, token="rotator"),
            post("sys/capabilities-self", {"paths": []}, token="rotator"),
        ),
    ),
    Case(
        "capabilities-self-get-403",
        (get("sys/capabilities-self", token="rotator"),),
    ),
    Case(
        "capabilities-self-no-token-403",
        (post("sys/capabilities-self", {"paths": ["a"]}, token="none"),),
    ),
    # -- sys/internal/ui/mounts ---------------------------------------------------------
    Case("ui-mounts-kv2-root", (get(f"sys/internal/ui/mounts/{PREFIX}/a"),)),
    Case("ui-mounts-mount-itself", (get("sys/internal/ui/mounts/secret"),)),
    Case(
        "ui-mounts-kv2-rotator-token",
        (
            get(f"sys/internal/ui/mounts/{PREFIX}/a", token="rotator"),
            get("sys/internal/ui/mounts/secret/other", token="rotator"),
        ),
    ),
    Case(
        "ui-mounts-kv2-token-without-default",
        (get(f"sys/internal/ui/mounts/{PREFIX}/a", token="bare"),),
    ),
    Case("ui-mounts-kv1", (get("sys/internal/ui/mounts/kv1/foo"),), setup=kv1),
    Case(
        "ui-mounts-kv1-denied",
        (get("sys/internal/ui/mounts/kv1/foo", token="rotator"),),
        setup=kv1,
    ),
    Case("ui-mounts-no-mount-403", (get("sys/internal/ui/mounts/nomount/foo"),)),
    Case(
        "ui-mounts-denied-403",
        (get(f"sys/internal/ui/mounts/{PREFIX}/a", token="plain"),),
    ),
    Case(
        "ui-mounts-no-token-403",
        (
            get(f"sys/internal/ui/mounts/{PREFIX}/a", token="none"),
            get(f"sys/internal/ui/mounts/{PREFIX}/a", token="bogus"),
        ),
    ),
    Case(
        "ui-mounts-builtin",
        (
            get("sys/internal/ui/mounts/sys/foo"),
            get("sys/internal/ui/mounts/auth/token/lookup-self"),
            get("sys/internal/ui/mounts/cubbyhole/x"),
            get("sys/internal/ui/mounts/identity/x"),
        ),
    ),
    Case(
        "ui-mounts-approle",
        (get("sys/internal/ui/mounts/auth/approle/login"),),
        setup=approle,
    ),
    Case("ui-mounts-listing", (get("sys/internal/ui/mounts", token="kvonly"),)),
    Case(
        "ui-mounts-kv-only-token",
        (
            get(f"sys/internal/ui/mounts/{PREFIX}/a", token="kvonly"),
            get("sys/internal/ui/mounts/auth/token/x", token="kvonly"),
            get("sys/internal/ui/mounts/sys/x", token="kvonly"),
        ),
    ),
    # -- KV version 1 --------------------------------------------------------------------
    Case(
        "kv1-write-read",
        (post("kv1/foo", {"a": "1", "n": 3}), get("kv1/foo"), get("kv1/foo?x=1")),
        setup=kv1,
    ),
    Case("kv1-read-missing", (get("kv1/missing"), get("kv1/"), get("kv1")), setup=kv1),
    Case(
        "kv1-list",
        (
            post("kv1/foo", {"a": 1}),
            post("kv1/dir/bar", {"a": 1}),
            lst("kv1/"),
            get("kv1/?list=true"),
            lst("kv1/dir"),
            lst("kv1/nothing"),
        ),
        setup=kv1,
    ),
    Case(
        "kv1-write-refusals",
        (
            post("kv1/foo", {}),
            post("kv1/foo", raw=b""),
            post("kv1/dir/", {"a": 1}),
            post("kv1/foo", raw=b"{bad"),
            Step("PATCH", "kv1/foo", body={"a": 1}, headers=MERGE_PATCH),
        ),
        setup=kv1,
    ),
    Case(
        "kv1-delete",
        (post("kv1/foo", {"a": 1}), delete("kv1/foo"), delete("kv1/foo"), get("kv1/foo")),
        setup=kv1,
    ),
    Case(
        "kv1-with-a-kv2-client",
        (
            post(
                "kv1/data/monite/webhooks/a",
                {"data": {"secret": "x"}, "options": {"cas": 0}},
            ),
            post(
                "kv1/data/monite/webhooks/a",
                {"data": {"secret": "y"}, "options": {"cas": 0}},
            ),
            get("kv1/data/monite/webhooks/a"),
            get("kv1/data/monite/webhooks/a?version=1"),
            get("kv1/metadata/monite/webhooks/a"),
            lst("kv1/metadata/monite/webhooks/"),
            lst("kv1/data/monite/webhooks/"),
            lst("kv1/"),
            get("kv1/config"),
            delete("kv1/data/monite/webhooks/a"),
            get("kv1/data/monite/webhooks/a"),
        ),
        setup=kv1,
    ),
    Case(
        "kv1-rotator-token-denied",
        (get("kv1/data/monite/webhooks/a", token="rotator"),),
        setup=kv1,
    ),
    # -- namespaces ------------------------------------------------------------------------
    Case(
        "namespace-not-found",
        (
            get(f"{PREFIX}/a", namespace="{ns}"),
            get(f"{PREFIX}/a", namespace="{ns}", token="none"),
            get(f"{PREFIX}/a", namespace="{ns}", token="bogus"),
            post("auth/approle/login", {"role_id": "x"}, namespace="{ns}", token="none"),
            get("auth/token/lookup-self", namespace="{ns}"),
        ),
    ),
    Case(
        "namespace-login-without-approle",
        (
            post(
                "auth/approle/login",
                {"role_id": "{role_id}", "secret_id": "{secret_id}"},
                namespace="{ns}",
                token="none",
            ),
        ),
        setup=both(namespace, approle),
    ),
    Case(
        "namespace-token-create-in-namespace",
        (
            post(
                "auth/token/create",
                {"policies": ["nonexistent"], "ttl": "1h"},
                namespace="{ns}",
                save={"nstoken": "auth.client_token"},
            ),
            get("auth/token/lookup-self", namespace="{ns}", token="nstoken"),
            lst(f"{META}/", namespace="{ns}"),
        ),
        setup=namespace,
    ),
    Case(
        "namespace-create-over-http",
        (
            post("sys/namespaces/{ns}"),
            post("sys/namespaces/{ns}"),
            get("sys/namespaces/{ns}"),
            get(f"{PREFIX}/a", namespace="{ns}"),
            post("sys/namespaces/{ns}/child"),
            get("sys/namespaces/{ns}", namespace="{ns}"),
        ),
    ),
    Case(
        "namespace-has-its-own-data",
        (
            post(f"{PREFIX}/a", {"data": {"where": "ns"}}, namespace="{ns}"),
            get(f"{PREFIX}/a", namespace="{ns}"),
            get(f"{PREFIX}/a"),
            get("{ns}/" + f"{PREFIX}/a"),
        ),
        setup=both(namespace, seed(("monite/webhooks/a", {"where": "root"}))),
    ),
    Case(
        "namespace-root-token-in-namespace",
        (
            get("auth/token/lookup-self", namespace="{ns}"),
            post("sys/capabilities-self", {"paths": [f"{PREFIX}/a"]}, namespace="{ns}"),
            get(f"sys/internal/ui/mounts/{PREFIX}/a", namespace="{ns}"),
        ),
        setup=namespace,
    ),
    Case(
        "namespace-parent-token-policies-do-not-reach",
        (
            get(f"{PREFIX}/a", namespace="{ns}", token="rotator"),
            get("auth/token/lookup-self", namespace="{ns}", token="rotator"),
            post("auth/token/renew-self", {}, namespace="{ns}", token="rotator"),
            post(
                "sys/capabilities-self",
                {"paths": [f"{PREFIX}/a"]},
                namespace="{ns}",
                token="rotator",
            ),
            get(f"sys/internal/ui/mounts/{PREFIX}/a", namespace="{ns}", token="rotator"),
        ),
        setup=namespace,
    ),
    Case(
        "namespace-token-of-the-namespace",
        (
            post("sys/policies/acl/rotator", {"policy": ROTATOR_POLICY}, namespace="{ns}"),
            post(
                "auth/token/create",
                {"policies": ["rotator"], "ttl": "1h"},
                namespace="{ns}",
                save={"nstoken": "auth.client_token"},
            ),
            post(f"{PREFIX}/a", {"data": {"v": 1}}, namespace="{ns}", token="nstoken"),
            get(f"{PREFIX}/a", namespace="{ns}", token="nstoken"),
            get(f"{PREFIX}/a", token="nstoken"),
            get("auth/token/lookup-self", token="nstoken"),
            get("auth/token/lookup-self", namespace="{ns}", token="nstoken"),
            post(
                "sys/capabilities-self",
                {"paths": [f"{PREFIX}/a"]},
                namespace="{ns}",
                token="nstoken",
            ),
            post("sys/capabilities-self", {"paths": [f"{PREFIX}/a"]}, token="nstoken"),
        ),
        setup=namespace,
    ),
]


# -- running and comparing -------------------------------------------------------------


def _fill(value: Any, ctx: dict[str, str]) -> Any:
    if isinstance(value, str):
        return re.sub(r"\{(\w+)\}", lambda m: ctx[m.group(1)], value)
    if isinstance(value, list):
        return [_fill(v, ctx) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ctx) for k, v in value.items()}
    return value


def _run(backend: Backend, case: Case, ns: str) -> list[Answer]:
    ctx = {"ns": ns, "root": backend.root_token, "bogus": BOGUS_TOKEN}
    backend.put_policy("rotator", ROTATOR_POLICY)
    ctx["rotator"] = backend.create_token(policies=["rotator"], ttl=3600)
    ctx["bare"] = backend.create_token(policies=["rotator"], ttl=3600, no_default_policy=True)
    backend.put_policy("kv-only", KV_ONLY_POLICY)
    ctx["kvonly"] = backend.create_token(policies=["kv-only"], ttl=3600, no_default_policy=True)
    ctx["plain"] = backend.create_token(policies=["default"], ttl=3600)
    if case.setup is not None:
        case.setup(backend, ctx)
    answers: list[Answer] = []
    with httpx.Client(base_url=backend.address + "/v1/", timeout=10, verify=SSL_CONTEXT) as client:
        for step in case.steps:
            headers = dict(step.headers)
            if step.token != "none":
                headers["X-Vault-Token"] = ctx[step.token]
            if step.namespace is not None:
                headers["X-Vault-Namespace"] = _fill(step.namespace, ctx)
            content = step.raw
            if content is None and step.body is not None:
                content = httpx.Request("POST", "/", json=_fill(step.body, ctx)).content
                headers.setdefault("Content-Type", "application/json")
            response = client.request(
                step.method, _fill(step.path, ctx), headers=headers, content=content
            )
            body: Any = response.text
            if response.content:
                try:
                    body = response.json()
                except ValueError:
                    body = response.text
            answer = Answer(response.status_code, response.headers.get("content-type"), body)
            for name, dotted in step.save.items():
                ctx[name] = str(answer.at(dotted)) if response.status_code == 200 else "none"
            answers.append(answer)
    return answers


def _type(value: Any) -> str:
    return type(value).__name__


_GO_DURATION = re.compile(r"\b(?:\d+(?:\.\d+)?(?:h|m|s|ms|µs|ns))+\b")


def _differences(emulator: Any, openbao: Any, where: str, key: str = "") -> list[str]:
    if key in _VOLATILE:
        if _type(emulator) != _type(openbao):
            return [f"{where}: emulator {_type(emulator)} != openbao {_type(openbao)}"]
        return []
    if key in _TIMES:
        if (_type(emulator), bool(emulator)) != (_type(openbao), bool(openbao)):
            return [f"{where}: emulator {emulator!r} != openbao {openbao!r}"]
        return []
    if key in _TICKING and isinstance(emulator, int) and isinstance(openbao, int):
        if abs(emulator - openbao) > _TICK_TOLERANCE:
            return [f"{where}: emulator {emulator} != openbao {openbao}"]
        return []
    if key == "warnings" and isinstance(emulator, list) and isinstance(openbao, list):
        # TTL warnings print a remaining time that ticks ("1m40s" vs "1m39s", and
        # "768h" vs "767h59m59s" once a second has passed): compare the words only.
        emulator = [_GO_DURATION.sub("<duration>", str(w)) for w in emulator]
        openbao = [_GO_DURATION.sub("<duration>", str(w)) for w in openbao]
    if isinstance(emulator, dict) and isinstance(openbao, dict):
        found = [
            f"{where}.{k}: only the {'emulator' if k in emulator else 'openbao'} has it"
            for k in sorted(set(emulator) ^ set(openbao))
        ]
        for k in sorted(set(emulator) & set(openbao)):
            found += _differences(emulator[k], openbao[k], f"{where}.{k}", k)
        return found
    if isinstance(emulator, list) and isinstance(openbao, list) and len(emulator) == len(openbao):
        found = []
        for index, (e, o) in enumerate(zip(emulator, openbao, strict=True)):
            found += _differences(e, o, f"{where}[{index}]", key)
        return found
    if emulator != openbao or _type(emulator) != _type(openbao):
        return [f"{where}: emulator {_show(emulator)} != openbao {_show(openbao)}"]
    return []


def _show(value: Any) -> str:
    """A value for a failure message: objects and arrays by shape only (they may hold tokens)."""
    if isinstance(value, dict):
        return f"object with keys {sorted(value)}"
    if isinstance(value, list):
        return f"array of {len(value)}"
    return repr(value)


@pytest.fixture
def emulator() -> Iterator[VaultEmulator]:
    with VaultEmulator() as vault:
        yield vault


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_emulator_answers_like_openbao(
    case: Case, emulator: VaultEmulator, openbao: OpenBaoVault
) -> None:
    """Every step of the case gets the same status, Content-Type and body from both servers."""
    ns = "diff" + uuid.uuid4().hex[:10]
    ours = _run(emulator, case, ns)
    theirs = _run(openbao, case, ns)
    differences: list[str] = []
    for index, (step, e, o) in enumerate(zip(case.steps, ours, theirs, strict=True)):
        where = f"step {index} {step.method} {step.path}"
        if (e.status, e.content_type) != (o.status, o.content_type):
            differences.append(
                f"{where}: emulator {e.status} {e.content_type} != "
                f"openbao {o.status} {o.content_type}"
            )
        differences += _differences(e.body, o.body, f"{where} body")
    assert [] == differences
    if case.check is not None:
        case.check(ours)
        case.check(theirs)


def test_every_case_has_a_unique_id() -> None:
    """The table names each case once, so a failure names exactly one case."""
    ids = [c.id for c in CASES]
    assert sorted(set(ids)) == sorted(ids)
