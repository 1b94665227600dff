"""cgroups: how much a container may take, with one interface and a driver per cgroup version.

``limits.py`` says what may be limited; ``v1.py`` and ``v2.py`` say how each version of the
kernel's interface spells it, in files under /sys/fs/cgroup. ``driver()`` picks the one this
machine has (``labkit.kernel.cgroupfs``): a hybrid machine's controllers are v1's.
"""

from __future__ import annotations

from pathlib import Path

from labkit.errors import LabError
from labkit.kernel import cgroupfs
from labkit.runtime.cgroup import v1, v2

PARENT = "labkit"  # every container's group sits under this one, which the lab owns


def driver(mountinfo: Path = cgroupfs.MOUNTINFO) -> v1.V1 | v2.V2:
    """The driver for this machine's cgroups; a LabError where there are none."""
    mode = cgroupfs.mode(mountinfo)
    if mode == "v2":
        return v2.V2(cgroupfs.v2_root(mountinfo))
    if mode in ("v1", "hybrid"):
        return v1.V1(cgroupfs.v1_controllers(mountinfo))
    raise LabError("this machine has no cgroup filesystem mounted, so no limit can be set: "
                   "mount cgroup2 at /sys/fs/cgroup")


def group_of(container_id: str) -> str:
    """A container's group, relative to each tree's root: labkit/<its id>."""
    return f"{PARENT}/{container_id}"
