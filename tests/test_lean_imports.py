"""The cold paths stay lean: what ``labkit run`` and a fresh launcher import.

Python's start-up and imports are most of what a cold container costs (benchmarks/README.md).
rich and psutil alone take tens of milliseconds; only the views and the lessons need them, so
they must never load on the way to starting a container; nor tarfile, which only building and
committing images need. Every verb imports only its own wing (``labkit/commands.py``), so the
probe is a real ``labkit run``, whose imports Python itself lists (``-X importtime``).
"""

from __future__ import annotations

import json
import subprocess
import sys

from containers_support import removing_new_containers
from images_support import removing_new_images

from tests.conftest import LABKIT, REPO

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
    return _heavy(loaded)


def _heavy(modules) -> list[str]:
    return sorted({name.split(".")[0] for name in modules} & set(HEAVY))


def _imported_by(*argv: str) -> list[str]:
    """Every module the ``labkit`` command imports to carry out ``argv``, as it really runs."""
    done = subprocess.run([sys.executable, "-X", "importtime", LABKIT, *argv],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
            if line.startswith("import time:") and "|" in line][1:]  # the first is the header


def test_the_run_verb_imports_neither_rich_nor_psutil_nor_tarfile(base_image):
    imported = _imported_by("run", "--rm", "--network", "none", base_image, "true")
    assert {"labkit.commands", "labkit.engine.containers", "labkit.runtime.launch"} <= set(
        imported)
    assert _heavy(imported) == []
    assert "pyroute2" not in imported


def test_on_the_bridge_run_adds_pyroute2_and_what_it_needs_only():
    """The veth step's netlink comes from pyroute2, which imports psutil (benchmarks/README.md
    has what the bridge costs a start)."""
    imported = _imported_by("run", "--rm", "busybox", "true")
    assert "pyroute2" in imported
    assert _heavy(imported) == ["psutil"]


def test_the_probe_sees_what_a_heavy_verb_imports(base_image):
    """``commit`` digests a layer, which needs tarfile: the probe must see it load."""
    with removing_new_images(), removing_new_containers():
        subprocess.run([LABKIT, "run", "--name", "lean-probe", base_image, "true"], check=True,
                       capture_output=True, timeout=60)
        assert _heavy(_imported_by("commit", "lean-probe", "lab/lean-probe:1")) == ["tarfile"]


def test_a_cold_launcher_of_a_full_container_imports_only_the_standard_library_and_labkit():
    steps = [f"labkit.runtime.steps.{name}" for name in (
        "hostname", "pid", "ipc", "network", "rootfs", "devices", "static_init", "proc",
        "pivot_root", "hardening")]
    assert _heavy_after_importing("labkit.runtime.launch", *steps, site=False) == []


def test_the_probe_sees_a_heavy_import():
    assert _heavy_after_importing("labkit.cli", "rich.console") == ["rich"]
    assert _heavy_after_importing("labkit.cli", "labkit.engine.digest") == ["tarfile"]
