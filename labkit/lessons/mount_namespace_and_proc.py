"""Lesson 04: a mount namespace, a ``/proc`` of the container's own, and the propagation trap.

``ps`` reads ``/proc``, and a ``/proc`` lists the processes of the PID namespace that mounted it.
So a container with a PID namespace of its own still sees the host's processes until it mounts a
fresh ``/proc``; and to mount without the host seeing it, it needs a mount namespace of its own,
made private first. The claims take plain data (a ps listing, namespace pairs, mount tables, a
screen), so the same check verifies the C sample, the runtime, and, in the tests, a runtime
without the PrivateProc step, which must fail it.

The trap (mounting ``/proc`` without making ``/`` private first) is only ever sprung inside
``labkit.lessons.sandbox``: a throw-away mount namespace whose ``/`` is shared like a systemd
host's, so what breaks is the sandbox's ``/proc``, never the host's.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from labkit import show
from labkit.errors import LabError
from labkit.kernel import procfs, syscalls
from labkit.lessons import samples, supervisor, terminal
from labkit.lessons.checks import Exercise, expect
from labkit.lessons.probe import different
from labkit.lessons.sandbox import shared_root
from labkit.runtime.boot import python_argv

# ---------------------------------------------------------------------------------------------
# What ps lists inside

# The runtime's init is a fork of its launcher, a Python started as sys.executable, so that is
# the name ps gives it (the kernel keeps the first 15 characters of a process's name).
RUNTIME_INIT = Path(sys.executable).name[:15]


def ps_programs(screen: str) -> list[str]:
    """The program of each process in the first ``ps`` table on ``screen`` (``ps aux``, ``ps -e``).

    The command is the last column and may contain spaces, so a row is split into as many fields
    as the header has; the first line that is not such a row (the next prompt) ends the table.
    """
    lines = iter(screen.splitlines())
    for line in lines:
        header = line.split()
        if "PID" in header and header[-1] in ("COMMAND", "CMD"):
            break
    else:
        return []
    programs, pid = [], header.index("PID")
    for line in lines:
        fields = line.split(None, len(header) - 1)
        if len(fields) < len(header) or not fields[pid].isdigit():
            break
        programs.append(os.path.basename(fields[-1].split()[0]))
    return programs


def expect_ps_lists_only(programs: Sequence[str], container: Sequence[str]) -> None:
    listed = ", ".join(programs[:6]) + (", ..." if len(programs) > 6 else "")
    expect(f"ps inside lists only the container's processes: {', '.join(container)}",
           sorted(programs) == sorted(container), f"{len(programs)} processes: {listed}")


# ---------------------------------------------------------------------------------------------
# The kernel's view


def expect_host_sees_the_container(tree: procfs.ProcessNode) -> None:
    """The host's /proc still lists the container's processes, each with a host pid that is not
    its pid inside (the last of its nested pids)."""
    inside = {node.nested_pids[-1]: node.pid for node in tree.walk() if len(node.nested_pids) > 1}
    expect("the host sees the container's processes too, under pids of its own",
           1 in inside and all(host != pid for pid, host in inside.items()), inside)


NEW_NAMESPACES = {"mnt", "pid", "pid_for_children", "uts"}


def expect_new_namespaces(pairs) -> None:
    expect("the container is in new mnt, pid and uts namespaces, and shares the others",
           bool(pairs) and different(pairs) == NEW_NAMESPACES, sorted(different(pairs)))


def expect_host_unchanged(before: Sequence[procfs.Mount], after: Sequence[procfs.Mount]) -> None:
    diff = procfs.diff_mounts(before, after)
    seen = ([f"added {m.mount_point}" for m in diff.added]
            + [f"removed {m.mount_point}" for m in diff.removed]
            + [f"{c.after.mount_point}: {', '.join(c.fields)} changed" for c in diff.changed])
    expect("the host's mount table, its /proc included, is as it was", diff.empty, seen)


# ---------------------------------------------------------------------------------------------
# The trap, sprung in a sandbox

# What the sandbox's own shell asks before and after the experiment: how its / propagates, and
# whether its /proc still holds the shell itself ($$ is the shell's pid).
LOOK_BEFORE = ("findmnt -no PROPAGATION /", "ls -d /proc/$$")
LOOK_AFTER = ("ls -d /proc/$$", "ps -p $$")


def _typed(shown: str, command: str | None = None) -> str:
    """A line of shell that echoes ``shown`` after a ``sandbox#`` prompt, as if typed there,
    then runs it (or ``command``, when what runs is not what a person would type)."""
    return f"echo {shlex.quote('sandbox# ' + shown)}; {command or shown} 2>&1"


def sandbox_session(sample: str, typed: Iterable[str]) -> terminal.Transcript:
    """Run ``sample`` in a fresh sandbox and type ``typed`` into its container's shell; the
    sandbox's own shell looks at itself before and after. Returns the whole screen."""
    script = "; ".join([*map(_typed, LOOK_BEFORE), _typed(sample, '"$1"'),
                        *map(_typed, LOOK_AFTER)])
    binary = str(samples.build(sample))
    return terminal.replay(shared_root(["sh", "-c", script, "sandbox", binary]), typed)


def sandbox_sees_itself(screen: str) -> bool:
    """Whether the last ``ls -d /proc/$$`` on ``screen`` found the sandbox's shell."""
    lines = screen.splitlines()
    asked = [n for n, line in enumerate(lines[:-1]) if line == "sandbox# ls -d /proc/$$"]
    return bool(asked) and re.fullmatch(r"/proc/\d+", lines[asked[-1] + 1]) is not None


def expect_sandbox_broken(screen: str) -> None:
    expect("afterwards the sandbox's /proc is broken: its own shell is gone from it",
           not sandbox_sees_itself(screen), screen.splitlines()[-4:])


def expect_sandbox_intact(screen: str) -> None:
    expect("afterwards the sandbox's /proc still shows its own shell",
           sandbox_sees_itself(screen), screen.splitlines()[-4:])


# ---------------------------------------------------------------------------------------------
# Peer groups: /proc's mount in the sandbox and in copies of its mount table

# util-linux's unshare makes a new mount namespace, then sets the propagation of all of it;
# "unchanged" leaves the copy as clone(CLONE_NEWNS) alone leaves it.
COPIES = (
    ("the sandbox", ()),
    ("a copy, as clone() leaves it", ("unshare", "--mount", "--propagation", "unchanged")),
    ("a copy made MS_REC|MS_SLAVE", ("unshare", "--mount", "--propagation", "slave")),
    ("a copy made MS_REC|MS_PRIVATE", ("unshare", "--mount", "--propagation", "private")),
)
_PROC_LINE = ("awk", '$5 == "/proc" { top = $0 } END { print top }', "/proc/self/mountinfo")


def proc_in_copies() -> list[tuple[str, procfs.Mount]]:
    """``/proc``'s mount as each of COPIES sees it, all in one sandbox (its peer groups)."""
    script = "; ".join(shlex.join([*prefix, *_PROC_LINE]) for _, prefix in COPIES)
    run = supervisor.run(shared_root(["sh", "-c", script]))
    lines = run.stdout.splitlines()
    if run.exit_code or len(lines) != len(COPIES):
        raise LabError(f"the sandbox could not list its copies: {run.stderr.strip()}")
    return [(where, procfs.parse_mount(os.fsencode(line)))
            for (where, _), line in zip(COPIES, lines, strict=True)]


def copies_table(copies: Sequence[tuple[str, procfs.Mount]]) -> show.Table:
    rows = [[where, str(proc.mount_id), str(proc.propagation)] for where, proc in copies]
    return show.Table("/proc's mount in the sandbox and in three new mount namespaces",
                      ["mount namespace", "mount id", "propagation"], rows)


def expect_peer_groups(copies: Sequence[tuple[str, procfs.Mount]]) -> None:
    """The copy clone() makes is a peer of the original; slave listens to it; private is cut."""
    group = copies[0][1].propagation.shared
    seen = [str(proc.propagation) for _, proc in copies]
    expect("a plain copy joins the sandbox's peer group, a slave copy listens to it, "
           "a private copy has none", group is not None and seen == [
               f"shared:{group}", f"shared:{group}", f"master:{group}", "private"], seen)


# ---------------------------------------------------------------------------------------------
# Try any flags on / before mounting /proc

def mount_proc_after(argv: list[str]) -> int:
    """In the sandbox, as 04_mount_proc does: new mount and PID namespaces, then in the child
    the flags ``argv[0]`` on / and a fresh /proc. Exits 1 with the kernel's refusal if a mount
    fails. Runs in a fresh process (``try_flags``), never in the notebook's."""
    syscalls.unshare(syscalls.CLONE_NEWNS | syscalls.CLONE_NEWPID)
    if os.fork() == 0:
        try:
            syscalls.mount(None, "/", None, int(argv[0]))
            syscalls.mount("proc", "/proc", "proc")
            os._exit(0)
        except OSError as error:
            print(error.strerror, flush=True)  # os._exit() flushes nothing
            os._exit(1)
    return os.waitstatus_to_exitcode(os.wait()[1])


@dataclass(frozen=True)
class Trial:
    """What ``try_flags`` saw: the kernel's refusal, or whether the sandbox's /proc survived."""

    flags: int
    refused: str | None
    proc_works: bool

    def __repr__(self) -> str:
        names = syscalls.mount_flag_names(self.flags)
        if self.refused is not None:
            return f"{names} on /: the kernel refused it: {self.refused}"
        verdict = "still works" if self.proc_works else "is broken: the new /proc leaked into it"
        return f"{names} on /, then mount /proc: the sandbox's /proc {verdict}"


def try_flags(flags: int) -> Trial:
    """Apply ``flags`` to / in a new mount namespace inside a fresh sandbox, mount /proc there,
    and see whether the sandbox's own /proc survives: the exercise's question, asked for real."""
    if isinstance(flags, bool) or not isinstance(flags, int) or flags < 0:
        raise LabError(f"flags are a whole number made with | from labkit.kernel.syscalls, "
                       f"not {flags!r}")
    python = python_argv("labkit.lessons.mount_namespace_and_proc:mount_proc_after", str(flags))
    script = '"$@" || exit; ' + "; ".join(map(_typed, LOOK_AFTER))
    run = supervisor.run(shared_root(["sh", "-c", script, "sandbox", *python]))
    looked = "sandbox# " in run.stdout
    refused = None if looked else (run.stdout + run.stderr).strip() or f"exit {run.exit_code}"
    return Trial(flags, refused, sandbox_sees_itself(run.stdout))


# ---------------------------------------------------------------------------------------------
# The exercise

_TYPES = {syscalls.MS_SHARED, syscalls.MS_SLAVE, syscalls.MS_PRIVATE, syscalls.MS_UNBINDABLE}


def _propagation_flags(answer) -> str | None:
    if isinstance(answer, bool) or not isinstance(answer, int):
        return ("give one number made with | from the constants of labkit.kernel.syscalls "
                f"(syscalls.MS_...), not {answer!r}")
    kind = answer & sum(_TYPES)
    extra = answer & ~(kind | syscalls.MS_REC)
    if extra:
        return (f"{syscalls.mount_flag_names(extra)} has no place in this call: a change of "
                "propagation takes MS_REC and one propagation type, nothing else")
    if kind not in _TYPES:
        return ("choose exactly one propagation type (MS_SHARED, MS_SLAVE, MS_PRIVATE or "
                "MS_UNBINDABLE): with none or several, mount() fails with EINVAL")
    if kind == syscalls.MS_SHARED:
        return "shared is the trouble itself: a shared copy sends every new mount back to the host"
    if kind == syscalls.MS_UNBINDABLE:
        return ("that stops the leak (an unbindable mount is private too), but nothing below / "
                "could be bind-mounted any more, and a runtime bind-mounts its root and volumes")
    if not answer & syscalls.MS_REC:
        return (f"{syscalls.mount_flag_names(answer)} changes the mount at / alone; /proc is a "
                "mount of its own below it and keeps its propagation, so where that is shared "
                "(systemd) a proc mounted over it still reaches the host: add MS_REC, which "
                "applies the change to every mount below")
    return None


EXERCISE = Exercise(
    question="Which flags must mount(NULL, \"/\", NULL, flags, NULL) get before /proc is "
             "mounted, so that nothing mounted in the container reaches the host?",
    verify=_propagation_flags,
    hint_text="Two flags: one propagation type that sends nothing back to the host, and one "
              "that applies it to every mount below / (not just / itself). Try your idea with "
              "mounts.try_flags(...).",
    solution_text="answer = syscalls.MS_REC | syscalls.MS_PRIVATE  # as our PrivateProc step "
                  "and 04_mount_proc do; syscalls.MS_REC | syscalls.MS_SLAVE (runc's choice) is "
                  "right too: the host's new mounts still arrive, but nothing goes back",
)
