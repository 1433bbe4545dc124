"""Settings: one frozen, grouped tree, loaded from TOML + environment + secret files.

Validation happens here and only here; every failure is a ConfigError whose
one-line message names the key and says how to fix it.
"""
# STUB: field names fixed, loading to be written.

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from rotator.model import Secret
from rotator.policy import Policy


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class MoniteSettings(_Group):
    base_url: str = "https://api.sandbox.monite.com/v1"
    api_version: str = "2024-05-25"
    client_id: str
    client_secret: Secret
    timeout: timedelta = timedelta(seconds=10)  # per request
    max_retries: int = 4  # retries after the first attempt, per request
    page_size: int = 100
    max_pages: int = 1000


class VaultSettings(_Group):
    address: str
    token: Secret | None = None
    auth_method: Literal["token"] = "token"
    namespace: str | None = None
    ca_cert: Path | None = None
    mount: str = "secret"
    path_prefix: str = "monite/webhooks"
    timeout: timedelta = timedelta(seconds=10)
    max_retries: int = 4


class ScheduleSettings(_Group):
    interval: timedelta | None = timedelta(minutes=15)
    cron: str | None = None
    jitter: timedelta = timedelta(0)


class RotationSettings(_Group):
    claim_ttl: timedelta = timedelta(minutes=2)
    concurrency: int = 8
    owner: str = ""  # who claims; default "<hostname>:<pid>"
    commit_retry_for: timedelta = timedelta(minutes=10)  # how long a commit is retried


class LogSettings(_Group):
    format: Literal["json", "console"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Settings(_Group):
    monite: MoniteSettings
    vault: VaultSettings
    policy: Policy
    schedule: ScheduleSettings = ScheduleSettings()
    rotation: RotationSettings = RotationSettings()
    log: LogSettings = LogSettings()


def load_settings(path: Path | None, environ: Mapping[str, str]) -> Settings:
    raise NotImplementedError
