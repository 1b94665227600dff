"""Lesson 00: the machine check and a first look at /proc/PID/ns."""

import os

from labkit.lessons.checks import Exercise


def _count_links(answer) -> str | None:
    links = len(os.listdir("/proc/self/ns"))
    if not isinstance(answer, int):
        return f"give a whole number, not {answer!r}"
    return None if answer == links else f"{answer} is not the number of links in /proc/self/ns"


EXERCISE = Exercise(
    question="How many namespace links does this kernel show for a process?",
    verify=_count_links,
    hint_text="Each row of the table is one link; or use len(inspect.namespaces(os.getpid())).",
    solution_text="answer = len(inspect.namespaces(os.getpid()))  # 10 on a 5.6+ kernel: "
                  "cgroup ipc mnt net pid pid_for_children time time_for_children user uts",
)
