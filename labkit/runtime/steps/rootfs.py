"""Step: the container's root filesystem, the image's layers under its own upper, plus volumes.

A container of an image sees the image's read-only layers merged under one writable layer of
its own (``overlay.py``, lesson 05), mounted here on an empty directory of the host (docker's
``merged``). This is only where the container's ``/`` is *prepared*: the next steps mount
``/dev``, ``/proc`` and ``/sys`` into it, and ``pivot_root.py`` then makes it the root. Once it
is the root the host's files are gone for good, so whatever the container needs from the host
is mounted in before that: its volumes here, the static init with ``/dev``.

Volumes (``-v HOST:CTR[:ro]``) are bind mounts: the same directory or file of the host, seen at
a second place, inside the rootfs. Writes go straight to the host, past the overlay, so a volume
outlives the container and ``commit`` never sees what is in it. A read-only volume is a bind
mount remounted read-only: the kernel sets a bind mount's flags only on a remount. It is a plain
bind, not docker's recursive ``rbind``: what is mounted *below* the host path is not carried
along, because a read-only remount would cover only the top mount and leave those writable.

Paths inside the rootfs are resolved as the container will see them: a symlink in the image
that points at ``/etc`` means the container's ``/etc``, never the host's, even though the
runtime follows it from the host's side (``inside``). A volume's mount point is even found and
made by descriptor, never by a path string (``bind_volume``): another container sharing the
volume could change the path between two system calls. A volume whose container path does not
exist in the image gets an empty directory (or file) made for it, as docker makes one; that
mount point is written through the overlay, so it lands in the container's upper layer, and
``commit`` keeps it as an empty directory, as ``docker commit`` does. The runtime's own mount
points (``/dev``, ``/proc``, ``/sys``) exist in the base image, so they add nothing to the
upper; a container path inside them is refused, since those are mounted over the volumes.

Every check comes before the first mount: a volume whose host path does not exist is a
LabError when the step is made, in the caller, before any process or mount exists.

The overlay's upper and work directories are claimed (``overlay.py``) while the container is
set up. The claim is a descriptor on a host directory, and no such descriptor may cross into
the container (it would be a way out of the rootfs): it is close-on-exec, so the claim ends
when PID 1 starts. From then on it is the container store's job to start each container once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from labkit.errors import LabError
from labkit.kernel.syscalls import (
    CLONE_NEWNS,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REMOUNT,
    RESOLVE_IN_ROOT,
    mount,
    openat2,
)
from labkit.runtime.spec import Step
from labkit.runtime.steps.mounts import make_mounts_private
from labkit.runtime.steps.overlay import Overlay

RUNTIME_MOUNTS = ("/dev", "/proc", "/sys")

# A bind mount copies these flags from its source; a remount must repeat them or clear them.
_KEPT_FLAGS = {os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC}

_SYMLINKS_MAX = 40  # the kernel's limit on symlinks followed in one path lookup


def _error(message: str) -> LabError:
    return LabError(message)


def inside(root: str, path: str) -> str:
    """The host's path of ``path`` as a process whose root is ``root`` would resolve it.

    Symlinks are followed, but an absolute target starts again at ``root`` and ``..`` stops at
    it, as they will once ``root`` is the container's ``/``. A component that does not exist
    (yet) is taken as it is.
    """
    pending = [part for part in path.split("/") if part not in ("", ".")]
    resolved: list[str] = []
    followed = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if not os.path.islink(candidate):
            resolved.append(part)
            continue
        followed += 1
        if followed > _SYMLINKS_MAX:
            raise _error(f"too many symlinks in {path} inside the container's rootfs")
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        pending[:0] = [part for part in target.split("/") if part not in ("", ".")]
    return os.path.join(root, *resolved)


def mount_point(root: str, path: str, directory: bool = True) -> str:
    """The host's path of ``path`` inside ``root``, made (an empty directory or file) if missing."""
    where = inside(root, path)
    try:
        if directory:
            os.makedirs(where, mode=0o755, exist_ok=True)
        elif not os.path.lexists(where):
            os.makedirs(os.path.dirname(where), mode=0o755, exist_ok=True)
            os.close(os.open(where, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except OSError as error:
        raise _error(f"cannot make the mount point {path} in the container: "
                     f"{error.strerror}") from None
    return where


def bind(source: str, target: str, read_only: bool = False) -> None:
    """Show ``source`` (a directory or a file) at ``target`` too; read-only if asked."""
    mount(source, target, None, MS_BIND)
    if read_only:
        remount_read_only(target)


def remount_read_only(target: str) -> None:
    """Make the bind mount at ``target`` read-only, keeping the flags it copied."""
    flags = os.statvfs(target).f_flag
    kept = sum(mount_flag for flag, mount_flag in _KEPT_FLAGS.items() if flags & flag)
    mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | kept)


def bind_volume(root: int, host: str, container: str, read_only: bool) -> None:
    """Bind the host path ``host`` at ``container`` in the rootfs open as ``root``, by
    descriptor: the mount point is found, and made if missing, by ``openat2`` with
    RESOLVE_IN_ROOT, and the mount lands on the descriptor (``/proc/self/fd/N``), never on a
    path the host's root would resolve. A volume is a host directory, which another container
    may share and change at the very moment: with a path, swapping a directory for a symlink
    between the check and the mkdir or mount made them land anywhere on the host (runc's
    CVE-2021-30465). runc resolves and mounts this way since."""
    where = _made_in_root(root, container, directory=os.path.isdir(host))
    try:
        mount(host, f"/proc/self/fd/{where}", None, MS_BIND)
    finally:
        os.close(where)
    if read_only:  # the volume now, not what was under it: open it again, through the mount
        mounted = openat2(root, container, os.O_PATH, RESOLVE_IN_ROOT)
        try:
            remount_read_only(f"/proc/self/fd/{mounted}")
        finally:
            os.close(mounted)


def _made_in_root(root: int, path: str, directory: bool) -> int:
    """An O_PATH descriptor of ``path`` in the rootfs open as ``root``; what is missing of it is
    made on the way: directories, and at the end an empty file unless ``directory``. Each
    lookup starts again at ``root`` and cannot leave it; each make is relative to the parent's
    descriptor, by a name with no ``/`` in it."""
    parts = [part for part in path.split("/") if part]
    for depth in range(1, len(parts)):
        os.close(_reached(root, parts[:depth], directory=True))
    return _reached(root, parts, directory)


def _reached(root: int, parts: list[str], directory: bool) -> int:
    """The descriptor of ``parts`` in the rootfs, made first if it is missing."""
    path = "/".join(parts)
    try:
        return openat2(root, path, os.O_PATH, RESOLVE_IN_ROOT)
    except OSError as error:
        if error.errno != errno.ENOENT:
            raise _error(f"cannot reach the mount point /{path} in the container: "
                         f"{error.strerror}") from None
    _make(root, "/".join(parts[:-1]), parts[-1], directory)
    return openat2(root, path, os.O_PATH, RESOLVE_IN_ROOT)


def _make(root: int, parent: str, name: str, directory: bool) -> None:
    """Make ``name`` in the directory ``parent`` of the rootfs, reached by descriptor."""
    try:
        where = openat2(root, parent or ".", os.O_PATH | os.O_DIRECTORY, RESOLVE_IN_ROOT)
    except OSError as error:  # it was there a moment ago: something changes it, a sharer
        raise _error(f"cannot make the mount point /{parent}/{name} in the container: "
                     f"/{parent} changed meanwhile ({error.strerror}); does another "
                     f"container share that volume?") from None
    try:
        if directory:
            os.mkdir(name, 0o755, dir_fd=where)
        else:
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644,
                             dir_fd=where))
    except FileExistsError:
        pass  # made meanwhile: the lookup after this finds whatever it is, inside the rootfs
    except OSError as error:
        raise _error(f"cannot make the mount point {parent}/{name} in the container: "
                     f"{error.strerror}") from None
    finally:
        os.close(where)


@dataclass(frozen=True)
class RootFs(Step):
    """Mount ``lowers`` (top first) under ``upper`` on ``target``, then bind the volumes in,
    and the files the engine wrote for the container (its ``/etc/hostname``, as docker does).

    ``volumes`` holds ``[host_path, container_path, read_only]`` lists, ``engine_files``
    ``[host_path, container_path]`` lists; the engine writes those just before the start, so
    they are checked when they are bound, not when the spec is made.
    """

    lowers: list[str]
    upper: str
    work: str
    target: str
    volumes: list[list] = field(default_factory=list)
    engine_files: list[list] = field(default_factory=list)
    namespaces = CLONE_NEWNS

    @classmethod
    def of(cls, lowers: Sequence[str | Path], upper: str | Path, work: str | Path,
           target: str | Path, volumes: Sequence[tuple[str | Path, str, bool]] = (),
           engine_files: Sequence[tuple[str | Path, str]] = ()) -> RootFs:
        """A RootFs of absolute host paths and clean container paths, checked."""
        overlay = Overlay.of(lowers, upper, work, target)
        volumes = [[os.path.abspath(host), _clean(container), read_only]
                   for host, container, read_only in volumes]
        engine_files = [[os.path.abspath(host), container] for host, container in engine_files]
        return cls(overlay.lowers, overlay.upper, overlay.work, overlay.target, volumes,
                   engine_files)

    def __post_init__(self) -> None:
        """Refuse a bad volume before anything exists: in the caller, and again in the
        launcher (a host path may have gone in between)."""
        seen = set()
        for host, container, read_only in self.volumes:
            if not os.path.exists(host):
                raise _error(f"volume source {host} does not exist: create it, or correct "
                             f"the path before ':' in -v {host}:{container}")
            if not isinstance(read_only, bool):
                raise _error(f"volume {host}:{container}: read_only is True or False, "
                             f"not {read_only!r}")
            if not (isinstance(container, str) and container.startswith("/")
                    and container != "/" and container == _clean(container)):
                raise _error(f"volume {host}:{container}: the container path must be "
                             f"absolute and not /, such as /data")
            if any(container == mounted or container.startswith(mounted + "/")
                   for mounted in RUNTIME_MOUNTS):
                raise _error(f"volume {host}:{container}: the runtime mounts its own "
                             f"{', '.join(RUNTIME_MOUNTS)}; choose a path outside them")
            if container in seen:
                raise _error(f"volume {host}:{container}: two volumes on {container}")
            seen.add(container)

    def apply(self) -> None:
        make_mounts_private()
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.target, 0o755)
        overlay = Overlay(self.lowers, self.upper, self.work, self.target)
        overlay.prepare(ExitStack())  # the claim ends at exec, see the module's docstring
        overlay.mount()
        root = os.open(self.target, os.O_PATH | os.O_DIRECTORY)  # the overlay, now mounted
        try:
            # Parents before children: a volume at /data/cache must land on the one at /data.
            for host, container, read_only in sorted(self.volumes,
                                                     key=lambda volume: volume[1].count("/")):
                bind_volume(root, host, container, read_only)
            for host, container in self.engine_files:
                bind_volume(root, host, container, read_only=False)
        finally:
            os.close(root)


def _clean(container_path: str) -> str:
    """``/data/`` -> ``/data``, ``//a/../b`` -> ``/b``; anything but an absolute path comes back
    as it is, to be refused."""
    if not isinstance(container_path, str) or not container_path.startswith("/"):
        return container_path
    return "/" + posixpath.normpath(container_path).lstrip("/")
