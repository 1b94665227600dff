"""checks: a false claim stops the notebook; a wrong answer says why without stopping it."""

import pytest

from labkit.lessons.checks import ClaimFailed, Exercise, expect


def test_a_true_claim_is_ticked(capsys):
    expect("the child is PID 1", 1 == 1)
    assert capsys.readouterr().out == "✔ the child is PID 1\n"


def test_a_false_claim_raises_with_what_was_seen():
    with pytest.raises(ClaimFailed, match=r"✘ the child is PID 1, but saw: 4242"):
        expect("the child is PID 1", False, seen=4242)


SQUARE = Exercise(
    question="What is 7 squared?",
    verify=lambda answer: None if answer == 49 else f"{answer} is not 7 * 7",
    hint_text="Multiply 7 by itself.",
    solution_text="answer = 49",
)


def test_a_right_answer_passes():
    verdict = SQUARE.check(49)
    assert verdict and repr(verdict) == "✔ Correct."


def test_a_wrong_answer_is_rejected_with_its_reason():
    verdict = SQUARE.check(14)
    assert not verdict and repr(verdict) == "✘ Not yet: 14 is not 7 * 7"


def test_an_unanswered_exercise_is_not_an_error():
    verdict = SQUARE.check(...)
    assert not verdict and repr(verdict) == "✘ Not yet: no answer yet"


def test_the_solution_shows_only_when_asked(capsys):
    print(repr(SQUARE.check(14)))
    SQUARE.hint()
    shown = capsys.readouterr().out
    assert "49" not in shown and "Multiply" in shown
    SQUARE.solution()
    assert capsys.readouterr().out == "Solution: answer = 49\n"
