"""The Monite emulator's routes: which operation `METHOD /v1/...` names, and its allowed methods.

Operation names are what `request_count` counts: token, revoke, list,
create, get, patch, delete, enable, disable, regenerate_secret, and
not_found / method_not_allowed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    name: str  # operation name as counted by request_count
    subscription_id: str | None = None


_ACTIONS = ("enable", "disable", "regenerate_secret")


def resolve(method: str, path: str) -> tuple[Route, tuple[str, ...]]:
    """The operation for `method path` (or not_found / method_not_allowed) and its methods."""
    parts = path.split("/")[2:]  # drop "" and "v1"
    table: dict[str, str]
    sub_id: str | None = None
    if parts == ["auth", "token"]:
        table = {"POST": "token"}
    elif parts == ["auth", "revoke"]:
        table = {"POST": "revoke"}
    elif parts == ["webhook_subscriptions"]:
        table = {"GET": "list", "POST": "create"}
    elif len(parts) == 2 and parts[0] == "webhook_subscriptions" and parts[1]:
        table = {"GET": "get", "PATCH": "patch", "DELETE": "delete"}
        sub_id = parts[1]
    elif (
        len(parts) == 3
        and parts[0] == "webhook_subscriptions"
        and parts[1]
        and parts[2] in _ACTIONS
    ):
        table = {"POST": parts[2]}
        sub_id = parts[1]
    else:
        return Route("not_found"), ()
    name = table.get(method)
    if name is None:
        return Route("method_not_allowed"), tuple(table)
    return Route(name, sub_id), tuple(table)
