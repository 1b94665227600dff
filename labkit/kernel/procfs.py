"""What the kernel says about a process: its namespaces, its pids, its children and its mounts.

Everything here only reads ``/proc`` (and psutil, which reads ``/proc`` too): looking never
changes what is looked at, so these functions are safe to call from the Jupyter kernel.
Each returns plain frozen dataclasses, so a lesson can check facts with ``==`` and
``labkit.show`` can draw them without knowing where they came from.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from labkit.errors import LabError
from labkit.kernel.mountinfo import unescape

# ---------------------------------------------------------------------------------------------
# The process itself


def _check_pid(pid: int) -> None:
    """Fail with one line naming the pid, instead of an error about some file deep in /proc."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise LabError(f"a pid is a positive whole number, not {pid!r}")
    if not os.path.isdir(f"/proc/{pid}"):
        raise LabError(f"no process has pid {pid}: it has exited, or never existed")


def _proc(pid: int, name: str) -> str:
    """The path of ``/proc/PID/name``, once ``pid`` is known to name a live process."""
    _check_pid(pid)
    return f"/proc/{pid}/{name}"


def _unreadable(pid: int, path: str, error: OSError) -> LabError:
    """The error for a /proc file we could not read, saying why when the process is gone.

    A process that exits while we read leaves ENOENT or ESRCH behind, and a zombie (dead but
    not yet reaped by its parent) answers EINVAL for what it has already given up.
    """
    reason = f"cannot read {path}: {error.strerror}"
    if error.errno in (errno.ENOENT, errno.ESRCH, errno.EINVAL):
        reason += f"; pid {pid} has exited or is a zombie"
    return LabError(reason)


# ---------------------------------------------------------------------------------------------
# Namespaces


@dataclass(frozen=True)
class Namespace:
    """One link in ``/proc/PID/ns``: the namespace of one kind that a process is in.

    ``name`` is the link's name and ``kind`` the namespace type the kernel names in its target:
    they differ for ``pid_for_children`` and ``time_for_children``, which point at the namespace
    the process's *next children* will join, not the one the process itself is in.
    Two processes share a namespace exactly when their ``inode`` numbers match.
    """

    name: str
    kind: str
    inode: int


_NS_LINK = re.compile(r"(?P<kind>\w+):\[(?P<inode>\d+)\]")


def parse_ns_link(name: str, target: str) -> Namespace:
    """Read a link target such as ``'uts:[4026531838]'`` as a ``Namespace``."""
    match = _NS_LINK.fullmatch(target)
    if match is None:
        raise ValueError(f"not a namespace link: {name} -> {target!r}")
    return Namespace(name, match["kind"], int(match["inode"]))


def namespaces(pid: int) -> tuple[Namespace, ...]:
    """Every namespace ``pid`` is in, sorted by link name.

    The kernel exposes a namespace as a magic link whose target names its type and inode; the
    inode is the namespace's identity, which is all a comparison needs.
    """
    directory = _proc(pid, "ns")
    try:
        names = sorted(os.listdir(directory))
        return tuple(parse_ns_link(n, os.readlink(f"{directory}/{n}")) for n in names)
    except OSError as error:
        raise _unreadable(pid, directory, error) from None


@dataclass(frozen=True)
class NamespacePair:
    """One namespace link of two processes, side by side; ``None`` where one has no such link."""

    name: str
    kind: str
    left: int | None
    right: int | None

    @property
    def same(self) -> bool:
        """True when both processes are in the very same namespace of this kind."""
        return self.left is not None and self.left == self.right


def compare_namespaces(left: Iterable[Namespace],
                       right: Iterable[Namespace]) -> tuple[NamespacePair, ...]:
    """Pair up two processes' namespaces by link name, to see which ones they share.

    It takes the namespaces rather than pids so a process that has already exited (a container
    whose ids were recorded while it ran) can still be compared with the host.
    """
    lefts = {ns.name: ns for ns in left}
    rights = {ns.name: ns for ns in right}
    return tuple(_pair(name, lefts.get(name), rights.get(name))
                 for name in sorted(lefts.keys() | rights.keys()))


def _pair(name: str, left: Namespace | None, right: Namespace | None) -> NamespacePair:
    kind = (left or right).kind
    return NamespacePair(name, kind, left.inode if left else None,
                         right.inode if right else None)


# ---------------------------------------------------------------------------------------------
# Pids across nested PID namespaces


def nested_pids(pid: int) -> tuple[int, ...]:
    """The pids ``pid`` has in each PID namespace it is in, outermost first.

    A process in a new PID namespace has one pid per level: the host sees one number, the
    container another (1 for its init). The ``NSpid`` line of /proc/PID/status lists them all,
    starting from the PID namespace that mounted this /proc.
    """
    path = _proc(pid, "status")
    try:
        with open(path) as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return tuple(int(number) for number in line.split()[1:])
    except OSError as error:
        raise _unreadable(pid, path, error) from None
    raise LabError(f"{path} has no NSpid line: this kernel is older than Linux 4.1")


# ---------------------------------------------------------------------------------------------
# Process trees


@dataclass(frozen=True)
class ProcessNode:
    """One process in a tree, with what sets it apart from its parent.

    ``state`` is psutil's word for it (``sleeping``, ``running``, ``zombie``...), ``nested_pids``
    its pid at each PID namespace level, outermost first. ``new_namespaces`` names the namespace
    links whose inode differs from the parent's: that is where isolation begins. It is empty
    when either side's namespaces are unknown, as for a zombie, whose namespaces are gone.
    """

    pid: int
    ppid: int
    name: str
    cmdline: tuple[str, ...]
    state: str
    nested_pids: tuple[int, ...]
    new_namespaces: tuple[str, ...]
    children: tuple[ProcessNode, ...] = ()

    def walk(self) -> Iterator[ProcessNode]:
        """This process and every descendant, parents before children."""
        yield self
        for child in self.children:
            yield from child.walk()


def process_tree(pid: int) -> ProcessNode:
    """The tree of processes under ``pid``, children sorted by pid so it reads the same twice.

    Processes come and go while we look; one that exits mid-walk is left out with its subtree
    rather than failing the whole picture.
    """
    import psutil

    _check_pid(pid)
    try:
        top = psutil.Process(pid)
        processes = [top, *top.children(recursive=True)]
    except psutil.Error:
        raise LabError(f"no process has pid {pid}: it has exited") from None
    seen = {sighting.pid: sighting for sighting in map(_look, processes) if sighting}
    if pid not in seen:
        raise LabError(f"no process has pid {pid}: it exited while we looked")
    children: dict[int, list[_Sighting]] = {}
    for sighting in sorted(seen.values(), key=lambda s: s.pid):
        children.setdefault(sighting.ppid, []).append(sighting)
    return _node(seen[pid], _or_unknown(namespaces, seen[pid].ppid), children)


@dataclass(frozen=True)
class _Sighting:
    """What one look at a process saw, before the tree is put together."""

    pid: int
    ppid: int
    name: str
    cmdline: tuple[str, ...]
    state: str
    nested_pids: tuple[int, ...]
    namespaces: tuple[Namespace, ...]


def _look(process) -> _Sighting | None:
    """One process's facts, or None if it exited; a zombie has no cmdline or namespaces left."""
    import psutil

    try:
        with process.oneshot():
            state = process.status()
            zombie = state == psutil.STATUS_ZOMBIE
            return _Sighting(
                pid=process.pid, ppid=process.ppid(), name=process.name(),
                cmdline=() if zombie else tuple(process.cmdline()), state=state,
                nested_pids=_or_unknown(nested_pids, process.pid),
                namespaces=() if zombie else _or_unknown(namespaces, process.pid),
            )
    except psutil.Error:
        return None


def _or_unknown(read, pid: int) -> tuple:
    """``read(pid)``, or ``()`` for a fact the kernel will not tell (gone, or not allowed)."""
    try:
        return read(pid)
    except LabError:
        return ()


def _node(process: _Sighting, parent_namespaces: tuple[Namespace, ...],
          children: dict[int, list[_Sighting]]) -> ProcessNode:
    return ProcessNode(
        pid=process.pid, ppid=process.ppid, name=process.name, cmdline=process.cmdline,
        state=process.state, nested_pids=process.nested_pids,
        new_namespaces=_differing(parent_namespaces, process.namespaces),
        children=tuple(_node(child, process.namespaces, children)
                       for child in children.get(process.pid, ())),
    )


def _differing(parent: tuple[Namespace, ...], own: tuple[Namespace, ...]) -> tuple[str, ...]:
    """Link names whose namespace differs from the parent's; nothing when either is unknown."""
    if not parent or not own:
        return ()
    return tuple(pair.name for pair in compare_namespaces(parent, own) if not pair.same)


# ---------------------------------------------------------------------------------------------
# Mount tables


@dataclass(frozen=True)
class Propagation:
    """How mount and unmount events spread to and from one mount (the optional fields).

    ``shared`` is the peer group this mount sends events to and receives them from; ``master``
    the peer group it only receives from (a slave); ``propagate_from`` the nearest peer group
    it really receives from when its master is outside this process's root; ``unbindable``
    forbids bind mounts of it. None of these means private: events neither leave nor arrive.
    """

    shared: int | None = None
    master: int | None = None
    propagate_from: int | None = None
    unbindable: bool = False

    @property
    def kind(self) -> str:
        """In words: ``private``, ``shared``, ``slave``, ``shared and slave`` or ``unbindable``."""
        words = [word for word, present in (("shared", self.shared is not None),
                                            ("slave", self.master is not None),
                                            ("unbindable", self.unbindable)) if present]
        return " and ".join(words) or "private"

    def __str__(self) -> str:
        """The kernel's own spelling, as in mountinfo, or ``private`` when it has none."""
        tags = [f"{tag}:{value}" for tag, value in (("shared", self.shared),
                                                    ("master", self.master),
                                                    ("propagate_from", self.propagate_from))
                if value is not None]
        if self.unbindable:
            tags.append("unbindable")
        return " ".join(tags) or "private"


def parse_propagation(optional_fields: Iterable[str]) -> Propagation:
    """Read mountinfo's optional fields; unknown tags are skipped, as the kernel asks parsers to."""
    values: dict[str, int | bool] = {}
    for field in optional_fields:
        tag, _, value = field.partition(":")
        if tag == "unbindable":
            values[tag] = True
        elif tag in ("shared", "master", "propagate_from"):
            values[tag] = int(value)
    return Propagation(**values)


@dataclass(frozen=True)
class Mount:
    """One line of /proc/PID/mountinfo, every field decoded.

    ``root`` is the directory of the filesystem that appears at ``mount_point`` (``/`` unless it
    is a bind mount of a subdirectory). ``options`` are this mount's own flags; ``super_options``
    belong to the filesystem and are shared by every mount of it.
    """

    mount_id: int
    parent_id: int
    major: int
    minor: int
    root: str
    mount_point: str
    options: tuple[str, ...]
    propagation: Propagation
    fs_type: str
    source: str
    super_options: tuple[str, ...]

    @property
    def device(self) -> str:
        """``major:minor`` of the filesystem, as the kernel prints it."""
        return f"{self.major}:{self.minor}"


def parse_mount(line: bytes) -> Mount:
    """Parse one mountinfo line (see proc(5)): six fixed fields, optional ones, ``-``, three."""
    parts = line.rstrip(b"\n").split(b" ")
    try:
        separator = parts.index(b"-", 6)
        fs_type, source, super_options = parts[separator + 1:]
        major, minor = parts[2].split(b":")
        return Mount(
            mount_id=int(parts[0]), parent_id=int(parts[1]), major=int(major),
            minor=int(minor), root=unescape(parts[3]), mount_point=unescape(parts[4]),
            options=_options(parts[5]),
            propagation=parse_propagation(os.fsdecode(f) for f in parts[6:separator]),
            fs_type=unescape(fs_type), source=unescape(source),
            super_options=_options(super_options),
        )
    except ValueError:
        raise ValueError(f"not a mountinfo line: {line!r}") from None


def _options(field: bytes) -> tuple[str, ...]:
    """Split on commas first: an escaped comma inside a value (``\\054``) is not a separator."""
    return tuple(unescape(option) for option in field.split(b","))


def parse_mountinfo(text: bytes) -> tuple[Mount, ...]:
    """Parse a whole mountinfo file, in the kernel's order (parents before their children)."""
    return tuple(parse_mount(line) for line in text.splitlines() if line)


def mounts(pid: int) -> tuple[Mount, ...]:
    """The mount table ``pid`` sees: its mount namespace, as seen from its root directory."""
    path = _proc(pid, "mountinfo")
    try:
        with open(path, "rb") as mountinfo:
            return parse_mountinfo(mountinfo.read())
    except OSError as error:
        raise _unreadable(pid, path, error) from None


# ---------------------------------------------------------------------------------------------
# Mount table diffs


@dataclass(frozen=True)
class MountChange:
    """A mount point present in both tables whose mount differs in ``fields``."""

    before: Mount
    after: Mount
    fields: tuple[str, ...]


@dataclass(frozen=True)
class MountDiff:
    """What another mount table has that this one does not, and the reverse."""

    added: tuple[Mount, ...]
    removed: tuple[Mount, ...]
    changed: tuple[MountChange, ...]

    @property
    def empty(self) -> bool:
        """True when both tables show the same mounts."""
        return not (self.added or self.removed or self.changed)


# Ids are left out: a new mount namespace copies every mount under fresh ids, and that alone
# is not a difference a learner can see at any path.
_COMPARED = ("device", "root", "fs_type", "source", "options", "super_options", "propagation")


def diff_mounts(before: Iterable[Mount], after: Iterable[Mount]) -> MountDiff:
    """Compare two mount tables mount point by mount point.

    Mounts can stack on one mount point (the top one wins), so a mount is keyed by its mount
    point and its place in that stack, counted from the bottom.
    """
    old, new = _by_place(before), _by_place(after)
    changed = []
    for place in old.keys() & new.keys():
        differing = tuple(name for name in _COMPARED
                          if getattr(old[place], name) != getattr(new[place], name))
        if differing:
            changed.append(MountChange(old[place], new[place], differing))
    return MountDiff(
        added=tuple(new[place] for place in sorted(new.keys() - old.keys())),
        removed=tuple(old[place] for place in sorted(old.keys() - new.keys())),
        changed=tuple(sorted(changed, key=lambda c: c.before.mount_point)),
    )


def _by_place(table: Iterable[Mount]) -> dict[tuple[str, int], Mount]:
    places: dict[tuple[str, int], Mount] = {}
    depth: dict[str, int] = {}
    for mount in table:
        level = depth.get(mount.mount_point, 0)
        depth[mount.mount_point] = level + 1
        places[(mount.mount_point, level)] = mount
    return places
