"""The Vault emulator's KV secrets engine, version 1 and version 2, as OpenBao answers.

A `KvMount` holds one mount's records and answers the requests routed to it
(the path below the mount, the operation, the parsed body). Version 2 has
data/metadata/config/delete/undelete/destroy with check-and-set and version
pruning; version 1 is a plain map from path to JSON object, so a KV v2 client
talking to it writes a secret literally named "data/<path>" (as OpenBao does).
"""

from __future__ import annotations

import contextlib
import copy
import json
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from rotator.sandbox import record_issued
from rotator.sandbox._http import Request, Response
from rotator.sandbox._vault_common import (
    CAS_MISMATCH,
    CAS_REQUIRED,
    Reply,
    envelope,
    error,
    go_duration,
    merge_patch,
    multierror,
    no_content,
    parse_bool,
    parse_duration,
    parse_int,
    require_merge_patch,
    rfc3339,
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
class _Version:
    created: float
    data: dict[str, Any] | None
    deletion_time: float | None = None
    destroyed: bool = False

    def deleted(self, now: float) -> bool:
        return self.deletion_time is not None and self.deletion_time <= now


@dataclass
class _Secret:
    created: float
    updated: float
    current_version: int = 0
    oldest_version: int = 0
    versions: dict[int, _Version] = field(default_factory=dict)
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
    secrets: dict[str, _Secret] = field(default_factory=dict)  # version 2
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

    def handle(
        self, request: Request, sub: str, op: str, body: dict[str, Any] | None, now: float
    ) -> Response:
        if self.version == 1:
            return self._v1(request, sub, op, body)
        return _KvV2(self, now).handle(request, sub, op, body)

    # -- version 1 -------------------------------------------------------------

    def _v1(self, request: Request, sub: str, op: str, body: dict[str, Any] | None) -> Response:
        if op == "list":
            return _list_keys(self.values, sub.strip("/"))
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
            _record_secret(body)
            return no_content()
        if op == "delete":
            self.values.pop(key, None)
            return no_content()
        return unsupported()

    def seed_v1(self, key: str, data: dict[str, Any]) -> None:
        self.values[key] = copy.deepcopy(data)
        _record_secret(data)


def _record_secret(data: dict[str, Any]) -> None:
    value = data.get("secret")
    if isinstance(value, str):
        record_issued(value)


def _list_keys(names: Any, key: str) -> Response:
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


class _KvV2:
    """KV version 2 requests on one mount at one instant."""

    def __init__(self, kv: KvMount, now: float) -> None:
        self.kv = kv
        self.now = now

    def handle(self, request: Request, sub: str, op: str, body: dict[str, Any] | None) -> Response:
        kv = self.kv
        head, _, key = sub.partition("/")
        key = key.strip("/")
        data = body or {}
        if head == "config" and not key:
            return self.config(op, data)
        if head == "data" and key:
            if op == "read":
                return self.read(request, key)
            if op in ("update", "create"):
                return self.write(key, data)
            if op == "patch":
                require_merge_patch(request)
                return self.write(key, data, patch=True)
            if op == "delete":
                return self.delete_latest(key)
        if head in ("delete", "undelete", "destroy") and key and op in ("update", "create"):
            return self.versions_op(key, head, data)
        if head == "metadata":
            if op == "list":
                return _list_keys(kv.secrets, key)
            if key and op == "read":
                return self.metadata_read(key)
            if key and op in ("update", "create"):
                return self.metadata_write(key, data, patch=False)
            if key and op == "patch":
                require_merge_patch(request)
                return self.metadata_write(key, data, patch=True)
            if key and op == "delete":
                kv.secrets.pop(key, None)
                return no_content()
            if not key and op == "read":
                return error(404)
        if head == "data" and not key and op == "read":
            return error(404)
        if head in ("data", "metadata", "delete", "undelete", "destroy", "config"):
            return unsupported()
        # A KV v1-style path on a v2 mount: 404 with this warning and no errors.
        return envelope(404, warnings=[KV_V1_PATH_WARNING])

    def config(self, op: str, body: dict[str, Any]) -> Response:
        kv = self.kv
        if op == "read":
            data = {
                "cas_required": kv.cas_required,
                "delete_version_after": go_duration(kv.delete_version_after),
                "max_versions": kv.max_versions,
                "metadata_cas_required": False,
            }
            return envelope(200, data=data)
        if op in ("update", "create"):
            max_versions = (
                parse_int(body["max_versions"], "max_versions") if "max_versions" in body else None
            )
            cas_required = (
                parse_bool(body["cas_required"], "cas_required") if "cas_required" in body else None
            )
            after = (
                round(parse_duration(body["delete_version_after"], "delete_version_after"))
                if "delete_version_after" in body
                else None
            )
            if max_versions is not None:
                kv.max_versions = max_versions
            if cas_required is not None:
                kv.cas_required = cas_required
            if after is not None:
                kv.delete_version_after = after
            return no_content()
        return unsupported()

    def version_metadata(self, secret: _Secret, number: int) -> dict[str, Any]:
        version = secret.versions[number]
        return {
            "created_time": rfc3339(version.created),
            "custom_metadata": dict(secret.custom_metadata) if secret.custom_metadata else None,
            "deletion_time": rfc3339(version.deletion_time),
            "destroyed": version.destroyed,
            "version": number,
        }

    def read(self, request: Request, key: str) -> Response:
        secret = self.kv.secrets.get(key)
        if secret is None:
            return error(404)
        number = secret.current_version
        raw = request.param("version")
        if raw not in (None, ""):
            requested = parse_int(raw, "version")
            if requested > 0:
                number = requested
        version = secret.versions.get(number)
        if version is None:
            return error(404)
        metadata = self.version_metadata(secret, number)
        if version.destroyed or version.deleted(self.now):
            # OpenBao still tells which version it was and when it went away.
            return envelope(404, data={"data": None, "metadata": metadata})
        data = {"data": copy.deepcopy(version.data), "metadata": metadata}
        return envelope(200, data=data)

    def append(self, key: str, data: dict[str, Any]) -> _Secret:
        kv, now = self.kv, self.now
        secret = kv.secrets.get(key)
        if secret is None:
            secret = _Secret(created=now, updated=now)
            kv.secrets[key] = secret
        after = secret.delete_version_after or kv.delete_version_after
        secret.current_version += 1
        secret.versions[secret.current_version] = _Version(
            created=now, data=data, deletion_time=now + after if after > 0 else None
        )
        secret.updated = now
        limit = secret.max_versions or kv.max_versions or DEFAULT_MAX_VERSIONS
        # OpenBao's sliding window: once current - oldest reaches the limit, drop the oldest.
        if secret.current_version - secret.oldest_version >= limit:
            drop_through = secret.current_version - limit
            for number in [n for n in secret.versions if n <= drop_through]:
                del secret.versions[number]
            secret.oldest_version = drop_through + 1
        _record_secret(data)
        return secret

    def write(self, key: str, body: dict[str, Any], *, patch: bool = False) -> Response:
        data = body.get("data")
        if not isinstance(data, dict):
            return error(400, "no data provided")
        options = body.get("options") or {}
        if not isinstance(options, dict):
            return error(400, "error parsing options")
        secret = self.kv.secrets.get(key)
        current = secret.current_version if secret else 0
        if patch:
            latest = secret.versions.get(current) if secret else None
            if latest is None or latest.destroyed or latest.deleted(self.now):
                # OpenBao's PATCH of a missing secret: 404 with an empty body.
                return Response(404, None, headers={"Cache-Control": "no-store"})
            data = merge_patch(latest.data or {}, data)
        if "cas" in options:
            try:
                cas = parse_int(options["cas"], "cas")
            except Reply as exc:
                raise Reply(error(400, "error parsing check-and-set parameter")) from exc
            if cas != current:
                return error(400, CAS_MISMATCH)
        elif self.kv.cas_required or (secret is not None and secret.cas_required):
            return error(400, CAS_REQUIRED)
        secret = self.append(key, copy.deepcopy(data))
        return envelope(200, data=self.version_metadata(secret, secret.current_version))

    def delete_latest(self, key: str) -> Response:
        secret = self.kv.secrets.get(key)
        latest = secret.versions.get(secret.current_version) if secret else None
        if latest is not None and not latest.destroyed and not latest.deleted(self.now):
            latest.deletion_time = self.now
        return no_content()

    def versions_op(self, key: str, action: str, body: dict[str, Any]) -> Response:
        raw = body.get("versions")
        if isinstance(raw, int | str):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            # Sic: OpenBao's destroy says it in lower case, delete and undelete capitalised.
            text = (
                "no version number provided"
                if action == "destroy"
                else "No version number provided"
            )
            return error(400, text)
        numbers: list[int] = []
        for index, item in enumerate(raw):
            try:
                numbers.append(parse_int(item, "versions"))
            except Reply as exc:
                message = (
                    'Field validation failed: error converting input for field "versions": '
                    "decoding failed due to the following error(s):\n\n"
                    f"'[{index}]' cannot parse value as 'int': strconv.ParseInt: invalid syntax"
                )
                raise Reply(error(400, message)) from exc
        secret = self.kv.secrets.get(key)
        now = self.now
        for number in numbers:
            version = secret.versions.get(number) if secret else None
            if version is None or version.destroyed:
                continue
            if action == "delete" and not version.deleted(now):
                version.deletion_time = now
            elif action == "undelete":
                version.deletion_time = None
            elif action == "destroy":
                version.destroyed = True
                version.data = None
        return no_content()

    def metadata_read(self, key: str) -> Response:
        secret = self.kv.secrets.get(key)
        if secret is None:
            return error(404)
        versions = {
            str(n): {
                "created_time": rfc3339(v.created),
                "deletion_time": rfc3339(v.deletion_time),
                "destroyed": v.destroyed,
            }
            for n, v in sorted(secret.versions.items())
        }
        data = {
            "cas_required": secret.cas_required,
            "created_time": rfc3339(secret.created),
            "current_metadata_version": secret.metadata_version,
            "current_version": secret.current_version,
            "custom_metadata": dict(secret.custom_metadata) if secret.custom_metadata else None,
            "delete_version_after": go_duration(secret.delete_version_after),
            "max_versions": secret.max_versions,
            "metadata_cas_required": False,
            "oldest_version": secret.oldest_version,
            "updated_time": rfc3339(secret.updated),
            "versions": versions,
        }
        return envelope(200, data=data)

    def metadata_write(self, key: str, body: dict[str, Any], *, patch: bool) -> Response:
        custom = (
            _custom_metadata(body["custom_metadata"], patch=patch)
            if "custom_metadata" in body
            else None
        )
        max_versions = (
            parse_int(body["max_versions"], "max_versions") if "max_versions" in body else None
        )
        cas_required = (
            parse_bool(body["cas_required"], "cas_required") if "cas_required" in body else None
        )
        after = (
            round(parse_duration(body["delete_version_after"], "delete_version_after"))
            if "delete_version_after" in body
            else None
        )
        kv, now = self.kv, self.now
        secret = kv.secrets.get(key)
        if secret is None:
            if patch:
                return error(404)
            secret = _Secret(created=now, updated=now)
            kv.secrets[key] = secret
        if max_versions is not None:
            secret.max_versions = max_versions
        if cas_required is not None:
            secret.cas_required = cas_required
        if after is not None:
            secret.delete_version_after = after
        if custom is not None:
            base = dict(secret.custom_metadata or {}) if patch else {}
            for k, v in custom.items():
                if v is None:
                    base.pop(k, None)
                else:
                    base[k] = v
            secret.custom_metadata = base or None
        secret.metadata_version += 1
        secret.updated = now
        if cas_required is False and kv.cas_required:
            warning = (
                '"cas_required" set to false, but is mandated by backend config. '
                "This value will be ignored."
            )
            return envelope(200, warnings=[warning])
        return no_content()


def _custom_metadata(raw: Any, *, patch: bool) -> dict[str, str | None]:
    if not isinstance(raw, dict):
        raise Reply(error(400, "custom_metadata validation failed: expected a map"))
    parsed: dict[str, str | None] = {}
    for k, v in raw.items():
        if v is None and patch:
            parsed[str(k)] = None  # merge-patch: remove this key
        elif isinstance(v, dict | list):
            raise Reply(error(400, f"custom_metadata validation failed: value of {k!r}"))
        else:
            parsed[str(k)] = "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
    present = {k: v for k, v in parsed.items() if v is not None}
    prefix = "custom_metadata validation failed"
    if len(present) > CUSTOM_METADATA_MAX_KEYS:
        message = (
            f"{prefix}: payload must contain at most {CUSTOM_METADATA_MAX_KEYS} keys, "
            f"provided {len(present)}"
        )
        raise Reply(error(400, multierror([message])))
    problems: list[str] = []
    for k, v in present.items():
        quoted = json.dumps(k, ensure_ascii=False)
        key_len, value_len = len(k.encode()), len(v.encode())
        if not 0 < key_len <= CUSTOM_METADATA_MAX_KEY_BYTES:
            problems.append(
                f"{prefix}: length of key {quoted} is {key_len} but must be "
                f"0 < len(key) <= {CUSTOM_METADATA_MAX_KEY_BYTES}"
            )
        if not 0 < value_len <= CUSTOM_METADATA_MAX_VALUE_BYTES:
            problems.append(
                f"{prefix}: length of value for key {quoted} is {value_len} but must be "
                f"0 < len(value) <= {CUSTOM_METADATA_MAX_VALUE_BYTES}"
            )
        if not k.isprintable():
            problems.append(f"{prefix}: key {quoted} ({k}) contains unprintable characters")
        if not v.isprintable():
            problems.append(f"{prefix}: value for key {quoted} contains unprintable characters")
    if problems:
        raise Reply(error(400, multierror(problems)))
    return parsed


def seed_v2(kv: KvMount, key: str, data: dict[str, Any], now: float) -> int:
    """Append a version without HTTP (no ACL, no CAS); the new version number."""
    return _KvV2(kv, now).append(key, copy.deepcopy(data)).current_version


def read_v2(kv: KvMount, key: str, now: float) -> tuple[dict[str, Any], int, str] | None:
    """(data, version, created_time) of the live current version, else None."""
    secret = kv.secrets.get(key)
    if secret is None:
        return None
    version = secret.versions.get(secret.current_version)
    if version is None or version.destroyed or version.deleted(now):
        return None
    return copy.deepcopy(version.data or {}), secret.current_version, rfc3339(version.created)
