"""The report pipe: how the launcher and the container tell their caller what happened.

A container's stdout and stderr belong to its command, so the lab's own news travels on a pipe
of its own, opened by the caller and inherited by the launcher, the container's init and the
command until it execs. Each fact is one JSON object on one line, written with a single write()
shorter than PIPE_BUF, so the lines of the three processes never interleave. The caller merges
them into one dict:

- ``init_pid``: the host pid of the container's first process (from the launcher);
- ``namespaces``: ``{"uts": inode, ...}``, the namespaces the command will run in (from init,
  once the steps are applied);
- ``started``: true once the start is over (from the launcher, see ``launch.py``): the
  command has been exec'd, unless an ``error`` came first. Until then a container has not
  started, as ``docker run`` says of a command it cannot find;
- ``error``: the one-line reason the lab failed, from whichever process saw it.

The pipe is close-on-exec: a command that runs never holds it, and once the launcher exits the
caller reads to the end.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections.abc import Iterator


class Reporter:
    """The writing end, in the launcher and the processes it forks."""

    def __init__(self, fd: int):
        os.set_inheritable(fd, False)
        self.fd = fd

    def send(self, **facts) -> None:
        # If the caller stopped listening, the container carries on without an audience.
        with contextlib.suppress(BrokenPipeError):
            os.write(self.fd, json.dumps(facts).encode() + b"\n")

    def fail(self, error: Exception | str) -> None:
        """Report a failure as one line, on stderr for people and here for the caller."""
        print(f"labkit: {error}", file=sys.stderr, flush=True)
        self.send(error=str(error))

    def close(self) -> None:
        os.close(self.fd)


def facts(stream: io.BufferedIOBase) -> Iterator[dict]:
    """The facts on the reading end, one dict per line, as they arrive."""
    for line in stream:
        yield json.loads(line)
