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

Validation happens here and only here; every failure is a ConfigError whose
one-line message names the key, the problem and the fix, and never a value
that could be a secret. Files are read only when they are regular files and
only up to a cap (CONFIG_FILE_LIMIT, SECRET_FILE_LIMIT), so a FIFO, a device
or a huge file is a ConfigError at once, never a hang or a MemoryError.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self
from urllib.parse import urlsplit

from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from rotator.errors import ConfigError
from rotator.model import (
    DEFAULT_CLAIM_TTL,
    DEFAULT_MAX_CLAIM_TTL,
    MONITE_OBJECT_TYPES,
    Secret,
    format_duration,
    parse_duration,
)
from rotator.policy import Policy, Rule

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

AUTH_METHODS: tuple[str, ...] = ("token", "approle", "kubernetes")
DEFAULT_JWT_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")

# Keys that only mean something for one auth method: setting one for another
# method is a mistake worth stopping for (the operator expected it to be used).
_METHOD_KEYS: Mapping[str, str] = {
    "token": "token",
    "role_id": "approle",
    "secret_id": "approle",
    "role": "kubernetes",
    "jwt_file": "kubernetes",
}


DEFAULT_POLICY = Policy(max_age=timedelta(days=30))

# Validation context set by load_settings. Checks that only make sense for
# operator input (client id is a UUID, a token exists, the CA file exists) run
# only under it, so code and tests can build settings for emulators directly.
_LOADING: Mapping[str, bool] = {"loading": True}

_DURATION_FORMAT = (
    'a number and a unit (ms, s, m, h, d, w) in quotes, like "90s", "15m", "12h" or "30d"'
)


class _Problem(ValueError):
    """A failure found by a model-level check, carrying the key it is about.

    Pydantic reports model-level errors at the model's location; `loc` lets the
    message still name the exact key.
    """

    def __init__(self, loc: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


# ---------------------------------------------------------------------------
# Field types
# ---------------------------------------------------------------------------


def _to_duration(value: object) -> object:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError:
            raise ValueError(f"is not a duration; write {_DURATION_FORMAT}") from None
    if isinstance(value, int | float):
        # Pydantic turns only ValueError into a validation error, hence not TypeError.
        raise ValueError(f"must be a duration string with a unit; write {_DURATION_FORMAT}")  # noqa: TRY004
    raise ValueError(f"must be a duration; write {_DURATION_FORMAT}")


def _to_optional_duration(value: object) -> object:
    return None if value is None else _to_duration(value)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError('must be greater than zero, like "90s"')
    return value


def _optional_positive(value: timedelta | None) -> timedelta | None:
    return None if value is None else _positive(value)


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError('must not be negative; use "0s" for none')
    return value


def _no_bool(value: object) -> object:
    # bool is an int subclass: `concurrency = true` must not quietly mean 1.
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not true/false")  # noqa: TRY004
    return value


def _between(low: int, high: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return check


def _secret_text(value: str) -> str:
    """A secret as typed, without the whitespace around it; raises on what cannot be sent.

    Whitespace around a value is an accident of how it was stored (`kubectl
    create secret --from-file`, `echo` into a file, `VAULT_TOKEN=$'...\\n'`) and
    is never part of a Monite or Vault credential, so it is dropped. What is
    left must be one word of printable characters: a control character or a
    space inside would make the HTTP library reject the header and quote the
    value in its error text. The message never shows the value.
    """
    text = value.strip()
    if not text:
        raise ValueError("must not be empty")
    if any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError(
            "contains a line break, a space or another control character inside the value; "
            "write the value alone, on one line"
        )
    return text


def _to_secret(value: object) -> object:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(_secret_text(value))
    raise ValueError("must be a string")


def _to_optional_secret(value: object) -> object:
    return None if value is None else _to_secret(value)


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _http_url(example: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f'must be an http(s) URL, like "{example}"')
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not contain credentials; configure them in their own keys")
        if "?" in value or "#" in value or any(c.isspace() for c in value):
            raise ValueError(
                f'must be a plain URL without query, fragment or spaces, like "{example}"'
            )
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when asked
        except ValueError:
            raise ValueError(f'has an invalid port; write it like "{example}"') from None
        return value.rstrip("/")

    return check


def _api_version(value: str) -> str:
    problem = 'must be a date like "2024-05-25" (YYYY-MM-DD)'
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) is None:
        raise ValueError(problem)
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError(problem) from None
    return value


def _kv_path(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    if value.startswith("/") or value.endswith("/"):
        raise ValueError('must not start or end with "/"; write it like "monite/webhooks"')
    if "//" in value or any(c.isspace() for c in value):
        raise ValueError('must be "/"-separated names without empty parts or spaces')
    return value


def _optional_kv_path(value: str | None) -> str | None:
    return None if value is None else _kv_path(value)


Duration = Annotated[timedelta, BeforeValidator(_to_duration)]
PositiveDuration = Annotated[timedelta, BeforeValidator(_to_duration), AfterValidator(_positive)]
NonNegativeDuration = Annotated[
    timedelta, BeforeValidator(_to_duration), AfterValidator(_not_negative)
]


Retries = Annotated[int, BeforeValidator(_no_bool), AfterValidator(_between(0, 10))]
PageSize = Annotated[int, BeforeValidator(_no_bool), AfterValidator(_between(1, 100))]
PageLimit = Annotated[int, BeforeValidator(_no_bool), AfterValidator(_between(1, 1_000_000))]
Concurrency = Annotated[int, BeforeValidator(_no_bool), AfterValidator(_between(1, 256))]
PoolSize = Annotated[int, BeforeValidator(_no_bool), AfterValidator(_between(1, 64))]
Burst = Annotated[int, BeforeValidator(_no_bool), AfterValidator(_between(1, 100))]
RotationCap = Annotated[int, BeforeValidator(_no_bool), AfterValidator(_between(0, 1_000_000))]


def _rate(value: float) -> float:
    if not 0 < value <= 1000:
        raise ValueError("must be a number of requests per second between 0 and 1000, like 25")
    return value


Rate = Annotated[float, BeforeValidator(_no_bool), AfterValidator(_rate)]


_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def _loading(info: ValidationInfo) -> bool:
    return isinstance(info.context, Mapping) and bool(info.context.get("loading"))


# ---------------------------------------------------------------------------
# Settings groups
# ---------------------------------------------------------------------------


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class MoniteSettings(_Group):
    base_url: Annotated[str, AfterValidator(_http_url("https://api.sandbox.monite.com/v1"))] = (
        "https://api.sandbox.monite.com/v1"
    )
    api_version: Annotated[str, AfterValidator(_api_version)] = "2024-05-25"
    # Empty only while credentials_path names where the real ones are; the
    # engine fills them from Vault before any client sees them.
    client_id: str = ""
    client_secret: Annotated[Secret, BeforeValidator(_to_secret)] = Secret("")
    credentials_path: Annotated[str | None, AfterValidator(_optional_kv_path)] = None
    timeout: PositiveDuration = timedelta(seconds=10)  # per request
    max_retries: Retries = 4  # retries after the first attempt, per request
    page_size: PageSize = 100
    max_pages: PageLimit = 1000
    # Client-side limit, requests per second for all callers together. Monite allows
    # 30/s by default (less in sandbox); a little headroom means steady work never
    # meets a 429. A 429 or RateLimit-Remaining: 0 still pauses every caller.
    rate_limit: Rate = 29.0
    rate_burst: Burst = 1

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str, info: ValidationInfo) -> str:
        value = _secret_text(value)  # it may come from a file or a credential, like the secret
        # Emulators and tests use readable ids; real Monite client ids are UUIDs.
        if _loading(info) and _UUID.fullmatch(value) is None:
            raise ValueError(
                "must be a UUID (the API client id from the Monite partner portal), "
                "like 3fa85f64-5717-4562-b3fc-2c963f66afa6"
            )
        return value

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        given = [k for k in ("client_id", "client_secret") if k in self.model_fields_set]
        if self.credentials_path is not None:
            if given:
                raise _Problem(
                    ("credentials_path",),
                    f"set monite.credentials_path or monite.{given[0]}, not both; the "
                    "credentials come from Vault when credentials_path is set, so remove "
                    f"monite.{given[0]} (or its file, variable or systemd credential)",
                )
            return self
        for key in ("client_id", "client_secret"):
            if key not in self.model_fields_set:
                raise _Problem((key,), _MISSING_HINTS[("monite", key)])
        return self


class VaultSettings(_Group):
    address: Annotated[str, AfterValidator(_http_url("https://vault.example:8200"))]
    auth_method: Annotated[Literal["token", "approle", "kubernetes"], BeforeValidator(_lower)] = (
        "token"
    )
    # Where the login method is mounted, without "auth/"; default: the method's name.
    auth_mount: Annotated[str | None, AfterValidator(_optional_kv_path)] = None
    token: Annotated[Secret | None, BeforeValidator(_to_optional_secret)] = None
    role_id: Annotated[Secret | None, BeforeValidator(_to_optional_secret)] = None
    secret_id: Annotated[Secret | None, BeforeValidator(_to_optional_secret)] = None
    role: str | None = None  # the Vault Kubernetes auth role
    # Read at every login: the kubelet rotates projected service account tokens.
    jwt_file: Path = DEFAULT_JWT_FILE
    namespace: str | None = None
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    mount: Annotated[str, AfterValidator(_kv_path)] = "secret"
    path_prefix: Annotated[str, AfterValidator(_kv_path)] = "monite/webhooks"
    timeout: PositiveDuration = timedelta(seconds=10)
    max_retries: Retries = 4
    # hvac clients are not thread-safe: one per worker thread, this many threads.
    pool_size: PoolSize = 8

    @property
    def login_mount(self) -> str:
        """The auth mount logins go to: `auth_mount`, else the method's own name."""
        return self.auth_mount or self.auth_method

    @field_validator("namespace", "role")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("ca_cert")
    @classmethod
    def _ca_cert(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and _loading(info) and not value.is_file():
            raise ValueError(f"file {value} does not exist; give the path of a PEM CA bundle")
        return value

    @field_validator("client_cert", "client_key")
    @classmethod
    def _client_tls(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and _loading(info) and not value.is_file():
            what = "certificate" if info.field_name == "client_cert" else "private key"
            raise ValueError(f"file {value} does not exist; give the path of the PEM client {what}")
        return value

    @model_validator(mode="after")
    def _auth_complete(self, info: ValidationInfo) -> Self:
        method = self.auth_method
        for key, owner in _METHOD_KEYS.items():
            if owner != method and key in self.model_fields_set and getattr(self, key) is not None:
                raise _Problem(
                    (key,),
                    f"only used when auth_method is {owner} (it is {method}); remove it, or "
                    f'set vault.auth_method = "{owner}"',
                )
        if self.auth_mount is not None and method == "token":
            raise _Problem(
                ("auth_mount",),
                "only used when auth_method is approle or kubernetes (token auth is always "
                "at auth/token); remove it",
            )
        if (self.client_cert is None) != (self.client_key is None):
            missing = "client_key" if self.client_key is None else "client_cert"
            given = "client_cert" if missing == "client_key" else "client_key"
            raise _Problem(
                (missing,),
                f"required with vault.{given}: TLS client authentication needs both the "
                f"certificate and its key; set vault.{missing} (or VAULT_{missing.upper()}) "
                f"or remove vault.{given}",
            )
        if not _loading(info):
            return self
        if method == "token" and self.token is None:
            raise _Problem(
                ("token",),
                "required when auth_method is token; set VAULT_TOKEN, vault.token_file, "
                "a systemd credential named vault_token, or run `vault login` for ~/.vault-token",
            )
        if method == "approle":
            if self.role_id is None:
                raise _Problem(
                    ("role_id",),
                    "required when auth_method is approle; set role_id in [vault], "
                    "vault.role_id_file, ROTATOR_VAULT__ROLE_ID or a systemd credential "
                    "named vault_role_id (from `vault read auth/approle/role/NAME/role-id`)",
                )
            if self.secret_id is None:
                raise _Problem(
                    ("secret_id",),
                    "required when auth_method is approle; set vault.secret_id_file, "
                    "ROTATOR_VAULT__SECRET_ID or a systemd credential named vault_secret_id "
                    "(from `vault write -f auth/approle/role/NAME/secret-id`)",
                )
        if method == "kubernetes":
            if self.role is None:
                raise _Problem(
                    ("role",),
                    "required when auth_method is kubernetes; set role in [vault] or "
                    "ROTATOR_VAULT__ROLE to the Vault Kubernetes auth role bound to this "
                    "service account",
                )
            if not self.jwt_file.is_file():
                raise _Problem(
                    ("jwt_file",),
                    f"file {self.jwt_file} does not exist; mount the service account token "
                    "(automountServiceAccountToken or a projected volume) or set vault.jwt_file",
                )
        return self


# Crontab weekday names, Sunday first as crontab(5) numbers them (0 and 7 = Sunday).
_WEEKDAYS: tuple[str, ...] = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def cron_trigger(expr: str, *, jitter: int | None = None) -> CronTrigger:
    """A CronTrigger that reads `expr` as crontab(5) does, in UTC.

    APScheduler 3.x numbers weekdays from Monday = 0 (its `from_crontab` keeps
    that historical mismatch); crontab numbers them from Sunday = 0 (and 7).
    Numeric weekdays are translated to names, so "0 3 * * 1" means Monday.
    """
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"{len(fields)} fields instead of 5")
    minute, hour, day, month, day_of_week = fields
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=crontab_weekdays(day_of_week),
        timezone=UTC,
        jitter=jitter,
    )


def crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field as APScheduler weekday names; unknown forms pass through."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in field.lower().split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            return field
        if span == "*":
            first, last = 0, 6
        else:
            low, dash, high = span.partition("-")
            first_day, last_day = _weekday(low), _weekday(high) if dash else None
            if first_day is None or (dash and last_day is None):
                return field
            first = first_day
            # "5/2" in crontab means from Friday to the end of the week, every 2nd day.
            last = last_day if last_day is not None else (6 if step else first_day)
            if last == 0 and first > 0:
                last = 7  # a range ending in Sunday by name or as 0, like "fri-sun" or "5-0"
            if first > last:
                return field
        for number in range(first, last + 1, step or 1):
            days.add(number % 7)
    return ",".join(_WEEKDAYS[d] for d in sorted(days))


def _weekday(text: str) -> int | None:
    """A crontab weekday as 0 (Sunday) to 7 (Sunday again): 7 stays 7, so "0-7" spans the week."""
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text)
    if text[:3] in _WEEKDAYS and len(text) == 3:
        return _WEEKDAYS.index(text)
    return None


class ScheduleSettings(_Group):
    interval: Annotated[
        timedelta | None,
        BeforeValidator(_to_optional_duration),
        AfterValidator(_optional_positive),
    ] = timedelta(minutes=15)
    cron: str | None = None
    jitter: NonNegativeDuration = timedelta(0)

    @model_validator(mode="before")
    @classmethod
    def _one_trigger(cls, data: Any) -> Any:
        # The interval has a default, so choosing cron must clear it; only an
        # interval the user wrote alongside a cron is a conflict.
        if isinstance(data, Mapping) and data.get("cron") is not None:
            if data.get("interval") is not None:
                raise _Problem(
                    ("cron",), "set schedule.interval or schedule.cron, not both; remove one"
                )
            return {**data, "interval": None}
        return data

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        fields = value.split()
        if len(fields) == 5 and fields[2] not in ("*", "?") and fields[4] not in ("*", "?"):
            # crontab(5) fires when EITHER day field matches; APScheduler needs BOTH.
            raise ValueError(
                "restricts both day-of-month and day-of-week, which crontab and the "
                "scheduler read differently (either vs both); restrict only one of them"
            )
        try:
            cron_trigger(value)
        except (ValueError, TypeError) as exc:
            reason = " ".join(str(exc).split())
            raise ValueError(
                f'is not a valid cron expression ({reason}); write 5 fields, "minute hour '
                'day month weekday", like "*/15 * * * *"'
            ) from None
        return value

    @model_validator(mode="after")
    def _has_trigger(self) -> Self:
        if self.interval is None and self.cron is None:
            raise _Problem(("interval",), 'set schedule.interval (like "15m") or schedule.cron')
        return self


class RotationSettings(_Group):
    claim_ttl: PositiveDuration = DEFAULT_CLAIM_TTL
    # No claim fences a record longer than this, whatever a record says: a
    # replica with a wild clock or ttl cannot lock a subscription out for a year.
    max_claim_ttl: PositiveDuration = DEFAULT_MAX_CLAIM_TTL
    concurrency: Concurrency = 8
    owner: str = ""  # who claims; default "<hostname>:<pid>"
    commit_retry_for: PositiveDuration = timedelta(minutes=10)  # how long a commit is retried
    # How long SIGTERM waits for in-flight rotations: below Kubernetes' default 30s grace.
    shutdown_timeout: PositiveDuration = timedelta(seconds=25)
    # Spread a mass rotation over several cycles (oldest secrets first); 0 = no cap.
    max_rotations_per_cycle: RotationCap = 0
    # Records are cached between cycles and read again in full this often; the
    # daemon's own writes keep the cache current in between.
    cache_refresh: PositiveDuration = timedelta(hours=1)


class LogSettings(_Group):
    format: Annotated[Literal["json", "console"], BeforeValidator(_lower)] = "json"
    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)] = "info"


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    # Port 0 asks the kernel for a free port; the daemon logs the one it got.
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError("must be HOST:PORT, like 127.0.0.1:9464 or 0.0.0.0:9464")
    return value


class HealthSettings(_Group):
    """The /healthz, /readyz and /metrics endpoint of `rotator run`."""

    enabled: bool = True
    listen: Annotated[str, AfterValidator(_listen)] = "127.0.0.1:9464"

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class Settings(_Group):
    monite: MoniteSettings
    vault: VaultSettings
    policy: Policy = DEFAULT_POLICY
    schedule: ScheduleSettings = ScheduleSettings()
    rotation: RotationSettings = RotationSettings()
    log: LogSettings = LogSettings()
    health: HealthSettings = HealthSettings()

    @field_validator("policy", mode="before")
    @classmethod
    def _policy(cls, value: object) -> object:
        # Pydantic would coerce a dict into the dataclass with its own duration
        # rules (30 -> 30 seconds); the [policy] table goes through load_settings.
        if not isinstance(value, Policy):
            raise ValueError("must be a rotator.policy.Policy")  # noqa: TRY004
        return value

    @model_validator(mode="after")
    def _claim_outlives_requests(self) -> Self:
        minimum = self.monite.timeout * 4
        if self.rotation.claim_ttl < minimum:
            raise _Problem(
                ("rotation", "claim_ttl"),
                f"must be at least 4 × monite.timeout ({format_duration(minimum)}), because a "
                "rotation never starts a regenerate unless its claim has 2 × the request "
                "timeout left; raise rotation.claim_ttl or lower monite.timeout",
            )
        if 2 * self.rotation.claim_ttl > self.rotation.max_claim_ttl:
            raise _Problem(
                ("rotation", "claim_ttl"),
                f"must be at most half of rotation.max_claim_ttl "
                f"({format_duration(self.rotation.max_claim_ttl)}), because a rotation that "
                "cannot see an earlier claim settles for 2 × claim_ttl and no window may "
                "exceed max_claim_ttl; lower rotation.claim_ttl or raise rotation.max_claim_ttl",
            )
        return self

    def redacted_dict(self) -> dict[str, Any]:
        """A JSON-able view for `rotator check` and debugging: secrets show as "<secret>"."""
        return {name: _plain(getattr(self, name)) for name in type(self).model_fields}


def _plain(value: object) -> Any:
    if isinstance(value, Secret):
        return "<secret>" if value else None
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name)) for name in type(value).model_fields}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list | frozenset | set):
        return [_plain(item) for item in value]
    return value


# ---------------------------------------------------------------------------
# [policy]: parsed into the pure rotator.policy dataclasses
# ---------------------------------------------------------------------------


class _RuleInput(_Group):
    object_type: str | None = None
    subscription_id: str | None = None
    url: str | None = None
    max_age: Annotated[
        timedelta | None,
        BeforeValidator(_to_optional_duration),
        AfterValidator(_optional_positive),
    ] = None
    skip: bool = False

    @field_validator("object_type")
    @classmethod
    def _object_type(cls, value: str | None) -> str | None:
        if value is not None and value not in MONITE_OBJECT_TYPES:
            hint = _suggest(value, MONITE_OBJECT_TYPES) or "; see Monite's WebhookObjectType"
            raise ValueError(f"{value!r} is not a Monite webhook object type{hint}")
        return value

    @field_validator("subscription_id", "url")
    @classmethod
    def _not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if self.object_type is None and self.subscription_id is None and self.url is None:
            raise _Problem(
                (), "needs at least one matcher: object_type, subscription_id or url (a glob)"
            )
        if self.max_age is not None and self.skip:
            raise _Problem((), "sets both max_age and skip = true; a rule has exactly one effect")
        if self.max_age is None and not self.skip:
            raise _Problem((), 'needs one effect: max_age (like "7d") or skip = true')
        return self

    def to_rule(self) -> Rule:
        return Rule(
            object_type=self.object_type,
            subscription_id=self.subscription_id,
            url=self.url,
            max_age=self.max_age,
            skip=self.skip,
        )


def _rules_from_env(value: object) -> object:
    # The environment can only carry strings: rules come as one JSON array.
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            raise ValueError(
                'must be a JSON array of rule tables, like [{"object_type": "payable", '
                '"max_age": "7d"}]'
            ) from None
    return value


class _PolicyInput(_Group):
    max_age: PositiveDuration = DEFAULT_POLICY.max_age
    unmanaged: Literal["rotate", "skip"] = "rotate"
    include_disabled: bool = False
    rules: Annotated[list[_RuleInput], BeforeValidator(_rules_from_env)] = []

    def to_policy(self) -> Policy:
        return Policy(
            max_age=self.max_age,
            unmanaged=self.unmanaged,
            include_disabled=self.include_disabled,
            rules=tuple(rule.to_rule() for rule in self.rules),
        )


# ---------------------------------------------------------------------------
# Key catalogue: what may appear in the file and the environment
# ---------------------------------------------------------------------------

_GROUP_MODELS: Mapping[str, type[BaseModel]] = {
    "monite": MoniteSettings,
    "vault": VaultSettings,
    "policy": _PolicyInput,
    "schedule": ScheduleSettings,
    "rotation": RotationSettings,
    "log": LogSettings,
    "health": HealthSettings,
}
GROUPS: tuple[str, ...] = tuple(_GROUP_MODELS)

# (group, value key, file key, systemd credential name)
_SECRET_SOURCES: tuple[tuple[str, str, str, str], ...] = (
    ("monite", "client_secret", "client_secret_file", "monite_client_secret"),
    ("monite", "client_id", "client_id_file", "monite_client_id"),
    ("vault", "token", "token_file", "vault_token"),
    ("vault", "role_id", "role_id_file", "vault_role_id"),
    ("vault", "secret_id", "secret_id_file", "vault_secret_id"),
)

# Keys that say the same thing two ways: a higher source setting one replaces
# both from lower sources; one source setting both is a conflict.
_ALTERNATIVE_PAIRS: tuple[tuple[str, str, str], ...] = (
    *((group, key, file_key) for group, key, file_key, _ in _SECRET_SOURCES),
    ("schedule", "interval", "cron"),
)
_ALTERNATIVES: Mapping[tuple[str, str], str] = {
    **{(group, a): b for group, a, b in _ALTERNATIVE_PAIRS},
    **{(group, b): a for group, a, b in _ALTERNATIVE_PAIRS},
}

_PATH_KEYS = frozenset(
    {
        "ca_cert",
        "client_cert",
        "client_key",
        "jwt_file",
        *(file_key for _, _, file_key, _ in _SECRET_SOURCES),
    }
)


def group_keys(group: str) -> tuple[str, ...]:
    """Every key allowed in `[group]`, including the `*_file` forms of secrets."""
    keys = list(_GROUP_MODELS[group].model_fields)
    keys += [file_key for g, _, file_key, _ in _SECRET_SOURCES if g == group]
    return tuple(keys)


_RULE_KEYS: tuple[str, ...] = tuple(_RuleInput.model_fields)


def _suggest(word: str, choices: Iterable[str], fmt: str = "'{}'") -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {fmt.format(close[0])}?" if close else ""


def _unknown_key(key: str, where: str, allowed: Iterable[str]) -> ConfigError:
    allowed = tuple(allowed)
    hint = _suggest(key, allowed) or f"; valid keys: {', '.join(allowed)}"
    return ConfigError(f"unknown key {key!r} in {where}{hint}")


# ---------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------

Raw = dict[str, dict[str, Any]]
Origins = dict[tuple[str, str], str]  # (group, key) -> where it came from, for messages


@dataclasses.dataclass
class _Layer:
    name: str  # "config file X", "environment"
    data: Raw
    origins: Origins  # only for sources worth naming in a message (not the file)


def resolve_config_path(path: Path | None, environ: Mapping[str, str]) -> Path | None:
    """The config file to read: `path`, else `$ROTATOR_CONFIG`, else None (environment only)."""
    if path is not None:
        return path
    from_env = environ.get(CONFIG_ENV)
    return Path(from_env) if from_env else None


# The most read from a file. A config file is a few kilobytes and a secret file
# one value; anything bigger is a wrong path (a log, a disk image, /dev/zero)
# and reading it whole would exhaust memory before saying so.
# The config cap also bounds the time TOML parsing takes (about 0.5 s at worst
# for 256 KiB of hostile TOML); a real config with thousands of rules fits.
CONFIG_FILE_LIMIT: Final = 256 * 1024
SECRET_FILE_LIMIT: Final = 64 * 1024
# tomllib takes time quadratic in the parts of a dotted key (one 20 KB key
# takes over a second); no setting is more than three parts deep, so a line
# with more key dots than this is refused before parsing.
_MAX_KEY_DOTS: Final = 16
# Strings and comments (whose dots are not key dots), line ends, and dots.
# Each string alternative also ends at the end of its line (or of the text) when
# it is never closed: a failed match would be retried at every later quote,
# which makes a hostile file of unclosed quotes quadratic to scan.
_TOML_DOTS = re.compile(
    r'"""(?:\\.|[^\\])*?(?:"{3,5}|\Z)'  # multi-line basic string
    r"|'''.*?(?:'{3,5}|\Z)"  # multi-line literal string
    r'|"(?:\\.|[^"\\\n])*(?:"|(?=\n)|\Z)'  # basic string
    r"|'[^'\n]*(?:'|(?=\n)|\Z)"  # literal string
    r"|#[^\n]*"  # comment
    r"|(\n)|(\.)",
    re.DOTALL,
)
# Permission bits that let users other than the owner read or write a file.
_SHARED_BITS: Final = 0o066


def _size_text(size: int) -> str:
    return f"{size // (1024 * 1024)} MiB" if size >= 1024 * 1024 else f"{size // 1024} KiB"


class _Unreadable(Exception):
    """A file refused before or while reading it: not a regular file, or over the size cap."""


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")


def _read_capped(path: Path, limit: int) -> tuple[bytes, int]:
    """The bytes of the regular file at `path` (at most `limit`) and its mode bits.

    Never blocks and never reads without bound: a FIFO, a device (/dev/zero)
    or a socket is refused before it is opened, and again after (the path may
    have changed in between); the open itself is non-blocking. Raises OSError
    as `open` does (IsADirectoryError for a directory) and _Unreadable.
    """
    too_big = f"is larger than {_size_text(limit)}"
    info = os.stat(path)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(path)
    if not stat.S_ISREG(info.st_mode):
        raise _Unreadable(f"is {_file_kind(info.st_mode)}, not a regular file")
    if info.st_size > limit:
        raise _Unreadable(too_big)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Unreadable(f"is {_file_kind(info.st_mode)}, not a regular file")
        chunks: list[bytes] = []
        left = limit + 1  # one byte more than allowed tells "too big" from "exactly the cap"
        while left > 0:
            chunk = os.read(fd, min(left, 64 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise _Unreadable(too_big)
    return data, info.st_mode


def _read_toml(path: Path) -> dict[str, Any]:
    fix = "pass --config PATH or set ROTATOR_CONFIG"
    try:
        data, _ = _read_capped(path, CONFIG_FILE_LIMIT)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; {fix}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory; {fix} to a file") from None
    except _Unreadable as exc:
        raise ConfigError(
            f"config file {path} {exc}; a config file is a regular file of at most "
            f"{_size_text(CONFIG_FILE_LIMIT)}: check the path ({fix})"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"config file {path} cannot be read ({exc.strerror}); check its permissions"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; save it as UTF-8") from None
    _check_key_dots(text, path)
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ConfigError(
            f"config file {path} nests arrays or inline tables too deeply to read; "
            "no setting needs more than a few levels: flatten it"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        text = " ".join(str(exc).split())
        where = re.search(r"\(at line (\d+), column (\d+)\)$", text)
        if where:
            text = f"line {where[1]}, column {where[2]}: {text[: where.start()].rstrip()}"
        raise ConfigError(f"config file {path} is not valid TOML: {text}") from None


def _check_key_dots(text: str, path: Path) -> None:
    """Refuse a line with more dots outside strings and comments than any key needs."""
    dots = 0
    for match in _TOML_DOTS.finditer(text):
        if match[1]:
            dots = 0
        elif match[2]:
            dots += 1
            if dots > _MAX_KEY_DOTS:
                line = text.count("\n", 0, match.start()) + 1
                raise ConfigError(
                    f"config file {path} line {line}: more than {_MAX_KEY_DOTS} dots outside "
                    "strings, a dotted key deeper than any setting; write it as [table] "
                    "and key = value"
                )


def _file_layer(path: Path) -> _Layer:
    doc = _read_toml(path)
    data: Raw = {}
    for top, value in doc.items():
        if top not in _GROUP_MODELS:
            if isinstance(value, dict):
                hint = _suggest(top, GROUPS, "[{}]") or "; valid tables: " + ", ".join(
                    f"[{g}]" for g in GROUPS
                )
                raise ConfigError(f"unknown table [{top}] in {path}{hint}")
            owners = [g for g in GROUPS if top in group_keys(g)]
            if owners:
                raise ConfigError(
                    f"key {top!r} in {path} is outside any table; put it under [{owners[0]}]"
                )
            raise ConfigError(
                f"unknown key {top!r} at the top of {path}; keys belong in a table: "
                + ", ".join(f"[{g}]" for g in GROUPS)
            )
        if not isinstance(value, dict):
            raise ConfigError(f"{top} in {path} must be a table: write [{top}] on its own line")
        for key in value:
            if key not in group_keys(top):
                raise _unknown_key(key, f"[{top}]", group_keys(top))
        table = dict(value)
        # A relative path in the file means relative to the file, wherever the
        # daemon was started from (systemd and Kubernetes start it from /).
        for key in _PATH_KEYS & table.keys():
            if isinstance(table[key], str) and table[key] and not Path(table[key]).is_absolute():
                table[key] = str(path.parent / table[key])
        data[top] = table
    _check_rule_keys(data.get("policy", {}).get("rules"))
    return _Layer(name=f"config file {path}", data=data, origins={})


def _check_rule_keys(rules: object) -> None:
    if not isinstance(rules, list):
        return  # a wrong type is reported by validation, with its key
    for number, rule in enumerate(rules, start=1):
        if not isinstance(rule, dict):
            raise ConfigError(
                f"[[policy.rules]] #{number} must be a table, like "
                '{ object_type = "payable", max_age = "7d" }'
            )
        for key in rule:
            if key not in _RULE_KEYS:
                raise _unknown_key(key, f"[[policy.rules]] #{number}", _RULE_KEYS)


def _vault_layer(environ: Mapping[str, str]) -> _Layer:
    table: dict[str, Any] = {}
    origins: Origins = {}
    for name, key in VAULT_ENV.items():
        value = environ.get(name)
        if value:  # the vault CLI treats an empty variable as unset, so do we
            table[key] = value
            origins[("vault", key)] = name
    return _Layer(name="Vault's environment variables", data={"vault": table}, origins=origins)


class _EnvShape(BaseSettings):
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


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of os.environ."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ  # read by _load_env_vars during super().__init__
        super().__init__(
            _EnvShape, case_sensitive=False, env_prefix=ENV_PREFIX, env_nested_delimiter="__"
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {
            name.lower(): value
            for name, value in self._environ.items()
            if name.upper().startswith(ENV_PREFIX)
        }


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
        if len(parts) != 2 or not all(parts):
            hint = (
                "; set rules as one JSON array in ROTATOR_POLICY__RULES"
                if upper.startswith("ROTATOR_POLICY__RULES__")
                else ""
            )
            raise ConfigError(f"environment variable {shown} is not a setting; {shape}{hint}")
        group, key = parts[0].lower(), parts[1].lower()
        if group not in _GROUP_MODELS:
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


def _env_layer(environ: Mapping[str, str]) -> _Layer:
    origins = _env_names(environ)
    data: Raw = {group: {} for group in GROUPS}
    if origins:
        exploded = _MappingEnvSource(environ)()
        for group, table in exploded.items():
            if isinstance(table, Mapping):
                data[group] = {key: table[key] for key in table if (group, key) in origins}
    return _Layer(name="the environment", data=data, origins=origins)


def _merge(layers: Iterable[_Layer]) -> tuple[Raw, Origins]:
    raw: Raw = {group: {} for group in GROUPS}
    origins: Origins = {}
    for layer in layers:
        for group, table in layer.data.items():
            target = raw.setdefault(group, {})
            for key, value in table.items():
                other = _ALTERNATIVES.get((group, key))
                if other is not None:
                    if other in table:
                        first, second = sorted((key, other))
                        where = _named(layer, group, first, second)
                        raise ConfigError(
                            f"{group}.{first} and {group}.{second} are both set{where}; keep one"
                        )
                    target.pop(other, None)
                    origins.pop((group, other), None)
                target[key] = value
                origins.pop((group, key), None)
                if (group, key) in layer.origins:
                    origins[(group, key)] = layer.origins[(group, key)]
    return raw, origins


def _named(layer: _Layer, group: str, *keys: str) -> str:
    names = [layer.origins[(group, k)] for k in keys if (group, k) in layer.origins]
    return f" (by {' and '.join(names)})" if names else f" in {layer.name}"


# ---------------------------------------------------------------------------
# Secrets from files
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ExposedFile:
    """A secret file that users other than its owner may read or write.

    Worth a warning, not a refusal: Kubernetes mounts Secrets 0644 unless told
    otherwise. Carries the file's name and mode, never its content.
    """

    # What named the file, as in error messages: "vault.token_file",
    # "monite.client_secret (from systemd credential monite_client_secret)".
    setting: str
    path: str
    mode: int

    def audit_fields(self) -> dict[str, str]:
        """The fields of the `config.secret_file_exposed` audit event."""
        can: list[str] = []
        for who, shift in (("group", 3), ("others", 0)):
            rights = [
                right
                for right, bit in (("read", 0o4), ("write", 0o2))
                if self.mode & (bit << shift)
            ]
            if rights:
                can.append(f"{who} can {' and '.join(rights)} it")
        return {
            "setting": self.setting,
            "file": self.path,
            "mode": f"{stat.S_IMODE(self.mode):04o}",
            "access": "; ".join(can),
            "fix": f"chmod 600 {self.path}, or mount the Kubernetes Secret with defaultMode 0400",
        }


def _read_secret(
    path: Path, key: str, origin: str | None, exposed: list[ExposedFile] | None = None
) -> str:
    where = f"{key}{f' (from {origin})' if origin else ''}"
    try:
        data, mode = _read_capped(path, SECRET_FILE_LIMIT)
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{where}: file {path} does not exist; create it or fix the path"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: {path} is a directory; point it at a file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: file {path} is not UTF-8 text") from None
    except _Unreadable as exc:
        raise ConfigError(
            f"{where}: file {path} {exc}; a secret file is a regular file holding only the "
            f"value (at most {_size_text(SECRET_FILE_LIMIT)}): fix the path"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{where}: file {path} cannot be read ({exc.strerror}); check its permissions"
        ) from None
    if exposed is not None and mode & _SHARED_BITS:
        exposed.append(ExposedFile(where, str(path), mode))
    # Editors, `echo` and `kubectl create secret --from-file` leave a newline
    # (or spaces) around the value: dropped, as for every other source. A line
    # break inside is a malformed file, and sending it to Monite or Vault would
    # fail far from here; other control characters are refused by validation.
    text = text.strip()
    if not text:
        raise ConfigError(f"{where}: file {path} is empty; write the value into it")
    if "\n" in text or "\r" in text:
        raise ConfigError(f"{where}: file {path} has more than one line; keep only the value")
    return text


def _used(raw: Raw, group: str, key: str) -> bool:
    """Whether the implicit sources (systemd credentials, VAULT_TOKEN) should fill `key`.

    A credential lying in $CREDENTIALS_DIRECTORY, or a VAULT_TOKEN left in a
    shell, must not turn into a conflict for a method that does not use it.
    """
    if group == "monite":
        return raw["monite"].get("credentials_path") is None
    owner = _METHOD_KEYS.get(key)
    method = raw["vault"].get("auth_method", "token")
    return owner is None or owner == (method.lower() if isinstance(method, str) else method)


def _resolve_secrets(
    raw: Raw, origins: Origins, environ: Mapping[str, str], exposed: list[ExposedFile]
) -> None:
    if origins.get(("vault", "token")) == "VAULT_TOKEN" and not _used(raw, "vault", "token"):
        del raw["vault"]["token"]
        del origins[("vault", "token")]
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    for group, key, file_key, credential in _SECRET_SOURCES:
        table = raw[group]
        if file_key in table:
            location = table.pop(file_key)
            origin = origins.pop((group, file_key), None)
            if not isinstance(location, str) or not location:
                suffix = f" (from {origin})" if origin else ""
                raise ConfigError(f"{group}.{file_key}{suffix}: must be a file path string")
            table[key] = _read_secret(Path(location), f"{group}.{file_key}", origin, exposed)
            origins[(group, key)] = f"file {location}"
            continue
        if key in table or not credentials or not _used(raw, group, key):
            continue
        path = Path(credentials) / credential
        if path.exists():
            table[key] = _read_secret(
                path, f"{group}.{key}", f"systemd credential {credential}", exposed
            )
            origins[(group, key)] = f"systemd credential {path}"

    vault = raw["vault"]
    home = environ.get("HOME")
    if "token" not in vault and home and _used(raw, "vault", "token"):
        path = Path(home) / ".vault-token"
        if path.is_file():
            vault["token"] = _read_secret(path, "vault.token", str(path), exposed)
            origins[("vault", "token")] = f"file {path}"


# ---------------------------------------------------------------------------
# Validation errors -> one line
# ---------------------------------------------------------------------------

_MISSING_HINTS: Mapping[tuple[str, ...], str] = {
    ("monite", "client_id"): (
        "required; set client_id in [monite], monite.client_id_file or "
        "ROTATOR_MONITE__CLIENT_ID (the API client id from the Monite partner portal), "
        "or monite.credentials_path to read both credentials from Vault"
    ),
    ("monite", "client_secret"): (
        "required; set monite.client_secret_file, ROTATOR_MONITE__CLIENT_SECRET, "
        "a systemd credential named monite_client_secret, or monite.credentials_path "
        "to read both credentials from Vault"
    ),
    ("vault", "address"): (
        'required; set address in [vault] (like "https://vault.example:8200"), VAULT_ADDR '
        "or ROTATOR_VAULT__ADDRESS"
    ),
}

_TYPE_PROBLEMS: Mapping[str, str] = {
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list of tables ([[policy.rules]])",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
    "is_instance_of": "must be a string",
    "path_type": "must be a file path string",
}


def _render_loc(loc: tuple[str | int, ...]) -> str:
    if len(loc) >= 3 and loc[:2] == ("policy", "rules") and isinstance(loc[2], int):
        head = f"[[policy.rules]] #{loc[2] + 1}"
        rest = ".".join(str(part) for part in loc[3:])
        return f"{head} {rest}" if rest else head
    return ".".join(str(part) for part in loc)


# Added to a "required" problem when no config file was read: the usual cause
# is a forgotten --config, not a missing key.
_NO_FILE_HINT = "no config file: pass --config PATH or set ROTATOR_CONFIG"


def _describe(
    error: Mapping[str, Any], origins: Origins, *, no_file: bool = False
) -> tuple[tuple[str | int, ...], str]:
    """One error as (location, message), built from its location and our own text only.

    Pydantic's own rendering includes the input value, which may be a secret.
    `no_file`: no config file was read, so a missing key gets a hint saying so.
    """
    loc: tuple[str | int, ...] = tuple(error["loc"])
    kind: str = error["type"]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _Problem):
        loc = loc + cause.loc
    if kind == "missing":
        key = tuple(str(part) for part in loc)
        problem = _MISSING_HINTS.get(key) or (
            f"required; set {loc[-1]} in [{loc[0]}] or "
            f"ROTATOR_{str(loc[0]).upper()}__{str(loc[-1]).upper()}"
        )
    elif isinstance(cause, ValueError):
        problem = str(cause)
    elif kind == "literal_error":
        expected = (error.get("ctx") or {}).get("expected", "")
        problem = f"must be one of {expected}" if expected else "has a value that is not allowed"
    elif kind == "extra_forbidden":
        problem = "is not a known key; remove it"
    else:
        problem = _TYPE_PROBLEMS.get(kind) or str(error["msg"]).replace(
            "Input should be", "must be"
        )
    if no_file and problem.startswith("required"):
        problem = f"{problem}; {_NO_FILE_HINT}"
    origin = origins.get((str(loc[0]), str(loc[1]))) if len(loc) >= 2 else None
    where = _render_loc(loc) + (f" (from {origin})" if origin else "")
    return loc, f"{where}: {problem}"


def _errors(
    exc: ValidationError, prefix: tuple[str, ...], origins: Origins, *, no_file: bool = False
) -> list[tuple[Any, str]]:
    return [
        _describe({**error, "loc": prefix + tuple(error["loc"])}, origins, no_file=no_file)
        for error in exc.errors(include_url=False, include_input=False)
    ]


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


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
    layers = [] if config_path is None else [_file_layer(config_path)]
    layers += [_vault_layer(environ), _env_layer(environ)]
    raw, origins = _merge(layers)
    found: list[ExposedFile] = []
    _resolve_secrets(raw, origins, environ, found)

    problems: list[tuple[Any, str]] = []
    policy = DEFAULT_POLICY
    try:
        policy = _PolicyInput.model_validate(raw["policy"], context=_LOADING).to_policy()
    except ValidationError as exc:
        problems += _errors(exc, ("policy",), origins, no_file=config_path is None)

    settings: Settings | None = None
    try:
        settings = Settings.model_validate({**raw, "policy": policy}, context=_LOADING)
    except ValidationError as exc:
        problems += _errors(exc, (), origins, no_file=config_path is None)

    if problems or settings is None:
        # Report in file order, so fixing top to bottom works.
        order = {group: index for index, group in enumerate(GROUPS)}
        problems.sort(key=lambda item: order.get(str(item[0][0]), -1) if item[0] else -1)
        message = problems[0][1] if problems else "invalid configuration"
        more = len(problems) - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise ConfigError(message)
    if exposed is not None:
        exposed += found + _exposed_key_files(settings.vault)
    return settings


def _exposed_key_files(vault: VaultSettings) -> list[ExposedFile]:
    """The secret files others read later (the service account token, the TLS client key)."""
    named: list[tuple[str, Path]] = []
    if vault.auth_method == "kubernetes":
        named.append(("vault.jwt_file", vault.jwt_file))
    if vault.client_key is not None:
        named.append(("vault.client_key", vault.client_key))
    found: list[ExposedFile] = []
    for setting, path in named:
        try:
            mode = path.stat().st_mode
        except OSError:
            continue  # validation has seen it; reading it later says what is wrong
        if mode & _SHARED_BITS:
            found.append(ExposedFile(setting, str(path), mode))
    return found
