"""Lesson 05: layers. The article's aufs experiment redone on overlayfs, then images as layers.

The article's bench is two directories, ``d1`` (``a``, ``b`` = ``b1``) and ``d2`` (``b`` =
``b2``, ``c``). ``Bench`` makes it, with the upper, work and mount directories overlayfs needs
beside them, and runs commands in the merged view through the overlay step's helper process:
the notebook never mounts anything itself.

The claims take plain data (listings, file texts, ``lstat`` results, xattrs, mount options), so
the tests can run the same checks on a stack in the wrong order, on writes made without the
overlay, on the runtime without the overlay step, or on a mount with the kernel's other
options, and see them fail.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from labkit import show
from labkit.engine import baseimage, layers, store
from labkit.errors import LabError
from labkit.lessons import merged_view
from labkit.lessons.checks import Exercise, expect
from labkit.lessons.terminal import Transcript, replay
from labkit.runtime.steps import overlay
from labkit.show import Table

ARTICLE = {"d1": {"a": "a\n", "b": "b1\n"}, "d2": {"b": "b2\n", "c": "c\n"}}

# The shell of a replayed session: its prompt says where it stands. +m turns job control off:
# as PID 1 of a PID namespace of its own, the shell could not hand the terminal back on exit.
SHELL = ["env", "PS1=mnt# ", "sh", "+m"]

SECONDS = 10  # the most a helper may take to mount, or to finish once told to


@dataclass(frozen=True)
class Bench:
    """The article's two directories, with an upper, a work and a mount directory beside them."""

    root: Path

    d1 = property(lambda self: self.root / "d1")
    d2 = property(lambda self: self.root / "d2")
    upper = property(lambda self: self.root / "upper")
    work = property(lambda self: self.root / "work")
    mnt = property(lambda self: self.root / "mnt")

    @property
    def lowers(self) -> list[Path]:
        return [self.d1, self.d2]

    def run(self, command: str, lowers: Sequence[Path] | None = None,
            upper: Path | None = None) -> str:
        """Run a shell command in the merged view (d1 over d2 under ``upper`` by default);
        return its output, or raise with its error if it failed."""
        return self.run_argv(["sh", "-c", command], lowers, upper)

    def run_argv(self, argv: Sequence[str], lowers: Sequence[Path] | None = None,
                 upper: Path | None = None) -> str:
        done = merged_view.run(self.lowers if lowers is None else lowers, upper or self.upper,
                           self.work, self.mnt, argv)
        if done.returncode != 0:
            raise LabError(f"{argv[-1]!r} failed in the overlay (exit {done.returncode}): "
                           f"{done.stderr.strip()}")
        return done.stdout

    def session(self, typed: Sequence[str], lowers: Sequence[Path] | None = None,
                upper: Path | None = None) -> Transcript:
        """Type ``typed`` into a shell standing in the merged view, as in the article."""
        argv = merged_view.helper_argv(self.lowers if lowers is None else lowers,
                                   upper or self.upper, self.work, self.mnt, SHELL)
        return replay(argv, typed)

    def new_upper(self, name: str) -> Path:
        """Another, empty upper over the same lowers: a fresh start."""
        (path,) = fresh_dirs(self.root, name)
        return path


def fresh_dirs(root: str | Path, *names: str) -> list[Path]:
    """Empty directories ``root/name``, made afresh: a cell run again starts clean."""
    paths = [Path(root, name) for name in names]
    for path in paths:
        _remove(path)
        path.mkdir(parents=True)
    return paths


def article_bench(root: str | Path) -> Bench:
    """The article's d1 and d2 under ``root``, with empty upper, work and mnt beside them."""
    bench = Bench(Path(root))
    _remove(bench.root)
    fresh_dirs(bench.root, "upper", "work", "mnt", *ARTICLE)
    for name, files in ARTICLE.items():
        for file, text in files.items():
            (bench.root / name / file).write_text(text)
    return bench


def with_directory(bench: Bench) -> Bench:
    """Give d2 a directory, ``dir`` holding ``old``, to delete or rename through the view."""
    (bench.d2 / "dir").mkdir()
    (bench.d2 / "dir" / "old").write_text("old\n")
    return bench


def copy_lowers(bench: Bench, root: str | Path) -> list[Path]:
    """d1 and d2 copied under ``root``: the same files on other inodes, as on another machine."""
    _remove(Path(root))
    return [Path(shutil.copytree(lower, Path(root, lower.name), symlinks=True))
            for lower in bench.lowers]


def _remove(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


_RENAME = """
import errno, os, sys
try:
    os.rename(sys.argv[1], sys.argv[2])
    print("ok")
except OSError as error:
    print(errno.errorcode[error.errno])
"""


def rename_in_view(bench: Bench, old: str, new: str) -> str:
    """Call rename(2) itself in the merged view (``mv`` would hide a refusal by copying);
    return ``ok`` or the errno's name."""
    return bench.run_argv([sys.executable, "-I", "-c", _RENAME, old, new]).strip()


@contextmanager
def held(lowers: Sequence[Path], upper: Path, work: Path, target: Path) -> Iterator[int]:
    """Keep an overlay mounted while the notebook looks at it; yield the helper's pid.

    The helper's command waits for the end of its input, so the mount lasts exactly as long
    as the ``with`` block.
    """
    helper = merged_view.start(lowers, upper, work, target, ["sh", "-c", "echo ready; read line"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    with helper:
        try:
            if helper.stdout.readline() != "ready\n":
                helper.wait(SECONDS)
                said = helper.stderr.read().strip().removeprefix("labkit: ")
                raise LabError(said or "the overlay helper ended before it was ready")
            yield helper.pid
        finally:
            helper.stdin.close()  # the command reads the end of its input, and exits
            try:
                helper.wait(SECONDS)
            except subprocess.TimeoutExpired:
                helper.kill()


# ---------------------------------------------------------------------------------------------
# Looking at layers


def texts(directory: str | Path) -> dict[str, str]:
    """Each path in a layer directory with what it holds: a file's text, else its kind."""
    return {path: (Path(directory, path).read_text() if what == layers.FILE else what)
            for path, what in layers.entries(directory).items()}


def contents(directories: Mapping[str, str | Path]) -> Table:
    """Several directories side by side: for each path, what each one holds there."""
    found = {name: texts(directory) for name, directory in directories.items()}
    paths = sorted({path for listed in found.values() for path in listed})
    rows = [[path, *(found[name].get(path, "").strip() for name in directories)]
            for path in paths]
    return Table("What each directory holds", ["path", *directories], rows,
                 note="a file's text, or what else the path is")


def lower_texts(bench: Bench) -> dict[str, dict[str, str]]:
    """What d1 and d2 hold, to compare before and after."""
    return {"d1": texts(bench.d1), "d2": texts(bench.d2)}


def xattrs(path: str | Path) -> dict[str, bytes]:
    """Every extended attribute of ``path`` (not following a symlink), by name."""
    return {name: os.getxattr(path, name, follow_symlinks=False)
            for name in os.listxattr(path, follow_symlinks=False)}


def listing(stack: Sequence[Path], names: Sequence[str]) -> Table:
    """What each layer holds, top first, without saying which one the merged view shows."""
    picture = show.layer_stack(stack, names)
    rows = [[str(cell) for cell in row[:-1]] for row in picture.rows]
    return Table("Layers, top first", picture.columns[:-1], rows)


def only(table: Table, prefix: str) -> Table:
    """The rows of a table whose first cell starts with ``prefix``: a window on a big stack."""
    rows = [row for row in table.rows if str(row[0]).startswith(prefix)]
    return Table(table.title, table.columns, rows, table.note)


PINNED_WHY = {
    "redirect_dir": "a renamed lower directory is copied up whole, not left as a pointer",
    "metacopy": "a chmod or chown copies up the data too: every upper file is whole",
    "index": "nothing ties the upper to these exact lower inodes, or lives in work",
}


def kernel_defaults() -> dict[str, str]:
    """This kernel's default for each pinned option: ``on``, ``off``, or ``unknown`` when the
    overlay module shows no parameters."""
    found = {}
    for name in overlay.PORTABLE_OPTIONS:
        parameter = Path("/sys/module/overlay/parameters", name)
        value = parameter.read_text().strip() if parameter.exists() else "unknown"
        found[name] = {"Y": "on", "N": "off"}.get(value, value)
    return found


def defaults_table(defaults: Mapping[str, str]) -> Table:
    """The kernel's defaults beside the values the lab pins, and what each pin buys."""
    rows = [[name, defaults[name], value, PINNED_WHY[name]]
            for name, value in overlay.PORTABLE_OPTIONS.items()]
    return Table("overlayfs options", ["option", "this kernel's default", "the lab pins", "so"],
                 rows, note="defaults from /sys/module/overlay/parameters")


# ---------------------------------------------------------------------------------------------
# Images


def busybox_image() -> tuple[store.Store, store.Image]:
    """The base image, built first if this lab has none yet (once; a few seconds)."""
    lab = store.reading()
    image = lab.image(baseimage.REFERENCE)
    if image is None or not lab.has_layers(image):
        with store.writing() as lab:
            image, _ = baseimage.build(lab)
    return lab, image


def lowers_of(lab: store.Store, image: store.Image) -> list[Path]:
    """An image's layer directories top first, as ``lowerdir=`` wants them (the image lists
    them bottom first, as docker does)."""
    return [lab.layer_tree(digest) for digest in reversed(image.layers)]


# ---------------------------------------------------------------------------------------------
# The claims


def expect_union(names: Sequence[str]) -> None:
    expect("the merged view shows a, b and c: every name of d1 and d2, once",
           list(names) == ["a", "b", "c"], list(names))


def expect_first_layer_wins(text_of_b: str) -> None:
    expect("b reads b1: where two layers hold a name, the first one listed wins",
           text_of_b == "b1\n", text_of_b)


def expect_lowers_top_first(super_options: Sequence[str], lowers: Sequence[Path]) -> None:
    wanted = "lowerdir=" + ":".join(str(lower) for lower in lowers)
    expect(f"the kernel lists the lowers top first: {wanted}", wanted in super_options,
           [option for option in super_options if option.startswith("lowerdir=")])


def expect_only_inside(host_mount_points: Sequence[str], target: Path) -> None:
    expect(f"the overlay is not in this notebook's mount table: only the helper's namespace "
           f"has {target}", str(target) not in host_mount_points, str(target))


def expect_writes_in_upper(upper: Mapping[str, str]) -> None:
    wanted = {"a": "new_a\n", "b": "new_b\n", "c": "new_c\n"}
    expect("every write landed in the upper: a, b and c were copied up, then changed there",
           dict(upper) == wanted, dict(upper))


def expect_lowers_unchanged(before: Mapping, after: Mapping) -> None:
    expect("d1 and d2 are exactly as before: overlayfs never writes a lower layer",
           dict(before) == dict(after), {"before": dict(before), "after": dict(after)})


def expect_article_result(d1: Mapping[str, str], d2: Mapping[str, str]) -> None:
    """The article's aufs result: writes in d1, the first branch; d2 as it was."""
    wanted = ({"a": "new_a\n", "b": "new_b\n", "c": "new_c\n"}, ARTICLE["d2"])
    expect("with d1 as the upper, the article's result: d1 holds new_a, new_b and a new c, "
           "d2 still b2 and c", (dict(d1), dict(d2)) == wanted, (dict(d1), dict(d2)))


def expect_hidden(names: Sequence[str], gone: Sequence[str]) -> None:
    expect(f"{', '.join(gone)} no longer in the merged view",
           not set(gone) & set(names), list(names))


def expect_whiteout(name: str, info: os.stat_result) -> None:
    is_whiteout = stat.S_ISCHR(info.st_mode) and info.st_rdev == os.makedev(0, 0)
    expect(f"upper/{name} is a character device 0/0: a whiteout", is_whiteout,
           (stat.filemode(info.st_mode), os.major(info.st_rdev), os.minor(info.st_rdev)))


def expect_opaque(name: str, attributes: Mapping[str, bytes]) -> None:
    value = attributes.get(layers.OPAQUE_XATTR)
    expect(f"upper/{name} carries {layers.OPAQUE_XATTR}=y: an opaque directory",
           value == b"y", dict(attributes))


def expect_only_new_inside(names: Sequence[str], new: Sequence[str]) -> None:
    expect("the remade directory shows only what was made in it since: the lower's files "
           "stay hidden", list(names) == list(new), list(names))


def expect_rename_refused(outcome: str) -> None:
    expect("rename(2) of a lower directory fails with EXDEV (redirect_dir=off)",
           outcome == "EXDEV", outcome)


def expect_copied_whole(upper: Mapping[str, str], moved: Mapping[str, bytes]) -> None:
    whole = (upper.get("moved/old") == "old\n" and upper.get("dir") == layers.WHITEOUT
             and "trusted.overlay.redirect" not in moved)
    expect("mv copied the directory up whole, with its file, and whited out the old name",
           whole, {"upper": dict(upper), "xattrs of moved": sorted(moved)})


def expect_whole_copy_up(text: str, attributes: Mapping[str, bytes]) -> None:
    expect("chmod copied c up whole: the upper file holds the data itself (metacopy=off)",
           text == "c\n" and "trusted.overlay.metacopy" not in attributes,
           (text, sorted(attributes)))


def expect_work_empty(work_listing: Sequence[str]) -> None:
    expect("after the unmount, work is empty: no index of copy-ups kept beside the layer",
           list(work_listing) == [], list(work_listing))


def expect_portable(view: str, view_over_a_copy: str) -> None:
    expect("the same upper over a copy of its lowers shows the same view: the upper is portable",
           view == view_over_a_copy, view_over_a_copy)


def expect_pinned(options: str) -> None:
    pinned = [f"{name}={value}" for name, value in overlay.PORTABLE_OPTIONS.items()]
    expect(f"the lab's mount data pins {', '.join(pinned)}",
           set(pinned) <= set(options.split(",")), options)


def expect_listed_unless_default(super_options: Sequence[str],
                                 defaults: Mapping[str, str]) -> None:
    """The kernel's mount table shows an overlay option only where it differs from the default."""
    listed = {name: f"{name}={value}" in super_options
              for name, value in overlay.PORTABLE_OPTIONS.items()}
    differs = {name: defaults[name] != value for name, value in overlay.PORTABLE_OPTIONS.items()}
    expect("the mount table lists a pinned option exactly where it differs from this kernel's "
           "default", listed == differs, {"listed": listed, "differs from default": differs})


def expect_fresh_start(seen: str, original: str) -> None:
    expect("a fresh upper over the same lowers shows the original files again",
           seen == original, seen)


def expect_layer_unchanged(digest_now: str, digest: str) -> None:
    expect("the image's layer still hashes to its name: the container changed nothing in it",
           digest_now == digest, digest_now)


def expect_changes(diff: layers.LayerDiff, **wanted: Sequence[str]) -> None:
    told = ", ".join(f"{change} {' '.join(paths)}" for change, paths in wanted.items())
    expect(f"the upper holds exactly the container's changes: {told}",
           diff == layers.LayerDiff(**{change: tuple(paths) for change, paths in
                                       wanted.items()}), diff)


def expect_overlay_in_kernel(filesystems: str) -> None:
    names = [line.split()[-1] for line in filesystems.splitlines() if line.strip()]
    expect("this kernel has overlayfs (/proc/filesystems lists overlay)", "overlay" in names,
           names)


# ---------------------------------------------------------------------------------------------
# The exercise: which layer does each path come from?

EXERCISE_LAYERS = ("top", "middle", "bottom")
_LOWER_FILES = {"middle": ["b", "c", "dir/y"], "bottom": ["a", "b", "c", "d", "dir/x"]}
# What a container did over middle and bottom; its upper becomes the top layer.
_TOP_COMMANDS = "echo top > a && rm c && rm -r dir && mkdir dir && echo top > dir/z"
ANSWER = {"a": "top", "b": "middle", "c": None, "d": "bottom", "dir/y": None, "dir/z": "top"}


def exercise_stack(root: str | Path) -> list[Path]:
    """Three layers, top first, under ``root``: each file's text names the layer it is in.

    The top layer is the upper of a real container run over the other two, so its whiteout
    and its opaque directory are the kernel's own.
    """
    *stack, work, mnt = fresh_dirs(root, *EXERCISE_LAYERS, "work", "mnt")
    for name, files in _LOWER_FILES.items():
        for file in files:
            Path(root, name, file).parent.mkdir(exist_ok=True)
            Path(root, name, file).write_text(f"{name}\n")
    done = merged_view.run(stack[1:], stack[0], work, mnt, ["sh", "-c", _TOP_COMMANDS])
    if done.returncode != 0:
        raise LabError(f"could not make the top layer: {done.stderr.strip()}")
    return stack


# Why each path comes from where it does: the feedback for a wrong answer names the rule missed.
WHY = {
    "a": "the top layer has a file a, and a file in a higher layer wins at once",
    "b": "the top layer has no b, so the view looks further down: middle has one",
    "c": "the top layer holds a whiteout at c: it hides c in every layer below, so the view "
         "shows none",
    "d": "only bottom has d: the view takes it from there",
    "dir/y": "the top layer's dir is opaque: it hides everything the layers below have inside "
             "dir, so middle's dir/y is not shown",
    "dir/z": "dir/z is in the top layer's opaque dir, which the view shows as it is",
}


def _check_origins(answer) -> str | None:
    if not isinstance(answer, dict) or set(answer) != set(ANSWER):
        return (f"give a dict with exactly the paths {sorted(ANSWER)}, each mapped to "
                f"'top', 'middle', 'bottom' or None, not {answer!r}")
    for path, layer in answer.items():
        if layer is not None and layer not in EXERCISE_LAYERS:
            return (f"{layer!r} for {path!r} is no layer: use 'top', 'middle', 'bottom', or "
                    f"None where the view shows nothing")
    wrong = [path for path in ANSWER if answer[path] != ANSWER[path]]
    if wrong:
        return f"{len(wrong)} of {len(ANSWER)} not right. {wrong[0]!r}: {WHY[wrong[0]]}"
    return None


EXERCISE = Exercise(
    question="Which layer does the merged view take each path from (None: it shows none)?",
    verify=_check_origins,
    hint_text="Look down each path's row from the top. A file wins at once; a whiteout hides "
              "the name in every layer below; an opaque dir hides what the layers below have "
              "inside it.",
    solution_text="answer = {'a': 'top', 'b': 'middle', 'c': None, 'd': 'bottom', "
                  "'dir/y': None, 'dir/z': 'top'}  # c: the top's whiteout hides middle's and "
                  "bottom's c; dir/y: the top's dir is opaque. show.layer_stack(stack, "
                  "lesson.EXERCISE_LAYERS) draws the same answer from the layers.",
)
