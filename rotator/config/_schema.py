"""The settings tree: `Settings` and its scheduling, rotation, log and health groups.

`Settings` is frozen and grouped ([monite], [vault], [policy], [schedule],
[rotation], [log], [health], and the [[hooks]] list); its own check ties groups
together (a claim must outlive four Monite requests and stay within max_claim_ttl).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    field_validator,
    model_validator,
)

from rotator.config._connections import MoniteSettings, VaultSettings
from rotator.config._cron import cron_trigger
from rotator.config._hooks import HookSettings, hook_names, url_origin
from rotator.config._messages import Problem
from rotator.config._types import (
    Concurrency,
    Group,
    NonNegativeDuration,
    PositiveDuration,
    RotationCap,
    lower,
    optional_positive,
    to_optional_duration,
)
from rotator.model import DEFAULT_CLAIM_TTL, DEFAULT_MAX_CLAIM_TTL, format_duration
from rotator.policy import Policy
from rotator.secret import Secret

DEFAULT_POLICY = Policy(max_age=timedelta(days=30))


class ScheduleSettings(Group):
    interval: Annotated[
        timedelta | None,
        BeforeValidator(to_optional_duration),
        AfterValidator(optional_positive),
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
                raise Problem(
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
            raise Problem(("interval",), 'set schedule.interval (like "15m") or schedule.cron')
        return self


class RotationSettings(Group):
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
    # How a secret is replaced (docs/swap.md): "regenerate" kills the old secret at
    # once; "swap" creates a successor subscription and keeps both for `overlap`.
    strategy: Annotated[Literal["regenerate", "swap"], BeforeValidator(lower)] = "regenerate"
    overlap: PositiveDuration = timedelta(minutes=15)


class LogSettings(Group):
    format: Annotated[Literal["json", "console"], BeforeValidator(lower)] = "json"
    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(lower)] = "info"


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    # Port 0 asks the kernel for a free port; the daemon logs the one it got.
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError("must be HOST:PORT, like 127.0.0.1:9464 or 0.0.0.0:9464")
    return value


class HealthSettings(Group):
    """The /healthz, /readyz and /metrics endpoint of `rotator run`."""

    enabled: bool = True
    listen: Annotated[str, AfterValidator(_listen)] = "127.0.0.1:9464"

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class Settings(Group):
    monite: MoniteSettings
    vault: VaultSettings
    policy: Policy = DEFAULT_POLICY
    schedule: ScheduleSettings = ScheduleSettings()
    rotation: RotationSettings = RotationSettings()
    log: LogSettings = LogSettings()
    health: HealthSettings = HealthSettings()
    hooks: tuple[HookSettings, ...] = ()

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
            raise Problem(
                ("rotation", "claim_ttl"),
                f"must be at least 4 × monite.timeout ({format_duration(minimum)}), because a "
                "rotation never starts a regenerate unless its claim has 2 × the request "
                "timeout left; raise rotation.claim_ttl or lower monite.timeout",
            )
        if 2 * self.rotation.claim_ttl > self.rotation.max_claim_ttl:
            raise Problem(
                ("rotation", "claim_ttl"),
                f"must be at most half of rotation.max_claim_ttl "
                f"({format_duration(self.rotation.max_claim_ttl)}), because a rotation that "
                "cannot see an earlier claim settles for 2 × claim_ttl and no window may "
                "exceed max_claim_ttl; lower rotation.claim_ttl or raise rotation.max_claim_ttl",
            )
        return self

    @model_validator(mode="after")
    def _overlap_fits(self) -> Self:
        rotation = self.rotation
        if rotation.overlap < 2 * rotation.claim_ttl:
            raise Problem(
                ("rotation", "overlap"),
                f"must be at least 2 × rotation.claim_ttl "
                f"({format_duration(2 * rotation.claim_ttl)}), because a swap's claim and "
                "its create's straggler window must end inside the overlap; raise "
                "rotation.overlap or lower rotation.claim_ttl",
            )
        for number, rule in enumerate(self.policy.rules):
            swaps = (rule.strategy or rotation.strategy) == "swap"
            if swaps and rule.max_age is not None and rule.max_age <= rotation.overlap:
                raise Problem(
                    ("policy", "rules", number, "max_age"),
                    f"must be longer than rotation.overlap ({format_duration(rotation.overlap)}) "
                    "for subscriptions that swap, or a successor would be due before its "
                    "original is gone; raise max_age, lower rotation.overlap, or set "
                    'strategy = "regenerate" in this rule',
                )
        if rotation.strategy == "swap" and rotation.overlap >= self.policy.max_age:
            raise Problem(
                ("rotation", "overlap"),
                f"must be shorter than policy.max_age ({format_duration(self.policy.max_age)}) "
                'with strategy = "swap", or a successor would be due before its original '
                "is gone; lower rotation.overlap or raise policy.max_age",
            )
        return self

    @model_validator(mode="after")
    def _hook_names_differ(self) -> Self:
        # Logs and metrics tell hooks apart by name alone: two hooks sharing one
        # would merge their hook.* events and their metric series.
        first: dict[str, int] = {}
        for number, name in enumerate(hook_names(self.hooks)):
            earlier = first.setdefault(name, number)
            if earlier != number:
                raise Problem(
                    ("hooks", number, "name"),
                    f'hooks[{earlier}] and hooks[{number}] are both called "{name}" '
                    "in logs and metrics; give one of them its own name, like "
                    'name = "payments-consumer"',
                )
        return self

    def redacted_dict(self) -> dict[str, Any]:
        """A JSON-able view for `rotator check` and debugging: secrets show as "<secret>"."""
        return {name: _plain(getattr(self, name)) for name in type(self).model_fields}


def _plain(value: object) -> Any:
    if isinstance(value, HookSettings):
        # A URL may carry credentials or a token in its path or query: show where, not how.
        shown = {name: _plain(getattr(value, name)) for name in type(value).model_fields}
        return {**shown, "url": None if value.url is None else url_origin(value.url)}
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
