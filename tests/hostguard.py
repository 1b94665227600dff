"""The host guard: prove that a test or a notebook left the host as it found it.

A snapshot records what a leak would change on the host: its mount table (without mount ids,
which the kernel hands out afresh), the processes descended from the test run (and the mount
namespaces they hold), the network namespaces and links (a container's veth ends among them),
the ports published in the lab's nftables table, the addresses and ports claimed on the host,
and the lab's cgroup directories. Comparing the snapshots taken before and after names every
leak. The lab's bridge itself may come and go: it is made on first use and kept, as docker0.

Leaked processes are found reliably because the test run makes itself a child subreaper: an
orphan, even one that double-forked and called setsid, is re-parented to the test run instead of
to the host's PID 1, so it stays in view as a descendant.
"""

from __future__ import annotations

import glob
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass

from labkit.engine import bridge, leases, nat
from labkit.kernel import process

# The containers' groups, under the lab's own parent group (kept, as the bridge is).
CGROUP_PATTERNS = ("/sys/fs/cgroup/labkit/*/", "/sys/fs/cgroup/*/labkit/*/")


@dataclass(frozen=True)
class Snapshot:
    """What a leak would change on the host, in comparable form."""

    mounts: Counter
    processes: dict[int, str]
    netns: frozenset[str]
    links: frozenset[str]
    published: frozenset[str]
    claims: frozenset[str]
    cgroups: frozenset[str]


def _mount_key(line: str) -> tuple[str, ...]:
    """A mountinfo line without ids and peer group numbers, which change with every mount."""
    fields = line.split()
    dash = fields.index("-")
    propagation = ",".join(sorted(f.split(":")[0] for f in fields[6:dash])) or "private"
    root, point, options = fields[3], fields[4], fields[5]
    fstype, source = fields[dash + 1], fields[dash + 2]
    return (point, root, fstype, source, options, propagation)


# Mounts the host makes by itself whatever a test does: systemd-logind's /run/user/UID, made
# and unmounted as a user logs in and out. The lab never mounts there.
NOT_THE_LABS = ("/run/user/",)


def host_mounts() -> Counter:
    """The host mount namespace's table, as a multiset of normalised mounts."""
    with open("/proc/self/mountinfo") as table:
        keys = (_mount_key(line) for line in table)
        return Counter(key for key in keys if not key[0].startswith(NOT_THE_LABS))


def _children(pid: int) -> list[int]:
    children = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(task) as f:
                children.extend(int(child) for child in f.read().split())
        except FileNotFoundError:
            continue
    return children


def _describe(pid: int) -> str | None:
    """``cmdline (mnt:[ns])`` of a live process, or None for a zombie or one already gone."""
    try:
        if process.state(pid) in (None, "Z"):
            return None
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        if not command:  # between fork and exec, or a kernel-made process: the name will do
            with open(f"/proc/{pid}/comm") as f:
                command = f"[{f.read().strip()}]"
        namespace = os.readlink(f"/proc/{pid}/ns/mnt")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return f"{command} ({namespace})"


def descendants(root: int) -> dict[int, str]:
    """Every live descendant of ``root``, described."""
    found, pending = {}, _children(root)
    while pending:
        pid = pending.pop()
        description = _describe(pid)
        if description is not None:
            found[pid] = description
        pending.extend(_children(pid))
    return found


def _listdir(path: str) -> frozenset[str]:
    try:
        return frozenset(os.listdir(path))
    except FileNotFoundError:
        return frozenset()


def take() -> Snapshot:
    """Snapshot the host now."""
    return Snapshot(
        mounts=host_mounts(),
        processes=descendants(os.getpid()),
        netns=_listdir("/run/netns"),
        links=_listdir("/sys/class/net") - {bridge.BRIDGE},
        published=frozenset(nat.elements()),
        claims=frozenset(f"{kind}/{name}" for kind in (leases.ADDRESSES, leases.PORTS)
                         for name in _listdir(str(leases.claims_dir() / kind))),
        cgroups=frozenset(p for pattern in CGROUP_PATTERNS for p in glob.glob(pattern)),
    )


def has_lab_network() -> bool:
    """Whether the lab's bridge or its nftables table is on the host."""
    return bridge.SYSFS.is_dir() or nat.exists()


def leaks(before: Snapshot, after: Snapshot) -> list[str]:
    """One line per thing that ``after`` has and ``before`` had not (or lost)."""
    found = [f"mount left on the host: {' '.join(key[:4])}"
             for key in (after.mounts - before.mounts)]
    found += [f"host mount gone: {' '.join(key[:4])}" for key in (before.mounts - after.mounts)]
    found += [f"process left running: pid {pid} {what}"
              for pid, what in sorted(after.processes.items()) if pid not in before.processes]
    found += [f"network namespace left: {name}" for name in sorted(after.netns - before.netns)]
    found += [f"network link left: {name}" for name in sorted(after.links - before.links)]
    found += [f"port left published: {key}" for key in sorted(after.published - before.published)]
    found += [f"claim left on the host: {claim}" for claim in sorted(after.claims - before.claims)]
    found += [f"cgroup left: {path}" for path in sorted(after.cgroups - before.cgroups)]
    return found


def clear(before: Snapshot, after: Snapshot) -> None:
    """Kill and reap the processes a test leaked, so the next test starts clean."""
    for pid in after.processes.keys() - before.processes.keys():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        reap_orphans()
        if not descendants(os.getpid()).keys() - before.processes.keys():
            return
        time.sleep(0.02)


def reap_orphans() -> None:
    """Reap zombies re-parented to this subreaper; nobody else will ever wait for them."""
    for pid in _children(os.getpid()):
        try:
            if process.state(pid) == "Z":
                os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue


def become_subreaper() -> None:
    """Make orphans of this process's descendants re-parent here, where the guard sees them."""
    from labkit.kernel import syscalls

    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
