"""The Vault emulator's namespaces: what each one holds, and the mounts every one has.

A `Namespace` has its own KV mounts, ACL policies (with "default"), AppRole
mounts and roles, and the built-in mounts (sys, identity, cubbyhole, the
token store) that `sys/internal/ui/mounts` lists; tokens live in the
emulator's token store and name their namespace. `clean_namespace` reads an
`X-Vault-Namespace` value the way OpenBao does.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from rotator.sandbox.vault.acl import DEFAULT_POLICY, Rule, parse_policy
from rotator.sandbox.vault.kv import OPENBAO_BUILD, KvMount

MAX_NAMESPACE_DEPTH = 16


@dataclass
class AppRole:
    name: str
    role_id: str
    secret_ids: set[str]
    policies: list[str]
    token_ttl: float
    token_max_ttl: float = 0
    entity_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class Policy:
    hcl: str
    rules: list[Rule]
    modified: float
    version: int = 1

    def update(self, hcl: str, rules: list[Rule], now: float) -> None:
        self.hcl, self.rules, self.modified = hcl, rules, now
        self.version += 1


def builtin_mount(kind: str) -> dict[str, Any]:
    """The entry sys/internal/ui/mounts shows for a mount every namespace has."""
    config: dict[str, Any] = {"default_lease_ttl": 0, "force_no_cache": False, "max_lease_ttl": 0}
    description = {
        "system": "system endpoints used for control, policy and debugging",
        "cubbyhole": "per-token private secret storage",
        "identity": "identity store",
        "token": "token based credentials",
        "approle": "",
        "kubernetes": "",
    }[kind]
    if kind == "system":
        config["passthrough_request_headers"] = ["Accept"]
    elif kind == "identity":
        config["passthrough_request_headers"] = ["Authorization"]
    elif kind in ("token", "approle", "kubernetes"):
        config["token_type"] = "default-service"
    accessor = f"auth_{kind}" if kind in ("token", "approle", "kubernetes") else kind
    info: dict[str, Any] = {
        "accessor": f"{accessor}_{secrets.token_hex(4)}",
        "config": config,
        "description": description,
        "external_entropy_access": False,
        "local": kind == "cubbyhole",
        "options": {} if kind in ("approle", "kubernetes") else None,
        "plugin_version": "",
        "running_plugin_version": OPENBAO_BUILD,
        "running_sha256": "",
        "seal_wrap": kind == "system",
        "type": kind,
        "uuid": str(uuid.uuid4()),
    }
    if kind in ("approle", "kubernetes"):
        info["deprecation_status"] = "supported"
    return info


@dataclass
class Namespace:
    path: str  # "" for root, else "team-a" or "admin/payments" (no slashes around)
    id: str = ""
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    mounts: dict[str, KvMount] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    approle_mounts: dict[str, dict[str, AppRole]] = field(default_factory=dict)
    builtin: dict[str, dict[str, Any]] = field(default_factory=dict)  # "sys/" -> mount entry

    def __post_init__(self) -> None:
        self.policies["default"] = Policy(DEFAULT_POLICY, parse_policy(DEFAULT_POLICY), time.time())
        for path, kind in (
            ("cubbyhole/", "cubbyhole"),
            ("identity/", "identity"),
            ("sys/", "system"),
            ("auth/token/", "token"),
        ):
            self.builtin[path] = builtin_mount(kind)

    def view(self) -> dict[str, Any]:
        return {
            "custom_metadata": {},
            "id": self.id,
            "locked": False,
            "path": self.path + "/",
            "tainted": False,
            "uuid": self.uuid,
        }


def clean_namespace(value: str | None) -> str:
    return (value or "").strip().strip("/")
