"""Settings: one frozen, grouped tree, loaded from TOML + environment + secret files.

This module owns the configuration contract: which keys exist, where their
values come from and in what order, and every rule a value must satisfy.

Sources, lowest to highest precedence:

1. defaults (the field defaults below);
2. the TOML file (`--config PATH`, else `$ROTATOR_CONFIG`, else none);
3. Vault's own variables: `VAULT_ADDR`, `VAULT_TOKEN`, `VAULT_NAMESPACE`, `VAULT_CACERT`,
   `VAULT_CLIENT_CERT`, `VAULT_CLIENT_KEY`;
4. `ROTATOR_<GROUP>__<KEY>` variables (case-insensitive), e.g. `ROTATOR_MONITE__CLIENT_ID`.

Secrets can also come from files (`monite.client_secret_file`,
`monite.client_id_file`, `vault.token_file`, `vault.role_id_file`,
`vault.secret_id_file`; a mounted Kubernetes Secret is such a file), from
systemd credentials in `$CREDENTIALS_DIRECTORY` (`monite_client_secret`,
`monite_client_id`, `vault_token`, `vault_role_id`, `vault_secret_id`) and, for
the Vault token only, from `~/.vault-token`. The Monite credentials may instead
live in Vault (`monite.credentials_path`); they are read when the engine opens.
[[hooks]] tables are set only in the TOML file, each hook's HMAC key only from
its `secret_file`.

Validation happens here and only here; every failure is a ConfigError whose
one-line message names the key, the problem and the fix, and never a value
that could be a secret. Files are read only when they are regular files and
only up to a cap (CONFIG_FILE_LIMIT, SECRET_FILE_LIMIT), so a FIFO, a device
or a huge file is a ConfigError at once, never a hang or a MemoryError.

The package's modules each own one part: `_types` (one value's rules),
`_connections` ([monite], [vault]), `_schema` (the `Settings` tree), `_hooks` ([[hooks]]), `_policy`
([policy]), `_cron` (crontab as APScheduler triggers), `_keys` (the key
catalogue), `_files` (bounded reads), `_toml` and `_env` (the sources;
`_env_source` routes ROTATOR_* names with pydantic-settings),
`_layers` (precedence), `_secrets` (secret files and credentials), `_messages`
(one-line errors) and `_load` (`load_settings`). Only the names below are
public.
"""

from __future__ import annotations

from rotator.config._connections import MoniteSettings, VaultSettings
from rotator.config._cron import cron_trigger, crontab_weekdays
from rotator.config._files import CONFIG_FILE_LIMIT, SECRET_FILE_LIMIT
from rotator.config._hooks import HookSettings, hook_names
from rotator.config._keys import GROUPS, HOOK_KEYS, group_keys
from rotator.config._load import load_settings
from rotator.config._schema import (
    DEFAULT_POLICY,
    HealthSettings,
    LogSettings,
    RotationSettings,
    ScheduleSettings,
    Settings,
)
from rotator.config._secrets import ExposedFile

__all__ = [
    "CONFIG_FILE_LIMIT",
    "DEFAULT_POLICY",
    "GROUPS",
    "HOOK_KEYS",
    "SECRET_FILE_LIMIT",
    "ExposedFile",
    "HealthSettings",
    "HookSettings",
    "LogSettings",
    "MoniteSettings",
    "RotationSettings",
    "ScheduleSettings",
    "Settings",
    "VaultSettings",
    "cron_trigger",
    "crontab_weekdays",
    "group_keys",
    "hook_names",
    "load_settings",
]
