"""A container record that cannot be read (cut short by a crash, a full disk, a hand) is one
damaged container: listed as such, removed by ``rm -f``, ``gc`` and ``reset``, and no other
container or command is affected. And a state file is never found half-written: a crash test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from containers_support import labkit, removing_new_containers

from labkit.engine import containers, monitor, names, store
from labkit.kernel import process
from tests.conftest import LABKIT, REPO

DAMAGE = {"cut short": b'{"status": "exi', "garbage": b"\x00\xffnot json at all",
          "wrong fields": b'{"colour": "blue"}', "missing": None}


@pytest.fixture(autouse=True)
def _remove_what_the_test_made(base_image):
    with removing_new_containers():
        yield


def damage(container_id: str, record: str, how: str, *, running: bool = False) -> None:
    """Damage one record; of a container that has exited, once its monitor has finished with
    it (a monitor writes the final state after it reported the exit)."""
    path = store.home() / "containers" / container_id / record
    if not running:
        monitor.wait_gone(path.parent)
    if DAMAGE[how] is None:
        path.unlink()
    else:
        path.write_bytes(DAMAGE[how])


def ps_all() -> dict[str, str]:
    """``labkit ps -a`` as {name: status}; it must succeed, whatever the store holds."""
    listed = labkit("ps", "-a")
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    rows = [re.split(r"\s{2,}", row) for row in listed.stdout.splitlines()[1:]]
    return {cells[5]: cells[4] for cells in rows}


@pytest.mark.parametrize("record", [store.STATE, store.CONFIG])
@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_record_is_one_damaged_container_and_rm_removes_it(record, how):
    containers.run("busybox", ["true"], name="good")
    bad = containers.run("busybox", ["true"], name="bad")
    damage(bad.id, record, how)
    shown_name = "bad" if record == store.STATE else names.short(bad.id)

    listed = ps_all()
    assert listed["good"].startswith("Exited (0) ") and listed[shown_name] == "Damaged"
    assert json.loads(labkit("inspect", bad.id).stdout)[0]["status"] == "damaged"
    assert labkit("stop", bad.id).returncode == 0  # nothing runs: nothing to stop
    assert labkit("rm", bad.id).returncode == 0
    assert bad.id not in store.reading().container_ids()
    assert containers.inspect("good").status == store.EXITED
    assert labkit("start", "good").returncode == 0  # the others never noticed


@pytest.mark.parametrize("how", DAMAGE)
def test_start_refuses_a_container_whose_config_is_damaged_in_one_line(how):
    bad = containers.run("busybox", ["true"], name="no-config")
    damage(bad.id, store.CONFIG, how)
    started = labkit("start", bad.id)
    assert started.returncode == 1 and len(started.stderr.splitlines()) == 1, started.stderr
    assert f"container {names.short(bad.id)} is damaged: its config.json" in started.stderr
    assert f"labkit rm -f {names.short(bad.id)} removes it" in started.stderr


def test_start_writes_a_damaged_state_whole_again():
    box = containers.run("busybox", ["sleep", "1000"], name="healed", detach=True)
    assert labkit("stop", "-t", "0", "healed").returncode == 0
    damage(box.id, store.STATE, "cut short")
    assert labkit("start", "healed").returncode == 0
    assert containers.inspect("healed").status == store.RUNNING


def test_gc_removes_a_container_whose_config_cannot_be_read_and_rewrites_a_bad_state():
    config_broken = containers.run("busybox", ["true"], name="config-broken")
    state_broken = containers.run("busybox", ["true"], name="state-broken")
    damage(config_broken.id, store.CONFIG, "garbage")
    damage(state_broken.id, store.STATE, "cut short")
    done = labkit("gc")
    assert done.returncode == 0, done.stderr
    assert f"removed containers/{config_broken.id}: its config cannot be read" in done.stdout
    assert f"marked container state-broken ({names.short(state_broken.id)}) exited (255)" in (
        done.stdout)
    assert config_broken.id not in store.reading().container_ids()
    assert containers.inspect("state-broken").status == store.EXITED


def test_a_running_container_s_damaged_state_is_written_whole_when_it_stops():
    box = containers.run("busybox", ["sleep", "1000"], detach=True, name="hurt")
    damage(box.id, store.STATE, "garbage", running=True)
    assert ps_all()["hurt"] == "Damaged"
    refused = labkit("rm", "hurt")  # its monitor still holds it
    assert refused.returncode == 1 and "stop it first" in refused.stderr
    assert labkit("stop", "-t", "1", "hurt").returncode == 0
    stopped = containers.inspect("hurt")
    assert stopped.status == store.EXITED and stopped.exit_code == 143


def test_rm_f_stops_a_damaged_running_container_and_removes_it():
    box = containers.run("busybox", ["sleep", "1000"], detach=True, name="broken-run")
    damage(box.id, store.CONFIG, "missing", running=True)
    init = box.state.init_pid
    assert labkit("rm", "-f", box.id).returncode == 0
    assert box.id not in store.reading().container_ids()
    assert process.state(init) in (None, "Z")


WRITER = """
import sys
sys.path.insert(0, sys.argv[1])
from dataclasses import replace
from labkit.engine import store
lab, container_id = store.reading(), sys.argv[2]
state = lab.container_state(container_id)
for n in range(10**9):  # bigger and smaller states, as fast as it can, until it is killed
    lab.save_container_state(container_id, replace(state, error="x" * (n % 5000)))
"""


def test_a_state_file_killed_mid_write_is_the_old_one_or_the_new_one_never_half():
    box = containers.run("busybox", ["true"], name="crash-test")
    directory = store.home() / "containers" / box.id
    assert not monitor.alive(directory)
    for _ in range(40):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(REPO), box.id])
        time.sleep(0.05 + (_ % 7) / 100)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        store.reading().container_state(box.id)  # a Damaged here would fail the test
    assert ps_all()["crash-test"].startswith("Exited (0)")


def test_reset_makes_a_lab_with_damaged_containers_new(tmp_path):
    env = {**os.environ, "LABKIT_HOME": str(tmp_path / "store")}

    def lab(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([LABKIT, *args], env=env, capture_output=True, text=True,
                              timeout=120)

    assert lab("image", "build-base").returncode == 0
    running = lab("run", "-d", "busybox", "sleep", "1000").stdout.strip()
    exited = lab("run", "-d", "busybox", "true").stdout.strip()
    monitor.wait_gone(tmp_path / "store" / "containers" / exited)
    (tmp_path / "store" / "containers" / running / store.CONFIG).write_text("{")
    (tmp_path / "store" / "containers" / exited / store.STATE).write_text("")
    init = json.loads((tmp_path / "store" / "containers" / running / store.STATE).read_text())[
        "init_pid"]
    reset = lab("reset")
    assert reset.returncode == 0, reset.stderr
    assert reset.stdout.splitlines()[0] == f"stopped 1 container: {names.short(running)}"
    assert process.state(init) in (None, "Z")
    assert os.listdir(tmp_path / "store" / "containers") == []
