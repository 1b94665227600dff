"""What each verb of ``labkit`` does: docker's flags in, docker's output and exit codes out.

Every handler takes the parsed arguments (``cli.py``), imports the one wing it needs, calls it,
and prints what docker would: the wings return facts, and only this module and ``show`` decide
how they look. Exit codes are docker's: ``run`` and ``exec`` exit 125 when the lab fails (a bad
name, an unknown image, a container that is not running), 126 or 127 when the command cannot be
executed or found, and otherwise with the command's own code; the other verbs exit 1 on error.
A verb given several containers (``stop a b``) does what it can and reports each failure on a
line of its own.

A container belongs to its monitor, not to the command that started it: ``labkit run`` in the
foreground is only its first client. Ctrl-C on it is passed to the container as SIGINT. If it
is killed outright (``kill -9``), the container runs on, its output still logged, exactly as a
docker container outlives a killed ``docker run``: ``labkit attach`` joins it again, ``labkit
stop`` ends it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from labkit.errors import LabError

# ---------------------------------------------------------------------------------------------
# The machine and the lab


def doctor(args) -> int:
    """``labkit doctor [--json]``: exit 0 when the lab can run here, 1 otherwise."""
    import json
    from dataclasses import asdict

    from labkit import doctor, show

    checks = doctor.run_checks()
    ok = all(c.ok for c in checks)
    if args.json:
        print(json.dumps({"ok": ok, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        show.echo(doctor.table(checks))
        for line in doctor.problems(checks):
            print(line)  # below the table, not in it, so a long remedy stays on one line
    return 0 if ok else 1


def samples(args) -> int:
    """``labkit samples [list | build NAME | run NAME CMD...]``: the samples from a terminal.

    ``build`` prints the binary's path, to run it by hand with a terminal of your own; ``run``
    runs it with a command and a timeout, as a lesson does, and passes on its exit code.
    """
    from labkit.lessons import samples

    if args.action == "list":
        print("\n".join(samples.names()))
        return 0
    if args.name is None:
        raise LabError(f"say which sample to {args.action}: one of {', '.join(samples.names())}")
    if args.action == "build":
        print(samples.build(args.name))
        return 0
    result = samples.run(args.name, args.command or None)
    print(result.stdout, end="")
    print(result.stderr, end="", file=sys.stderr)
    return result.exit_code


def reset(args) -> int:
    """``labkit reset``: say what each step did, as it is done."""
    from labkit.engine import reset

    for line in reset.reset(progress=lambda step: print(f"  {step}", flush=True)):
        print(line, flush=True)
    return 0


def gc(args) -> int:
    """``labkit gc``: one line per thing it put right."""
    from labkit.engine import reconcile

    print("\n".join(reconcile.collect()))
    return 0


# ---------------------------------------------------------------------------------------------
# Images


def images(args) -> int:
    """``labkit images``: what the store holds, as docker lists it."""
    from labkit import show
    from labkit.engine import store

    show.echo(show.images(store.reading()))
    return 0


def image(args) -> int:
    """``labkit image build-base``: build busybox:latest, or say that it is up to date."""
    from labkit import show
    from labkit.engine import baseimage, store

    with store.writing() as lab:
        if lab.leftovers:
            print(f"removed {lab.leftovers} leftover(s) of an interrupted labkit command")
        with show.Progress("building busybox") as progress:
            image, built = baseimage.build(lab, progress=progress)
        size = store.human_size(lab.image_size(image))
    summary = f"{store.short(image.digest)} ({size})"
    print(f"built {image.reference} {summary}" if built
          else f"{image.reference} is up to date, nothing to do: {summary}")
    return 0


def commit(args) -> int:
    """``labkit commit CONTAINER IMAGE``: print the new image's digest, as docker does."""
    from labkit.engine.commit import commit

    print(commit(args.container, args.image).digest)
    return 0


def rmi(args) -> int:
    """``labkit rmi IMAGE...``: say what went, as docker does, image by image: the name, then
    the image itself by the id ``commit`` printed and ``images`` shows the start of, unless
    another name keeps it, then the layers that went with it."""
    from labkit.engine import store
    from labkit.engine.rmi import rmi

    def remove(reference: str) -> None:
        image = store.reading().image(reference)
        removed = rmi(reference)  # a missing image is its LabError, before anything is printed
        print(f"Untagged: {':'.join(store.parse_reference(reference))}")
        if all(other.digest != image.digest for other in store.reading().images()):
            print(f"Deleted: {image.digest}")
        for digest in removed:
            print(f"Deleted: {digest}")

    return _each(args.images, remove, echo=False)


# ---------------------------------------------------------------------------------------------
# Containers


def run(args) -> int:
    """``labkit run [-d] [-i] [-t] [--rm] [--name N] [-e K=V] [-v H:C[:ro]] [-h H]
    [--network MODE] [-p SPEC] [-P] [--expose PORT] [--link NAME[:ALIAS]] [-m SIZE]
    [--memory-swap SIZE] [--cpus N] [--cpu-shares W] [--pids-limit N] IMAGE [CMD]``"""
    from contextlib import closing

    from labkit.engine import containers, networking, resources
    from labkit.engine.relay import MonitorPeer, relay

    _refuse_tty_without_terminal(args)
    network = networking.NetworkOptions(args.network, args.publish, args.publish_all,
                                        args.expose, args.link)
    limits = resources.ResourceOptions(args.memory, args.memory_swap, args.cpus,
                                       args.cpu_shares, args.pids_limit)
    config, connection = containers.launch(
        args.image, args.command, attach=not args.detach, name=args.name, env=args.env,
        volumes=args.volume, hostname=args.hostname, interactive=args.interactive,
        tty=args.tty, remove=args.rm, security_opt=args.security_opt, network=network,
        resources=limits, fork=True)
    with closing(connection):
        if args.detach:
            print(config.id)
            return 0
        return relay(MonitorPeer(connection), stdin=args.interactive, terminal=args.tty)


def exec(args) -> int:
    """``labkit exec [-i] [-t] CONTAINER CMD...``"""
    import subprocess

    from labkit.engine import containers
    from labkit.engine.relay import pipe_through

    _refuse_tty_without_terminal(args)
    container = containers.running(args.container)
    if args.tty:
        return _exec_on_terminal(container, args.command, args.interactive)
    process = subprocess.Popen(containers.exec_argv(container, args.command),
                               stdin=subprocess.PIPE if args.interactive else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    return pipe_through(process, stdin=args.interactive)


def _refuse_tty_without_terminal(args) -> None:
    if args.interactive and args.tty and not os.isatty(0):
        raise LabError("the input device is not a TTY: drop -t, or run from a terminal")


def _exec_on_terminal(container, command: list[str], interactive: bool) -> int:
    """Start the helper with one end of a socket pair, on which it sends back the master of
    the pty it opens in the container; then relay between that master and this terminal."""
    import socket
    import subprocess
    from contextlib import closing

    from labkit.engine import containers
    from labkit.engine.relay import TerminalPeer, relay, wait_passing_signals
    from labkit.runtime.steps.console import receive_master

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
    from contextlib import closing

    from labkit.engine import containers
    from labkit.engine.relay import MonitorPeer, relay

    container, connection = containers.attach(args.container)
    with closing(connection):
        return relay(MonitorPeer(connection), stdin=container.config.interactive,
                     terminal=container.config.tty)


def ps(args) -> int:
    """``labkit ps [-a] [-q]``"""
    from labkit import show
    from labkit.engine import containers

    found = containers.ps(all=args.all)
    if args.quiet:
        print("".join(f"{container.short_id}\n" for container in found), end="")
    else:
        show.echo(show.containers(found))
    return 0


def start(args) -> int:
    """``labkit start CONTAINER...``"""
    from labkit.engine import containers

    return _each(args.containers, containers.start)


def stop(args) -> int:
    """``labkit stop [-t SECONDS] CONTAINER...``"""
    from labkit.engine import containers

    return _each(args.containers, lambda name: containers.stop(name, args.time))


def rm(args) -> int:
    """``labkit rm [-f] CONTAINER...``"""
    from labkit.engine import containers

    return _each(args.containers, lambda name: containers.rm(name, args.force))


def inspect(args) -> int:
    """``labkit inspect CONTAINER...``: a JSON array, as docker prints it."""
    import json

    from labkit.engine import containers

    found = []
    code = _each(args.containers, lambda name: found.append(containers.inspect(name).to_json()),
                 echo=False)
    if found:
        print(json.dumps(found, indent=2))
    return code


def stats(args) -> int:
    """``labkit stats [--no-stream] [CONTAINER...]``: a table that refreshes every second."""
    from labkit import show
    from labkit.engine import containers

    if args.no_stream:
        show.echo(show.stats(containers.stats(args.containers)))
        return 0
    show.live(lambda: show.stats(containers.stats(args.containers)))
    return 0


def port(args) -> int:
    """``labkit port CONTAINER [PORT[/PROTO]]``: ``80/tcp -> 127.0.0.1:32768`` per line, or
    with a port only where it is published."""
    from labkit.engine import containers

    for published in containers.port(args.container, args.port):
        print(published if args.port is None else f"{published.host_ip}:{published.host_port}")
    return 0


def logs(args) -> int:
    """``labkit logs [-f] CONTAINER``: stdout here to stdout, stderr to stderr."""
    from labkit.engine import containers

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
