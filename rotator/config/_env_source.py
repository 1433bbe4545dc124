"""pydantic-settings' routing of `ROTATOR_<GROUP>__<KEY>` names into per-group tables.

Its own module so that pydantic-settings (and asyncio, which it imports) loads
only when the environment holds a ROTATOR_* setting (`_env.env_layer`).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from rotator.config._env import ENV_PREFIX


class EnvShape(BaseSettings):
    """The shape pydantic-settings explodes `ROTATOR_<GROUP>__<KEY>` into: raw strings per group.

    Typing happens later, once, for every source alike; this only routes names.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False
    )

    monite: dict[str, str] = {}
    vault: dict[str, str] = {}
    policy: dict[str, str] = {}
    schedule: dict[str, str] = {}
    rotation: dict[str, str] = {}
    log: dict[str, str] = {}
    health: dict[str, str] = {}


class MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of os.environ.

    Public API only (no private method overridden): the constructor loads
    os.environ into the source's `env_vars`, as it always does; that is replaced
    at once, before anything reads it, by the ROTATOR_* entries of `environ`,
    lower-cased as a case-insensitive source keys them. Calling the source then
    explodes `ROTATOR_<GROUP>__<KEY>` into per-group tables.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(
            EnvShape, case_sensitive=False, env_prefix=ENV_PREFIX, env_nested_delimiter="__"
        )
        self.env_vars = {
            name.lower(): value
            for name, value in environ.items()
            if name.upper().startswith(ENV_PREFIX)
        }
