"""``labkit reset``: a broken lab made new again, in one command.

A workshop cannot debug thirty VMs. Whatever a learner's experiments left behind (containers
still running, a container whose monitor was killed, a mount left under the store, an image
build killed half-way), reset takes the lab back to what ``./lab.sh setup`` made. Its steps come
in this order because each one makes the next safe:

1. every container with a monitor is stopped through it, as ``labkit stop -t 0`` does;
2. whatever of the store's is still mounted in reset's own mount namespace (the host's) is
   unmounted, deepest first, as ``labkit gc`` does it; the store's own mount, if it is one,
   stays;
3. under the store's lock, every process of a container whose monitor died is killed, as
   ``labkit gc`` finds and kills them; with their last process go the container's namespaces
   and every mount in them;
4. the containers' cgroups go, then the store's content, containers included: images,
   layers, containers, compiled samples, work in progress. Only once nothing is mounted under
   the store: a recursive delete descends into a mount, and through a leftover bind mount it
   would delete the files mounted there;
5. the lab's network goes, bridge and nftables table, and IPv4 forwarding is switched off if
   the lab switched it on; unless a container of another store is still on the bridge;
6. the base image is built again.

The notebooks and the repository are not touched. It is a command, run in a process of its own:
it unmounts in its own mount namespace, which a Jupyter kernel must never do.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

from labkit.engine import (
    baseimage,
    containers,
    limiting,
    monitor,
    names,
    networking,
    reconcile,
    store,
)
from labkit.errors import LabError
from labkit.runtime.cgroup import PARENT

KEPT = (store.MARKER, "lock")  # what makes the directory a store, and the lock reset holds


def reset(progress: baseimage.Progress = baseimage.quiet) -> Iterator[str]:
    """Take the lab back to what setup made, step by step; each step says what it did, as a
    line, once it is done."""
    root = store.reading().root  # checked first: a directory that is not a store is refused
    stopped = stop_monitored()
    unmounted = [point for point, _ in reconcile.unmount_strays(root)]
    with store.writing() as lab:
        stopped += [_name(lab, container_id) for container_id in reconcile.kill_unmonitored(lab)]
        yield (f"stopped {_count(stopped, 'container')}: {', '.join(sorted(stopped))}"
               if stopped else "no container was running")
        if unmounted:
            yield f"unmounted {_count(unmounted, 'mount')}: {', '.join(unmounted)}"
        for container_id in lab.container_ids():  # groups outlive their processes
            limiting.remove(container_id)
        removed = empty(lab)
        yield f"emptied the store {lab.root} ({', '.join(removed)})"
        yield from networking.teardown()
        if limiting.remove_parent():
            yield f"removed the lab's parent cgroup {PARENT}"
        lab.create()
        image, _ = baseimage.build(lab, progress=progress)
        size = store.human_size(lab.image_size(image))
    yield f"built {image.reference} {store.short(image.digest)} ({size})"
    yield "the lab is as new; labkit doctor checks the machine"


def _count(items: list, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def stop_monitored() -> list[str]:
    """Stop every container that runs with a monitor, at once, a damaged one included; return
    their names."""
    lab = store.reading()
    running = [container for container in containers.ps(all=True)
               if monitor.alive(lab.container_dir(container.id))]
    for container in running:
        containers.stop(container.id, timeout=0)
    return [container.name for container in running]


def _name(lab: store.Store, container_id: str) -> str:
    try:
        return lab.container_config(container_id).name
    except (FileNotFoundError, store.Damaged):  # removed, its processes running on; or damaged
        return names.short(container_id)


def empty(lab: store.Store) -> list[str]:
    """Remove everything in the store but its marker and lock; return the names removed.

    Checked first, under the store's lock: no container may have been started meanwhile, and
    nothing may be mounted under the store, or the delete could reach beyond it.
    """
    if any(container.status == store.RUNNING for container in containers.ps()):
        raise LabError("a container was started while the lab was being reset: "
                       "run labkit reset again")
    if reconcile.stray_mounts(lab.root):
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
