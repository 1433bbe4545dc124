"""The Vault emulator's ACL: policies in the HCL subset `path "glob" { capabilities = [...] }`.

Evaluation follows OpenBao: the rules of all a token's policies are merged
per path pattern, the most specific matching pattern wins, and "deny" in it
denies everything. `Acl.has_mount_access` is the check behind
`sys/internal/ui/mounts/<path>`: does the token hold anything under a mount.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

CAPABILITIES = frozenset({"create", "read", "update", "delete", "list", "sudo", "deny", "patch"})

# OpenBao's built-in "default" policy, verbatim (each namespace gets its own copy).
DEFAULT_POLICY = """
# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own entity by id or name
path "identity/entity/id/{{identity.entity.id}}" {
  capabilities = ["read"]
}
path "identity/entity/name/{{identity.entity.name}}" {
  capabilities = ["read"]
}


# Allow a token to look up its resultant ACL from all policies. This is useful
# for UIs. It is an internal path because the format may change at any time
# based on how the internal ACL features and capabilities change.
path "sys/internal/ui/resultant-acl" {
    capabilities = ["read"]
}

# Allow a token to renew a lease via lease_id in the request body; old path for
# old clients, new path for newer
path "sys/leases/renew" {
    capabilities = ["update"]
}

# Allow looking up lease properties. This requires knowing the lease ID ahead
# of time and does not divulge any sensitive information.
path "sys/leases/lookup" {
    capabilities = ["update"]
}

# Allow a token to manage its own cubbyhole
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# Allow a token to wrap arbitrary values in a response-wrapping token
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}

# Allow a token to look up the creation time and TTL of a given
# response-wrapping token
path "sys/wrapping/lookup" {
    capabilities = ["update"]
}

# Allow a token to unwrap a response-wrapping token. This is a convenience to
# avoid client token swapping since this is also part of the response wrapping
# policy.
path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}

# Allow general purpose tools
path "sys/tools/hash" {
    capabilities = ["update"]
}
path "sys/tools/hash/*" {
    capabilities = ["update"]
}

# Allow a token to make requests to the Authorization Endpoint for OIDC providers.
path "identity/oidc/provider/+/authorize" {
    capabilities = ["read", "update"]
}
"""


@dataclass(frozen=True)
class Rule:
    pattern: str
    capabilities: frozenset[str]

    @property
    def glob(self) -> bool:
        return self.pattern.endswith("*")

    def matches(self, path: str) -> bool:
        body = self.pattern[:-1] if self.glob else self.pattern
        pattern_segments = body.split("/")
        if "+" not in pattern_segments:
            return path.startswith(body) if self.glob else path == body
        path_segments = path.split("/")
        if self.glob:
            if len(path_segments) < len(pattern_segments):
                return False
        elif len(path_segments) != len(pattern_segments):
            return False
        last = len(pattern_segments) - 1
        for index, (want, got) in enumerate(zip(pattern_segments, path_segments, strict=False)):
            if want == "+":
                continue
            if self.glob and index == last:
                if not got.startswith(want):
                    return False
            elif want != got:
                return False
        return True

    def priority(self) -> tuple[int, bool, int, int, str]:
        """Vault's documented order: a later first wildcard, no glob, fewer `+`, longer, larger."""
        wildcards = [i for i, char in enumerate(self.pattern) if char in "+*"]
        first = wildcards[0] if wildcards else len(self.pattern) + 1
        plus = self.pattern.split("/").count("+")
        return (first, not self.glob, -plus, len(self.pattern), self.pattern)


_HCL_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<comment>\#[^\n]*|//[^\n]*|/\*.*?\*/)
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<punct>[{}\[\]=,])
      | (?P<word>[A-Za-z0-9_.\-+:*/]+)""",
    re.VERBOSE | re.DOTALL,
)


def _hcl_tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _HCL_TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"policy: unexpected character {text[pos]!r} at offset {pos}")
        kind = match.lastgroup or ""
        if kind == "string":
            tokens.append((kind, json.loads(match.group())))
        elif kind not in ("ws", "comment"):
            tokens.append((kind, match.group()))
        pos = match.end()
    return tokens


class _HclParser:
    """Just enough HCL for policies: statements, labelled blocks, strings, lists, maps."""

    def __init__(self, text: str) -> None:
        self._tokens = _hcl_tokens(text)
        self._pos = 0

    def _peek(self) -> tuple[str, str] | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _take(self, value: str | None = None) -> tuple[str, str]:
        token = self._peek()
        if token is None or (value is not None and token[1] != value):
            raise ValueError(f"policy: expected {value or 'a token'}, got {token}")
        self._pos += 1
        return token

    def statements(self, closing: str | None) -> list[tuple[str, str | None, Any]]:
        result: list[tuple[str, str | None, Any]] = []
        for _ in range(len(self._tokens) + 1):
            token = self._peek()
            if token is None:
                if closing is not None:
                    raise ValueError("policy: unterminated block")
                return result
            if token == ("punct", closing):
                self._take()
                return result
            key = self._take()
            if key[0] not in ("word", "string"):
                raise ValueError(f"policy: unexpected {key[1]!r}")
            label: str | None = None
            nxt = self._peek()
            if nxt is not None and nxt[0] == "string":
                label = self._take()[1]
                nxt = self._peek()
            if nxt == ("punct", "="):
                self._take()
            result.append((key[1], label, self._value()))
        raise ValueError("policy: runaway parse")

    def _value(self) -> Any:
        token = self._take()
        if token == ("punct", "{"):
            return self.statements("}")
        if token == ("punct", "["):
            items: list[Any] = []
            for _ in range(len(self._tokens) + 1):
                if self._peek() == ("punct", "]"):
                    self._take()
                    return items
                items.append(self._value())
                if self._peek() == ("punct", ","):
                    self._take()
            raise ValueError("policy: unterminated list")
        if token[0] in ("string", "word"):
            return token[1]
        raise ValueError(f"policy: unexpected {token[1]!r}")


def parse_policy(hcl: str) -> list[Rule]:
    """Parse the HCL subset into rules; raises ValueError the way `vault policy write` refuses."""
    return list(_parse_policy(hcl))


# Every emulator and every namespace parses the same "default" policy, and tests
# write the same few policies over and over. Rules are immutable; a refused
# policy raises and is not cached.
@functools.lru_cache(maxsize=256)
def _parse_policy(hcl: str) -> tuple[Rule, ...]:
    merged: dict[str, set[str]] = {}
    for key, label, value in _HclParser(hcl).statements(None):
        if key != "path":
            continue
        if label is None or not isinstance(value, list):
            raise ValueError('policy: expected path "<glob>" { ... }')
        if "*" in label[:-1]:
            raise ValueError(f"policy: path {label!r}: '*' is only allowed at the end")
        capabilities: list[str] = []
        for attr, _, attr_value in value:
            if attr == "capabilities":
                if not isinstance(attr_value, list) or not all(
                    isinstance(c, str) for c in attr_value
                ):
                    raise ValueError(f"policy: path {label!r}: capabilities must be a list")
                capabilities.extend(attr_value)
        unknown = set(capabilities) - CAPABILITIES
        if unknown:
            raise ValueError(f"policy: path {label!r}: invalid capabilities {sorted(unknown)}")
        merged.setdefault(label, set()).update(capabilities)
    return tuple(Rule(pattern, frozenset(caps)) for pattern, caps in merged.items())


class Acl:
    """The merged rules of a token's policies (or root, which may do anything)."""

    def __init__(self, policies: Iterable[list[Rule]], *, root: bool = False) -> None:
        self.root = root
        merged: dict[str, set[str]] = {}
        for rules in policies:
            for rule in rules:
                merged.setdefault(rule.pattern, set()).update(rule.capabilities)
        self.rules = [Rule(pattern, frozenset(caps)) for pattern, caps in merged.items()]

    def capabilities(self, path: str) -> list[str]:
        """What the token may do on `path`: ["root"], ["deny"] or the sorted capabilities."""
        if self.root:
            return ["root"]
        path = path.lstrip("/")
        matching = [rule for rule in self.rules if rule.matches(path)]
        if not matching:
            return ["deny"]
        best = max(matching, key=Rule.priority)
        if "deny" in best.capabilities or not best.capabilities:
            return ["deny"]
        return sorted(best.capabilities)

    def allows(self, path: str, capability: str) -> bool:
        capabilities = self.capabilities(path)
        return "root" in capabilities or capability in capabilities

    def has_mount_access(self, mount_path: str) -> bool:
        """OpenBao's hasMountAccess: any grant on the mount itself or on a path beneath it."""
        if self.root or self.capabilities(mount_path) != ["deny"]:
            return True
        granted = CAPABILITIES - {"deny"}
        mount_segments = mount_path.rstrip("/").split("/")
        for rule in self.rules:
            if "deny" in rule.capabilities or not rule.capabilities & granted:
                continue
            body = rule.pattern[:-1] if rule.glob else rule.pattern
            if body.startswith(mount_path):
                return True
            segments = body.split("/")
            if (
                "+" in segments
                and len(segments) >= len(mount_segments)
                and all(
                    want in ("+", got) for want, got in zip(segments, mount_segments, strict=False)
                )
            ):
                return True
        return False
