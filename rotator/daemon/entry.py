"""`rotator run`'s entry point: a Daemon on an asyncio loop, with its signal handlers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from rotator.config import Settings
from rotator.daemon.core import Daemon
from rotator.errors import ConfigError
from rotator.exitcodes import ExitCode


@contextlib.asynccontextmanager
async def _signals(daemon: Daemon) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    handlers = {
        signal.SIGTERM: daemon.stop,
        signal.SIGINT: daemon.stop,
        signal.SIGHUP: daemon.request_reload,
    }
    for signum, handler in handlers.items():
        loop.add_signal_handler(signum, handler)
    try:
        yield
    finally:
        for signum in handlers:
            loop.remove_signal_handler(signum)


async def _serve(
    settings: Settings, owner: str, config_path: Path | None, environ: Mapping[str, str]
) -> int:
    daemon = Daemon(settings, owner=owner, config_path=config_path, environ=environ)
    async with _signals(daemon):
        return await daemon.serve()


def run_daemon(
    settings: Settings,
    *,
    owner: str,
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code (0, or 1 when the drain timed out).

    Raises DependencyError when the first preflight fails for good (the CLI
    exits 77 if credentials were refused, else 69); returns 78 with one line on
    stderr when the endpoint cannot listen.
    """
    try:
        return asyncio.run(
            _serve(settings, owner, config_path, os.environ if environ is None else environ)
        )
    except ConfigError as exc:
        print(f"rotator: config error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
