"""Run a command so that nothing it starts outlives it: the lab's timeout that really stops.

Killing a process group is not enough. An interactive shell puts each job in a group of its own,
``setsid`` leaves the session, and a daemon's grandchild is re-parented to PID 1 when its parent
dies. So the command runs under a small supervisor, a separate single-threaded process that:

1. becomes a *child subreaper* (``PR_SET_CHILD_SUBREAPER``): every orphan among its descendants is
   re-parented to it instead of to PID 1, so none can slip away;
2. starts the command and waits for it;
3. when the command ends, or when the supervisor is told to stop (SIGTERM on a timeout, SIGHUP
   when its terminal goes away, or its own caller dying), kills every descendant still alive and
   reaps them all, then exits with the command's exit status.

It adds no namespace of its own, so the command sees exactly what it would see without it.
The caller's side is ``run()``: ``python -m labkit.lessons.supervisor`` is the supervisor itself.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
from dataclasses import dataclass

from labkit.kernel import syscalls
from labkit.kernel.process import exit_code, stat

DEFAULT_TIMEOUT = 10.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass(frozen=True)
class Run:
    """What a supervised command printed and how it ended."""

    argv: list[str]
    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool = False

    def __str__(self) -> str:
        return self.stdout + self.stderr


def command(argv: list[str], *, terminal: bool = False) -> list[str]:
    """The argv that runs ``argv`` under the supervisor; ``terminal`` makes its stdin the
    controlling terminal (it must be a tty, and the supervisor a session leader)."""
    flags = ["--terminal"] if terminal else []
    return [sys.executable, "-m", "labkit.lessons.supervisor", *flags, "--", *argv]


def run(argv: list[str], *, timeout: float = DEFAULT_TIMEOUT) -> Run:
    """Run ``argv`` to its end or for ``timeout`` seconds; either way nothing it started is left.

    The supervisor gets a session of its own, so a Ctrl-C meant for the caller does not reach
    the command; an interrupted caller stops the supervisor, which stops everything else.
    """
    process = subprocess.Popen(command(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, errors="replace",
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        process.terminate()
        stdout, stderr = process.communicate()  # all it printed, up to its end
        timed_out = True
    except BaseException:
        stop(process)
        raise
    return Run(argv, stdout, stderr, process.returncode, timed_out)


def stop(process: subprocess.Popen) -> None:
    """Tell a supervisor to kill everything it runs, and return once it has."""
    process.terminate()
    process.wait()


# The supervisor itself, in its own process from here on.


def supervise(argv: list[str], *, terminal: bool) -> int:
    """Run ``argv`` as described above; return its shell-style exit status.

    The supervisor installs no signal handler: it blocks SIGCHLD and the stop signals and
    takes them one at a time with ``sigwaitinfo``, so a second stop arriving in the middle of
    the cleanup cannot interrupt it. The command starts with nothing blocked.
    """
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGTERM)
    if terminal:
        import fcntl
        import termios
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    wake_on = {signal.SIGCHLD, *STOP_SIGNALS}
    signal.pthread_sigmask(signal.SIG_BLOCK, wake_on)  # before the command exists: none missed

    try:
        child = os.posix_spawnp(argv[0], argv, os.environ, setsigmask=(),
                                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    except OSError as error:
        print(f"labkit: cannot run {argv[0]}: {error.strerror}", file=sys.stderr)
        return 127 if error.errno == errno.ENOENT else 126

    statuses: dict[int, int] = {}
    while child not in statuses and signal.sigwaitinfo(wake_on).si_signo == signal.SIGCHLD:
        _collect(statuses, block=False)
    _kill_descendants(statuses)
    return exit_code(statuses[child])


def _kill_descendants(statuses: dict[int, int]) -> None:
    """SIGKILL everything below the supervisor and reap it. A killed process's orphans are
    re-parented to the supervisor, so look again after each reaping, until no child is left."""
    while True:
        for pid in _descendants(os.getpid()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not _collect(statuses, block=True):
            return


def _collect(statuses: dict[int, int], *, block: bool) -> bool:
    """Record the wait status of every child that has ended, after waiting for one if
    ``block``; False once the supervisor has no child left at all."""
    flags = 0 if block else os.WNOHANG
    try:
        while (ended := os.waitpid(-1, flags))[0]:
            statuses[ended[0]] = ended[1]
            flags = os.WNOHANG
    except ChildProcessError:
        return False
    return True


def _descendants(root: int) -> list[int]:
    """Every process below ``root``, found through the parent pid in /proc/PID/stat."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents():
        children.setdefault(parent, []).append(pid)
    found, unvisited = [], [root]
    while unvisited:
        below = children.get(unvisited.pop(), [])
        found += below
        unvisited += below
    return found


def _parents() -> list[tuple[int, int]]:
    """(pid, parent pid) for every process in /proc; one that ends meanwhile is skipped."""
    pairs = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                pairs.append((int(entry.name), stat(entry.name).parent))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return pairs



def main(args: list[str]) -> int:
    """``python -m labkit.lessons.supervisor [--terminal] -- COMMAND [ARG...]``"""
    terminal = args[:1] == ["--terminal"]
    argv = args[1:] if terminal else args
    if argv[:1] != ["--"] or len(argv) < 2:
        print("usage: python -m labkit.lessons.supervisor [--terminal] -- COMMAND [ARG...]",
              file=sys.stderr)
        return 2
    return supervise(argv[1:], terminal=terminal)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
