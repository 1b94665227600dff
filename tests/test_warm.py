"""The warm launcher on real namespaces: the same containers as ``api.run``, forked from a helper.

Every test starts its own helper and closes it, so the host guard checks, around each test, that
the helper, its launchers and their containers are all gone. The test process only talks to the
helper through sockets: it never forks, unshares or mounts.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import threading
import time

import psutil
import pytest

from labkit.engine import store
from labkit.engine.builds import static_init
from labkit.errors import LAB_ERROR, LabError
from labkit.runtime import api
from labkit.runtime.container import steps_for
from labkit.runtime.spawn import warm
from labkit.runtime.steps.hostname import Hostname
from labkit.runtime.steps.mounts import PrivateProc
from labkit.runtime.steps.pid import PidNamespace
from labkit.runtime.steps.rootfs import RootFs

LESSON = [Hostname("warm"), PidNamespace(), PrivateProc()]
SECONDS = 60  # the most one container here may take before the test gives up on it


@pytest.fixture
def launcher():
    with warm.Launcher() as launcher:
        yield launcher
    assert _gone(launcher.pid)


def _host_ns(kind: str) -> int:
    return int(os.readlink(f"/proc/self/ns/{kind}").split("[")[1].rstrip("]"))


def _gone(pid: int) -> bool:
    """Dead: no such process, or a zombie left for the test run to reap (it is a subreaper)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _all_gone(pids: list[int]) -> bool:
    for _ in range(500):
        if all(_gone(pid) for pid in pids):
            return True
        time.sleep(0.01)
    return False


def _without_inodes(result: api.Result) -> tuple:
    """A Result without the namespace inodes, which the kernel hands out afresh each time."""
    return result.exit_code, result.stdout, result.stderr, result.error, sorted(result.namespaces)


def _sleeping(container: api.ContainerProcess) -> list[int]:
    """The container's init and its command, once the command is ``sleep``."""
    init = psutil.Process(container.init_pid)
    for _ in range(500):
        children = init.children()
        if [child.name() for child in children] == ["sleep"]:
            return [init.pid, children[0].pid]
        time.sleep(0.01)
    raise AssertionError("the container's command never started")


# ---------------------------------------------------------------------------------------------
# The same containers as api.run


def test_the_container_has_its_hostname_and_the_host_keeps_its_own(launcher):
    host_name = socket.gethostname()
    result = launcher.run(["hostname"], LESSON)
    assert (result.exit_code, result.stdout, result.error) == (0, "warm\n", None)
    assert socket.gethostname() == host_name


def test_the_command_runs_as_pid_2_under_init_as_pid_1_in_a_fresh_proc(launcher):
    result = launcher.run(["sh", "-c", 'echo "$$ $PPID"; exec ls /proc'], LESSON)
    pid, parent, *proc = result.stdout.split()
    assert (result.exit_code, pid, parent) == (0, "2", "1")
    assert {entry for entry in proc if entry.isdigit()} == {"1", "2"}


@pytest.mark.parametrize("command", [
    ["sh", "-c", "echo out; echo err >&2; exit 3"],
    ["sh", "-c", "kill -TERM $$"],
    ["no-such-command"],
    ["/etc/hostname"],
    ["sh", "-c", "ls /proc/self/fd"],
], ids=["exit-3", "killed", "not-found-127", "not-executable-126", "descriptors"])
def test_a_container_gives_the_same_result_warm_as_cold(launcher, command):
    warm_result = launcher.run(command, LESSON)
    assert _without_inodes(warm_result) == _without_inodes(api.run(command, LESSON))
    assert warm_result.exit_code in (3, 143, 127, 126, 0)


def test_the_command_gets_the_environment_the_input_and_the_working_directory(
        launcher, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = launcher.run(["sh", "-c", 'echo "$GREETING $(pwd)"; cat'], LESSON,
                          env={"PATH": "/bin:/usr/bin", "GREETING": "hello"},
                          input="one\r\ntwo\n")
    assert result.stdout == f"hello {tmp_path}\none\ntwo\n"


def test_input_and_output_larger_than_a_pipe_pass_whole(launcher):
    text = "".join(f"line {number}\n" for number in range(50_000))  # about 540 KB
    result = launcher.run(["sh", "-c", "cat; seq 100000 >&2"], LESSON, input=text)
    assert result.stdout == text
    assert result.stderr == "".join(f"{number}\n" for number in range(1, 100_001))


def test_the_namespaces_are_new_ones_as_the_kernel_shows_them_from_outside(launcher):
    with launcher.start(["sleep", "100"], LESSON) as container:
        outside = {kind: int(os.readlink(f"/proc/{container.init_pid}/ns/{kind}")
                             .split("[")[1].rstrip("]"))
                   for kind in container.namespaces}
        assert container.namespaces == outside
        assert {kind for kind in outside if outside[kind] != _host_ns(kind)} == {
            "uts", "pid", "pid_for_children", "mnt"}


def test_launchers_are_forked_by_the_single_threaded_helper_not_by_the_caller(launcher):
    helper = psutil.Process(launcher.pid)
    assert helper.ppid() == os.getpid()
    assert helper.num_threads() == 1
    with launcher.start(["sleep", "100"], LESSON) as container:
        assert psutil.Process(container.pid).ppid() == launcher.pid
        assert psutil.Process(container.init_pid).ppid() == container.pid
        assert psutil.Process(container.pid).cmdline() == helper.cmdline()  # forked, not exec'd


# ---------------------------------------------------------------------------------------------
# Signals, timeouts and the end of every process


def test_a_signal_reaches_the_command_and_stops_it_with_143(launcher):
    with launcher.start(["sleep", "100"], LESSON) as container:
        pids = _sleeping(container)
        container.terminate()
        assert container.wait(timeout=SECONDS) == 143
    assert _all_gone([container.pid, *pids])


def test_kill_takes_the_whole_container_down_with_137(launcher):
    with launcher.start(["sh", "-c", "sleep 100"], LESSON) as container:
        init = container.init_pid
        container.kill()
        assert container.wait(timeout=SECONDS) == 137
    assert _all_gone([container.pid, init])


def test_the_timeout_kills_the_container_with_137_and_says_so(launcher):
    result = launcher.run(["sleep", "100"], LESSON, timeout=0.5)
    assert result.exit_code == 137
    assert result.error == ("the command ran longer than its timeout of 0.5 s; "
                            "the container was killed")


def test_closing_the_launcher_kills_the_containers_still_running():
    with warm.Launcher() as launcher:
        container = launcher.start(["sleep", "100"], LESSON)
        pids = [launcher.pid, container.pid, *_sleeping(container)]
    assert container.wait(timeout=SECONDS) == 137
    assert _all_gone(pids)


def test_when_the_helper_dies_its_containers_die_and_the_next_run_says_so(launcher):
    container = launcher.start(["sleep", "100"], LESSON)
    pids = [container.pid, *_sleeping(container)]
    os.kill(launcher.pid, signal.SIGKILL)
    assert container.wait(timeout=SECONDS) == 137
    assert _all_gone(pids)
    with pytest.raises(LabError, match="the warm launcher's helper is gone") as caught:
        launcher.run(["true"], LESSON)
    assert caught.value.exit_code == LAB_ERROR


def test_a_spare_launcher_killed_while_it_waits_is_replaced(launcher):
    [spare] = psutil.Process(launcher.pid).children()
    spare.kill()
    for _ in range(500):
        if _gone(spare.pid):
            break
        time.sleep(0.01)
    result = launcher.run(["hostname"], LESSON)
    assert (result.exit_code, result.stdout) == (0, "warm\n")
    assert psutil.Process(launcher.pid).children()[0].pid != spare.pid


def test_a_container_whose_handle_was_dropped_is_still_reaped(launcher):
    container = launcher.start(["true"], LESSON)
    pid = container.pid
    del container
    gc.collect()  # its reply socket closes: nobody listens for its end any more
    for _ in range(500):
        if not psutil.pid_exists(pid):
            break
        time.sleep(0.01)
    assert not psutil.pid_exists(pid), "the helper reaped it: no zombie is left"
    assert launcher.run(["echo", "next"], LESSON).stdout == "next\n"


def test_containers_started_from_many_threads_each_get_their_own_output(launcher):
    results: dict[int, api.Result] = {}

    def run(number: int) -> None:
        results[number] = launcher.run(["sh", "-c", f"echo {number}; exit {number}"], LESSON)

    threads = [threading.Thread(target=run, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {number: (result.stdout, result.exit_code) for number, result in results.items()} \
        == {number: (f"{number}\n", number) for number in range(8)}


# ---------------------------------------------------------------------------------------------
# A full container, and bad input


def test_a_full_busybox_container_runs_warm(launcher, base_image, tmp_path):
    lab = store.reading()
    layers = [lab.layer_tree(digest) for digest in reversed(lab.image(base_image).layers)]
    (tmp_path / "upper").mkdir()
    (tmp_path / "work").mkdir()
    steps = steps_for(layers, tmp_path / "upper", tmp_path / "work", hostname="4f3c2a1b9e8d",
                      init=static_init())
    result = launcher.run(["sh", "-c", 'hostname; echo $$; readlink /proc/1/exe; echo > /new'],
                          steps, env={"PATH": "/bin"}, timeout=SECONDS)
    assert (result.exit_code, result.error) == (0, None)
    assert result.stdout == "4f3c2a1b9e8d\n2\n/dev/init\n"
    assert os.listdir(tmp_path / "upper") == ["new"]


def test_a_step_that_fails_is_one_line_with_125_as_cold(launcher, tmp_path):
    (tmp_path / "upper").mkdir()
    (tmp_path / "work").mkdir()
    steps = [*LESSON, RootFs(lowers=[str(tmp_path / "missing")], upper=str(tmp_path / "upper"),
                             work=str(tmp_path / "work"), target=str(tmp_path / "merged"))]
    warm_result = launcher.run(["true"], steps)
    assert warm_result.exit_code == LAB_ERROR
    assert warm_result.error and "\n" not in warm_result.error
    assert _without_inodes(warm_result) == _without_inodes(api.run(["true"], steps))


def test_a_spec_too_long_for_a_request_is_refused_before_anything_starts(launcher):
    before = psutil.Process(launcher.pid).children()
    with pytest.raises(LabError, match="too long") as caught:
        launcher.run(["echo", "x" * warm.MAX_SPEC], LESSON)
    assert caught.value.exit_code == LAB_ERROR
    assert psutil.Process(launcher.pid).children() == before
    assert launcher.run(["echo", "still here"], LESSON).stdout == "still here\n"


def test_a_helper_that_cannot_start_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(warm, "_ENTRY", "sys:exit")  # exits at once, with its argument
    with pytest.raises(LabError, match="died while starting"):
        warm.Launcher()


def test_a_request_the_helper_cannot_read_is_refused_and_the_helper_carries_on(launcher):
    # A request without its descriptors, as only a broken caller would send it.
    launcher._control.send(json.dumps({"command": ["true"]}).encode())
    assert launcher.run(["echo", "fine"], LESSON).stdout == "fine\n"

