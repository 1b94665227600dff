"""The terminal's side of ``run``, ``attach`` and ``exec``: copy between it and a container.

``labkit run`` in the foreground, ``attach`` and ``exec -t`` all do the same: copy what the
container prints to this terminal, what is typed to the container, and pass on what a terminal
says without bytes. Only the other end differs, so it is a *peer*:

- ``MonitorPeer``: a container's monitor, through its socket (``labkit.engine.frames``): output
  arrives as frames, and input, signals and sizes leave as frames;
- ``TerminalPeer``: the master of a pty an ``exec`` helper opened in the container: plain
  bytes both ways, and the helper process to signal and wait for.

With ``-t`` this terminal goes *raw*: every key, Ctrl-C included, is passed on as a byte, and
the container's own terminal (its line discipline) turns it into a signal for its foreground
process, as if the learner typed there. Without it, Ctrl-C stops no one here: labkit catches
SIGINT, like every signal it is sent, and passes it on to the container (docker's sig-proxy).
The window size follows (SIGWINCH) with ``-t``.
"""

from __future__ import annotations

import fcntl
import os
import selectors
import signal
import struct
import subprocess
import termios
import threading
import tty
from collections.abc import Iterator
from contextlib import contextmanager

from labkit.engine.frames import Connection, Kind
from labkit.errors import LabError
from labkit.kernel.process import shell_code

CHUNK = 65536
OUTPUT_GRACE = 2.0  # seconds to copy what is left once an exec'd command has exited
BROKEN_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a writer whose reader left
PROXIED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
           signal.SIGUSR2)


class MonitorPeer:
    """A container's monitor: its output, and at the end its exit code, come as frames."""

    def __init__(self, connection: Connection):
        self.connection = connection
        self.end: dict | None = None

    def fileno(self) -> int:
        return self.connection.fileno()

    @property
    def buffered(self) -> bool:
        return self.connection.buffered

    def receive(self) -> list[tuple[int, bytes]] | None:
        """Output to write, as (descriptor, bytes); None once the monitor has exited."""
        frames = self.connection.receive_available()
        if frames is None:
            return None
        for frame in frames:
            if frame.kind == Kind.EXIT:
                self.end = frame.fields()
        return [(1 if frame.kind == Kind.STDOUT else 2, frame.payload) for frame in frames
                if frame.kind in (Kind.STDOUT, Kind.STDERR)]

    def send_input(self, data: bytes) -> None:
        self.connection.send(Kind.STDIN, data)

    def close_input(self) -> None:
        self.connection.send(Kind.CLOSE_STDIN)

    def resize(self, rows: int, columns: int) -> None:
        self.connection.send_control(Kind.RESIZE, rows=rows, columns=columns)

    def signal(self, number: int) -> None:
        self.connection.send_control(Kind.SIGNAL, number=number)

    def exit_code(self) -> int:
        if self.end is None:
            raise LabError("the container's monitor ended without its exit code: see "
                           "labkit ps -a")
        return self.end["exit_code"]


class TerminalPeer:
    """The master of a pty in a container, and the process whose command has its slave."""

    def __init__(self, master: int, process: subprocess.Popen):
        self.master = master
        self.process = process

    def fileno(self) -> int:
        return self.master

    buffered = False  # every byte is read straight from the master

    def receive(self) -> list[tuple[int, bytes]] | None:
        try:
            data = os.read(self.master, CHUNK)
        except OSError:  # EIO: every slave is closed, the command has ended
            data = b""
        return [(1, data)] if data else None

    def send_input(self, data: bytes) -> None:
        _write_all(self.master, data)

    def close_input(self) -> None:
        """Nothing: at the end of a piped input a terminal just stays open, as docker's does."""

    def resize(self, rows: int, columns: int) -> None:
        set_size(self.master, rows, columns)

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    def exit_code(self) -> int:
        os.close(self.master)
        return shell_code(self.process.wait())


def relay(peer: MonitorPeer | TerminalPeer, *, stdin: bool, terminal: bool) -> int:
    """Copy between this process's stdio and ``peer`` until the peer ends; its exit code.

    ``stdin``: pass on what is typed (``-i``); ``terminal``: the peer is a terminal (``-t``),
    so this one goes raw and passes on its size.
    """
    # poll(), not epoll: stdin may be a regular file (< input.txt), which epoll refuses.
    with _raw(terminal and os.isatty(0)), _signal_pipe() as signals, \
            selectors.PollSelector() as selector:
        selector.register(peer, selectors.EVENT_READ)
        selector.register(signals, selectors.EVENT_READ)
        if stdin:
            selector.register(0, selectors.EVENT_READ)
        if terminal:
            _pass_size(peer)
        while True:
            for key, _ in _ready(selector, peer):
                if key.fileobj is peer:
                    output = peer.receive()
                    if output is None:
                        return peer.exit_code()
                    _show(output)
                elif key.fileobj == 0:
                    _pass_input(peer, selector)
                else:
                    _pass_signals(peer, os.read(signals, 64), terminal)


def _ready(selector: selectors.BaseSelector, peer: MonitorPeer | TerminalPeer) -> list:
    """What to read now: the peer at once if it holds output it read ahead, which select()
    cannot know about; otherwise whatever select() says, waiting for it."""
    if peer.buffered:
        return [(selector.get_key(peer), selectors.EVENT_READ)]
    return selector.select()


def pipe_through(process: subprocess.Popen, *, stdin: bool) -> int:
    """``exec`` without ``-t``: copy between this process's stdio and ``process``'s pipes until
    it exits, passing on every signal; its exit code.

    The command gets pipes, never this process's own descriptors: through ``/proc/self/fd`` a
    process in the container could reopen those, a host file the caller's stdout was redirected
    to among them, and read it from the start. docker and runc keep a container's stdio on
    pipes they copy from for the same reason. Each pipe has a thread of its own, so that a
    command that fills one while the caller still writes to another never waits for us.
    """
    copiers = [_copier(process.stdout, 1), _copier(process.stderr, 2)]
    if stdin:
        _copier(0, process.stdin)
    code = wait_passing_signals(process)
    for copier in copiers:
        copier.join(OUTPUT_GRACE)  # what the command printed last, not a daemon's forever
    return code


def _copier(source, target) -> threading.Thread:
    """A thread copying ``source`` to ``target`` (descriptors or files) until either ends, then
    closing the pipe's end: the command sees the end of its input, or SIGPIPE once the reader
    of our output left."""
    source_fd, target_fd = (end if isinstance(end, int) else end.fileno()
                            for end in (source, target))

    def copy() -> None:
        try:
            while data := os.read(source_fd, CHUNK):
                _write_all(target_fd, data)
        except OSError:  # our reader left (EPIPE), or our input cannot be read
            pass
        finally:
            (target if source_fd == 0 else source).close()

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread


def wait_passing_signals(process: subprocess.Popen) -> int:
    """Wait for ``process``, passing on every signal this one is sent; its exit code."""
    previous = {number: signal.signal(number, lambda number, _: process.send_signal(number))
                for number in PROXIED}
    try:
        return shell_code(process.wait())
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _show(output: list[tuple[int, bytes]]) -> None:
    """Write the container's output to this process's stdout and stderr."""
    try:
        for fd, data in output:
            _write_all(fd, data)
    except BrokenPipeError:
        raise LabError("the output was closed (the reader of a pipe exited): the container "
                       "runs on without this client; see labkit ps",
                       exit_code=BROKEN_PIPE) from None


def set_size(fd: int, rows: int, columns: int) -> None:
    """Tell the terminal ``fd`` its window's size; the kernel sends its foreground SIGWINCH."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def _pass_input(peer: MonitorPeer | TerminalPeer, selector: selectors.BaseSelector) -> None:
    data = os.read(0, CHUNK)
    if data:
        peer.send_input(data)
    else:
        selector.unregister(0)
        peer.close_input()


def _pass_signals(peer: MonitorPeer | TerminalPeer, numbers: bytes, terminal: bool) -> None:
    for number in numbers:
        if number == signal.SIGWINCH:
            if terminal:
                _pass_size(peer)
        else:
            peer.signal(number)


def _pass_size(peer: MonitorPeer | TerminalPeer) -> None:
    for fd in (0, 1):
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        peer.resize(size.lines, size.columns)
        return


@contextmanager
def _raw(enabled: bool) -> Iterator[None]:
    """This terminal in raw mode for the block: no echo, no line editing, no signal keys."""
    if not enabled:
        yield
        return
    saved = termios.tcgetattr(0)
    tty.setraw(0)
    try:
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)


@contextmanager
def _signal_pipe() -> Iterator[int]:
    """A pipe on which every proxied signal (and SIGWINCH) arrives as its number, a byte, so
    the relay's one select() loop takes signals in turn with everything else."""
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    # A Python handler, even one that does nothing, is what makes the number reach the pipe.
    previous = {number: signal.signal(number, lambda *_: None)
                for number in (*PROXIED, signal.SIGWINCH)}
    try:
        yield read_end
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        signal.set_wakeup_fd(previous_fd)
        os.close(read_end)
        os.close(write_end)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]

