"""The Monite emulator's request validation, shaped like FastAPI + pydantic v2 422 details.

Query parameters (limit, order, sort, object_type, created_at bounds), the
x-monite-version header, and the JSON bodies of token, revoke, create and
patch (extra keys forbidden, as the schema says). No `input` is ever echoed:
it may be a secret.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

from rotator.model import MONITE_OBJECT_TYPES
from rotator.sandbox._http import Request
from rotator.sandbox.monite.responses import err

OBJECT_TYPES = MONITE_OBJECT_TYPES
GRANT_TYPES = ("client_credentials", "entity_user")
SORT_FIELDS = ("created_at", "updated_at")
ORDERS = ("asc", "desc")
MAX_URL_LENGTH = 2083


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _enum_msg(values: Sequence[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    return f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}"


def check_version(req: Request, detail: list[dict[str, Any]]) -> None:
    """A present x-monite-version must be a date (a missing one never gets this far)."""
    value = req.header("x-monite-version")
    if value is None:
        return
    try:
        date.fromisoformat(value)
    except ValueError:
        detail.append(
            err(("header", "x-monite-version"), "Input should be a valid date", "date_parsing")
        )


def query_int(
    req: Request, name: str, default: int, low: int, high: int, detail: list[dict[str, Any]]
) -> int:
    raw = req.param(name)
    if raw is None:
        return default
    loc = ("query", name)
    try:
        value = int(raw.strip())
    except ValueError:
        detail.append(
            err(
                loc,
                "Input should be a valid integer, unable to parse string as an integer",
                "int_parsing",
            )
        )
        return default
    if value < low:
        detail.append(
            err(loc, f"Input should be greater than or equal to {low}", "greater_than_equal")
        )
    elif value > high:
        detail.append(err(loc, f"Input should be less than or equal to {high}", "less_than_equal"))
    return value


def query_enum(
    req: Request, name: str, values: Sequence[str], detail: list[dict[str, Any]]
) -> str | None:
    raw = req.param(name)
    if raw is not None and raw not in values:
        detail.append(err(("query", name), _enum_msg(values), "enum"))
        return None
    return raw


def query_datetime(req: Request, name: str, detail: list[dict[str, Any]]) -> datetime | None:
    raw = req.param(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        detail.append(err(("query", name), "Input should be a valid datetime", "datetime_parsing"))
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_Check = Callable[[Any, tuple[str | int, ...], list[dict[str, Any]]], None]


@dataclass(frozen=True)
class _Field:
    check: _Check
    required: bool = False
    nullable: bool = False


def _check_str(value: Any, loc: tuple[str | int, ...], detail: list[dict[str, Any]]) -> None:
    if not isinstance(value, str):
        detail.append(err(loc, "Input should be a valid string", "string_type"))


def _check_uuid(value: Any, loc: tuple[str | int, ...], detail: list[dict[str, Any]]) -> None:
    if not isinstance(value, str):
        detail.append(err(loc, "UUID input should be a string, bytes or UUID object", "uuid_type"))
    elif not is_uuid(value):
        detail.append(err(loc, "Input should be a valid UUID", "uuid_parsing"))


def _check_enum(values: Sequence[str]) -> _Check:
    def check(value: Any, loc: tuple[str | int, ...], detail: list[dict[str, Any]]) -> None:
        if not isinstance(value, str) or value not in values:
            detail.append(err(loc, _enum_msg(values), "enum"))

    return check


def _check_url(value: Any, loc: tuple[str | int, ...], detail: list[dict[str, Any]]) -> None:
    if not isinstance(value, str):
        detail.append(err(loc, "URL input should be a string or URL", "url_type"))
        return
    if not value:
        detail.append(err(loc, "Input should be a valid URL, input is empty", "url_parsing"))
        return
    if len(value) > MAX_URL_LENGTH:
        detail.append(
            err(loc, f"URL should have at most {MAX_URL_LENGTH} characters", "url_too_long")
        )
        return
    try:
        parts = urlsplit(value)
    except ValueError:
        detail.append(err(loc, "Input should be a valid URL", "url_parsing"))
        return
    if parts.scheme not in ("http", "https"):
        detail.append(err(loc, "URL scheme should be 'http' or 'https'", "url_scheme"))
    elif not parts.hostname:
        detail.append(err(loc, "Input should be a valid URL, empty host", "url_parsing"))


def _check_str_list(value: Any, loc: tuple[str | int, ...], detail: list[dict[str, Any]]) -> None:
    if not isinstance(value, list):
        detail.append(err(loc, "Input should be a valid list", "list_type"))
        return
    for index, item in enumerate(value):
        _check_str(item, (*loc, index), detail)


BODIES: dict[str, dict[str, _Field]] = {
    "token": {
        "client_id": _Field(_check_uuid, required=True),
        "client_secret": _Field(_check_str, required=True),
        "entity_user_id": _Field(_check_uuid, nullable=True),
        "grant_type": _Field(_check_enum(GRANT_TYPES), required=True),
    },
    "revoke": {
        "client_id": _Field(_check_uuid, required=True),
        "client_secret": _Field(_check_str, required=True),
        "token": _Field(_check_str, required=True),
    },
    "create": {
        "event_types": _Field(_check_str_list),
        "object_type": _Field(_check_enum(OBJECT_TYPES), required=True),
        "url": _Field(_check_url, required=True),
    },
    "patch": {
        "event_types": _Field(_check_str_list, nullable=True),
        "object_type": _Field(_check_enum(OBJECT_TYPES), nullable=True),
        "url": _Field(_check_url, nullable=True),
    },
}


def parse_body(
    req: Request, spec: Mapping[str, _Field], detail: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The JSON object body checked against `spec` (extra keys forbidden, as the schema says)."""
    if not req.body:
        detail.append(err(("body",), "Field required", "missing"))
        return None
    try:
        body = json.loads(req.body)
    except json.JSONDecodeError as exc:
        detail.append(err(("body", exc.pos), "JSON decode error", "json_invalid"))
        return None
    except UnicodeDecodeError:
        detail.append(err(("body", 0), "JSON decode error", "json_invalid"))
        return None
    if not isinstance(body, dict):
        detail.append(
            err(
                ("body",),
                "Input should be a valid dictionary or object to extract fields from",
                "model_attributes_type",
            )
        )
        return None
    before = len(detail)
    for name, rule in spec.items():
        if name not in body:
            if rule.required:
                detail.append(err(("body", name), "Field required", "missing"))
            continue
        value = body[name]
        if value is None and rule.nullable:
            continue
        rule.check(value, ("body", name), detail)
    for name in body:
        if name not in spec:
            detail.append(
                err(("body", str(name)), "Extra inputs are not permitted", "extra_forbidden")
            )
    return body if len(detail) == before else None
