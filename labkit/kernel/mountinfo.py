"""``/proc/PID/mountinfo``, the kernel's list of what is mounted where: its escapes, and the
mount points alone.

``procfs.py`` parses every field of it, for the lessons' tables. The store only needs to know
whether anything is mounted under a directory before it deletes one, and asks that in a
container's monitor at its busiest moment, so this module stays small.
"""

from __future__ import annotations

import os
import re

_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")


def unescape(field: bytes) -> str:
    """Undo the kernel's octal escapes: mountinfo writes a space in a path as ``\\040``.

    The fields are space-separated, so the kernel escapes space, tab, newline and backslash
    in paths; decoding bytes first keeps names that are not valid UTF-8 intact.
    """
    return os.fsdecode(_OCTAL_ESCAPE.sub(lambda m: bytes([int(m[1], 8)]), field))


def mount_points(pid: int | str = "self") -> list[str]:
    """Where something is mounted, as ``pid`` sees it: the fifth field of each line."""
    with open(f"/proc/{pid}/mountinfo", "rb") as mountinfo:
        return [unescape(line.split(b" ")[4]) for line in mountinfo]
