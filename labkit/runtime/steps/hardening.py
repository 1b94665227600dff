"""Step: the last one, so that the container's root cannot undo the others.

The container's command runs as root (uid 0), and on Linux root is mostly a bundle of
*capabilities*. With all of them it could simply remount ``/proc/sys`` read-write, mount a
fresh ``/proc`` over the masked one, or make a device node for the host's disk: every step so
far would be undone by a mount(2) or mknod(2) call. So, after the last mount and just before
exec, this step takes away what the container does not need:

1. **Descriptors.** Every descriptor above 2 becomes close-on-exec (close_range(2)), so none
   the caller leaked crosses into the container: an open directory of the host would be a way
   out of the rootfs (``fchdir``, then ``..``). Close-on-exec, not closed: the lab's report
   pipe stays usable until the exec that starts the container's init.
2. **Capabilities**, cut to docker's default set in the sets the kernel keeps for what may be
   used: the bounding set (the most any later exec can ever give back), permitted and
   effective. The inheritable and ambient sets are emptied, as docker leaves them: what they
   hold can be handed to a program across exec, and a container's programs are given nothing
   that way. CAP_SYS_ADMIN goes, so mount, remount and umount fail.
   One difference from docker: docker keeps CAP_MKNOD and forbids block devices with the
   device cgroup, which lets ``mknod`` succeed only for the harmless nodes. The lab uses no
   cgroup yet, and a nodev mount would not stop the mknod itself, only the open; so the lab
   drops CAP_MKNOD, and mknod of any device fails. (Named pipes need no capability.)
3. **no_new_privs**: no exec can gain privileges from then on, not even a setuid-root binary
   or a file with capabilities. It is inherited and cannot be unset.
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit.kernel.syscalls import (
    CLOSE_RANGE_CLOEXEC,
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAPBSET_DROP,
    PR_SET_NO_NEW_PRIVS,
    capset,
    close_range,
    prctl,
)
from labkit.runtime.spec import Step

# docker's default capabilities, with their numbers from <linux/capability.h>.
DOCKER_DEFAULT = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5,
                  "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "NET_BIND_SERVICE": 10, "NET_RAW": 13,
                  "SYS_CHROOT": 18, "MKNOD": 27, "AUDIT_WRITE": 29, "SETFCAP": 31}

# What the lab keeps: docker's set without MKNOD (see the module's docstring).
KEPT = {name: number for name, number in DOCKER_DEFAULT.items() if name != "MKNOD"}

_LAST_DESCRIPTOR = 0xFFFFFFFF  # close_range's "and every one above"


def last_capability() -> int:
    """The highest capability number this kernel knows."""
    with open("/proc/sys/kernel/cap_last_cap") as known:
        return int(known.read())


def keep_only(capabilities: set[int]) -> None:
    """Cut every capability set of this process down to ``capabilities``."""
    for number in range(last_capability() + 1):
        if number not in capabilities:
            prctl(PR_CAPBSET_DROP, number)  # needs CAP_SETPCAP, so before capset()
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    mask = sum(1 << number for number in capabilities)
    capset(effective=mask, permitted=mask, inheritable=0)


@dataclass(frozen=True)
class Hardening(Step):
    """Close-on-exec every descriptor above 2, keep only ``KEPT``, set no_new_privs."""

    def apply(self) -> None:
        close_range(3, _LAST_DESCRIPTOR, CLOSE_RANGE_CLOEXEC)
        keep_only(set(KEPT.values()))
        prctl(PR_SET_NO_NEW_PRIVS, 1)
