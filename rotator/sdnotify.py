"""The systemd notification protocol (sd_notify), without a dependency.

Owns talking to the service manager: `READY=1`, `STATUS=...`, `WATCHDOG=1`
and `STOPPING=1` datagrams to the AF_UNIX socket named by `$NOTIFY_SOCKET`
(a leading `@` names a Linux abstract-namespace socket), and reading the
watchdog contract from `$WATCHDOG_USEC` / `$WATCHDOG_PID`. Without
`$NOTIFY_SOCKET` (not under systemd, or `Type=simple`) every call is a no-op.

A notification that cannot be delivered is dropped: the service manager
restarting must never take the daemon down with it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    """Sends notifications to the service manager named in `environ`."""

    def __init__(self, environ: Mapping[str, str], *, pid: int | None = None) -> None:
        self._address = _address(environ.get("NOTIFY_SOCKET", ""))
        self._socket: socket.socket | None = None
        self.watchdog_interval = _watchdog_interval(environ, os.getpid() if pid is None else pid)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=value` lines in one datagram; True when it was handed to the socket."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        try:
            if self._socket is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._socket = sock
            self._socket.sendto(payload, self._address)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([_status(status)] if status is not None else []))

    def status(self, text: str) -> bool:
        return self.notify(_status(text))

    def watchdog(self) -> bool:
        """One keep-alive; only sent when the manager asked this process for them."""
        if self.watchdog_interval is None:
            return False
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([_status(status)] if status is not None else []))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _address(value: str) -> str | bytes | None:
    if value.startswith("@") and len(value) > 1:
        # Abstract namespace: the name starts with a NUL byte and has no file.
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    # Unset, empty, or a transport we do not speak (systemd's vsock: addresses).
    return None


def _watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between keep-alives (half the manager's timeout), or None for no watchdog."""
    watchdog_pid = environ.get("WATCHDOG_PID", "")
    # The variables are inherited by children; only the named process may ping.
    if watchdog_pid and (not watchdog_pid.isdigit() or int(watchdog_pid) != pid):
        return None
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    return int(usec) / 2_000_000


def _status(text: str) -> str:
    # One datagram line per assignment: a newline would start a bogus one.
    return "STATUS=" + " ".join(text.split())
