"""Reading and writing a cgroup's files, the kernel's whole interface to cgroups.

A write is the setting (``echo 67108864 > memory.max``); a read is a number, ``max``, or lines
of ``key value``. A group is removed with rmdir, which succeeds once no process is left in it.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from labkit.errors import LabError


def write(path: Path, value) -> None:
    """Write ``value`` to a cgroup file; a LabError names the file and the kernel's reason."""
    try:
        path.write_text(f"{value}\n")
    except OSError as error:
        raise LabError(f"cannot write {value} to {path}: {error.strerror}") from None


def number(path: Path) -> int | None:
    """A file holding one number; None for ``max`` (no limit) or a file that is not there."""
    try:
        text = path.read_text().split()[0]
    except (FileNotFoundError, IndexError):
        return None
    return None if text == "max" else int(text)


def field(path: Path, name: str) -> int | None:
    """The value of the ``name value`` line of a flat-keyed file (memory.events, cpu.stat)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        key, _, value = line.partition(" ")
        if key == name:
            return int(value)
    return None


def remove_dir(path: Path, seconds: float = 5.0) -> bool:
    """rmdir a group; True if it was there. A group's last processes leave it a moment after
    they exit, so a busy one is tried again for ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return False
        except OSError as error:
            if error.errno != errno.EBUSY or time.monotonic() > deadline:
                raise LabError(f"cannot remove the cgroup {path}: {error.strerror}") from None
            time.sleep(0.02)
