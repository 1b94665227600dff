"""Containers, docker's way: the life cycle through the CLI and the Python API, exec, logs, env,
volumes, terminals, signals, and what survives a crash of the CLI.

Every container here is a real one: the session's busybox image, the runtime's full set of steps,
a monitor process of its own. Each test removes what it made, and the host guard proves that no
monitor or container process outlives it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import stat
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from containers_support import container_dirs, labkit, read_until, removing_new_containers

from labkit.engine import containers, names, store
from labkit.errors import LabError
from labkit.lessons.terminal import replay
from tests.conftest import LABKIT

# Says it started, then runs until SIGTERM, on which it says so and exits 7.
SERVICE = 'echo started; trap "echo stopping; exit 7" TERM; while true; do sleep 0.1; done'


@pytest.fixture(autouse=True)
def _remove_what_the_test_made(base_image):
    with removing_new_containers():
        yield


def ps(*flags: str) -> dict[str, str]:
    """``labkit ps`` as {name: status}, read from its plain table."""
    result = labkit("ps", *flags)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert re.split(r"\s{2,}", header) == ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED",
                                           "STATUS", "PORTS", "NAMES"]
    # PORTS is empty for a container that publishes none: the name is the last cell.
    return {cells[-1]: cells[4] for cells in (re.split(r"\s{2,}", row) for row in rows)}


def wait_for_log(reference: str, text: str) -> None:
    """Wait until the container's log holds ``text`` (it runs on while we look)."""
    deadline = time.monotonic() + 60
    while text not in containers.logs(reference):
        assert time.monotonic() < deadline, f"{reference} never printed {text!r}"
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# The life cycle: run -d, ps, logs, stop, ps -a, start, rm


def test_the_life_cycle_through_the_cli():
    run = labkit("run", "-d", "--name", "web", "busybox", "sh", "-c", SERVICE)
    assert run.returncode == 0, run.stderr
    container_id = run.stdout.strip()
    assert names.is_id(container_id)
    assert ps()["web"].startswith("Up ")
    wait_for_log("web", "started\n")

    assert (labkit("stop", "web").stdout, ps().get("web")) == ("web\n", None)
    assert ps("-a")["web"].startswith("Exited (7) ")
    assert labkit("logs", "web").stdout == "started\nstopping\n"

    assert labkit("start", "web").stdout == "web\n"
    assert ps()["web"].startswith("Up ")
    wait_for_log("web", "started\nstopping\nstarted\n")
    assert labkit("stop", "-t", "5", "web").returncode == 0
    again = labkit("stop", "web")
    assert (again.returncode, again.stdout) == (0, "web\n"), "stopping a stopped one succeeds"

    assert labkit("rm", "web").stdout == "web\n"
    assert "web" not in ps("-a")
    assert container_id not in container_dirs()


def test_the_life_cycle_through_the_api():
    web = containers.run("busybox", ["sh", "-c", SERVICE], detach=True, name="api-web")
    assert (web.status, web.name, web.exit_code) == ("running", "api-web", None)
    assert psutil.Process(web.state.init_pid).is_running()
    assert "api-web" in [container.name for container in containers.ps()]
    wait_for_log("api-web", "started\n")

    stopped = containers.stop("api-web")
    assert (stopped.status, stopped.exit_code) == ("exited", 7)
    assert "api-web" not in [container.name for container in containers.ps()]
    assert "api-web" in [container.name for container in containers.ps(all=True)]
    assert containers.logs("api-web") == "started\nstopping\n"

    restarted = containers.start(web.short_id)
    assert (restarted.status, restarted.exit_code) == ("running", None)
    assert restarted.state.init_pid != web.state.init_pid
    wait_for_log("api-web", "stopping\nstarted\n")
    assert containers.stop("api-web", timeout=5).exit_code == 7

    assert containers.rm("api-web") == web.id
    with pytest.raises(LabError, match="no such container"):
        containers.inspect("api-web")


def test_a_foreground_run_streams_both_outputs_and_exits_with_the_command_s_code():
    result = labkit("run", "--name", "fg", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert ps("-a")["fg"].startswith("Exited (3) ")

    api = containers.run("busybox", ["sh", "-c", "cat; echo err >&2; exit 4"], input="piped\n",
                         remove=True)
    assert (api.exit_code, api.stdout, api.stderr) == (4, "piped\n", "err\n")
    with pytest.raises(LabError, match="no such container"):
        containers.inspect(api.id)  # --rm: gone by the time run returned


def test_stdin_piped_into_run_i_reaches_the_command_whole(tmp_path):
    data = os.urandom(3 << 20).hex()  # 6 MB: far more than any pipe or socket buffer
    result = subprocess.run([LABKIT, "run", "-i", "--rm", "busybox", "wc", "-c"], input=data,
                            capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout.strip()) == (0, str(len(data)))


def test_the_hostname_is_the_short_id_unless_h_says_otherwise():
    default = labkit("run", "--name", "named-host", "busybox", "sh", "-c",
                     "hostname; cat /etc/hostname")
    short_id = containers.inspect("named-host").short_id
    assert default.stdout == f"{short_id}\n{short_id}\n"  # the file says so too, not busybox
    named = labkit("run", "--rm", "-h", "web-1", "busybox", "sh", "-c",
                   "hostname; cat /etc/hostname")
    assert named.stdout == "web-1\nweb-1\n"
    image = containers.commit("named-host", "lab/named-host:v1")  # the bind is no change
    assert containers.run(image.reference, ["cat", "/etc/hostname"], remove=True,
                          hostname="again").stdout == "again\n"
    containers.rm("named-host")
    containers.rmi(image.reference)


def test_when_a_container_ends_its_work_dir_is_cleared_and_its_upper_kept():
    result = labkit("run", "--name", "changer", "busybox", "sh", "-c",
                    "echo new > /added; rm /bin/ls")
    assert result.returncode == 0, result.stderr
    directory = store.home() / "containers" / containers.inspect("changer").id
    assert os.listdir(directory / "work") == []
    assert (directory / "upper" / "added").read_text() == "new\n"
    whiteout = os.lstat(directory / "upper" / "bin" / "ls")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
    with open("/proc/self/mountinfo") as host_mounts:
        assert str(directory) not in host_mounts.read()


# ---------------------------------------------------------------------------------------------
# exec and logs


NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "uts")
SHOW_NAMESPACES = ("for kind in cgroup ipc mnt net pid uts; do readlink /proc/self/ns/$kind; "
                   "done; grep -E '^(Cap|NoNewPrivs)' /proc/self/status")


def test_exec_lands_in_the_namespaces_of_pid_1_with_the_same_hardening():
    box = containers.run("busybox", ["sleep", "1000"], detach=True)
    result = labkit("exec", box.name, "sh", "-c", SHOW_NAMESPACES)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()

    init = box.state.init_pid
    assert lines[:6] == [os.readlink(f"/proc/{init}/ns/{kind}") for kind in NAMESPACES]
    own = {kind for kind, line in zip(NAMESPACES, lines, strict=False)
           if line != os.readlink(f"/proc/self/ns/{kind}")}
    assert own == {"ipc", "mnt", "net", "pid", "uts"}
    with open(f"/proc/{init}/status") as status:
        hardened = [line for line in status.read().splitlines()
                    if line.startswith(("Cap", "NoNewPrivs"))]
    assert lines[6:] == hardened
    assert "NoNewPrivs:\t1" in hardened

    api = containers.exec(box.name, ["sh", "-c", "hostname; echo $PPID"])
    assert (api.exit_code, api.stdout) == (0, f"{box.short_id}\n0\n"), "its parent is outside"


def test_exec_gives_the_command_pipes_never_the_caller_s_own_descriptors(tmp_path):
    """A process in the container must not reach a host file through ``/proc/self/fd``: with
    the caller's stdout a host file, it could reopen that file and read it from the start."""
    box = containers.run("busybox", ["sleep", "1000"], detach=True)
    out = tmp_path / "out.txt"
    out.write_text("host secret\n")
    with open(out, "a") as stdout, open(tmp_path / "err.txt", "w") as stderr:
        done = subprocess.run([LABKIT, "exec", box.name, "sh", "-c",
                               "for fd in 0 1 2; do readlink /proc/self/fd/$fd; done; "
                               "echo to-err >&2; exit 3"],
                              stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, timeout=60)
    assert done.returncode == 3
    written = out.read_text().splitlines()
    assert written[0] == "host secret"
    assert [link.split(":")[0] for link in written[1:]] == ["/dev/null", "pipe", "pipe"], written
    assert (tmp_path / "err.txt").read_text() == "to-err\n"

    typed = labkit("exec", "-i", box.name, "sh", "-c",
                   "readlink /proc/self/fd/0 | cut -d: -f1; read line; echo got $line",
                   input="hello\n")
    assert (typed.returncode, typed.stdout) == (0, "pipe\ngot hello\n")
    endless = subprocess.run(["bash", "-c", f"set -o pipefail; {LABKIT} exec {box.name} yes "
                              f"| head -n 2"], capture_output=True, text=True, timeout=60)
    assert (endless.returncode, endless.stdout) == (141, "y\ny\n"), endless


def test_logs_keeps_what_a_detached_container_printed_on_each_stream():
    run = labkit("run", "-d", "--name", "talker", "busybox", "sh", "-c",
                 "echo to-out; echo to-err >&2; exit 2")
    assert run.returncode == 0, run.stderr
    followed = labkit("logs", "-f", "talker")  # follows to the container's end
    assert (followed.returncode, followed.stdout, followed.stderr) == (0, "to-out\n", "to-err\n")
    assert ps("-a")["talker"].startswith("Exited (2) ")
    later = labkit("logs", "talker")
    assert (later.stdout, later.stderr) == ("to-out\n", "to-err\n")

    log = store.home() / "containers" / run.stdout.strip() / "log"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted((entry["stream"], entry["log"]) for entry in entries) == [
        ("stderr", "to-err\n"), ("stdout", "to-out\n")]


def test_logs_f_into_a_reader_that_leaves_early_ends_quietly():
    """``labkit logs -f web | head -n 1``: head leaves after one line, and logs stops at its
    next write, as any command in a pipe does: no traceback, the shell's 141 for SIGPIPE."""
    assert labkit("run", "-d", "--name", "chatty", "busybox", "sh", "-c",
                  "while true; do echo line; sleep 0.01; done").returncode == 0
    piped = subprocess.run(["bash", "-c", f"set -o pipefail; {LABKIT} logs -f chatty | head -n 1"],
                           capture_output=True, text=True, timeout=60)
    assert (piped.returncode, piped.stdout, piped.stderr) == (141, "line\n", "")
    containers.rm("chatty", force=True)


def test_output_into_a_pipe_nobody_reads_ends_quietly_with_141():
    """The short output of ps reaches the pipe only as the command exits: the same end."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([LABKIT, "ps", "-a"], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


# ---------------------------------------------------------------------------------------------
# -e and -v


def test_an_env_value_reaches_the_command_and_overrides_the_image_s():
    assert store.reading().image("busybox").env == ["PATH=/bin"]
    echo = ["busybox", "sh", "-c", 'echo "$GREETING|$PATH"']
    assert labkit("run", "--rm", *echo).stdout == "|/bin\n"
    given = labkit("run", "--rm", "-e", "GREETING=hello world", "-e", "PATH=/bin:/opt", *echo)
    assert given.stdout == "hello world|/bin:/opt\n"
    api = containers.run("busybox", ["sh", "-c", "echo $GREETING"], env=["GREETING=hi"],
                         remove=True)
    assert api.stdout == "hi\n"


def test_a_volume_shows_the_host_s_files_and_ro_refuses_writes(tmp_path):
    write = labkit("run", "--rm", "-v", f"{tmp_path}:/data", "busybox", "sh", "-c",
                   "echo from-container > /data/note")
    assert write.returncode == 0, write.stderr
    assert (tmp_path / "note").read_text() == "from-container\n"

    refused = labkit("run", "--rm", "-v", f"{tmp_path}:/data:ro", "busybox", "sh", "-c",
                     "cat /data/note; echo overwritten > /data/note")
    assert refused.returncode != 0
    assert refused.stdout == "from-container\n"
    assert "Read-only file system" in refused.stderr
    assert (tmp_path / "note").read_text() == "from-container\n"


# ---------------------------------------------------------------------------------------------
# Terminals: run -it and exec -it, replayed through a pty


def test_run_it_gives_a_shell_on_a_terminal_of_the_container_s_own_devpts():
    session = replay([LABKIT, "run", "-it", "--name", "shell", "busybox", "sh"],
                     ["tty", "ls /dev/pts", "hostname", "exit 7"], timeout=60)
    assert (session.timed_out, session.exit_code) == (False, 7), session.text
    assert "\n/dev/pts/0\n" in session.text
    assert re.search(r"\n0\s+ptmx\n", session.text), "only its own terminal, no host's"
    assert f"\n{containers.inspect('shell').short_id}\n" in session.text
    assert ps("-a")["shell"].startswith("Exited (7) ")


def test_exec_it_gives_a_shell_on_a_terminal_of_the_container_s_own_devpts():
    box = containers.run("busybox", ["sleep", "1000"], detach=True)
    session = replay([LABKIT, "exec", "-it", box.name, "sh"],
                     ["tty", "ls /dev/pts", "echo pid=$$ parent=$PPID", "exit 5"], timeout=60)
    assert (session.timed_out, session.exit_code) == (False, 5), session.text
    assert "\n/dev/pts/0\n" in session.text
    assert re.search(r"\n0\s+ptmx\n", session.text)
    assert "\npid=3 parent=0\n" in session.text  # after init (1) and sleep (2)
    assert containers.inspect(box.name).status == "running"


# ---------------------------------------------------------------------------------------------
# Signals, attach, and a CLI that dies


TRAP_INT = 'trap "echo got INT; exit 3" INT; echo ready; while true; do sleep 0.1; done'


def test_ctrl_c_on_a_foreground_run_is_passed_to_the_container():
    process = subprocess.Popen([LABKIT, "run", "--name", "sigint", "busybox", "sh", "-c",
                                TRAP_INT], stdout=subprocess.PIPE)
    try:
        assert read_until(process, b"ready\n") == b"ready\n"
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert (process.returncode, output) == (3, b"got INT\n")
    assert ps("-a")["sigint"].startswith("Exited (3) ")


def test_attach_shows_the_output_from_now_on_and_passes_ctrl_c():
    ticker = containers.run("busybox", ["sh", "-c", "while true; do echo tick; sleep 0.1; done"],
                            detach=True)
    process = subprocess.Popen([LABKIT, "attach", ticker.name], stdout=subprocess.PIPE)
    try:
        assert read_until(process, b"tick\n").startswith(b"tick\n")
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130
    assert containers.inspect(ticker.name).exit_code == 130


def test_kill_9_of_a_foreground_run_leaves_the_container_to_its_monitor():
    """As with docker: the CLI was only a client. The container runs on, its output still
    logged, its state whole, until someone stops it."""
    process = subprocess.Popen([LABKIT, "run", "--name", "orphan", "busybox", "sh", "-c",
                                "echo ready; exec sleep 1000"], stdout=subprocess.PIPE)
    try:
        assert read_until(process, b"ready\n") == b"ready\n"
    finally:
        process.kill()
        process.wait()
    for state in (store.home() / "containers").glob("*/state.json"):
        json.loads(state.read_text())
    orphan = containers.inspect("orphan")
    assert orphan.status == "running"
    assert psutil.Process(orphan.state.monitor_pid).is_running()
    assert containers.logs("orphan") == "ready\n"
    stopped = containers.stop("orphan")
    assert (stopped.status, stopped.exit_code) == ("exited", 128 + signal.SIGTERM)


def test_a_monitor_forked_by_the_cli_keeps_nothing_of_it():
    """``labkit run`` forks the monitor instead of starting a fresh interpreter. The monitor
    must still be cut loose as a fresh one is: a session of its own, no terminal, /dev/null for
    its streams, and none of the CLI's descriptors, the store's lock above all."""
    assert labkit("run", "-d", "--name", "loose", "busybox", "sleep", "1000").returncode == 0
    monitor = containers.inspect("loose").state.monitor_pid
    after_name = Path(f"/proc/{monitor}/stat").read_text().rsplit(")", 1)[1].split()
    assert (int(after_name[3]), int(after_name[4])) == (monitor, 0), "session, tty"
    fds = {int(fd): os.readlink(f"/proc/{monitor}/fd/{fd}")
           for fd in os.listdir(f"/proc/{monitor}/fd")}
    assert [fds[0], fds[1], fds[2]] == ["/dev/null"] * 3
    assert str(store.home() / "lock") not in fds.values()
    with open(store.home() / "lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody holds it: this cannot block
    containers.rm("loose", force=True)


# ---------------------------------------------------------------------------------------------
# Many at once


def test_twenty_concurrent_runs_make_twenty_whole_containers():
    before = container_dirs()
    processes = [subprocess.Popen([LABKIT, "run", "--name", f"batch-{n}", "busybox", "sh", "-c",
                                   f"echo {n}"], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True) for n in range(20)]
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    assert [(p.returncode, out) for p, out in zip(processes, outputs, strict=True)] == [
        (0, f"{n}\n") for n in range(20)]

    listed = ps("-a")
    assert sorted(name for name in listed if name.startswith("batch-")) == sorted(
        f"batch-{n}" for n in range(20))
    assert all(listed[f"batch-{n}"].startswith("Exited (0) ") for n in range(20))
    new = container_dirs() - before
    assert len(new) == 20
    for container_id in new:
        directory = store.home() / "containers" / container_id
        assert {"config.json", "state.json", "upper", "work", "log"} <= set(os.listdir(directory))
        state = json.loads((directory / "state.json").read_text())
        assert (state["status"], state["exit_code"]) == ("exited", 0)
    assert os.listdir(store.home() / "tmp") == []
    uppers = {path.parent.name for path in (store.home() / "containers").glob("*/upper")}
    assert uppers == {container.id for container in containers.ps(all=True)}


def test_run_rm_it_of_a_short_command_on_a_terminal_ends_cleanly_every_time():
    """``run --rm -it`` on a terminal sends the window's size as it attaches. With a short
    command that size can arrive after the container's terminal closed and before it exits:
    the monitor must pass it by, record the exit and honour --rm. It used to die of EBADF,
    leaving a traceback here and a dead container in the store (6 runs of 6)."""
    before = set(store.reading().container_ids())
    for _ in range(6):
        session = replay([LABKIT, "run", "--rm", "-it", "busybox", "sh", "-c", "exit 7"], [])
        assert (session.exit_code, session.timed_out) == (7, False), session.text
        assert session.text.strip() == "", session.text
    deadline = time.monotonic() + 10  # --rm is the monitor's last act, after the exit code
    while set(store.reading().container_ids()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(store.reading().container_ids()) == before


SANDBOX_RUN_D = """
mount -t tmpfs lab-cwd "$1" && cd "$1" &&
"$LABKIT" run -d --name from-a-mount busybox sleep 1000 > /dev/null &&
cd / && umount "$1" && echo unmounted
"""


def test_run_d_from_a_mounted_directory_keeps_nothing_of_it_busy(tmp_path):
    """The monitor outlives ``labkit run -d``: it must not keep the caller's working directory
    (a mount the learner wants to unmount next), so it starts in ``/``."""
    (tmp_path / "mnt").mkdir()
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                           SANDBOX_RUN_D, "sandbox", str(tmp_path / "mnt")],
                          env={**os.environ, "LABKIT": LABKIT}, capture_output=True, text=True,
                          timeout=60)
    assert done.stdout == "unmounted\n", done.stderr
    assert containers.inspect("from-a-mount").status == store.RUNNING


def test_ps_q_prints_short_ids_and_ps_writes_control_characters_out():
    box = containers.run("busybox", ["sh", "-c", "sleep 99", "\x07\x1b[2J"], detach=True)
    quiet = labkit("ps", "-q")
    assert box.short_id in quiet.stdout.split()
    assert all(re.fullmatch(r"[0-9a-f]{12}", line) for line in quiet.stdout.splitlines())
    listed = labkit("ps")
    assert "\x07" not in listed.stdout and "\x1b" not in listed.stdout
    assert '"sh -c sleep 99 \\x07…"' in listed.stdout


def test_rm_f_right_after_start_removes_the_container_every_time():
    """``start`` then at once ``rm -f``: the container's short command may be ending, its
    monitor finishing with its socket closed and its state not yet written. rm -f must wait
    for it, not report it as "started again meanwhile" (3 runs of 30 did)."""
    for _ in range(20):
        box = containers.run("busybox", ["true"], name="restarted")
        assert labkit("start", "restarted").returncode == 0
        containers.rm("restarted", force=True)
        assert box.id not in store.reading().container_ids()
