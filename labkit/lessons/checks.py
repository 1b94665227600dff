"""How a notebook says plainly whether the kernel behaved as the lesson claims.

Two kinds of check live here:

* ``expect(claim, holds, seen)`` states one of the lesson's claims and verifies it. It prints a
  green tick when the kernel agreed, and raises when it did not, so a notebook run by nbval fails
  exactly where the lesson stopped being true.
* ``Exercise`` is a question for the learner, with ``check(answer)``, ``hint()`` and
  ``solution()``. A wrong answer is not an error: ``check`` returns a false ``Verdict`` that
  shows "not yet" and why. The solution stays hidden until asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class ClaimFailed(AssertionError):
    """The kernel did not do what the lesson says it does."""


def expect(claim: str, holds: bool, seen: Any = None) -> None:
    """Verify one claim of the lesson: print it ticked, or raise with what was seen instead."""
    if not holds:
        raise ClaimFailed(f"✘ {claim}, but saw: {seen!r}")
    print(f"✔ {claim}")


@dataclass(frozen=True)
class Verdict:
    """The answer's verdict: true when right, shown as one line in the notebook."""

    right: bool
    message: str

    def __bool__(self) -> bool:
        return self.right

    def __repr__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Exercise:
    """A question with its own checker, a hint, and a solution shown only on request.

    ``verify(answer)`` returns None for a right answer, else one sentence saying what is wrong.
    """

    question: str
    verify: Callable[[Any], str | None]
    hint_text: str
    solution_text: str

    def check(self, answer: Any) -> Verdict:
        """Say whether ``answer`` is right; a wrong one gets the reason, not an exception."""
        problem = "no answer yet" if answer is ... else self.verify(answer)
        if problem is None:
            return Verdict(True, "✔ Correct.")
        return Verdict(False, f"✘ Not yet: {problem}")

    def hint(self) -> None:
        print(f"Hint: {self.hint_text}")

    def solution(self) -> None:
        print(f"Solution: {self.solution_text}")
