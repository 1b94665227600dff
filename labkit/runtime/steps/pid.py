"""Step: a process space of the container's own (the PID namespace, lesson 03).

``unshare(CLONE_NEWPID)`` is odd: the caller stays where it is, because a process's pid can
never change, and only the children it forks afterwards enter the new namespace. So this step
has nothing to do inside: the launcher forks right after unsharing, and the child it forks is
PID 1 of the new namespace. That child runs the lab's init (``init.py``), which starts the
command as PID 2 and does the two jobs the kernel gives every PID 1: forward signals, which PID 1
would otherwise ignore, and reap the orphans it inherits.
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit.kernel.syscalls import CLONE_NEWPID
from labkit.runtime.spec import Step


@dataclass(frozen=True)
class PidNamespace(Step):
    """Start the container in a new PID namespace, where its init is PID 1."""

    namespaces = CLONE_NEWPID
