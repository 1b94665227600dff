"""The overlay step on real overlayfs mounts.

Every mount happens in a helper process with mount and PID namespaces of its own
(``merged_view.run`` and ``merged_view.start``), or in a ``python -I -c`` child that makes its own:
never in pytest. The layers start as the article's experiment: ``d1`` holds ``a`` and ``b``
(``b1``), ``d2`` holds ``b`` (``b2``) and ``c``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from labkit.engine import layers
from labkit.errors import LabError
from labkit.kernel import process
from labkit.kernel.syscalls import CLONE_NEWNS
from labkit.lessons import merged_view
from labkit.runtime import api
from labkit.runtime.spec import Spec
from labkit.runtime.steps import overlay

SECONDS = 10  # the most any step here may take before the test gives up on it


@dataclass(frozen=True)
class Layout:
    d1: Path
    d2: Path
    upper: Path
    work: Path
    target: Path

    @property
    def lowers(self) -> list[Path]:
        return [self.d1, self.d2]

    def run(self, *command: str) -> subprocess.CompletedProcess:
        return merged_view.run(self.lowers, self.upper, self.work, self.target, command)


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    paths = Layout(*(tmp_path / name for name in ("d1", "d2", "upper", "work", "mnt")))
    for directory in (paths.d1, paths.d2, paths.upper, paths.work, paths.target):
        directory.mkdir()
    (paths.d1 / "a").write_text("a\n")
    (paths.d1 / "b").write_text("b1\n")
    (paths.d2 / "b").write_text("b2\n")
    (paths.d2 / "c").write_text("c\n")
    return paths


def snapshot(directory: Path) -> dict[str, tuple[str, str | None]]:
    """Every path of a directory with its kind, and its text for files: to prove it unchanged."""
    return {path: (what, (directory / path).read_text() if what == layers.FILE else None)
            for path, what in layers.entries(directory).items()}


def is_whiteout(path: Path) -> bool:
    info = os.lstat(path)
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


# ---------------------------------------------------------------------------------------------
# What the merged view shows and where writes land


def test_article_experiment_first_lower_wins(layout):
    done = layout.run("sh", "-c", "ls; cat b")
    assert (done.returncode, done.stdout, done.stderr) == (0, "a\nb\nc\nb1\n", "")


def test_lower_order_decides_which_file_wins(layout):
    done = merged_view.run([layout.d2, layout.d1], layout.upper, layout.work, layout.target,
                       ["cat", "b"])
    assert done.stdout == "b2\n"


def test_article_writes_copy_up_and_leave_lowers_untouched(layout):
    d1, d2 = snapshot(layout.d1), snapshot(layout.d2)
    done = layout.run("sh", "-c", "echo new_a > a; echo new_b > b; echo new_c > c; cat a b c")
    assert done.stdout == "new_a\nnew_b\nnew_c\n"
    assert (snapshot(layout.d1), snapshot(layout.d2)) == (d1, d2)
    assert (layout.d2 / "c").read_text() == "c\n"
    assert snapshot(layout.upper) == {"a": ("file", "new_a\n"), "b": ("file", "new_b\n"),
                                      "c": ("file", "new_c\n")}
    assert layers.diff(layout.upper, layout.lowers) == layers.LayerDiff(changed=("a", "b", "c"))


def test_a_new_file_goes_to_the_upper_only(layout):
    layout.run("sh", "-c", "echo hello > new")
    assert (layout.upper / "new").read_text() == "hello\n"
    assert not (layout.d1 / "new").exists() and not (layout.d2 / "new").exists()
    assert layers.diff(layout.upper, layout.lowers) == layers.LayerDiff(added=("new",))


def test_a_metadata_change_copies_up_the_whole_file(layout):
    layout.run("chmod", "600", "c")
    assert stat.S_IMODE(os.stat(layout.upper / "c").st_mode) == 0o600
    assert (layout.upper / "c").read_text() == "c\n"
    assert "trusted.overlay.metacopy" not in os.listxattr(layout.upper / "c")


def test_a_hard_link_in_a_lower_copies_up_as_a_separate_file(layout):
    os.link(layout.d2 / "c", layout.d2 / "c-link")
    done = layout.run("sh", "-c", "echo new > c; cat c-link")
    assert done.stdout == "c\n"
    assert os.stat(layout.d2 / "c").st_nlink == 2


# ---------------------------------------------------------------------------------------------
# Deletions: whiteouts and opaque directories


def test_deleting_a_lower_file_leaves_a_whiteout(layout):
    done = layout.run("sh", "-c", "rm a b; ls")
    assert done.stdout == "c\n"
    assert is_whiteout(layout.upper / "a") and is_whiteout(layout.upper / "b")
    assert (layout.d1 / "a").read_text() == "a\n"
    assert layers.diff(layout.upper, layout.lowers) == layers.LayerDiff(deleted=("a", "b"))


def test_a_directory_deleted_and_made_again_is_opaque(layout):
    (layout.d2 / "dir").mkdir()
    (layout.d2 / "dir" / "old").write_text("old\n")
    done = layout.run("sh", "-c", "rm -r dir && mkdir dir && echo new > dir/new && ls dir")
    assert done.stdout == "new\n"
    assert layers.is_opaque(layout.upper / "dir")
    assert (layout.d2 / "dir" / "old").exists()
    assert layers.diff(layout.upper, layout.lowers) == layers.LayerDiff(
        added=("dir/new",), opaque=("dir",))


RENAME = """
import errno, os
try:
    os.rename("dir", "moved")
except OSError as error:
    print(errno.errorcode[error.errno])
"""


def test_renaming_a_lower_directory_copies_it_up_whole(layout):
    (layout.d2 / "dir" / "sub").mkdir(parents=True)
    (layout.d2 / "dir" / "sub" / "f").write_text("f\n")
    done = layout.run("sh", "-c", f"{sys.executable} -I -c '{RENAME}' && mv dir moved && ls")
    assert done.stdout == "EXDEV\na\nb\nc\nmoved\n"
    assert (layout.upper / "moved" / "sub" / "f").read_text() == "f\n"
    assert os.listxattr(layout.upper / "moved") == []
    assert is_whiteout(layout.upper / "dir")
    assert (layout.d2 / "dir" / "sub" / "f").exists()
    assert layers.diff(layout.upper, layout.lowers) == layers.LayerDiff(
        added=("moved", "moved/sub", "moved/sub/f"), deleted=("dir",))


# ---------------------------------------------------------------------------------------------
# Cleaning up: after an exception, after kill -9


FAIL_WHILE_MOUNTED = """
import json, os, sys
from labkit.kernel import syscalls
from labkit.runtime.steps import overlay

lowers, upper, work, target = json.loads(sys.argv[1])
syscalls.unshare(syscalls.CLONE_NEWNS)
syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
seen = {}
try:
    with overlay.mounted(lowers, upper, work, target) as view:
        (view / "b").write_text("written\\n")
        seen["inside"] = os.path.ismount(view)
        raise RuntimeError("the block failed")
except RuntimeError as error:
    seen["error"] = str(error)
seen["after"] = os.path.ismount(target)
print(json.dumps(seen))
"""


def test_an_exception_in_the_block_still_unmounts_and_clears_work(layout):
    layout_json = json.dumps([[str(d) for d in layout.lowers], str(layout.upper),
                              str(layout.work), str(layout.target)])
    done = subprocess.run([sys.executable, "-I", "-c", FAIL_WHILE_MOUNTED, layout_json],
                          capture_output=True, text=True, timeout=SECONDS)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"inside": True, "error": "the block failed",
                                       "after": False}
    assert os.listdir(layout.work) == []
    assert (layout.upper / "b").read_text() == "written\n"


@contextmanager
def holding(layout: Layout, upper: Path | None = None, work: Path | None = None,
            command: str = "echo ready; read line; exit 0") -> Iterator[subprocess.Popen]:
    """A helper holding the overlay mounted while its command waits for the end of stdin."""
    helper = merged_view.start(layout.lowers, upper or layout.upper, work or layout.work,
                           layout.target, ["sh", "-c", command], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        readable, _, _ = select.select([helper.stdout], [], [], SECONDS)
        line = helper.stdout.readline() if readable else ""
        assert line == "ready\n", helper.stderr.read() if helper.poll() is not None else line
        yield helper
    finally:
        helper.stdin.close()  # the command reads the end of its input and exits
        try:
            helper.wait(SECONDS)
        finally:
            helper.kill()
            with helper:  # closes the pipes, then waits
                pass


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return [int(child) for child in listing.read().split()]


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie has exited: only its exit status is left)."""
    return process.state(pid) in (None, "Z")


def members(namespace: str) -> list[int]:
    """The pids of the live processes in a mount namespace (``mnt:[...]``)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/ns/mnt") == namespace:
                found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("cleanup", ["next mount", "clear_work"])
def test_kill_9_of_the_helper_ends_the_namespace_and_work_is_cleared_later(layout, cleanup):
    with holding(layout, command="echo copied > c; echo ready; exec sleep 600") as helper:
        namespace = os.readlink(f"/proc/{helper.pid}/ns/mnt")
        (init,) = children(helper.pid)
        os.kill(helper.pid, signal.SIGKILL)
        helper.wait()
    deadline = time.monotonic() + SECONDS
    while not gone(init) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gone(init), "the command outlived its helper"
    assert members(namespace) == []
    assert os.listdir(layout.work) == ["work"]  # what the kernel left behind
    if cleanup == "clear_work":
        overlay.clear_work(layout.work)
        assert os.listdir(layout.work) == []
    assert layout.run("cat", "c").stdout == "copied\n"  # the lock died with the helper
    assert os.listdir(layout.work) == []


# ---------------------------------------------------------------------------------------------
# Bad input: one clear line each, and nothing mounted or written


def refused(layout: Layout, lowers=None, upper=None, work=None) -> str:
    """The LabError line for an overlay the lab refuses; the directories stay as they were."""
    before = [snapshot(d) for d in (layout.upper, layout.work, layout.target)]
    with pytest.raises(LabError) as refusal:
        merged_view.run(lowers or layout.lowers, upper or layout.upper, work or layout.work,
                    layout.target, ["touch", "written"])
    assert [snapshot(d) for d in (layout.upper, layout.work, layout.target)] == before
    assert "\n" not in str(refusal.value)
    return str(refusal.value)


def test_a_missing_lower_directory_is_refused(layout):
    missing = layout.d2.parent / "d3"
    assert refused(layout, lowers=[layout.d1, missing]) == (
        f"lower directory 2 {missing} does not exist: create it or correct the path")


def test_a_path_with_a_comma_is_refused(layout):
    odd = layout.d2.parent / "d,3"
    odd.mkdir()
    assert refused(layout, lowers=[odd]).startswith(f"{odd} holds ',' or ':'")


def test_an_upper_on_an_overlay_filesystem_is_refused(layout):
    inner = layout.target / "inner"
    nested = merged_view.helper_argv([layout.d1], inner / "upper", inner / "work", inner / "mnt",
                                 ["touch", "written"])
    with pytest.raises(LabError) as refusal:
        layout.run("sh", "-c", 'mkdir -p inner/upper inner/work inner/mnt && exec "$@"', "sh",
                   *nested)
    assert str(refusal.value) == (
        f"upper directory {inner / 'upper'} is on an overlay filesystem, which the kernel "
        "refuses as an upper: put it on ext4, xfs or tmpfs")


def test_upper_and_work_on_different_filesystems_are_refused(layout):
    with tempfile.TemporaryDirectory(dir="/dev/shm") as elsewhere:
        assert os.stat(elsewhere).st_dev != os.stat(layout.upper).st_dev
        message = refused(layout, work=Path(elsewhere))
        assert os.listdir(elsewhere) == []
    assert message.startswith(f"upper {layout.upper} and work {elsewhere} are on different "
                              "filesystems")


def test_an_upper_already_in_use_is_refused_until_released(layout):
    other_work = layout.work.parent / "other-work"
    other_work.mkdir()
    with holding(layout) as helper:
        assert refused(layout, work=other_work) == (
            f"upper directory {layout.upper} is already in use by another overlay: stop that "
            "one first (the kernel would only warn in dmesg)")
        helper.stdin.close()
        assert helper.wait(SECONDS) == 0
    assert layout.run("true").returncode == 0


def test_a_work_directory_in_use_is_refused_and_not_cleared(layout):
    other_upper = layout.upper.parent / "other-upper"
    other_upper.mkdir()
    with holding(layout):
        assert refused(layout, upper=other_upper).startswith(
            f"work directory {layout.work} is already in use by another overlay")
        with pytest.raises(LabError, match="already in use"):
            overlay.clear_work(layout.work)
        assert os.listdir(layout.work) == ["work"]


def test_a_command_that_cannot_run_is_one_line(layout):
    with pytest.raises(LabError) as refusal:
        layout.run("no-such-command")
    assert str(refusal.value) == "cannot run 'no-such-command': No such file or directory"


# ---------------------------------------------------------------------------------------------
# The same overlay as a step of a container, mounted by the runtime's launcher


def step(layout: Layout, **change) -> overlay.Overlay:
    return dataclasses.replace(overlay.Overlay.of(layout.lowers, layout.upper, layout.work,
                                                  layout.target), **change)


def test_the_step_survives_the_trip_to_the_launcher(layout):
    spec = Spec(["true"], [step(layout)])
    assert Spec.from_json(spec.to_json()) == spec
    assert spec.namespaces == CLONE_NEWNS


def test_the_step_mounts_the_overlay_for_the_container_only(layout):
    result = api.run(["sh", "-c", f"cd {layout.target} && echo new > c && cat b c"],
                     steps=[step(layout)])
    assert (result.exit_code, result.stdout, result.error) == (0, "b1\nnew\n", None)
    assert (layout.upper / "c").read_text() == "new\n"
    assert os.listdir(layout.target) == []


def test_the_step_holds_upper_and_work_while_the_container_runs(layout):
    with api.start(["sleep", "600"], steps=[step(layout)]) as container:
        with pytest.raises(LabError, match="already in use"):
            layout.run("true")
        container.terminate()
        assert container.wait(SECONDS) == 143  # SIGTERM; the container's init has exited
    assert layout.run("cat", "b").stdout == "b1\n"
    assert os.listdir(layout.work) == []


def test_the_step_refuses_bad_input_in_one_line(layout):
    missing = str(layout.d2.parent / "d3")
    result = api.run(["true"], steps=[step(layout, lowers=[missing])])
    assert (result.exit_code, result.error) == (
        125, f"lower directory 1 {missing} does not exist: create it or correct the path")
