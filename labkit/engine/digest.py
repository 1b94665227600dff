"""A layer's content digest: the sha256 of a canonical tar of its directory tree.

The digest names a layer in the store, so it must depend on what a container would see and on
nothing else. Two builds of the same tree, at different times, on different machines, under
different umasks and user databases, give the same digest; any change to a byte, a mode, an
owner, a link target or an extended attribute (overlayfs marks an opaque directory with one)
gives another. Hence the canonical form: entries in sorted order, modification times zeroed,
user and group names left out (the numeric ids stay: they are what the kernel checks), and no
pax timestamps.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tarfile
from pathlib import Path


def tree_digest(root: Path) -> tuple[str, int]:
    """The ``sha256:<hex>`` digest of the canonical tar of ``root``, and that tar's length."""
    sink = _HashingSink()
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in _sorted_names(root):
            path = root / name
            info = tar.gettarinfo(path, arcname=name)
            if info is None:  # a socket: nothing a layer can carry
                continue
            _canonicalise(info, path)
            if info.isreg():
                with open(path, "rb") as content:
                    tar.addfile(info, content)
            else:
                tar.addfile(info)
    return f"sha256:{sink.sha256.hexdigest()}", sink.size


class _HashingSink:
    """A write-only file that keeps nothing but the sha256 and the length of what it is given."""

    def __init__(self):
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return len(data)


def _sorted_names(root: Path) -> list[str]:
    """Every path under ``root`` as ``./relative/path``, sorted, ``.`` (the root itself) first."""
    names = ["."]
    for top, directories, files in os.walk(root, onerror=_raise):
        for name in directories + files:
            names.append("./" + os.path.relpath(os.path.join(top, name), root))
    return sorted(names)


def _raise(error: OSError) -> None:
    """os.walk skips what it cannot read; a digest that silently skipped would lie."""
    raise error


def _canonicalise(info: tarfile.TarInfo, path: Path) -> None:
    info.mtime = 0
    info.uname = info.gname = ""
    info.pax_headers = {f"SCHILY.xattr.{key}": value for key, value in _xattrs(path)}


def _xattrs(path: Path) -> list[tuple[str, str]]:
    """The extended attributes of ``path`` itself (not a link's target), sorted by name."""
    try:
        keys = os.listxattr(path, follow_symlinks=False)
    except OSError as error:
        if error.errno == errno.ENOTSUP:
            return []
        raise
    return [(key, os.getxattr(path, key, follow_symlinks=False).decode("utf-8", "surrogateescape"))
            for key in sorted(keys)]
