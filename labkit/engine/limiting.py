"""A container's cgroup from the engine's side: the step that makes it, what it used, its end.

The runtime's step makes the group when the container starts (``runtime/steps/cgroups.py``);
the group outlives its processes, so the engine removes it: the monitor when the container
ends (after reading whether the OOM killer struck), ``rm`` and ``gc`` for a container whose
monitor was killed, ``reset`` for all. ``stats`` reads what each group has used.
"""

from __future__ import annotations

from labkit.runtime.cgroup import PARENT, driver, group_of
from labkit.runtime.cgroup.usage import Usage
from labkit.runtime.steps.cgroups import Cgroup


def step(config) -> Cgroup | None:
    """The container's cgroup step; None for a record older than limits."""
    return Cgroup(group_of(config.id), config.limits) if config.limits else None


def usage(container_id: str) -> Usage:
    return driver().usage(group_of(container_id))


def oom_killed(container_id: str) -> bool:
    """Whether the kernel's OOM killer killed in the container's group."""
    return bool(usage(container_id).oom_kills)


def remove(container_id: str) -> list[str]:
    """Remove the container's group, once its last process has left it; what was removed."""
    return driver().remove(group_of(container_id))


def remove_parent() -> list[str]:
    """Remove the lab's own parent group where no container's group is left in it
    (``labkit reset``); the directories removed."""
    cgroups = driver()
    if any(cgroups.children(PARENT)):
        return []
    return cgroups.remove(PARENT)


def remove_empty() -> list[str]:
    """Remove every container group under the lab's parent that no process is in: left by a
    container whose record went behind the lab's back (``gc``); the groups removed."""
    cgroups = driver()
    removed = []
    for name in cgroups.children(PARENT):
        group = f"{PARENT}/{name}"
        if not cgroups.members(group):
            cgroups.remove(group)
            removed.append(group)
    return removed
