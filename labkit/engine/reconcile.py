"""``gc``: make the store agree with what really runs, after a crash or a ``kill -9``.

The store records what should be; processes and mounts are what is. Normally a container's
monitor keeps the two in step (``labkit.engine.monitor``), but a monitor can be killed, a
machine can lose power, a command can die half-way. Then the store says "running" of a container
that is not, a container runs on with nobody to take its output, a half-written layer lies in
``tmp/``. ``labkit gc`` looks at reality and tidies up, in this order, each step making the next
safe:

1. **stray mounts**: the lab's mounts live in containers' own mount namespaces and die with
   them, so the host's table should hold none of the store's. Any it holds (an overlay whose
   upper is in the store, or anything mounted under the store, left by a crashed older version
   or an experiment) is unmounted, before anything under the store is deleted: a recursive
   delete would go down into a mount and delete what it shows;
2. with the store's lock held (no command can start a container meanwhile), **what killed
   commands left in tmp/** is removed, as every locking command does;
3. **processes of containers without a monitor** are killed: a container whose monitor died
   would run on with its output going nowhere, and one whose record went behind the lab's back
   would run on with no record at all. A container's process is recognised by its root: the
   overlay whose upper is that container's, as ``/proc/PID/mountinfo`` shows it. ``stop``,
   ``rm`` and ``start`` look for one container's the same way (``orphans``), so that none of
   them mistakes a container whose monitor died for one that has stopped;
4. **what is no container** in ``containers/`` (a directory without its config: an upper
   orphaned by an older version; or one whose config cannot be read, and no monitor holds) is
   removed;
5. **containers without a monitor are marked exited**: with 137 (SIGKILL) when gc just killed
   them, else 255 (their real exit code died with their monitor), a state that cannot be read
   written anew; their cgroup is removed, their network lease ended and their ports
   unpublished; and their overlay's work directory, where a killed mount leaves its scratch
   files, is emptied;
6. **claims and cgroups that outlived their container**: an address or port claimed by a
   container whose store or directory is gone, and a container's cgroup no process is in
   (one whose record went behind the lab's back; a group made this very moment by a
   container starting in another store would be empty too, for an instant);
7. **layers that no image lists and no container stands on** (an ``rmi`` killed half-way) are
   removed.

It is idempotent: run twice, the second run finds nothing to do. It changes the host's mount
table, so it always runs in a process of its own (the Python API starts ``labkit gc``), never in
a Jupyter kernel.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from labkit.engine import leases, limiting, monitor, names, networking, store
from labkit.errors import LabError
from labkit.kernel import procfs, syscalls
from labkit.runtime.boot import python_argv
from labkit.runtime.steps.overlay import clear_work

KILLED = 128 + signal.SIGKILL
UNKNOWN = 255
DEATH_SECONDS = 10.0  # how long a process killed with SIGKILL may take to be gone
NOTHING = "nothing to do: the store agrees with what runs"


def collect() -> list[str]:
    """Reconcile the store with reality (see the module's docstring); one line per action."""
    done = [f"unmounted {point} ({what})" for point, what in unmount_strays(store.reading().root)]
    with store.writing() as lab:
        if lab.leftovers:
            done.append(f"removed {lab.leftovers} leftover(s) of killed labkit commands in tmp/")
        killed = kill_unmonitored(lab)
        done += [f"killed {count} process(es) of {_describe(lab, container_id)}: its monitor "
                 f"was gone" for container_id, count in sorted(killed.items())]
        for path, why in broken_containers(lab):
            lab.discard(path)
            done.append(f"removed containers/{path.name}: {why}")
        done += settle(lab, killed)
        done += [f"released {claim}: its container is gone" for claim in leases.release_stale()]
        done += [f"removed the cgroup {group}: no process is left in it"
                 for group in limiting.remove_empty()]
        for digest in lab.unused_layers():
            lab.remove_layer(digest)
            done.append(f"removed layer {store.short(digest)}: no image or container uses it")
    return done or [NOTHING]


def in_fresh_process() -> list[str]:
    """``labkit gc`` in a process of its own, for a caller that must not unmount (a notebook's
    kernel); return what it printed, line by line."""
    done = subprocess.run(python_argv("labkit.cli:main", "gc"), capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise LabError(done.stderr.strip().removeprefix("labkit: "))
    return done.stdout.splitlines()


# ---------------------------------------------------------------------------------------------
# 1. Stray mounts


def stray_mounts(root: Path) -> list[procfs.Mount]:
    """The mounts of this mount namespace that belong to the store at ``root``: an overlay whose
    upper is in it, or anything mounted under it (not on it: the store may be a tmpfs)."""
    return [mount for mount in procfs.mounts(os.getpid())
            if _under(mount.mount_point, root)
            or (mount.fs_type == "overlay" and _under(_option(mount, "upperdir"), root))]


def unmount_strays(root: Path) -> list[tuple[str, str]]:
    """Unmount the stray mounts, the kernel's list backwards (children before their parents);
    return each one's mount point and filesystem type."""
    strays = stray_mounts(root)
    for mount in reversed(strays):
        syscalls.umount2(mount.mount_point, syscalls.MNT_DETACH)
    return [(mount.mount_point, mount.fs_type) for mount in strays]


def _under(path: str | None, root: Path) -> bool:
    """Whether ``path`` lies under ``root``, as configured or with its symlinks resolved (the
    kernel shows mount points resolved, and an overlay's options as they were given)."""
    return path is not None and any(path.startswith(f"{str(form).rstrip('/')}/")
                                    for form in (root, root.resolve()))


def _option(mount: procfs.Mount, name: str) -> str | None:
    for option in mount.super_options:
        key, _, value = option.partition("=")
        if key == name:
            return value
    return None


# ---------------------------------------------------------------------------------------------
# 3. Processes of containers without a monitor


def kill_unmonitored(lab: store.Store) -> dict[str, int]:
    """SIGKILL every process of a container that has no monitor, or no longer exists, and wait
    until each is gone; return how many each container had."""
    monitored = {container_id for container_id in lab.container_ids()
                 if monitor.alive(lab.container_dir(container_id))}
    found = container_processes(lab.containers_dir)
    killed = {}
    for container_id, pidfds in found.items():
        if container_id in monitored:
            for pidfd in pidfds:
                os.close(pidfd)
            continue
        _kill(pidfds)
        killed[container_id] = len(pidfds)
    return killed


def orphans(lab: store.Store, container_id: str) -> list[int]:
    """The processes of one container that runs on without its monitor, as pidfds (none if
    its monitor lives): what ``stop``, ``rm`` and ``start`` must know of a dead container."""
    if monitor.alive(lab.container_dir(container_id)):
        return []
    found = container_processes(lab.containers_dir)
    for other, pidfds in found.items():
        if other != container_id:
            for pidfd in pidfds:
                os.close(pidfd)
    return found.get(container_id, [])


def stop_orphans(lab: store.Store, container_id: str, pidfds: list[int],
                 grace: float) -> int:
    """``docker stop`` without a monitor to ask: SIGTERM every process of the container, SIGKILL
    what is left ``grace`` seconds later, and record it exited; its exit code as a shell says
    it, 143 or 137 (the command's own died with its monitor)."""
    for pidfd in pidfds:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(pidfd, signal.SIGTERM)
    left = [pidfd for pidfd in pidfds if not select.select([pidfd], [], [], grace)[0]]
    for pidfd in pidfds:
        if pidfd not in left:
            os.close(pidfd)
    code = KILLED if left else 128 + signal.SIGTERM
    _kill(left)
    with store.writing() as lab:
        state = lab.container_state(container_id)
        lab.save_container_state(container_id, _exited(state, code))
        _empty_work(lab.container_dir(container_id) / store.WORK, container_id)
    return code


def container_processes(containers_dir: Path) -> dict[str, list[int]]:
    """Every process whose root is a container's overlay (its upper in ``containers_dir``),
    by the container's directory name, as pidfds: they hold on to the very process checked,
    whatever becomes of its pid. This process's own mount namespace is never one of them."""
    own = os.readlink("/proc/self/ns/mnt")
    roots: dict[str, str | None] = {own: None}  # the container each mount namespace is the root of
    found: dict[str, list[int]] = defaultdict(list)
    for pid in (int(name) for name in os.listdir("/proc") if name.isdigit()):
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # gone already
            continue
        container = _container_of(pid, roots, containers_dir)  # checked after pidfd_open
        if container is None:
            os.close(pidfd)
        else:
            found[container].append(pidfd)
    return dict(found)


def _container_of(pid: int, roots: dict[str, str | None], containers_dir: Path) -> str | None:
    """The container ``pid`` belongs to, looked up once per mount namespace in ``roots``."""
    try:
        namespace = os.readlink(f"/proc/{pid}/ns/mnt")
        if namespace not in roots:
            roots[namespace] = _root_of(pid, containers_dir)
    except (OSError, LabError):  # gone, or a zombie, which has no namespace left
        return None
    return roots[namespace]


def _root_of(pid: int, containers_dir: Path) -> str | None:
    """The directory name of the container whose overlay is ``pid``'s root, if it is one."""
    for mount in procfs.mounts(pid):
        upper = _option(mount, "upperdir") if mount.fs_type == "overlay" else None
        if mount.mount_point == "/" and upper is not None:
            container = Path(upper).parent
            if Path(upper).name == store.UPPER and container.parent in (
                    containers_dir, containers_dir.resolve()):
                return container.name
    return None


def _kill(pidfds: list[int]) -> None:
    """SIGKILL each process, then wait until each has died (its pidfd becomes readable)."""
    try:
        for pidfd in pidfds:
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except ProcessLookupError:
                continue
        for pidfd in pidfds:
            if not select.select([pidfd], [], [], DEATH_SECONDS)[0]:
                raise LabError("a container's process did not die of SIGKILL: see ps -ef")
    finally:
        for pidfd in pidfds:
            os.close(pidfd)


# ---------------------------------------------------------------------------------------------
# 4. What is no container


def broken_containers(lab: store.Store) -> list[tuple[Path, str]]:
    """The entries of containers/ that are no whole container, and why: no id for a name, no
    config, or a config that cannot be read and no monitor to stop first (``rm -f`` stops
    one). A container appears whole, by rename, so these were left by something else: an
    older version, a crash on a full disk, a hand."""
    if not lab.containers_dir.is_dir():
        return []
    broken, damaged = [], set(lab.damaged_containers())
    for entry in sorted(lab.containers_dir.iterdir()):
        if not names.is_id(entry.name) or not (entry / store.CONFIG).is_file():
            broken.append((entry, "no container's config in it"))
        elif entry.name in damaged and not monitor.alive(entry):
            broken.append((entry, "its config cannot be read"))
    return broken


# ---------------------------------------------------------------------------------------------
# 5. Containers without a monitor


def settle(lab: store.Store, killed: dict[str, int]) -> list[str]:
    """Mark each container without a monitor exited, and empty its work directory."""
    done = []
    for container_id in lab.container_ids():
        directory = lab.container_dir(container_id)
        if monitor.alive(directory):
            continue
        try:
            state = lab.container_state(container_id)
        except store.Damaged:
            state = store.ContainerState()  # written whole again below, as exited
        if state.status != store.EXITED:
            code = KILLED if container_id in killed else UNKNOWN
            lab.save_container_state(container_id, _exited(state, code))
            done.append(f"marked {_describe(lab, container_id)} exited ({code})")
        if limiting.remove(container_id):
            done.append(f"removed the cgroup of {_describe(lab, container_id)}")
        lease = networking.detach(lab, container_id)
        if lease is not None:
            done.append(f"released {lease.address} and {len(lease.ports)} published port(s) "
                        f"of {_describe(lab, container_id)}")
        if (directory / store.WORK / "work").exists():
            done.append(_empty_work(directory / store.WORK, _describe(lab, container_id)))
    return done


def _empty_work(work: Path, container: str) -> str:
    try:
        clear_work(work)
    except LabError as refusal:  # an overlay still uses it: a process gc could not see
        return f"left the work directory of {container}: {refusal}"
    return f"emptied the work directory of {container}"


def _exited(state: store.ContainerState, code: int) -> store.ContainerState:
    why = {KILLED: "it was killed", 128 + signal.SIGTERM: "it was stopped"}.get(
        code, "its exit code was lost with it")
    return replace(state, status=store.EXITED, exit_code=code, finished_at=store.timestamp(),
                   error=f"its monitor died; {why}")


def _describe(lab: store.Store, container_id: str) -> str:
    """``container web (0123456789ab)``, or ``removed container 0123456789ab``."""
    try:
        return f"container {lab.container_config(container_id).name} ({names.short(container_id)})"
    except (FileNotFoundError, LabError):
        return f"removed container {container_id[:names.SHORT_LENGTH]}"
