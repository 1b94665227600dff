"""A mount namespace of the benchmark's own, so nothing it mounts or unmounts reaches the host.

The benchmark hides the host's cgroup2 mount from crun, and mounts overlays to copy; both
happen here, in a namespace whose mounts were made private first (docs/safety.md rule 2), and die
with it.
"""

from __future__ import annotations

import os
import subprocess
import sys

_MARKER = "LABKIT_BENCH_PRIVATE_MOUNTS"
UNIFIED = "/sys/fs/cgroup/unified"


def enter(module: str, argv: list[str]) -> None:
    """Run ``python -m module argv`` again in a new, private mount namespace, unless this is
    that run already; return only in the new namespace."""
    if os.environ.pop(_MARKER, None) == "1":
        return
    os.environ[_MARKER] = "1"
    os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", "--",
                          sys.executable, "-m", module, *argv])


def hide_cgroup2() -> bool:
    """Unmount the hybrid layout's cgroup2 in this namespace only; say whether there was one.

    crun 1.8 refuses a hybrid host ("cgroups in hybrid mode not supported, drop all controllers
    from cgroupv2") as soon as the v2 hierarchy has a controller. Without it, crun sees a plain
    cgroup v1 host and makes its cgroups there, as runc does.
    """
    if not os.path.ismount(UNIFIED):
        return False
    subprocess.run(["umount", UNIFIED], check=True)
    return True
