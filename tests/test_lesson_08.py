"""Lesson 08's claims hold on this machine, and each check fails when its claim is false."""

from __future__ import annotations

import pytest
from containers_support import removing_new_containers

from labkit.engine import containers, limiting
from labkit.lessons import cgroups as lesson
from labkit.lessons import samples
from labkit.lessons.checks import ClaimFailed


@pytest.fixture(autouse=True)
def _remove_what_the_test_made(base_image):
    with removing_new_containers():
        yield


def test_the_sample_s_child_dies_by_the_oom_killer_and_the_check_tells():
    lesson.expect_killed_by_the_oom_killer(samples.run("08_cgroup", ["16"]).stdout)
    with pytest.raises(ClaimFailed):
        lesson.expect_killed_by_the_oom_killer("Parent - the child exited with 0\noom_kill 0")


def test_the_eater_dies_and_its_shell_lives_on_and_the_counter_says_so():
    survivor = containers.run("busybox", lesson.SURVIVOR, detach=True, memory="16m")
    output = lesson.wait_for_log(survivor, "I am not")
    lesson.expect_oom_counted(survivor, output)
    assert "oom_kill 1" in lesson.oom_counter(survivor)
    fed = containers.run("busybox", ["sleep", "1000"], detach=True, memory="16m")
    with pytest.raises(ClaimFailed):
        lesson.expect_oom_counted(fed, "the eater is gone, I am not")


def test_a_container_eaten_whole_ends_with_137_and_oom_killed():
    lesson.expect_ended_by_the_oom_killer(containers.run("busybox", lesson.EAT, memory="16m"))
    with pytest.raises(ClaimFailed):
        lesson.expect_ended_by_the_oom_killer(containers.run("busybox", ["true"]))


def test_the_cpu_and_pids_checks_know_a_limit_that_did_not_hold():
    lesson.expect_about_half_a_core(50.0)
    for wrong in (None, 100.0, 10.0):
        with pytest.raises(ClaimFailed):
            lesson.expect_about_half_a_core(wrong)
    box = containers.run("busybox", ["sleep", "1000"], detach=True, pids_limit=20)
    bomb = lesson.fork_bomb(box.id, 60)
    lesson.expect_fork_bomb_stopped(bomb.stderr, limiting.usage(box.id).pids, 20)
    unlimited = containers.run("busybox", ["sleep", "1000"], detach=True, pids_limit=-1)
    spared = lesson.fork_bomb(unlimited.id, 30)
    with pytest.raises(ClaimFailed):
        lesson.expect_fork_bomb_stopped(spared.stderr, limiting.usage(unlimited.id).pids, 20)


def test_the_tables_and_the_picture_name_this_machine_s_groups():
    assert "memory.max" in str(lesson.versions_table())
    box = containers.run("busybox", ["sleep", "1000"], detach=True, name="l08-test")
    picture = str(lesson.hierarchy([containers.inspect(box.id)]))
    assert f"{box.short_id}<br/>l08-test" in picture and '["labkit"]' in picture


def test_the_exercise_accepts_the_limits_and_names_each_mistake():
    assert not lesson.EXERCISE.check(...)
    loose = containers.run("busybox", ["sleep", "1000"], detach=True, memory="64m",
                           pids_limit=50)
    assert "not 32 MB" in repr(lesson.EXERCISE.check(loose))
    many = containers.run("busybox", ["sleep", "1000"], detach=True, memory="32m")
    assert "not 50" in repr(lesson.EXERCISE.check(many))
    scope = {"containers": containers}
    exec(lesson.EXERCISE.solution_text, scope)  # the solution the notebook shows, run as is
    assert lesson.EXERCISE.check(scope["answer"]), lesson.EXERCISE.check(scope["answer"])


def test_clean_up_removes_the_lesson_s_containers_twice_safely():
    containers.run("busybox", ["sleep", "1000"], detach=True, name="l08-left")
    assert lesson.finish() == "removed l08-left"
    assert lesson.finish() == "no container of the lesson is left"
