"""A warm launcher: containers started from a notebook without starting Python each time.

``api.run`` starts every container with a fresh interpreter: Python's start-up and the imports
of the launcher and its steps come first, well over a hundred milliseconds on a slow machine
(benchmarks/README.md), where the kernel's own work is 2-4 ms. A ``Launcher`` pays that once.
It starts one helper process with subprocess (never by forking the caller: a Jupyter kernel is
multithreaded, docs/safety.md rule 1). The helper imports the launcher and every step, and
waits. For each container it forks, and the child runs the very launcher a cold one runs
(``launch.become``, then ``launch.from_json``), with nothing left to import. It even forks one
launcher ahead: a *spare* waits for the next request, so that the fork itself is paid
while nobody waits (``_Spare``)::

    caller --spec + descriptors--> helper (single-threaded, imports done)
                                     | fork, once per container, one ahead
                                     v
                                   spare --request--> launcher (launch.become) -> init -> command

    with warm.Launcher() as launcher:
        launcher.run(["hostname"], [Hostname("box")]).stdout    # 'box\\n', as api.run says
        sleeper = launcher.start(["sleep", "60"], steps)       # a Container, as api.start

Between the caller and the helper:

- the **control socket** carries requests, one message each (SOCK_SEQPACKET keeps them apart):
  the spec as JSON, with six descriptors passed alongside (SCM_RIGHTS): the report pipe, the
  container's stdin, stdout and stderr, the caller's working directory, and a reply socket;
- a **reply socket** per container carries the launcher's pid and, when it ends, its wait
  status; the other way, the signals the caller sends it. Only the helper signals and reaps its
  children: as their parent it knows that a pid is still theirs, not reused by another process.

When the caller closes the launcher, or dies (the control socket then reads as closed), the
helper kills the launchers still running, which takes their containers down, reaps them and
exits. If the helper dies, the kernel kills its launchers (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import pkgutil
import selectors
import signal
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from labkit.errors import LAB_ERROR, LabError
from labkit.kernel.syscalls import PR_SET_PDEATHSIG, prctl
from labkit.runtime import api, launch
from labkit.runtime.boot import python_argv
from labkit.runtime.forking import close_all_but, exit_with
from labkit.runtime.spawn.handle import Handle, child_streams
from labkit.runtime.spec import Spec, Step

# The longest spec a request carries: what a cold launcher takes as one argument (the kernel's
# MAX_ARG_STRLEN), so that a spec runs warm exactly when it would run cold.
MAX_SPEC = 128 * 1024

_READY = b"ready"
_DESCRIPTORS = 6  # report, stdin, stdout, stderr, working directory, reply
_ENTRY = "labkit.runtime.spawn.warm:serve"  # what the helper's fresh interpreter runs


# ---------------------------------------------------------------------------------------------
# The caller's side


class Launcher:
    """A helper process kept warm, which forks one launcher per container.

    Use it in a ``with`` block, or call ``close()``: closing stops the helper, and kills the
    containers it started that are still running. Its methods may be called from any thread.
    """

    def __init__(self) -> None:
        caller_end, helper_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with helper_end:
            # A session of its own: no signal from the caller's terminal reaches the helper.
            self._helper = subprocess.Popen(
                python_argv(_ENTRY, str(helper_end.fileno())),
                pass_fds=(helper_end.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, start_new_session=True)
        self._control = caller_end
        if self._control.recv(len(_READY)) != _READY:
            self.close()
            raise LabError("the warm launcher's helper died while starting: its error is above")

    @property
    def pid(self) -> int:
        """The helper's pid: the parent of every launcher it forks."""
        return self._helper.pid

    def run(self, command: list[str], steps: Sequence[Step] = (), **options) -> api.Result:
        """``api.run`` through this launcher: the same arguments, the same ``Result``."""
        return api.run(command, steps, spawn=self.spawn, **options)

    def start(self, command: list[str], steps: Sequence[Step] = (),
              **options) -> api.ContainerProcess:
        """``api.start`` through this launcher: the same arguments, the same handle."""
        return api.start(command, steps, spawn=self.spawn, **options)

    def spawn(self, spec: Spec, report_fd: int, *, stdin, stdout, stderr) -> WarmProcess:
        """Have the helper fork a launcher: the ``spawn`` that ``api.ContainerProcess`` takes."""
        return WarmProcess(self._control, spec, report_fd, (stdin, stdout, stderr))

    def close(self) -> None:
        """Stop the helper, once it has killed and reaped the launchers still running."""
        self._control.close()
        self._helper.wait()

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class WarmProcess(Handle):
    """A launcher forked by the helper, handled as the ``subprocess.Popen`` of a cold one is.

    Its output is read as UTF-8 text with universal newlines, as ``spawn_launcher`` asks of
    Popen, so a container gives the same ``Result`` warm or cold.
    """

    def __init__(self, control: socket.socket, spec: Spec, report_fd: int,
                 standard: tuple) -> None:
        request = spec.to_json().encode()  # JSON: the helper is a process of its own
        if len(request) > MAX_SPEC:
            raise LabError(f"a spec of {len(request)} bytes is too long: at most {MAX_SPEC}")
        self._reply, helper_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        theirs, pipes = child_streams(*standard)
        super().__init__(pipes)
        try:
            with helper_end:
                _send(control, request, [report_fd, *theirs], helper_end)
            for fd in theirs:
                os.close(fd)
            theirs = []
            # Our copy of the helper's end is closed: if the helper dies, this reads as closed,
            # and the answer has no pid.
            self.pid: int = self._receive(timeout=None)["pid"]
        except (ConnectionError, KeyError):
            self._abandon(theirs)
            raise LabError("the warm launcher's helper is gone: start a new Launcher") from None
        except BaseException:
            self._abandon(theirs)
            raise

    def poll(self) -> int | None:
        """The launcher's exit code if it has exited (minus N for a signal N), else None."""
        if self.returncode is None:
            self._take_status(self._receive(timeout=0))
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            answer = self._receive(timeout)
            if answer is None:
                raise subprocess.TimeoutExpired(f"warm launcher {self.pid}", timeout)
            self._take_status(answer)
        return self.returncode

    def send_signal(self, number: int) -> None:
        """Ask the helper to signal the launcher, which passes it on to the container."""
        if self.poll() is None:
            # If the helper is gone, so are its launchers: there is nobody left to signal.
            with contextlib.suppress(ConnectionError):
                self._reply.send(json.dumps({"signal": int(number)}).encode())

    def _receive(self, timeout: float | None) -> dict | None:
        """The helper's next message; None if none came within ``timeout`` seconds, and an
        empty dict if the helper has gone."""
        self._reply.settimeout(timeout)
        try:
            message = self._reply.recv(4096)
        except (TimeoutError, BlockingIOError):
            return None
        return json.loads(message) if message else {}

    def _take_status(self, answer: dict | None) -> None:
        if answer is None:
            return
        # Without a status the helper died, and the kernel killed this launcher with it: the
        # wait status of a process killed by SIGKILL is the signal's number.
        status = answer.get("status", signal.SIGKILL)
        self.returncode = os.waitstatus_to_exitcode(status)
        self._reply.close()

    def _abandon(self, theirs: list[int]) -> None:
        """Close every descriptor of a launcher that never started."""
        for fd in [*theirs, *self._pipes]:
            if fd is not None:
                os.close(fd)
        self._reply.close()


def _send(control: socket.socket, request: bytes, fds: list[int],
          helper_end: socket.socket) -> None:
    """Send a request: the spec, then the report pipe and the three streams (``fds``), the
    working directory, and the helper's end of the reply socket."""
    cwd = os.open(".", os.O_PATH | os.O_DIRECTORY)
    try:
        socket.send_fds(control, [request], [*fds, cwd, helper_end.fileno()])
    finally:
        os.close(cwd)


# ---------------------------------------------------------------------------------------------
# The helper's side


@dataclass
class _Child:
    """A launcher the helper forked and gave a request: its pid, a pidfd that turns readable
    when it exits, and the reply socket to its caller."""

    pid: int
    pidfd: int
    reply: socket.socket


def serve(argv: list[str]) -> int:
    """The helper: import everything once, then hand each request to a launcher forked ahead
    of it, until the caller closes the control socket (its descriptor is ``argv[0]``); then kill
    and reap the launchers left, and exit."""
    _warm_up()
    control = socket.socket(fileno=int(argv[0]))
    spare = _Spare()
    control.send(_READY)
    children: list[_Child] = []
    with selectors.DefaultSelector() as selector:
        selector.register(control, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj is control:
                    request, fds, flags, _ = socket.recv_fds(control, MAX_SPEC + 1, _DESCRIPTORS)
                    if not request and not fds:
                        return _shut_down(children, spare)
                    if _complete(request, fds, flags):
                        child, spare = _hand_over(spare, request, fds)
                        children.append(child)
                        selector.register(child.pidfd, selectors.EVENT_READ, child)
                        selector.register(child.reply, selectors.EVENT_READ, child)
                elif key.fd == key.data.pidfd:
                    _forget(key.data, selector)
                    children.remove(key.data)
                    _reap(key.data)
                else:
                    _pass_on_signal(key.data, selector)


def _warm_up() -> None:
    """Import every step, so a launcher forked from here imports nothing; then freeze what was
    imported, so the garbage collector does not touch (and copy) those pages in each fork."""
    from labkit.runtime import steps

    for module in pkgutil.iter_modules(steps.__path__):
        importlib.import_module(f"{steps.__name__}.{module.name}")
    gc.freeze()


def _complete(request: bytes, fds: list[int], flags: int) -> bool:
    """Whether a request arrived whole. One cut short is dropped: its reply socket closes
    unanswered, which the caller reports."""
    if flags & socket.MSG_TRUNC or len(fds) != _DESCRIPTORS or len(request) > MAX_SPEC:
        for fd in fds:
            os.close(fd)
        return False
    return True


class _Spare:
    """A launcher forked before its request comes, waiting on a socket of its own.

    A fork of the helper costs milliseconds: the kernel copies its page tables, and each page
    either process then writes is copied on that first write. The spare pays that while nobody
    waits; a request then only crosses one more socket.
    """

    def __init__(self) -> None:
        self.socket, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        helper = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:
            exit_with(lambda: _await_request(helper, theirs))
        theirs.close()

    def take(self, request: bytes, fds: list[int]) -> _Child | None:
        """Hand the spare a request, which makes it that container's launcher; None if the
        spare was killed while it waited (it is reaped, and ``fds`` are still ours)."""
        try:
            socket.send_fds(self.socket, [request], fds)
        except ConnectionError:
            os.waitpid(self.pid, 0)
            return None
        finally:
            self.socket.close()
        return _Child(self.pid, os.pidfd_open(self.pid), socket.socket(fileno=fds[-1]))

    def retire(self) -> None:
        """Close its socket, on which it then reads that no request will come, and reap it."""
        self.socket.close()
        os.waitpid(self.pid, 0)


def _hand_over(spare: _Spare, request: bytes, fds: list[int]) -> tuple[_Child, _Spare]:
    """Give a request to the spare, tell the caller its launcher's pid, and fork the next
    spare, in that order: the caller does not wait for that fork."""
    while (child := spare.take(request, fds)) is None:
        spare = _Spare()
    for fd in fds[:-1]:
        os.close(fd)
    _answer(child, pid=child.pid)
    return child, _Spare()


def _await_request(helper: int, requests: socket.socket) -> int:
    """The spare, in its forked child: die with the helper, keep none of its descriptors, and
    wait; then become the launcher of the request that comes (none: the helper is closing)."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != helper:  # the helper died before prctl() took effect
        return LAB_ERROR
    os.setsid()  # a session of its own, as subprocess gives a cold launcher
    close_all_but(requests.fileno())
    request, fds, _, _ = socket.recv_fds(requests, MAX_SPEC + 1, _DESCRIPTORS)
    requests.close()
    if not request:
        return 0
    return _become_launcher(request.decode(), fds)


def _become_launcher(spec_json: str, fds: list[int]) -> int:
    """Take the caller's working directory, streams and report pipe, and run the launcher."""
    report, stdin, stdout, stderr, cwd, _reply = fds
    os.fchdir(cwd)
    return launch.from_json(launch.become(report, (stdin, stdout, stderr)), spec_json)


def _pass_on_signal(child: _Child, selector: selectors.BaseSelector) -> None:
    """Send a launcher the signal its caller asked for; or, when the caller has dropped its
    handle (the reply socket reads as closed), stop listening to it."""
    message = child.reply.recv(4096)
    if message:
        os.kill(child.pid, json.loads(message)["signal"])
    else:
        selector.unregister(child.reply)


def _forget(child: _Child, selector: selectors.BaseSelector) -> None:
    selector.unregister(child.pidfd)
    if child.reply in selector.get_map():
        selector.unregister(child.reply)


def _reap(child: _Child) -> None:
    _, status = os.waitpid(child.pid, 0)
    _answer(child, status=status)
    os.close(child.pidfd)
    child.reply.close()


def _answer(child: _Child, **message) -> None:
    # If the caller dropped its handle, the launcher runs on without an audience.
    with contextlib.suppress(ConnectionError):
        child.reply.send(json.dumps(message).encode())


def _shut_down(children: list[_Child], spare: _Spare) -> int:
    spare.retire()
    for child in children:
        os.kill(child.pid, signal.SIGKILL)
    for child in children:
        _reap(child)
    return 0
