"""Pieces the Vault emulator's modules share: error answers, Go-style parsing and printing.

OpenBao is written in Go, so what it prints (durations, JSON decoding errors,
go-multierror lists, RFC 3339 times) follows Go's formatting; these helpers
reproduce that so a client sees the same text from the emulator.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rotator.sandbox._http import Request, Response

PERMISSION_DENIED = "1 error occurred:\n\t* permission denied\n\n"
CAS_MISMATCH = "check-and-set parameter did not match the current version"
CAS_REQUIRED = "check-and-set parameter required for this call"
SEALED = "Vault is sealed"
INVALID_APPROLE = "invalid role or secret ID"
NAMESPACE_NOT_FOUND = "namespace not found"
UNAVAILABLE_IN_NAMESPACES = "operation unavailable in namespaces"

_NO_STORE = "no-store"


class Reply(Exception):
    """Raised inside a handler to answer at once (errors, mostly)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def multierror(messages: Sequence[str]) -> str:
    """go-multierror's text, which OpenBao passes through verbatim."""
    if len(messages) == 1:
        return f"1 error occurred:\n\t* {messages[0]}\n\n"
    points = "\n\t".join(f"* {m}" for m in messages)
    return f"{len(messages)} errors occurred:\n\t{points}\n\n"


def error(status: int, *messages: str) -> Response:
    """OpenBao's error body: {"errors": [...]} (an empty list for a bare 404)."""
    return Response(status, {"errors": list(messages)}, headers={"Cache-Control": _NO_STORE})


def unsupported() -> Response:
    """405 for an operation the path does not have (OpenBao wraps the text in a multierror)."""
    return error(405, multierror(["unsupported operation"]))


def no_content() -> Response:
    """204; OpenBao still says Content-Type: application/json on it."""
    return Response(
        204, None, headers={"Cache-Control": _NO_STORE, "Content-Type": "application/json"}
    )


def envelope(
    status: int,
    *,
    data: Any = None,
    auth: Any = None,
    warnings: list[str] | None = None,
    lease_duration: int = 0,
    top_level: dict[str, Any] | None = None,
) -> Response:
    """OpenBao's response envelope; `top_level` keys come first (sys/capabilities-self)."""
    body: dict[str, Any] = dict(top_level or {})
    body.update(
        {
            "request_id": str(uuid.uuid4()),
            "lease_id": "",
            "renewable": False,
            "lease_duration": lease_duration,
            "data": data,
            "wrap_info": None,
            "warnings": warnings or None,
            "auth": auth,
        }
    )
    return Response(status, body, headers={"Cache-Control": _NO_STORE})


# ---------------------------------------------------------------------------
# Times and durations


def rfc3339(ts: float | None) -> str:
    """Go's RFC3339Nano as OpenBao prints it (trailing zeros trimmed); "" for no time."""
    if ts is None:
        return ""
    text = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    seconds, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0")
    return f"{seconds}.{fraction}Z" if fraction else f"{seconds}Z"


def go_duration(seconds: int) -> str:
    """Go's time.Duration.String() for whole seconds: "0s", "1m40s", "1h0m0s"."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def short_duration(seconds: float) -> str:
    """The duration as OpenBao's TTL warnings print it: Go's form without zero tails ("1h")."""
    text = go_duration(round(seconds))
    if text != "0s" and text.endswith("m0s"):
        text = text[: -len("0s")]
    if text.endswith("h0m"):
        text = text[: -len("0m")]
    return text


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def field_error(name: str, detail: str) -> Reply:
    """OpenBao's answer to a request field it cannot convert."""
    message = f'Field validation failed: error converting input for field "{name}": {detail}'
    return Reply(error(400, message))


def parse_duration(value: Any, field_name: str) -> float:
    """Seconds from an int or a Go-style duration string ("90s", "1h30m"), as OpenBao accepts."""
    if isinstance(value, bool):
        raise field_error(field_name, f"invalid duration {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise field_error(field_name, f"cannot provide negative value '{value}'")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return float(text)
        parts = _DURATION_PART.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
        raise field_error(field_name, f'strconv.ParseInt: parsing "{text[:-1]}": invalid syntax')
    raise field_error(field_name, f"invalid duration {value!r}")


def parse_int(value: Any, field_name: str) -> int:
    """An integer field as OpenBao's field parser converts it (numbers or numeric strings)."""
    if isinstance(value, bool):
        raise field_error(field_name, "'' cannot parse value as 'int': invalid type bool")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise field_error(
        field_name, "'' cannot parse value as 'int': strconv.ParseInt: invalid syntax"
    )


def parse_bool(value: Any, field_name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "t", "f"):
        return value.lower() in ("true", "1", "t")
    raise field_error(field_name, "'' cannot parse value as 'bool'")


# ---------------------------------------------------------------------------
# Request bodies


_GO_JSON_CONTEXT = {
    "Expecting value": "looking for beginning of value",
    # OpenBao reads the body through a decoder that reports this case so.
    "Expecting property name enclosed in double quotes": "looking for beginning of value",
    "Expecting ':' delimiter": "after object key",
    "Expecting ',' delimiter": "after object key:value pair",
    "Extra data": "after top-level value",
}
_GO_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "bool"}


def _go_json_error(text: str, exc: json.JSONDecodeError) -> str:
    """The text Go's encoding/json gives for the same malformed input (close enough)."""
    if exc.pos >= len(text.rstrip()):
        return "unexpected EOF"
    char = text[exc.pos]
    context = next(
        (v for k, v in _GO_JSON_CONTEXT.items() if exc.msg.startswith(k)),
        "looking for beginning of value",
    )
    return f"invalid character {char!r} {context}"


def parse_body(request: Request) -> dict[str, Any] | None:
    """The JSON object in the body; None when there is no body. 400 as OpenBao when malformed."""
    text = request.body.decode("utf-8", errors="replace")
    if not text.strip():
        return None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"failed to decode JSON input: {_go_json_error(text, exc)}"
        raise Reply(error(400, message)) from exc
    if parsed is None:
        return None
    if not isinstance(parsed, dict):
        kind = _GO_JSON_TYPES.get(type(parsed), "value")
        message = (
            "failed to decode JSON input: json: cannot unmarshal "
            f"{kind} into Go value of type map[string]interface {{}}"
        )
        raise Reply(error(400, message))
    return parsed


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as OpenBao applies to KV PATCH requests."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def require_merge_patch(request: Request) -> None:
    """OpenBao answers 415 to a PATCH that is not a JSON merge patch."""
    content_type = (request.header("Content-Type") or "").split(";")[0].strip()
    if content_type != "application/merge-patch+json":
        message = (
            f"PATCH requires Content-Type of application/merge-patch+json, provided {content_type}"
        )
        raise Reply(error(415, message))
