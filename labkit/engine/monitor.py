"""The monitor: one process per container that looks after it from start to end (conmon's job).

``labkit run`` cannot be what holds a container's output: a detached container outlives it, and
a foreground one must survive a ``kill -9`` of it. So each container gets a monitor, started by
the CLI or a notebook and cut loose from it at once, in a session of its own with no terminal.
A notebook starts it as a fresh interpreter, which forks the monitor and exits, so the monitor
is nobody's child but init's (or the nearest subreaper's); ``labkit run``, a single-threaded
process of the lab's own, may fork it directly, which saves a Python start-up: the monitor is
then ``labkit run``'s child until that command exits, and init's (or the subreaper's) after. For the
container's whole life the monitor:

1. holds an exclusive flock() on the container's directory, so a container has at most one
   monitor, and anyone can tell whether it has one (``alive``) without trusting a pid: the
   kernel drops the lock when the monitor dies, even of ``kill -9``;
2. starts the container (``labkit.runtime.api``), forking its launcher (``forked.py``), with
   its stdout and stderr on pipes, or with ``-t`` on a pty the container opens in its own
   devpts and sends back (``steps/console.py``);
3. records it running in ``state.json`` and tells its first client, the command that started
   it, which until then holds the store's lock;
4. serves clients on ``attach.sock`` (``labkit.engine.frames``): copies the output to the log and to
   every attached client, their input to the container's stdin, their signals and terminal
   sizes to the container;
5. when the container ends: records the exit code and time, clears the overlay's work
   directory, notes whether the OOM killer struck and removes its cgroup, ends its network
   lease and unpublishes its ports, tells the clients, removes the container if it was run
   with ``--rm``, and exits.
   The container's mounts need nothing: they lived in its mount namespace, which died with it.

A monitor never waits for a labkit command, so a command may wait for a monitor while holding
the store's lock; the one time a monitor takes that lock (``--rm``) it has already told its
first client everything.
"""

from __future__ import annotations

import codecs
import fcntl
import functools
import json
import os
import selectors
import socket
import subprocess
from dataclasses import replace
from pathlib import Path

from labkit.engine import limiting, networking, store
from labkit.engine.frames import Kind, Reader, control, encode, socket_path
from labkit.engine.relay import set_size
from labkit.errors import LAB_ERROR, LabError
from labkit.kernel.process import stat
from labkit.runtime.api import ContainerProcess
from labkit.runtime.boot import python_argv
from labkit.runtime.forking import close_all_but, exit_with
from labkit.runtime.spawn import forked
from labkit.runtime.spec import Spec
from labkit.runtime.steps.console import receive_master
from labkit.runtime.steps.overlay import clear_work

CHUNK = 65536
SEND_TIMEOUT = 10.0  # a client that takes longer than this to take its output is dropped
_STREAMS = {Kind.STDOUT: "stdout", Kind.STDERR: "stderr"}


def spawn(directory: Path, spec: Spec, first_client: socket.socket, *, fork: bool = False) -> None:
    """Start the monitor of the container in ``directory``; ``first_client`` is its end of a
    socket pair whose other end the caller keeps, and has sent its HELLO on already.

    The caller may be a notebook's kernel, which must never fork itself: by default the monitor
    starts with subprocess, and the fork that detaches it happens in the new process. With
    ``fork``, the caller says it is a single-threaded process of the lab's own (``labkit run``),
    with the monitor's imports done: it forks the monitor, a hundred milliseconds sooner.
    """
    if fork:
        if os.fork() == 0:
            exit_with(lambda: _detached(directory, first_client, spec))
        return
    fd = first_client.fileno()
    process = subprocess.Popen(
        python_argv("labkit.engine.monitor:main", str(directory), str(fd), spec.to_json()),
        pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    process.wait()  # the first process exits as soon as it has forked the monitor


def alive(directory: Path) -> bool:
    """Whether a monitor holds the container in ``directory``."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def wait_gone(directory: Path) -> None:
    """Return once no monitor holds the container in ``directory``."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    """``labkit.engine.monitor:main DIRECTORY CLIENT_FD SPEC_JSON``, started by ``spawn``: fork the
    monitor, so that it is nobody's child but init's, and exit."""
    directory, first_client, spec = Path(argv[0]), int(argv[1]), Spec.from_json(argv[2])
    if os.fork() == 0:
        exit_with(lambda: _run(directory, socket.socket(fileno=first_client), spec))
    return 0


def _detached(directory: Path, first_client: socket.socket, spec: Spec) -> int:
    """The monitor, forked from the command that starts the container: a session of its own,
    no terminal, and none of that command's descriptors (its hold on the store's lock above
    all) but the first client's socket."""
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for number in (0, 1, 2):
        os.dup2(null, number)
    close_all_but(first_client.fileno())
    return _run(directory, first_client, spec)


def _run(directory: Path, first_client: socket.socket, spec: Spec) -> int:
    """The monitor's whole life, in the process forked for it. It then exits at once: nothing
    to finalize, the kernel closes the clients' sockets. It lives in ``/``: the directory its
    caller was in may be a mount, which the learner could not unmount while a monitor sat in it
    (every path it uses is absolute)."""
    os.chdir("/")
    Monitor(directory, first_client).run(spec)
    return 0


class _Client:
    """One connection: the first client (``owner``, the command that started the container)
    or one that came in through ``attach.sock``."""

    def __init__(self, sock: socket.socket, owner: bool):
        sock.settimeout(SEND_TIMEOUT)
        self.socket = sock
        self.owner = owner
        self.attached = False
        self.reader = Reader()


class Monitor:
    """One container's monitor, in its own process: ``run`` is its whole life."""

    def __init__(self, directory: Path, first_client: socket.socket):
        self.directory = directory
        self.id = directory.name
        self.lab = store.Store(directory.parent.parent)
        self.selector = selectors.DefaultSelector()
        self.clients: list[_Client] = []
        self.outputs: dict[int, Kind] = {}  # descriptors the container's output comes from
        self.decoders = {kind: codecs.getincrementaldecoder("utf-8")(errors="replace")
                         for kind in _STREAMS}
        self.stdin: int | None = None  # where the clients' input goes: a pipe, or the master
        self.pending_input = bytearray()
        self.stdin_ends = False  # close the stdin pipe once pending_input is written
        self.master: int | None = None
        self.container: ContainerProcess | None = None
        self.exited = False
        self.log_lost = False  # a chunk of output the full disk would not take
        self.first = self._add_client(first_client, owner=True)

    def run(self, spec: Spec) -> None:
        self.directory_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self.directory_fd, fcntl.LOCK_EX)  # held until this process ends
        self.config = self.lab.container_config(self.id)
        self.log = os.open(self.directory / store.LOG, os.O_WRONLY | os.O_APPEND)
        self._read_hello(self.first)
        self._listen()
        try:
            self._start(spec)
        except (LabError, OSError) as error:
            self._output(Kind.STDERR, f"labkit: {error}\n".encode())
            self._finish(LAB_ERROR, str(error))
            return
        while self.outputs or not self.exited:
            for key, events in self.selector.select():
                key.data(events)
        self._finish(self.container.wait(), self.container.error)

    # Starting

    def _read_hello(self, client: _Client) -> None:
        """Read the first client's HELLO, sent before the monitor existed: whether it wants
        the output must be known before there is any. A caller killed meanwhile sent none."""
        frames: list = []
        while not frames:
            data = client.socket.recv(CHUNK)
            if not data:
                self._drop(client)
                return
            frames = client.reader.feed(data)
        self._handle(client, frames)
        self._watch_client(client)

    def _listen(self) -> None:
        path = socket_path(self.directory_fd, store.SOCKET)
        if os.path.lexists(path):
            os.unlink(path)  # an earlier monitor's; that monitor is gone, or we had no lock
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self.selector.register(self.listener, selectors.EVENT_READ, self._accept)

    def _start(self, spec: Spec) -> None:
        """Start the container, its output on pipes (or a pty), and record it running."""
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        stdin, console = self._stdin_ends()
        try:
            self.container = ContainerProcess(spec, stdin=stdin, stdout=out_write, stderr=err_write,
                                       spawn=forked.spawn)
        finally:
            for fd in (out_write, err_write, stdin):
                if fd >= 0:  # not subprocess.DEVNULL
                    os.close(fd)
        self._add_output(out_read, Kind.STDOUT)
        self._add_output(err_read, Kind.STDERR)
        if console is not None:
            self._take_master(console)
        pidfd = os.pidfd_open(self.container.pid)
        self.selector.register(pidfd, selectors.EVENT_READ,
                               functools.partial(self._exited, pidfd))
        if self.container.error is None:
            self._record_running()

    def _stdin_ends(self) -> tuple[int, socket.socket | None]:
        """The container's stdin, and with -t the socket its pty master will come back on."""
        if self.config.tty:
            console, theirs = socket.socketpair()
            return theirs.detach(), console
        if self.config.interactive:
            theirs, self.stdin = os.pipe()
            os.set_blocking(self.stdin, False)
            return theirs, None
        return subprocess.DEVNULL, None

    def _take_master(self, console: socket.socket) -> None:
        master = receive_master(console) if self.container.error is None else None
        console.close()
        if master is not None:
            os.set_blocking(master, False)
            self.master = self.stdin = master
            self._add_output(master, Kind.STDOUT)

    def _state(self) -> store.ContainerState:
        """The container's state as it stands, or a fresh one if it was damaged meanwhile:
        the monitor knows all that goes in it, and writes it whole."""
        try:
            return self.lab.container_state(self.id)
        except store.Damaged:
            return store.ContainerState()

    def _record_running(self) -> None:
        init = self.container.init_pid
        try:
            started = stat(init).start_time
        except (FileNotFoundError, ProcessLookupError):  # it has run its course already
            started = None
        state = replace(self._state(), status=store.RUNNING,
                        monitor_pid=os.getpid(), init_pid=init, init_start=started,
                        started_at=store.timestamp(), finished_at="", exit_code=None, error=None)
        self.lab.save_container_state(self.id, state)
        self._broadcast(control(Kind.STARTED, init_pid=init))

    # The container's output and input

    def _add_output(self, fd: int, kind: Kind) -> None:
        self.outputs[fd] = kind
        self._watch(fd)

    def _watch(self, fd: int) -> None:
        """(Re)register ``fd`` for what it is needed for now: output to read, input to write."""
        events = selectors.EVENT_READ if fd in self.outputs else 0
        if fd == self.stdin and self.pending_input:
            events |= selectors.EVENT_WRITE
        registered = fd in self.selector.get_map()
        handler = functools.partial(self._stream_ready, fd)
        if events and registered:
            self.selector.modify(fd, events, handler)
        elif events:
            self.selector.register(fd, events, handler)
        elif registered:
            self.selector.unregister(fd)

    def _stream_ready(self, fd: int, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._write_input()
        if events & selectors.EVENT_READ and fd in self.outputs:
            self._read_output(fd)

    def _read_output(self, fd: int) -> None:
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: a pty master whose every slave is closed, that is the end
            data = b""
        if data:
            self._output(self.outputs[fd], data)
            return
        del self.outputs[fd]
        if fd == self.stdin:
            self.stdin = None
        if fd == self.master:
            self.master = None  # a resize that comes now finds no terminal: it is passed by
        self._watch(fd)
        os.close(fd)

    def _output(self, kind: Kind, data: bytes) -> None:
        """Log a chunk of output and pass it to every attached client."""
        self._log(kind, self.decoders[kind].decode(data))
        self._broadcast(encode(kind, data), attached_only=True)

    def _log(self, kind: Kind, text: str) -> None:
        """One JSON line per chunk, as docker's json-file log driver writes: the text decoded
        as UTF-8 (a character cut between two chunks is kept for the next)."""
        if text:
            entry = {"time": store.timestamp(), "stream": _STREAMS[kind], "log": text}
            try:
                os.write(self.log, json.dumps(entry).encode() + b"\n")
            except OSError:  # the store's disk is full: the clients still get it, live
                self.log_lost = True

    def _write_input(self) -> None:
        try:
            written = os.write(self.stdin, self.pending_input)
        except BlockingIOError:
            return
        except OSError:  # the container closed its stdin: what is left has nowhere to go
            written = len(self.pending_input)
        del self.pending_input[:written]
        self._watch(self.stdin)
        if self.stdin_ends and not self.pending_input:
            self._close_stdin()

    def _close_stdin(self) -> None:
        """End the container's stdin pipe once what was typed is written, so that ``cat``
        sees the end of its input. A terminal stays open: its end is a key (Ctrl-D)."""
        if self.stdin is None or self.master is not None:
            return
        self.stdin_ends = True
        if not self.pending_input:
            os.close(self.stdin)
            self.stdin = None

    def _exited(self, pidfd: int, events: int) -> None:
        self.selector.unregister(pidfd)
        os.close(pidfd)
        self.exited = True

    # Clients

    def _add_client(self, sock: socket.socket, owner: bool) -> _Client:
        client = _Client(sock, owner)
        self.clients.append(client)
        self._send(client, control(Kind.MONITOR, pid=os.getpid()))
        return client

    def _watch_client(self, client: _Client) -> None:
        self.selector.register(client.socket, selectors.EVENT_READ,
                               functools.partial(self._from_client, client))

    def _accept(self, events: int) -> None:
        sock, _ = self.listener.accept()
        client = self._add_client(sock, owner=False)
        self._watch_client(client)
        if self.container and self.container.error is None:
            self._send(client, control(Kind.STARTED, init_pid=self.container.init_pid))

    def _from_client(self, client: _Client, events: int) -> None:
        try:
            data = client.socket.recv(CHUNK)
            frames = client.reader.feed(data)
        except (OSError, ValueError):  # reset, or not speaking frames: end it
            data, frames = b"", []
        self._handle(client, frames)
        if not data:
            self._drop(client)

    def _handle(self, client: _Client, frames: list) -> None:
        for frame in frames:
            if frame.kind == Kind.HELLO:
                client.attached = bool(frame.fields().get("attach"))
            elif frame.kind == Kind.STDIN and self.stdin is not None:
                self.pending_input += frame.payload
                self._watch(self.stdin)
            elif frame.kind == Kind.CLOSE_STDIN and client.owner:
                self._close_stdin()
            elif frame.kind == Kind.SIGNAL and self.container and not self.exited:
                self.container.send_signal(frame.fields()["number"])
            elif frame.kind == Kind.RESIZE and self.master is not None:
                size = frame.fields()
                set_size(self.master, size["rows"], size["columns"])

    def _drop(self, client: _Client) -> None:
        """Forget a client that left. If it was the command that started the container, the
        container's stdin ends too, as ``docker run -i`` closes it when its client goes."""
        if client not in self.clients:
            return  # dropped already, while a broadcast was going through the list
        if client.socket in self.selector.get_map():
            self.selector.unregister(client.socket)
        client.socket.close()
        self.clients.remove(client)
        if client.owner:
            self._close_stdin()

    def _send(self, client: _Client, data: bytes) -> None:
        try:
            client.socket.sendall(data)
        except OSError:  # gone, or too slow to take its output
            self._drop(client)

    def _broadcast(self, data: bytes, attached_only: bool = False) -> None:
        for client in list(self.clients):
            if client.attached or not attached_only:
                self._send(client, data)

    # The end

    def _end_cgroup(self, error: str | None) -> tuple[bool, str | None]:
        """Whether the OOM killer struck in the container's cgroup, then remove it."""
        try:
            oom_killed = limiting.oom_killed(self.id)
            limiting.remove(self.id)
        except (LabError, OSError) as failure:
            return False, error or f"its cgroup could not be removed: {failure}"
        return oom_killed, error

    def _finish(self, exit_code: int, error: str | None) -> None:
        """Record the end, tidy up, tell the clients, and remove the container if asked."""
        for kind, decoder in self.decoders.items():
            self._log(kind, decoder.decode(b"", final=True))
        self.selector.unregister(self.listener)
        self.listener.close()
        os.unlink(socket_path(self.directory_fd, store.SOCKET))
        work = self.directory / store.WORK
        try:
            clear_work(work)
        except LabError as refusal:
            error = error or str(refusal)
        if self.log_lost:
            error = error or "the store's disk was full: some of its output is not in its log"
        oom_killed, error = self._end_cgroup(error)
        state = replace(self._state(), status=store.EXITED, exit_code=exit_code,
                        finished_at=store.timestamp(), error=error, oom_killed=oom_killed)
        try:
            self.lab.save_container_state(self.id, state)
        except OSError:  # a full disk: it shows as dead, and gc records it once there is room
            error = error or "its exit could not be recorded: the store's disk is full"
        try:  # before the clients hear of the end: by then its ports lead nowhere
            networking.detach(self.lab, self.id)
        except (LabError, OSError) as failure:
            error = error or f"its network could not be taken down: {failure}"
        self._broadcast(control(Kind.EXIT, exit_code=exit_code, error=error))
        if self.config.auto_remove:
            with self.lab.locked():
                self.lab.remove_container(self.id)
