"""The launcher: the process that turns a spec into a running container (the parent's side).

The caller starts it with subprocess (``api.py``), so that unshare, mount and fork happen in a
new single-threaded process and never in the caller (docs/safety.md rule 1); or a single-threaded
process of the lab's own, the warm helper or a container's monitor (``spawn/``), forks it, and
the child calls ``become`` here, with the imports already done. The launcher gets a report pipe
and a spec, and then:

1. unshares every namespace the spec's steps need, in one call;
2. forks, because a new PID namespace only takes the children forked after unshare(): the child
   is the container's first process, PID 1 when the spec has a PID namespace, and runs
   ``init.main``: the steps, then an init for the command. The child takes the write end of a
   *start pipe* along, and hands it down to the command, close-on-exec;
3. waits until no process holds the start pipe any more, which says the command has been
   exec'd (or whatever failed before has reported why), and reports it: the container has
   started, as docker means it. The launcher, not init, waits on the pipe: it lives outside the
   container, where no process of the container can reach its descriptors;
4. supervises the child with init's own loop: forwards the caller's signals, kills the
   container when the spec's timeout passes, and exits with the container's status.

Errors are reported on the pipe and as one line on stderr, with docker's exit codes (errors.py).
Python's start-up is most of a container's start-up cost, so this module and what it imports
stay small: the standard library, the syscalls and the steps a spec names.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections.abc import Sequence

from labkit.errors import LAB_ERROR, LabError
from labkit.kernel.syscalls import unshare
from labkit.runtime import init
from labkit.runtime.forking import close_all_but, exit_with
from labkit.runtime.report import Reporter
from labkit.runtime.spec import Spec

USAGE = "usage: launch REPORT_FD SPEC_JSON (started by labkit.runtime.api, not by hand)"


def main(argv: list[str]) -> int:
    """The launcher in a fresh interpreter: ``REPORT_FD SPEC_JSON``, as ``api`` starts it."""
    if len(argv) != 2 or not argv[0].isdigit():
        print(f"labkit: {USAGE}", file=sys.stderr)
        return LAB_ERROR
    return from_json(Reporter(int(argv[0])), argv[1])


def from_json(report: Reporter, spec_json: str) -> int:
    """Launch the spec that crossed to this process as JSON (an exec, a socket)."""
    try:
        spec = Spec.from_json(spec_json)
    except LabError as error:
        report.fail(error)
        return LAB_ERROR
    return launch(spec, report)


def become(report_fd: int, standard: Sequence[int]) -> Reporter:
    """In a process forked to be a launcher (by the warm helper, or by a container's monitor):
    take ``standard`` as stdin, stdout and stderr, and keep no other descriptor of the process
    it was forked from but the report pipe, as a fresh launcher has none. Its reporter."""
    for number, fd in enumerate(standard):
        os.dup2(fd, number)
    close_all_but(report_fd)
    return Reporter(report_fd)


def launch(spec: Spec, report: Reporter) -> int:
    """Unshare, fork the container's first process, report its start, supervise it."""
    try:
        unshare(spec.namespaces)
    except OSError as error:
        report.fail(error)
        return LAB_ERROR
    signal_mask = init.block_signals()
    waiting, start = os.pipe()  # close-on-exec, as Python makes every descriptor
    child = os.fork()
    if child == 0:
        os.close(waiting)
        exit_with(lambda: init.main(spec, report, signal_mask, start))
    os.close(start)
    report.send(init_pid=child)
    began = time.monotonic()
    _report_start(waiting, report, spec.timeout)
    status = init.supervise(child, _left(spec.timeout, began))
    if status is None:
        os.kill(child, signal.SIGKILL)
        report.fail(f"the command ran longer than its timeout of {spec.timeout:g} s; "
                    f"the container was killed")
        status = init.supervise(child)
    return status


def _report_start(waiting: int, report: Reporter, timeout: float | None) -> None:
    """Report ``started`` once the start pipe's last write end is closed: the command's exec
    closed it, or every process that held it has exited, having reported why. A container
    whose steps hang past the timeout reports nothing here; ``supervise`` then kills it."""
    ended = select.select([waiting], [], [], timeout)[0]
    os.close(waiting)  # before the caller hears of it: it may look at our descriptors then
    if ended:
        report.send(started=True)


def _left(timeout: float | None, began: float) -> float | None:
    """What is left of ``timeout`` seconds since ``began``: one deadline for the whole start."""
    return None if timeout is None else max(0.0, timeout - (time.monotonic() - began))
