"""A lesson's scratch directory: made at its start, removed at its end, safely twice.

A learner reruns cells: a clean-up cell run a second time must say there is nothing left to
remove, not fail on a directory it removed already.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def make(lesson: str) -> Path:
    """A fresh directory for the lesson's files, such as ``/tmp/lesson05-k2j4``."""
    return Path(tempfile.mkdtemp(prefix=f"{lesson}-"))


def remove(workspace: Path) -> str:
    """Remove the lesson's directory; one line that says what became of it."""
    if not workspace.exists():
        return f"{workspace} was removed already: nothing left to remove"
    shutil.rmtree(workspace)
    return f"removed the lesson's files in {workspace}"
