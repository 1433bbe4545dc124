"""The Vault emulator's `sys/` endpoints: health, seal status, ACL policies, namespaces, UI mounts.

`sys/health` (with its status-code parameters), `sys/seal-status`,
`sys/policies/acl/<name>` (read, write, delete; `put_policy` without HTTP),
`sys/namespaces/<name>`, `sys/capabilities-self` and
`sys/internal/ui/mounts[/<path>]`, answering as OpenBao does.
"""

from __future__ import annotations

import re
from typing import Any

from rotator.sandbox._http import Request, Response
from rotator.sandbox.vault.acl import Rule, parse_policy
from rotator.sandbox.vault.auth import LoginAuth
from rotator.sandbox.vault.common import envelope, error, no_content, rfc3339, unsupported
from rotator.sandbox.vault.namespaces import Namespace, Policy
from rotator.sandbox.vault.state import Token

VAULT_VERSION = "2.7.2"  # the OpenBao release the emulator is held to
_COMMIT_DATE = "2026-10-26T20:32:27Z"


class SysEndpoints(LoginAuth):
    """The `sys/` paths (except routing's namespace and seal checks) and `put_policy`."""

    # -- administration (no HTTP) -------------------------------------------

    def put_policy(self, name: str, hcl: str, *, namespace: str | None = None) -> None:
        rules = parse_policy(hcl)
        with self._lock:
            self._set_policy(self._ns(namespace), name, hcl, rules)

    # -- over HTTP -----------------------------------------------------------

    def _seal_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "type": "shamir",
            "initialized": True,
            "sealed": self._sealed,
            "t": 1,
            "n": 1,
            "progress": 0,
            "nonce": "",
            "recovery_seal": False,
            "version": VAULT_VERSION,
            "commit_date": _COMMIT_DATE,
            "migration": False,
        }
        if not self._sealed:
            status["cluster_name"] = "vault-cluster-sandbox"
            status["cluster_id"] = self._cluster_id
        status["storage_type"] = "inmem"
        return status

    def _health(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return error(405)
        codes = {
            "activecode": 200,
            "standbycode": 429,
            "drsecondarycode": 472,
            "performancestandbycode": 473,
            "sealedcode": 503,
            "uninitcode": 501,
        }
        for name in codes:
            raw = request.param(name)
            if raw is not None:
                if not re.fullmatch(r"\d+", raw.strip()):
                    return error(400)
                codes[name] = int(raw)
        # standbyok/perfstandbyok only matter on standbys; this node is always the active one.
        replication = "unknown" if self._sealed else "disabled"
        body: dict[str, Any] = {
            "initialized": True,
            "sealed": self._sealed,
            "standby": self._sealed,
            "replication_performance_mode": replication,
            "replication_dr_mode": replication,
            "server_time_utc": int(self.now()),
            "version": VAULT_VERSION,
        }
        if not self._sealed:
            body["cluster_name"] = "vault-cluster-sandbox"
            body["cluster_id"] = self._cluster_id
        status = codes["sealedcode"] if self._sealed else codes["activecode"]
        return Response(status, body, headers={"Cache-Control": "no-store"})

    def _capabilities_self(self, token: Token, ns: Namespace, body: dict[str, Any]) -> Response:
        raw = body.get("paths")
        if raw in (None, "", []):
            raw = body.get("path")
        if isinstance(raw, str):
            paths = [p.strip() for p in raw.split(",") if p.strip()]
        elif isinstance(raw, list):
            paths = [str(p) for p in raw]
        else:
            paths = []
        if not paths:
            return error(400, "paths must be supplied")
        data: dict[str, Any] = {}
        for path in paths:
            acl, checked = self._acl(token, ns, path.lstrip("/"), self_path=False)
            data[path] = acl.capabilities(checked)
        if len(paths) == 1:
            # OpenBao keeps the pre-1.0 answer for a single path as well.
            data["capabilities"] = data[paths[0]]
        return envelope(200, data=dict(sorted(data.items())), top_level=data)

    def _mount_entry(self, ns: Namespace, path: str) -> tuple[dict[str, Any], str] | None:
        """The mount holding `path` (which ends in "/"): its ui/mounts entry and full path."""
        candidates: dict[str, dict[str, Any]] = dict(ns.builtin)
        for name, kv in ns.mounts.items():
            candidates[name + "/"] = kv.info()
        best = max((m for m in candidates if path.startswith(m)), key=len, default=None)
        if best is None:
            return None
        entry = dict(candidates[best])
        entry["path"] = best[len("auth/") :] if best.startswith("auth/") else best
        return dict(sorted(entry.items())), best

    def _ui_mounts(self, token: Token, ns: Namespace, tail: str) -> Response:
        """sys/internal/ui/mounts[/<path>]: the mount(s) the token may see, as OpenBao's UI asks."""
        if not tail.strip("/"):
            return self._ui_mounts_list(token, ns)
        path = tail.strip("/") + "/"
        denied = error(
            403,
            "preflight capability check returned 403, please ensure client's policies "
            f'grant access to path "{path}"',
        )
        found = self._mount_entry(ns, path)
        if found is None:
            # OpenBao answers 403, not 404, so the endpoint cannot enumerate mounts.
            return denied
        entry, full = found
        acl, checked = self._acl(token, ns, full, self_path=False)
        if not acl.has_mount_access(checked):
            return denied
        return envelope(200, data=entry)

    def _ui_mounts_list(self, token: Token, ns: Namespace) -> Response:
        listing: dict[str, dict[str, Any]] = {"auth": {}, "secret": {}}
        candidates: dict[str, dict[str, Any]] = dict(ns.builtin)
        for name, kv in ns.mounts.items():
            candidates[name + "/"] = kv.info()
        for full, info in sorted(candidates.items()):
            acl, checked = self._acl(token, ns, full, self_path=False)
            if not acl.has_mount_access(checked):
                continue
            entry = {k: v for k, v in info.items() if k != "path"}
            if full.startswith("auth/"):
                listing["auth"][full[len("auth/") :]] = entry
            else:
                listing["secret"][full] = entry
        return envelope(200, data=listing)

    def _set_policy(self, ns: Namespace, name: str, hcl: str, rules: list[Rule]) -> None:
        entry = ns.policies.get(name)
        if entry is None:
            ns.policies[name] = Policy(hcl, rules, self.now())
        else:
            entry.update(hcl, rules, self.now())

    def _policy_endpoint(self, name: str, op: str, ns: Namespace, body: dict[str, Any]) -> Response:
        if op == "read":
            entry = ns.policies.get(name)
            if entry is None:
                return error(404)
            data = {
                "allow_slashes_in_identity_templates": False,
                "allow_wildcards_in_identity_templates": False,
                "cas_required": False,
                "modified": rfc3339(entry.modified),
                "name": name,
                "policy": entry.hcl,
                "version": entry.version,
            }
            return envelope(200, data=data)
        if op == "update":
            hcl = body.get("policy")
            if not isinstance(hcl, str) or not hcl:
                return error(400, "'policy' parameter not supplied or empty")
            try:
                rules = parse_policy(hcl)
            except ValueError as exc:
                return error(400, f"failed to parse policy: {exc}")
            self._set_policy(ns, name, hcl, rules)
            return no_content()
        if op == "delete":
            if name in ("default", "root"):
                return error(400, f"cannot delete {name} policy")
            ns.policies.pop(name, None)
            return no_content()
        return unsupported()

    def _namespace_endpoint(self, name: str, op: str, ns: Namespace) -> Response:
        name = name.strip("/")
        full = f"{ns.path}/{name}" if ns.path else name
        if op == "update":
            if "/" in name:
                return error(400, "namespace name cannot contain /")
            self.create_namespace(full)
            return envelope(200, data=self._namespaces[full].view())
        if op == "read":
            found = self._namespaces.get(full)
            if found is None or not name:
                return error(404)
            return envelope(200, data=found.view())
        return unsupported()
