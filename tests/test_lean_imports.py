"""The cold paths stay lean: what ``labkit run`` and a fresh launcher import.

Python's start-up and imports are most of what a cold container costs (benchmarks/README.md).
rich and psutil alone take tens of milliseconds; only the views and the lessons need them, so
they must never load on the way to starting a container; nor tarfile, which only building and
committing images need.
"""

from __future__ import annotations

import json
import subprocess
import sys

from labkit import cli
from tests.conftest import REPO

HEAVY = ("rich", "psutil", "tarfile")

# Imports the modules named after labkit's directory, then prints every module then loaded.
LOADED = ("import importlib, json, sys; sys.path.insert(0, sys.argv[1]); "
          "[importlib.import_module(name) for name in sys.argv[2:]]; "
          "print(json.dumps(sorted(sys.modules)))")


def _heavy_after_importing(*modules: str, site: bool = True) -> list[str]:
    """The heavy modules a fresh interpreter has loaded once it imported ``modules``: with the
    venv's site-packages, as ``labkit`` runs, or without (-S), as a launcher runs."""
    argv = [sys.executable, "-I", *([] if site else ["-S"]), "-c", LOADED, str(REPO), *modules]
    loaded = json.loads(subprocess.run(argv, capture_output=True, text=True,
                                       check=True).stdout)
    assert set(modules) <= set(loaded)
    return sorted({name.split(".")[0] for name in loaded} & set(HEAVY))


def test_the_run_verb_imports_neither_rich_nor_psutil_nor_tarfile():
    module = cli._parser().parse_args(["run", "busybox"]).handler.split(":")[0]
    assert _heavy_after_importing("labkit.cli", module) == []


def test_a_cold_launcher_of_a_full_container_imports_only_the_standard_library_and_labkit():
    steps = [f"labkit.runtime.steps.{name}" for name in (
        "hostname", "pid", "ipc", "network", "rootfs", "devices", "static_init", "proc",
        "pivot_root", "hardening")]
    assert _heavy_after_importing("labkit.runtime.launch", *steps, site=False) == []


def test_the_probe_sees_a_heavy_import():
    assert _heavy_after_importing("labkit.cli", "rich.console") == ["rich"]
    assert _heavy_after_importing("labkit.cli", "labkit.digest") == ["tarfile"]
