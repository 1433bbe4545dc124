"""The settings tree: `Settings` and its scheduling, rotation, log and health groups.

`Settings` is frozen and grouped ([monite], [vault], [policy], [schedule],
[rotation], [log], [health], and the [[hooks]] list); its own check ties groups
together (a claim must outlive four Monite requests and stay within max_claim_ttl).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rotator.config._connections import MoniteSettings, VaultSettings
from rotator.config._cron import cron_trigger
from rotator.config._messages import Problem
from rotator.config._types import (
    Concurrency,
    Group,
    NonNegativeDuration,
    PositiveDuration,
    RotationCap,
    loading,
    lower,
    optional_positive,
    to_optional_duration,
    to_optional_secret,
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


HOOK_TIMEOUT_LIMIT: Final = timedelta(seconds=60)
_MAX_ARGV: Final = 64


def _hook_timeout(value: timedelta) -> timedelta:
    if value > HOOK_TIMEOUT_LIMIT:
        raise ValueError('must be at most 60s: a hook is a notice, not a job; like "5s"')
    return value


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hook_url(value: str | None) -> str | None:
    if value is None:
        return None
    example = "https://consumer.example/rotated"
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError(f'must be a URL without spaces, like "{example}"')
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise ValueError(f'has an invalid port; write it like "{example}"') from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f'must be an http(s) URL, like "{example}"')
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(
            "must be https: a notice sent over plain http can be read and replayed on "
            'the way; http is allowed only to a loopback address (127.0.0.1, ::1, "localhost")'
        )
    return value


_NAME_LIMIT: Final = 64


def _hook_name(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= _NAME_LIMIT or not all(c.isprintable() for c in value):
        raise ValueError(
            f'must be 1 to {_NAME_LIMIT} printable characters, like "payments-consumer"'
        )
    if any(c.isspace() for c in value):
        raise ValueError('must not contain spaces; like "payments-consumer"')
    return value


def url_origin(url: str) -> str:
    """scheme://host[:port] of `url`, plus "/…" when it has a path beyond "/"."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    path = "/…" if parts.path not in ("", "/") else ""
    return f"{parts.scheme}://{host}{port}{path}"


def _hook_command(value: object) -> object:
    fix = (
        'must be a list of strings, the program and its arguments, like ["/usr/local/bin/'
        'reload", "--quiet"]; it runs without a shell'
    )
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(a, str) for a in value):
        raise ValueError(fix)
    if not value or not value[0]:
        raise ValueError(f"must not be empty; {fix.removeprefix('must be ')}")
    if len(value) > _MAX_ARGV:
        raise ValueError(f"has more than {_MAX_ARGV} arguments; pass data on stdin, not argv")
    if any("\x00" in a for a in value):
        raise ValueError("contains a NUL character, which no argument can hold")
    if not os.path.isabs(value[0]):
        raise ValueError(
            f"must start with an absolute path (like /usr/local/bin/{os.path.basename(value[0])}): "
            "the command runs without a shell and without the daemon's PATH"
        )
    return tuple(value)


class HookSettings(Group):
    """One [[hooks]] table: where a notice goes after every commit (the README's "Hooks").

    Exactly one of `url` (POSTed, signed with the key from `secret_file`) and
    `command` (argv, run without a shell, the notice on stdin). `secret` is the
    key read from `secret_file` by the loader; the file never holds anything else.
    """

    url: Annotated[str | None, AfterValidator(_hook_url)] = None
    command: Annotated[tuple[str, ...] | None, BeforeValidator(_hook_command)] = None
    secret_file: Path | None = None
    secret: Annotated[Secret | None, BeforeValidator(to_optional_secret)] = None
    timeout: Annotated[PositiveDuration, AfterValidator(_hook_timeout)] = timedelta(seconds=5)
    # What logs and metrics call the hook, instead of the URL's origin or argv[0].
    name: Annotated[str | None, AfterValidator(_hook_name)] = None

    @field_validator("command")
    @classmethod
    def _executable(
        cls, value: tuple[str, ...] | None, info: ValidationInfo
    ) -> tuple[str, ...] | None:
        if value is not None and loading(info):
            program = value[0]
            if not os.path.isfile(program):
                raise ValueError(f"program {program} does not exist; fix the path")
            if not os.access(program, os.X_OK):
                raise ValueError(f"program {program} is not executable; chmod +x it")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if self.url is not None and self.command is not None:
            raise Problem(("command",), "set url or command, not both; make two [[hooks]] for both")
        if self.url is None and self.command is None:
            raise Problem(
                ("url",),
                "a hook needs url (the notice is POSTed there) or command (run with the "
                "notice on stdin); set one",
            )
        if self.url is not None and self.secret is None:
            raise Problem(
                ("secret_file",),
                "required for a url hook: the X-Rotator-Signature made with this key is how "
                "the consumer knows a notice is ours; write a random key to a file "
                "(openssl rand -hex 32 > FILE) and give its path",
            )
        return self

    @property
    def display(self) -> str:
        """The name logs and metrics use: `name` when set, else argv[0], else the URL's
        scheme://host[:port] and "/…" for any path (a path may carry a token, like
        Slack's); never its credentials, path, query or fragment."""
        if self.name is not None:
            return self.name
        if self.command is not None:
            return self.command[0]
        return url_origin(self.url or "")


def hook_names(hooks: Sequence[HookSettings]) -> list[str]:
    """Each hook's name in logs and metrics: its `display`, and where hooks without
    a `name` share one (two commands running one program, two URLs on one host),
    "#i" after it, i being its position in [[hooks]]."""
    shared = Counter(hook.display for hook in hooks if hook.name is None)
    return [
        hook.display
        if hook.name is not None or shared[hook.display] == 1
        else f"{hook.display}#{number}"
        for number, hook in enumerate(hooks)
    ]


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
