"""The [[hooks]] tables: each hook's target, key, timeout and name, and how they are checked.

A hook is a URL (POSTed, signed) or a command (argv, no shell); `hook_names`
gives each the name its logs and metrics use.
"""

from __future__ import annotations

import ipaddress
import os
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Final, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rotator.config._messages import Problem
from rotator.config._types import Group, PositiveDuration, loading, to_optional_secret
from rotator.secret import Secret

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
