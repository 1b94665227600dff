"""Lesson 01: clone() with no namespace flags makes a child that shares everything.

The claims take plain data (namespace pairs, a process name), so the same check verifies the C
sample, the Python runtime, and, in the tests, a runtime given a step it should not have had.
"""

from __future__ import annotations

from labkit.lessons.checks import Exercise, expect
from labkit.lessons.probe import different


def expect_shares_every_namespace(pairs) -> None:
    expect("the child is in every one of its parent's namespaces",
           bool(pairs) and not different(pairs), sorted(different(pairs)))


def expect_sees_the_hosts_pid_1(seen_as_pid_1: str, hosts_pid_1: str) -> None:
    expect(f"the child's /proc/1 is the host's PID 1 ({hosts_pid_1})",
           seen_as_pid_1 == hosts_pid_1, seen_as_pid_1)


def _no_link_differs(answer) -> str | None:
    if not isinstance(answer, set):
        return f"give a set of link names such as {{'uts'}}, or set() for none, not {answer!r}"
    if answer:
        return f"{sorted(answer)}: the child has the very same ids there; look at the table again"
    return None


EXERCISE = Exercise(
    question="Which namespace links differ between the plain clone() child and its parent?",
    verify=_no_link_differs,
    hint_text="Compare the two id columns row by row; clone() was given no CLONE_NEW* flag.",
    solution_text="answer = set()  # without CLONE_NEW* flags the child inherits every "
                  "namespace; only its pid is new, and a pid is not a namespace",
)
