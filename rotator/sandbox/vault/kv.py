"""The Vault emulator's KV mounts: their records, and the version 1 engine, as OpenBao answers.

A `KvMount` holds one mount's records (its `sys/internal/ui/mounts` entry,
the existence check behind the ACL's "create" vs "update") and answers the
requests routed to a version 1 mount: a plain map from path to JSON object,
so a KV v2 client talking to it writes a secret literally named "data/<path>"
(as OpenBao does). The version 2 engine that works on the same records is in
`kv_v2`.
"""

from __future__ import annotations

import contextlib
import copy
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from rotator.sandbox import record_issued
from rotator.sandbox._http import Request, Response
from rotator.sandbox.vault.common import (
    Reply,
    envelope,
    error,
    no_content,
    parse_duration,
    unsupported,
)

DEFAULT_MAX_VERSIONS = 10  # KV v2 keeps ten versions unless configured
KV_V1_LEASE = 768 * 3600  # a KV v1 read reports the mount's default lease TTL

CUSTOM_METADATA_MAX_KEYS = 64
CUSTOM_METADATA_MAX_KEY_BYTES = 128
CUSTOM_METADATA_MAX_VALUE_BYTES = 512

KV_V1_PATH_WARNING = (
    "Invalid path for a versioned K/V secrets engine. See the API docs for the "
    "appropriate API endpoints to use. If using the OpenBao CLI, use 'bao kv get' "
    "for this operation."
)
OPENBAO_BUILD = "v2.7.2+builtin.bao"


@dataclass
class Version:
    created: float
    data: dict[str, Any] | None
    deletion_time: float | None = None
    destroyed: bool = False

    def deleted(self, now: float) -> bool:
        return self.deletion_time is not None and self.deletion_time <= now


@dataclass
class Secret:
    created: float
    updated: float
    current_version: int = 0
    oldest_version: int = 0
    versions: dict[int, Version] = field(default_factory=dict)
    max_versions: int = 0
    cas_required: bool = False
    delete_version_after: int = 0
    custom_metadata: dict[str, str] | None = None
    metadata_version: int = 0


def _accessor(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


@dataclass
class KvMount:
    """One KV mount: `version` 2 (versioned) or 1 (plain)."""

    name: str
    version: int = 2
    max_versions: int = 0
    cas_required: bool = False
    delete_version_after: int = 0
    description: str = ""
    secrets: dict[str, Secret] = field(default_factory=dict)  # version 2
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # version 1
    accessor: str = field(default_factory=lambda: _accessor("kv"))
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))

    def info(self) -> dict[str, Any]:
        """The mount's entry as sys/internal/ui/mounts/<path> shows it."""
        return {
            "accessor": self.accessor,
            "config": {"default_lease_ttl": 0, "force_no_cache": False, "max_lease_ttl": 0},
            "deprecation_status": "supported",
            "description": self.description,
            "external_entropy_access": False,
            "local": False,
            "options": {"version": str(self.version)},
            "path": self.name + "/",
            "plugin_version": "",
            "running_plugin_version": OPENBAO_BUILD,
            "running_sha256": "",
            "seal_wrap": False,
            "type": "kv",
            "uuid": self.uuid,
        }

    def exists(self, sub: str) -> bool:
        """The existence check behind "create" vs "update" in the ACL."""
        if self.version == 1:
            return sub.strip("/") in self.values
        head, _, key = sub.partition("/")
        return head in ("data", "metadata") and key.strip("/") in self.secrets

    # -- version 1 -------------------------------------------------------------

    def handle_v1(
        self, request: Request, sub: str, op: str, body: dict[str, Any] | None
    ) -> Response:
        if op == "list":
            return list_keys(self.values, sub.strip("/"))
        key = sub
        if op == "read":
            value = self.values.get(key)
            if value is None or not key or key.endswith("/"):
                return error(404)
            ignored = sorted(k for k in request.query if k != "list")
            warnings = (
                [f"Endpoint ignored these unrecognized parameters: [{' '.join(ignored)}]"]
                if ignored
                else None
            )
            lease = KV_V1_LEASE
            for name in ("ttl", "lease"):
                if name in value:
                    with contextlib.suppress(Reply):
                        lease = round(parse_duration(value[name], name))
            return envelope(200, data=copy.deepcopy(value), warnings=warnings, lease_duration=lease)
        if op in ("update", "create"):
            if key.endswith("/") or not key:
                return error(400, "cannot write to a path ending in '/'")
            if not body:
                return error(400, "missing data fields")
            self.values[key] = copy.deepcopy(body)
            record_secret(body)
            return no_content()
        if op == "delete":
            self.values.pop(key, None)
            return no_content()
        return unsupported()

    def seed_v1(self, key: str, data: dict[str, Any]) -> None:
        self.values[key] = copy.deepcopy(data)
        record_secret(data)


def record_secret(data: dict[str, Any]) -> None:
    value = data.get("secret")
    if isinstance(value, str):
        record_issued(value)


def list_keys(names: Any, key: str) -> Response:
    prefix = key + "/" if key else ""
    keys: set[str] = set()
    for name in names:
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            head, slash, _ = rest.partition("/")
            keys.add(head + slash)
    if not keys:
        return error(404)
    return envelope(200, data={"keys": sorted(keys)})
