"""Fixtures for the tests (the guard and the private store are in the top-level conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LABKIT = str(Path(sys.executable).with_name("labkit"))


@pytest.fixture(scope="session")
def base_image():
    """The busybox base image, built once into the session's store."""
    subprocess.run([LABKIT, "image", "build-base"], check=True, capture_output=True)
    return "busybox"
