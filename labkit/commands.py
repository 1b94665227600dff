"""The container verbs of ``labkit``: docker's flags in, docker's output and exit codes out.

Each handler takes the parsed arguments (``cli.py``), calls ``labkit.containers``, and prints
what docker would. Exit codes are docker's: ``run`` and ``exec`` exit 125 when the lab fails
(a bad name, an unknown image, a container that is not running), 126 or 127 when the command
cannot be executed or found, and otherwise with the command's own code; the other verbs exit 1
on error. A verb given several containers (``stop a b``) does what it can and reports each
failure on a line of its own.

A container belongs to its monitor, not to the command that started it: ``labkit run`` in the
foreground is only its first client. Ctrl-C on it is passed to the container as SIGINT. If it
is killed outright (``kill -9``), the container runs on, its output still logged, exactly as a
docker container outlives a killed ``docker run``: ``labkit attach`` joins it again, ``labkit
stop`` ends it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager

from labkit import containers
from labkit.console import MonitorPeer, TerminalPeer, relay, wait_passing_signals
from labkit.errors import LabError
from labkit.runtime.spec import LAB_ERROR
from labkit.runtime.steps.console import receive_master


@contextmanager
def _lab_errors_as_125() -> Iterator[None]:
    """``run`` and ``exec`` report the lab's own failures with 125, as docker does."""
    try:
        yield
    except LabError as error:
        if error.exit_code == 1:
            raise LabError(str(error), exit_code=LAB_ERROR) from None
        raise


def run(args) -> int:
    """``labkit run [-d] [-i] [-t] [--rm] [--name N] [-e K=V] [-v H:C[:ro]] [-h H] IMAGE [CMD]``"""
    with _lab_errors_as_125():
        if args.interactive and args.tty and not os.isatty(0):
            raise LabError("the input device is not a TTY: drop -t, or run from a terminal")
        config, connection = containers.launch(
            args.image, args.command, attach=not args.detach, name=args.name, env=args.env,
            volumes=args.volume, hostname=args.hostname, interactive=args.interactive,
            tty=args.tty, remove=args.rm, fork=True)
    with closing(connection):
        if args.detach:
            print(config.id)
            return 0
        return relay(MonitorPeer(connection), stdin=args.interactive, terminal=args.tty)


def exec(args) -> int:
    """``labkit exec [-i] [-t] CONTAINER CMD...``"""
    with _lab_errors_as_125():
        if args.interactive and args.tty and not os.isatty(0):
            raise LabError("the input device is not a TTY: drop -t, or run from a terminal")
        container = containers.running(args.container)
        if args.tty:
            return _exec_on_terminal(container, args.command, args.interactive)
        process = subprocess.Popen(containers.exec_argv(container, args.command),
                                   stdin=None if args.interactive else subprocess.DEVNULL,
                                   start_new_session=True)
    return wait_passing_signals(process)


def _exec_on_terminal(container: containers.Container, command: list[str],
                      interactive: bool) -> int:
    """Start the helper with one end of a socket pair, on which it sends back the master of
    the pty it opens in the container; then relay between that master and this terminal."""
    ours, theirs = socket.socketpair()
    with closing(ours), closing(theirs):
        process = subprocess.Popen(containers.exec_argv(container, command, theirs.fileno()),
                                   pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        theirs.close()
        master = receive_master(ours)
    if master is None:  # the helper failed before it had a terminal, and said why on stderr
        return wait_passing_signals(process)
    return relay(TerminalPeer(master, process), stdin=interactive, terminal=True)


def attach(args) -> int:
    """``labkit attach CONTAINER``: its output here, input there if it was run with -i."""
    container, connection = containers.attach(args.container)
    with closing(connection):
        return relay(MonitorPeer(connection), stdin=container.config.interactive,
                     terminal=container.config.tty)


def ps(args) -> int:
    """``labkit ps [-a]``"""
    from labkit.show import echo

    echo(containers.table(containers.ps(all=args.all)))
    return 0


def start(args) -> int:
    """``labkit start CONTAINER...``"""
    return _each(args.containers, containers.start)


def stop(args) -> int:
    """``labkit stop [-t SECONDS] CONTAINER...``"""
    return _each(args.containers, lambda name: containers.stop(name, args.time))


def rm(args) -> int:
    """``labkit rm [-f] CONTAINER...``"""
    return _each(args.containers, lambda name: containers.rm(name, args.force))


def inspect(args) -> int:
    """``labkit inspect CONTAINER...``: a JSON array, as docker prints it."""
    found = []
    code = _each(args.containers, lambda name: found.append(containers.inspect(name).to_json()),
                 echo=False)
    if found:
        print(json.dumps(found, indent=2))
    return code


def logs(args) -> int:
    """``labkit logs [-f] CONTAINER``: stdout here to stdout, stderr to stderr."""
    for entry in containers.log_entries(args.container, follow=args.follow):
        stream = sys.stdout if entry.stream == "stdout" else sys.stderr
        stream.write(entry.text)
        stream.flush()
    return 0


def _each(references: list[str], action: Callable[[str], object], echo: bool = True) -> int:
    """Do ``action`` on each container, print its reference as docker does, and go on past a
    failure: one line each, exit code 1 if any."""
    code = 0
    for reference in references:
        try:
            action(reference)
        except LabError as error:
            print(f"labkit: {error}", file=sys.stderr)
            code = 1
        else:
            if echo:
                print(reference)
    return code
