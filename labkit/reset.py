"""``labkit reset``: a broken lab made new again, in one command.

A workshop cannot debug thirty VMs. Whatever a learner's experiments left behind (containers
still running, a container whose monitor was killed, a mount left under the store, an image
build killed half-way), reset takes the lab back to what ``./lab.sh setup`` made. Its steps come
in this order because each one makes the next safe:

1. every container stops. One with a monitor is stopped through it, as ``labkit stop -t 0``
   does. One whose monitor died may still run: its PID 1 is killed, once its start time proves
   the pid is still that process. The kernel then ends the PID namespace, and with its last
   process the container's mount namespace and every mount in it;
2. whatever is still mounted under the store, in reset's own mount namespace (the host's), is
   unmounted, deepest first; the store's own mount, if it is one, stays;
3. the store's content goes, containers included: images, layers, containers, compiled samples,
   work in progress. Only once nothing is mounted under the store: a recursive delete descends
   into a mount, and through a leftover bind mount it would delete the files mounted there;
4. the base image is built again.

The notebooks and the repository are not touched. It is a command, run in a process of its own:
it unmounts in its own mount namespace, which a Jupyter kernel must never do.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
from pathlib import Path

from labkit import baseimage, containers, enter, inspect, store, syscalls
from labkit.errors import LabError

KEPT = (store.MARKER, "lock")  # what makes the directory a store, and the lock reset holds
DEATH_SECONDS = 10.0  # how long a killed PID 1 may take to be gone


def command(args) -> int:
    """``labkit reset``: say what each step did."""
    root = store.reading().root  # checked first: a directory that is not a store is refused
    stopped = stop_containers()
    print(f"stopped {_count(stopped, 'container')}: {', '.join(stopped)}" if stopped
          else "no container was running")
    unmounted = unmount_under(root)
    if unmounted:
        print(f"unmounted {_count(unmounted, 'mount')}: {', '.join(unmounted)}")
    with store.writing() as lab:
        removed = empty(lab)
        print(f"emptied the store {lab.root} ({', '.join(removed)})")
        lab.create()
        image, _ = baseimage.build(lab)
        size = store.human_size(lab.image_size(image))
    print(f"built {image.reference} {store.short(image.digest)} ({size})")
    print("the lab is as new; labkit doctor checks the machine")
    return 0


def _count(items: list, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def stop_containers() -> list[str]:
    """Stop every container at once; return the names of those that were still running."""
    stopped = []
    for container in containers.ps(all=True):
        if container.status == store.RUNNING:
            containers.stop(container.id, timeout=0)
        elif container.status == containers.DEAD:
            kill_init(container.state)
        else:
            continue
        stopped.append(container.name)
    return stopped


def kill_init(state: store.ContainerState) -> None:
    """SIGKILL a container's PID 1 if it still runs, and wait until it is gone.

    A pidfd is opened first and the start time checked after: if the pid had been reused by
    then, the pidfd is the newcomer's and its start time tells; if not, the pidfd holds on to
    the very process that was checked, whatever happens to the pid meanwhile.
    """
    if state.init_pid is None:
        return
    try:
        pidfd = os.pidfd_open(state.init_pid)
    except ProcessLookupError:
        return
    try:
        if _start_time(state.init_pid) != state.init_start:
            return
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        if not select.select([pidfd], [], [], DEATH_SECONDS)[0]:  # readable once it has died
            raise LabError(f"the container's PID 1 ({state.init_pid}) did not die of SIGKILL")
    except ProcessLookupError:
        return
    finally:
        os.close(pidfd)


def _start_time(pid: int) -> int | None:
    try:
        return enter.start_time(pid)
    except FileNotFoundError:
        return None


def unmount_under(root: Path) -> list[str]:
    """Unmount every mount strictly under ``root`` in this mount namespace; return their points.

    The kernel lists a mount after the one it sits on, so going backwards unmounts children
    before their parents, and the top of a stack before what it covers.
    """
    found = _mounts_under(root)
    for point in reversed(found):
        syscalls.umount2(point, syscalls.MNT_DETACH)
    left = _mounts_under(root)
    if left:
        raise LabError(f"still mounted under the store after unmounting: {', '.join(left)}; "
                       f"unmount them by hand (umount -l PATH), then run labkit reset again")
    return found


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()).rstrip("/") + "/"
    return [mount.mount_point for mount in inspect.mounts(os.getpid())
            if mount.mount_point.startswith(prefix)]


def empty(lab: store.Store) -> list[str]:
    """Remove everything in the store but its marker and lock; return the names removed.

    Checked first, under the store's lock: no container may have been started meanwhile, and
    nothing may be mounted under the store, or the delete could reach beyond it.
    """
    if any(container.status == store.RUNNING for container in containers.ps()):
        raise LabError("a container was started while the lab was being reset: "
                       "run labkit reset again")
    if _mounts_under(lab.root):
        raise LabError("something was mounted under the store while the lab was being reset: "
                       "run labkit reset again")
    removed = []
    for entry in sorted(lab.root.iterdir()):
        if entry.name in KEPT:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append(entry.name)
    return removed
