"""``labkit ...``: the lab's command line.

Each verb names the function that carries it out as ``"module:function"``, imported only when
that verb runs, so ``labkit run`` never pays for what ``labkit doctor`` needs (rich, psutil).
A handler takes the parsed arguments and returns the exit code; a ``LabError`` it raises becomes
one line on stderr and its exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from labkit.errors import LabError

NEEDS_ROOT = ("labkit needs root: run it inside the lab VM (vagrant ssh, then sudo -i), "
              "or with sudo on a machine you can break")


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

    return parser


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


if __name__ == "__main__":
    sys.exit(main())
