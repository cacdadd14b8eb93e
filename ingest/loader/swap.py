"""Swap a rebuilt lake day in atomically (replay and compaction).

Linux ``renameat2(RENAME_EXCHANGE)`` exchanges two directories in one step: a reader globbing
the day sees the old files or the new ones, never a mix or nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def fsync_path(path: Path) -> None:
    """fsync a file or a directory."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def exchange(a: Path, b: Path) -> None:
    """Atomically swap two directories."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    rc = libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"renameat2 exchange failed: {os.strerror(err)}", str(a))


def swap_in(new: Path, target: Path) -> None:
    """Make directory ``new`` the content of ``target``; the old content ends up in ``new``.

    Every file in ``new`` and ``new`` itself are fsynced first; afterwards the parent.
    """
    new.mkdir(parents=True, exist_ok=True)
    for f in new.iterdir():
        fsync_path(f)
    fsync_path(new)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        exchange(new, target)
    else:
        os.replace(new, target)
        new.mkdir()
    fsync_path(target.parent)
