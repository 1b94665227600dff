"""What a process forked from a Python one must do, wherever the lab forks one.

The lab forks Python processes in five places: the launcher forks the container's first
process (``launch.py``), the ``exec`` helper forks the command it joins to a container
(``exec.py``), the warm helper forks launchers (``spawn/warm.py``), a monitor forks its
launcher (``spawn/forked.py``), and ``labkit run`` forks the monitor (``engine/monitor.py``).
The child is a copy of its parent, its whole call stack included, so two rules hold in each:

- it never returns into its parent's code (``exit_with``);
- it keeps none of its parent's descriptors that it does not need (``close_all_but``): another
  container's pipes, a socket of the parent's clients, or a lock, which would stay held as long
  as the child lives.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from labkit.errors import LAB_ERROR


def exit_with(body: Callable[[], int]) -> None:
    """Run ``body`` in a forked child and exit with its code, whatever happens.

    An exception that escaped would go on to run the parent's loop a second time, in the child.
    """
    try:
        code = body()
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = LAB_ERROR
    os._exit(code)


def close_all_but(keep: int) -> None:
    """Close every descriptor above 2 but ``keep``."""
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
