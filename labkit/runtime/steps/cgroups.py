"""Step: a cgroup of the container's own, with its limits, entered before the command runs.

Namespaces decide what a container sees; a cgroup decides how much it may take. The container's
first process makes its group (``labkit/<id>`` in each tree), writes the limits into the
group's files, and writes its own pid into ``cgroup.procs``: from then on it and everything it
starts are counted and held to them, the command included. (On v2, ``clone3()`` with
CLONE_INTO_CGROUP could start a child straight in the group; a write before exec is the way that
works everywhere.) On v2 it then takes a cgroup namespace of its own, as docker does by default:
inside, ``/proc/self/cgroup`` says ``0::/``, its group looks like the root.

It comes late, just before ``pivot_root`` hides the host's /sys/fs/cgroup: the container's
first process is the lab's Python until it execs the container's init, and what a process
allocated before it joined a group is not charged to the group. So the limits count the
container's own programs, not the tens of megabytes of the interpreter that set it up (runc,
in Go, and crun, in C, join early: their setup is small). Until then the process has forked
nothing, so no process escapes the group.

The group outlives the container's processes; the engine removes it when the container ends.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from labkit.kernel.syscalls import CLONE_NEWCGROUP, unshare
from labkit.runtime.cgroup import driver
from labkit.runtime.cgroup.limits import Limits
from labkit.runtime.spec import Step


@dataclass(frozen=True)
class Cgroup(Step):
    """Enter ``group`` (``labkit/<id>``), made with ``limits`` (a ``Limits`` as a dict)."""

    group: str
    limits: dict

    def apply(self) -> None:
        cgroups = driver()
        cgroups.create(self.group, Limits(**self.limits))
        cgroups.join(self.group, os.getpid())
        if cgroups.name == "v2":
            unshare(CLONE_NEWCGROUP)
