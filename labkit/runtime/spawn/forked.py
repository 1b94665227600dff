"""A launcher forked from the calling process: the cheapest start, for a caller that may fork.

A cold launcher (``api.spawn_launcher``) is a fresh interpreter that imports the launcher and
its steps before it does anything: well over a hundred milliseconds on a slow machine
(benchmarks/README.md). A process that has those imports done already, and may fork, can
instead fork the launcher and call ``launch.become`` in the child: a few milliseconds. Only a
single-threaded process of the lab's own may do so (docs/safety.md rule 1), and a container's
monitor is one: it passes ``spawn`` here to
``api.ContainerProcess``. A notebook's kernel is not; it starts launchers cold, or through a warm
helper that forks them on its behalf (``warm.py``).
"""

from __future__ import annotations

import os
import select
import subprocess

from labkit.runtime import launch
from labkit.runtime.forking import exit_with
from labkit.runtime.spawn.handle import Handle, child_streams
from labkit.runtime.spec import Spec


def spawn(spec: Spec, report_fd: int, *, stdin, stdout, stderr) -> ForkedProcess:
    """Fork a launcher for ``spec``: the ``spawn`` that ``api.ContainerProcess`` takes. The
    child has the very ``Spec`` object: no JSON, as no exec stands between the two."""
    return ForkedProcess(spec, report_fd, (stdin, stdout, stderr))


class ForkedProcess(Handle):
    """A launcher forked from this process, handled as the ``subprocess.Popen`` of a cold one:
    the same part of Popen that ``api.ContainerProcess`` uses, its output read as text alike."""

    def __init__(self, spec: Spec, report_fd: int, standard: tuple) -> None:
        theirs, pipes = child_streams(*standard)
        super().__init__(pipes)
        try:
            self.pid = os.fork()
            if self.pid == 0:
                exit_with(lambda: _launcher(spec, report_fd, theirs))
        except BaseException:
            for fd in pipes:
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)

    def poll(self) -> int | None:
        """The launcher's exit code if it has exited (minus N for a signal N), else None."""
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if timeout is not None and not _exits_within(self.pid, timeout):
                raise subprocess.TimeoutExpired(f"launcher {self.pid}", timeout)
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, number: int) -> None:
        """Signal the launcher, which passes it on to the container. Until it is reaped here,
        its pid cannot be another process's."""
        if self.poll() is None:
            os.kill(self.pid, number)


def _launcher(spec: Spec, report_fd: int, standard: list[int]) -> int:
    """The forked child: a session of its own, as subprocess gives a cold launcher, so that
    no signal from the caller's terminal reaches the container but those passed on; then the
    launcher's own ``main``."""
    os.setsid()
    return launch.launch(spec, launch.become(report_fd, standard))


def _exits_within(pid: int, seconds: float) -> bool:
    """Whether the child ``pid`` exits within ``seconds``: its pidfd turns readable then."""
    pidfd = os.pidfd_open(pid)
    try:
        return bool(select.select([pidfd], [], [], seconds)[0])
    finally:
        os.close(pidfd)
