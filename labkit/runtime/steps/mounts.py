"""Step: a mount table of the container's own and a fresh ``/proc`` (lesson 04).

A new mount namespace starts as a copy of the caller's mount table, and each copied mount keeps
its propagation. Where ``/`` is shared (every systemd host), a mount made in the copy propagates
back to the host: the article's ``mount -t proc proc /proc`` then hides the host's ``/proc``
under one that shows the container's processes, and the host's ``ps`` breaks. So the first mount
call in every new mount namespace makes all of it private (MS_REC|MS_PRIVATE): from then on
nothing mounted inside is seen outside. runc uses MS_SLAVE|MS_REC instead, which still lets the
host's new mounts flow in; the lab wants none.

``/proc`` shows the processes of the PID namespace of whoever mounted it, so a container with
its own PID namespace needs a ``/proc`` of its own, mounted from inside.
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit.kernel.syscalls import (
    CLONE_NEWNS,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_REC,
    mount,
)
from labkit.runtime.spec import Step


def make_mounts_private() -> None:
    """Cut every mount of this namespace off from its peers outside; first, before any mount."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)


@dataclass(frozen=True)
class PrivateProc(Step):
    """Give the container a private mount namespace and a ``/proc`` of its own processes."""

    namespaces = CLONE_NEWNS

    def apply(self) -> None:
        make_mounts_private()
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
