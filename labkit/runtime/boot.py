"""Start a labkit function in a fresh, lean Python process.

The helper processes of the lab (a container's monitor, the ``exec`` helper) start often and
must not inherit the caller's Python setup: ``-I`` ignores the caller's PYTHON* variables, user
site and working directory, and ``-S`` skips site-packages and their start-up hooks. They then
see only the standard library and labkit, found by path, and start tens of milliseconds sooner.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

_BOOT = ("import importlib, sys; sys.path.insert(0, sys.argv[1]); "
         "module, _, function = sys.argv[2].partition(':'); "
         "sys.exit(getattr(importlib.import_module(module), function)(sys.argv[3:]))")


def python_argv(entry: str, *args: str) -> list[str]:
    """The argv that runs ``entry`` (``"module:function"``) with ``args``, as a list; the
    function returns the exit code."""
    return [sys.executable, "-I", "-S", "-c", _BOOT, PACKAGE_ROOT, entry, *args]
