"""How sources stack: each source's values as a layer, merged lowest to highest precedence."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from rotator.config._keys import ALTERNATIVES, GROUPS
from rotator.config._messages import Origins
from rotator.errors import ConfigError

Raw = dict[str, dict[str, Any]]


@dataclasses.dataclass
class Layer:
    """What one source gives: its values per group and which names set them."""

    name: str  # "config file X", "environment"
    data: Raw
    origins: Origins  # only for sources worth naming in a message (not the file)
    # The [[hooks]] tables, from the one source that can hold them (the file).
    hooks: list[dict[str, Any]] | None = None


def merge(layers: Iterable[Layer]) -> tuple[Raw, Origins]:
    """Stack `layers`, each over the ones before; returns the values and where each came from.

    A key replaces its alternative from lower layers (a `*_file` its value, a
    cron the interval); one layer setting both is a conflict.
    """
    raw: Raw = {group: {} for group in GROUPS}
    origins: Origins = {}
    for layer in layers:
        for group, table in layer.data.items():
            target = raw.setdefault(group, {})
            for key, value in table.items():
                other = ALTERNATIVES.get((group, key))
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


def _named(layer: Layer, group: str, *keys: str) -> str:
    names = [layer.origins[(group, k)] for k in keys if (group, k) in layer.origins]
    return f" (by {' and '.join(names)})" if names else f" in {layer.name}"
