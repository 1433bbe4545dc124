"""sd_notify without systemd: datagrams to a socket the test binds, and the watchdog contract."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotator.sdnotify import Notifier


@pytest.fixture
def path_socket() -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket bound to a short filesystem path (sun_path is limited to 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    try:
        yield path, sock
    finally:
        sock.close()
        Path(path).unlink(missing_ok=True)
        os.rmdir(directory)


def test_path_socket_receives_each_message(path_socket: tuple[str, socket.socket]) -> None:
    """READY, STATUS, WATCHDOG and STOPPING arrive as the protocol spells them."""
    path, sock = path_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    assert notifier.enabled
    assert notifier.ready(status="up")
    assert b"READY=1\nSTATUS=up" == sock.recv(4096)
    assert notifier.status("3 rotated")
    assert b"STATUS=3 rotated" == sock.recv(4096)
    assert notifier.watchdog()
    assert b"WATCHDOG=1" == sock.recv(4096)
    assert notifier.stopping()
    assert b"STOPPING=1" == sock.recv(4096)
    notifier.close()


def test_abstract_socket() -> None:
    """A NOTIFY_SOCKET starting with @ names an abstract-namespace socket."""
    name = f"rotator-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert b"READY=1" == sock.recv(4096)
        notifier.close()


def test_unset_socket_is_a_no_op() -> None:
    """Without NOTIFY_SOCKET nothing is sent and nothing fails."""
    notifier = Notifier({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert [False, False, False, False] == [
        notifier.ready(),
        notifier.status("x"),
        notifier.watchdog(),
        notifier.stopping(),
    ]


def test_unreachable_socket_is_not_an_error(tmp_path: Path) -> None:
    """A socket path nobody listens on makes sends return False instead of raising."""
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    assert not notifier.ready()


def test_unsupported_address_disables() -> None:
    """A NOTIFY_SOCKET this client cannot speak (vsock, relative path) disables notifications."""
    for value in ("vsock:2:1234", "relative/path", "@", ""):
        assert not Notifier({"NOTIFY_SOCKET": value}).enabled, value


def test_watchdog_interval_is_half_the_timeout() -> None:
    """WATCHDOG_USEC=400000 means a keep-alive every 0.2 s."""
    assert 0.2 == Notifier({"WATCHDOG_USEC": "400000"}).watchdog_interval


def test_watchdog_pid_of_another_process_disables_watchdog(
    path_socket: tuple[str, socket.socket],
) -> None:
    """WATCHDOG_PID naming another process (an inherited environment) means no keep-alives."""
    path, sock = path_socket
    environ = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"}
    notifier = Notifier(environ, pid=4242)
    assert notifier.watchdog_interval is None
    assert not notifier.watchdog()
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(4096)


def test_watchdog_pid_of_this_process_enables_watchdog() -> None:
    """WATCHDOG_PID equal to our pid keeps the watchdog on."""
    environ = {"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid())}
    assert 0.2 == Notifier(environ).watchdog_interval


def test_invalid_watchdog_values_disable_watchdog() -> None:
    """A zero, negative or non-numeric WATCHDOG_USEC, or a garbage WATCHDOG_PID, means none."""
    for environ in (
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "-5"},
        {"WATCHDOG_USEC": "soon"},
        {"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "me"},
    ):
        assert Notifier(environ).watchdog_interval is None, environ


def test_status_stays_one_line(path_socket: tuple[str, socket.socket]) -> None:
    """A multi-line status is folded into one STATUS= line, so it cannot inject assignments."""
    path, sock = path_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.status("failed:\nREADY=1")
    assert b"STATUS=failed: READY=1" == sock.recv(4096)
    notifier.close()
