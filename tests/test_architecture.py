"""The house's rules: the four wings, checked by import-linter, and the names in them.

The contracts live in pyproject.toml (``[tool.importlinter]``); these tests run the real
``lint-imports`` on the package, and on a copy of it with one rule broken on purpose, to prove
a broken rule is caught and named.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import REPO

LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))
PACKAGE = REPO / "labkit"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package and the contracts under ``root``, as found from there."""
    return subprocess.run([LINT_IMPORTS, str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
                          capture_output=True, text=True, timeout=120)


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_contract_is_kept():
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("runtime/spec.py", "from labkit.engine import store", "renders nothing and knows no store"),
    ("engine/layers.py", "from labkit.show import Table", "The engine (docker's part) renders"),
    ("engine/commit.py", "from labkit.engine import containers", "No circles"),
    ("kernel/procfs.py", "from labkit.runtime import spec", "The wings point one way"),
])
def test_a_broken_rule_is_caught_and_named(tmp_path, module, line, contract):
    copy = tmp_path / "repo"
    shutil.copytree(PACKAGE, copy / "labkit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy)
    assert lint_imports(copy).returncode == 0  # the copy itself keeps them all
    broken = copy / "labkit" / module
    broken.write_text(broken.read_text() + f"\n{line}\n")
    done = lint_imports(copy)
    assert done.returncode == 1
    broken_ones = " ".join(done.stdout.partition("Broken contracts")[2].split())
    assert contract in broken_ones


def test_no_module_takes_the_name_of_a_standard_library_module():
    taken = [str(path.relative_to(REPO)) for path in [*modules(), *PACKAGE.rglob("*/")]
             if path.stem in sys.stdlib_module_names]
    assert taken == []


def test_no_two_public_classes_share_a_name():
    names = Counter(node.name for path in modules()
                    for node in ast.parse(path.read_text()).body
                    if isinstance(node, ast.ClassDef) and not node.name.startswith("_"))
    assert [name for name, count in names.items() if count > 1] == []
