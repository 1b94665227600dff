"""Lessons 00 and 01: their checks fail when the kernel or the runtime does something else."""

import json
import os
import re
import subprocess

import pytest

from labkit.kernel import procfs
from labkit.lessons import plain_clone, probe, samples, start_here
from labkit.lessons.checks import ClaimFailed
from labkit.runtime import api
from labkit.runtime.steps.hostname import Hostname
from tests.conftest import REPO


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


def test_lesson_00_counts_kinds_and_the_links_for_children_exactly():
    links = procfs.namespaces(os.getpid())
    start_here.expect_a_namespace_of_each_kind(links)
    with pytest.raises(ClaimFailed):  # a link for children with no kind of its own to match
        start_here.expect_a_namespace_of_each_kind(
            [link for link in links if link.name != "time"])


def test_lesson_01_shows_every_file_its_sample_is_built_from():
    """'Here is the program': every header the sample includes is printed with it."""
    cells = json.loads((REPO / "notebooks" / "01_plain_clone.ipynb").read_text())["cells"]
    shown = "".join(next(c["source"] for c in cells if c["id"] == "01-02"))
    source = (samples.SAMPLES_DIR / "01_plain_clone.c").read_text()
    included = re.findall(r'#include "([^"]+)"', source)
    assert included and all(f'"{name}"' in shown for name in [*included, "01_plain_clone.c"])
