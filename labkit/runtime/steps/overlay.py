"""Step: an overlay filesystem, read-only layers under one writable layer (lesson 05).

overlayfs merges directories into one view on a target: ``lowers``, read-only, the first on top
(the order of ``lowerdir=``), under one ``upper`` that takes every write. A write to a file of a
lower layer first *copies it up* into the upper; a deletion leaves a whiteout there; a directory
deleted and made again becomes opaque (see ``labkit.engine.layers``). The lowers are never
written, so once the mount is gone the upper directory is exactly what changed: a layer of its own.
The kernel also needs a ``work`` directory on the upper's filesystem, where it prepares each copy-up
before renaming it into place, so no one ever sees a half-copied file.

An image is its read-only layers; a container is those plus one upper. Three mount options are
pinned, whatever defaults the kernel was built with, so that an upper stays a *portable diff*:
plain files, whiteouts and opaque directories that mean the same on top of any copy of its
lowers, and that ``commit`` can turn into a new layer.

Mounting changes the calling process's mount namespace, so it happens only in a fresh,
single-threaded process whose mount namespace is its own and private (docs/safety.md rule 1):

- ``Overlay(...)`` as a step of a container spec: the launcher's child mounts it, and the mount
  lasts as long as the container's mount namespace;
- ``mounted(lowers, upper, work, target)``: a context manager for code already running in such
  a process, which unmounts and tidies up when the block ends. Lesson 05's helper process
  (``labkit.lessons.merged_view``) mounts with it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from labkit.errors import LabError
from labkit.kernel import syscalls
from labkit.runtime.spec import Step
from labkit.runtime.steps.mounts import make_mounts_private

PORTABLE_OPTIONS = {
    # Renaming a directory that comes from a lower layer: with redirect_dir=on the kernel moves
    # an empty upper directory whose xattr trusted.overlay.redirect points back at the old path,
    # "my contents are in the lowers, over there". The upper then holds a pointer into one
    # particular stack instead of the files, and read as a plain tree (commit, tar) the renamed
    # directory is empty. Off, rename(2) fails with EXDEV as between two filesystems, and `mv`
    # falls back to copy and delete: the directory arrives in the upper whole, the old name is
    # whited out.
    "redirect_dir": "off",
    # With metacopy=on a metadata-only change (chmod, chown) copies up the inode but not the
    # data: the upper file is an empty shell marked trusted.overlay.metacopy whose bytes are
    # still read from a lower file. Off, every copy-up copies the data: each upper file is whole.
    "metacopy": "off",
    # With index=on the kernel records each copy-up in work/index, keyed by the lower file's
    # handle, and stamps the upper with the identity of its lowers, checked at every mount: the
    # upper then refuses any other copy of those lowers, and part of the layer's truth lives in
    # the work directory, which is no part of the layer. Off, nothing ties the upper to the
    # exact lower inodes (the price: a hard link to a lower file copies up as a separate file).
    "index": "off",
}

Paths = Sequence[str | Path]


@dataclass(frozen=True)
class Overlay(Step):
    """Mount ``lowers`` (top first) under ``upper`` on ``target``, with ``work`` beside upper."""

    lowers: list[str]
    upper: str
    work: str
    target: str
    namespaces = syscalls.CLONE_NEWNS

    @classmethod
    def of(cls, lowers: Paths, upper: str | Path, work: str | Path,
           target: str | Path) -> Overlay:
        """An Overlay of absolute paths, so it means the same from any working directory."""
        return cls([os.path.abspath(lower) for lower in lowers], os.path.abspath(upper),
                   os.path.abspath(work), os.path.abspath(target))

    def options(self) -> str:
        """The mount data: the layers, then the pinned options that keep the upper portable."""
        pinned = ",".join(f"{name}={value}" for name, value in PORTABLE_OPTIONS.items())
        return (f"lowerdir={':'.join(self.lowers)},upperdir={self.upper},"
                f"workdir={self.work},{pinned}")

    def check(self) -> None:
        """Refuse in one line what the kernel refuses with a bare errno (its reason in dmesg)."""
        if not self.lowers:
            raise LabError("an overlay needs at least one lower directory")
        for number, lower in enumerate(self.lowers, 1):
            _require_directory(lower, f"lower directory {number}")
        _require_directory(self.upper, "upper directory")
        _require_directory(self.work, "work directory")
        _require_directory(self.target, "target directory")
        for layer in (*self.lowers, self.upper, self.work):
            if "," in layer or ":" in layer:
                raise LabError(f"{layer} holds ',' or ':', which separate the overlay's mount "
                               "options and lowers: use a path without them")
        if syscalls.filesystem_type(self.upper) == syscalls.OVERLAYFS_SUPER_MAGIC:
            raise LabError(f"upper directory {self.upper} is on an overlay filesystem, which "
                           "the kernel refuses as an upper: put it on ext4, xfs or tmpfs")
        if os.stat(self.upper).st_dev != os.stat(self.work).st_dev:
            raise LabError(f"upper {self.upper} and work {self.work} are on different "
                           "filesystems: the kernel renames finished copy-ups from work into "
                           "upper, which cannot cross filesystems; keep both side by side")

    def prepare(self, claims: ExitStack) -> None:
        """Check, lock upper and work for this overlay alone until ``claims`` closes, and
        clear what an earlier, killed mount left in work."""
        self.check()
        claims.callback(os.close, _claim(self.upper, "upper"))
        claims.callback(os.close, _claim(self.work, "work"))
        _clear(self.work)

    def mount(self) -> None:
        """Mount the overlay on the target, in this process's own mount namespace."""
        try:
            syscalls.mount("overlay", self.target, "overlay", 0, self.options())
        except syscalls.SyscallError as error:
            raise LabError(f"the kernel refused the overlay on {self.target} "
                           f"({errno.errorcode[error.errno]}): `dmesg | tail` says why") from None

    def apply(self) -> None:
        """In the container's first process: mount, for as long as the mount namespace lives.

        The locks are never released here: their descriptors close when this process, the
        container's init, ends, and with it the namespace and the mount.
        """
        make_mounts_private()
        self.prepare(ExitStack())
        self.mount()


def _require_directory(path: str, role: str) -> None:
    if not os.path.isdir(path):
        missing = "is not a directory" if os.path.exists(path) else "does not exist"
        raise LabError(f"{role} {path} {missing}: create it or correct the path")


def _claim(directory: str, role: str) -> int:
    """Lock ``directory`` (flock, exclusive, without waiting); return the descriptor holding it.

    The kernel lets two overlays share an upper or work directory and only warns in dmesg,
    though each then corrupts the other's view. So the lab refuses it itself. The lock is on the
    directory itself (no lock file to forget), and it dies with the process holding it, even
    on kill -9.
    """
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise LabError(f"{role} directory {directory} is already in use by another overlay: "
                       "stop that one first (the kernel would only warn in dmesg)") from None
    return descriptor


def _clear(work: str) -> None:
    """Remove what the kernel leaves in a work directory: ``work/work``, mode 000, with the
    debris of copy-ups and whiteouts in flight. Only that: never a file of the caller's."""
    leftover = Path(work, "work")
    if leftover.is_dir() and not leftover.is_symlink():
        shutil.rmtree(leftover)


def clear_work(work: str | Path) -> None:
    """Empty a work directory a killed mount left behind; refuse while an overlay uses it."""
    descriptor = _claim(str(work), "work")
    try:
        _clear(str(work))
    finally:
        os.close(descriptor)


@contextmanager
def mounted(lowers: Paths, upper: str | Path, work: str | Path,
            target: str | Path) -> Iterator[Path]:
    """Mount an overlay on ``target`` for the ``with`` block; then unmount it and clear ``work``.

    Call it only in a fresh single-threaded process with a private mount namespace of its own.
    Upper and work stay locked while mounted. If the block raises, the overlay is still
    unmounted and ``work`` cleared; if the process is killed, its namespace and the mount die
    with it, and the next mount (or ``clear_work``) clears ``work``.
    """
    overlay = Overlay.of(lowers, upper, work, target)
    with ExitStack() as claims:
        overlay.prepare(claims)
        overlay.mount()
        try:
            yield Path(overlay.target)
        finally:
            syscalls.umount2(overlay.target)
            _clear(overlay.work)
