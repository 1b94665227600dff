"""Lesson 03: each check passes on the real thing and fails without the PidNamespace step.

"Without the step" is the runtime given every other step but that one, or, for the C sample's
own claims, lesson 01's plain clone(), which is the same program without CLONE_NEWPID.
"""

import contextlib
import os
import signal

import pytest

from labkit.errors import LabError
from labkit.kernel import procfs
from labkit.lessons import pid_namespace as lesson
from labkit.lessons import probe, samples
from labkit.lessons.checks import ClaimFailed
from labkit.runtime import api
from labkit.runtime.steps.mounts import PrivateProc
from labkit.runtime.steps.pid import PidNamespace

WITH_STEP = [PidNamespace()]
WITHOUT_STEP = []


@contextlib.contextmanager
def _running(command, steps):
    """``api.start``, stopped in order at the end of the block: SIGTERM passes from the launcher
    to init to the command, and the launcher exits only once init has. (A with-block alone
    SIGKILLs the launcher, and init dies a moment later, after the host guard has looked.)"""
    with api.start(command, steps) as container:
        yield container
        container.terminate()
        container.wait(timeout=10)


def _reap_strays(pids) -> None:
    """Kill what a container without a PID namespace left behind, and reap it.

    No init took it down with the container, and its orphans were handed to the nearest child
    subreaper, this test run (see conftest), so they are this process's children now.
    """
    for stray in pids:
        os.kill(stray, signal.SIGKILL)
    for stray in pids:
        os.waitpid(stray, 0)


# ---------------------------------------------------------------------------------------------
# The sample's claims


def test_the_sample_s_child_is_pid_1_and_its_parent_knows_it_by_its_host_pid():
    run = samples.run("03_pid", ["grep", "NSpid", "/proc/self/status"])
    parent_saw, child_saw = lesson.sample_pids(run.stdout)
    lesson.expect_pid_1_inside(child_saw)
    lesson.expect_one_process_two_pids(lesson.nspid_line(run.stdout), parent_saw)
    assert parent_saw != 1


def test_the_sample_parsers_say_none_for_what_was_not_printed():
    assert lesson.sample_pids("Parent - start a container!\n") == (None, None)
    assert lesson.nspid_line("no status here") == ()
    assert lesson.ps_listing("sh: ps: not found\n") == (None, {})


def test_pid_checks_fail_for_a_runtime_without_the_step():
    with _running(["sleep", "infinity"], WITHOUT_STEP) as container:
        nspid = procfs.nested_pids(container.init_pid)
    assert nspid == (container.init_pid,)
    with pytest.raises(ClaimFailed):
        lesson.expect_pid_1_inside(nspid[-1])
    with pytest.raises(ClaimFailed, match="two levels"):
        lesson.expect_one_process_two_pids(nspid, container.init_pid)


def test_pid_checks_pass_for_the_runtime_with_the_step():
    with _running(["sleep", "infinity"], WITH_STEP) as container:
        nspid = procfs.nested_pids(container.init_pid)
    lesson.expect_pid_1_inside(nspid[-1])
    lesson.expect_one_process_two_pids(nspid, container.init_pid)


def test_ps_in_the_sample_lists_the_host_s_processes():
    own_pid, listing = lesson.ps_listing(samples.run("03_pid", lesson.PS_FROM_INSIDE).stdout)
    assert own_pid == 1
    lesson.expect_ps_reads_the_hosts_proc(own_pid, listing, os.getpid())


@pytest.mark.parametrize(("steps", "passes"), [
    (WITH_STEP, True),
    (WITHOUT_STEP, False),                      # ps's pid is its host pid: it finds itself
    ([PidNamespace(), PrivateProc()], False),   # lesson 04: a /proc of its own, no host in it
], ids=["pid-namespace", "no-pid-namespace", "private-proc"])
def test_the_ps_check_needs_a_pid_namespace_over_the_host_s_proc(steps, passes):
    result = api.run(lesson.PS_FROM_INSIDE, steps)
    own_pid, listing = lesson.ps_listing(result.stdout)
    assert result.exit_code == 0 and listing
    if passes:
        lesson.expect_ps_reads_the_hosts_proc(own_pid, listing, os.getpid())
        return
    with pytest.raises(ClaimFailed):
        lesson.expect_ps_reads_the_hosts_proc(own_pid, listing, os.getpid())


def test_sh_as_pid_1_survives_its_own_signals_and_dies_of_them_when_it_is_not():
    as_pid_1 = samples.run("03_pid", lesson.SIGNALS_TO_SELF)
    lesson.expect_pid_1_ignores_its_signals(as_pid_1.exit_code, as_pid_1.stdout)
    plain = samples.run("01_plain_clone", lesson.SIGNALS_TO_SELF)
    assert plain.exit_code == 143 and "survived" not in plain.stdout
    with pytest.raises(ClaimFailed, match="survived"):
        lesson.expect_pid_1_ignores_its_signals(plain.exit_code, plain.stdout)


# ---------------------------------------------------------------------------------------------
# The runtime's claims


def test_the_runtime_s_command_is_in_a_new_pid_namespace_only_with_the_step():
    lesson.expect_new_pid_namespace(probe.versus_host(api.run(["true"], WITH_STEP).namespaces))
    with pytest.raises(ClaimFailed, match="new PID namespace"):
        lesson.expect_new_pid_namespace(
            probe.versus_host(api.run(["true"], WITHOUT_STEP).namespaces))


def test_init_adopts_and_reaps_the_orphans():
    with _running(lesson.MAKE_ORPHANS, WITH_STEP) as container:
        orphans = lesson.orphans(container)
        for orphan in orphans:
            os.kill(orphan, signal.SIGTERM)
        left = lesson.wait_gone(orphans)
    lesson.expect_orphans_reaped(container.init_pid, orphans, left)


def test_without_the_step_the_orphans_go_to_the_host_s_subreaper():
    with _running(lesson.MAKE_ORPHANS, WITHOUT_STEP) as container:
        orphans = lesson.orphans(container)
    try:
        assert set(orphans.values()) == {os.getpid()}
        with pytest.raises(ClaimFailed, match="adopted"):
            lesson.expect_orphans_reaped(container.init_pid, orphans, {})
    finally:
        _reap_strays(orphans)


def test_the_orphan_check_fails_when_a_zombie_is_left():
    with pytest.raises(ClaimFailed, match="no zombie"):
        lesson.expect_orphans_reaped(100, {101: 100}, {101: "Z"})


@pytest.mark.parametrize(("steps", "passes"), [(WITH_STEP, True), (WITHOUT_STEP, False)],
                         ids=["pid-namespace", "no-pid-namespace"])
def test_sigterm_stops_sleep_with_143(steps, passes):
    with _running(["sleep", "infinity"], steps) as container:
        lesson.wait_for(container, ["sleep", "infinity"])
        container.terminate()
        code = container.wait(timeout=10)
    assert code == 143
    pairs = probe.versus_host(container.namespaces)
    if passes:
        lesson.expect_stopped_by_sigterm(code, pairs)
        return
    with pytest.raises(ClaimFailed, match="own PID namespace"):
        lesson.expect_stopped_by_sigterm(code, pairs)


def test_the_sigterm_check_fails_on_a_sigkill_s_137():
    pairs = probe.versus_host(api.run(["true"], WITH_STEP).namespaces)
    with pytest.raises(ClaimFailed, match="143"):
        lesson.expect_stopped_by_sigterm(137, pairs)


def _kill_pid_1(steps) -> list[int]:
    """Start two background sleeps under sh, SIGKILL the container's first process, and
    return the sleeps' host pids."""
    with _running(["sh", "-c", "sleep infinity & sleep infinity & wait"], steps) as container:
        sleepers = lesson.wait_for(container, ["sleep", "infinity"], count=2)
        os.kill(container.init_pid, signal.SIGKILL)
        assert container.wait(timeout=10) == 137
    return sleepers


def test_everything_dies_with_pid_1():
    lesson.expect_all_died_with_pid_1(lesson.wait_gone(_kill_pid_1(WITH_STEP)))


def test_without_the_step_the_sleeps_outlive_the_container_s_first_process():
    sleepers = _kill_pid_1(WITHOUT_STEP)
    try:
        with pytest.raises(ClaimFailed, match="killed every process"):
            lesson.expect_all_died_with_pid_1(lesson.wait_gone(sleepers))
    finally:
        _reap_strays(sleepers)


def test_wait_for_says_what_never_ran(monkeypatch):
    monkeypatch.setattr(lesson, "WAIT_SECONDS", 0.2)
    with (_running(["sleep", "infinity"], WITH_STEP) as container,
          pytest.raises(LabError, match=r"did not run 2 × 'sleep infinity' within 0.2 s")):
        lesson.wait_for(container, ["sleep", "infinity"], count=2)


# ---------------------------------------------------------------------------------------------
# The exercise


def test_the_exercise_accepts_the_pid_the_kernel_gives_the_first_background_child():
    with _running(["sh", "-c", "sleep 30 & wait"], WITH_STEP) as container:
        [sleeper] = lesson.wait_for(container, ["sleep", "30"])
        inside = procfs.nested_pids(sleeper)[-1]
    assert lesson.EXERCISE.check(inside)


@pytest.mark.parametrize(("wrong", "reason"), [
    (1, "init"), (2, "sh itself"), (4, "last number"), (123456, "last number"),
    ("3", "whole number"), (3.0, "whole number"), (True, "whole number"), (None, "whole number"),
])
def test_the_exercise_rejects_wrong_answers_and_says_why(wrong, reason):
    verdict = lesson.EXERCISE.check(wrong)
    assert not verdict
    assert reason in repr(verdict)
