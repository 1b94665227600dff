"""The runtime on real namespaces: what each step promises, what init promises, and bad input.

Every container here is a real one, started from a fresh launcher process; the test process
itself never unshares, mounts or forks. Around each test, the host's hostname, ``/proc`` and
mount table must come out as they went in (and the shared host guard checks for processes).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from labkit.lessons.sandbox import shared_root
from labkit.runtime.api import ContainerProcess, launcher_command, run, start
from labkit.runtime.spec import DEFAULT_PATH
from labkit.runtime.steps.hostname import Hostname
from labkit.runtime.steps.mounts import PrivateProc
from labkit.runtime.steps.pid import PidNamespace
from tests import hostguard

CONTAINER = [Hostname("container"), PidNamespace(), PrivateProc()]


def _host_ns(kind: str) -> int:
    return int(os.readlink(f"/proc/self/ns/{kind}").split("[")[1].rstrip("]"))


def _host_view() -> tuple:
    """What a leaking container would change: the hostname, /proc, the mount table."""
    proc_is_the_hosts = os.readlink("/proc/self") == str(os.getpid())
    return socket.gethostname(), proc_is_the_hosts, hostguard.host_mounts()


@pytest.fixture(autouse=True)
def host_unchanged():
    before = _host_view()
    assert before[1], "the host's /proc must show the test's own pid to begin with"
    yield
    assert _host_view() == before


def _one_line(result) -> None:
    """The lab's error is one line, and it is all the stderr says."""
    assert result.error and "\n" not in result.error
    assert result.stderr == f"labkit: {result.error}\n"


def _wait_for(container: ContainerProcess, *names: str) -> list[psutil.Process]:
    """The processes under the container's init, once they are exactly ``names``."""
    init = psutil.Process(container.init_pid)
    for _ in range(500):
        processes = init.children(recursive=True)
        if sorted(process.name() for process in processes) == sorted(names):
            return processes
        time.sleep(0.01)
    raise AssertionError(f"{names} never ran under the container's init")


def _gone(pid: int) -> bool:
    """Dead: no such process, or a zombie left for the test run to reap (it is a subreaper)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# ---------------------------------------------------------------------------------------------
# The steps


def test_the_container_has_the_spec_s_hostname_and_the_host_keeps_its_own():
    host_name = socket.gethostname()
    result = run(["hostname"], [Hostname("container")])
    assert (result.exit_code, result.stdout, result.stderr) == (0, "container\n", "")
    assert result.namespaces["uts"] != _host_ns("uts")
    assert socket.gethostname() == host_name


def test_without_the_hostname_step_the_container_shares_the_host_s_uts_namespace():
    result = run(["hostname"])
    assert result.stdout == f"{socket.gethostname()}\n"
    assert result.namespaces["uts"] == _host_ns("uts")


def test_the_command_runs_as_pid_2_under_init_as_pid_1():
    result = run(["sh", "-c", 'echo "$$ $PPID"'], [PidNamespace()])
    assert (result.exit_code, result.stdout) == (0, "2 1\n")
    assert result.namespaces["pid"] != _host_ns("pid")


def test_a_fresh_proc_lists_only_the_container_s_processes():
    result = run(["ls", "/proc"], CONTAINER)
    assert result.exit_code == 0
    assert {entry for entry in result.stdout.split() if entry.isdigit()} == {"1", "2"}
    assert result.namespaces["mnt"] != _host_ns("mnt")
    assert str(os.getpid()) in os.listdir("/proc")


def test_the_reported_namespaces_are_those_the_kernel_shows_from_outside():
    with start(["sleep", "100"], CONTAINER) as container:
        outside = {kind: int(os.readlink(f"/proc/{container.init_pid}/ns/{kind}")
                             .split("[")[1].rstrip("]"))
                   for kind in container.namespaces}
        assert container.namespaces == outside
        assert {kind for kind in outside if outside[kind] != _host_ns(kind)} == {
            "uts", "pid", "pid_for_children", "mnt"}


# ---------------------------------------------------------------------------------------------
# Init: PID 1's two jobs

# A hundred processes whose parents exit at once, so that each is re-parented to PID 1. They
# wait on a pipe; when the command closes it they all exit, and stay zombies until PID 1 reaps
# them. The command then reports who is left, and in which state.
ORPHANS = """
import os, time

def others():
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getpid())]

def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        state, parent = f.read().rsplit(")", 1)[1].split()[:2]
    return state, int(parent)

read_end, write_end = os.pipe()
for _ in range(100):
    if os.fork() == 0:
        if os.fork() == 0:
            os.close(write_end)
            os.read(read_end, 1)
            os._exit(0)
        os._exit(0)
    os.wait()
print("orphans", len(others()), "parents", sorted({stat(pid)[1] for pid in others()}))
os.close(write_end)
for _ in range(1000):
    if not others():
        break
    time.sleep(0.01)
print("left", sorted(stat(pid)[0] for pid in others()))
"""


def test_init_reaps_every_orphan_and_leaves_no_zombie():
    result = run([sys.executable, "-I", "-c", ORPHANS], CONTAINER)
    assert result.stderr == ""
    assert result.stdout.splitlines() == ["orphans 100 parents [1]", "left []"]
    assert result.exit_code == 0


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP],
                         ids=lambda number: number.name)
def test_a_signal_stops_a_command_without_a_handler_of_its_own(number):
    with start(["sleep", "100"], [PidNamespace()]) as container:
        [command] = _wait_for(container, "sleep")
        with open(f"/proc/{command.pid}/status") as status:
            caught = int(status.read().split("SigCgt:")[1].split()[0], 16)
        assert not caught & (1 << (number - 1)), "sleep must have no handler of its own"
        started = time.monotonic()
        container.send_signal(number)
        assert container.wait(timeout=10) == 128 + number
        print(f"{signal.Signals(number).name} stopped the container in "
              f"{time.monotonic() - started:.3f} s")
    assert _gone(command.pid)


def test_kill_takes_the_whole_container_down_with_137():
    with start(["sh", "-c", "sleep 100 & sleep 100"], [PidNamespace()]) as container:
        pids = [container.init_pid, *(p.pid for p in _wait_for(container, "sh", "sleep", "sleep"))]
        container.kill()
        assert container.wait(timeout=10) == 137
    for _ in range(500):
        if all(_gone(pid) for pid in pids):
            break
        time.sleep(0.01)
    assert [pid for pid in pids if not _gone(pid)] == []


def test_the_timeout_kills_the_container_with_137_and_says_so():
    result = run(["sleep", "100"], [PidNamespace()], timeout=0.5)
    assert result.exit_code == 137
    assert "timeout of 0.5 s" in result.error
    _one_line(result)


# ---------------------------------------------------------------------------------------------
# Mounts stay private, even where the parent's / is shared

# Runs in a sandbox whose / is rshared, as on a systemd host. It runs a container with a fresh
# /proc, then makes the article's mistake itself (a /proc mounted in a new mount namespace that
# was not made private) to show that this sandbox would reveal a leak.
SHARED_HOST = """
import json, os
from labkit.kernel import syscalls
from labkit.runtime.api import run
from labkit.runtime.steps.mounts import PrivateProc
from labkit.runtime.steps.pid import PidNamespace

def mount_table():
    with open("/proc/self/mountinfo") as table:
        return table.read()

def naive_proc_mount():
    child = os.fork()
    if child == 0:
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount("proc", "/proc", "proc")
        os._exit(0)
    os.waitpid(child, 0)

before = mount_table()
result = run(["ls", "/proc"], [PidNamespace(), PrivateProc()])
after_container = mount_table()
proc_still_mine = str(os.getpid()) in os.listdir("/proc")
naive_proc_mount()
print(json.dumps({
    "root_shared": any(line.split()[4] == "/" and "shared:" in line
                       for line in before.splitlines()),
    "container_proc": sorted(p for p in result.stdout.split() if p.isdigit()),
    "unchanged": after_container == before,
    "proc_still_mine": proc_still_mine,
    "naive_leaks": mount_table() != before,
}))
"""


def test_the_container_s_mounts_stay_private_when_the_parent_s_root_is_rshared():
    sandbox = subprocess.run(shared_root([sys.executable, "-I", "-c", SHARED_HOST]),
                             capture_output=True, text=True, timeout=60)
    assert sandbox.returncode == 0, sandbox.stderr
    assert json.loads(sandbox.stdout) == {
        "root_shared": True, "container_proc": ["1", "2"], "unchanged": True,
        "proc_still_mine": True, "naive_leaks": True}


# ---------------------------------------------------------------------------------------------
# The command's world, and bad input


def test_the_command_gets_exactly_the_spec_s_environment_and_input():
    assert run(["env"]).stdout == f"PATH={DEFAULT_PATH}\n"
    result = run(["sh", "-c", 'echo "$GREETING"; cat'], env={"GREETING": "hello", "PATH": "/bin"},
                 input="from stdin\n")
    assert result.stdout == "hello\nfrom stdin\n"


def test_the_container_s_exit_code_is_the_command_s():
    assert run(["sh", "-c", "exit 42"], CONTAINER).exit_code == 42


def test_a_command_not_found_exits_127_with_one_line():
    result = run(["no-such-command"], CONTAINER)
    assert result.exit_code == 127
    assert result.error.startswith("no-such-command: command not found in PATH=")
    _one_line(result)


def test_start_returns_once_the_command_was_exec_d_or_could_not_be():
    """As docker run -d: a command that cannot be found is known to have failed when start
    returns, not only once someone waits; one that runs is running already."""
    with start(["no-such-command"], CONTAINER) as failed:
        assert failed.error.startswith("no-such-command: command not found")
    with start(["sleep", "30"], CONTAINER) as sleeper:
        children = Path(f"/proc/{sleeper.init_pid}/task/{sleeper.init_pid}/children").read_text()
        [command] = children.split()
        assert Path(f"/proc/{command}/cmdline").read_bytes() == b"sleep\x0030\x00"
        sleeper.kill()


def test_a_command_that_is_not_executable_exits_126_with_one_line(tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho never\n")
    for command in (script, tmp_path):
        result = run([str(command)], CONTAINER)
        assert result.exit_code == 126
        assert result.error == f"{command}: cannot execute it: Permission denied"
        _one_line(result)


def test_the_launcher_refuses_a_spec_it_cannot_read_with_125():
    read_end, write_end = os.pipe()
    try:
        launcher = subprocess.run(launcher_command(write_end, '{"command": "oops"}'),
                                  pass_fds=(write_end,), capture_output=True, text=True,
                                  timeout=30)
    finally:
        os.close(write_end)
    with os.fdopen(read_end) as report:
        facts = [json.loads(line) for line in report]
    assert launcher.returncode == 125
    assert launcher.stdout == ""
    assert launcher.stderr.startswith("labkit: a command is a non-empty list of words")
    assert launcher.stderr.count("\n") == 1
    assert facts == [{"error": launcher.stderr.removeprefix("labkit: ").rstrip("\n")}]
