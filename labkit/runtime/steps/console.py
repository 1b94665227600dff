"""Step: a terminal of the container's own, for ``run -t`` and ``exec -t``.

An interactive shell wants a terminal: a pty, whose one side (the *slave*, ``/dev/pts/N``) is
the shell's stdin, stdout, stderr and controlling terminal, and whose other side (the *master*)
is held by whoever shows the screen and types. The pty must come from the container's own
devpts (``devices.py``), not the host's: a host terminal would be a host device inside the
container, and its number would reveal the host's sessions. So the container makes it itself:

1. it opens ``/dev/ptmx`` *inside* the container, which the kernel answers with a new pair in
   the container's devpts, ``/dev/pts/0`` first;
2. it sends the master back out over a unix socket (SCM_RIGHTS passes an open descriptor to
   another process), to the monitor, which holds it from then on: ``runc``'s console socket;
3. it starts a session of its own (setsid), makes the slave its controlling terminal
   (TIOCSCTTY), and puts the slave on descriptors 0, 1 and 2. The static init and the
   command inherit all of it.

The socket arrives as the container's stdin: the monitor starts the container with it there,
and this step replaces it with the terminal.
"""

from __future__ import annotations

import fcntl
import os
import socket
import termios
from dataclasses import dataclass

from labkit.runtime.spec import Step

MASTER_MESSAGE = b"pty master"


def take_terminal(socket_fd: int) -> None:
    """Open a pty in this mount namespace, send its master over the unix socket ``socket_fd``,
    and make its slave this process's controlling terminal, stdin, stdout and stderr."""
    master, slave = os.openpty()  # /dev/ptmx, then the slave through the master (TIOCGPTPEER)
    channel = socket.socket(fileno=socket_fd)
    try:
        socket.send_fds(channel, [MASTER_MESSAGE], [master])
    finally:
        channel.detach()
    os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for standard in (0, 1, 2):
        os.dup2(slave, standard)
    os.close(slave)


def receive_master(channel: socket.socket) -> int | None:
    """The master a ``take_terminal`` sent on the other end of ``channel``; None if it ended
    without one (the container failed before this step)."""
    _, descriptors, _, _ = socket.recv_fds(channel, len(MASTER_MESSAGE), 1)
    return descriptors[0] if descriptors else None


@dataclass(frozen=True)
class Console(Step):
    """Give the command a pty of the container's devpts; its master goes out over stdin."""

    def apply(self) -> None:
        take_terminal(0)
