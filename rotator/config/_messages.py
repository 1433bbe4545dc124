"""Validation failures as one line each: which key, what is wrong, how to fix it.

Pydantic's own rendering quotes the input, which may be a secret; these
messages are built from the error's location and our own text only. `Problem`
lets a model-level check name the exact key it is about; `Origins` records
where each value came from, so a message can say "(from VAULT_TOKEN)".
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

Origins = dict[tuple[str, str], str]  # (group, key) -> where it came from, for messages


class Problem(ValueError):
    """A failure found by a model-level check, carrying the key it is about.

    Pydantic reports model-level errors at the model's location; `loc` lets the
    message still name the exact key.
    """

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def suggest(word: str, choices: Iterable[str], fmt: str = "'{}'") -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {fmt.format(close[0])}?" if close else ""


MISSING_HINTS: Mapping[tuple[str, ...], str] = {
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
    "tuple_type": "must be a list",
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
    if len(loc) >= 2 and loc[0] == "hooks" and isinstance(loc[1], int):
        return "".join([f"hooks[{loc[1]}]", *(f".{part}" for part in loc[2:])])
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
    if isinstance(cause, Problem):
        loc = loc + cause.loc
    if kind == "missing":
        key = tuple(str(part) for part in loc)
        problem = MISSING_HINTS.get(key) or (
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


def one_line_errors(
    exc: ValidationError, prefix: tuple[str, ...], origins: Origins, *, no_file: bool = False
) -> list[tuple[Any, str]]:
    return [
        _describe({**error, "loc": prefix + tuple(error["loc"])}, origins, no_file=no_file)
        for error in exc.errors(include_url=False, include_input=False)
    ]
