"""A full container on real namespaces: the busybox image, its own rootfs, and the hardening.

Every container is started from a fresh launcher process (``labkit.runtime.api``): the test
process never mounts or unshares. Each probe that a container's root must fail is run as that
root, inside the container; the probes that must succeed without a step are run only where
they cannot reach the host (a remount or mknod inside the container's own mount namespace).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from labkit.engine import layers, store
from labkit.engine.builds import static_init
from labkit.errors import LabError
from labkit.kernel import process
from labkit.runtime.api import Result, launcher_command, run, start
from labkit.runtime.container import steps_for
from labkit.runtime.spec import Spec
from labkit.runtime.steps.devices import LINKS, NODES, Devices
from labkit.runtime.steps.hardening import KEPT, Hardening
from labkit.runtime.steps.rootfs import RootFs
from labkit.runtime.steps.static_init import StaticInit

CONTAINER_ID = "4f3c2a1b9e8d"
ENV = {"PATH": "/bin", "GREETING": "hello"}
SECONDS = 60  # the most one container here may take before the test gives up on it


@dataclass(frozen=True)
class Box:
    """An image's layers (top first) and one container's upper and work directories."""

    layers: list[Path]
    upper: Path
    work: Path

    def steps(self, **options) -> list:
        return steps_for(self.layers, self.upper, self.work, CONTAINER_ID, init=static_init(),
                         **options)

    def run(self, *command: str, steps: list | None = None, **options) -> Result:
        return run(list(command), self.steps(**options) if steps is None else steps, env=ENV,
                   timeout=SECONDS)

    def upper_entries(self) -> dict[str, str]:
        return layers.entries(self.upper)


@pytest.fixture
def box(base_image, tmp_path: Path) -> Box:
    lab = store.reading()
    image = lab.image(base_image)
    paths = Box([lab.layer_tree(digest) for digest in reversed(image.layers)],
                tmp_path / "upper", tmp_path / "work")
    paths.upper.mkdir()
    paths.work.mkdir()
    return paths


def _host_ns(kind: str) -> int:
    return int(os.readlink(f"/proc/self/ns/{kind}").split("[")[1].rstrip("]"))


def _without(steps: list, kinds: type | tuple[type, ...]) -> list:
    return [step for step in steps if not isinstance(step, kinds)]


def _one_line(result: Result) -> None:
    assert result.error and "\n" not in result.error
    assert result.stderr == f"labkit: {result.error}\n"


# ---------------------------------------------------------------------------------------------
# The container's world: its rootfs, hostname, environment, working directory


def test_a_busybox_container_sees_its_own_rootfs_and_hostname(box):
    host_name = socket.gethostname()
    result = box.run("sh", "-c", "ls / /bin/busybox /etc/hostname; hostname")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == ["/bin/busybox", "/etc/hostname", "/:", "bin", "dev", "etc",
                                     "proc", "root", "sys", "tmp", CONTAINER_ID]
    assert socket.gethostname() == host_name


def test_the_command_gets_the_spec_s_environment_and_nothing_of_the_host_s(box, monkeypatch):
    monkeypatch.setenv("LEAKED_FROM_THE_HOST", "1")
    result = box.run("env")
    assert (result.exit_code, result.stderr) == (0, "")
    assert sorted(result.stdout.splitlines()) == ["GREETING=hello", "PATH=/bin"]


@pytest.mark.parametrize("workdir", ["/etc", "/root/projects/new"])
def test_the_command_starts_in_the_workdir_made_if_missing_as_docker_does(box, workdir):
    result = box.run("pwd", workdir=workdir)
    assert (result.exit_code, result.stdout) == (0, f"{workdir}\n")
    made = {"/etc": {}, "/root/projects/new": {"root": "dir", "root/projects": "dir",
                                               "root/projects/new": "dir"}}
    assert box.upper_entries() == made[workdir]


def test_the_upper_layer_holds_nothing_the_runtime_mounted(box, tmp_path):
    """/dev, /proc, /sys, /dev/init and a volume all exist while the command runs, and leave
    no trace in the upper; a change the command makes does (the check can see one)."""
    (tmp_path / "data").mkdir()
    volumes = [(tmp_path / "data", "/tmp", False)]
    result = box.run("sh", "-c", "ls /dev/init /dev/null /proc/self /sys/class /tmp",
                     volumes=volumes)
    assert result.exit_code == 0, result.stderr
    assert box.upper_entries() == {}
    result = box.run("touch", "/etc/changed", volumes=volumes)
    assert box.upper_entries() == {"etc": "dir", "etc/changed": "file"}


def test_the_container_gets_new_ipc_and_network_namespaces_with_lo_alone_and_up(box):
    result = box.run("sh", "-c", "ls /sys/class/net; cat /sys/class/net/lo/flags; "
                     "ping -c 1 -W 5 127.0.0.1 >/dev/null && echo ping")
    assert result.exit_code == 0, result.stderr
    interfaces, flags, ping = result.stdout.split()
    assert interfaces == "lo"
    assert int(flags, 16) & 0x1, "IFF_UP"
    assert ping == "ping"
    assert {kind for kind in ("uts", "pid", "ipc", "net", "mnt")
            if result.namespaces[kind] != _host_ns(kind)} == {"uts", "pid", "ipc", "net", "mnt"}


# ---------------------------------------------------------------------------------------------
# Volumes


def test_a_file_written_in_a_volume_appears_on_the_host(box, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    result = box.run("sh", "-c", "echo from the container > /srv/data/note",
                     volumes=[(data, "/srv/data", False)])
    assert result.exit_code == 0, result.stderr
    assert (data / "note").read_text() == "from the container\n"
    # /srv was not in the image: its mount point is made in the upper (rootfs.py says why)
    assert box.upper_entries() == {"srv": "dir", "srv/data": "dir"}


def test_a_read_only_volume_refuses_writes(box, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "kept").write_text("as it was\n")
    (tmp_path / "config").write_text("setting\n")
    volumes = [(data, "/data", True), (tmp_path / "config", "/etc/app.conf", True)]
    result = box.run("sh", "-c", "cat /etc/app.conf; echo changed > /data/kept; "
                     "touch /data/new; echo changed > /etc/app.conf", volumes=volumes)
    assert result.exit_code != 0
    assert result.stdout == "setting\n"
    assert result.stderr.count("Read-only file system") == 3
    assert sorted(os.listdir(data)) == ["kept"]
    assert (data / "kept").read_text() == "as it was\n"
    assert (tmp_path / "config").read_text() == "setting\n"


@pytest.mark.parametrize(("container_path", "complaint"), [
    ("data", "must be absolute and not /"),
    ("/", "must be absolute and not /"),
    ("/proc/x", "the runtime mounts its own /dev, /proc, /sys"),
    ("/dev", "the runtime mounts its own /dev, /proc, /sys"),
])
def test_a_bad_container_path_is_one_clear_error(box, tmp_path, container_path, complaint):
    with pytest.raises(LabError, match=complaint) as error:
        box.steps(volumes=[(tmp_path, container_path, False)])
    assert error.value.exit_code == 125
    assert "\n" not in str(error.value)


def test_two_volumes_on_one_path_are_refused(box, tmp_path):
    with pytest.raises(LabError, match="two volumes on /data"):
        box.steps(volumes=[(tmp_path, "/data", False), (tmp_path, "/data/", True)])


def test_a_missing_volume_source_is_one_clear_error_and_nothing_is_made(box, tmp_path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(LabError) as error:
        box.steps(volumes=[(missing, "/data", False)])
    assert str(error.value) == (f"volume source {missing} does not exist: create it, or "
                                f"correct the path before ':' in -v {missing}:/data")
    assert error.value.exit_code == 125
    assert sorted(os.listdir(tmp_path)) == ["upper", "work"]


def test_a_volume_source_gone_before_the_launch_is_refused_before_any_mount(box, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    steps = box.steps(volumes=[(data, "/data", False)])
    data.rmdir()
    result = box.run("true", steps=steps)
    assert result.exit_code == 125
    assert result.error.startswith(f"volume source {data} does not exist")
    _one_line(result)
    assert sorted(os.listdir(tmp_path)) == ["upper", "work"]


# ---------------------------------------------------------------------------------------------
# As the container's root: what it must not be able to do


def _run_with_a_leaked_fd(steps: list, command: list[str], leaked: int) -> str:
    """The container's stdout, run by a launcher that inherited ``leaked`` from its caller."""
    read_end, write_end = os.pipe()
    spec = Spec(command, steps, ENV, SECONDS)
    try:
        done = subprocess.run(launcher_command(write_end, spec.to_json()),
                              pass_fds=(write_end, leaked), capture_output=True, text=True,
                              timeout=SECONDS)
    finally:
        os.close(write_end)
    with os.fdopen(read_end) as report:
        assert [json.loads(line) for line in report if "error" in line] == []
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_descriptor_the_caller_leaked_is_not_in_the_container(box, tmp_path):
    leaked = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    probe = ["sh", "-c", f"ls /proc/1/fd; test -e /proc/self/fd/{leaked} && echo leaked; true"]
    try:
        hardened = _run_with_a_leaked_fd(box.steps(), probe, leaked)
        unhardened = _run_with_a_leaked_fd(_without(box.steps(), Hardening), probe, leaked)
    finally:
        os.close(leaked)
    assert hardened.split() == ["0", "1", "2"]
    assert "leaked" in unhardened.split(), "without the step, the host's directory gets in"


def test_dev_holds_only_the_minimal_nodes_and_no_block_device(box):
    result = box.run("sh", "-c", "ls -a /dev; echo --; find /dev -type b; echo --; "
                     "stat -c '%n %F %t:%T' /dev/null /dev/tty")
    assert result.exit_code == 0, result.stderr
    listing, blocks, nodes = result.stdout.split("--\n")
    assert sorted(listing.split()) == sorted(
        [".", "..", *NODES, *LINKS, "pts", "shm", "init"])
    assert blocks == ""
    assert nodes.splitlines() == ["/dev/null character special file 1:3",
                                  "/dev/tty character special file 5:0"]


# Each probe prints its name and exit status; the container's root must fail every one.
FORBIDDEN = {
    "write core_pattern": "echo core > /proc/sys/kernel/core_pattern",
    "remount /proc/sys read-write": "mount -o remount,rw /proc/sys",
    "mount a fresh proc": "mount -t proc proc /tmp",
    "unmask timer_list": "umount /proc/timer_list",
    "mknod a block device": "mknod /dev/sda-probe b 8 0",
    "mknod a char device": "mknod /dev/mem-probe c 1 1",
}
# What undoes a step without harming the host: all inside the container's own mount namespace.
HARMLESS = ("remount /proc/sys read-write", "mount a fresh proc", "unmask timer_list",
            "mknod a block device")


def _probe(box: Box, steps: list, names) -> dict[str, int]:
    script = "".join(f"{FORBIDDEN[name]} 2>/dev/null; echo \"$?\"; " for name in names)
    result = box.run("sh", "-c", script, steps=steps)
    assert result.exit_code == 0, result.stderr
    return dict(zip(names, map(int, result.stdout.split()), strict=True))


def test_the_container_s_root_cannot_undo_the_masks_or_make_devices(box):
    codes = _probe(box, box.steps(), FORBIDDEN)
    assert [name for name, code in codes.items() if code == 0] == []


def test_without_the_hardening_step_the_container_s_root_undoes_them(box):
    codes = _probe(box, _without(box.steps(), Hardening), HARMLESS)
    assert [name for name, code in codes.items() if code != 0] == []


def test_the_command_keeps_docker_s_capabilities_but_mknod_none_inheritable_no_new_privs(box):
    result = box.run("sh", "-c", "grep -E '^(CapBnd|CapPrm|CapEff|CapInh|CapAmb|NoNewPrivs)' "
                     "/proc/self/status; mkfifo /tmp/fifo && echo fifo")
    assert result.exit_code == 0, result.stderr
    status = dict(line.split(":\t") for line in result.stdout.splitlines()[:-1])
    kept = f"{sum(1 << number for number in KEPT.values()):016x}"
    assert status == {"CapInh": "0" * 16, "CapPrm": kept, "CapEff": kept, "CapBnd": kept,
                      "CapAmb": "0" * 16, "NoNewPrivs": "1"}
    assert "MKNOD" not in KEPT and "SYS_ADMIN" not in KEPT
    assert result.stdout.splitlines()[-1] == "fifo"


def test_masked_proc_paths_read_empty_and_sys_is_read_only(box):
    result = box.run("sh", "-c", "wc -c < /proc/timer_list; ls -A /sys/firmware; "
                     "touch /sys/probe 2>/dev/null || echo sys-read-only")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == ["0", "sys-read-only"]


def test_pid_1_is_the_read_only_static_init_not_the_host_s_python(box):
    result = box.run("sh", "-c", "readlink /proc/1/exe; md5sum < /proc/1/exe; "
                     "grep ' /dev/init ' /proc/self/mountinfo | cut -d' ' -f6; "
                     "echo x >> /proc/1/exe 2>/dev/null || echo unwritable")
    assert result.exit_code == 0, result.stderr
    exe, digest, options, write = result.stdout.splitlines()
    assert exe == "/dev/init"
    assert digest.split()[0] == hashlib.md5(static_init().read_bytes()).hexdigest()
    assert options.split(",")[0] == "ro"
    assert write == "unwritable"


# Escapes a chroot the classic way: chroot into a subdirectory without entering it, so that the
# working directory is left outside the new root, climb '..' from there (nothing stops a walk
# that never meets the root), and chroot to wherever that leads. In a chroot-only "container"
# it reaches the host's root; after pivot_root the top it can reach is the container's own root.
CHROOT_ESCAPE = r"""
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char *argv[]) {
    if (argc != 2) return 2;
    mkdir("/tmp/jail", 0755);
    if (chroot("/tmp/jail") != 0) { perror("chroot"); return 1; }
    for (int i = 0; i < 100; i++)
        if (chdir("..") != 0) { perror("chdir"); return 1; }
    if (chroot(".") != 0) { perror("chroot ."); return 1; }
    printf("%s\n", access(argv[1], F_OK) == 0 ? "reachable" : "unreachable");
    return 0;
}
"""


def test_the_host_s_files_are_unreachable_even_through_a_chroot_escape(box, tmp_path):
    marker = tmp_path / "host-marker"
    marker.write_text("on the host only\n")
    tools = tmp_path / "tools"
    (tools / "tmp").mkdir(parents=True)
    (tmp_path / "escape.c").write_text(CHROOT_ESCAPE)
    subprocess.run(["gcc", "-static", "-O2", "-o", tools / "escape", tmp_path / "escape.c"],
                   check=True, timeout=SECONDS)
    # The same program, chroot'ed into the tools directory alone: it climbs out to the host.
    jailed = subprocess.run(["chroot", tools, "/escape", marker], capture_output=True,
                            text=True, timeout=SECONDS)
    assert (jailed.returncode, jailed.stdout) == (0, "reachable\n"), jailed.stderr
    result = box.run("sh", "-c", f"test -e {marker} || echo hidden; cd /../../..; pwd; "
                     f"ls /.. | tr '\\n' ' '; echo; /tools/escape {marker}",
                     volumes=[(tools, "/tools", True)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["hidden", "/", "bin dev etc proc root sys tmp tools ",
                                          "unreachable"]


# ---------------------------------------------------------------------------------------------
# The static init: PID 1's jobs, and the errors it reports


def test_the_static_init_reaps_orphans(box):
    # Wait until the 50 orphans have run and gone, and show the very table that said so: a
    # table taken after the wait could catch one more orphan between its exit and its reaping.
    script = ("for i in $(seq 50); do (sleep 0 &); done; "
              "for i in $(seq 500); do seen=$(ps -o pid,stat,comm); "
              "echo \"$seen\" | grep -qE ' Z|sleep' || break; sleep 0.01; done; "
              "echo \"$seen\"")
    result = box.run("sh", "-c", script)
    assert result.exit_code == 0, result.stderr
    processes = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [stat for _, stat, _ in processes if "Z" in stat] == []
    assert processes[0][0] == "1" and processes[0][2] == "init"


def test_a_signal_reaches_the_command_through_the_static_init(box):
    with start(["sleep", "100"], box.steps(), env=ENV) as container:
        for _ in range(500):
            if any(Path(f"/proc/{pid}/comm").read_text() == "sleep\n"
                   for pid in _descendants(container.init_pid)):
                break
            time.sleep(0.01)
        container.terminate()
        assert container.wait(timeout=SECONDS) == 128 + signal.SIGTERM


def _descendants(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children] + [
        grandchild for child in children for grandchild in _descendants(int(child))]


def test_kill_9_of_the_launcher_takes_the_whole_container_down(box):
    with start(["sh", "-c", "sleep 100 & sleep 100"], box.steps(), env=ENV) as container:
        init = container.init_pid
        for _ in range(500):
            if len(_descendants(init)) == 3:
                break
            time.sleep(0.01)
        pids = [init, *_descendants(init)]
        container.kill()
        assert container.wait(timeout=SECONDS) == 137
    for _ in range(500):
        if not [pid for pid in pids if _alive(pid)]:
            break
        time.sleep(0.01)
    assert [pid for pid in pids if _alive(pid)] == []


def _alive(pid: int) -> bool:
    try:
        return process.stat(pid).running
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.parametrize(("command", "code", "error"), [
    (["no-such-command"], 127, "no-such-command: command not found in PATH=/bin"),
    (['say "hi"\\now'], 127, 'say "hi"\\now: command not found in PATH=/bin'),
    (["/etc/hostname"], 126, "/etc/hostname: cannot execute it: Permission denied"),
    (["/etc"], 126, "/etc: cannot execute it: Permission denied"),
])
def test_the_static_init_reports_a_command_it_cannot_start_in_one_line(box, command, code,
                                                                       error):
    result = box.run(*command)
    assert (result.exit_code, result.error) == (code, error)
    _one_line(result)
    with start(command, box.steps(), env=ENV) as failed:  # known before anyone waits
        assert failed.error == error


# ---------------------------------------------------------------------------------------------
# The step list, as data, and steps in the wrong order


def test_the_steps_survive_the_trip_to_the_launcher(box, tmp_path):
    spec = Spec(["true"], box.steps(volumes=[(tmp_path, "/data/", True)], workdir="/root"))
    again = Spec.from_json(spec.to_json())
    assert again == spec
    assert again.init_program == "/dev/init"
    [rootfs] = [step for step in again.steps if isinstance(step, RootFs)]
    assert rootfs.target == str(tmp_path / "merged")
    assert rootfs.volumes == [[str(tmp_path), "/data", True]]


@pytest.mark.parametrize(("missing", "complaint"), [
    ((Devices,), "is not the runtime's /dev tmpfs: the Devices step comes first"),
    ((Devices, StaticInit), "/dev/null is missing: the Devices step comes before this one"),
], ids=["init", "proc"])
def test_a_step_without_the_dev_it_needs_refuses_to_write_the_upper(box, missing, complaint):
    result = box.run("true", steps=_without(box.steps(), missing))
    assert result.exit_code == 125
    assert complaint in result.error
    _one_line(result)
    assert box.upper_entries() == {}


def test_a_missing_init_binary_is_refused_in_the_caller(box, tmp_path):
    [init] = [step for step in box.steps() if isinstance(step, StaticInit)]
    with pytest.raises(LabError, match=r"the container's init .* is missing"):
        replace(init, binary=str(tmp_path / "no-init"))


def test_an_init_that_cannot_start_is_one_line_with_125(box, tmp_path):
    (tmp_path / "not-a-program").write_text("plain text\n")
    steps = [replace(step, binary=str(tmp_path / "not-a-program"))
             if isinstance(step, StaticInit) else step for step in box.steps()]
    result = box.run("true", steps=steps)
    assert result.exit_code == 125
    assert result.error == "cannot start the container's init /dev/init: Permission denied"
    _one_line(result)


def test_a_relative_workdir_is_refused(box):
    with pytest.raises(LabError, match="must be an absolute path inside the container"):
        box.steps(workdir="root")
