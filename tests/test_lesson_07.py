"""Lesson 07's claims hold on this machine, and each check fails when its claim is false."""

from __future__ import annotations

import pytest
from containers_support import removing_new_containers

from labkit.engine import containers
from labkit.lessons import networks as lesson
from labkit.lessons import samples
from labkit.lessons.checks import ClaimFailed


@pytest.fixture(autouse=True)
def _remove_what_the_test_made(base_image):
    with removing_new_containers():
        yield


def test_the_sample_sees_only_lo_switched_off_and_the_check_knows_the_difference():
    lesson.expect_only_lo_switched_off(samples.run("07_net", ["true"]).stdout)
    with pytest.raises(ClaimFailed):
        lesson.expect_only_lo_switched_off("Container - my interfaces: lo (UP) eth0 (UP)")


def test_the_hand_wiring_session_pings_the_container_and_the_pair_dies_with_it():
    assert lesson.free_of_host_routes(lesson.HAND_SUBNET) == []
    session = lesson.wiring_session(samples.build("07_net"))
    assert not session.timed_out, session.text  # its last command fails, as it should: gone
    lesson.expect_hand_wiring_worked(session.text)
    with pytest.raises(ClaimFailed):  # a session whose host end outlived the namespace
        lesson.expect_hand_wiring_worked(session.text.replace("does not exist", "exists"))


def test_a_container_is_on_the_bridge_and_the_picture_shows_its_cable():
    box = containers.run("busybox", ["sleep", "1000"], detach=True, name="l07-test-box")
    lesson.expect_on_the_bridge(containers.inspect(box.id))
    table = str(lesson.interfaces_table(box))
    assert "eth0" in table and f"lkv{box.short_id}" in table
    picture = str(lesson.picture([containers.inspect(box.id)]))
    assert f"lkv{box.short_id} ~ eth0" in picture
    alone = containers.run("busybox", ["sleep", "1000"], detach=True, network="none")
    with pytest.raises(ClaimFailed):
        lesson.expect_on_the_bridge(containers.inspect(alone.id))


def test_a_published_page_its_rule_and_its_end():
    web = containers.run("busybox", lesson.WEB, detach=True, name="l07-test-web",
                         publish=["127.0.0.1::80"])
    [port] = containers.port(web.id)
    lesson.expect_served(lesson.fetch(f"http://127.0.0.1:{port.host_port}/"))
    lesson.expect_rule_for(port.host_port, containers.inspect(web.id).lease.address, 80)
    with pytest.raises(ClaimFailed):
        lesson.expect_closed_after_stop(port.host_port)
    containers.stop(web.id, timeout=1)
    lesson.expect_closed_after_stop(port.host_port)
    with pytest.raises(ClaimFailed):
        lesson.expect_served(lesson.fetch(f"http://127.0.0.1:{port.host_port}/", seconds=1))


def test_the_exercise_accepts_a_server_on_8081_and_names_each_mistake():
    assert not lesson.EXERCISE.check(...)
    assert "give the Container" in repr(lesson.EXERCISE.check("8081"))
    wrong = containers.run("busybox", lesson.WEB, detach=True, name="l07-wrong",
                           publish=["8081:80"])
    assert "leads to the container's port 80" in repr(lesson.EXERCISE.check(wrong))
    containers.rm(wrong.id, force=True)
    scope = {"containers": containers}
    exec(lesson.EXERCISE.solution_text, scope)  # the solution the notebook shows, run as is
    assert lesson.EXERCISE.check(scope["answer"]), lesson.EXERCISE.check(scope["answer"])


def test_clean_up_removes_the_lesson_s_containers_and_says_so_twice_safely():
    containers.run("busybox", ["sleep", "1000"], detach=True, name="l07-left")
    kept = containers.run("busybox", ["sleep", "1000"], detach=True, name="not-the-lesson-s")
    assert lesson.finish() == "removed l07-left"
    assert lesson.finish() == "no container of the lesson is left"
    assert containers.inspect(kept.id).status == "running"
