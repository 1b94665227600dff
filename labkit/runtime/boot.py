"""Start a labkit function in a fresh, lean Python process.

The helper processes of the lab (a container's monitor, the ``exec`` helper) start often and
must not inherit the caller's Python setup: ``-I`` ignores the caller's PYTHON* variables, user
site and working directory, and ``-S`` skips the ``site`` module and the start-up hooks of the
packages installed (their .pth files). They start tens of milliseconds sooner, and find labkit
and the lab's installed packages (pyroute2, for a container on the bridge) by path: both
directories are given on their command line.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
# labkit's own directory first, then the lab's installed packages (the venv's site-packages).
SEARCH_PATH = ":".join([PACKAGE_ROOT, sysconfig.get_path("purelib")])

_BOOT = ("import importlib, sys; sys.path[:0] = sys.argv[1].split(':'); "
         "module, _, function = sys.argv[2].partition(':'); "
         "sys.exit(getattr(importlib.import_module(module), function)(sys.argv[3:]))")


def python_argv(entry: str, *args: str) -> list[str]:
    """The argv that runs ``entry`` (``"module:function"``) with ``args``, as a list; the
    function returns the exit code."""
    return [sys.executable, "-I", "-S", "-c", _BOOT, SEARCH_PATH, entry, *args]
