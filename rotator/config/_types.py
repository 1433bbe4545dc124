"""Field types: how one value is read and checked (durations, numbers, secrets, URLs, KV paths).

Every rule about a single value lives here, as a pydantic Annotated type or a
validator function the groups in `_schema` and `_connections` attach. The
groups' own cross-key rules live with the groups. `Group` is the base of every
settings group: frozen, no unknown keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationInfo

from rotator.model import parse_duration
from rotator.secret import Secret

# Validation context set by load_settings. Checks that only make sense for
# operator input (client id is a UUID, a token exists, the CA file exists) run
# only under it, so code and tests can build settings for emulators directly.
LOADING: Mapping[str, bool] = {"loading": True}

_DURATION_FORMAT = (
    'a number and a unit (ms, s, m, h, d, w) in quotes, like "90s", "15m", "12h" or "30d"'
)


def to_duration(value: object) -> object:
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


def to_optional_duration(value: object) -> object:
    return None if value is None else to_duration(value)


def positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError('must be greater than zero, like "90s"')
    return value


def optional_positive(value: timedelta | None) -> timedelta | None:
    return None if value is None else positive(value)


def not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError('must not be negative; use "0s" for none')
    return value


def no_bool(value: object) -> object:
    # bool is an int subclass: `concurrency = true` must not quietly mean 1.
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not true/false")  # noqa: TRY004
    return value


def between(low: int, high: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return check


def secret_text(value: str) -> str:
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


def to_secret(value: object) -> object:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(secret_text(value))
    raise ValueError("must be a string")


def to_optional_secret(value: object) -> object:
    return None if value is None else to_secret(value)


def lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def http_url(example: str) -> Callable[[str], str]:
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


def api_date(value: str) -> str:
    problem = 'must be a date like "2024-05-25" (YYYY-MM-DD)'
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) is None:
        raise ValueError(problem)
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError(problem) from None
    return value


def kv_path(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    if value.startswith("/") or value.endswith("/"):
        raise ValueError('must not start or end with "/"; write it like "monite/webhooks"')
    if "//" in value or any(c.isspace() for c in value):
        raise ValueError('must be "/"-separated names without empty parts or spaces')
    return value


def optional_kv_path(value: str | None) -> str | None:
    return None if value is None else kv_path(value)


PositiveDuration = Annotated[timedelta, BeforeValidator(to_duration), AfterValidator(positive)]
NonNegativeDuration = Annotated[
    timedelta, BeforeValidator(to_duration), AfterValidator(not_negative)
]


Retries = Annotated[int, BeforeValidator(no_bool), AfterValidator(between(0, 10))]
PageSize = Annotated[int, BeforeValidator(no_bool), AfterValidator(between(1, 100))]
PageLimit = Annotated[int, BeforeValidator(no_bool), AfterValidator(between(1, 1_000_000))]
Concurrency = Annotated[int, BeforeValidator(no_bool), AfterValidator(between(1, 256))]
PoolSize = Annotated[int, BeforeValidator(no_bool), AfterValidator(between(1, 64))]
Burst = Annotated[int, BeforeValidator(no_bool), AfterValidator(between(1, 100))]
RotationCap = Annotated[int, BeforeValidator(no_bool), AfterValidator(between(0, 1_000_000))]


def _rate(value: float) -> float:
    if not 0 < value <= 1000:
        raise ValueError("must be a number of requests per second between 0 and 1000, like 25")
    return value


Rate = Annotated[float, BeforeValidator(no_bool), AfterValidator(_rate)]


def loading(info: ValidationInfo) -> bool:
    return isinstance(info.context, Mapping) and bool(info.context.get("loading"))


class Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
