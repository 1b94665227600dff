"""``labkit ...``: the lab's command line.

Each verb names the function that carries it out as ``"module:function"``, imported only when
that verb runs, so ``labkit run`` never pays for what ``labkit doctor`` needs (rich, psutil).
A handler takes the parsed arguments and returns the exit code; a ``LabError`` it raises becomes
one line on stderr and its exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

from labkit.errors import NEEDS_ROOT, LabError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labkit", description="Namespace Lab's toolkit.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    doctor = verbs.add_parser("doctor", help="check that this machine can run the lab")
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    doctor.set_defaults(handler="labkit.doctor:command")

    images = verbs.add_parser("images", help="list the images in the store")
    images.set_defaults(handler="labkit.store:images_command")

    image = verbs.add_parser("image", help="manage images")
    image_verbs = image.add_subparsers(dest="image_verb", required=True, metavar="VERB")
    build = image_verbs.add_parser("build-base", help="build the busybox base image offline")
    build.set_defaults(handler="labkit.baseimage:build_command")

    samples = verbs.add_parser("samples", help="the lessons' C samples: list, build, run")
    samples.add_argument("action", nargs="?", choices=("list", "build", "run"), default="list")
    samples.add_argument("name", nargs="?", help="a sample, such as 02_uts")
    samples.add_argument("command", nargs=argparse.REMAINDER, help="what the sample runs")
    samples.set_defaults(handler="labkit.samples:command")

    reset = verbs.add_parser("reset", help="stop every container, unmount, empty the store and "
                                           "rebuild the base image: a broken lab as new")
    reset.set_defaults(handler="labkit.reset:command")

    _container_verbs(verbs)
    return parser


def _container_verbs(verbs) -> None:
    """docker's container verbs and flags, carried out by ``labkit.commands``."""
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
    run.add_argument("image", help="an image, such as busybox")
    run.add_argument("command", nargs=argparse.REMAINDER, help="the command (default: CMD)")
    run.set_defaults(handler="labkit.commands:run")

    execute = verbs.add_parser("exec", help="run a command in a running container")
    execute.add_argument("-i", "--interactive", action="store_true", help="pass on stdin")
    execute.add_argument("-t", "--tty", action="store_true", help="give it a terminal")
    execute.add_argument("container")
    execute.add_argument("command", nargs=argparse.REMAINDER)
    execute.set_defaults(handler="labkit.commands:exec")

    ps = verbs.add_parser("ps", help="list the running containers")
    ps.add_argument("-a", "--all", action="store_true", help="list every container")
    ps.set_defaults(handler="labkit.commands:ps")

    stop = verbs.add_parser("stop", help="stop containers: SIGTERM, then SIGKILL")
    stop.add_argument("-t", "--time", type=float, default=10.0, metavar="SECONDS",
                      help="how long to wait before SIGKILL (default: 10)")
    stop.add_argument("containers", nargs="+", metavar="CONTAINER")
    stop.set_defaults(handler="labkit.commands:stop")

    for verb, summary in (("start", "start stopped containers again"),
                          ("rm", "remove containers"), ("inspect", "show containers as JSON")):
        parser = verbs.add_parser(verb, help=summary)
        if verb == "rm":
            parser.add_argument("-f", "--force", action="store_true", help="kill it if running")
        parser.add_argument("containers", nargs="+", metavar="CONTAINER")
        parser.set_defaults(handler=f"labkit.commands:{verb}")

    logs = verbs.add_parser("logs", help="show what a container printed")
    logs.add_argument("-f", "--follow", action="store_true", help="then follow it")
    logs.add_argument("container")
    logs.set_defaults(handler="labkit.commands:logs")

    attach = verbs.add_parser("attach", help="attach this terminal to a running container")
    attach.add_argument("container")
    attach.set_defaults(handler="labkit.commands:attach")

    commit = verbs.add_parser("commit", help="make a new image from a container's changes")
    commit.add_argument("container")
    commit.add_argument("image", help="the new image's name, such as lab/web:v2")
    commit.set_defaults(handler="labkit.commit:command")

    rmi = verbs.add_parser("rmi", help="remove an image, and the layers no one else uses")
    rmi.add_argument("image")
    rmi.set_defaults(handler="labkit.rmi:command")

    gc = verbs.add_parser("gc", help="make the store agree with what runs, after a crash")
    gc.set_defaults(handler="labkit.gc:command")


def main(argv: list[str] | None = None) -> int:
    """Parse, check for root, dispatch; turn a LabError into one line and its exit code."""
    args = _parser().parse_args(argv)
    try:
        if os.geteuid() != 0:
            raise LabError(NEEDS_ROOT)
        module, function = args.handler.split(":")
        return getattr(importlib.import_module(module), function)(args)
    except LabError as error:
        print(f"labkit: {error}", file=sys.stderr)
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
