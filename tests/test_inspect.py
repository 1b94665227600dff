"""labkit.kernel.procfs against real namespaces, processes and mounts.

Each experiment runs under util-linux ``unshare --fork --kill-child``: the test process itself
never changes a namespace. The command inside prints ``ready`` once its state is in place, and
the test looks at it while it sleeps; killing it afterwards ends the namespace with it.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from labkit.errors import LabError
from labkit.kernel.procfs import (
    Mount,
    Namespace,
    Propagation,
    compare_namespaces,
    diff_mounts,
    mounts,
    namespaces,
    nested_pids,
    parse_mount,
    parse_ns_link,
    process_tree,
)

READY_SECONDS = 10


@contextmanager
def started(*argv: str) -> Iterator[tuple[int, int]]:
    """Run ``unshare ... argv``; yield (unshare's pid, its child's pid) once it says ready."""
    process = subprocess.Popen(["unshare", "--fork", "--kill-child", *argv],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        readable, _, _ = select.select([process.stdout], [], [], READY_SECONDS)
        line = process.stdout.readline() if readable else ""
        if line != "ready\n":
            pytest.fail(f"experiment did not start: {line!r} {process.stderr.read()!r}")
        (child,) = psutil.Process(process.pid).children()
        yield process.pid, child.pid
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """Kill the command inside (with a PID namespace, everything in it goes too); reap all."""
    try:
        for child in psutil.Process(process.pid).children():
            child.kill()
    except psutil.NoSuchProcess:
        pass
    try:
        process.communicate(timeout=READY_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def settled(look: Callable, done: Callable, seconds: float = READY_SECONDS):
    """Look again until ``done(what was seen)``: a shell's children exec a moment after fork."""
    deadline = time.monotonic() + seconds
    seen = look()
    while not done(seen) and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = look()
    return seen


SLEEP = "echo ready; exec sleep 60"


# --- namespaces ----------------------------------------------------------------------------


def test_a_new_uts_pid_and_mount_namespace_differs_in_exactly_those():
    with started("--uts", "--pid", "--mount", "sh", "-c", SLEEP) as (_, inner):
        pairs = compare_namespaces(namespaces(os.getpid()), namespaces(inner))
    different = [pair for pair in pairs if not pair.same]
    assert [pair.name for pair in different] == ["mnt", "pid", "pid_for_children", "uts"]
    assert {pair.kind for pair in different} == {"mnt", "pid", "uts"}
    assert {"cgroup", "ipc", "net", "user"} <= {pair.name for pair in pairs if pair.same}


def test_namespace_inodes_are_the_inodes_of_the_ns_files():
    for namespace in namespaces(os.getpid()):
        assert namespace.inode == os.stat(f"/proc/self/ns/{namespace.name}").st_ino


def test_a_link_target_parses_into_kind_and_inode():
    assert parse_ns_link("pid_for_children", "pid:[4026531836]") == Namespace(
        "pid_for_children", "pid", 4026531836)


def test_comparing_with_a_missing_link_says_different():
    (pair,) = compare_namespaces([Namespace("time", "time", 7)], [])
    assert (pair.left, pair.right, pair.same) == (7, None, False)


# --- pids across PID namespaces --------------------------------------------------------------


def test_a_process_in_a_new_pid_namespace_has_two_pids_and_is_1_inside():
    with started("--pid", "sh", "-c", SLEEP) as (_, inner):
        assert nested_pids(inner) == (inner, 1)
    assert nested_pids(os.getpid()) == (os.getpid(),)


# --- process trees -------------------------------------------------------------------------


def _sleeping(tree) -> bool:
    return [n.name for n in tree.walk()][2:] == ["sleep", "sleep"]


def test_the_tree_lists_a_shells_children_with_their_pids_inside():
    script = "sleep 60 & sleep 60 & echo ready; wait"
    with started("--pid", "sh", "-c", script) as (outer, inner):
        tree = settled(lambda: process_tree(outer), _sleeping)
    assert (tree.pid, tree.name, tree.new_namespaces) == (outer, "unshare", ("pid_for_children",))
    (shell,) = tree.children
    assert (shell.pid, shell.ppid, shell.name) == (inner, outer, "sh")
    assert (shell.nested_pids, shell.new_namespaces) == ((inner, 1), ("pid",))
    assert [child.cmdline for child in shell.children] == [("sleep", "60")] * 2
    assert {child.ppid for child in shell.children} == {inner}
    assert sorted(child.nested_pids[1] for child in shell.children) == [2, 3]
    assert [child.new_namespaces for child in shell.children] == [(), ()]


def test_the_tree_shows_a_zombie_that_nobody_reaps():
    # `exec` replaces the shell with a sleep that never waits for the child the shell left.
    with started("--pid", "sh", "-c", "sleep 60 & echo ready; exec sleep 61") as (_, inner):
        orphan = settled(lambda: process_tree(inner), lambda t: len(t.children) == 1).children[0]
        os.kill(orphan.pid, signal.SIGKILL)
        tree = settled(lambda: process_tree(inner),
                       lambda t: [c.state for c in t.children] == ["zombie"])
    (zombie,) = tree.children
    assert (zombie.pid, zombie.name, zombie.state) == (orphan.pid, "sleep", "zombie")
    assert (zombie.cmdline, zombie.new_namespaces) == ((), ())


# --- mount tables --------------------------------------------------------------------------


def test_a_tmpfs_in_a_private_mount_namespace_is_its_only_difference(tmp_path):
    point = tmp_path / "scratch"
    point.mkdir()
    script = f'mount -t tmpfs lab-scratch "$0" && {SLEEP}'
    with started("--mount", "sh", "-c", script, str(point)) as (_, inner):
        host, inside = mounts(os.getpid()), mounts(inner)
    diff = diff_mounts(host, inside)
    (added,) = diff.added
    assert (added.mount_point, added.fs_type, added.source) == (str(point), "tmpfs", "lab-scratch")
    assert diff.removed == ()
    # unshare makes every mount private first; on a host whose mounts are private already (as
    # here) nothing else changes, on a systemd host exactly the shared ones change.
    not_private = sorted(m.mount_point for m in host if m.propagation != Propagation())
    assert sorted(change.before.mount_point for change in diff.changed) == not_private
    assert {change.fields for change in diff.changed} <= {("propagation",)}
    assert diff_mounts(inside, host).removed == (added,)
    assert diff_mounts(host, host).empty


def _findmnt(pid: int) -> dict[int, set[str]]:
    """util-linux's own reading of the propagation flags, by mount id."""
    listing = subprocess.run(["findmnt", "--task", str(pid), "-rn", "-o", "ID,PROPAGATION"],
                             capture_output=True, text=True, check=True).stdout
    return {int(mount_id): set(flags.split(","))
            for mount_id, flags in (line.split() for line in listing.splitlines())}


def _flags(mount: Mount) -> set[str]:
    """Our reading, in findmnt's words."""
    flags = {"shared" if mount.propagation.shared is not None else "private"}
    if mount.propagation.master is not None:
        flags.add("slave")
    if mount.propagation.unbindable:
        flags.add("unbindable")
    return flags


PROPAGATION_SCRIPT = """set -e
mount --make-rshared /
mount -t tmpfs peer "$0/a"
mount --bind "$0/a" "$0/b"
mount --make-slave "$0/b"
mount --make-shared "$0/b"
mount -t tmpfs lone "$0/c"
mount --make-unbindable "$0/c"
mount -t tmpfs quiet "$0/d"
mount --make-private "$0/d"
echo ready
exec sleep 60
"""


def test_every_kind_of_propagation_parses_as_findmnt_reads_it(tmp_path):
    for name in "abcd":
        (tmp_path / name).mkdir()
    with started("--mount", "sh", "-c", PROPAGATION_SCRIPT, str(tmp_path)) as (_, inner):
        table, flags = mounts(inner), _findmnt(inner)
    by_point = {m.mount_point: m.propagation for m in table}
    a, b, c, d = (by_point[str(tmp_path / name)] for name in "abcd")
    assert by_point["/"].kind == "shared"
    assert a.kind == "shared"
    assert (b.kind, b.master, str(b)) == ("shared and slave", a.shared, f"shared:{b.shared} "
                                          f"master:{a.shared}")
    assert b.shared != a.shared
    assert (c, c.kind, str(c)) == (Propagation(unbindable=True), "unbindable", "unbindable")
    assert (d, d.kind, str(d)) == (Propagation(), "private", "private")
    assert {m.mount_id: _flags(m) for m in table} == flags


def test_the_hosts_propagation_parses_as_findmnt_reads_it():
    table = mounts(os.getpid())
    assert {m.mount_id: _flags(m) for m in table} == _findmnt(os.getpid())
    root = next(m for m in reversed(table) if m.mount_point == "/")
    assert (str(root.propagation) == "private") == (_findmnt(os.getpid())[root.mount_id]
                                                    == {"private"})


def test_a_space_tab_and_backslash_in_a_mount_point_decode(tmp_path):
    point = tmp_path / "a b\tc\\d"
    point.mkdir()
    script = f'mount -t tmpfs "lab source" "$0" && {SLEEP}'
    with started("--mount", "sh", "-c", script, str(point)) as (_, inner):
        raw = Path(f"/proc/{inner}/mountinfo").read_bytes()
        table = mounts(inner)
    assert rb"a\040b\011c\134d" in raw
    (mount,) = (m for m in table if m.fs_type == "tmpfs" and m.source == "lab source")
    assert mount.mount_point == str(point)


def test_a_mountinfo_line_parses_every_field():
    line = (b"36 35 98:0 /mnt1 /mnt2\\040x rw,noatime master:1 propagate_from:2 future:7 - "
            b"ext3 /dev/root rw,errors=continue\n")
    assert parse_mount(line) == Mount(
        mount_id=36, parent_id=35, major=98, minor=0, root="/mnt1", mount_point="/mnt2 x",
        options=("rw", "noatime"), propagation=Propagation(master=1, propagate_from=2),
        fs_type="ext3", source="/dev/root", super_options=("rw", "errors=continue"))


def test_stacked_mounts_diff_by_their_place_in_the_stack():
    bottom = parse_mount(b"1 0 0:1 / /m rw - tmpfs one rw")
    top = parse_mount(b"2 1 0:2 / /m rw - tmpfs two rw")
    diff = diff_mounts([bottom], [parse_mount(b"9 0 0:1 / /m rw - tmpfs one rw"), top])
    assert (diff.added, diff.removed, diff.changed) == ((top,), (), ())


def test_a_changed_mount_names_the_fields_that_changed():
    before = parse_mount(b"1 0 0:1 / /m rw - tmpfs one rw")
    after = parse_mount(b"7 3 0:1 / /m ro shared:4 - tmpfs one rw")
    (change,) = diff_mounts([before], [after]).changed
    assert change.fields == ("options", "propagation")


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("pid", [0, -3, "12", 1.5, True])
def test_a_pid_that_is_not_a_positive_number_is_one_clear_error(pid):
    for look in (namespaces, nested_pids, process_tree, mounts):
        with pytest.raises(LabError, match="a pid is a positive whole number"):
            look(pid)


def test_a_pid_that_has_exited_is_one_clear_error():
    gone = subprocess.Popen(["true"])
    gone.wait()
    for look in (namespaces, nested_pids, process_tree, mounts):
        with pytest.raises(LabError, match=f"no process has pid {gone.pid}"):
            look(gone.pid)


def test_a_zombies_mount_table_is_one_clear_error():
    zombie = subprocess.Popen(["true"])
    try:
        settled(lambda: psutil.Process(zombie.pid).status(),
                lambda state: state == psutil.STATUS_ZOMBIE)
        with pytest.raises(LabError, match="has exited or is a zombie"):
            mounts(zombie.pid)
        with pytest.raises(LabError, match="has exited or is a zombie"):
            namespaces(zombie.pid)
    finally:
        zombie.wait()


def test_text_that_is_not_mountinfo_is_a_clear_error():
    with pytest.raises(ValueError, match="not a mountinfo line"):
        parse_mount(b"this is not a mount")


def test_text_that_is_not_a_namespace_link_is_a_clear_error():
    with pytest.raises(ValueError, match="not a namespace link"):
        parse_ns_link("uts", "/etc/hostname")
