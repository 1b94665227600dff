"""``commit``: a container's writable layer becomes an image's newest read-only layer.

A container is its image's read-only layers plus one upper directory that took every change it
made (lesson 05): new and changed files whole, a deletion as a whiteout (a character device
0/0), a directory deleted and made again as an opaque directory (``trusted.overlay.opaque=y``).
So the new image is the old one plus exactly one layer, a copy of that upper:

- the image's layers are reused, not copied: the new image lists the very same layer
  directories, and one more. Only the upper is read, so the cost grows with the bytes the
  container changed, never with the size of its image;
- the copy is exact where it matters to the overlay: modes, owners, times, hard links, symlinks,
  device nodes, whiteouts (which ``shutil.copytree`` cannot make: it would try to read them) and
  extended attributes, the opaque marker among them. What is dropped is the kernel's own
  bookkeeping (``trusted.overlay.origin``, ``impure``, ``uuid``...): it ties the upper to the
  one mount that wrote it, and means nothing in a layer. Sockets are dropped too: no layer can
  carry a live endpoint;
- what the runtime mounted into the container is not there to copy: ``/dev``, ``/proc``,
  ``/sys``, ``/dev/init`` and the volumes were mounted *over* the overlay, in the container's own
  mount namespace, so nothing written to them went through to the upper. Only the empty
  directory (or file) made as a volume's mount point, when the image had none, is in the upper,
  and is kept, as ``docker commit`` keeps it;
- the layer is named by its content digest like any other (``labkit.engine.digest``), built in the
  store's ``tmp/`` and renamed into place, and the image's config is written atomically, all
  under the store's lock: a killed commit leaves only debris in ``tmp/``, which the next command
  removes.

A running container can be committed too, as ``docker commit --pause=false`` does: it keeps
running, and the copy is taken while it does. Each file is copied whole as it was at one moment
(one that changes while it is copied is copied again), but two files the container changes
during the commit may be caught one before and one after: stop it first for a commit of one
single moment. The copy never follows a symlink, whatever the container swaps in meanwhile: a
link to ``/etc/shadow`` in the upper must not make the host's file part of an image.

The new image runs as the container did, as with docker: its CMD is the container's command,
its workdir the container's, its environment the container's less what the runtime gives each
container of its own (``HOSTNAME``, and ``TERM`` for a terminal).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

from labkit.engine import store
from labkit.engine.layers import OPAQUE_XATTR
from labkit.errors import LabError

OVERLAY_XATTRS = "trusted.overlay."  # the kernel's bookkeeping, all but the opaque marker
ATTEMPTS = 3  # copies of a file that keeps changing under a running container, before giving up
CHUNK = 1 << 20


def commit(container: str, reference: str) -> store.Image:
    """Make the image ``reference`` from ``container``: its image's layers and its upper."""
    repository, tag = store.parse_reference(reference)
    container_id = store.reading().find_container(container)
    with store.writing() as lab:
        container_id = lab.find_container(container_id)  # it may have been removed meanwhile
        config = lab.container_config(container_id)
        with lab.staging() as stage:
            copy_layer(lab.container_dir(container_id) / store.UPPER, stage / "layer")
            digest = lab.add_layer(stage / "layer")
        if digest in config.layers:  # add_layer found it in place, and so changed nothing
            raise LabError(f"nothing new to commit: the changes of container {config.name} are "
                           f"exactly layer {store.short(digest)} of its image {config.image}, "
                           f"and an overlay cannot stack one layer twice")
        image = store.Image(repository, tag, layers=[*config.layers, digest],
                            env=image_env(config), cmd=list(config.command),
                            workdir=config.workdir, created=store.timestamp(),
                            parent=config.image_digest, exposed=list(config.expose))
        lab.save_image(image)
    return image


def image_env(config: store.ContainerConfig) -> list[str]:
    """The container's environment as ``NAME=VALUE`` lines, less what any container would be
    given anyway (its own HOSTNAME, TERM with a terminal, the default PATH and HOME)."""
    defaults = store.environment([], [], config.hostname, config.tty)
    return [f"{name}={value}" for name, value in config.env.items()
            if defaults.get(name) != value]


def copy_layer(upper: Path, target: Path) -> None:
    """Copy the directory ``upper`` to ``target`` (which must not exist yet), as a layer."""
    root = os.open(upper, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        _Copy().directory(root, str(upper), "", str(target))
    finally:
        os.close(root)


class _Copy:
    """One copy of a tree, read only through descriptors of directories opened without
    following symlinks, so that no path of the source can lead out of it: an entry is reached
    as ``/proc/self/fd/<its directory's descriptor>/<its name>``. It remembers the files it
    copied, to link the other names of a hard-linked file to the same copy."""

    def __init__(self):
        self.copied: dict[tuple[int, int], str] = {}

    def directory(self, fd: int, source: str, shown: str, target: str) -> None:
        """Copy the open directory ``fd``, found at ``source``, to ``target``; ``shown`` is
        its path in the container, for messages (empty for the root)."""
        info = os.fstat(fd)
        os.mkdir(target, 0o700)
        for entry in os.scandir(fd):
            self.entry(fd, entry.name, f"{shown}/{entry.name}", os.path.join(target, entry.name))
        _copy_metadata(source, target, info)

    def entry(self, parent: int, name: str, shown: str, target: str) -> None:
        """Copy one entry of the open directory ``parent``. One that a running container
        removes meanwhile is left out; one it replaces meanwhile is copied again."""
        for _ in range(ATTEMPTS):
            try:
                self._entry(parent, name, shown, target)
                return
            except FileNotFoundError:
                _remove(target)
                return
            except _Replaced:
                _remove(target)
        raise _keeps_changing(shown)

    def _entry(self, parent: int, name: str, shown: str, target: str) -> None:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
        source = f"/proc/self/fd/{parent}/{name}"
        if stat.S_ISDIR(info.st_mode):
            fd = _open(parent, name, os.O_DIRECTORY)
            try:
                self.directory(fd, source, shown, target)
            finally:
                os.close(fd)
        elif stat.S_ISREG(info.st_mode):
            self.file(parent, name, shown, target, info)
        elif stat.S_ISLNK(info.st_mode):
            os.symlink(os.readlink(name, dir_fd=parent), target)
            _copy_metadata(source, target, info)
        elif not stat.S_ISSOCK(info.st_mode):  # a whiteout (char 0/0), another node, a fifo
            os.mknod(target, info.st_mode, info.st_rdev)
            _copy_metadata(source, target, info)

    def file(self, parent: int, name: str, shown: str, target: str,
             info: os.stat_result) -> None:
        """Copy a regular file's bytes, or link to the copy of another of its names."""
        identity = (info.st_dev, info.st_ino)
        if info.st_nlink > 1 and identity in self.copied:
            os.link(self.copied[identity], target)
            return
        fd = _open(parent, name, os.O_NONBLOCK)  # a fifo swapped in must not block us
        try:
            version = _copy_bytes_steadily(fd, shown, target)
        finally:
            os.close(fd)
        _copy_metadata(f"/proc/self/fd/{parent}/{name}", target, version)
        self.copied[identity] = target


class _Replaced(Exception):
    """The entry is no longer what it was when listed: a running container replaced it."""


def _open(parent: int, name: str, flags: int) -> int:
    """Open an entry of ``parent`` for reading, never through a symlink."""
    try:
        return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | flags, dir_fd=parent)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):  # a symlink, or no directory, now
            raise _Replaced from None
        raise


def _copy_bytes_steadily(fd: int, shown: str, target: str) -> os.stat_result:
    """Copy the open file ``fd`` to ``target`` until a copy starts and ends on the same version
    of it (size and times); return that version's metadata."""
    for _ in range(ATTEMPTS):
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise _Replaced
        with open(target, "wb") as copy:
            _copy_data(fd, copy.fileno(), before.st_size)
        after = os.fstat(fd)
        if _version(before) == _version(after):
            return after
    raise _keeps_changing(shown)


def _copy_data(source: int, target: int, size: int) -> None:
    """Copy the data of ``source`` to ``target``, and keep its holes holes.

    A sparse file (``truncate -s 2G``) is mostly holes that take no disk; read byte by byte it
    is all zeros, and copied so it would fill 2 GB of the layer. SEEK_DATA finds where each run
    of data starts and SEEK_HOLE where it ends: only those are copied, each at its own offset,
    and the file is cut to its size, so the copy has the same holes (as ``cp --sparse``).
    """
    offset = 0
    while offset < size:
        try:
            start = os.lseek(source, offset, os.SEEK_DATA)
        except OSError as error:
            if error.errno != errno.ENXIO:  # ENXIO: no data after offset, only a hole
                raise
            break
        end = os.lseek(source, start, os.SEEK_HOLE)
        os.lseek(target, start, os.SEEK_SET)  # sendfile writes where the target stands
        while start < end and (sent := os.sendfile(target, source, start, min(CHUNK, end - start))):
            start += sent
        offset = end
    os.ftruncate(target, size)


def _keeps_changing(shown: str) -> LabError:
    return LabError(f"{shown} kept changing while it was copied: stop the container, "
                    f"then commit it")


def _version(info: os.stat_result) -> tuple[int, int, int]:
    return info.st_size, info.st_mtime_ns, info.st_ctime_ns


def _copy_metadata(source: str, target: str, info: os.stat_result) -> None:
    """Owner, mode, extended attributes and times, in that order: a chown clears the setuid
    bits and file capabilities, so both are set after it."""
    os.lchown(target, info.st_uid, info.st_gid)
    if not stat.S_ISLNK(info.st_mode):
        os.chmod(target, stat.S_IMODE(info.st_mode))
    for name in os.listxattr(source, follow_symlinks=False):
        value = os.getxattr(source, name, follow_symlinks=False)
        if _kept(name, value):
            os.setxattr(target, name, value, follow_symlinks=False)
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)


def _kept(name: str, value: bytes) -> bool:
    """Whether an extended attribute belongs in the layer: everything but the overlay's own
    bookkeeping, of which only the opaque marker is part of what the layer means."""
    return not name.startswith(OVERLAY_XATTRS) or (name, value) == (OPAQUE_XATTR, b"y")


def _remove(target: str) -> None:
    """Remove what was copied of an entry that vanished from the source."""
    if os.path.isdir(target) and not os.path.islink(target):
        shutil.rmtree(target)
    elif os.path.lexists(target):
        os.unlink(target)
