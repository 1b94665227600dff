"""Step: a minimal ``/dev`` of the container's own, on a tmpfs.

A device node is a door to a kernel driver: whoever can open ``/dev/sda`` reads the host's
disk, whatever the mount namespace. So the container does not get the host's ``/dev``, nor any
node bound from it: it gets a small tmpfs with the few character devices every program expects,
made with mknod(2) from their well-known numbers:

- ``null``, ``zero``, ``full``: discard, zeros, and a disk that is always full (for tests);
- ``random``, ``urandom``: the kernel's random numbers;
- ``tty``: the process's own controlling terminal, whichever it is.

And the pieces programs look for around them:

- ``pts/``: a *new instance* of devpts, so that a terminal opened in the container lives here
  and the host's terminals are not listed; ``ptmx`` (mode 0666, so any user can open a
  terminal) points at its own ``pts/ptmx``, where a new terminal pair is made;
- ``shm/``: a tmpfs for POSIX shared memory (``shm_open``), empty, and not shared with the host;
- ``fd``, ``stdin``, ``stdout``, ``stderr``: links to ``/proc/self/fd``, which shells use for
  ``<(...)`` and ``/dev/stdin``.

No block device is ever made, and without CAP_MKNOD (``hardening.py``) the container cannot
make one either. The tmpfs lives in memory and dies with the mount namespace, so nothing here
reaches the container's upper layer: ``/dev`` itself already exists in the image.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from labkit.kernel.syscalls import CLONE_NEWNS, MS_NODEV, MS_NOEXEC, MS_NOSUID, mount
from labkit.runtime.spec import Step
from labkit.runtime.steps.rootfs import mount_point

# name: (major, minor), from the kernel's Documentation/admin-guide/devices.txt.
NODES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9),
         "tty": (5, 0)}

LINKS = {"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
         "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}

# docker's sizes: /dev holds only nodes and links, /dev/shm what programs share.
_DEV_OPTIONS = "mode=755,size=65536k"
_SHM_OPTIONS = "mode=1777,size=65536k"
# newinstance: a devpts of its own; ptmxmode: anyone may open pts/ptmx; mode: a new terminal is
# its owner's to read and write, and its group's to write (for `write` and `wall`).
_PTS_OPTIONS = "newinstance,ptmxmode=0666,mode=0620"


@dataclass(frozen=True)
class Devices(Step):
    """Mount a minimal ``/dev`` in the rootfs at ``root``: a few nodes, pts and shm."""

    root: str
    namespaces = CLONE_NEWNS

    def apply(self) -> None:
        dev = mount_point(self.root, "/dev")
        mount("tmpfs", dev, "tmpfs", MS_NOSUID, _DEV_OPTIONS)
        for name, (major, minor) in NODES.items():
            path = os.path.join(dev, name)
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
            os.chmod(path, 0o666)  # mknod's mode is cut by the umask
        _mount_dir(dev, "pts", 0o755, "devpts", MS_NOSUID | MS_NOEXEC, _PTS_OPTIONS)
        _mount_dir(dev, "shm", 0o1777, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, _SHM_OPTIONS)
        for name, target in LINKS.items():
            os.symlink(target, os.path.join(dev, name))


def _mount_dir(dev: str, name: str, mode: int, fstype: str, flags: int, options: str) -> None:
    path = os.path.join(dev, name)
    os.mkdir(path, mode)
    mount(fstype, path, fstype, flags, options)
