"""Run containers from Python: the calls the notebooks, the tests and the CLI stand on.

    >>> from labkit.runtime.api import run
    >>> from labkit.runtime.steps.hostname import Hostname
    >>> run(["hostname"], steps=[Hostname("container")]).stdout
    'container\\n'

The caller never unshares, mounts or forks itself: it is often multithreaded (a Jupyter kernel),
and those calls would change or endanger it (docs/safety.md rule 1). It only describes the
container (a ``Spec``) and starts the launcher (``launch.py``) with subprocess, then talks to it
through signals and reads what happened from the report pipe (``report.py``). A fresh launcher
costs Python's start-up every time; ``warm.py`` forks launchers from a helper started once
instead, and a container's monitor, which may fork, forks them itself (``forked.py``).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from labkit.kernel import process
from labkit.runtime import report
from labkit.runtime.boot import python_argv
from labkit.runtime.spec import Spec, Step, default_env

# How a ContainerProcess starts its launcher: (spec, report_fd, stdin=, stdout=, stderr=) -> a
# handle like subprocess.Popen's (see ContainerProcess). No typing import: the CLI's path stays
# lean.
Spawn = Callable[..., object]


def launcher_command(report_fd: int, spec_json: str) -> list[str]:
    """The argv of a launcher that builds the container ``spec_json`` describes."""
    return python_argv("labkit.runtime.launch:main", str(report_fd), spec_json)


def spawn_launcher(spec: Spec, report_fd: int, *, stdin, stdout,
                   stderr) -> subprocess.Popen:
    """Start a launcher in a fresh interpreter, cold: Python's start-up and imports come first.

    This is how a ``ContainerProcess`` starts by default. ``labkit.runtime.spawn.warm`` offers
    another ``spawn`` with the same arguments, whose launchers are forked from a helper kept warm,
    and ``labkit.runtime.spawn.forked`` one that forks them from the caller, for a caller that may
    fork. The standard streams are as ``subprocess.Popen`` takes them; the output is read as text.
    """
    return subprocess.Popen(
        launcher_command(report_fd, spec.to_json()), pass_fds=(report_fd,),
        stdin=stdin, stdout=stdout, stderr=stderr, encoding="utf-8", errors="replace",
        # The container gets no signal from the caller's terminal (Ctrl-C in pytest),
        # only those its launcher passes on, as a docker container gets.
        start_new_session=True)


@dataclass(frozen=True)
class Result:
    """What a finished container left: its output, its exit code, and where it ran.

    ``namespaces`` maps each kind (``uts``, ``pid``, ``mnt``, ...) to the inode of the namespace
    the command ran in; compare it with the host's ``/proc/self/ns``. ``error`` is the lab's own
    one-line explanation when the lab, not the command, failed (exit codes 125, 126, 127, or a
    timeout).
    """

    exit_code: int
    stdout: str
    stderr: str
    namespaces: dict[str, int]
    error: str | None


class ContainerProcess:
    """A running container, handled like a ``subprocess.Popen``.

    ``pid`` is the launcher's: the signals sent to it reach the command through the launcher
    and the container's init. ``init_pid`` is the host's pid of the container's first process
    (PID 1 inside, when it has a PID namespace). The constructor returns once the container's
    namespaces and steps are in place and its command has been exec'd, or once it is known why
    not: ``error`` then says so (command not found, a step that failed). Use it in a ``with``
    block, which kills and reaps it if it is still running.

    ``spawn`` starts the launcher: a fresh interpreter by default (``spawn_launcher``), a fork
    of a warm helper (``labkit.runtime.spawn.warm``), or a fork of the caller (``forked.spawn``). It
    returns a handle with the part of ``subprocess.Popen`` used here: ``pid``, ``returncode``,
    ``poll``, ``wait``, ``send_signal``, ``terminate``, ``kill`` and ``communicate``.
    """

    def __init__(self, spec: Spec, *, stdin=None, stdout=None, stderr=None,
                 spawn: Spawn = spawn_launcher):
        read_end, write_end = os.pipe()
        self._report = os.fdopen(read_end, "rb")
        self._facts: dict = {}
        try:
            self._process = spawn(spec, write_end, stdin=stdin, stdout=stdout,
                                  stderr=stderr)
        except BaseException:
            self._report.close()
            raise
        finally:
            os.close(write_end)
        self._read_report(until_started=True)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def init_pid(self) -> int | None:
        return self._facts.get("init_pid")

    @property
    def namespaces(self) -> dict[str, int]:
        return self._facts.get("namespaces", {})

    @property
    def error(self) -> str | None:
        return self._facts.get("error")

    def send_signal(self, signal: int) -> None:
        self._process.send_signal(signal)

    def terminate(self) -> None:
        """Send SIGTERM, as ``docker stop`` does first."""
        self._process.terminate()

    def kill(self) -> None:
        """SIGKILL the launcher; the kernel then kills the container's init, and its namespace."""
        self._process.kill()

    @property
    def exit_code(self) -> int | None:
        """The container's exit code (128+N for a signal N), once it has exited."""
        code = self._process.returncode
        return None if code is None else process.shell_code(code)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the container to exit, its init included; return its exit code."""
        self._process.wait(timeout)
        self._read_report(until_started=False)
        _wait_until_gone(self.init_pid)
        return self.exit_code

    def communicate(self, input: str | None = None) -> tuple[str, str]:
        """Feed ``input``, read the output to its end and wait, like ``Popen.communicate``."""
        stdout, stderr = self._process.communicate(input)
        self.wait()
        return stdout, stderr

    def _read_report(self, until_started: bool) -> None:
        """Merge the report's facts, until the container has started or the pipe ends."""
        if self._report.closed:
            return
        for fact in report.facts(self._report):
            self._facts.update(fact)
            if until_started and self._started():
                return
        self._report.close()

    def _started(self) -> bool:
        return "error" in self._facts or {"init_pid", "namespaces", "started"} <= self._facts.keys()

    def __enter__(self) -> ContainerProcess:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._process.poll() is None:
            self.kill()
        self.wait()


def _wait_until_gone(pid: int | None, patience: float = 5.0) -> None:
    """Wait until ``pid`` has died (a zombie or gone).

    When the launcher is killed, the kernel kills the container's init only afterwards
    (PR_SET_PDEATHSIG), so without this wait a container that "has exited" could still have
    its init running for a moment.
    """
    deadline = time.monotonic() + patience
    while pid is not None and time.monotonic() < deadline:
        if process.state(pid) in (None, *process.GONE):
            return
        time.sleep(0.001)


def run(command: list[str], steps: Sequence[Step] = (), *, env: dict[str, str] | None = None,
        timeout: float | None = None, input: str | None = None,
        spawn: Spawn = spawn_launcher) -> Result:
    """Run ``command`` in a new container made by ``steps``, wait, and say what happened.

    The command gets ``env`` (docker's PATH alone by default), ``input`` on its stdin (nothing
    by default), and is killed after ``timeout`` seconds if one is given.
    """
    stdin = subprocess.DEVNULL if input is None else subprocess.PIPE
    with ContainerProcess(_spec(command, steps, env, timeout), stdin=stdin, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, spawn=spawn) as container:
        stdout, stderr = container.communicate(input)
    return Result(container.exit_code, stdout, stderr, container.namespaces, container.error)


def start(command: list[str], steps: Sequence[Step] = (), *, env: dict[str, str] | None = None,
          timeout: float | None = None, stdout=subprocess.DEVNULL,
          stderr=subprocess.DEVNULL, spawn: Spawn = spawn_launcher) -> ContainerProcess:
    """Start ``command`` in a new container in the background; return its handle."""
    return ContainerProcess(_spec(command, steps, env, timeout), stdin=subprocess.DEVNULL,
                     stdout=stdout, stderr=stderr, spawn=spawn)


def _spec(command: list[str], steps: Sequence[Step], env: dict[str, str] | None,
          timeout: float | None) -> Spec:
    return Spec(command, list(steps), default_env() if env is None else dict(env), timeout)
