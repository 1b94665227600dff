"""Lesson 03: a PID namespace of its own; its first process is PID 1, with PID 1's duties.

The claims take plain data (pids, a ps listing, exit codes, namespace pairs), so the same check
verifies the C sample, the Python runtime, and, in the tests, a runtime that was not given the
PidNamespace step and must fail it.

The helpers below find a container's processes from the host. They look through the launcher's
session, not its process tree: an orphan leaves the tree (the kernel hands it to a new parent,
possibly far away) but keeps its session, so even a runtime that failed to adopt it cannot hide it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Sequence

from labkit import show
from labkit.errors import LabError
from labkit.kernel import process
from labkit.lessons.checks import Exercise, expect
from labkit.lessons.probe import different

# ---------------------------------------------------------------------------------------------
# What the C sample prints

# Run by the sample: the shell says which pid it has, then becomes ps (same pid) and lists /proc.
PS_FROM_INSIDE = ["sh", "-c", 'echo "ps runs as pid $$"; exec ps -e -o pid=,comm=']

# Run by the sample: the shell, PID 1, sends itself SIGTERM, then SIGKILL, and reports back.
SIGNALS_TO_SELF = ["sh", "-c", "kill -TERM $$; echo survived SIGTERM; "
                               "kill -KILL $$; echo survived SIGKILL too"]

_INSIDE = re.compile(r"Container \[\s*(\d+)\]")
_OUTSIDE = re.compile(r"PID 1 is pid (\d+) out here")
_PS_SELF = re.compile(r"ps runs as pid (\d+)")
_PS_ROW = re.compile(r"\s*(\d+) (.+)")


def _number(pattern: re.Pattern, text: str) -> int | None:
    found = pattern.search(text)
    return int(found[1]) if found else None


def sample_pids(output: str) -> tuple[int | None, int | None]:
    """The child's pid as 03_pid's parent printed it and as the child printed it itself
    (None for a line the sample did not print)."""
    return _number(_OUTSIDE, output), _number(_INSIDE, output)


def ps_listing(output: str) -> tuple[int | None, dict[int, str]]:
    """What PS_FROM_INSIDE printed: ps's own pid, and every ``pid name`` row of its listing."""
    rows = (_PS_ROW.fullmatch(line) for line in output.splitlines())
    return _number(_PS_SELF, output), {int(row[1]): row[2] for row in rows if row}


def nspid_line(output: str) -> tuple[int, ...]:
    """The numbers of an ``NSpid:`` line in ``output`` (empty if there is none)."""
    for line in output.splitlines():
        if line.startswith("NSpid:"):
            return tuple(int(number) for number in line.split()[1:])
    return ()


def both_sides(parent_saw: int | None, child_saw: int | None, nspid: Sequence[int]) -> show.Table:
    """One process told three ways: by its parent, by itself, and by the kernel's NSpid."""
    return show.Table("one process, two pids", ["who says", "the pid"], [
        ["the parent (host's namespace), clone()'s return value", str(parent_saw)],
        ["the child itself, getpid()", str(child_saw)],
        ["the kernel, NSpid in /proc/PID/status", " ".join(map(str, nspid))],
    ], note="NSpid lists the pid at each level, outermost first")


# ---------------------------------------------------------------------------------------------
# Claims


def expect_pid_1_inside(pid_inside: int | None) -> None:
    expect("the container's first process is PID 1 in its namespace", pid_inside == 1,
           pid_inside)


def expect_one_process_two_pids(nspid: Sequence[int], host_pid: int | None) -> None:
    expect(f"host pid {host_pid} is PID 1 inside: NSpid has two levels, the host's and 1",
           tuple(nspid) == (host_pid, 1), tuple(nspid))


def expect_ps_reads_the_hosts_proc(own_pid: int | None, listing: dict[int, str],
                                   host_pid: int) -> None:
    """ps is in a new PID namespace, yet the pid it has there is someone else's in its listing:
    it reads a /proc that numbers processes as the host does, and this notebook is in it."""
    listed_as = listing.get(own_pid) if own_pid is not None else None
    expect(f"ps, pid {own_pid} in its namespace, lists pid {own_pid} as {listed_as!r} and this "
           f"process (pid {host_pid}): its /proc is the host's",
           listed_as not in (None, "ps") and host_pid in listing,
           {"ps's pid": own_pid, "pids listed": len(listing)})


def expect_pid_1_ignores_its_signals(exit_code: int, output: str) -> None:
    expect("sh as PID 1 survived its own SIGTERM and SIGKILL",
           exit_code == 0 and "survived SIGKILL too" in output, (exit_code, output))


def expect_new_pid_namespace(pairs) -> None:
    expect("it runs in a new PID namespace of its own", "pid" in different(pairs),
           sorted(different(pairs)))


def expect_orphans_reaped(init_pid: int | None, parents: dict[int, int],
                          left: dict[int, str]) -> None:
    """Each orphan was adopted by the container's init, and nothing of them is left."""
    expect(f"the container's init (host pid {init_pid}) adopted all {len(parents)} orphans",
           bool(parents) and set(parents.values()) == {init_pid}, parents)
    expect("once killed, every orphan was reaped: no zombie is left", not left, left)


def expect_stopped_by_sigterm(exit_code: int | None, pairs) -> None:
    expect("in its own PID namespace, sleep stopped on SIGTERM with 143 (128 + 15)",
           exit_code == 143 and "pid" in different(pairs), (exit_code, sorted(different(pairs))))


def expect_all_died_with_pid_1(left: dict[int, str]) -> None:
    expect("when PID 1 died, the kernel killed every process in its namespace", not left, left)


# ---------------------------------------------------------------------------------------------
# Finding a container's processes from the host

# The command makes three orphans: each subshell starts a sleep in the background and exits at
# once. Then the command becomes `sleep infinity`, which only happens once all three subshells
# have exited, that is once their sleeps have been handed to a new parent.
MAKE_ORPHANS = ["sh", "-c", "for n in 1 2 3; do (sleep 600 &); done; exec sleep infinity"]
ORPHAN = ("sleep", "600")
WAIT_SECONDS = 5.0


def processes(container) -> dict[int, tuple[str, ...]]:
    """Every process the container started, by host pid, with its command line (empty for a
    zombie). ``api`` starts the launcher as a session leader, and its descendants stay in that
    session wherever they are re-parented; one that calls setsid() itself is not found."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != container.pid:
            try:
                if os.getsid(int(entry)) == container.pid:
                    found[int(entry)] = _cmdline(int(entry))
            except (ProcessLookupError, FileNotFoundError):
                continue
    return found


def _cmdline(pid: int) -> tuple[str, ...]:
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return tuple(os.fsdecode(word) for word in cmdline.read().split(b"\0")[:-1])


def wait_for(container, command: Sequence[str], count: int = 1) -> list[int]:
    """The host pids of the ``count`` processes running ``command`` in the container, once they
    all run it; a LabError if they do not within WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        found = sorted(pid for pid, argv in processes(container).items()
                       if argv == tuple(command))
        if len(found) == count:
            return found
        time.sleep(0.01)
    raise LabError(f"the container did not run {count} × {' '.join(command)!r} within "
                   f"{WAIT_SECONDS:g} s")


def orphans(container) -> dict[int, int]:
    """The three orphans MAKE_ORPHANS made: {host pid: host pid of the parent that adopted it}."""
    wait_for(container, ["sleep", "infinity"])
    return {pid: _parent(pid) for pid in wait_for(container, ORPHAN, count=3)}


def _parent(pid: int) -> int:
    return process.stat(pid).parent


def wait_gone(pids: Iterable[int]) -> dict[int, str]:
    """Wait up to WAIT_SECONDS for ``pids`` to vanish (a zombie has not); return those left, by
    pid, with their state letter (``Z`` for a zombie, ``S`` for a sleeping process...)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        left = {pid: state for pid in pids if (state := process.state(pid))}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.01)



# ---------------------------------------------------------------------------------------------
# Exercise


def _pid_of_first_child(answer) -> str | None:
    if isinstance(answer, bool) or not isinstance(answer, int):
        return f"give a whole number, such as 7, not {answer!r}"
    if answer == 1:
        return "pid 1 is the container's init, the lab's Python process that started sh"
    if answer == 2:
        return "pid 2 is sh itself, the command; the sleep is a child that sh started"
    if answer != 3:
        return (f"{answer} is not the pid the kernel gave the sleep inside: it is the last "
                f"number of its nested pids (the first is the host's)")
    return None


EXERCISE = Exercise(
    question="Which pid does the background sleep of `sh -c 'sleep 30 & wait'` get inside "
             "its PID namespace?",
    verify=_pid_of_first_child,
    hint_text="Inside a new PID namespace the kernel counts from 1, in order of birth: who was "
              "born there before the sleep? Check with procfs.nested_pids(sleeper).",
    solution_text="print(procfs.nested_pids(sleeper)) inside the with-block shows (its host "
                  "pid, 3), so answer = 3: init is pid 1, sh is pid 2, and the first child sh "
                  "forks is pid 3",
)
