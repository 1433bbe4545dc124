"""The application's wiring: settings → clients → an Engine, and the hooks.

`open_engine` builds the real Monite and Vault clients and the hooks from
settings (reading the Monite credentials from Vault when
`monite.credentials_path` says so) and closes them afterwards, delivering the
hooks' pending notices first; `rotator.engine` only runs cycles on what it is given.
Exit codes are `rotator.exitcodes`'s, so a usage or config error exits without
importing this wiring.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from rotator.clock import Clock, SystemClock
from rotator.config import Settings
from rotator.engine import Engine
from rotator.hooks import HookObserver, Hooks
from rotator.monite import MoniteClient
from rotator.ratelimit import RateLimiter
from rotator.vault import VaultStore


def owner_identity(hostname: str, pid: int) -> str:
    """The default claim owner: enough to find the process that holds a claim."""
    return f"{hostname}:{pid}"


def build_hooks(settings: Settings, *, clock: Clock, observer: HookObserver | None = None) -> Hooks:
    """The [[hooks]] of `settings`, naming records under its Vault mount and prefix."""
    return Hooks(
        settings.hooks,
        vault_mount=settings.vault.mount,
        vault_prefix=settings.vault.path_prefix,
        clock=clock,
        observer=observer,
    )


def hooks_settings(settings: Settings) -> tuple[object, ...]:
    """What `build_hooks` builds from: equal values make equal hooks."""
    return (settings.hooks, settings.vault.mount, settings.vault.path_prefix)


@contextlib.asynccontextmanager
async def open_engine(
    settings: Settings,
    *,
    owner: str,
    clock: Clock | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    hook_observer: HookObserver | None = None,
    hooks: Hooks | None = None,
) -> AsyncIterator[Engine]:
    """Wire an Engine to real clients from settings, and close them afterwards.

    Vault is verified first (`VaultStore.verify`: namespace, login, a KV v2 mount,
    the capabilities rotation needs), so no command reads or writes a record
    through a wrong mount or namespace: a KV v1 mount would take the records as
    unversioned junk. Then, with `monite.credentials_path` set, the Monite client
    id and secret are read from Vault (a VaultError if they cannot be).

    `hooks` given (the daemon's, which outlive its engines) are used and left
    open. Otherwise the engine gets its own (`build_hooks`), and on the way out
    they get `rotation.shutdown_timeout` to deliver the notices still pending
    (none are left when a drain has already flushed them), so a one-shot
    command delivers its notices before it exits. `hook_observer` counts
    deliveries of hooks built here.
    """
    clock = clock or SystemClock()
    store = VaultStore(settings.vault, clock=clock.monotonic, sleep=clock.sleep)
    try:
        setup = await store.verify(settings.monite.credentials_path)
        monite_settings = settings.monite
        if monite_settings.credentials_path is not None:
            client_id, client_secret = await store.read_monite_credentials(
                monite_settings.credentials_path
            )
            monite_settings = monite_settings.model_copy(
                update={"client_id": client_id, "client_secret": client_secret}
            )
        async with httpx.AsyncClient(transport=transport, follow_redirects=False) as http:
            limiter = RateLimiter(
                monite_settings.rate_limit, burst=monite_settings.rate_burst, clock=clock
            )
            monite = MoniteClient(http, monite_settings, clock=clock, limiter=limiter)
            owned = hooks is None
            if hooks is None:
                hooks = build_hooks(settings, clock=clock, observer=hook_observer)
            engine = Engine(
                monite=monite,
                store=store,
                policy=settings.policy,
                rotation=settings.rotation,
                owner=settings.rotation.owner or owner,
                clock=clock,
                max_retries=monite_settings.max_retries,
                hooks=hooks,
            )
            engine.vault_setup = setup
            try:
                yield engine
            finally:
                try:
                    if owned:
                        await hooks.aclose(settings.rotation.shutdown_timeout.total_seconds())
                finally:
                    with contextlib.suppress(Exception):
                        await monite.aclose()
    finally:
        store.close()


__all__ = [
    "build_hooks",
    "hooks_settings",
    "open_engine",
    "owner_identity",
]
