"""The config file as a source: TOML read within bounds, unknown tables and keys refused.

Relative paths in the file are made relative to the file itself.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Final

from rotator.config._files import CONFIG_FILE_LIMIT, Unreadable, read_capped, size_text
from rotator.config._keys import (
    GROUP_MODELS,
    GROUPS,
    HOOK_KEYS,
    HOOK_PATH_KEYS,
    HOOKS,
    PATH_KEYS,
    RULE_KEYS,
    group_keys,
    unknown_key,
)
from rotator.config._layers import Layer, Raw
from rotator.config._messages import suggest
from rotator.errors import ConfigError

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


def _read_toml(path: Path) -> dict[str, Any]:
    fix = "pass --config PATH or set ROTATOR_CONFIG"
    try:
        data, _ = read_capped(path, CONFIG_FILE_LIMIT)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; {fix}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory; {fix} to a file") from None
    except Unreadable as exc:
        raise ConfigError(
            f"config file {path} {exc}; a config file is a regular file of at most "
            f"{size_text(CONFIG_FILE_LIMIT)}: check the path ({fix})"
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


def file_layer(path: Path) -> Layer:
    doc = _read_toml(path)
    data: Raw = {}
    hooks = _hooks(doc.pop(HOOKS), path) if HOOKS in doc else None
    for top, value in doc.items():
        if top not in GROUP_MODELS:
            if isinstance(value, dict):
                hint = suggest(top, GROUPS, "[{}]") or "; valid tables: " + ", ".join(
                    [*(f"[{g}]" for g in GROUPS), f"[[{HOOKS}]]"]
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
                raise unknown_key(key, f"[{top}]", group_keys(top))
        table = dict(value)
        # A relative path in the file means relative to the file, wherever the
        # daemon was started from (systemd and Kubernetes start it from /).
        for key in PATH_KEYS & table.keys():
            if isinstance(table[key], str) and table[key] and not Path(table[key]).is_absolute():
                table[key] = str(path.parent / table[key])
        data[top] = table
    _check_rule_keys(data.get("policy", {}).get("rules"))
    return Layer(name=f"config file {path}", data=data, origins={}, hooks=hooks)


def _hooks(value: object, path: Path) -> list[dict[str, Any]]:
    """The [[hooks]] tables with their keys checked and relative paths made absolute."""
    if not isinstance(value, list):
        raise ConfigError(
            f"hooks in {path} must be a list of tables: write each hook as [[hooks]] "
            "(double brackets) followed by its keys"
        )
    hooks: list[dict[str, Any]] = []
    for index, hook in enumerate(value):
        where = f"hooks[{index}]"
        if not isinstance(hook, dict):
            raise ConfigError(
                f'{where} must be a table, like [[hooks]] url = "https://consumer.example/rotated"'
            )
        for key in hook:
            if key == "secret":
                raise ConfigError(
                    f"{where}.secret: a hook key is never written in the config file; write "
                    f"it to a file and set {where}.secret_file to its path"
                )
            if key not in HOOK_KEYS:
                raise unknown_key(key, where, HOOK_KEYS)
        table = dict(hook)
        for key in HOOK_PATH_KEYS & table.keys():
            if isinstance(table[key], str) and table[key] and not Path(table[key]).is_absolute():
                table[key] = str(path.parent / table[key])
        hooks.append(table)
    return hooks


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
            if key not in RULE_KEYS:
                raise unknown_key(key, f"[[policy.rules]] #{number}", RULE_KEYS)
