"""The entry point: `load_settings` reads every source, merges, validates once, raises one line."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rotator.config._env import env_layer, resolve_config_path, vault_layer
from rotator.config._keys import GROUPS, HOOKS
from rotator.config._layers import merge
from rotator.config._messages import one_line_errors
from rotator.config._policy import PolicyInput
from rotator.config._schema import DEFAULT_POLICY, Settings
from rotator.config._secrets import (
    ExposedFile,
    exposed_key_files,
    resolve_hook_secrets,
    resolve_secrets,
)
from rotator.config._toml import file_layer
from rotator.config._types import LOADING
from rotator.errors import ConfigError


def load_settings(
    path: Path | None,
    environ: Mapping[str, str],
    *,
    exposed: list[ExposedFile] | None = None,
) -> Settings:
    """Build the settings from the file and `environ`; never reads os.environ itself.

    Raises ConfigError with a one-line message naming the key and the fix.
    `exposed` (when given) receives every secret file that users other than its
    owner may read or write, for the caller to warn about once logging is set up.
    """
    config_path = resolve_config_path(path, environ)
    layers = [] if config_path is None else [file_layer(config_path)]
    layers += [vault_layer(environ), env_layer(environ)]
    raw, origins = merge(layers)
    found: list[ExposedFile] = []
    resolve_secrets(raw, origins, environ, found)
    # Only the file holds [[hooks]]; the highest source that has them wins.
    given = next((layer.hooks for layer in reversed(layers) if layer.hooks is not None), [])
    hooks = resolve_hook_secrets(given, found)

    problems: list[tuple[Any, str]] = []
    policy = DEFAULT_POLICY
    try:
        policy = PolicyInput.model_validate(raw["policy"], context=LOADING).to_policy()
    except ValidationError as exc:
        problems += one_line_errors(exc, ("policy",), origins, no_file=config_path is None)

    settings: Settings | None = None
    try:
        settings = Settings.model_validate({**raw, "policy": policy, HOOKS: hooks}, context=LOADING)
    except ValidationError as exc:
        problems += one_line_errors(exc, (), origins, no_file=config_path is None)

    if problems or settings is None:
        # Report in file order, so fixing top to bottom works.
        order = {group: index for index, group in enumerate((*GROUPS, HOOKS))}
        problems.sort(key=lambda item: order.get(str(item[0][0]), -1) if item[0] else -1)
        message = problems[0][1] if problems else "invalid configuration"
        more = len(problems) - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise ConfigError(message)
    if exposed is not None:
        exposed += found + exposed_key_files(settings.vault)
    return settings
