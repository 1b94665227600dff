"""Lessons 00 and 01: their checks fail when the kernel or the runtime does something else."""

import os
import subprocess

import pytest

from labkit.lessons import plain_clone, probe, start_here
from labkit.lessons.checks import ClaimFailed
from labkit.runtime import api
from labkit.runtime.steps.hostname import Hostname


def test_start_here_counts_the_links_of_this_kernel():
    assert start_here.EXERCISE.check(len(os.listdir("/proc/self/ns")))
    assert not start_here.EXERCISE.check(len(os.listdir("/proc/self/ns")) - 1)
    assert not start_here.EXERCISE.check("ten")


def test_the_probe_reads_what_the_kernel_says():
    output = subprocess.run(probe.NS_PROBE, capture_output=True, text=True, check=True).stdout
    printed = probe.printed_ids("Parent - start a container!\n" + output)
    assert printed["uts"] == os.stat("/proc/self/ns/uts").st_ino
    assert probe.different(probe.versus_host(printed)) == set()


def test_plain_clone_check_passes_for_a_runtime_without_steps():
    plain_clone.expect_shares_every_namespace(
        probe.versus_host(api.run(["true"], steps=[]).namespaces))


def test_plain_clone_check_fails_when_the_child_got_a_namespace_of_its_own():
    result = api.run(["true"], steps=[Hostname("container")])
    with pytest.raises(ClaimFailed, match="uts"):
        plain_clone.expect_shares_every_namespace(probe.versus_host(result.namespaces))


def test_plain_clone_check_fails_when_pid_1_is_not_the_hosts():
    with pytest.raises(ClaimFailed):
        plain_clone.expect_sees_the_hosts_pid_1("sh", "systemd")


@pytest.mark.parametrize("wrong", [{"uts"}, {"pid", "mnt"}, [], "none"])
def test_plain_clone_exercise_rejects_wrong_answers(wrong):
    assert not plain_clone.EXERCISE.check(wrong)


def test_plain_clone_exercise_accepts_the_right_answer():
    assert plain_clone.EXERCISE.check(set())
