"""A process as the kernel describes it: its line in ``/proc/PID/stat``, and its end as a shell
reports it.

``/proc/PID/stat`` is one line of space-separated fields, but the second is the program's name
in parentheses, and a name may hold spaces and ``)`` itself (``prctl(PR_SET_NAME)`` lets a
process call itself anything). So the line is split at its *last* ``)``: what follows is the
state, the parent's pid, ... the start time (fields 3 onwards in ``man 5 proc``).

A process that ended is described by a *wait status*: an exit code, or the signal that killed
it. A shell reports the second as 128 + the signal's number (137 for SIGKILL, 143 for SIGTERM),
and so do docker and the lab.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

GONE = ("Z", "X")  # a zombie, or dead: the process runs no more


@dataclass(frozen=True)
class Stat:
    """The fields of ``/proc/PID/stat`` the lab reads."""

    state: str  # R running, S sleeping, ... Z zombie
    parent: int  # the parent's pid, as this PID namespace numbers it
    start_time: int  # clock ticks after boot: with the pid, what names one process for good

    @property
    def running(self) -> bool:
        return self.state not in GONE


def stat(pid: int | str, proc_dir: int | None = None) -> Stat:
    """Read ``/proc/PID/stat``; FileNotFoundError or ProcessLookupError once it is gone.

    ``proc_dir``: an open ``/proc/PID`` to read it from, so that it is that very process's file
    even if ``pid`` has been reused meanwhile.
    """
    path = "stat" if proc_dir is not None else f"/proc/{pid}/stat"
    with open(path, "rb", opener=lambda name, flags: os.open(name, flags, dir_fd=proc_dir)) as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return Stat(fields[0].decode(), int(fields[1]), int(fields[19]))


def state(pid: int) -> str | None:
    """Its state letter, or None once the process is gone (reaped, or never was)."""
    try:
        return stat(pid).state
    except (FileNotFoundError, ProcessLookupError):
        return None


def shell_code(returncode: int) -> int:
    """A ``Popen.returncode`` (``-N`` for a signal N) as a shell reports it: 128+N."""
    return returncode if returncode >= 0 else 128 - returncode


def exit_code(wait_status: int) -> int:
    """A ``wait()`` status as a shell reports it: the exit code, or 128+N for a signal N."""
    return shell_code(os.waitstatus_to_exitcode(wait_status))
