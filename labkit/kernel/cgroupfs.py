"""Where the kernel's cgroup trees are mounted, and which kind they are.

cgroups come in two versions, and a machine shows one of three layouts under /sys/fs/cgroup:

- **v2**: one tree, ``cgroup2``, mounted at /sys/fs/cgroup itself, every controller in it
  (Ubuntu 24.04, Debian 13, the lab's VM);
- **v1**: one tree *per controller* (``memory``, ``cpu``, ``pids``...), each mounted at its own
  /sys/fs/cgroup/NAME, where a process may sit in a different group in each;
- **hybrid**: v1's trees, plus an empty cgroup2 tree at /sys/fs/cgroup/unified that systemd
  uses for itself only (Debian 12 machines such as the CI's).

The mount table says which: a ``cgroup`` mount's options name its controllers.
"""

from __future__ import annotations

from pathlib import Path

from labkit.kernel.mountinfo import unescape

MOUNTINFO = Path("/proc/self/mountinfo")
ROOT = "/sys/fs/cgroup"


def v1_controllers(mountinfo: Path = MOUNTINFO) -> dict[str, Path]:
    """Each v1 controller's tree: {"memory": /sys/fs/cgroup/memory, ...}."""
    found = {}
    for point, fs_type, options in _cgroup_mounts(mountinfo):
        if fs_type == "cgroup":
            for option in options.split(","):
                if option not in ("rw", "ro") and "=" not in option:
                    found[option] = Path(point)
    return found


def v2_root(mountinfo: Path = MOUNTINFO) -> Path | None:
    """The cgroup2 tree when it is the machine's only one (mounted at /sys/fs/cgroup)."""
    for point, fs_type, _ in _cgroup_mounts(mountinfo):
        if fs_type == "cgroup2" and point == ROOT:
            return Path(point)
    return None


def mode(mountinfo: Path = MOUNTINFO) -> str:
    """``v2``, ``hybrid``, ``v1``, or ``none``."""
    if v2_root(mountinfo):
        return "v2"
    mounts = _cgroup_mounts(mountinfo)
    if not any(fs_type == "cgroup" for _, fs_type, _ in mounts):
        return "none"
    return "hybrid" if any(fs_type == "cgroup2" for _, fs_type, _ in mounts) else "v1"


def groups_of(pid: int, mountinfo: Path = MOUNTINFO) -> list[Path]:
    """The directories of the groups ``pid`` is in, one per tree (``/proc/PID/cgroup`` names
    them as ``ID:CONTROLLERS:PATH``, a path inside each tree, as this process's cgroup
    namespace sees it)."""
    trees = v1_controllers(mountinfo)
    root = v2_root(mountinfo)
    found = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        # A v1 tree is found by its first controller; the cgroup2 tree has none named (on a
        # hybrid machine it is systemd's own, and left out).
        tree = trees.get(controllers.split(",")[0]) if controllers else root
        if tree is not None:
            found.append(tree / path.lstrip("/"))
    return found


def _cgroup_mounts(mountinfo: Path) -> list[tuple[str, str, str]]:
    """(mount point, filesystem type, super options) of every cgroup mount."""
    found = []
    for line in mountinfo.read_bytes().splitlines():
        fields = line.split()
        dash = fields.index(b"-")
        fs_type = fields[dash + 1].decode()
        if fs_type in ("cgroup", "cgroup2"):
            found.append((unescape(fields[4]), fs_type, fields[dash + 3].decode()))
    return found
