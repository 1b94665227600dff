"""The monitor's wire: a container's output and its controls, both ways over one socket.

A container has two output streams and one input, and its clients also need to say "stop" or
"the window is now 40x120", and to hear "started" and "exited with 3". One unix socket carries
all of it, cut into frames, as docker's attach stream adds a small header to each chunk so that
stdout and stderr can share one connection::

    kind (1 byte) | length (4 bytes, big-endian) | payload (length bytes)

From a client to the monitor: ``HELLO`` first (JSON: ``attach``, whether to receive the output),
then ``STDIN`` bytes, ``CLOSE_STDIN``, ``SIGNAL`` (JSON: ``number``) and ``RESIZE`` (JSON:
``rows``, ``columns``). From the monitor: ``MONITOR`` (JSON: its ``pid``) first, ``STARTED``
(JSON: ``init_pid``), then ``STDOUT`` and ``STDERR`` bytes to attached clients, and ``EXIT``
(JSON: ``exit_code``, ``error``).

The monitor never closes a client's socket on purpose, so the end of the stream means that the
monitor is exiting. *Has* exited is what a client waits for (``stop``, ``rm`` and ``run --rm``
return once the container is gone for good): the kernel closes a process's descriptors a moment
before its exit is complete, so the client also waits on a pidfd of the monitor, which becomes
readable exactly when it has.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

_HEADER = struct.Struct(">BI")
MAX_PAYLOAD = 1 << 20  # a chunk is at most 64 KiB; anything near this is a corrupt stream


class Kind(IntEnum):
    HELLO = 1  # from a client
    STDIN = 2
    CLOSE_STDIN = 3
    SIGNAL = 4
    RESIZE = 5
    MONITOR = 10  # from the monitor
    STARTED = 11
    STDOUT = 12
    STDERR = 13
    EXIT = 14


@dataclass(frozen=True)
class Frame:
    kind: Kind
    payload: bytes = b""

    def fields(self) -> dict:
        """The payload of a control frame, decoded."""
        return json.loads(self.payload)


def encode(kind: Kind, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


def control(kind: Kind, **fields) -> bytes:
    """A frame whose payload is a small JSON object."""
    return encode(kind, json.dumps(fields).encode())


class Reader:
    """Cut a byte stream into frames, however the bytes happen to arrive."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self._buffer)
            if length > MAX_PAYLOAD:
                raise ValueError(f"a frame of {length} bytes: not a labkit monitor stream")
            end = _HEADER.size + length
            if len(self._buffer) < end:
                break
            frames.append(Frame(Kind(kind), bytes(self._buffer[_HEADER.size:end])))
            del self._buffer[:end]
        return frames


def socket_path(directory_fd: int, name: str) -> str:
    """A path to ``name`` in an open directory that always fits a unix socket address.

    A socket's path is limited to 107 bytes, and ``LABKIT_HOME/containers/<64 digits>/`` alone
    can be longer. ``/proc/self/fd/N`` is a short way to the same directory.
    """
    return f"/proc/self/fd/{directory_fd}/{name}"


class Connection:
    """A client's end of a monitor's socket: send frames, receive them in order."""

    def __init__(self, sock: socket.socket):
        self.socket = sock
        self._reader = Reader()
        self._queue: deque[Frame] = deque()
        self._ended = False
        self._monitor: int | None = None  # a pidfd of the monitor, once it has said its pid

    @classmethod
    def to(cls, directory: Path, name: str) -> Connection | None:
        """Connect to the socket ``name`` in ``directory``; None if no monitor listens there."""
        directory_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(socket_path(directory_fd, name))
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return None
        finally:
            os.close(directory_fd)
        return cls(sock)

    def fileno(self) -> int:
        return self.socket.fileno()

    def send(self, kind: Kind, payload: bytes = b"") -> None:
        self.socket.sendall(encode(kind, payload))

    def send_control(self, kind: Kind, **fields) -> None:
        self.socket.sendall(control(kind, **fields))

    def receive(self) -> Frame | None:
        """The next frame, waiting for it (up to the socket's timeout); None once the stream
        has ended, that is once the monitor has exited."""
        while not self._queue and not self._ended:
            self._read_more()
        return self._queue.popleft() if self._queue else None

    @property
    def buffered(self) -> bool:
        """Whether frames were read ahead (by ``wait_for``) that select() cannot see."""
        return bool(self._queue)

    def receive_available(self) -> list[Frame] | None:
        """Every frame queued, after one read from the socket if none is; for a caller that
        select()s on the socket (the list is empty while a frame is only partly there).
        None once the stream has ended."""
        if not self._queue and not self._ended:
            self._read_more()
        if not self._queue and self._ended:
            return None
        frames = list(self._queue)
        self._queue.clear()
        return frames

    def wait_for(self, *kinds: Kind) -> Frame | None:
        """Read ahead to the first frame of one of ``kinds`` and return it, leaving it and every
        frame before it to ``receive``; None if the stream ends first."""
        while True:
            for frame in self._queue:
                if frame.kind in kinds:
                    return frame
            if self._ended:
                return None
            self._read_more()

    def _read_more(self) -> None:
        try:
            data = self.socket.recv(65536)
        except ConnectionResetError:
            # The monitor closed with frames of ours still unread (a resize sent as it
            # finished): the kernel says so with a reset, after all it sent. Its stream ended.
            data = b""
        for frame in self._reader.feed(data):
            if frame.kind == Kind.MONITOR:
                self._watch_monitor(frame.fields()["pid"])
            else:
                self._queue.append(frame)
        if not data:
            self._wait_for_monitor()
            self._ended = True

    def _watch_monitor(self, pid: int) -> None:
        try:
            self._monitor = os.pidfd_open(pid)
        except ProcessLookupError:  # it has exited (and been reaped) already
            self._monitor = None

    def _wait_for_monitor(self) -> None:
        """Return once the monitor process has exited, not only closed its end."""
        if self._monitor is not None:
            select.select([self._monitor], [], [])
            os.close(self._monitor)
            self._monitor = None

    def close(self) -> None:
        if self._monitor is not None:
            os.close(self._monitor)
            self._monitor = None
        self.socket.close()
