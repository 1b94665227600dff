"""Every lesson ends with an exercise a learner can check, ask a hint for, and see solved.

Read from each notebook as committed: the ``exercise`` it binds (evaluated from the notebook's
own labkit imports), the ``answer = ...`` waiting for the learner, ``exercise.check(answer)``,
and ``hint()`` and ``solution()`` left commented out, so that running the lesson top to bottom
never shows the solution. Whether each checker accepts the right answer is tested per lesson.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from labkit.lessons.checks import Exercise
from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def cells(notebook: Path, kind: str) -> list[str]:
    return ["".join(cell["source"]) for cell in json.loads(notebook.read_text())["cells"]
            if cell["cell_type"] == kind]


def exercise_of(notebook: Path) -> Exercise:
    """The object the notebook binds to ``exercise``, found with the notebook's labkit imports."""
    nodes = [node for source in cells(notebook, "code") for node in ast.walk(ast.parse(source))]
    imports = [node for node in nodes if isinstance(node, ast.ImportFrom)
               and (node.module or "").startswith("labkit")]
    [binding] = [node.value for node in nodes if isinstance(node, ast.Assign)
                 and [ast.unparse(target) for target in node.targets] == ["exercise"]]
    namespace: dict = {}
    exec(compile(ast.Module(body=imports, type_ignores=[]), notebook.name, "exec"), namespace)
    exercise = eval(compile(ast.Expression(binding), notebook.name, "eval"), namespace)
    assert isinstance(exercise, Exercise)
    return exercise


@pytest.fixture(params=NOTEBOOKS, ids=[notebook.stem for notebook in NOTEBOOKS])
def notebook(request) -> Path:
    return request.param


def test_every_lesson_is_found():
    assert len(NOTEBOOKS) >= 6
    assert NOTEBOOKS[0].name == "00_start_here.ipynb"


def test_the_exercise_waits_for_the_learner_s_answer(notebook):
    exercise = exercise_of(notebook)
    [asking] = [source for source in cells(notebook, "code") if "exercise.check(answer)" in source]
    assert "\nanswer = ...  # " in f"\n{asking}"  # a placeholder, and what kind of answer it wants
    assert repr(exercise.check(...)) == "✘ Not yet: no answer yet"
    assert exercise.question


def test_hint_and_solution_work_and_stay_hidden_until_asked(notebook, capsys):
    exercise = exercise_of(notebook)
    code = cells(notebook, "code")
    assert "# exercise.hint()\n# exercise.solution()" in code  # a cell to uncomment, no more
    called = [source for source in code
              if any(line.strip().startswith(("exercise.hint(", "exercise.solution("))
                     for line in source.splitlines())]
    assert called == []
    assert not any(exercise.solution_text in text for text in code + cells(notebook, "markdown"))
    exercise.hint()
    assert capsys.readouterr().out == f"Hint: {exercise.hint_text}\n"
    assert exercise.hint_text and exercise.solution_text not in exercise.hint_text
    exercise.solution()
    assert capsys.readouterr().out == f"Solution: {exercise.solution_text}\n"
