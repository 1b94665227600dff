"""``exec``: start one more process inside a running container, as ``docker exec`` does.

A running container is nothing but its namespaces, held by its processes. To run a command
"in" it, a fresh helper process (never the caller: ``setns`` changes the calling process, and
the caller may be a multithreaded Jupyter kernel) joins them one by one and starts the command:

1. it opens ``/proc/<init>/ns/*`` of the container's PID 1 first, all of them, because joining
   the mount namespace moves its root into the container and ``/proc/<init>`` out of reach;
   and it checks that the pid is still that init (a pid is reused once its process is gone:
   the start time tells them apart), through an open ``/proc/<init>`` it then reads from only;
2. it becomes non-dumpable, so the container's processes cannot open ``/proc/<pid>/exe`` of
   the host's python while it is in their PID namespace (CVE-2019-5736 did that to runc);
   and it joins the container's cgroups, so that the command counts against its limits;
3. it calls ``setns`` for each namespace that differs from its own, the mount namespace last;
4. it forks, because a new PID namespace only takes the children forked after joining it: the
   child lands in the container's PID namespace, the helper stays outside and waits;
5. the child takes a terminal of the container's devpts for ``-t`` (``steps/console.py``),
   gets the very hardening ``run`` applies (``steps/hardening.py``: descriptors, capabilities,
   no_new_privs; and ``steps/seccomp.py``, the container's seccomp filter), enters the
   container's working directory, and execs the command.

The helper forwards the caller's signals to the command and exits with its code, with docker's
codes for the lab's own failures (125), a command that is not executable (126) or not found
(127).
"""

from __future__ import annotations

import json
import os
import signal
import sys

from labkit.errors import LAB_ERROR, LabError
from labkit.kernel import cgroupfs
from labkit.kernel.process import stat
from labkit.kernel.syscalls import PR_SET_DUMPABLE, prctl, setns
from labkit.runtime.boot import python_argv
from labkit.runtime.cgroup import PARENT
from labkit.runtime.cgroup.files import write
from labkit.runtime.forking import exit_with
from labkit.runtime.init import (
    block_signals,
    die_with_parent,
    exec_command,
    restore_signals,
    supervise,
)
from labkit.runtime.steps.console import take_terminal
from labkit.runtime.steps.hardening import Hardening
from labkit.runtime.steps.seccomp import Seccomp

# Every namespace kind a container may have of its own; the mount namespace last, as it moves
# the caller's root. (A user namespace would come first; the lab's containers have none.)
KINDS = ("cgroup", "ipc", "net", "pid", "time", "uts", "mnt")


def argv(init_pid: int, init_start: int | None, command: list[str], env: dict[str, str],
         workdir: str, seccomp: str | None, console_fd: int | None = None) -> list[str]:
    """The helper's command line. ``seccomp``: the container's compiled seccomp filter, which
    the command gets too (None: unconfined). ``console_fd``: a unix socket the helper inherits,
    on which it sends the master of the command's terminal (``-t``)."""
    request = {"init_pid": init_pid, "init_start": init_start, "command": command, "env": env,
               "workdir": workdir, "seccomp": seccomp, "console_fd": console_fd}
    return python_argv("labkit.runtime.exec:main", json.dumps(request))


def main(args: list[str]) -> int:
    """``labkit.runtime.exec:main REQUEST_JSON``: the helper, started through ``argv``."""
    request = json.loads(args[0])
    try:
        namespaces = open_namespaces(request["init_pid"], request["init_start"])
        prctl(PR_SET_DUMPABLE, 0)
        join_cgroups(request["init_pid"])
        for fd in namespaces:
            setns(fd)
            os.close(fd)
    except (LabError, OSError) as error:
        print(f"labkit: {error}", file=sys.stderr)
        return LAB_ERROR
    signal_mask = block_signals()
    child = os.fork()
    if child == 0:
        exit_with(lambda: _command(request, signal_mask))
    if request["console_fd"] is not None:
        os.close(request["console_fd"])  # the child's now: if it fails, the caller sees EOF
    return supervise(child)


def open_namespaces(init_pid: int, init_start: int | None) -> list[int]:
    """Open the namespaces of the container's init that differ from this process's, in
    ``KINDS`` order; a LabError if that init is gone."""
    gone = LabError(f"the container's init (pid {init_pid}) is gone: the container has "
                    f"stopped")
    try:
        proc_dir = os.open(f"/proc/{init_pid}", os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise gone from None
    try:
        if stat(init_pid, proc_dir).start_time != init_start:
            raise gone
        return [os.open(f"ns/{kind}", os.O_RDONLY, dir_fd=proc_dir) for kind in KINDS
                if os.stat(f"ns/{kind}", dir_fd=proc_dir).st_ino
                != os.stat(f"/proc/self/ns/{kind}").st_ino]
    except (FileNotFoundError, ProcessLookupError):
        raise gone from None
    finally:
        os.close(proc_dir)


def join_cgroups(init_pid: int) -> None:
    """Join the container's cgroups (lesson 08), before the mount namespace hides the host's
    /sys/fs/cgroup: the command then counts against the container's limits, as its own
    processes do. A container without a group of its own is in the host's, and left so."""
    for group in cgroupfs.groups_of(init_pid):
        if PARENT in group.parts:
            write(group / "cgroup.procs", os.getpid())


def _command(request: dict, signal_mask: set[signal.Signals]) -> int:
    """In the child, inside every namespace: harden, then become the command; if it cannot,
    say why in one line and return the code for it."""
    try:
        die_with_parent()  # the helper killed: the command goes too
        if request["console_fd"] is not None:
            take_terminal(request["console_fd"])
        Hardening().apply()
        if request["seccomp"]:
            Seccomp(request["seccomp"]).apply()
        _enter(request["workdir"])
    except (LabError, OSError) as error:
        return _fail(LAB_ERROR, str(error))
    restore_signals(signal_mask)
    return _fail(*exec_command(request["command"], request["env"]))


def _enter(workdir: str) -> None:
    try:
        os.chdir(workdir)
    except OSError as error:
        raise LabError(f"cannot enter the working directory {workdir}: {error.strerror}") from None


def _fail(code: int, why: str) -> int:
    print(f"labkit: {why}", file=sys.stderr, flush=True)
    return code
