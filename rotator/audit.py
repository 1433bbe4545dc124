"""The audit log: stable event names, the structlog pipeline, and redaction.

Owns how every log line of the process looks and what it may never contain.
Our own events and the standard library loggers of the libraries we use
(httpx, hvac, APScheduler, ...) go through one pipeline, so every line on
stdout is one JSON object with `timestamp`, `level` and `event`, and every
line passes the same redactor: secret-named keys are dropped, the text of any
live `Secret` is replaced wherever it appears, `Secret` objects render as
`<secret>`.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Collection, Mapping
from typing import Any, Final, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from rotator.errors import ConfigError

# Event names are defined in rotator.events and re-exported here.
from rotator.events import *  # noqa: F403
from rotator.redact import REDACTED, redact_text
from rotator.secret import Secret

SECRET_PLACEHOLDER: Final = "<secret>"

# Libraries that log through the standard library; chatty at INFO (httpx logs
# every request), so they are held at WARNING unless we are debugging.
LIBRARY_LOGGERS: Final = ("httpx", "httpcore", "hvac", "urllib3", "apscheduler", "asyncio")

_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def fingerprint(secret: Secret) -> str:
    """The `secret_fingerprint` audit field: lets people compare secrets without seeing them."""
    return secret.fingerprint()


# --- redaction -------------------------------------------------------------------

# Key names are normalised (lower case, `-` -> `_`) before matching, so
# `X-Vault-Token`, `Authorization` and `clientSecret`-style names are caught.
_SECRET_KEY_NAMES: Final = frozenset(
    {
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "password",
        "passwd",
        "authorization",
        "proxy_authorization",
        "secret_id",
        "jwt",
        "x_vault_token",
        "vault_token",
        "api_key",
        "apikey",
        "private_key",
        "credentials",
        "cookie",
        "set_cookie",
    }
)
# Anything *ending* in one of these words also looks secret (`monite_client_secret`,
# `vault_token`, `db_password`, `clientsecret`).
_SECRET_KEY_SUFFIX: Final = re.compile(
    r"(?:secret|token|password|passwd|authorization|jwt|api_?key|private_?key|credentials?)$"
)
# Names that contain a secret-looking word but only describe a secret, never hold one.
SAFE_KEYS: Final = frozenset(
    {
        "secret_fingerprint",
        "fingerprint",
        "token_type",
        "token_expires_in",
        "expires_in",
        "has_secret",
        # Monite's paging cursors are opaque but not credentials.
        "pagination_token",
        "next_pagination_token",
        "prev_pagination_token",
    }
)

_MAX_DEPTH: Final = 16


def _key_looks_secret(key: object) -> bool:
    if not isinstance(key, str):
        return False
    name = key.lower().replace("-", "_")
    if name in SAFE_KEYS:
        return False
    return name in _SECRET_KEY_NAMES or _SECRET_KEY_SUFFIX.search(name) is not None


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Secret):
        return SECRET_PLACEHOLDER
    if depth >= _MAX_DEPTH:
        # Deep or self-referencing structures: not worth the risk of recursing.
        return REDACTED
    if isinstance(value, Mapping):
        return {
            key: _scrub(item, depth + 1)
            for key, item in value.items()
            if not _key_looks_secret(key)
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(item, depth + 1) for item in value]
    # Anything else would be rendered through its repr or str, which may embed
    # a secret (an exception message, a request object): render it here, scrubbed.
    return redact_text(str(value))


def redact(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: drop secret-named keys, scrub secret text, hide Secret objects.

    Runs last before rendering, after exceptions are formatted into text, so
    the traceback and every value added by earlier processors are covered.
    """
    return {
        key: _scrub(value)
        for key, value in event_dict.items()
        if key == "event" or not _key_looks_secret(key)
    }


# --- configuration ---------------------------------------------------------------------


class _AuditHandler(logging.StreamHandler[TextIO]):
    """Our root handler; its own type lets a second configure_logging find and replace it."""


def _shared_processors() -> list[Processor]:
    # Applied to our events and (as the foreign pre-chain) to stdlib records alike.
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.format_exc_info,
    ]


def configure_logging(
    *,
    fmt: Literal["json", "console"] = "json",
    level: str = "info",
    stream: TextIO | None = None,
    omit: Collection[str] = (),
    view: Processor | None = None,
) -> None:
    """Route structlog and the standard library through one redacting pipeline.

    `omit` names audit events not to print, and `view` reshapes each event
    after redaction, just before it is rendered (the demo summarises its skips
    and keeps its lines narrow; a real audit log has neither).
    Idempotent: a second call replaces the handler instead of adding one.
    """
    levelno = _LEVELS.get(level.lower())
    if levelno is None:
        raise ConfigError(f"log level {level!r} is not one of {', '.join(_LEVELS)}")
    out = stream if stream is not None else sys.stdout

    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    elif fmt == "console":
        isatty = getattr(out, "isatty", None)
        renderer = structlog.dev.ConsoleRenderer(colors=bool(isatty and isatty()))
    else:
        raise ConfigError(f"log format {fmt!r} is not json or console")

    handler = _AuditHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_shared_processors(),
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact,
                *([] if view is None else [view]),
                renderer,
            ],
        )
    )

    root = logging.getLogger()
    _remove_our_handlers(root)
    root.addHandler(handler)
    root.setLevel(levelno)
    for name in LIBRARY_LOGGERS:
        # NOTSET lets them follow the root level when debugging.
        logging.getLogger(name).setLevel(
            logging.NOTSET if levelno <= logging.DEBUG else logging.WARNING
        )

    omitted = frozenset(omit)

    def drop_omitted(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if event_dict.get("event") in omitted:
            raise structlog.DropEvent
        return event_dict

    structlog.configure(
        processors=[
            drop_omitted,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Filtering in the bound logger skips the processors for dropped levels.
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        # Not cached: tests and a re-configuration must take effect on existing loggers.
        cache_logger_on_first_use=False,
    )


def _remove_our_handlers(root: logging.Logger) -> None:
    for existing in list(root.handlers):
        if isinstance(existing, _AuditHandler):
            root.removeHandler(existing)
            existing.close()


def reset_logging() -> None:
    """Undo configure_logging: structlog defaults, no handler of ours, library levels cleared."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root = logging.getLogger()
    _remove_our_handlers(root)
    root.setLevel(logging.WARNING)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)


def get_logger(**initial: Any) -> Any:
    """A structlog logger for the audit log, with `initial` values bound."""
    return structlog.get_logger("rotator", **initial)
