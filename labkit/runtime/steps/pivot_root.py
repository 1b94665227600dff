"""Step: enter the prepared rootfs with ``pivot_root``, leave the host's behind, and cd.

``chroot`` only changes where *one process* resolves ``/``; the host's whole tree is still
mounted in its namespace, just out of sight, and a process that can call chroot again (the
container's root can) walks back out: chroot into a subdirectory, then ``..`` past a root it is
no longer below. ``pivot_root`` changes the root *mount* of the mount namespace instead: the
rootfs becomes ``/`` for every process in it, and the old root becomes an ordinary mount that
can be unmounted. Once it is detached, the host's files are not hidden but gone from this
namespace: there is no path left that leads to them, and ``..`` of ``/`` is ``/``.

The man page's own recipe needs no directory to park the old root in, so nothing is made in the
container's upper layer: cd into the new root, ``pivot_root(".", ".")`` stacks the old root on
top of the new one at the same place, and ``umount2(".", MNT_DETACH)`` detaches it with every
mount below it (a plain umount would refuse a tree that has mounts inside). It needs the new
root to be a mount point (the overlay is) and no shared mount around it
(``make_mounts_private`` came first).

Then the command's working directory: ``workdir`` inside the container, created if the image
lacks it, as ``docker run -w`` does (it then lands in the upper layer, as in docker).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from labkit.errors import LabError
from labkit.kernel.syscalls import CLONE_NEWNS, MNT_DETACH, pivot_root, umount2
from labkit.runtime.spec import Step


@dataclass(frozen=True)
class PivotRoot(Step):
    """Make the rootfs at ``root`` the container's ``/``, detach the host's, cd to ``workdir``."""

    root: str
    workdir: str = "/"
    namespaces = CLONE_NEWNS

    def __post_init__(self) -> None:
        if not isinstance(self.workdir, str) or not self.workdir.startswith("/"):
            raise LabError(f"the working directory must be an absolute path inside the "
                           f"container, such as /root, not {self.workdir!r}")

    def apply(self) -> None:
        os.chdir(self.root)
        pivot_root(".", ".")
        umount2(".", MNT_DETACH)
        os.chdir("/")
        try:
            os.makedirs(self.workdir, mode=0o755, exist_ok=True)
            os.chdir(self.workdir)
        except OSError as error:
            raise LabError(f"cannot enter the working directory {self.workdir}: "
                           f"{error.strerror}") from None
