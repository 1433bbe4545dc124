"""An OpenBao (Vault API) emulator on loopback: real HTTP, driven by hvac like a real server.

This package's face: import from `rotator.sandbox.vault`, not its modules.
It owns the Vault side of the sandbox, one module a concern:

- `emulator`: `VaultEmulator`, its lifecycle and administration without HTTP
- `state`: the state every layer shares, the clock, the seal, fault knobs
- `namespaces`: what a namespace holds (mounts, policies, AppRole mounts)
- `tokens`: the token store, TTL caps, authentication, a token's ACL
- `auth`: AppRole and Kubernetes roles and logins
- `sys_endpoints`: health, seal status, ACL policies, namespaces, UI mounts, capabilities
- `routing`: the request path from the socket to an endpoint, injected faults
- `acl`: ACL policies in the HCL subset the product needs
- `kv`, `kv_v2`: KV mounts, the version 1 and version 2 engines
- `common`: error answers, Go-style parsing and printing

Answers follow OpenBao's (status codes, envelope, error texts), and
tests/sandbox/test_vault_differential.py holds the emulator to a real OpenBao
server request by request: the product's tests prove nothing against a
friendlier server.

Every credential it issues and every KV value stored under "secret" goes
through `record_issued`, so the suite can prove none of them leaks into logs.
"""

from __future__ import annotations

from rotator.sandbox.vault.acl import CAPABILITIES, DEFAULT_POLICY, parse_policy
from rotator.sandbox.vault.common import (
    CAS_MISMATCH,
    CAS_REQUIRED,
    INVALID_APPROLE,
    NAMESPACE_NOT_FOUND,
    PERMISSION_DENIED,
    SEALED,
    UNAVAILABLE_IN_NAMESPACES,
)
from rotator.sandbox.vault.emulator import VaultEmulator
from rotator.sandbox.vault.kv import DEFAULT_MAX_VERSIONS
from rotator.sandbox.vault.state import DEFAULT_TOKEN_TTL, VaultFaults
from rotator.sandbox.vault.sys_endpoints import VAULT_VERSION

__all__ = [
    "CAPABILITIES",
    "CAS_MISMATCH",
    "CAS_REQUIRED",
    "DEFAULT_MAX_VERSIONS",
    "DEFAULT_POLICY",
    "DEFAULT_TOKEN_TTL",
    "INVALID_APPROLE",
    "NAMESPACE_NOT_FOUND",
    "PERMISSION_DENIED",
    "SEALED",
    "UNAVAILABLE_IN_NAMESPACES",
    "VAULT_VERSION",
    "VaultEmulator",
    "VaultFaults",
    "parse_policy",
]
