"""Where the lab keeps its images and containers on disk.

Everything lives under one directory, ``LABKIT_HOME`` (``/var/lib/labkit`` by default), so a test
session can point the whole lab at a temporary store and never touch a learner's lab.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = "/var/lib/labkit"


def home() -> Path:
    """The store's directory, as configured; not created or checked here."""
    return Path(os.environ.get("LABKIT_HOME") or DEFAULT_HOME)
