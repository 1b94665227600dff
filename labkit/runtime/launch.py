"""The launcher: the process that turns a spec into a running container.

The caller starts it with subprocess (``api.py``), so that unshare, mount and fork happen in a
new single-threaded process and never in the caller (docs/safety.md rule 1); or a single-threaded
process of the lab's own, the warm helper (``warm.py``) or a container's monitor
(``forked.py``), forks it and calls ``become`` here, with the imports already done. The launcher
gets a report pipe and a spec, and then:

1. unshares every namespace the spec's steps need, in one call;
2. forks, because a new PID namespace only takes the children forked after unshare(): the child
   is the container's first process, PID 1 when the spec has a PID namespace. The child takes
   the write end of a *start pipe* along, and hands it down to the command, close-on-exec;
3. in that child, applies the steps in order, reports the namespace ids, then becomes the
   container's init: either it runs ``init.py`` itself, forking the command, which restores a
   clean signal state and execs, and supervising it; or, in a container with a root
   filesystem of its own, it execs the static init a step bind-mounted there (``init.c``),
   which does the same;
4. itself waits until no process holds the start pipe any more, which says the command has
   been exec'd (or whatever failed before has reported why), and reports it: the container
   has started, as docker means it. Then it supervises the child: forwards the caller's
   signals, kills the container when the spec's timeout passes, and exits with the
   container's status. The launcher, not init, waits on the pipe: it lives outside the
   container, where no process of the container can reach its descriptors.

Errors are reported on the pipe and as one line on stderr, with docker's exit codes (spec.py).
Python's start-up is most of a container's start-up cost, so this module and what it imports
stay small: the standard library, the syscalls and the steps a spec names.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import sys
import time
from collections.abc import Sequence

from labkit.errors import LabError
from labkit.runtime.forking import close_all_but, exit_with
from labkit.runtime.init import block_signals, reset_dispositions, restore_signals, supervise
from labkit.runtime.report import Reporter
from labkit.runtime.spec import LAB_ERROR, NOT_EXECUTABLE, NOT_FOUND, Spec
from labkit.syscalls import PR_SET_PDEATHSIG, prctl, unshare

USAGE = "usage: launch REPORT_FD SPEC_JSON (started by labkit.runtime.api, not by hand)"

# Where the static init finds the report pipe, to say "command not found" as init.py would,
# and the start pipe, to hand it down to the command.
INIT_REPORT_FD = 3
INIT_START_FD = 4


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[0].isdigit():
        print(f"labkit: {USAGE}", file=sys.stderr)
        return LAB_ERROR
    report = Reporter(int(argv[0]))
    try:
        spec = Spec.from_json(argv[1])
        unshare(spec.namespaces)
    except (LabError, OSError) as error:
        report.fail(error)
        return LAB_ERROR
    signal_mask = block_signals()
    waiting, start = os.pipe()  # close-on-exec, as Python makes every descriptor
    child = os.fork()
    if child == 0:
        os.close(waiting)
        exit_with(lambda: _container(spec, report, signal_mask, start))
    os.close(start)
    report.send(init_pid=child)
    began = time.monotonic()
    _report_start(waiting, report, spec.timeout)
    status = supervise(child, _left(spec.timeout, began))
    if status is None:
        os.kill(child, signal.SIGKILL)
        report.fail(f"the command ran longer than its timeout of {spec.timeout:g} s; "
                    f"the container was killed")
        status = supervise(child)
    return status


def _report_start(waiting: int, report: Reporter, timeout: float | None) -> None:
    """Report ``started`` once the start pipe's last write end is closed: the command's exec
    closed it, or every process that held it has exited, having reported why. A container
    whose steps hang past the timeout reports nothing here; ``supervise`` then kills it."""
    ended = select.select([waiting], [], [], timeout)[0]
    os.close(waiting)  # before the caller hears of it: it may look at our descriptors then
    if ended:
        report.send(started=True)


def _left(timeout: float | None, began: float) -> float | None:
    """What is left of ``timeout`` seconds since ``began``: one deadline for the whole start."""
    return None if timeout is None else max(0.0, timeout - (time.monotonic() - began))


def become(report_fd: int, standard: Sequence[int], spec_json: str) -> int:
    """``main``, in a process forked to be a launcher (by the warm helper, or by a container's
    monitor): take ``standard`` as stdin, stdout and stderr, and keep no other descriptor of the
    process it was forked from but the report pipe, as a fresh launcher has none."""
    for number, fd in enumerate(standard):
        os.dup2(fd, number)
    close_all_but(report_fd)
    return main([str(report_fd), spec_json])


def _container(spec: Spec, report: Reporter, signal_mask: set[signal.Signals],
               start: int) -> int:
    """The container's first process: apply the steps, then start the command under init,
    which hands the start pipe down to it."""
    try:
        _die_with_parent()
        for step in spec.steps:
            step.apply()
        report.send(namespaces=_namespace_ids())
    except (LabError, OSError) as error:
        report.fail(error)
        return LAB_ERROR
    if spec.init_program:
        return _exec_init(spec, report, start)
    command = os.fork()
    if command == 0:
        exit_with(lambda: _exec(spec, report, signal_mask))
    os.close(start)
    report.close()
    return supervise(command)


def _exec(spec: Spec, report: Reporter, signal_mask: set[signal.Signals]) -> int:
    """Replace this process with the command; return an exit code only if that fails."""
    restore_signals(signal_mask)
    _die_with_parent()
    name = spec.command[0]
    try:
        os.execvpe(name, spec.command, spec.env)
    except (FileNotFoundError, NotADirectoryError):
        where = "" if "/" in name else f" in PATH={spec.env.get('PATH', os.defpath)}"
        report.fail(f"{name}: command not found{where}")
        return NOT_FOUND
    except OSError as error:
        report.fail(f"{name}: cannot execute it: {error.strerror}")
        return NOT_EXECUTABLE


def _exec_init(spec: Spec, report: Reporter, start: int) -> int:
    """Become the static init, which runs the command; return only if it cannot start.

    The watched signals stay blocked across exec: a signal sent before the init takes them is
    kept pending for it, where a PID 1 without a handler would drop it.
    """
    reset_dispositions()
    # Both out of the way first, as either may sit where the other must go; dup2 then makes
    # inheritable copies where the init expects them.
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, INIT_START_FD + 1) for fd in (report.fd, start)]
    for fd, number in zip(moved, (INIT_REPORT_FD, INIT_START_FD), strict=True):
        os.dup2(fd, number)
    try:
        os.execve(spec.init_program, [spec.init_program, *spec.command], spec.env)
    except OSError as error:
        report.fail(f"cannot start the container's init {spec.init_program}: {error.strerror}")
    return LAB_ERROR


def _die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies.

    So killing the launcher (even with SIGKILL, which it cannot pass on) kills the container's
    init, and with it the whole PID namespace; without one, it kills the command too.
    """
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _namespace_ids() -> dict[str, int]:
    """The inode of each namespace this process is in; its links read like ``uts:[4026531838]``."""
    return {name: int(os.readlink(f"/proc/self/ns/{name}").split("[")[1].rstrip("]"))
            for name in sorted(os.listdir("/proc/self/ns"))}
