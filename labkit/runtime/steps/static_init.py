"""Step: a PID 1 that is no host binary, bind-mounted read-only at ``/dev/init``.

The lesson containers run the lab's init (``init.py``) as PID 1, and that is the host's python.
In a container with a root filesystem of its own that would be a way out: the kernel shows each
process's program as ``/proc/PID/exe``, a link that opens the very file even when no path in
the container leads to it. The container's root could read the host's python through
``/proc/1/exe``, or, as CVE-2019-5736 did to runc, open it for writing and replace it, and the
host would run that the next time it starts python.

So the container's PID 1 is ``init.c``: the same job (run the command, forward signals, reap
zombies), written in C and linked statically, so it needs no library from the image. The
engine compiles it once into the store's cache (``labkit.engine.builds``), and it is shown
inside the container by a read-only bind mount, as ``docker run --init`` does with its tini:
``/proc/1/exe`` is then that read-only file, which nobody can write through, and nothing of the
host's.

Its mount point is a file made on the ``/dev`` tmpfs (``devices.py``), not in the image, so the
container's upper layer stays clean. The bind is made before ``pivot_root``: afterwards the
host's files are out of reach. The container's first process execs it once every step is done
(``init.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from labkit.errors import LabError
from labkit.kernel.syscalls import CLONE_NEWNS, TMPFS_MAGIC, filesystem_type
from labkit.runtime.spec import Step
from labkit.runtime.steps.rootfs import bind, inside

INIT_PATH = "/dev/init"


@dataclass(frozen=True)
class StaticInit(Step):
    """Show the host file ``binary`` read-only at ``/dev/init`` in the rootfs at ``root``,
    to be exec'd as the container's PID 1."""

    root: str
    binary: str
    namespaces = CLONE_NEWNS
    init_program = INIT_PATH

    def __post_init__(self) -> None:
        if not os.path.isfile(self.binary):
            raise LabError(f"the container's init {self.binary} is missing: it is built by "
                           f"labkit.engine.builds.static_init()")

    def apply(self) -> None:
        dev = inside(self.root, "/dev")
        if filesystem_type(dev) != TMPFS_MAGIC:
            raise LabError(f"{dev} is not the runtime's /dev tmpfs: the Devices step comes "
                           f"first, or the init's mount point would land in the upper layer")
        target = inside(self.root, INIT_PATH)
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o755))
        bind(self.binary, target, read_only=True)
