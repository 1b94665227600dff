"""cgroup v1: a tree per controller, so a container's group is one directory in each.

The memory limit is ``memory.limit_in_bytes`` (and with swap ``memory.memsw.limit_in_bytes``),
the CPU time ``cpu.cfs_quota_us`` per ``cpu.cfs_period_us``, the weight ``cpu.shares``, the
processes ``pids.max``. CPU time used is counted by ``cpuacct``, a controller of its own here;
``memory.oom_control`` counts the kernel's OOM kills in the group.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labkit.runtime.cgroup.files import field, number, remove_dir, write
from labkit.runtime.cgroup.limits import PERIOD_US, UNLIMITED, Limits
from labkit.runtime.cgroup.usage import Usage

CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")  # the ones the lab creates a group in
NO_LIMIT = 2**62  # a v1 memory limit this large means none (it reads 9223372036854771712)


@dataclass(frozen=True)
class V1:
    trees: dict[str, Path]  # controller -> where its tree is mounted
    name = "v1"

    def missing(self, limits: Limits) -> list[str]:
        """The controllers ``limits`` needs that this machine has not mounted."""
        wanted = {"memory": limits.memory is not None or limits.memory_swap is not None,
                  "cpu": limits.cpus is not None or limits.cpu_shares is not None,
                  "pids": limits.pids is not None}
        return [name for name, needed in wanted.items() if needed and name not in self.trees]

    def create(self, group: str, limits: Limits) -> None:
        for controller in self._present():
            (self.trees[controller] / group).mkdir(parents=True, exist_ok=True)
        memory = self._dir("memory", group)
        if limits.memory is not None:
            write(memory / "memory.limit_in_bytes", limits.memory)
            swap = limits.swap_total()
            if swap is not None and (memory / "memory.memsw.limit_in_bytes").exists():
                write(memory / "memory.memsw.limit_in_bytes", swap)
        cpu = self._dir("cpu", group)
        if limits.cpus is not None:
            write(cpu / "cpu.cfs_period_us", PERIOD_US)
            write(cpu / "cpu.cfs_quota_us", limits.cpu_quota_us())
        if limits.cpu_shares is not None:
            write(cpu / "cpu.shares", limits.cpu_shares)
        if limits.pids is not None:
            write(self._dir("pids", group) / "pids.max",
                   "max" if limits.pids == UNLIMITED else limits.pids)

    def join(self, group: str, pid: int) -> None:
        for controller in self._present():
            write(self._dir(controller, group) / "cgroup.procs", pid)

    def usage(self, group: str) -> Usage:
        memory, pids = self._dir("memory", group), self._dir("pids", group)
        return Usage(cpu_ns=number(self._dir("cpuacct", group) / "cpuacct.usage"),
                     memory=number(memory / "memory.usage_in_bytes"),
                     memory_limit=_limit(number(memory / "memory.limit_in_bytes")),
                     pids=number(pids / "pids.current"),
                     oom_kills=field(memory / "memory.oom_control", "oom_kill"))

    def remove(self, group: str) -> list[str]:
        """rmdir the group in every tree; the directories removed."""
        return [str(self.trees[c] / group) for c in self._present()
                if remove_dir(self.trees[c] / group)]

    def children(self, group: str) -> list[str]:
        """The groups directly under ``group``, in any tree."""
        return sorted({child.name for c in self._present() if (self.trees[c] / group).is_dir()
                       for child in (self.trees[c] / group).iterdir() if child.is_dir()})

    def members(self, group: str) -> list[int]:
        """The processes in the group, in any tree."""
        return sorted({int(pid) for c in self._present()
                       if (self.trees[c] / group / "cgroup.procs").exists()
                       for pid in (self.trees[c] / group / "cgroup.procs").read_text().split()})

    def exists(self, group: str) -> bool:
        return any((self.trees[c] / group).is_dir() for c in self._present())

    def _present(self) -> list[str]:
        return [controller for controller in CONTROLLERS if controller in self.trees]

    def _dir(self, controller: str, group: str) -> Path:
        return self.trees[controller] / group if controller in self.trees else Path("/nonexistent")


def _limit(value: int | None) -> int | None:
    """v1 writes "no limit" as the largest page-aligned number a counter holds."""
    return None if value is None or value >= NO_LIMIT else value

