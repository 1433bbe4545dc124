"""The Vault emulator's KV version 2 engine, on the records of a `KvMount`, as OpenBao answers.

data, metadata (with custom_metadata limits), config, delete/undelete/destroy,
check-and-set and version pruning; `seed_v2` and `read_v2` are the same
operations without HTTP, for the emulator's administration calls.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from rotator.sandbox._http import Request, Response
from rotator.sandbox.vault.common import (
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
from rotator.sandbox.vault.kv import (
    CUSTOM_METADATA_MAX_KEY_BYTES,
    CUSTOM_METADATA_MAX_KEYS,
    CUSTOM_METADATA_MAX_VALUE_BYTES,
    DEFAULT_MAX_VERSIONS,
    KV_V1_PATH_WARNING,
    KvMount,
    Secret,
    Version,
    list_keys,
    record_secret,
)


class KvV2:
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
                return list_keys(kv.secrets, key)
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
            max_versions, cas_required, after = _limits(body)
            if max_versions is not None:
                kv.max_versions = max_versions
            if cas_required is not None:
                kv.cas_required = cas_required
            if after is not None:
                kv.delete_version_after = after
            return no_content()
        return unsupported()

    def version_metadata(self, secret: Secret, number: int) -> dict[str, Any]:
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

    def append(self, key: str, data: dict[str, Any]) -> Secret:
        kv, now = self.kv, self.now
        secret = kv.secrets.get(key)
        if secret is None:
            secret = Secret(created=now, updated=now)
            kv.secrets[key] = secret
        after = secret.delete_version_after or kv.delete_version_after
        secret.current_version += 1
        secret.versions[secret.current_version] = Version(
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
        record_secret(data)
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
        max_versions, cas_required, after = _limits(body)
        kv, now = self.kv, self.now
        secret = kv.secrets.get(key)
        if secret is None:
            if patch:
                return error(404)
            secret = Secret(created=now, updated=now)
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
    return KvV2(kv, now).append(key, copy.deepcopy(data)).current_version


def read_v2(kv: KvMount, key: str, now: float) -> tuple[dict[str, Any], int, str] | None:
    """(data, version, created_time) of the live current version, else None."""
    secret = kv.secrets.get(key)
    if secret is None:
        return None
    version = secret.versions.get(secret.current_version)
    if version is None or version.destroyed or version.deleted(now):
        return None
    return copy.deepcopy(version.data or {}), secret.current_version, rfc3339(version.created)


def _limits(body: dict[str, Any]) -> tuple[int | None, bool | None, int | None]:
    """max_versions, cas_required and delete_version_after (seconds) as a request sets them,
    None for each it leaves alone; the mount's config and a secret's metadata take the same."""
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
    return max_versions, cas_required, after
