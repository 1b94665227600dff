"""Setup: every learner gets the versions the lock names, and sees what is being installed.

The lock (requirements.txt) is made by ``./lab.sh lock`` from requirements.in and pyproject.toml's
dependencies. These tests hold it to its word: it pins every package with its hashes and serves
every requirement; the venv the tests run in holds exactly what it names for this machine; and
setup from nothing, on a copy of the repository, prints one line per phase and no warnings.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

# What `python3 -m venv` puts in a venv by itself, before the lock is installed.
VENV_OWN = {"pip", "setuptools"}


def lock_entries() -> dict[str, tuple[Requirement, list[str]]]:
    """The lock's pins by package name, each with the hashes that follow it."""
    entries: dict[str, tuple[Requirement, list[str]]] = {}
    for block in re.split(r"\n(?=\S)", (REPO / "requirements.txt").read_text()):
        if block.startswith("#"):
            continue
        first, *rest = block.splitlines()
        pin = Requirement(first.rstrip(" \\"))
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", "\n".join(rest))
        entries[canonicalize_name(pin.name)] = (pin, hashes)
    return entries


def pinned_version(pin: Requirement) -> str:
    [spec] = pin.specifier
    assert spec.operator == "==", pin
    return spec.version


def wanted_here() -> dict[str, str]:
    """What the lock names for this machine: its pins whose markers hold here."""
    return {name: pinned_version(pin) for name, (pin, _) in lock_entries().items()
            if pin.marker is None or pin.marker.evaluate()}


def asked_for() -> list[Requirement]:
    """What requirements.in and pyproject.toml ask for, by name and lowest version."""
    lines = (REPO / "requirements.in").read_text().splitlines()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in lines if line and not line.startswith("#")] + \
        [Requirement(line) for line in project["dependencies"]]


def test_the_lock_pins_every_package_with_hashes_and_serves_every_requirement():
    entries = lock_entries()
    assert len(entries) > 50  # jupyterlab alone brings dozens
    for name, (pin, hashes) in entries.items():
        pinned_version(pin)
        assert hashes, f"{name} has no hash in the lock"
    for requirement in asked_for():
        pin, _ = entries[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(pinned_version(pin)), (requirement, pin)


def test_the_venv_holds_exactly_what_the_lock_names_for_this_machine():
    installed = {canonicalize_name(dist.metadata["Name"]): dist.version
                 for dist in importlib.metadata.distributions()}
    assert installed.pop("namespace-lab") == tomllib.loads(
        (REPO / "pyproject.toml").read_text())["project"]["version"]
    for name in VENV_OWN:
        installed.pop(name, None)
    assert installed == wanted_here()


def copy_of_the_repository(target) -> None:
    """The tracked files as they are now in the working tree: what a fresh clone would hold."""
    listed = subprocess.run(["git", "-C", REPO, "ls-files", "-z"], capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target / name, follow_symlinks=False)


def test_setup_from_nothing_installs_the_lock_and_says_one_line_per_phase(tmp_path):
    copy_of_the_repository(tmp_path)
    # No pip.conf: this machine's own (find-links on local folders) warns about folders it
    # lacks, which a learner's machine would not have.
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
    done = subprocess.run([tmp_path / "lab.sh", "setup"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    python = subprocess.run(["python3", "-V"], capture_output=True, text=True).stdout.strip()
    assert done.stderr.splitlines() == [
        f"\x1b[1mlab:\x1b[0m Python packages: a new .venv for {python}",
        f"\x1b[1mlab:\x1b[0m Python packages: installing the {len(wanted_here())} that the lock "
        "names for this machine"]
    # The lab itself is on the copy's path through one plain .pth line: no import hook.
    [pth] = (tmp_path / ".venv").glob("lib/python3*/site-packages/labkit.pth")
    assert pth.read_text().strip() == str(tmp_path)
    imported = subprocess.run([tmp_path / ".venv/bin/python", "-c",
                               "import sys, labkit; print(labkit.__file__, sorted(sys.modules))"],
                              capture_output=True, text=True, check=True, cwd="/").stdout
    assert imported.startswith(f"{tmp_path}/labkit/__init__.py ")
    assert "editable" not in imported
    # Run again, it finds everything in place and says nothing.
    again = subprocess.run([tmp_path / "lab.sh", "setup"], capture_output=True, text=True,
                           env=env, timeout=120)
    assert (again.returncode, again.stderr) == (0, "")
