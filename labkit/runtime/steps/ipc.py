"""Step: System V IPC and POSIX message queues of the container's own (the IPC namespace).

Processes can share memory and messages without any file: System V shared memory segments,
semaphore sets and message queues are named by a number (``ipcs`` lists them), and POSIX
message queues by a name. Such a number is a door between two processes that knew nothing of
each other, so a container that shared the host's would see, and could attach to, the host's
segments. In a new IPC namespace those tables start empty, and the host never sees what the
container creates. Like the PID namespace, there is nothing to do inside: a new, empty table is
the whole point.
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit.kernel.syscalls import CLONE_NEWIPC
from labkit.runtime.spec import Step


@dataclass(frozen=True)
class IpcNamespace(Step):
    """Give the container empty IPC tables of its own."""

    namespaces = CLONE_NEWIPC
