"""The sandbox is a fake systemd host: shared inside, and nothing done in it gets out.

Lesson 04 shows the article's /proc leak inside it, so these tests run that leak for real, in a
sandbox, in a sandbox nested in another one, and check each level above the broken one.
"""

from __future__ import annotations

import os
import shlex

from labkit.lessons import samples, supervisor
from labkit.lessons.sandbox import shared_root

# Says whether this level's /proc still shows this level's own processes.
PROC_CHECK = ('if [ -e /proc/self ] && [ -e /proc/$$ ]; then echo "$0: /proc works";'
              ' else echo "$0: /proc broken"; fi')


def _after_sample(sample: str, level: str) -> list[str]:
    """A sandbox that runs ``sample`` (with ``true``), then checks its own /proc."""
    binary = str(samples.build(sample))
    return shared_root(["sh", "-c", f'"$1" true; {PROC_CHECK}', level, binary])


def _root_propagation() -> str:
    """How this process's ``/`` propagates: ``shared:N``, ``master:N`` or empty for private."""
    with open("/proc/self/mountinfo") as table:
        for line in table:
            fields = line.split()
            if fields[4] == "/":
                return " ".join(fields[6:fields.index("-")])
    raise AssertionError("no / in mountinfo")


def _proc_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as table:
        return [" ".join(line.split()[3:]) for line in table if line.split()[4] == "/proc"]


def _host_proc_works() -> bool:
    return os.readlink("/proc/self") == str(os.getpid())


def test_inside_the_sandbox_root_is_shared_and_the_hosts_is_unchanged():
    before = _root_propagation()
    result = supervisor.run(shared_root(["findmnt", "--noheadings", "-o", "PROPAGATION", "/"]))
    assert (result.stdout.strip(), result.exit_code) == ("shared", 0)
    assert _root_propagation() == before


def test_a_mount_in_a_sandbox_stays_out_of_a_shared_host_above(tmp_path):
    """The outer sandbox plays a systemd host; a mount in the inner one must not reach it."""
    target = tmp_path / "mnt"
    target.mkdir()
    inner = shared_root(["sh", "-c", f"mount -t tmpfs lab {target} && mountpoint {target}"])
    outer = shared_root(["sh", "-c", f"{shlex.join(inner)}; mountpoint {target} || true"])
    result = supervisor.run(outer)
    assert result.stdout.splitlines() == [f"{target} is a mountpoint",
                                          f"{target} is not a mountpoint"]
    assert not os.path.ismount(target)


def test_naive_sample_breaks_the_sandboxs_proc():
    result = supervisor.run(_after_sample("04_mount_proc_naive", "sandbox"))
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == "sandbox: /proc broken"


def test_correct_sample_leaves_the_sandboxs_proc_working():
    result = supervisor.run(_after_sample("04_mount_proc", "sandbox"))
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == "sandbox: /proc works"


def test_naive_sample_in_a_nested_sandbox_breaks_only_the_inner_one():
    before = _proc_mounts()
    inner = shlex.join(_after_sample("04_mount_proc_naive", "inner"))
    outer = shared_root(["sh", "-c", f"{inner}; {PROC_CHECK}", "outer"])
    result = supervisor.run(outer)
    assert result.stdout.splitlines()[-2:] == ["inner: /proc broken", "outer: /proc works"]
    assert _host_proc_works()
    assert _proc_mounts() == before


def test_samples_run_in_the_sandbox_on_request():
    before = _proc_mounts()
    result = samples.run("04_mount_proc_naive", ["hostname"], sandbox=True)
    assert ("container" in result.stdout.splitlines(), result.exit_code) == (True, 0)
    assert _host_proc_works()
    assert _proc_mounts() == before


def test_a_command_missing_in_the_sandbox_exits_127_with_one_line():
    result = supervisor.run(shared_root(["no-such-command"]))
    assert result.exit_code == 127
    [line] = result.stderr.splitlines()
    assert line.endswith("no-such-command: not found")
