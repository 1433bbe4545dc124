"""Process hardening applied once at start: no core dump may ever hold a secret.

Owns the process-wide measures taken before any secret is read: the core file
size limit set to 0 (soft and hard, so nothing later can raise it again) and,
on Linux, the process marked non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`), which
also stops other processes of the same user from reading its memory through
ptrace or `/proc/<pid>/mem`. A SIGABRT (what systemd's watchdog sends) then
kills the process without writing the Vault token, the Monite client secret
or any webhook secret to disk.

Each measure is best effort: where it is unavailable or refused (another OS,
a seccomp filter) the process starts anyway, and nothing is logged (logging
is not configured yet, and there is nothing secret to say).
"""

from __future__ import annotations

import contextlib
import sys

PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def harden_process() -> tuple[str, ...]:
    """Disable core dumps for this process; the names of the measures that failed, if any."""
    failed: list[str] = []
    if not _no_core_files():
        failed.append("core_limit")
    if sys.platform == "linux" and not _not_dumpable():
        failed.append("dumpable")
    return tuple(failed)


def _no_core_files() -> bool:
    try:
        import resource
    except ImportError:  # not a POSIX system: no core files to prevent here
        return True
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        return True
    except (OSError, ValueError):
        pass
    # The hard limit could not be lowered: at least the soft one.
    with contextlib.suppress(OSError, ValueError):
        _, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
        return True
    return False


def _not_dumpable() -> bool:
    try:
        # Imported here: a Python built without _ctypes must still start.
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (ImportError, OSError, AttributeError, TypeError):
        return False
