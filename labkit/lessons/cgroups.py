"""Lesson 08: cgroups decide how much a container may take: memory, CPU time, processes.

The sample makes a memory cgroup by hand and lets its child be killed by the OOM killer; the
rest of the lesson sets the same limits through ``labkit run``'s flags, on containers named
``l08-...``, and reads the kernel's own counters back from the group's files.
"""

from __future__ import annotations

import re
import time

from labkit import show
from labkit.engine import containers, limiting
from labkit.kernel import cgroupfs
from labkit.lessons.checks import Exercise, expect
from labkit.lessons.lesson_containers import LessonContainers, running_answer
from labkit.runtime.cgroup import driver, group_of

CONTAINERS = LessonContainers("l08-")  # the lesson's, removed at its start and end
# An eater: tail keeps the last lines of what it reads, and /dev/zero has no line end, so it
# keeps everything, without end.
EAT = ["tail", "/dev/zero"]
# A shell that starts an eater and outlives it: the OOM killer picks the biggest process.
SURVIVOR = ["sh", "-c", "tail /dev/zero; echo the eater is gone, I am not; exec sleep 1000"]
BUSY = ["sh", "-c", "while :; do :; done"]

# The same limit, as each version of cgroups spells it (the files in the container's group).
FILES = [
    ("memory limit", "--memory", "memory.limit_in_bytes", "memory.max"),
    ("memory + swap", "--memory-swap", "memory.memsw.limit_in_bytes",
     "memory.swap.max (swap alone)"),
    ("OOM kills", "(read)", "memory.oom_control: oom_kill", "memory.events: oom_kill"),
    ("CPU time", "--cpus", "cpu.cfs_quota_us / cpu.cfs_period_us", "cpu.max: QUOTA PERIOD"),
    ("CPU weight", "--cpu-shares", "cpu.shares (2 to 262144)", "cpu.weight (1 to 10000)"),
    ("CPU used", "(read)", "cpuacct.usage (ns)", "cpu.stat: usage_usec"),
    ("processes", "--pids-limit", "pids.max", "pids.max"),
    ("the group's members", "(join)", "cgroup.procs, in each controller's tree",
     "cgroup.procs, in the one tree"),
]


def expect_killed_by_the_oom_killer(sample_output: str) -> None:
    expect("the child was killed by SIGKILL", "killed by signal 9" in sample_output,
           sample_output)
    count = re.search(r"oom_kill (\d+)", sample_output)
    expect("the group's own counter says the OOM killer did it",
           count is not None and int(count[1]) >= 1, sample_output)


def versions_table() -> show.Table:
    return show.Table("one limit, two spellings", ["what", "labkit run", "cgroup v1", "cgroup v2"],
                      [list(row) for row in FILES],
                      note=f"this machine: {cgroupfs.mode()} (its controllers are "
                           f"{driver().name}'s)")


def hierarchy(running: list[containers.Container]) -> show.Mermaid:
    """Where the lab's groups sit: each tree's root, the lab's parent, a group per container."""
    trees = (["cgroup2 /sys/fs/cgroup"] if driver().name == "v2"
             else [f"{name} tree" for name in ("memory", "cpu", "cpuacct", "pids")])
    lines = ["flowchart TB"]
    for index, tree in enumerate(trees):
        lines.append(f'    t{index}["{tree}"] --> p{index}["labkit"]')
        for number, container in enumerate(running):
            lines.append(f'    p{index} --> c{index}_{number}["{container.short_id}<br/>'
                         f'{container.name}"]')
    return show.Mermaid("\n".join(lines))


def group_file(container: containers.Container, controller: str, name: str) -> str:
    """One file of the container's group, as the kernel shows it now."""
    cgroups = driver()
    root = cgroups.root if cgroups.name == "v2" else cgroups.trees[controller]
    return (root / group_of(container.id) / name).read_text()


def expect_oom_counted(container: containers.Container, output: str) -> None:
    expect("the eater was killed, and the container's shell went on",
           "the eater is gone, I am not" in output, output)
    expect("the group's counter says the OOM killer struck",
           (limiting.usage(container.id).oom_kills or 0) >= 1, limiting.usage(container.id))


def wait_for_log(container: containers.Container, text: str, seconds: float = 30) -> str:
    """The container's output once ``text`` is in it (or the time is up)."""
    deadline = time.monotonic() + seconds
    while text not in (output := containers.logs(container.id)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return output


def oom_counter(container: containers.Container) -> str:
    """The group's file that counts the OOM killer's kills, as the kernel shows it now."""
    name = "memory.oom_control" if driver().name == "v1" else "memory.events"
    return group_file(container, "memory", name)


def expect_ended_by_the_oom_killer(outcome: containers.Outcome) -> None:
    killed = containers.inspect(outcome.id).state.oom_killed
    expect("the container ended with 137, and inspect says the OOM killer did it",
           outcome.exit_code == 137 and killed, (outcome.exit_code, killed))


def fork_bomb(container: str, children: int) -> containers.Outcome:
    """A shell, exec'd in the container, that asks for ``children`` sleepers at once."""
    return containers.exec(container, ["sh", "-c", f"for i in $(seq {children}); do "
                                                   f"sleep 30 >/dev/null 2>&1 & done"])


def expect_about_half_a_core(percent: float | None) -> None:
    expect("--cpus 0.5 holds a busy loop to about half a core",
           percent is not None and 35 <= percent <= 60, percent)


def expect_fork_bomb_stopped(stderr: str, processes: int | None, limit: int) -> None:
    expect("the bomb's shell could fork no more", "can't fork" in stderr, stderr)
    expect(f"the group never held more than {limit} processes",
           processes is not None and processes <= limit, processes)


# --- clean-up and exercise -------------------------------------------------------------------


def tidy_earlier_run() -> str:
    return CONTAINERS.tidy_earlier_run()


def finish() -> str:
    return CONTAINERS.finish()


MEBIBYTE = 1024 * 1024


def _limited(answer) -> str | None:
    container = running_answer(answer)
    if isinstance(container, str):
        return container
    memory = limiting.usage(container.id).memory_limit
    if memory != 32 * MEBIBYTE:
        return f"its group's memory limit is {memory}, not 32 MB: memory='32m'"
    pids = container.config.limits.get("pids")
    if pids != 50:
        return f"its process limit is {pids}, not 50: pids_limit=50"
    return None


EXERCISE = Exercise(
    question="Start a container named l08-mine that runs `sleep 1000` with at most 32 MB of "
             "memory and 50 processes; pass the Container.",
    verify=_limited,
    hint_text="containers.run takes docker's flags as keywords: memory='64m', cpus=0.5, "
              "pids_limit=100, ...",
    solution_text="answer = containers.run('busybox', ['sleep', '1000'], detach=True, "
                  "name='l08-mine', memory='32m', pids_limit=50)",
)
