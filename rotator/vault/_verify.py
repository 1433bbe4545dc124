"""Verifying a Vault setup before any record is touched: what `rotator check` promises.

Owns the health check (answers, unsealed, initialized), the namespace check,
the token or login check, judging `vault.mount` (a KV v2 mount, asked of
`sys/internal/ui/mounts`), and the capabilities rotation needs (asked of
`sys/capabilities-self`), each failure one line naming the setting and the fix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from rotator.config import VaultSettings
from rotator.errors import VaultAuthError, VaultConfigError, VaultRequestError, VaultUnavailable
from rotator.vault._errors import NAMESPACE_NOT_FOUND, absent, namespace_error, no_mount_error
from rotator.vault._pool import Pool
from rotator.vault._wire import as_mapping, bare_get, no_request

# A record path to ask capabilities-self about: policies grant records by glob
# (`.../*`), and subscription ids are UUIDs, so any UUID stands for all of them.
_PROBE_ID = "00000000-0000-0000-0000-000000000000"
_POLICY_FILE = "deploy/vault/policy.hcl"


@dataclasses.dataclass(frozen=True, slots=True)
class VaultSetup:
    """What `VaultStore.verify` found: the KV v2 mount, and what the token may do there.

    `granted` describes each capability checked ("create, read, update on
    secret/data/monite/webhooks/*"); `unchecked` says why they could not be asked.
    """

    mount: str
    granted: tuple[str, ...] = ()
    unchecked: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Need:
    """Capabilities rotation needs on one path."""

    path: str  # asked of sys/capabilities-self
    shown: str  # the path as a policy names it, for messages
    capabilities: tuple[str, ...]
    policy_path: str  # the policy stanza that grants it
    setting: str = "vault.mount and vault.path_prefix"  # the settings that chose the path

    def describe(self) -> str:
        return f"{', '.join(self.capabilities)} on {self.shown}"


def _allows(granted: frozenset[str] | None, capability: str) -> bool:
    if not granted or "deny" in granted:
        return False
    return "root" in granted or capability in granted


def _stanza(policy_path: str, needs: list[_Need]) -> list[str]:
    """Every capability `needs` want under one policy stanza, sorted as policy.hcl lists them."""
    wanted = {c for need in needs if need.policy_path == policy_path for c in need.capabilities}
    return sorted(wanted)


def _quoted(items: list[str]) -> str:
    return ", ".join(f'"{item}"' for item in items)


class Verifier:
    """The checks of one store's Vault setup; writes nothing."""

    def __init__(self, settings: VaultSettings, pool: Pool) -> None:
        self._settings = settings
        self._pool = pool
        self._call = pool.call
        self._prefix = settings.path_prefix.strip("/")
        self._mount = settings.mount.strip("/")

    def _display(self, kind: str, path: str) -> str:
        return f"{self._mount}/{kind}/{path}"

    async def verify(self, credentials_path: str | None = None) -> VaultSetup:
        """Everything `rotator check` promises about Vault, before a record is read or written.

        Vault answers and is unsealed; `vault.namespace` exists; the token or the
        login works; `vault.mount` is a KV v2 mount (asked with
        `sys/internal/ui/mounts`, as the vault CLI does); and the token holds every
        capability rotation needs, plus "read" on `credentials_path` when given
        (asked with `sys/capabilities-self`, not guessed from a refused call). Each
        failure is one line naming the setting and the fix: VaultConfigError for a
        wrong setting, VaultAuthError for a refused credential or a missing
        permission, VaultUnavailable when trying again may help. Writes nothing.
        """
        await self.check_health()
        await self._check_namespace()
        await self.check_token()
        entry = await self._mount_entry()
        if entry is not None:
            self._judge_mount(entry)
        needs = self._needs(credentials_path)
        granted = await self._capabilities([need.path for need in needs])
        if granted is None:
            # The token may not ask; the old probe still finds a missing mount or
            # listing permission, and the caller is told the rest went unchecked.
            await self._probe_list()
            return VaultSetup(
                self._mount,
                unchecked=(
                    "the Vault token may not call sys/capabilities-self, so only listing "
                    f"{self._display('metadata', self._prefix)} was tried; add "
                    'path "sys/capabilities-self" { capabilities = ["update"] } to its policy '
                    f"(as {_POLICY_FILE} does) to have every permission checked"
                ),
            )
        missing = [
            (need, [c for c in need.capabilities if not _allows(granted.get(need.path), c)])
            for need in needs
        ]
        missing = [(need, lacking) for need, lacking in missing if lacking]
        if missing:
            raise self._missing_error(missing, needs, mount_unseen=entry is None)
        if entry is None:
            # The token holds its capabilities under the mount, yet Vault would not
            # describe the mount: it answers 403 for a mount that does not exist.
            raise no_mount_error(self._settings)
        return VaultSetup(self._mount, granted=tuple(need.describe() for need in needs))

    async def check_health(self) -> None:
        response = await self._call(
            "health", "sys/health", lambda client: bare_get(client, "/v1/sys/health"), auth=False
        )
        self._judge_health(response)

    async def _check_namespace(self) -> None:
        """A clear error when `vault.namespace` does not exist, before any login is tried.

        `sys/internal/ui/mounts` answers without a token in every namespace, and
        with 404 "namespace not found" in one that does not exist.
        """
        if not self._settings.namespace:
            return

        def probe(client: Any) -> Any:
            return bare_get(client, "/v1/sys/internal/ui/mounts", in_namespace=True)

        response = await self._call("namespace", "sys/internal/ui/mounts", probe, auth=False)
        if int(getattr(response, "status_code", 0)) == 404 and NAMESPACE_NOT_FOUND in str(
            getattr(response, "text", "")
        ):
            raise namespace_error(self._settings.namespace)

    async def check_token(self) -> None:
        # Log in (or look the token up) on its own first, so a refused login
        # keeps its own message instead of reading as a dead token below.
        login_path = (
            "auth/token/lookup-self"
            if self._settings.auth_method == "token"
            else f"auth/{self._settings.login_mount}/login"
        )
        await self._call("login", login_path, no_request)

        def lookup(client: Any) -> Any:
            return client.auth.token.lookup_self()

        try:
            await self._call("lookup_self", "auth/token/lookup-self", lookup)
        except VaultAuthError as exc:
            raise VaultAuthError(
                "Vault refused the token (auth/token/lookup-self): it is missing, "
                "expired or revoked",
                status=exc.status,
            ) from exc

    async def _mount_entry(self) -> Mapping[str, Any] | None:
        """What Vault says of the mount holding the records; None when it will not say.

        Vault answers 403 both for a mount that does not exist (so mounts cannot be
        probed for) and for a token granted nothing under it: the capabilities
        tell the two apart.
        """
        display = "sys/internal/ui/mounts/" + "/".join(p for p in (self._mount, self._prefix) if p)

        def read(client: Any) -> Any:
            return client.adapter.get(f"/v1/{display}")

        try:
            response = await self._call("mount", display, read)
        except VaultConfigError:
            raise
        except (VaultAuthError, VaultRequestError):
            return None
        entry = as_mapping(as_mapping(response).get("data"))
        return entry if entry.get("type") else None

    def _judge_mount(self, entry: Mapping[str, Any]) -> None:
        mount = self._mount
        found = str(entry.get("path") or "").strip("/")
        kind = str(entry.get("type"))
        version = str(as_mapping(entry.get("options")).get("version") or "1")
        if found != mount:
            full = "/".join(p for p in (mount, self._prefix) if p)
            rest = full[len(found) + 1 :] if full.startswith(f"{found}/") else ""
            raise VaultConfigError(
                f'vault.mount: "{mount}" is not a mount; the secrets engine holding {full} is '
                f'mounted at "{found}": set vault.mount = "{found}" and vault.path_prefix = '
                f'"{rest}"'
            )
        if kind not in ("kv", "generic"):
            raise VaultConfigError(
                f'vault.mount: "{mount}" is a {kind} secrets engine, not KV v2; point '
                "vault.mount at a KV v2 mount (create one with `vault secrets enable "
                "-path=NAME kv-v2`)"
            )
        if version != "2":
            raise VaultConfigError(
                f'vault.mount: "{mount}" is a KV version {version} mount; the rotator needs KV '
                "v2 (versions and check-and-set): upgrade it with `vault kv enable-versioning "
                f"{mount}`, or point vault.mount at a KV v2 mount"
            )

    def _needs(self, credentials_path: str | None) -> list[_Need]:
        """The paths rotation uses, with the capabilities each needs."""

        def join(*parts: str) -> str:
            return "/".join(p for p in parts if p)

        data, metadata = join(self._mount, "data", self._prefix), join(self._mount, "metadata")
        metadata = join(metadata, self._prefix)
        needs = [
            # Claims and commits: check-and-set writes, "create" for a first record.
            _Need(f"{data}/{_PROBE_ID}", f"{data}/*", ("create", "read", "update"), f"{data}/*"),
            # Listing the records, and a record's version when its latest is deleted.
            _Need(f"{metadata}/", f"{metadata}/", ("list",), f"{metadata}/*"),
            _Need(f"{metadata}/{_PROBE_ID}", f"{metadata}/*", ("read",), f"{metadata}/*"),
        ]
        if credentials_path is not None:
            path = join(self._mount, "data", credentials_path.strip("/"))
            needs.append(_Need(path, path, ("read",), path, "monite.credentials_path"))
        return needs

    async def _capabilities(self, paths: list[str]) -> dict[str, frozenset[str]] | None:
        """The token's capabilities on each path; None when its policy may not ask."""

        def ask(client: Any) -> Any:
            return client.sys.get_capabilities(paths=paths)

        try:
            response = await self._call("capabilities", "sys/capabilities-self", ask)
        except VaultConfigError:
            raise
        except VaultAuthError:
            return None
        body = as_mapping(response)
        data = as_mapping(body.get("data")) or body
        granted: dict[str, frozenset[str]] = {}
        for path in paths:
            listed = data.get(path)
            if listed is None and len(paths) == 1:
                listed = data.get("capabilities")  # older servers, asked about one path
            items = listed if isinstance(listed, list) else []
            granted[path] = frozenset(c for c in items if isinstance(c, str))
        return granted

    def _missing_error(
        self, missing: list[tuple[_Need, list[str]]], needs: list[_Need], *, mount_unseen: bool
    ) -> VaultAuthError:
        """One line: what is lacking where, and the policy stanzas that grant it."""
        who = self._grantee()
        lacking = " and ".join(f"{_quoted(caps)} on {need.shown}" for need, caps in missing)
        # Whole stanzas, as deploy/vault/policy.hcl writes them, for every path short of something.
        policy_paths = dict.fromkeys(need.policy_path for need, _ in missing)
        stanzas = " and ".join(
            f'path "{path}" {{ capabilities = [{_quoted(_stanza(path, needs))}] }}'
            for path in policy_paths
        )
        settings = sorted({need.setting for need, _ in missing})
        if settings == ["monite.credentials_path"]:
            return VaultAuthError(
                f"monite.credentials_path: {who} lack {lacking}; add {stanzas} to its policy, "
                "or point monite.credentials_path at a path it may read",
                status=403,
            )
        # Vault describes a mount only to a token with some access under it, so a
        # mistyped vault.mount looks exactly like a policy written for another one.
        unseen = (
            f'; or, if no KV v2 mount "{self._mount}" exists (Vault does not say to this '
            f"token), fix vault.mount or create it with `vault secrets enable "
            f"-path={self._mount} kv-v2`"
            if mount_unseen
            else ""
        )
        return VaultAuthError(
            f"{' and '.join(settings)}: {who} lack {lacking}; add {stanzas} to its policy "
            f"(as {_POLICY_FILE} does for the default paths){unseen}",
            status=403,
        )

    def _grantee(self) -> str:
        s = self._settings
        if s.auth_method == "token":
            return "the policies of the Vault token"
        if s.auth_method == "kubernetes":
            return f'the policies of the Vault kubernetes role "{s.role}"'
        return "the policies of the Vault approle role"

    async def _probe_list(self) -> None:
        """Without capabilities-self: list the records once, as `check` did before it."""
        list_path = self._display("metadata", self._prefix)

        def list_(client: Any) -> Any:
            return client.secrets.kv.v2.list_secrets(path=self._prefix, mount_point=self._mount)

        try:
            await self._call("list", list_path, list_)
        except VaultConfigError:
            raise
        except VaultAuthError as exc:
            raise VaultAuthError(
                f"vault.path_prefix: the Vault token may not list {list_path}: its policy "
                f'needs "list" on {list_path} (and "create", "read", "update" on '
                f"{self._display('data', self._prefix)}/*; see {_POLICY_FILE})",
                status=exc.status,
            ) from exc
        except VaultRequestError as exc:
            if not absent(exc):
                raise
            # A plain 404: no record yet.

    @staticmethod
    def _judge_health(response: Any) -> None:
        # hvac answers 200 with a dict and any other status with the raw Response.
        if isinstance(response, Mapping):
            status, body = 200, response
        else:
            status = int(getattr(response, "status_code", 0))
            try:
                body = as_mapping(response.json())
            except Exception:  # an empty or non-JSON body still has a status
                body = {}
        if body.get("sealed") is True:
            raise VaultUnavailable("Vault is sealed", status=status)
        if body.get("initialized") is False or status == 501:
            raise VaultUnavailable("Vault is not initialized", status=status)
        # 429 standby and 473 performance standby still serve (or forward) requests.
        if status not in (200, 429, 473):
            raise VaultUnavailable(f"Vault health check answered {status}", status=status)
