"""labkit.engine.layers against the kernel: the diff of a real upper, the stack as the kernel sees
it.

The layer directories are read in pytest (reading never mounts); every merged view to compare
with is the kernel's own, read by a command run in an ``merged_view.run`` helper.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from labkit import show
from labkit.engine import layers
from labkit.lessons import merged_view
from labkit.show import Mark

MERGED_VIEW = """
import json, os
view = {}
for directory, subdirs, files in os.walk("."):
    for name in subdirs + files:
        path = os.path.normpath(os.path.join(directory, name))
        view[path] = "dir" if name in subdirs else open(path).read()
print(json.dumps(view))
"""


def kernel_view(lowers: list[Path], scratch: Path) -> dict[str, str]:
    """What the kernel's merged view of ``lowers`` holds: each path, "dir" or a file's text."""
    upper, work, target = (scratch / name for name in ("upper", "work", "mnt"))
    for directory in (upper, work, target):
        directory.mkdir(parents=True)
    done = merged_view.run(lowers, upper, work, target, [sys.executable, "-I", "-c", MERGED_VIEW])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def write(layer: Path, path: str, text: str | None = None) -> None:
    """Put a file (text given), or a directory, at ``path`` inside a layer."""
    place = layer / path
    place.parent.mkdir(parents=True, exist_ok=True)
    if text is None:
        place.mkdir()
    else:
        place.write_text(text)


def whiteout(layer: Path, path: str) -> None:
    (layer / path).parent.mkdir(parents=True, exist_ok=True)
    os.mknod(layer / path, stat.S_IFCHR, os.makedev(0, 0))


def opaque(layer: Path, path: str) -> None:
    os.setxattr(layer / path, layers.OPAQUE_XATTR, b"y")


@pytest.fixture
def three_layers(tmp_path: Path) -> list[Path]:
    """Lowers as committed images have them, with whiteouts and opaque dirs in the middle.

    Each file's text names its layer, so the kernel's view says where each file came from.
    """
    top, middle, bottom = (tmp_path / name for name in ("top", "middle", "bottom"))
    for name, files in ((top, ["fresh/only", "shadow", "merged/one", "twice/x"]),
                        (middle, ["gone", "fresh/old", "shadow/inner", "merged/two", "twice/y",
                                  "deep/er/file"]),
                        (bottom, ["gone/sub/file", "fresh/older", "merged/three", "twice",
                                  "deep/er/hidden", "deep/er/kept", "base"])):
        name.mkdir()
        for path in files:
            write(name, path, name.name)
    whiteout(top, "gone")
    opaque(top, "fresh")
    whiteout(middle, "deep/er/hidden")
    return [top, middle, bottom]


def test_visible_agrees_with_the_kernel_on_whiteouts_and_opaque_dirs(three_layers, tmp_path):
    names = [layer.name for layer in three_layers]
    shown = layers.visible(three_layers)
    kernel = kernel_view(three_layers, tmp_path / "scratch")
    assert sorted(shown) == sorted(kernel)
    for path, text in kernel.items():
        if text != "dir":
            assert names[shown[path]] == text, path
    assert {path for path in shown if shown[path] == 2} == {"base", "deep/er/kept",
                                                            "merged/three"}


def test_every_kind_of_change_is_in_the_diff_and_the_upper_is_portable(tmp_path):
    lower = tmp_path / "lower"
    for path in ("kept", "edited", "removed", "file-then-dir", "dir/a", "recreated/old",
                 "dir-then-file/x", "renamed/sub/f"):
        write(lower, path, path)
    upper, work, target = (tmp_path / name for name in ("upper", "work", "mnt"))
    for directory in (upper, work, target):
        directory.mkdir()
    changes = ("echo new > added && echo more >> edited && rm removed && rm file-then-dir && "
               "mkdir file-then-dir && rm -r recreated && mkdir recreated && "
               "echo again > recreated/new && rm -r dir-then-file && echo f > dir-then-file && "
               "mv renamed moved && mkdir dir/newdir")
    done = merged_view.run([lower], upper, work, target, ["sh", "-c", changes])
    assert done.returncode == 0, done.stderr

    assert layers.diff(upper, [lower]) == layers.LayerDiff(
        added=("added", "dir/newdir", "moved", "moved/sub", "moved/sub/f", "recreated/new"),
        changed=("dir-then-file", "edited", "file-then-dir"),
        deleted=("removed", "renamed"),
        opaque=("file-then-dir", "recreated"))

    # The upper means the same on top of any copy of its lower: stack it as a layer of its own
    # over a copy (other inodes), and the kernel shows what the container saw.
    copy = tmp_path / "copy"
    shutil.copytree(lower, copy)
    seen = kernel_view([upper, lower], tmp_path / "first")
    assert seen["moved/sub/f"] == "renamed/sub/f" and "renamed" not in seen
    assert kernel_view([upper, copy], tmp_path / "again") == seen


def test_the_stack_picture_names_the_layer_each_path_comes_from(tmp_path):
    d1, d2, upper, work, target = (tmp_path / name for name in ("d1", "d2", "upper", "work",
                                                                 "mnt"))
    for directory, files in ((d1, {"a": "a", "b": "b1"}), (d2, {"b": "b2", "c": "c"})):
        directory.mkdir()
        for name, text in files.items():
            write(directory, name, text)
    for directory in (upper, work, target):
        directory.mkdir()
    merged_view.run([d1, d2], upper, work, target, ["sh", "-c", "echo new_c > c; rm a"])

    picture = show.layer_stack([upper, d1, d2])
    assert str(picture) == "\n".join([
        "Layer stack, top first",
        "path  upper     d1    d2    merged view",
        "a     whiteout  file        (hidden)",
        "b               file  file  d1",
        "c     file            file  upper",
        "a whiteout deletes a path of the layers below it; an opaque dir hides everything "
        "they have inside it"])
    assert picture.rows[1][2] == Mark("file", True) and picture.rows[1][3] == "file"
    assert show.layer_stack([upper, d1, d2], names=["container", "image 1", "image 2"]
                              ).columns == ["path", "container", "image 1", "image 2",
                                            "merged view"]


def test_the_diff_table_lists_each_change(tmp_path):
    diff = layers.LayerDiff(added=("new",), changed=("b",), deleted=("a",), opaque=("dir",))
    assert str(show.layer_diff(diff)).splitlines()[:6] == [
        "Layer diff", "change   path", "added    new", "changed  b", "deleted  a",
        "opaque   dir"]

