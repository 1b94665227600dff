"""The store: where LABKIT_HOME may point, how layers and images are laid out, and how a change
is made safely (a lock, work in tmp/, renames)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from labkit.engine import store
from labkit.engine.digest import tree_digest
from labkit.errors import LabError
from tests.conftest import AS_NOBODY, LABKIT


def run_labkit(home: Path | str, *args: str, cwd: Path | None = None,
               prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``labkit ARGS`` in a fresh process whose store is ``home``."""
    env = {**os.environ, "LABKIT_HOME": str(home), "LABKIT_PLAIN": "1"}
    return subprocess.run([*prefix, LABKIT, *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under ``root`` with its mode and, for files, content: to prove nothing moved."""
    return {str(path.relative_to(root)): (path.lstat().st_mode,
                                          path.read_bytes() if path.is_file() else None)
            for path in sorted(root.rglob("*"))}


def assert_one_line_refusal(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 1, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("labkit: LABKIT_HOME=")
    for word in words:
        assert word in lines[0]


# Each bad LABKIT_HOME below is (what to create first, the LABKIT_HOME to use, what the line says).
def _a_file(tmp: Path) -> str:
    (tmp / "file").write_text("not a store\n")
    return str(tmp / "file")


def _below_a_file(tmp: Path) -> str:
    (tmp / "file").write_text("not a store\n")
    return str(tmp / "file" / "store")


def _a_directory_of_other_files(tmp: Path) -> str:
    (tmp / "notes.txt").write_text("mine\n")
    return str(tmp)


def _relative(tmp: Path) -> str:
    return "lab/store"


BAD_HOMES = {
    "a file": (_a_file, "is not a directory"),
    "below a file": (_below_a_file, "which is not a directory"),
    "a directory of other files": (_a_directory_of_other_files, "neither empty nor a labkit"),
    "a relative path": (_relative, "relative path"),
}


@pytest.mark.parametrize("verb", [["image", "build-base"], ["images"]], ids=" ".join)
@pytest.mark.parametrize("case", BAD_HOMES)
def test_a_bad_labkit_home_is_refused_in_one_line_and_left_untouched(tmp_path, case, verb):
    make, says = BAD_HOMES[case]
    home = make(tmp_path)
    before = snapshot(tmp_path)

    result = run_labkit(home, *verb, cwd=tmp_path)

    assert_one_line_refusal(result, home, says, "LABKIT_HOME")
    assert snapshot(tmp_path) == before


def build_after_mounting(mount: str, *args: Path, home: Path) -> subprocess.CompletedProcess:
    """``labkit image build-base`` after ``mount`` (sh, its arguments in $1...), both in a new
    mount namespace whose mounts are private from the start: the mount dies with it."""
    script = f'{mount} && shift {len(args)} && exec "$@"'
    argv = ("unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", script, "sh", *map(str, args))
    return run_labkit(home, "image", "build-base", prefix=argv)


@pytest.mark.parametrize("mount", [
    'mount -t tmpfs -o ro tmpfs "$1"',
    'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"',
], ids=["read-only tmpfs", "read-only bind mount"])
@pytest.mark.parametrize("below", ["", "store"], ids=["home is the mount", "home below it"])
def test_a_read_only_labkit_home_is_refused_in_one_line(tmp_path, mount, below):
    place = tmp_path / "place"
    place.mkdir()
    home = place / below if below else place

    result = build_after_mounting(mount, place, home=home)

    assert_one_line_refusal(result, str(home), "read-only filesystem", "point LABKIT_HOME")


def test_a_labkit_home_on_an_overlay_filesystem_is_refused_and_left_untouched(tmp_path):
    lower, upper, work, merged = (tmp_path / name for name in ("lower", "upper", "work", "merged"))
    for directory in (lower, upper, work, merged):
        directory.mkdir()
    mount = 'mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4"'

    result = build_after_mounting(mount, lower, upper, work, merged, home=merged / "store")

    assert_one_line_refusal(result, str(merged / "store"), "overlay filesystem", "tmpfs")
    assert list(upper.iterdir()) == []


def test_listing_a_store_that_does_not_exist_yet_creates_nothing(tmp_path):
    result = run_labkit(tmp_path / "lab", "images")

    assert result.returncode == 0, result
    assert result.stdout.splitlines() == [
        "REPOSITORY  TAG  DIGEST  LAYERS  SIZE  CREATED",
        "No images yet: labkit image build-base",
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def lab_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "lab"
    monkeypatch.setenv("LABKIT_HOME", str(home))
    return home


def test_a_new_store_is_marked_and_laid_out(lab_home):
    with store.writing():
        pass

    names = sorted(path.name for path in lab_home.iterdir())
    assert names == ["containers", "images", "labkit-store", "layers", "lock", "tmp"]


def test_opening_for_writing_removes_what_a_killed_command_left_in_tmp(lab_home):
    with store.writing() as lab:
        (lab.tmp_dir / "half-built").mkdir()
        (lab.tmp_dir / "half-built" / "file").write_text("partial")
        (lab.tmp_dir / "config.json.partial").write_text("{")

    with store.writing() as lab:
        assert lab.leftovers == 2
        assert list(lab.tmp_dir.iterdir()) == []


def _make_tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "motd").write_text("hello\n")
    os.symlink("etc/motd", root / "motd")
    return root


def test_a_layer_is_stored_once_under_its_content_digest(lab_home):
    with store.writing() as lab, lab.staging() as stage:
        first = lab.add_layer(_make_tree(stage / "one"))
        second = lab.add_layer(_make_tree(stage / "two"))

    assert first == second
    assert [path.name for path in lab.layers_dir.iterdir()] == [first.removeprefix("sha256:")]
    assert tree_digest(lab.layer_tree(first))[0] == first
    assert list(lab.tmp_dir.iterdir()) == []


def test_an_image_config_round_trips_under_its_reference(lab_home):
    image = store.Image("lab/web", "v2", layers=["sha256:" + "a" * 64], env=["A=1"],
                        cmd=["/bin/sh"], workdir="/srv", created="2024-01-01T00:00:00Z",
                        parent="sha256:" + "b" * 64)
    with store.writing() as lab:
        lab.save_image(image)

    assert (lab_home / "images" / "lab" / "web" / "v2.json").is_file()
    assert store.reading().image("lab/web:v2") == image
    assert store.reading().image("lab/web") is None
    assert list((lab_home / "tmp").iterdir()) == []


def test_the_image_digest_covers_what_a_container_runs_and_not_when_it_was_made():
    image = store.Image("busybox", "latest", layers=["sha256:" + "a" * 64], cmd=["/bin/sh"])
    later = store.Image("busybox", "v1", layers=image.layers, cmd=["/bin/sh"],
                        created="2030-01-01T00:00:00Z")
    other = store.Image("busybox", "latest", layers=image.layers, cmd=["/bin/ls"])

    assert image.digest == later.digest
    assert image.digest != other.digest


@pytest.mark.parametrize("reference, expected", [
    ("busybox", ("busybox", "latest")),
    ("busybox:1.35", ("busybox", "1.35")),
    ("lab/web-app_2:V2.x", ("lab/web-app_2", "V2.x")),
])
def test_an_image_reference_names_a_repository_and_a_tag(reference, expected):
    assert store.parse_reference(reference) == expected


@pytest.mark.parametrize("reference", [
    "", "BusyBox", "..", "../busybox", "lab/../x", "/busybox", "busybox/", "busybox:",
    "busybox:../x", "busybox:-x", "a b", "x" * 256,
])
def test_a_bad_image_reference_is_one_clear_error(reference):
    with pytest.raises(LabError, match=r"invalid image reference.*busybox:latest"):
        store.parse_reference(reference)


@pytest.mark.parametrize("size, shown", [(0, "0B"), (999, "999B"), (2_131_456, "2.13MB"),
                                          (5_000_000_000, "5GB")])
def test_sizes_read_as_docker_prints_them(size, shown):
    assert store.human_size(size) == shown


def test_the_store_never_deletes_through_a_mount(tmp_path):
    """A bind mount left under a container's directory must not let rm reach the host's files."""
    home, precious = tmp_path / "home", tmp_path / "precious"
    precious.mkdir()
    (precious / "keep").write_text("mine")
    script = f"""
import os, sys
os.environ["LABKIT_HOME"] = {str(home)!r}
from labkit.engine import store
from labkit.errors import LabError
with store.writing() as lab:
    victim = lab.root / "containers" / "x" / "merged"
    victim.mkdir(parents=True)
    os.system(f"mount --bind {str(precious)!r} {{victim}}")
    try:
        lab.discard(victim.parent)
    except LabError as error:
        print(error)
"""
    done = subprocess.run(["unshare", "--mount", "--propagation", "private",
                           sys.executable, "-c", script], capture_output=True, text=True)
    assert "is still mounted" in done.stdout, done.stdout + done.stderr
    assert (precious / "keep").read_text() == "mine"


@pytest.fixture
def open_parent():
    """A directory every user may enter, as /var/lib is: the store's own mode must guard it."""
    parent = Path(tempfile.mkdtemp(prefix="labkit-open-"))
    parent.chmod(0o755)
    yield parent
    subprocess.run(["rm", "-rf", "--one-file-system", str(parent)], check=True)


def test_a_setuid_file_committed_from_a_container_gives_no_other_user_root(open_parent):
    """docker's CVE-2021-41091: a setuid-root file a container made, kept in a layer, must not
    be runnable by a host user who walks into the store. The store is root's alone."""
    home = open_parent / "store"
    assert run_labkit(home, "image", "build-base").returncode == 0
    made = run_labkit(home, "run", "--name", "suid", "busybox", "sh", "-c",
                      "mkdir /opt && cp /bin/busybox /opt/id && chmod 4755 /opt/id")
    assert made.returncode == 0, made.stderr
    assert run_labkit(home, "commit", "suid", "lab/suid:1").returncode == 0
    [setuid_id] = list((home / "layers").glob("*/diff/opt/id"))  # busybox, as its id applet
    assert setuid_id.stat().st_mode & 0o4000 and setuid_id.stat().st_uid == 0
    # A shell of nobody's runs it, as a logged-in user would (setpriv's own exec of it would
    # still pass: setpriv keeps root's capabilities until that exec).
    as_nobody = subprocess.run([*AS_NOBODY, "sh", "-c", f"'{setuid_id}' -u"],
                               capture_output=True, text=True, timeout=30)
    assert as_nobody.returncode != 0 and "Permission denied" in as_nobody.stderr, as_nobody
    assert (home.stat().st_mode & 0o777) == 0o700
    assert run_labkit(home, "rm", "suid").returncode == 0
