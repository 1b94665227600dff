"""Layers: what an upper directory changes, and which layer each file of a stack comes from.

An overlay stacks directories, top first: the upper, then the lowers in ``lowerdir=`` order. To
show a path, the kernel looks down the stack and the first layer that has it wins. Two markers
stop the search early, and they are how a layer records a deletion:

- a *whiteout*, a character device with device number 0/0: "deleted here", the layers below are
  not consulted for that name;
- an *opaque directory*, one whose xattr ``trusted.overlay.opaque`` is ``y``: "only what I
  hold", the layers below contribute nothing inside it (a directory deleted and made again).

Everything here only reads the layer directories, never a mount, so it is safe in the Jupyter
kernel: it works out from the layers alone what the merged view shows, which is also how an
image's layers can be understood without mounting them.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

OPAQUE_XATTR = "trusted.overlay.opaque"

DIR, OPAQUE_DIR, FILE, SYMLINK, WHITEOUT, SPECIAL = (
    "dir", "opaque dir", "file", "symlink", "whiteout", "special")
DIRECTORIES = (DIR, OPAQUE_DIR)


def is_opaque(path: str | Path) -> bool:
    """Whether a directory hides the layers below it (``trusted.overlay.opaque`` = ``y``)."""
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError as error:
        if error.errno in (errno.ENODATA, errno.ENOTSUP):
            return False
        raise


def kind(entry: os.DirEntry) -> str:
    """What one layer entry is to the overlay: a directory (opaque or not), a whiteout, ..."""
    info = entry.stat(follow_symlinks=False)
    if stat.S_ISDIR(info.st_mode):
        return OPAQUE_DIR if is_opaque(entry.path) else DIR
    if stat.S_ISREG(info.st_mode):
        return FILE
    if stat.S_ISLNK(info.st_mode):
        return SYMLINK
    if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
        return WHITEOUT
    return SPECIAL


def entries(layer: str | Path) -> dict[str, str]:
    """Every path inside one layer directory (``dir/file``, relative), sorted, with its kind."""
    found: dict[str, str] = {}
    pending = [(str(layer), "")]
    while pending:
        directory, prefix = pending.pop()
        with os.scandir(directory) as listing:
            for entry in listing:
                path = prefix + entry.name
                found[path] = kind(entry)
                if found[path] in DIRECTORIES:
                    pending.append((entry.path, path + "/"))
    return dict(sorted(found.items()))


def _blocks(path: str, layer: dict[str, str]) -> bool:
    """Whether a layer that lacks ``path`` still hides it in the layers below.

    It does when something on the way to it is a whiteout, an opaque directory, or anything
    that is not a directory at all (a file where the path needs a directory).
    """
    parts = path.split("/")
    for depth in range(1, len(parts)):
        step = layer.get("/".join(parts[:depth]))
        if step is None:
            return False
        if step != DIR:
            return True
    return False


def origin(path: str, stack: Sequence[dict[str, str]]) -> int | None:
    """Index of the layer (0 = top) the merged view takes ``path`` from; None if it is hidden."""
    for index, layer in enumerate(stack):
        what = layer.get(path)
        if what is not None:
            return None if what == WHITEOUT else index
        if _blocks(path, layer):
            return None
    return None


def visible(layers: Sequence[str | Path]) -> dict[str, int]:
    """Every path the merged view of ``layers`` (top first) shows, with its layer's index."""
    stack = [entries(layer) for layer in layers]
    every_path = sorted({path for layer in stack for path in layer})
    shown = {path: origin(path, stack) for path in every_path}
    return {path: index for path, index in shown.items() if index is not None}


@dataclass(frozen=True)
class LayerDiff:
    """What an upper layer does to the view of its lowers, path by path.

    ``added``: shown now, not shown by the lowers. ``changed``: the upper holds its own copy of
    something the lowers show (a copy-up happens on any write or metadata change, so the bytes
    may even be equal). ``deleted``: whiteouts. ``opaque``: directories that hide everything the
    lowers had inside them; what they hold is listed as added or changed. A directory that
    merges with one below is only the way to its changes and is not listed itself.
    """

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    opaque: tuple[str, ...] = ()


def diff(upper: str | Path, lowers: Sequence[str | Path]) -> LayerDiff:
    """Compare an upper directory with the lowers (top first) it was mounted over."""
    below = [entries(lower) for lower in lowers]
    found: dict[str, list[str]] = {"added": [], "changed": [], "deleted": [], "opaque": []}
    for path, what in entries(upper).items():
        if what == WHITEOUT:
            found["deleted"].append(path)
            continue
        if what == OPAQUE_DIR:
            found["opaque"].append(path)
        index = origin(path, below)
        if index is None:
            found["added"].append(path)
        elif what not in DIRECTORIES or below[index][path] not in DIRECTORIES:
            found["changed"].append(path)
    return LayerDiff(**{change: tuple(paths) for change, paths in found.items()})
