"""The environment as a source: Vault's own variables and ROTATOR_<GROUP>__<KEY>.

Every ROTATOR_* variable must name a key (typos are refused with a
suggestion, pasted data shown cut short); pydantic-settings routes the names
(`_env_source`, imported only when a ROTATOR_* setting is present).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rotator.config._keys import GROUP_MODELS, GROUPS, HOOKS, group_keys
from rotator.config._layers import Layer, Raw
from rotator.config._messages import Origins
from rotator.errors import ConfigError

ENV_PREFIX = "ROTATOR_"
CONFIG_ENV = "ROTATOR_CONFIG"
# ROTATOR_* variables that are not settings keys, so the typo check lets them through.
RESERVED_ENV = frozenset({CONFIG_ENV})

VAULT_ENV: Mapping[str, str] = {
    "VAULT_ADDR": "address",
    "VAULT_TOKEN": "token",
    "VAULT_NAMESPACE": "namespace",
    "VAULT_CACERT": "ca_cert",
    "VAULT_CLIENT_CERT": "client_cert",
    "VAULT_CLIENT_KEY": "client_key",
}


def resolve_config_path(path: Path | None, environ: Mapping[str, str]) -> Path | None:
    """The config file to read: `path`, else `$ROTATOR_CONFIG`, else None (environment only)."""
    if path is not None:
        return path
    from_env = environ.get(CONFIG_ENV)
    return Path(from_env) if from_env else None


def vault_layer(environ: Mapping[str, str]) -> Layer:
    table: dict[str, Any] = {}
    origins: Origins = {}
    for name, key in VAULT_ENV.items():
        value = environ.get(name)
        if value:  # the vault CLI treats an empty variable as unset, so do we
            table[key] = value
            origins[("vault", key)] = name
    return Layer(name="Vault's environment variables", data={"vault": table}, origins=origins)


# A part of a ROTATOR_* name that is longer than this and names no group or key
# may be pasted data (a secret typed as `ROTATOR_<secret>=...`): only its first
# characters are shown. A long typo still gets its "did you mean" suggestion.
_MAX_SHOWN_PART = 16


def _shown_part(part: str) -> str:
    known = {*GROUPS, *(k for g in GROUPS for k in group_keys(g))}
    if len(part) <= _MAX_SHOWN_PART or part.lower() in known:
        return part
    return f"{part[:4]}…({len(part)} characters)"


def _shown_env_name(name: str) -> str:
    """`name` for a message, with any part that looks like pasted data cut short.

    Judged on the unknown parts together: a secret that happens to contain `__`
    splits into short parts, and each must not pass on its own.
    """
    known = {*GROUPS, *(k for g in GROUPS for k in group_keys(g))}
    parts = name[len(ENV_PREFIX) :].split("__")
    unknown = sum(len(p) for p in parts if p.lower() not in known)
    if unknown <= _MAX_SHOWN_PART:
        return name
    return name[: len(ENV_PREFIX)] + "__".join(
        p if p.lower() in known else f"{p[:4]}…({len(p)} characters)" for p in parts
    )


def _env_names(environ: Mapping[str, str]) -> Origins:
    """Map every ROTATOR_* variable to its key, rejecting any that names no key."""
    names: Origins = {}
    shape = "write ROTATOR_<GROUP>__<KEY>, like ROTATOR_MONITE__CLIENT_ID"
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in RESERVED_ENV:
            continue
        shown = _shown_env_name(name)
        parts = upper[len(ENV_PREFIX) :].split("__")
        if parts[0] == HOOKS.upper() and all(parts):
            parts = parts[:2]  # ROTATOR_HOOKS__0__URL: said below, hooks live in the file
        if len(parts) != 2 or not all(parts):
            hint = (
                "; set rules as one JSON array in ROTATOR_POLICY__RULES"
                if upper.startswith("ROTATOR_POLICY__RULES__")
                else ""
            )
            raise ConfigError(f"environment variable {shown} is not a setting; {shape}{hint}")
        group, key = parts[0].lower(), parts[1].lower()
        if group == HOOKS:
            raise ConfigError(
                f"environment variable {shown}: hooks are set only in the config file, as "
                "[[hooks]] tables (the environment cannot hold a list of tables)"
            )
        if group not in GROUP_MODELS:
            close = difflib.get_close_matches(group, GROUPS, n=1, cutoff=0.6)
            hint = (
                f"did you mean {_shown_env_name(f'{ENV_PREFIX}{close[0].upper()}__{key.upper()}')}?"
                if close
                else "groups are " + ", ".join(g.upper() for g in GROUPS)
            )
            raise ConfigError(
                f"unknown environment variable {shown}: no group {_shown_part(group)!r}; {hint}"
            )
        if key not in group_keys(group):
            close = difflib.get_close_matches(key, group_keys(group), n=1, cutoff=0.6)
            hint = (
                f"did you mean {ENV_PREFIX}{group.upper()}__{close[0].upper()}?"
                if close
                else "valid keys: " + ", ".join(group_keys(group))
            )
            raise ConfigError(
                f"unknown environment variable {shown}: [{group}] has no key "
                f"{_shown_part(key)!r}; {hint}"
            )
        if (group, key) in names:
            raise ConfigError(f"{names[(group, key)]} and {name} both set {group}.{key}; keep one")
        names[(group, key)] = name
    return names


def env_layer(environ: Mapping[str, str]) -> Layer:
    origins = _env_names(environ)
    data: Raw = {group: {} for group in GROUPS}
    if origins:
        from rotator.config._env_source import MappingEnvSource

        exploded = MappingEnvSource(environ)()
        for group, table in exploded.items():
            if isinstance(table, Mapping):
                data[group] = {key: table[key] for key in table if (group, key) in origins}
    return Layer(name="the environment", data=data, origins=origins)
