"""A tiny PID 1: forward signals to the command, reap every zombie, exit as the command did.

The kernel gives the first process of a PID namespace two jobs that ordinary programs never do:

- **Signals.** PID 1 only receives the signals it has a handler for; the rest are dropped,
  so that nothing kills init by accident. A command such as ``sleep`` has no SIGTERM handler:
  run as PID 1 it would ignore ``docker stop``'s SIGTERM until the SIGKILL ten seconds later
  (exit 137). So the command runs as PID 2, where SIGTERM works as usual, and init passes on
  every signal meant for the container; the command stops at once, with exit status 143.
- **Orphans.** A process whose parent exits is re-parented to PID 1, and when it exits it stays
  a zombie until its new parent wait()s for it. Init reaps them all, or the process table
  fills with zombies.

Init exits with the command's status, 128+N when a signal N killed it, as a shell reports it.
When PID 1 exits the kernel kills whatever is left in the namespace.

The launcher uses the same loop to supervise the container's first process from outside, so the
caller's signals reach the container through one chain: caller -> launcher -> init -> command.

Signals are blocked and taken one at a time with sigwaitinfo() instead of handled
asynchronously: a blocked signal stays pending (a PID 1 does not drop it), none is lost between
two system calls, and the loop reads top to bottom.

Two inits, one job. This one is the host's Python, and it serves the lesson containers, which
share the host's files. A container with a root filesystem of its own (``container.py``) must
run no host binary: the kernel shows PID 1's program as ``/proc/1/exe``, and through that link
the container's root could open the host's python, and in CVE-2019-5736 overwrite it. There
PID 1 is ``init.c``, the same loop in C, linked statically so it needs nothing from the image,
and bind-mounted read-only into the container (``steps/static_init.py``).
"""

from __future__ import annotations

import os
import signal
import time

FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM,
             signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)
_WATCHED = {*FORWARDED, signal.SIGCHLD}

# What Python changes for itself and exec() would pass on: it handles SIGINT with
# KeyboardInterrupt and ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored in
# the exec'd program.
_PYTHON_DISPOSITIONS = (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ)


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


def exit_code(wait_status: int) -> int:
    """A wait() status as a shell reports it: the exit code, or 128+N for a signal N."""
    code = os.waitstatus_to_exitcode(wait_status)
    return code if code >= 0 else 128 - code


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
