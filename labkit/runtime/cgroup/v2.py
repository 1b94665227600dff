"""cgroup v2: one tree, so a container's group is one directory with every controller's files.

A parent lends its children a controller by naming it in its ``cgroup.subtree_control``; the
lab's parent, ``labkit``, asks the root for memory, cpu and pids, and lends them on. The memory
limit is ``memory.max`` (swap is counted apart: ``memory.swap.max``), the CPU time ``cpu.max``
(``QUOTA PERIOD``), the weight ``cpu.weight`` (1 to 10000, where v1's shares went from 2 to
262144), the processes ``pids.max``. ``cpu.stat`` counts the CPU time used, ``memory.events``
the OOM kills.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labkit.runtime.cgroup.files import field, number, remove_dir, write
from labkit.runtime.cgroup.limits import PERIOD_US, UNLIMITED, Limits
from labkit.runtime.cgroup.usage import Usage

CONTROLLERS = ("memory", "cpu", "pids")


def weight(shares: int) -> int:
    """v1's cpu.shares as v2's cpu.weight, by the formula runc and crun use."""
    return 1 + ((shares - 2) * 9999) // 262142


@dataclass(frozen=True)
class V2:
    root: Path
    name = "v2"

    def missing(self, limits: Limits) -> list[str]:
        available = (self.root / "cgroup.controllers").read_text().split()
        wanted = {"memory": limits.memory is not None or limits.memory_swap is not None,
                  "cpu": limits.cpus is not None or limits.cpu_shares is not None,
                  "pids": limits.pids is not None}
        return [name for name, needed in wanted.items() if needed and name not in available]

    def create(self, group: str, limits: Limits) -> None:
        """The group, with the parents' controllers lent down to it, then its limits."""
        parent = self.root
        for part in group.split("/"):
            enabled = (parent / "cgroup.subtree_control").read_text().split()
            lend = [c for c in CONTROLLERS if c not in enabled]
            if lend:
                write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in lend))
            parent = parent / part
            parent.mkdir(exist_ok=True)
        if limits.memory is not None:
            write(parent / "memory.max", limits.memory)
        swap = limits.swap_total()
        if swap is not None and limits.memory is not None:
            write(parent / "memory.swap.max",
                  "max" if swap == UNLIMITED else max(swap - limits.memory, 0))
        if limits.cpus is not None:
            write(parent / "cpu.max", f"{limits.cpu_quota_us()} {PERIOD_US}")
        if limits.cpu_shares is not None:
            write(parent / "cpu.weight", weight(limits.cpu_shares))
        if limits.pids is not None:
            write(parent / "pids.max", "max" if limits.pids == UNLIMITED else limits.pids)

    def join(self, group: str, pid: int) -> None:
        write(self.root / group / "cgroup.procs", pid)

    def usage(self, group: str) -> Usage:
        directory = self.root / group
        used_us = field(directory / "cpu.stat", "usage_usec")
        return Usage(cpu_ns=None if used_us is None else used_us * 1000,
                     memory=number(directory / "memory.current"),
                     memory_limit=number(directory / "memory.max"),
                     pids=number(directory / "pids.current"),
                     oom_kills=field(directory / "memory.events", "oom_kill"))

    def remove(self, group: str) -> list[str]:
        return [str(self.root / group)] if remove_dir(self.root / group) else []

    def children(self, group: str) -> list[str]:
        directory = self.root / group
        return sorted(child.name for child in directory.iterdir()
                      if child.is_dir()) if directory.is_dir() else []

    def members(self, group: str) -> list[int]:
        procs = self.root / group / "cgroup.procs"
        return sorted(int(pid) for pid in procs.read_text().split()) if procs.exists() else []

    def exists(self, group: str) -> bool:
        return (self.root / group).is_dir()
