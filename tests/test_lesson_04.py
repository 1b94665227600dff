"""Lesson 04: its checks pass on the real thing and fail without the PrivateProc step.

The propagation trap runs for real, but only inside ``labkit.lessons.sandbox``: a fresh mount
namespace whose ``/`` is shared, where the naive sample can break nothing but the sandbox's own
/proc.
"""

import os

import pytest

from labkit.errors import LabError
from labkit.kernel import procfs
from labkit.kernel.syscalls import (
    MS_BIND,
    MS_NOSUID,
    MS_PRIVATE,
    MS_REC,
    MS_SHARED,
    MS_SLAVE,
    MS_UNBINDABLE,
)
from labkit.lessons import mount_namespace_and_proc as lesson
from labkit.lessons import probe, samples
from labkit.lessons.checks import ClaimFailed
from labkit.runtime import api
from labkit.runtime.steps.hostname import Hostname
from labkit.runtime.steps.mounts import PrivateProc
from labkit.runtime.steps.pid import PidNamespace

STEPS = [Hostname("container"), PidNamespace(), PrivateProc()]
WITHOUT_PRIVATE_PROC = [Hostname("container"), PidNamespace()]


def _ps_inside(steps) -> list[str]:
    return lesson.ps_programs(api.run(["ps", "-e"], steps=steps).stdout)


# ---------------------------------------------------------------------------------------------
# ps inside


def test_ps_in_the_samples_session_lists_only_bash_and_ps():
    session = samples.session("04_mount_proc", ["ps aux", "exit"])
    lesson.expect_ps_lists_only(lesson.ps_programs(session.text), ["bash", "ps"])


def test_ps_in_the_runtime_lists_only_its_init_and_ps():
    lesson.expect_ps_lists_only(_ps_inside(STEPS), [lesson.RUNTIME_INIT, "ps"])


def test_ps_check_fails_on_the_runtime_without_private_proc():
    listed = _ps_inside(WITHOUT_PRIVATE_PROC)
    with pytest.raises(ClaimFailed, match=f"{len(listed)} processes"):
        lesson.expect_ps_lists_only(listed, [lesson.RUNTIME_INIT, "ps"])


def test_ps_programs_reads_only_the_table():
    screen = ("$ ps -e\n    PID TTY          TIME CMD\n      1 ?        00:00:00 init\n"
              "      7 pts/0    00:00:00 ps\n$ exit\n")
    assert lesson.ps_programs(screen) == ["init", "ps"]
    assert lesson.ps_programs("bash: ps: command not found\n") == []


# ---------------------------------------------------------------------------------------------
# The kernel's view


def test_the_sample_and_the_runtime_get_new_mnt_pid_and_uts_namespaces():
    printed = probe.printed_ids(samples.run("04_mount_proc", probe.NS_PROBE).stdout)
    lesson.expect_new_namespaces(probe.versus_host(printed))
    lesson.expect_new_namespaces(probe.versus_host(api.run(["true"], steps=STEPS).namespaces))


def test_namespace_check_fails_on_the_runtime_without_private_proc():
    result = api.run(["true"], steps=WITHOUT_PRIVATE_PROC)
    with pytest.raises(ClaimFailed):
        lesson.expect_new_namespaces(probe.versus_host(result.namespaces))


def _tree(steps) -> procfs.ProcessNode:
    with api.start(["sleep", "30"], steps=steps) as container:
        tree = procfs.process_tree(container.pid)
        container.terminate()
        container.wait(timeout=10)
    return tree


def test_the_host_sees_the_containers_processes_under_host_pids():
    tree = _tree(STEPS)
    assert [node.cmdline for node in tree.walk()][-1] == ("sleep", "30")
    lesson.expect_host_sees_the_container(tree)


def test_host_sight_check_fails_without_a_pid_namespace():
    with pytest.raises(ClaimFailed):
        lesson.expect_host_sees_the_container(_tree([Hostname("container"), PrivateProc()]))


def test_the_hosts_mount_table_is_unchanged_after_the_runtime_and_the_sample():
    before = procfs.mounts(os.getpid())
    api.run(["true"], steps=STEPS)
    samples.run("04_mount_proc", ["true"])
    lesson.expect_host_unchanged(before, procfs.mounts(os.getpid()))


def test_host_unchanged_check_fails_on_a_table_with_a_new_proc():
    before = procfs.mounts(os.getpid())
    with api.start(["sleep", "30"], steps=STEPS) as container:
        containers = procfs.mounts(container.init_pid)
        container.terminate()
        container.wait(timeout=10)
    with pytest.raises(ClaimFailed, match="added /proc"):
        lesson.expect_host_unchanged(before, containers)


# ---------------------------------------------------------------------------------------------
# The trap, in the sandbox


def test_the_naive_sample_breaks_the_sandboxs_proc():
    screen = lesson.sandbox_session("04_mount_proc_naive", ["ps aux", "exit"]).text
    assert "sandbox# ls -d /proc/$$\n/proc/" in screen  # it worked before the sample ran
    lesson.expect_ps_lists_only(lesson.ps_programs(screen), ["bash", "ps"])
    lesson.expect_sandbox_broken(screen)
    with pytest.raises(ClaimFailed):
        lesson.expect_sandbox_intact(screen)


def test_the_fixed_sample_leaves_the_sandboxs_proc_working():
    screen = lesson.sandbox_session("04_mount_proc", ["ps aux", "exit"]).text
    lesson.expect_sandbox_intact(screen)
    with pytest.raises(ClaimFailed):
        lesson.expect_sandbox_broken(screen)


def test_a_copy_joins_the_peer_group_and_a_slave_listens_to_it():
    copies = lesson.proc_in_copies()
    lesson.expect_peer_groups(copies)
    with pytest.raises(ClaimFailed):
        lesson.expect_peer_groups(copies[::-1])


@pytest.mark.parametrize("flags", [MS_REC | MS_PRIVATE, MS_REC | MS_SLAVE])
def test_the_exercises_answers_keep_the_sandboxs_proc(flags):
    assert lesson.EXERCISE.check(flags)
    trial = lesson.try_flags(flags)
    assert (trial.refused, trial.proc_works) == (None, True)


@pytest.mark.parametrize("flags", [MS_PRIVATE, MS_SLAVE, MS_REC | MS_SHARED])
def test_without_ms_rec_or_with_ms_shared_the_proc_mount_leaks(flags):
    assert not lesson.EXERCISE.check(flags)
    trial = lesson.try_flags(flags)
    assert (trial.refused, trial.proc_works) == (None, False)
    assert "is broken" in repr(trial)


def test_try_flags_reports_the_kernels_refusal():
    trial = lesson.try_flags(MS_PRIVATE | MS_SLAVE)
    assert "EINVAL" in trial.refused
    assert "refused" in repr(trial)


@pytest.mark.parametrize("wrong", ["MS_REC|MS_PRIVATE", True, -1, 2.0])
def test_try_flags_refuses_what_is_not_flags(wrong):
    with pytest.raises(LabError, match="whole number"):
        lesson.try_flags(wrong)


# ---------------------------------------------------------------------------------------------
# The exercise


@pytest.mark.parametrize(("wrong", "reason"), [
    (MS_PRIVATE, "add MS_REC"),
    (MS_SLAVE, "add MS_REC"),
    (MS_REC | MS_SHARED, "trouble itself"),
    (MS_REC | MS_UNBINDABLE, "bind-mounted"),
    (MS_REC | MS_PRIVATE | MS_SLAVE, "exactly one propagation type"),
    (MS_REC, "exactly one propagation type"),
    (MS_REC | MS_PRIVATE | MS_BIND, "MS_BIND has no place"),
    (MS_REC | MS_PRIVATE | MS_NOSUID, "MS_NOSUID has no place"),
    ("MS_REC|MS_PRIVATE", "one number"),
    (True, "one number"),
])
def test_the_exercise_rejects_wrong_answers_with_the_reason(wrong, reason):
    verdict = lesson.EXERCISE.check(wrong)
    assert not verdict
    assert reason in repr(verdict)


def test_the_exercise_asks_for_an_answer_first():
    assert repr(lesson.EXERCISE.check(...)) == "✘ Not yet: no answer yet"
