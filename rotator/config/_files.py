"""Bounded file reading: only regular files, only up to a cap, never a hang.

A FIFO, a device or a huge file is refused at once (`Unreadable`), never
read until memory runs out; the config file and secret files both go through
`read_capped`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

# The most read from a file. A config file is a few kilobytes and a secret file
# one value; anything bigger is a wrong path (a log, a disk image, /dev/zero)
# and reading it whole would exhaust memory before saying so.
# The config cap also bounds the time TOML parsing takes (about 0.5 s at worst
# for 256 KiB of hostile TOML); a real config with thousands of rules fits.
CONFIG_FILE_LIMIT: Final = 256 * 1024
SECRET_FILE_LIMIT: Final = 64 * 1024
# Permission bits that let users other than the owner read or write a file.
SHARED_BITS: Final = 0o066


def size_text(size: int) -> str:
    return f"{size // (1024 * 1024)} MiB" if size >= 1024 * 1024 else f"{size // 1024} KiB"


class Unreadable(Exception):
    """A file refused before or while reading it: not a regular file, or over the size cap."""


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")


def read_capped(path: Path, limit: int) -> tuple[bytes, int]:
    """The bytes of the regular file at `path` (at most `limit`) and its mode bits.

    Never blocks and never reads without bound: a FIFO, a device (/dev/zero)
    or a socket is refused before it is opened, and again after (the path may
    have changed in between); the open itself is non-blocking. Raises OSError
    as `open` does (IsADirectoryError for a directory) and Unreadable.
    """
    too_big = f"is larger than {size_text(limit)}"
    info = os.stat(path)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(path)
    if not stat.S_ISREG(info.st_mode):
        raise Unreadable(f"is {_file_kind(info.st_mode)}, not a regular file")
    if info.st_size > limit:
        raise Unreadable(too_big)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable(f"is {_file_kind(info.st_mode)}, not a regular file")
        chunks: list[bytes] = []
        left = limit + 1  # one byte more than allowed tells "too big" from "exactly the cap"
        while left > 0:
            chunk = os.read(fd, min(left, 64 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise Unreadable(too_big)
    return data, info.st_mode
