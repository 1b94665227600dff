"""Lesson 05: each claim holds on a real overlay and fails where its fact is false.

The false cases are real too wherever the kernel can make them: the lowers in the other order,
the runtime without the overlay step, writes into a lower, a deletion made without the overlay,
a mount with the kernel's other options (redirect_dir, metacopy, index on). Every mount happens
in a helper process or a ``python -I -c`` child with a mount namespace of its own.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.engine import layers, store
from labkit.engine.digest import tree_digest
from labkit.errors import LabError
from labkit.kernel import procfs
from labkit.lessons import merged_view
from labkit.lessons import union_filesystems as lesson
from labkit.lessons.checks import ClaimFailed
from labkit.runtime import api
from labkit.runtime.steps import overlay

WRITES = "echo new_a > a && echo new_b > b && echo new_c > c"


@pytest.fixture
def bench(tmp_path: Path) -> lesson.Bench:
    return lesson.article_bench(tmp_path / "bench")


def in_runtime(bench: lesson.Bench, command: str, steps) -> str:
    """The output of ``command`` run by the runtime in ``bench.mnt`` with ``steps``."""
    return api.run(["sh", "-c", f"cd {bench.mnt} && {command}"], steps=steps).stdout


# ---------------------------------------------------------------------------------------------
# The experiment: the union, and the first layer wins


def test_the_bench_is_the_articles(bench):
    assert lesson.lower_texts(bench) == lesson.ARTICLE
    assert [os.listdir(d) for d in (bench.upper, bench.work, bench.mnt)] == [[], [], []]


def test_a_bench_made_again_starts_clean(bench):
    bench.run(WRITES)
    again = lesson.article_bench(bench.root)
    assert lesson.lower_texts(again) == lesson.ARTICLE and os.listdir(again.upper) == []


def test_the_replayed_session_shows_the_merged_view(bench):
    session = bench.session(["ls", "cat b", "exit"])
    assert (session.exit_code, session.timed_out) == (0, False)
    assert "mnt# ls\na  b  c\nmnt# cat b\nb1\nmnt# exit\n" in session.text


def test_the_experiment_claims_hold_on_the_overlay(bench):
    lesson.expect_union(bench.run("ls").split())
    lesson.expect_first_layer_wins(bench.run("cat b"))


def test_the_first_layer_claim_fails_with_the_lowers_reversed(bench):
    with pytest.raises(ClaimFailed, match="b reads b1"):
        lesson.expect_first_layer_wins(bench.run("cat b", lowers=[bench.d2, bench.d1]))


def test_the_runtime_claims_hold_with_the_overlay_step(bench):
    step = overlay.Overlay.of(bench.lowers, bench.upper, bench.work, bench.mnt)
    lesson.expect_union(in_runtime(bench, "ls", [step]).split())
    lesson.expect_first_layer_wins(in_runtime(bench, "cat b", [step]))


def test_the_runtime_claims_fail_without_the_overlay_step(bench):
    with pytest.raises(ClaimFailed, match="a, b and c"):
        lesson.expect_union(in_runtime(bench, "ls", []).split())
    with pytest.raises(ClaimFailed, match="b1"):
        lesson.expect_first_layer_wins(in_runtime(bench, "cat b", []))


def test_a_failing_command_in_the_view_is_one_clear_error(bench):
    with pytest.raises(LabError, match=r"^'cat missing' failed in the overlay \(exit 1\): cat"):
        bench.run("cat missing")


# ---------------------------------------------------------------------------------------------
# The kernel's view


def helper_mounts(bench: lesson.Bench, lowers: list[Path]) -> tuple[procfs.Mount, ...]:
    """The mount table the command of an overlay helper sees, taken while it is mounted."""
    with lesson.held(lowers, bench.upper, bench.work, bench.mnt) as helper:
        (command,) = procfs.process_tree(helper).children
        return procfs.mounts(command.pid)


def overlay_options(table) -> tuple[str, ...]:
    (mount,) = [m for m in table if m.fs_type == "overlay"]
    return mount.super_options


def test_the_kernel_lists_the_lowers_top_first(bench):
    lesson.expect_lowers_top_first(overlay_options(helper_mounts(bench, bench.lowers)),
                                   bench.lowers)
    reversed_options = overlay_options(helper_mounts(bench, [bench.d2, bench.d1]))
    with pytest.raises(ClaimFailed, match="top first"):
        lesson.expect_lowers_top_first(reversed_options, bench.lowers)


def test_the_overlay_is_only_in_the_helpers_mount_table(bench):
    inside = [m.mount_point for m in helper_mounts(bench, bench.lowers)]
    lesson.expect_only_inside([m.mount_point for m in procfs.mounts(os.getpid())], bench.mnt)
    with pytest.raises(ClaimFailed, match="not in this notebook's mount table"):
        lesson.expect_only_inside(inside, bench.mnt)


def test_held_refuses_bad_input_in_one_line(bench, tmp_path):
    missing = tmp_path / "missing"
    with (pytest.raises(LabError) as refusal,
          lesson.held([missing], bench.upper, bench.work, bench.mnt)):
        pytest.fail("the overlay was mounted")
    assert str(refusal.value) == (
        f"lower directory 1 {missing} does not exist: create it or correct the path")


# ---------------------------------------------------------------------------------------------
# Writes: copy-up into the upper, and the article's aufs result with d1 as the upper


def test_writes_land_in_the_upper_and_the_lowers_stay(bench):
    before = lesson.lower_texts(bench)
    bench.run(WRITES)
    lesson.expect_writes_in_upper(lesson.texts(bench.upper))
    lesson.expect_lowers_unchanged(before, lesson.lower_texts(bench))
    assert str(lesson.contents({"d1": bench.d1, "d2": bench.d2, "upper": bench.upper})
               ).splitlines()[1:5] == ["path  d1  d2  upper", "a     a       new_a",
                                       "b     b1  b2  new_b", "c         c   new_c"]
    with pytest.raises(ClaimFailed, match="article's result"):
        lesson.expect_article_result(lesson.texts(bench.d1), lesson.texts(bench.d2))


def test_with_d1_as_the_upper_the_writes_end_as_in_the_article(bench):
    before = lesson.lower_texts(bench)
    bench.run(WRITES, lowers=[bench.d2], upper=bench.d1)
    lesson.expect_article_result(lesson.texts(bench.d1), lesson.texts(bench.d2))
    with pytest.raises(ClaimFailed, match="never writes a lower"):
        lesson.expect_lowers_unchanged(before, lesson.lower_texts(bench))
    with pytest.raises(ClaimFailed, match="every write landed in the upper"):
        lesson.expect_writes_in_upper(lesson.texts(bench.upper))


# ---------------------------------------------------------------------------------------------
# Deletions: whiteouts and opaque directories


DELETE = "rm a b && rm -r dir && mkdir dir && echo new > dir/new"


def test_deletions_leave_whiteouts_and_an_opaque_dir(bench):
    lesson.with_directory(bench)
    before = lesson.lower_texts(bench)
    bench.run(DELETE)
    lesson.expect_hidden(bench.run("ls").split(), ["a", "b"])
    lesson.expect_whiteout("a", os.lstat(bench.upper / "a"))
    lesson.expect_whiteout("b", os.lstat(bench.upper / "b"))
    lesson.expect_opaque("dir", lesson.xattrs(bench.upper / "dir"))
    lesson.expect_only_new_inside(bench.run("ls dir").split(), ["new"])
    lesson.expect_lowers_unchanged(before, lesson.lower_texts(bench))
    assert lesson.texts(bench.upper) == {"a": "whiteout", "b": "whiteout", "dir": "opaque dir",
                                         "dir/new": "new\n"}


def test_deletion_claims_fail_where_nothing_was_deleted_through_the_overlay(bench):
    lesson.with_directory(bench)
    bench.run("mkdir -p dir && echo new > dir/new")  # dir merges with the lower's dir
    with pytest.raises(ClaimFailed, match="no longer in the merged view"):
        lesson.expect_hidden(bench.run("ls").split(), ["a", "b"])
    with pytest.raises(ClaimFailed, match="a whiteout"):
        lesson.expect_whiteout("a", os.lstat(bench.d1 / "a"))
    with pytest.raises(ClaimFailed, match="opaque directory"):
        lesson.expect_opaque("dir", lesson.xattrs(bench.upper / "dir"))
    with pytest.raises(ClaimFailed, match="stay hidden"):
        lesson.expect_only_new_inside(bench.run("ls dir").split(), ["new"])


def test_a_device_other_than_0_0_is_no_whiteout(tmp_path):
    os.mknod(tmp_path / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    with pytest.raises(ClaimFailed, match="0/0"):
        lesson.expect_whiteout("null", os.lstat(tmp_path / "null"))


# ---------------------------------------------------------------------------------------------
# The pinned options, against a mount with the kernel's other choices


FLIPPED_MOUNT = """
import os, shutil, subprocess, sys
from labkit.kernel import syscalls

lowers, upper, work, target, options, command = sys.argv[1:]
syscalls.unshare(syscalls.CLONE_NEWNS)
syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
syscalls.mount("overlay", target, "overlay", 0,
               f"lowerdir={lowers},upperdir={upper},workdir={work},{options}")
done = subprocess.run(["sh", "-c", command], cwd=target, capture_output=True, text=True)
syscalls.umount2(target)
shutil.rmtree(os.path.join(work, "work"))  # as the lab clears it: what stays is the kernel's
print(done.stdout, end="")
sys.exit(done.returncode)
"""
FLIPPED = "redirect_dir=on,metacopy=on,index=on"
RENAME = (f"{sys.executable} -I -c 'import os; os.rename(\"dir\", \"moved\"); print(\"ok\")'"
          " && chmod 600 c")


def test_the_pinned_options_hold_on_the_labs_overlay(bench):
    lesson.with_directory(bench)
    outcome = lesson.rename_in_view(bench, "dir", "moved")
    bench.run("mv dir moved && chmod 600 c")
    lesson.expect_rename_refused(outcome)
    lesson.expect_copied_whole(lesson.texts(bench.upper), lesson.xattrs(bench.upper / "moved"))
    lesson.expect_whole_copy_up((bench.upper / "c").read_text(), lesson.xattrs(bench.upper / "c"))
    lesson.expect_work_empty(os.listdir(bench.work))
    lesson.expect_pinned(overlay.Overlay.of(bench.lowers, bench.upper, bench.work,
                                            bench.mnt).options())
    elsewhere = lesson.copy_lowers(bench, bench.root / "elsewhere")
    assert [os.stat(lower / "b").st_ino for lower in elsewhere] != [
        os.stat(lower / "b").st_ino for lower in bench.lowers]
    lesson.expect_portable(bench.run("ls -R"), bench.run("ls -R", lowers=elsewhere))


def flipped(bench: lesson.Bench, lowers: list[Path], command: str) -> subprocess.CompletedProcess:
    """Run ``command`` in an overlay of ``lowers`` under bench's upper, with FLIPPED options."""
    return subprocess.run([sys.executable, "-I", "-c", FLIPPED_MOUNT,
                           ":".join(str(lower) for lower in lowers), str(bench.upper),
                           str(bench.work), str(bench.mnt), FLIPPED, command],
                          capture_output=True, text=True, timeout=lesson.SECONDS)


def test_the_pinned_option_claims_fail_with_the_features_on(bench):
    lesson.with_directory(bench)
    done = flipped(bench, bench.lowers, RENAME)
    assert done.returncode == 0, done.stderr
    with pytest.raises(ClaimFailed, match="EXDEV"):
        lesson.expect_rename_refused(done.stdout.strip())
    with pytest.raises(ClaimFailed, match="copied the directory up whole"):
        lesson.expect_copied_whole(lesson.texts(bench.upper),
                                   lesson.xattrs(bench.upper / "moved"))
    with pytest.raises(ClaimFailed, match="metacopy=off"):
        lesson.expect_whole_copy_up((bench.upper / "c").read_text(),
                                    lesson.xattrs(bench.upper / "c"))
    with pytest.raises(ClaimFailed, match="work is empty"):
        lesson.expect_work_empty(os.listdir(bench.work))
    with pytest.raises(ClaimFailed, match="pins"):
        lesson.expect_pinned(FLIPPED)
    view = flipped(bench, bench.lowers, "ls -R").stdout
    over_a_copy = flipped(bench, lesson.copy_lowers(bench, bench.root / "elsewhere"), "ls -R")
    assert "ESTALE" in over_a_copy.stderr  # index=on: the upper refuses other lowers
    with pytest.raises(ClaimFailed, match="portable"):
        lesson.expect_portable(view, over_a_copy.stdout)


def test_the_mount_table_lists_a_pin_only_where_it_changes_a_default(bench):
    defaults = lesson.kernel_defaults()
    assert set(defaults.values()) <= {"on", "off"}
    options = overlay_options(helper_mounts(bench, bench.lowers))
    lesson.expect_listed_unless_default(options, defaults)
    other = {name: "on" if value == "off" else "off" for name, value in defaults.items()}
    with pytest.raises(ClaimFailed, match="differs from this kernel's default"):
        lesson.expect_listed_unless_default(options, other)


def test_the_defaults_table_has_a_row_per_pinned_option():
    table = lesson.defaults_table(lesson.kernel_defaults())
    assert [row[0] for row in table.rows] == list(overlay.PORTABLE_OPTIONS)
    assert all(row[2] == "off" for row in table.rows)


# ---------------------------------------------------------------------------------------------
# The live CD, and images and containers


def test_a_fresh_upper_shows_the_original_files_and_the_used_one_does_not(bench):
    bench.run(WRITES)
    lesson.expect_fresh_start(bench.run("cat a b c", upper=bench.new_upper("fresh")),
                              "a\nb1\nc\n")
    with pytest.raises(ClaimFailed, match="original files"):
        lesson.expect_fresh_start(bench.run("cat a b c"), "a\nb1\nc\n")


CONTAINER = ("echo hello > etc/motd && echo 'lab:x:1000:1000::/tmp:/bin/sh' >> etc/passwd "
             "&& rm etc/hostname")
CHANGES = {"added": ["etc/motd"], "changed": ["etc/passwd"], "deleted": ["etc/hostname"]}


def test_a_container_of_busybox_changes_only_its_upper(base_image, tmp_path):
    lab, image = lesson.busybox_image()
    image_layers = lesson.lowers_of(lab, image)
    upper, work, rootfs = lesson.fresh_dirs(tmp_path, "upper", "work", "rootfs")
    done = merged_view.run(image_layers, upper, work, rootfs, ["sh", "-c", CONTAINER])
    assert done.returncode == 0
    lesson.expect_changes(layers.diff(upper, image_layers), **CHANGES)
    lesson.expect_layer_unchanged(tree_digest(image_layers[0])[0], image.layers[0])
    second = lesson.fresh_dirs(tmp_path / "second", "upper", "work", "rootfs")
    hostname = merged_view.run(image_layers, *second, ["cat", "etc/hostname"]).stdout
    lesson.expect_fresh_start(hostname, "busybox\n")
    with pytest.raises(ClaimFailed, match="original files"):
        lesson.expect_fresh_start(merged_view.run(image_layers, upper, work, rootfs,
                                              ["cat", "etc/hostname"]).stdout, "busybox\n")


def test_the_image_claims_fail_when_the_layer_itself_is_written(base_image, tmp_path):
    lab, image = lesson.busybox_image()
    written = tmp_path / "layer"
    shutil.copytree(lesson.lowers_of(lab, image)[0], written, symlinks=True)
    empty, work, rootfs = lesson.fresh_dirs(tmp_path, "empty", "work", "rootfs")
    # aufs-style: the layer is the writable branch, over nothing worth keeping
    merged_view.run([empty], written, work, rootfs, ["sh", "-c", CONTAINER])
    with pytest.raises(ClaimFailed, match="hashes to its name"):
        lesson.expect_layer_unchanged(tree_digest(written)[0], image.layers[0])
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with pytest.raises(ClaimFailed, match="exactly the container's changes"):
        lesson.expect_changes(layers.diff(fresh, [written]), **CHANGES)


def test_lowers_of_lists_an_images_layers_top_first(tmp_path):
    lab = store.Store(tmp_path)
    image = store.Image("stacked", "latest", layers=["sha256:bottom", "sha256:top"])
    assert lesson.lowers_of(lab, image) == [lab.layer_tree("sha256:top"),
                                            lab.layer_tree("sha256:bottom")]


def test_busybox_image_builds_the_image_once_when_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    lab, image = lesson.busybox_image()
    assert image.reference == "busybox:latest" and lab.has_layers(image)
    assert lesson.busybox_image()[1] == image


def test_this_kernel_has_overlayfs_and_a_list_without_it_fails():
    lesson.expect_overlay_in_kernel(Path("/proc/filesystems").read_text())
    with pytest.raises(ClaimFailed, match="overlay"):
        lesson.expect_overlay_in_kernel("nodev\ttmpfs\n\text4\n")


# ---------------------------------------------------------------------------------------------
# The exercise


SHOW_EACH = """
import json, sys
seen = {}
for path in sys.argv[1:]:
    try:
        seen[path] = open(path).read().strip()
    except FileNotFoundError:
        seen[path] = None
print(json.dumps(seen))
"""


def test_the_exercise_answer_is_what_the_kernel_shows(tmp_path):
    stack = lesson.exercise_stack(tmp_path / "exercise")
    assert layers.entries(stack[0]) == {"a": "file", "c": "whiteout", "dir": "opaque dir",
                                        "dir/z": "file"}
    upper, work, mnt = lesson.fresh_dirs(tmp_path, "upper", "work", "mnt")
    done = merged_view.run(stack, upper, work, mnt,
                       [sys.executable, "-I", "-c", SHOW_EACH, *lesson.ANSWER])
    assert json.loads(done.stdout) == lesson.ANSWER


def test_the_exercise_listing_gives_nothing_away(tmp_path):
    stack = lesson.exercise_stack(tmp_path / "exercise")
    listing = lesson.listing(stack, lesson.EXERCISE_LAYERS)
    assert listing.columns == ["path", "top", "middle", "bottom"]
    assert all(isinstance(cell, str) for row in listing.rows for cell in row)
    assert lesson.only(listing, "dir/").rows == [["dir/x", "", "", "file"],
                                                 ["dir/y", "", "file", ""],
                                                 ["dir/z", "file", "", ""]]


@pytest.mark.parametrize("wrong", [
    ...,
    [],
    {},
    {**lesson.ANSWER, "c": "middle"},
    {**lesson.ANSWER, "dir/y": "middle"},
    {**lesson.ANSWER, "a": "bottom"},
    {**lesson.ANSWER, "c": "hidden"},
    {path: layer for path, layer in lesson.ANSWER.items() if path != "d"},
    {**lesson.ANSWER, "dir/x": None},
])
def test_the_exercise_rejects_wrong_answers(wrong):
    verdict = lesson.EXERCISE.check(wrong)
    assert not verdict and repr(verdict).startswith("✘ Not yet: ")


def test_the_exercise_accepts_the_answer_its_solution_gives():
    solution = lesson.EXERCISE.solution_text
    given = ast.literal_eval(solution.removeprefix("answer = ").split("  #")[0])
    assert given == lesson.ANSWER
    assert lesson.EXERCISE.check(dict(given))


@pytest.mark.parametrize(("wrong", "names"), [
    ({**lesson.ANSWER, "dir/y": "middle"}, "'dir/y': the top layer's dir is opaque"),
    ({**lesson.ANSWER, "c": "middle"}, "'c': the top layer holds a whiteout at c"),
    ({**lesson.ANSWER, "b": "bottom"}, "'b': the top layer has no b, so the view looks further"),
    ({**lesson.ANSWER, "c": "hidden"}, "'hidden' for 'c' is no layer"),
])
def test_the_exercise_s_feedback_names_the_actual_mistake(wrong, names):
    """Not 'the first one with anything at that path decides', which points at middle's dir/y:
    the rule that was missed, for the path that was missed."""
    assert names in repr(lesson.EXERCISE.check(wrong))
