"""The Vault emulator's request path: faults, namespaces, seal, login, token, ACL, dispatch.

`_handle` is what the loopback server calls: it counts the request by kind,
applies the latency and injected-error faults, and `_route` takes it from
there: namespace (header, then leading path segments), seal, login, token,
the ACL check (with KV's existence check for create vs update), then the
endpoint: token store, `sys/`, or a KV mount's engine (version 1 or 2).
"""

from __future__ import annotations

import re
import time

from rotator.sandbox._http import Drop, Request, Response
from rotator.sandbox.vault.common import (
    NAMESPACE_NOT_FOUND,
    PERMISSION_DENIED,
    SEALED,
    UNAVAILABLE_IN_NAMESPACES,
    Reply,
    error,
    multierror,
    parse_body,
    unsupported,
)
from rotator.sandbox.vault.kv import KvMount
from rotator.sandbox.vault.kv_v2 import KvV2
from rotator.sandbox.vault.namespaces import MAX_NAMESPACE_DEPTH, Namespace, clean_namespace
from rotator.sandbox.vault.sys_endpoints import SysEndpoints
from rotator.sandbox.vault.tokens import SELF_PATHS


class Router(SysEndpoints):
    """HTTP in: every request the emulator answers goes through `_handle`."""

    def _handle(self, request: Request) -> Response:
        path = request.path
        rel = path[len("/v1/") :].strip("/") if path.startswith("/v1/") else None
        rel = re.sub(r"/{2,}", "/", rel) if rel is not None else None
        with self._lock:
            kind = self._kind(request, rel)
            self._counts[kind] += 1
            latency = self.faults.latency
            namespace = request.header("X-Vault-Namespace")
            if namespace:
                self._namespaces_seen.add(namespace)
        if latency > 0:
            time.sleep(latency)
        with self._lock:
            if self._refusing:
                # A pooled keep-alive connection may still reach us: treat it as refused too.
                raise Drop()
            try:
                injected = self._injected_fault(kind)
                if injected is not None:
                    return injected
                if rel is None:
                    return error(404)
                return self._route(request, rel, kind)
            except Reply as reply:
                return reply.response

    def _injected_fault(self, kind: str) -> Response | None:
        if kind == "health":
            return None
        faults = self.faults
        if faults.fail_next > 0:
            faults.fail_next -= 1
            return error(faults.error_status, multierror(["injected fault"]))
        if faults.error_rate > 0 and self._rng.random() < faults.error_rate:
            return error(500, multierror(["injected fault"]))
        return None

    def _kind(self, request: Request, rel: str | None) -> str:
        method = request.method
        if rel is None:
            return "other"
        if rel == "sys/health":
            return "health"
        if rel == "sys/seal-status":
            return "seal_status"
        if rel.startswith("auth/") and rel.endswith("/login"):
            return "login"
        if rel.startswith("auth/token/"):
            return "token"
        if rel.startswith("sys/"):
            return "sys"
        ns = self._namespaces.get(clean_namespace(request.header("X-Vault-Namespace")))
        hit = self._split_mount(ns, rel) if ns is not None else None
        if hit is None:
            return "other"
        kv, sub = hit
        head = sub.split("/", 1)[0] if kv.version == 2 else "data"
        if head == "data":
            if self._operation(request) == "list":
                return "kv_list"
            if method in ("POST", "PUT", "PATCH"):
                return "kv_write"
            return "kv_delete" if method == "DELETE" else "kv_read"
        if head in ("delete", "undelete", "destroy"):
            return "kv_delete"
        if head == "metadata":
            if self._operation(request) == "list":
                return "kv_list"
            return "kv_metadata_read" if method == "GET" else "kv_metadata_write"
        if head == "config":
            return "kv_config"
        return "other"

    @staticmethod
    def _split_mount(ns: Namespace, rel: str) -> tuple[KvMount, str] | None:
        best: KvMount | None = None
        for name, kv in ns.mounts.items():
            if (rel == name or rel.startswith(name + "/")) and (
                best is None or len(name) > len(best.name)
            ):
                best = kv
        if best is None:
            return None
        return best, rel[len(best.name) :].lstrip("/")

    def _path_namespace(self, ns: Namespace, rel: str) -> tuple[Namespace, str]:
        """OpenBao also takes a namespace as the path's first segments ("team-a/secret/...")."""
        for _ in range(MAX_NAMESPACE_DEPTH):
            first, _, rest = rel.partition("/")
            child = f"{ns.path}/{first}" if ns.path else first
            if not rest or first in ("sys", "auth") or first in ns.mounts:
                return ns, rel
            found = self._namespaces.get(child)
            if found is None:
                return ns, rel
            ns, rel = found, rest
        return ns, rel

    @staticmethod
    def _operation(request: Request) -> str:
        method = request.method
        if method == "LIST" or (
            method == "GET" and (request.param("list") or "").lower() in ("true", "1")
        ):
            return "list"
        return {
            "GET": "read",
            "HEAD": "read",
            "POST": "update",
            "PUT": "update",
            "DELETE": "delete",
            "PATCH": "patch",
        }.get(method, "unsupported")

    def _route(self, request: Request, rel: str, kind: str) -> Response:
        header_ns = clean_namespace(request.header("X-Vault-Namespace"))
        if rel == "sys/health":
            if header_ns:
                return error(400, UNAVAILABLE_IN_NAMESPACES)
            return self._health(request)
        if rel == "sys/seal-status":
            # OpenBao answers this one in any namespace, even one that does not exist.
            return Response(200, self._seal_status(), headers={"Cache-Control": "no-store"})
        ns = self._namespaces.get(header_ns)
        if ns is None:
            return error(404, NAMESPACE_NOT_FOUND)
        ns, rel = self._path_namespace(ns, rel)
        if self._sealed:
            return error(503, SEALED)
        op = self._operation(request)
        body = parse_body(request) if request.method in ("POST", "PUT", "PATCH") else None

        login = self._login(request, ns, rel, op, body)
        if login is not None:
            return login

        token = self._authenticate(request)
        if rel == "sys/internal/ui/mounts" or rel.startswith("sys/internal/ui/mounts/"):
            if op != "read":
                return unsupported()
            return self._ui_mounts(token, ns, rel[len("sys/internal/ui/mounts") :])
        if op == "unsupported":
            return unsupported()
        hit = self._split_mount(ns, rel)
        capability = op
        if op == "update" and hit is not None:
            # KV has an existence check: a new key needs "create", an existing one "update".
            capability = "update" if hit[0].exists(hit[1]) else "create"
        # OpenBao checks LIST against the path with a trailing slash ("foo/" not "foo").
        acl_path = rel + "/" if op == "list" and not rel.endswith("/") else rel
        acl, checked = self._acl(token, ns, acl_path, self_path=rel in SELF_PATHS)
        if not acl.allows(checked, capability):
            return error(403, PERMISSION_DENIED)

        if rel.startswith("auth/token/"):
            return self._token_endpoint(rel[len("auth/token/") :], op, token, ns, body or {})
        if rel.startswith("sys/policies/acl/"):
            return self._policy_endpoint(rel[len("sys/policies/acl/") :], op, ns, body or {})
        if rel.startswith("sys/namespaces/"):
            return self._namespace_endpoint(rel[len("sys/namespaces/") :], op, ns)
        if rel == "sys/capabilities-self":
            if op != "update":
                return unsupported()
            return self._capabilities_self(token, ns, body or {})
        if hit is not None:
            if kind == "kv_write" and self.faults.fail_writes > 0:
                self.faults.fail_writes -= 1
                return error(self.faults.error_status, multierror(["injected write fault"]))
            # KV v1 refuses to write "dir/": keep the trailing slash the route lost.
            sub = hit[1] + "/" if hit[1] and request.path.endswith("/") else hit[1]
            kv = hit[0]
            if kv.version == 1:
                return kv.handle_v1(request, sub, op, body)
            return KvV2(kv, self.now()).handle(request, sub, op, body)
        return error(404, f'no handler for route "{rel}". route entry not found.')
