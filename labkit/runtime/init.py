"""The container's first process: apply the steps, then be PID 1 for the command.

The launcher (``launch.py``) forks this process right after ``unshare``, so it is the first
process of every new namespace, PID 1 when the spec has a PID namespace. It does, in order:

1. it asks the kernel to kill it when the launcher dies, so that even a ``kill -9`` of the
   launcher takes the container down (PR_SET_PDEATHSIG);
2. it applies the spec's steps, in order, and reports the namespace ids;
3. it becomes the container's init. A container of the lessons runs the loop below, here, in
   the host's Python: it forks the command, which restores a clean signal state and execs, and
   supervises it. A container with a root filesystem of its own execs the static init that a
   step bind-mounted there (``init.c``), which runs the same loop in C.

Why a loop at all? The kernel gives PID 1 two jobs that ordinary programs never do:

- **Signals.** PID 1 only receives the signals it has a handler for; the rest are dropped,
  so that nothing kills init by accident. A command such as ``sleep`` has no SIGTERM handler:
  run as PID 1 it would ignore ``docker stop``'s SIGTERM until the SIGKILL ten seconds later
  (exit 137). So the command runs as PID 2, where SIGTERM works as usual, and init passes on
  every signal meant for the container; the command stops at once, with exit status 143.
- **Orphans.** A process whose parent exits is re-parented to PID 1, and when it exits it stays
  a zombie until its new parent wait()s for it. Init reaps them all, or the process table
  fills with zombies.

Init exits with the command's status, 128+N when a signal N killed it, as a shell reports it.
When PID 1 exits the kernel kills whatever is left in the namespace. The launcher uses the same
loop (``supervise``) to watch the container from outside, so the caller's signals reach the
command through one chain: caller -> launcher -> init -> command.

Signals are blocked and taken one at a time with sigwaitinfo() instead of handled
asynchronously: a blocked signal stays pending (a PID 1 does not drop it), none is lost between
two system calls, and the loop reads top to bottom.

Two inits, one job. Python's serves the lesson containers, which share the host's files. A
container with a root filesystem of its own must run no host binary: the kernel shows PID 1's
program as ``/proc/1/exe``, and through that link the container's root could open the host's
python, and in CVE-2019-5736 overwrite it. There PID 1 is ``init.c``, linked statically so it
needs nothing from the image, and bind-mounted read-only into the container
(``steps/static_init.py``).
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from pathlib import Path

from labkit.errors import LAB_ERROR, NOT_EXECUTABLE, NOT_FOUND, LabError
from labkit.kernel.process import exit_code
from labkit.kernel.syscalls import PR_SET_PDEATHSIG, prctl
from labkit.runtime.forking import exit_with
from labkit.runtime.report import Reporter
from labkit.runtime.spec import Spec

# The static init's source, beside this file: the engine compiles it (``-static``) once.
STATIC_INIT_SOURCE = Path(__file__).with_name("init.c")

# Where the static init finds the report pipe, to say "command not found" as this init would,
# and the start pipe, to hand it down to the command.
INIT_REPORT_FD = 3
INIT_START_FD = 4

FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM,
             signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)
_WATCHED = {*FORWARDED, signal.SIGCHLD}

# What Python changes for itself and exec() would pass on: it handles SIGINT with
# KeyboardInterrupt and ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored in
# the exec'd program.
_PYTHON_DISPOSITIONS = (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ)


def main(spec: Spec, report: Reporter, signal_mask: set[signal.Signals], start: int) -> int:
    """The container's first process, forked by the launcher: apply the steps, then start the
    command under an init, which hands the start pipe down to it."""
    try:
        die_with_parent()
        for step in spec.steps:
            step.apply()
        report.send(namespaces=_namespace_ids())
    except (LabError, OSError) as error:
        report.fail(error)
        return LAB_ERROR
    if spec.init_program:
        return _exec_static_init(spec, report, start)
    command = os.fork()
    if command == 0:
        exit_with(lambda: _exec(spec, report, signal_mask))
    os.close(start)
    report.close()
    return supervise(command)


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies.

    So killing the launcher (even with SIGKILL, which it cannot pass on) kills the container's
    init, and with it the whole PID namespace; without one, it kills the command too.
    """
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def exec_command(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Replace this process with ``command``; if that fails, return docker's exit code for why
    (127 not found, 126 not executable) and one line that says it. ``init.c`` says the same."""
    name = command[0]
    try:
        os.execvpe(name, command, env)
    except (FileNotFoundError, NotADirectoryError):
        where = "" if "/" in name else f" in PATH={env.get('PATH', os.defpath)}"
        return NOT_FOUND, f"{name}: command not found{where}"
    except OSError as error:
        return NOT_EXECUTABLE, f"{name}: cannot execute it: {error.strerror}"


def _exec(spec: Spec, report: Reporter, signal_mask: set[signal.Signals]) -> int:
    """The command's process: a clean signal state, then the command; a code if it fails."""
    restore_signals(signal_mask)
    die_with_parent()
    code, why = exec_command(spec.command, spec.env)
    report.fail(why)
    return code


def _exec_static_init(spec: Spec, report: Reporter, start: int) -> int:
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


def _namespace_ids() -> dict[str, int]:
    """The inode of each namespace this process is in; its links read like ``uts:[4026531838]``."""
    return {name: int(os.readlink(f"/proc/self/ns/{name}").split("[")[1].rstrip("]"))
            for name in sorted(os.listdir("/proc/self/ns"))}


# ---------------------------------------------------------------------------------------------
# The loop of PID 1, which the launcher also runs from outside


def block_signals() -> set[signal.Signals]:
    """Hold the watched signals for ``supervise``; return the mask to restore before exec.

    Block them before forking what will be supervised: a child that exits, or a signal that
    arrives, before the loop starts then waits, pending, instead of being lost.
    """
    return signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)


def restore_signals(mask: set[signal.Signals]) -> None:
    """Give the command, about to exec, the signal state of a program started from a shell."""
    reset_dispositions()
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def reset_dispositions() -> None:
    """Undo Python's own signal handling, which exec() would otherwise pass on."""
    for number in _PYTHON_DISPOSITIONS:
        signal.signal(number, signal.SIG_DFL)


def supervise(child: int, timeout: float | None = None) -> int | None:
    """Forward signals to ``child`` and reap every exited child until ``child`` has exited.

    Return ``child``'s exit code, or None if ``timeout`` seconds passed first (``child`` is then
    still running). The watched signals must be blocked (``block_signals``).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if deadline is None:
            info = signal.sigwaitinfo(_WATCHED)
        else:
            info = signal.sigtimedwait(_WATCHED, max(0.0, deadline - time.monotonic()))
            if info is None:
                return None
        if info.si_signo != signal.SIGCHLD:
            os.kill(child, info.si_signo)
            continue
        status = _reap(child)
        if status is not None:
            return status


def _reap(child: int) -> int | None:
    """Wait for every child that has exited, orphans included; ``child``'s code if it did.

    One SIGCHLD can stand for many exits (pending signals do not queue), so reap until none is
    left.
    """
    status = None
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == child:
            status = exit_code(wait_status)
