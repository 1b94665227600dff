"""Lesson 06: each claim holds on real containers and images, and fails on a wrong input; the
exercise rejects wrong answers and accepts a right one.

The wrong inputs are real too: another container's upper, an image of two layers, the host's
own namespaces, a container still running, a removed one, the escape's output from the other
side. Every container and image made here is removed.
"""

from __future__ import annotations

import html
import os
import re

import pytest
from containers_support import removing_new_containers
from images_support import removing_new_images

from labkit.engine import containers, layers, store
from labkit.kernel import procfs
from labkit.lessons import images_and_containers as lesson
from labkit.lessons.checks import ClaimFailed


@pytest.fixture(autouse=True)
def _remove_what_the_test_made(base_image):
    with removing_new_images(), removing_new_containers():
        yield


@pytest.fixture
def box() -> containers.Container:
    """A running container of busybox that wrote /greeting and deleted /etc/group."""
    box = containers.run("busybox", ["sleep", "1000"], detach=True, name="l06-test-box")
    changed = containers.exec(box.id, ["sh", "-c", "echo hello > /greeting && rm /etc/group"])
    assert changed.exit_code == 0, changed.stderr
    return box


def committed(box: containers.Container, reference: str) -> store.Image:
    containers.stop(box.id, timeout=1)
    return containers.commit(box.id, reference)


def test_the_root_is_the_image_s_layers_under_the_container_s_own_upper(box):
    busybox = lesson.base_image()
    root = lesson.root_mount(box)
    lesson.expect_layers_plus_upper(root, lesson.layer_dirs(busybox), lesson.upper_dir(box))

    other = containers.run("busybox", ["sleep", "1000"], detach=True)
    with pytest.raises(ClaimFailed):
        lesson.expect_layers_plus_upper(root, lesson.layer_dirs(busybox), lesson.upper_dir(other))
    child = containers.run(committed(box, "lab06/test:root").reference, ["sleep", "1000"],
                           detach=True)
    with pytest.raises(ClaimFailed):
        lesson.expect_layers_plus_upper(lesson.root_mount(child), lesson.layer_dirs(busybox),
                                        lesson.upper_dir(child))


def test_the_process_space_is_the_container_s_own(box):
    host = procfs.namespaces(os.getpid())
    lesson.expect_own_process_space(
        procfs.compare_namespaces(procfs.namespaces(box.state.init_pid), host))
    lesson.expect_pid_1(procfs.nested_pids(box.state.init_pid))
    with pytest.raises(ClaimFailed):
        lesson.expect_own_process_space(procfs.compare_namespaces(host, host))
    with pytest.raises(ClaimFailed):
        lesson.expect_pid_1(procfs.nested_pids(os.getpid()))


def test_stop_ends_the_processes_and_keeps_the_upper(box):
    lowers = lesson.layer_dirs(lesson.base_image())
    diff = layers.diff(lesson.upper_dir(box), lowers)
    with pytest.raises(ClaimFailed):  # still running
        lesson.expect_stop_keeps_upper(lesson.still_running(box), diff, "greeting", "etc/group")
    containers.stop(box.id, timeout=1)
    lesson.expect_stop_keeps_upper(lesson.still_running(box), diff, "greeting", "etc/group")

    untouched = containers.run("busybox", ["true"])
    with pytest.raises(ClaimFailed):
        lesson.expect_stop_keeps_upper(
            False, layers.diff(lesson.upper_dir(untouched), lowers), "greeting", "etc/group")


def test_ps_a_lists_a_stopped_container_with_its_upper(box):
    def statuses() -> dict[str, str]:
        return {container.name: container.status for container in containers.ps(all=True)}

    with pytest.raises(ClaimFailed):  # still running
        lesson.expect_listed(statuses(), box.name, lesson.upper_dir(box))
    containers.stop(box.id, timeout=1)
    lesson.expect_listed(statuses(), box.name, lesson.upper_dir(box))
    upper = lesson.upper_dir(box)
    containers.rm(box.id)
    with pytest.raises(ClaimFailed):
        lesson.expect_listed(statuses(), box.name, upper)


def test_commit_adds_exactly_the_upper_as_one_layer_and_the_image_shows_it(box):
    busybox = lesson.base_image()
    image = committed(box, "lab06/test:commit")
    new_layer = layers.entries(store.reading().layer_tree(image.layers[-1]))
    upper = layers.entries(lesson.upper_dir(box))
    lesson.expect_one_more_layer(busybox.layers, image.layers)
    lesson.expect_layer_is_upper(new_layer, upper, "etc/group")
    look = ["sh", "-c", "cat /greeting; ls /etc"]
    seen = containers.run(image.reference, look, remove=True).stdout
    lesson.expect_committed_view(seen, "hello", "etc/group")

    with pytest.raises(ClaimFailed):
        lesson.expect_one_more_layer(image.layers, busybox.layers)
    with pytest.raises(ClaimFailed):  # a layer made by copying the image's would not be its own
        lesson.expect_one_more_layer(busybox.layers, [f"sha256:{'0' * 64}", image.layers[-1]])
    with pytest.raises(ClaimFailed):
        lesson.expect_layer_is_upper(new_layer, upper, "greeting")
    other = containers.run("busybox", ["sh", "-c", "rm /etc/group"])
    with pytest.raises(ClaimFailed):
        lesson.expect_layer_is_upper(new_layer, layers.entries(lesson.upper_dir(other)),
                                     "etc/group")
    with pytest.raises(ClaimFailed):
        lesson.expect_committed_view(containers.run("busybox", look, remove=True).stdout,
                                     "hello", "etc/group")


def test_the_escape_leaves_a_chroot_but_not_a_container(tmp_path):
    escape = lesson.escape_program()
    jail = lesson.make_jail(tmp_path / "jail", escape)
    outside = tmp_path / "outside.txt"
    outside.write_text("the host's\n")
    jailed = lesson.chroot_session(jail, [f"cat {outside}", f"/escape {outside}", "exit"])
    assert (jailed.exit_code, jailed.timed_out) == (0, False), jailed.text
    assert "can't open" in jailed.text and lesson.CURSOR_QUERY not in jailed.text
    lesson.expect_escaped(jailed.text, str(outside))
    with pytest.raises(ClaimFailed):
        lesson.expect_confined(jailed.text, str(outside))

    inside = lesson.escape_in_container(escape, str(outside))
    assert inside.exit_code == 0, inside.stderr
    lesson.expect_confined(inside.stdout, str(outside))
    with pytest.raises(ClaimFailed):
        lesson.expect_escaped(inside.stdout, str(outside))


def test_seccomp_stops_the_user_namespace_escape_that_unconfined_allows():
    unconfined = lesson.user_namespace_escape("unconfined")
    default = lesson.user_namespace_escape("default")
    lesson.expect_seccomp_stops_the_escape(unconfined, default)
    with pytest.raises(ClaimFailed):  # two unconfined containers: the claim sees the escape
        lesson.expect_seccomp_stops_the_escape(unconfined, unconfined)


def test_the_session_types_labkit_commands_at_a_shell():
    session = lesson.session(["labkit images", "exit"])
    assert (session.exit_code, session.timed_out) == (0, False), session.text
    assert session.text.startswith("$ labkit images\nREPOSITORY")
    assert "\nbusybox " in session.text


def test_a_replayed_session_renders_as_a_learner_s_terminal_would(monkeypatch):
    """rich's tables at the width of a terminal window, a row on one line, not squeezed into 80
    columns; in the notebook, lines never wrapped and spaced so that box lines touch."""
    monkeypatch.delenv("LABKIT_PLAIN")
    box = containers.run("busybox", ["sh", "-c", "echo a command longer than its column would "
                                     "be on 80 columns; exec sleep 1000"],
                         detach=True, name="l06-wide")
    session = lesson.session(["labkit ps", "exit"])
    table = [line for line in session.text.splitlines() if line[:1] in "┏┃┡│└"]
    assert len({len(line) for line in table}) == 1 and len(table[0]) > 80, session.text
    [row] = [line for line in table if box.id[:12] in line]
    assert "l06-wide" in row and "Up " in row  # the whole row on the id's line
    style, text = re.fullmatch(r'<pre style="([^"]*)">(.*)</pre>', session._repr_html_(),
                               re.DOTALL).groups()
    rules = dict(rule.split(": ") for rule in style.split("; "))
    assert rules["white-space"] == "pre"  # a long line scrolls, as in a terminal: no wrap
    assert float(rules["line-height"]) <= 1.2  # box glyphs are about 1.17 em high
    assert html.unescape(text) == session.text


def test_clean_up_removes_the_lesson_s_containers_and_images_and_nothing_else():
    containers.run("busybox", ["sleep", "1000"], detach=True, name="l06-running")
    assert containers.run("busybox", ["touch", "/x"], name="l06-maker").exit_code == 0
    containers.commit("l06-maker", "lab06/kept:v1")
    containers.commit("l06-maker", "lab06/gone:v1")
    mine = containers.run("lab06/kept:v1", ["true"], name="not-the-lesson-s")
    outsider = containers.run("busybox", ["true"], name="outsider")

    removed = lesson.clean_up()
    assert sorted(removed[:2]) == ["l06-maker", "l06-running"]
    assert removed[2:] == [
        "lab06/gone:v1",  # only untagged: lab06/kept:v1 is the very same image
        f"kept lab06/kept:v1: image lab06/kept:v1 is used by container not-the-lesson-s "
        f"({mine.id[:12]}): remove it first (labkit rm not-the-lesson-s)"]
    assert {"not-the-lesson-s", "outsider"} <= {c.name for c in containers.ps(all=True)}
    assert outsider.exit_code == 0 and store.reading().image("lab06/kept:v1") is not None


# ---------------------------------------------------------------------------------------------
# The exercise


@pytest.fixture
def mine() -> store.Image:
    """The solution's image: /etc/motd written, /etc/group deleted."""
    script = "echo mine > /etc/motd && rm /etc/group"
    assert containers.run("busybox", ["sh", "-c", script], name="l06-mine").exit_code == 0
    return containers.commit("l06-mine", "lab06/mine:v1")


def test_the_exercise_accepts_an_image_that_keeps_a_change_and_a_deletion(mine):
    answer = {"image": mine.reference, "changed": "/etc/motd", "deleted": "/etc/group"}
    assert lesson.EXERCISE.check(answer)


def rejected(answer, says: str) -> None:
    verdict = lesson.EXERCISE.check(answer)
    assert not verdict and says in repr(verdict), repr(verdict)


@pytest.mark.parametrize(("answer", "says"), [
    (..., "no answer yet"),
    ("lab06/mine:v1", "answer with a dict"),
    ({"image": "lab06/mine:v1"}, "answer with a dict"),
    ({"image": "Lab06/Mine", "changed": "/a", "deleted": "/b"}, "invalid image reference"),
    ({"image": "lab06/none:v1", "changed": "/a", "deleted": "/b"}, "there is no image"),
    ({"image": "busybox", "changed": "/bin/ls", "deleted": "/etc/group"}, "no whiteout"),
])
def test_the_exercise_rejects_a_malformed_answer_or_another_image(answer, says):
    rejected(answer, says)


@pytest.mark.parametrize(("changed", "deleted", "says"), [
    ("/etc/hostname", "/etc/group", "holds no file /etc/hostname"),
    ("/etc/motd", "/etc/passwd", "no whiteout for /etc/passwd"),
])
def test_the_exercise_rejects_paths_the_commit_did_not_change(mine, changed, deleted, says):
    rejected({"image": mine.reference, "changed": changed, "deleted": deleted}, says)


def test_the_first_and_last_cells_say_what_they_removed_and_run_twice(tmp_path):
    assert lesson.tidy_earlier_run() == "an earlier run left nothing: the lesson starts clean"
    containers.run("busybox", ["true"], name="l06-left")
    assert lesson.tidy_earlier_run() == "removed what an earlier run left: l06-left"
    workspace = tmp_path / "lesson06"
    workspace.mkdir()
    containers.run("busybox", ["true"], name="l06-mine")
    assert lesson.finish(workspace).splitlines() == [
        "removed l06-mine", f"removed the lesson's files in {workspace}"]
    assert lesson.finish(workspace).splitlines() == [  # run again: nothing left, no error
        "no container or image of the lesson is left",
        f"{workspace} was removed already: nothing left to remove"]
