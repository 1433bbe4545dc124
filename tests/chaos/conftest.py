"""Fixtures of the chaos suite: worlds that are torn down (processes killed) after each test.

Rotator processes are forked from a pre-imported fork server (tests/forkserver.py);
`TEST_SPAWN=exec` starts them as fresh interpreters instead.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import FIGURES, World

WorldFactory = Callable[..., World]


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[WorldFactory]:
    """Build worlds on demand; every rotator process is killed and every emulator stopped after."""
    worlds: list[World] = []
    numbers = itertools.count()
    lock = threading.Lock()  # trials build worlds from several threads

    def factory(**kwargs: Any) -> World:
        with lock:
            number = next(numbers)
        world = World(tmp_path / f"world{number}", **kwargs)
        with lock:
            worlds.append(world)
        return world

    try:
        yield factory
    finally:
        for world in worlds:
            world.close()


@pytest.fixture(scope="session", autouse=True)
def _write_figures() -> Iterator[None]:
    """Write the figures of this run to bench-results/chaos-<profile>.json at the end."""
    yield
    path = FIGURES.write()
    if path is not None:
        print(f"\nchaos figures: {path}")
