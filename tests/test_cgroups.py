"""Lesson 08's limits, enforced by this machine's kernel (cgroup v1 controllers here).

The v2 driver cannot run here: on this hybrid machine every controller is bound to v1. Its
logic (which files, what it writes, how it reads them) is tested on a directory laid out as
the kernel lays out a cgroup2 tree; the systemd VM runs it for real.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from containers_support import assert_one_line, labkit, removing_new_containers, store_files

from labkit.engine import containers, limiting, monitor, resources, store
from labkit.kernel import cgroupfs
from labkit.runtime.cgroup import driver, group_of
from labkit.runtime.cgroup.limits import Limits
from labkit.runtime.cgroup.v2 import V2, weight
from tests.conftest import LABKIT

# 64 MB of "a"s held in a shell variable: an eater that stops.
EAT = "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived"


@pytest.fixture(autouse=True)
def _remove_what_the_test_made(base_image):
    with removing_new_containers():
        yield


def group_dirs(container_id: str) -> list[Path]:
    """The container's group in each tree this machine has, where it exists."""
    roots = ([cgroupfs.v2_root()] if cgroupfs.mode() == "v2"
             else list(cgroupfs.v1_controllers().values()))
    return [root / group_of(container_id) for root in roots
            if (root / group_of(container_id)).is_dir()]


def test_a_memory_limit_is_enforced_by_the_oom_killer_and_said_so():
    done = containers.run("busybox", ["sh", "-c", f"echo before; {EAT}"], name="cg-oom",
                          memory="16m")
    assert (done.exit_code, done.stdout) == (137, "before\n")
    killed = containers.inspect("cg-oom")
    assert killed.state.oom_killed is True
    assert killed.config.limits["memory"] == 16 * 1024 * 1024
    assert "Exited (137, OOM killed)" in labkit("ps", "-a").stdout
    assert group_dirs(killed.id) == []  # the monitor removed the group
    fed = containers.run("busybox", ["sh", "-c", EAT], memory="128m")
    assert (fed.exit_code, fed.stdout) == (0, "survived\n")
    assert containers.inspect(fed.id).state.oom_killed is False


def test_a_pids_limit_stops_a_fork_bomb_at_the_container_s_wall():
    """A bounded bomb, started with exec (whose processes join the container's group): 60
    sleepers asked for, 20 processes allowed."""
    box = containers.run("busybox", ["sleep", "1000"], detach=True, pids_limit=20)
    bomb = containers.exec(box.id, ["sh", "-c", "for i in $(seq 60); do "
                                            "sleep 30 >/dev/null 2>&1 & done"])
    assert bomb.exit_code != 0 and "can't fork" in bomb.stderr, bomb
    left = limiting.usage(box.id).pids  # the sleepers that got a process, init, sleep 1000
    assert left is not None and 10 <= left <= 20, left
    assert containers.run("busybox", ["true"]).exit_code == 0  # the host goes on


def test_every_container_gets_the_default_process_limit_unless_told_otherwise():
    plain = containers.run("busybox", ["cat", "/sys/fs/cgroup/pids/pids.max"])
    assert containers.inspect(plain.id).config.limits["pids"] == resources.DEFAULT_PIDS
    unlimited = containers.run("busybox", ["true"], pids_limit=-1)
    assert containers.inspect(unlimited.id).config.limits["pids"] == -1


def test_half_a_cpu_is_about_half_a_core_busy():
    busy = containers.run("busybox", ["sh", "-c", "while :; do :; done"], detach=True,
                          cpus=0.5, memory="32m", name="cg-busy")
    [row] = containers.stats(["cg-busy"], interval=2.0)
    assert row.cpu_percent is not None and 35 <= row.cpu_percent <= 60, row
    assert row.usage.memory_limit == 32 * 1024 * 1024
    assert 0 < row.usage.memory < row.usage.memory_limit
    assert row.usage.pids == 2  # the container's init and its shell
    said = labkit("stats", "--no-stream", "cg-busy").stdout.splitlines()
    assert said[0].split() == ["CONTAINER", "ID", "NAME", "CPU", "%", "MEM", "USAGE", "/",
                               "LIMIT", "MEM", "%", "PIDS"]
    assert said[1].startswith(f"{busy.short_id}  cg-busy")


def test_no_group_is_left_after_rm_or_after_gc_of_a_killed_monitor():
    gone = containers.run("busybox", ["sleep", "1000"], detach=True)
    assert group_dirs(gone.id)
    containers.rm(gone.id, force=True)
    assert group_dirs(gone.id) == []
    orphan = containers.run("busybox", ["sleep", "1000"], detach=True)
    os.kill(orphan.state.monitor_pid, signal.SIGKILL)
    monitor.wait_gone(store.reading().container_dir(orphan.id))
    done = labkit("gc")
    assert done.returncode == 0, done.stderr
    assert group_dirs(orphan.id) == []
    assert [line for line in done.stdout.splitlines() if line.startswith("removed the cgroup")]


@pytest.mark.parametrize(("args", "words"), [
    (["--memory=1x"], ["invalid --memory '1x'"]),
    (["--memory=-5m"], ["invalid --memory '-5m'"]),
    (["--memory", "1k"], ["the minimum is 6m"]),
    (["--memory-swap", "64m"], ["--memory-swap needs --memory"]),
    (["--memory", "64m", "--memory-swap", "32m"], ["at least --memory"]),
    (["--cpus", "0"], ["invalid --cpus '0'"]),
    (["--cpus", "999"], ["this machine's"]),
    (["--cpu-shares", "1"], ["invalid --cpu-shares"]),
    (["--pids-limit", "0"], ["invalid --pids-limit '0'"]),
])
def test_bad_limits_are_one_line_exit_125_and_nothing_made(args, words):
    before = store_files()
    assert_one_line(labkit("run", "--rm", *args, "busybox", "true"), 125, *words)
    assert store_files() == before


def test_a_limit_whose_controller_is_missing_names_it():
    """In a mount namespace of the test's own, where the pids tree is unmounted."""
    script = f"umount /sys/fs/cgroup/pids && {LABKIT} run --rm --pids-limit 5 busybox true"
    done = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 125, done
    assert done.stderr.startswith("labkit: this machine's cgroups have no pids controller")
    quiet = subprocess.run(["unshare", "--mount", "sh", "-c", script.replace(
        "--pids-limit 5 ", "")], capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0, quiet  # the default limit is left out there


# --- the v2 driver, on files laid out as a cgroup2 tree --------------------------------------


@pytest.fixture
def cgroup2(tmp_path) -> Path:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("cpu memory\n")
    return tmp_path


def test_v2_lends_the_controllers_down_and_writes_each_limit(cgroup2):
    parent = cgroup2 / "labkit"
    parent.mkdir()
    (parent / "cgroup.subtree_control").write_text("")
    V2(cgroup2).create("labkit/c1", Limits(memory=64 << 20, memory_swap=96 << 20, cpus=0.5,
                                           cpu_shares=512, pids=100))
    assert (cgroup2 / "cgroup.subtree_control").read_text() == "+pids\n"
    assert (parent / "cgroup.subtree_control").read_text() == "+memory +cpu +pids\n"
    group = parent / "c1"
    assert {name: (group / name).read_text() for name in sorted(os.listdir(group))} == {
        "cpu.max": "50000 100000\n", "cpu.weight": f"{weight(512)}\n",
        "memory.max": f"{64 << 20}\n", "memory.swap.max": f"{32 << 20}\n", "pids.max": "100\n"}
    assert weight(1024) == 39 and weight(2) == 1 and weight(262144) == 10000


def test_v2_reads_usage_and_the_oom_killer_s_count(cgroup2):
    group = cgroup2 / "labkit" / "c2"
    group.mkdir(parents=True)
    (group / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
    (group / "memory.current").write_text("4096\n")
    (group / "memory.max").write_text("max\n")
    (group / "pids.current").write_text("3\n")
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
    usage = V2(cgroup2).usage("labkit/c2")
    assert (usage.cpu_ns, usage.memory, usage.memory_limit, usage.pids, usage.oom_kills) == (
        1_500_000, 4096, None, 3, 1)


def test_v2_reports_a_missing_controller(cgroup2):
    (cgroup2 / "cgroup.controllers").write_text("cpu memory\n")
    assert V2(cgroup2).missing(Limits(memory=1, pids=5)) == ["pids"]


MOUNTS = {
    "v2": "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
    "hybrid": ("32 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
               "33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
               "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"),
    "v1": "32 31 0:29 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n",
    "none": "22 1 0:21 / /proc rw - proc proc rw\n",
}


@pytest.mark.parametrize("mode", MOUNTS)
def test_the_mode_and_the_trees_are_read_from_the_mount_table(mode, tmp_path):
    table = tmp_path / "mountinfo"
    table.write_text(MOUNTS[mode])
    assert cgroupfs.mode(table) == mode
    if mode == "hybrid":
        assert cgroupfs.v1_controllers(table) == {
            "memory": Path("/sys/fs/cgroup/memory"), "cpu": Path("/sys/fs/cgroup/cpu,cpuacct"),
            "cpuacct": Path("/sys/fs/cgroup/cpu,cpuacct")}
        assert driver(table).name == "v1"
    if mode == "v2":
        assert driver(table).name == "v2"


def test_this_machine_is_the_kind_the_suite_says():
    assert cgroupfs.mode() in ("v2", "hybrid", "v1")
    assert driver().name == ("v2" if cgroupfs.mode() == "v2" else "v1")


def test_stats_streams_a_table_a_second_until_interrupted():
    containers.run("busybox", ["sleep", "1000"], detach=True, name="cg-watched")
    watching = subprocess.Popen([LABKIT, "stats", "cg-watched"], stdout=subprocess.PIPE,
                                text=True)
    try:
        tables = []
        for line in watching.stdout:
            if line.startswith("CONTAINER ID"):
                tables.append(line)
            if len(tables) == 3:
                break
    finally:
        watching.send_signal(signal.SIGINT)
        code = watching.wait(timeout=30)
    assert len(tables) == 3 and code == 130
