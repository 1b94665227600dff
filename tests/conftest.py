"""Fixtures for the tests (the guard and the private store are in the top-level conftest.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LABKIT = str(Path(sys.executable).with_name("labkit"))
# A user with no privilege at all: the tests that check the lab's refusals run as this.
AS_NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]


@pytest.fixture(scope="session")
def base_image():
    """The busybox base image, built once into the session's store."""
    subprocess.run([LABKIT, "image", "build-base"], check=True, capture_output=True)
    return "busybox"


@pytest.fixture(scope="session")
def public_lab():
    """A copy of lab.sh and labkit/ that any user may read, with a ``labkit`` any user may run.

    The tests that drop to uid 65534 check the lab's own refusal ("needs root"), which they can
    only reach if nobody can open the files: a clone in root's home (0700), or in a user's home
    (0700 on Debian, 0750 on Ubuntu), is out of nobody's reach, and so is the venv in it. The
    copy runs on the distribution's Python, as a logged-in user's ``labkit`` would.
    """
    with tempfile.TemporaryDirectory(prefix="labkit-public-") as top:
        root = Path(top)
        root.chmod(0o755)
        shutil.copy2(REPO / "lab.sh", root / "lab.sh")
        shutil.copytree(REPO / "labkit", root / "labkit",
                        ignore=shutil.ignore_patterns("__pycache__"))
        launcher = root / "labkit-command"
        launcher.write_text(f"#!/usr/bin/python3\nimport sys\nsys.path.insert(0, {top!r})\n"
                            "from labkit.cli import command\ncommand()\n")
        launcher.chmod(0o755)
        yield root
