"""The handle of a launcher that subprocess did not start.

A cold launcher's handle is a ``subprocess.Popen``: it turns ``stdin=``, ``stdout=`` and
``stderr=`` into descriptors, and reads the pipes back in ``communicate``. A launcher forked by
the warm helper (``warm.py``) or by a container's monitor (``forked.py``) takes the same
arguments and its handle must behave the same, so that a container gives the same ``Result``
however it was started: ``child_streams`` makes the descriptors, and ``Handle`` is the part of
Popen that ``api.ContainerProcess`` uses, but for how each kind waits and signals.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
from abc import ABC, abstractmethod


class Handle(ABC):
    """Popen's ``terminate``, ``kill`` and ``communicate``, on top of the ``pid``, ``poll``,
    ``wait`` and ``send_signal`` of a subclass, which sets ``returncode`` once its launcher has
    exited; ``pipes`` are the caller's ends of the pipes, as ``child_streams`` gives them."""

    pid: int
    returncode: int | None

    def __init__(self, pipes: tuple) -> None:
        self.returncode = None
        self._pipes = pipes

    @abstractmethod
    def poll(self) -> int | None: ...

    @abstractmethod
    def wait(self, timeout: float | None = None) -> int: ...

    @abstractmethod
    def send_signal(self, number: int) -> None: ...

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, input: str | None = None) -> tuple[str | None, str | None]:
        """Write ``input`` to the piped stdin, read the piped stdout and stderr to their end
        while doing so, then wait; as ``Popen.communicate`` does, in text."""
        pipes, self._pipes = self._pipes, (None, None, None)
        output = _communicate(pipes, input)
        self.wait()
        return output


def child_streams(stdin, stdout, stderr) -> tuple[list[int], tuple]:
    """The launcher's three standard descriptors, from what ``subprocess.Popen`` would take
    (None, DEVNULL, PIPE, STDOUT for stderr, a descriptor or a file); and the caller's ends of
    the pipes made for PIPE (None where there is none). Each of the first is the caller's to
    close once the launcher has them."""
    theirs: list[int] = []
    ours: list[int | None] = []
    for number, stream in enumerate((stdin, stdout, stderr)):
        mine = None
        if stream is None:
            fd = os.dup(number)  # the caller's own stream, as a child inherits it
        elif stream == subprocess.DEVNULL:
            fd = os.open(os.devnull, os.O_RDWR)
        elif stream == subprocess.PIPE:
            read_end, write_end = os.pipe()
            fd, mine = (read_end, write_end) if number == 0 else (write_end, read_end)
        elif stream == subprocess.STDOUT and number == 2:
            fd = os.dup(theirs[1])
        else:
            fd = os.dup(stream if isinstance(stream, int) else stream.fileno())
        theirs.append(fd)
        ours.append(mine)
    return theirs, tuple(ours)


def _communicate(pipes: tuple, input: str | None) -> tuple[str | None, str | None]:
    """Write ``input`` to the piped stdin while reading the piped stdout and stderr to their
    end, and close them all; what each said, in text (None for a stream not piped)."""
    stdin, stdout, stderr = pipes
    output = _exchange(stdin, (input or "").encode(), [fd for fd in (stdout, stderr)
                                                       if fd is not None])
    return (_text(output.get(stdout)) if stdout is not None else None,
            _text(output.get(stderr)) if stderr is not None else None)


def _exchange(stdin: int | None, data: bytes, outputs: list[int]) -> dict[int, bytes]:
    """Write ``data`` to ``stdin`` (then close it) while reading each of ``outputs`` to its
    end, so that neither side waits for the other; close them all. What each output said."""
    chunks: dict[int, list[bytes]] = {fd: [] for fd in outputs}
    with selectors.DefaultSelector() as selector:
        if stdin is not None and data:
            os.set_blocking(stdin, False)
            selector.register(stdin, selectors.EVENT_WRITE)
        elif stdin is not None:
            os.close(stdin)
        for fd in outputs:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            for key, _ in selector.select():
                if key.fd == stdin:
                    try:  # non-blocking: the kernel takes what fits in the pipe now
                        data = data[os.write(stdin, data):]
                    except BrokenPipeError:
                        data = b""  # the command exited without reading it all, as it may
                    done = not data
                else:
                    chunk = os.read(key.fd, 65536)
                    chunks[key.fd].append(chunk)
                    done = not chunk
                if done:
                    selector.unregister(key.fd)
                    os.close(key.fd)
    return {fd: b"".join(parts) for fd, parts in chunks.items()}


def _text(data: bytes | None) -> str:
    """Bytes as Popen(encoding="utf-8", errors="replace") reads them, newlines made universal."""
    text = (data or b"").decode("utf-8", "replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")
