"""gc: after a crash, the store is made to agree with what really runs, and nothing is left.

The crashes are real: ``kill -9`` of ``labkit run`` and of a container's monitor, a stray
overlay mounted (in a sandbox, never on the host), debris of killed commands. The host guard
checks after each test that no process or mount outlived it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest
from containers_support import labkit, read_until, removing_new_containers
from images_support import container_dir, removing_new_images

from labkit.engine import containers, names, store
from labkit.engine.reconcile import NOTHING
from labkit.kernel import process
from tests.conftest import LABKIT


@pytest.fixture(autouse=True)
def _reconciled_first_and_cleaned_after(base_image):
    """Start from a store gc has nothing to say about, whatever earlier tests left."""
    containers.gc()
    with removing_new_images(), removing_new_containers():
        yield


def alive(pid: int, started: int) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs (a zombie does not)."""
    try:
        found = process.stat(pid)
        return found.running and found.start_time == started
    except (FileNotFoundError, ProcessLookupError):
        return False


def kill_monitor(reference: str) -> containers.Container:
    """SIGKILL the container's monitor, as a crash would; return the container, now dead."""
    container = containers.inspect(reference)
    os.kill(container.state.monitor_pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while containers.inspect(reference).status != containers.DEAD:
        assert time.monotonic() < deadline, "the monitor did not die"
        time.sleep(0.01)
    return container


def assert_settled(container: containers.Container, exit_code: int) -> None:
    """The container has exited with ``exit_code``, nothing of it runs, nothing is half-made."""
    directory = container_dir(container.id)
    state = json.loads((directory / "state.json").read_text())
    assert (state["status"], state["exit_code"]) == ("exited", exit_code)
    assert containers.inspect(container.id).status == "exited"
    assert not alive(container.state.init_pid, container.state.init_start)
    assert os.listdir(directory / "work") == []
    assert os.listdir(store.home() / "tmp") == []
    with open("/proc/self/mountinfo") as host:
        assert str(store.home()) not in host.read()


def test_kill_9_of_labkit_run_leaves_the_container_to_its_monitor_and_gc_leaves_it_be():
    process = subprocess.Popen([LABKIT, "run", "--name", "survivor", "busybox", "sh", "-c",
                                "echo ready; exec sleep 1000"], stdout=subprocess.PIPE)
    try:
        read_until(process, b"ready\n")
    finally:
        process.kill()
        process.wait()
    assert labkit("gc").stdout == f"{NOTHING}\n"
    survivor = containers.inspect("survivor")
    assert survivor.status == "running"
    assert alive(survivor.state.init_pid, survivor.state.init_start)


def test_kill_9_of_labkit_run_and_its_monitor_then_gc_leaves_nothing_behind():
    process = subprocess.Popen([LABKIT, "run", "--name", "crashed", "busybox", "sh", "-c",
                                "echo ready; exec sleep 1000"], stdout=subprocess.PIPE)
    try:
        read_until(process, b"ready\n")
        crashed = kill_monitor("crashed")
    finally:
        process.kill()
        process.wait()
    assert alive(crashed.state.init_pid, crashed.state.init_start), "it ran on, unwatched"

    said = f"container crashed ({crashed.short_id})"
    done = labkit("gc")
    assert done.returncode == 0, done.stderr
    killed, *rest = done.stdout.splitlines()
    assert re.fullmatch(rf"killed \d+ process\(es\) of {re.escape(said)}: its monitor was gone",
                        killed)
    assert rest == [f"marked {said} exited (137)", f"removed the cgroup of {said}",
                    f"released {crashed.lease.address} and 0 published port(s) of {said}",
                    f"emptied the work directory of {said}"]
    assert_settled(crashed, 137)
    assert labkit("gc").stdout == f"{NOTHING}\n", "idempotent"


def test_a_dead_container_whose_processes_died_too_gets_an_unknown_exit_code():
    box = containers.run("busybox", ["sleep", "1000"], detach=True, name="gone-quietly")
    kill_monitor(box.id)
    os.kill(box.state.init_pid, signal.SIGKILL)
    while alive(box.state.init_pid, box.state.init_start):
        time.sleep(0.01)
    said = f"container gone-quietly ({box.short_id})"
    assert containers.gc() == [f"marked {said} exited (255)",
                               f"removed the cgroup of {said}",
                               f"released {box.lease.address} and 0 published port(s) of {said}",
                               f"emptied the work directory of {said}"]
    assert_settled(box, 255)


def test_the_processes_of_a_record_removed_behind_the_lab_s_back_are_killed_by_gc():
    """``rm`` refuses a dead container whose processes run on (see below); but its record can
    still go by hand, or by an older labkit, and leave them running with no record at all."""
    box = containers.run("busybox", ["sleep", "1000"], detach=True, name="removed-alive")
    kill_monitor(box.id)
    with store.writing() as lab:
        lab.remove_container(box.id)
    assert alive(box.state.init_pid, box.state.init_start)

    done = containers.gc()
    assert len(done) == 3 and re.fullmatch(
        rf"killed \d+ process\(es\) of removed container {box.short_id}: its monitor was gone",
        done[0]), done
    assert done[1:] == [f"released {box.lease.address}: its container is gone",  # its claim
                        f"removed the cgroup labkit/{box.id}: no process is left in it"]
    assert not alive(box.state.init_pid, box.state.init_start)


# In a sandbox (a private mount namespace of its own): a stray overlay whose upper is an orphaned
# container directory of the store, and a tmpfs mounted under the store; then gc, then the table.
STRAYS = """
set -e
mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$3"
mkdir "$2/spot" && mount -t tmpfs tmpfs "$2/spot"
"$4" gc
echo ---
cat /proc/self/mountinfo
"""


def test_gc_unmounts_strays_then_removes_orphans_debris_and_unused_layers(tmp_path):
    lab = store.reading()
    orphan = store.home() / "containers" / names.new_id()
    for part in ("upper", "work"):
        (orphan / part).mkdir(parents=True)
    with store.writing() as writer, writer.staging() as stage:
        (stage / "tree").mkdir()
        (stage / "tree" / "file").write_text("no image lists this")
        unused = writer.add_layer(stage / "tree")
    (store.home() / "tmp" / "killed-build").mkdir()  # after writing(), which clears tmp/
    (store.home() / "tmp" / "killed-build" / "half").write_text("written")
    merged = tmp_path / "merged"
    merged.mkdir()

    base = lab.layer_tree(lab.image("busybox").layers[0])
    sandbox = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", STRAYS, "sandbox",
         str(base), str(orphan), str(merged), LABKIT], capture_output=True, text=True)
    assert sandbox.returncode == 0, sandbox.stderr
    said, table = sandbox.stdout.split("---\n")
    assert said.splitlines() == [
        f"unmounted {merged} (overlay)",
        f"unmounted {orphan}/spot (tmpfs)",
        "removed 1 leftover(s) of killed labkit commands in tmp/",
        f"removed containers/{orphan.name}: no container's config in it",
        f"removed layer {store.short(unused)}: no image or container uses it"]
    assert str(store.home()) not in table and str(merged) not in table

    assert not orphan.exists() and not lab.layer_dir(unused).exists()
    assert os.listdir(store.home() / "tmp") == []
    assert containers.gc() == [NOTHING]


def test_every_verb_sees_a_container_that_runs_on_without_its_monitor():
    """After ``kill -9`` of a monitor the container runs on. ``start`` must not run a second
    instance on its upper, ``rm`` must not take its files from under it, and ``stop`` must
    stop it (it returned 0 and stopped nothing): each says so, and stop does it itself."""
    labkit("run", "-d", "--name", "orphaned", "busybox", "sleep", "1000")
    container = kill_monitor("orphaned")
    pid = container.state.init_pid
    for verb, then in (("start", "then start it again"), ("rm", "then remove it, or use rm -f")):
        refused = labkit(verb, "orphaned")
        assert refused.returncode == 1, refused
        assert len(refused.stderr.splitlines()) == 1 and re.fullmatch(
            rf"labkit: container orphaned still runs without its monitor \(\d+ processes\): "
            rf"stop it first \(labkit stop orphaned\), {then}\n", refused.stderr), refused.stderr
        assert alive(pid, container.state.init_start)
    stopped = labkit("stop", "-t", "5", "orphaned")
    assert (stopped.returncode, stopped.stdout) == (0, "orphaned\n"), stopped.stderr
    assert not alive(pid, container.state.init_start)
    assert_settled(container, 143)  # stopped by SIGTERM, as docker stop would
    assert labkit("start", "orphaned").returncode == 0  # and now it may run again
    assert containers.inspect("orphaned").status == store.RUNNING


def test_rm_f_kills_what_runs_on_without_a_monitor_and_removes_it():
    labkit("run", "-d", "--name", "orphaned-too", "busybox", "sleep", "1000")
    container = kill_monitor("orphaned-too")
    assert labkit("rm", "-f", "orphaned-too").returncode == 0
    assert not alive(container.state.init_pid, container.state.init_start)
    assert container.id not in store.reading().container_ids()


def test_exec_in_a_container_whose_monitor_died_says_how_to_get_it_back():
    """start refuses while its processes run on unwatched, so "start it first" would be a dead
    end: the line names what works, and doing it works."""
    box = containers.run("busybox", ["sleep", "1000"], detach=True, name="unwatched")
    kill_monitor(box.id)
    said = labkit("exec", "unwatched", "true")
    assert said.returncode == 125
    assert said.stderr.splitlines() == [
        "labkit: container unwatched lost its monitor, so nothing can be run in it: stop it "
        "(labkit stop unwatched), then start it again"]
    assert labkit("stop", "unwatched").returncode == 0
    assert labkit("start", "unwatched").returncode == 0
    assert labkit("exec", "unwatched", "true").returncode == 0
