"""Lesson 00: the machine check and a first look at /proc/PID/ns."""

import os
from collections.abc import Sequence

from labkit.kernel.procfs import Namespace
from labkit.lessons.checks import Exercise, expect

# Not kinds of their own: the namespace the process's next children are born in.
FOR_CHILDREN = "_for_children"


def expect_a_namespace_of_each_kind(links: Sequence[Namespace]) -> None:
    kinds = {link.kind for link in links}
    extra = [link.name for link in links if link.name.endswith(FOR_CHILDREN)]
    expect(f"this process is in one namespace of each of {len(kinds)} kinds, and its "
           f"{len(links)} links are those plus {', '.join(extra) or 'no'} for its children",
           len(links) == len(kinds) + len(extra)
           and all(name.removesuffix(FOR_CHILDREN) in kinds for name in extra),
           [(link.name, link.kind) for link in links])


def _count_links(answer) -> str | None:
    links = len(os.listdir("/proc/self/ns"))
    if not isinstance(answer, int):
        return f"give a whole number, not {answer!r}"
    return None if answer == links else f"{answer} is not the number of links in /proc/self/ns"


EXERCISE = Exercise(
    question="How many namespace links does this kernel show for a process?",
    verify=_count_links,
    hint_text="Each row of the table is one link; or use len(procfs.namespaces(os.getpid())).",
    solution_text="answer = len(procfs.namespaces(os.getpid()))  # 10 on a 5.6+ kernel: "
                  "cgroup ipc mnt net pid pid_for_children time time_for_children user uts: "
                  "8 kinds, and 2 links for the children",
)
