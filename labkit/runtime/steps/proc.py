"""Step: ``/proc`` and ``/sys`` for the container, with runc's masked and read-only paths.

A fresh ``/proc`` shows the container's own processes (lesson 04), but much of it is the
kernel's, not the container's: ``/proc/sys`` sets the whole machine's tunables (the program the
kernel runs on every crash is ``/proc/sys/kernel/core_pattern``, run as the host's root),
``/proc/sysrq-trigger`` reboots it, ``/proc/kcore`` is its memory. So, as runc does:

- **read-only paths** are bound onto themselves and remounted read-only: the container can read
  the tunables but a write fails with EROFS (``/proc/sys``, ``/proc/sysrq-trigger``,
  ``/proc/irq``, ``/proc/bus``, ``/proc/fs``);
- **masked paths** are hidden: a file under ``/dev/null`` (bound over it: reads are empty,
  writes vanish), a directory under an empty read-only tmpfs. They leak the host's secrets
  or timing (``/proc/kcore``, ``/proc/keys``, ``/proc/timer_list``, ``/proc/sched_debug``,
  ``/proc/acpi``, ``/proc/scsi``, ``/sys/firmware``, ...). A path this kernel lacks is skipped.

``/sys`` is mounted fresh and read-only: a sysfs mounted in the container's network namespace
lists that namespace's interfaces (``lo`` alone), and read-only it cannot reconfigure devices.

A mount can be undone by whoever may mount: these hold because the container's root loses
CAP_SYS_ADMIN (``hardening.py``). Everything is mounted inside the rootfs being prepared, before
``pivot_root``; the mount points exist in the image, so nothing reaches the upper layer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from labkit.errors import LabError
from labkit.kernel.syscalls import CLONE_NEWNS, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, mount
from labkit.runtime.spec import Step
from labkit.runtime.steps.rootfs import bind, inside, mount_point

READ_ONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

MASKED_PATHS = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap")

_SAFE = MS_NOSUID | MS_NODEV | MS_NOEXEC


@dataclass(frozen=True)
class ProcAndSys(Step):
    """Mount ``/proc`` and a read-only ``/sys`` in the rootfs at ``root``, masked as runc does.

    Masking binds the container's own ``/dev/null`` (``devices.py``), never the host's.
    """

    root: str
    namespaces = CLONE_NEWNS

    def apply(self) -> None:
        null = inside(self.root, "/dev/null")
        if not os.path.exists(null):
            raise LabError(f"{null} is missing: the Devices step comes before this one")
        mount("proc", mount_point(self.root, "/proc"), "proc", _SAFE)
        mount("sysfs", mount_point(self.root, "/sys"), "sysfs", _SAFE | MS_RDONLY)
        for path in READ_ONLY_PATHS:
            where = self._existing(path)
            if where:
                bind(where, where, read_only=True)
        for path in MASKED_PATHS:
            where = self._existing(path)
            if where and os.path.isdir(where):
                mount("tmpfs", where, "tmpfs", _SAFE | MS_RDONLY)
            elif where:
                bind(null, where)

    def _existing(self, path: str) -> str | None:
        """The host's path of ``path`` in the rootfs, if this kernel has it."""
        where = inside(self.root, path)
        return where if os.path.exists(where) else None
