"""``labkit ...``: the lab's command line.

Each verb is carried out by the function of its name in ``labkit.commands``, imported only once
the arguments are parsed, and each of those imports only the wing it needs, so ``labkit run``
never pays for what ``labkit doctor`` needs (rich, psutil). A handler takes the parsed arguments
and returns the exit code; a ``LabError`` it raises becomes one line on stderr and an exit code,
as docker's would be. So does a usage error: one line, exit 125.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from labkit.errors import LAB_ERROR, NEEDS_ROOT, LabError

# The verbs whose exit code is a container's command's: the lab's own failure is 125 there, so
# that a script can tell it from the command's. Every other verb exits 1 for it, as docker's do.
RUNS_A_COMMAND = frozenset({"run", "exec"})


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 125, as docker reports it."""

    def error(self, message: str):
        verb = self.prog.removeprefix("labkit").strip()
        self.exit(LAB_ERROR, f"labkit: {verb + ': ' if verb else ''}{message} "
                             f"(see '{self.prog} --help')\n")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The arguments; what no verb knows is a usage error of that verb, named as such."""
    parser = _Parser(prog="labkit", description="Namespace Lab's toolkit.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    _lab_verbs(verbs)
    _container_verbs(verbs)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        verbs.choices[args.verb].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _lab_verbs(verbs) -> None:
    """The lab's own verbs: the machine, the samples, the base image, a reset."""
    doctor = verbs.add_parser("doctor", help="check that this machine can run the lab")
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")

    verbs.add_parser("images", help="list the images in the store")

    image = verbs.add_parser("image", help="manage images")
    image_verbs = image.add_subparsers(dest="image_verb", required=True, metavar="VERB")
    image_verbs.add_parser("build-base", help="build the busybox base image offline")

    samples = verbs.add_parser("samples", help="the lessons' C samples: list, build, run")
    samples.add_argument("action", nargs="?", choices=("list", "build", "run"), default="list")
    samples.add_argument("name", nargs="?", help="a sample, such as 02_uts")
    samples.add_argument("command", nargs=argparse.REMAINDER, help="what the sample runs")

    verbs.add_parser("reset", help="stop every container, unmount, empty the store and "
                                   "rebuild the base image: a broken lab as new")


def _container_verbs(verbs) -> None:
    """docker's container and image verbs, with docker's flags."""
    # `run -h` is the hostname, as in docker, so its help is --help only.
    run = verbs.add_parser("run", help="run a command in a new container", add_help=False)
    run.add_argument("--help", action="help", help="show this help and exit")
    run.add_argument("-d", "--detach", action="store_true",
                     help="run in the background and print the container's id")
    run.add_argument("-i", "--interactive", action="store_true", help="pass on stdin")
    run.add_argument("-t", "--tty", action="store_true", help="give the command a terminal")
    run.add_argument("--rm", action="store_true", help="remove the container when it exits")
    run.add_argument("--name", help="a name for the container (default: a random one)")
    run.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE",
                     help="set an environment variable")
    run.add_argument("-v", "--volume", action="append", default=[], metavar="HOST:CTR[:ro]",
                     help="bind a host directory or file into the container")
    run.add_argument("-h", "--hostname", help="the container's hostname (default: its id)")
    run.add_argument("--security-opt", action="append", default=[], metavar="seccomp=unconfined",
                     help="run without the default seccomp filter")
    run.add_argument("--network", default="bridge", metavar="bridge|none|host",
                     help="the lab's bridge (default), loopback only, or the host's network")
    run.add_argument("-p", "--publish", action="append", default=[],
                     metavar="[HOSTIP:][HOSTPORT:]PORT[/udp]",
                     help="publish a port on the host (on 127.0.0.1 unless HOSTIP says)")
    run.add_argument("-P", "--publish-all", action="store_true",
                     help="publish every exposed port on a free host port")
    run.add_argument("--expose", action="append", default=[], metavar="PORT[/udp]",
                     help="expose a port (for -P and --link) without publishing it")
    run.add_argument("--link", action="append", default=[], metavar="NAME[:ALIAS]",
                     help="find a running container by ALIAS, in /etc/hosts and variables")
    run.add_argument("-m", "--memory", metavar="SIZE", help="a memory limit, such as 64m")
    run.add_argument("--memory-swap", metavar="SIZE",
                     help="memory and swap together (-1: no limit to swap)")
    run.add_argument("--cpus", metavar="N", help="CPU time, in cores, such as 0.5")
    run.add_argument("--cpu-shares", metavar="WEIGHT", help="a CPU weight (1024 is one share)")
    run.add_argument("--pids-limit", metavar="N",
                     help="the most processes at once (default 1024; -1: no limit)")
    run.add_argument("image", help="an image, such as busybox")
    run.add_argument("command", nargs=argparse.REMAINDER, help="the command (default: CMD)")

    execute = verbs.add_parser("exec", help="run a command in a running container")
    execute.add_argument("-i", "--interactive", action="store_true", help="pass on stdin")
    execute.add_argument("-t", "--tty", action="store_true", help="give it a terminal")
    execute.add_argument("container")
    execute.add_argument("command", nargs=argparse.REMAINDER)

    ps = verbs.add_parser("ps", help="list the running containers")
    ps.add_argument("-a", "--all", action="store_true", help="list every container")
    ps.add_argument("-q", "--quiet", action="store_true", help="print only their ids")

    stop = verbs.add_parser("stop", help="stop containers: SIGTERM, then SIGKILL")
    stop.add_argument("-t", "--time", type=float, default=10.0, metavar="SECONDS",
                      help="how long to wait before SIGKILL (default: 10)")
    stop.add_argument("containers", nargs="+", metavar="CONTAINER")

    for verb, summary in (("start", "start stopped containers again"),
                          ("rm", "remove containers"), ("inspect", "show containers as JSON")):
        parser = verbs.add_parser(verb, help=summary)
        if verb == "rm":
            parser.add_argument("-f", "--force", action="store_true", help="kill it if running")
        parser.add_argument("containers", nargs="+", metavar="CONTAINER")

    stats = verbs.add_parser("stats", help="what running containers use: CPU, memory, pids")
    stats.add_argument("--no-stream", action="store_true", help="print once, and exit")
    stats.add_argument("containers", nargs="*", metavar="CONTAINER")

    port = verbs.add_parser("port", help="list a container's published ports")
    port.add_argument("container")
    port.add_argument("port", nargs="?", metavar="PORT[/PROTO]", help="only this one")

    logs = verbs.add_parser("logs", help="show what a container printed")
    logs.add_argument("-f", "--follow", action="store_true", help="then follow it")
    logs.add_argument("container")

    attach = verbs.add_parser("attach", help="attach this terminal to a running container")
    attach.add_argument("container")

    commit = verbs.add_parser("commit", help="make a new image from a container's changes")
    commit.add_argument("container")
    commit.add_argument("image", help="the new image's name, such as lab/web:v2")

    rmi = verbs.add_parser("rmi", help="remove images, and the layers no one else uses")
    rmi.add_argument("images", nargs="+", metavar="IMAGE")

    verbs.add_parser("gc", help="make the store agree with what runs, after a crash")


def main(argv: list[str] | None = None) -> int:
    """Parse, check for root, dispatch to ``commands.VERB``; a LabError becomes one line."""
    args = _parse(argv)
    try:
        if os.geteuid() != 0:
            raise LabError(NEEDS_ROOT, exit_code=1)
        from labkit import commands

        return getattr(commands, args.verb)(args)
    except LabError as error:
        print(f"labkit: {error}", file=sys.stderr)
        if error.exit_code == LAB_ERROR and args.verb not in RUNS_A_COMMAND:
            return 1
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader left early (labkit logs -f | head): say no more
        return 141  # 128 + SIGPIPE, as a shell reports a command that a closed pipe ended


def command() -> None:
    """The ``labkit`` command (the script pyproject.toml installs): ``main``, then leave at once.

    Python's orderly exit takes every imported module apart, object by object: tens of
    milliseconds, for nothing the kernel does not do as the process ends anyway (every file
    the lab writes is closed by its with-block). So flush what was printed, and ``os._exit``.
    """
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # its reader left before the last of it (labkit ps | true)
        code = 141
    with contextlib.suppress(OSError):
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    command()
