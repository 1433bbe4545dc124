"""The key catalogue: which tables and keys may appear in the file and the environment.

Also which keys are two ways of saying one thing (a value or its `*_file`,
an interval or a cron), and which hold paths relative to the config file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from pydantic import BaseModel

from rotator.config._connections import MoniteSettings, VaultSettings
from rotator.config._messages import suggest
from rotator.config._policy import PolicyInput, RuleInput
from rotator.config._schema import HealthSettings, LogSettings, RotationSettings, ScheduleSettings
from rotator.errors import ConfigError

GROUP_MODELS: Mapping[str, type[BaseModel]] = {
    "monite": MoniteSettings,
    "vault": VaultSettings,
    "policy": PolicyInput,
    "schedule": ScheduleSettings,
    "rotation": RotationSettings,
    "log": LogSettings,
    "health": HealthSettings,
}
GROUPS: tuple[str, ...] = tuple(GROUP_MODELS)

# (group, value key, file key, systemd credential name)
SECRET_SOURCES: tuple[tuple[str, str, str, str], ...] = (
    ("monite", "client_secret", "client_secret_file", "monite_client_secret"),
    ("monite", "client_id", "client_id_file", "monite_client_id"),
    ("vault", "token", "token_file", "vault_token"),
    ("vault", "role_id", "role_id_file", "vault_role_id"),
    ("vault", "secret_id", "secret_id_file", "vault_secret_id"),
)

# Keys that say the same thing two ways: a higher source setting one replaces
# both from lower sources; one source setting both is a conflict.
_ALTERNATIVE_PAIRS: tuple[tuple[str, str, str], ...] = (
    *((group, key, file_key) for group, key, file_key, _ in SECRET_SOURCES),
    ("schedule", "interval", "cron"),
)
ALTERNATIVES: Mapping[tuple[str, str], str] = {
    **{(group, a): b for group, a, b in _ALTERNATIVE_PAIRS},
    **{(group, b): a for group, a, b in _ALTERNATIVE_PAIRS},
}

PATH_KEYS = frozenset(
    {
        "ca_cert",
        "client_cert",
        "client_key",
        "jwt_file",
        *(file_key for _, _, file_key, _ in SECRET_SOURCES),
    }
)


def group_keys(group: str) -> tuple[str, ...]:
    """Every key allowed in `[group]`, including the `*_file` forms of secrets."""
    keys = list(GROUP_MODELS[group].model_fields)
    keys += [file_key for g, _, file_key, _ in SECRET_SOURCES if g == group]
    return tuple(keys)


RULE_KEYS: tuple[str, ...] = tuple(RuleInput.model_fields)

# The keys a [[hooks]] table may hold; its `secret` comes only from `secret_file`.
# Hooks are a list of tables, set only in the config file (the environment
# cannot express one).
HOOKS: Final = "hooks"
HOOK_KEYS: tuple[str, ...] = ("url", "command", "secret_file", "timeout", "name")
HOOK_PATH_KEYS = frozenset({"secret_file"})


def unknown_key(key: str, where: str, allowed: Iterable[str]) -> ConfigError:
    allowed = tuple(allowed)
    hint = suggest(key, allowed) or f"; valid keys: {', '.join(allowed)}"
    return ConfigError(f"unknown key {key!r} in {where}{hint}")
