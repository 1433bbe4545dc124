"""What `rotator` exits with: the one table of exit codes the CLI and the daemon share.

Standard library and `rotator.errors` only, so a usage or config error can
exit without importing the engine, HTTP or Vault libraries.
"""

from __future__ import annotations

import enum

from rotator.errors import DependencyError, MoniteAuthError, VaultAuthError, VaultConfigError


class ExitCode(enum.IntEnum):
    """What `rotator` exits with (the README lists them; sysexits.h names where one applies)."""

    OK = 0
    FAILED = 1  # some rotation failed (or a drain ran out of time)
    USAGE = 2
    UNAVAILABLE = 69  # EX_UNAVAILABLE: Monite or Vault unreachable
    SOFTWARE = 70  # EX_SOFTWARE: an unexpected exception (a bug)
    NOPERM = 77  # EX_NOPERM: Monite or Vault refused our credentials
    CONFIG = 78  # EX_CONFIG: bad configuration
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


def dependency_exit_code(exc: DependencyError) -> ExitCode:
    """CONFIG when Vault's answer shows a setting is wrong (no such namespace or mount, not
    KV v2), NOPERM when Monite or Vault refused our credentials or a policy denies a path
    (waiting cannot fix either), else UNAVAILABLE."""
    if isinstance(exc, VaultConfigError):
        return ExitCode.CONFIG
    if isinstance(exc, MoniteAuthError | VaultAuthError):
        return ExitCode.NOPERM
    return ExitCode.UNAVAILABLE


__all__ = ["ExitCode", "dependency_exit_code"]
