"""The busybox base image: deterministic, content-addressed, atomic, idempotent, and usable."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from test_store import LABKIT, run_labkit

from labkit.engine import baseimage, store
from labkit.engine.digest import tree_digest
from labkit.errors import LabError


def build(home: Path) -> subprocess.CompletedProcess:
    result = run_labkit(home, "image", "build-base")
    assert result.returncode == 0, result
    return result


def measured_size(home: Path) -> str:
    """The image's size as its build measured it (its layer's tar stream), as the lab shows it;
    checked against the busybox it holds: what distribution ships it decides the figure."""
    size = store.Store(home).image_size(image_of(home))
    assert baseimage.BUSYBOX.stat().st_size < size < baseimage.BUSYBOX.stat().st_size + 2**20
    return store.human_size(size)


def image_of(home: Path) -> store.Image:
    path = home / "images" / "busybox" / "latest.json"
    return store.Image.from_json(json.loads(path.read_text()))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A fresh store with the base image built into it by the CLI."""
    home = tmp_path_factory.mktemp("built") / "lab"
    build(home)
    return home


def test_two_fresh_stores_get_the_same_image_digest_hashed_from_the_content(built, tmp_path):
    other = tmp_path / "lab"
    build(other)

    first, second = image_of(built), image_of(other)
    assert first.digest == second.digest
    assert first.layers == second.layers
    for home in (built, other):
        (layer,) = image_of(home).layers
        assert tree_digest(home / "layers" / layer.removeprefix("sha256:") / "diff")[0] == layer


@pytest.mark.parametrize("change", [
    lambda root: (root / "etc" / "hostname").write_text("changed\n"),
    lambda root: os.chmod(root / "tmp", 0o755),
    lambda root: os.lchown(root / "etc" / "passwd", 0, 1000),
    lambda root: (root / "bin" / "ls").unlink(),
    lambda root: (root / "dev" / "new").mkdir(),
], ids=["a file's bytes", "a mode", "an owner", "a removed link", "a new directory"])
def test_changing_one_thing_in_a_copy_of_the_rootfs_changes_the_digest(built, tmp_path, change):
    (layer,) = image_of(built).layers
    copy = tmp_path / "rootfs"
    shutil.copytree(built / "layers" / layer.removeprefix("sha256:") / "diff", copy,
                    symlinks=True)
    assert tree_digest(copy)[0] == layer

    change(copy)

    assert tree_digest(copy)[0] != layer


def test_times_are_not_content(built, tmp_path):
    (layer,) = image_of(built).layers
    copy = tmp_path / "rootfs"
    shutil.copytree(built / "layers" / layer.removeprefix("sha256:") / "diff", copy,
                    symlinks=True)
    os.utime(copy / "etc" / "hosts", (1, 1))

    assert tree_digest(copy)[0] == layer


def test_the_build_shows_each_step_and_names_what_it_built(tmp_path):
    lines = build(tmp_path / "lab").stdout.splitlines()

    image = image_of(tmp_path / "lab")
    bin_dir = tmp_path / "lab" / "layers" / image.layers[0].removeprefix("sha256:") / "diff" / "bin"
    links = [path for path in bin_dir.iterdir() if path.is_symlink()]
    assert lines[:5] == [
        "  copy /bin/busybox into a new root filesystem",
        f"  link {len(links)} applets to /bin/busybox",
        "  write /etc: hostname, hosts, passwd, group, resolv.conf",
        "  hash the root filesystem and store it as a layer",
        "  save the image config of busybox:latest",
    ]
    assert lines[5:] == [f"built busybox:latest {store.short(image.digest)} "
                         f"({measured_size(tmp_path / 'lab')})"]


def test_a_second_build_from_the_same_input_does_nothing_and_says_so(tmp_path):
    home = tmp_path / "lab"
    build(home)
    config = (home / "images" / "busybox" / "latest.json").read_bytes()

    result = build(home)

    digest = store.short(image_of(home).digest)
    assert result.stdout == (f"busybox:latest is up to date, nothing to do: {digest} "
                             f"({measured_size(home)})\n")
    assert (home / "images" / "busybox" / "latest.json").read_bytes() == config


def _kill_while_writing(home: Path) -> bool:
    """Start a build, SIGKILL it once a file appears in the store's tmp/; True if the kill came
    before the image was saved (a fast machine may finish first)."""
    process = subprocess.Popen([LABKIT, "image", "build-base"], stdout=subprocess.DEVNULL,
                               env={**os.environ, "LABKIT_HOME": str(home)})
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if any(files for _, _, files in os.walk(home / "tmp")):
            break
        time.sleep(0.001)
    process.kill()
    process.wait()
    return not (home / "images" / "busybox" / "latest.json").exists()


def test_a_build_killed_half_way_leaves_no_image_and_the_next_build_succeeds(built, tmp_path):
    for attempt in range(5):
        home = tmp_path / f"lab{attempt}"
        if _kill_while_writing(home):
            break
    else:
        pytest.fail("five builds in a row finished before they could be killed")
    assert any(os.scandir(home / "tmp")), "the kill came before the build wrote anything"
    listing = run_labkit(home, "images")
    assert listing.stdout.splitlines()[1:] == ["No images yet: labkit image build-base"]

    result = build(home)

    assert "leftover(s) of an interrupted labkit command" in result.stdout.splitlines()[0]
    image = image_of(home)
    assert image.digest == image_of(built).digest
    assert [path.name for path in (home / "images").rglob("*.json")] == ["latest.json"]
    assert [f"sha256:{path.name}" for path in (home / "layers").iterdir()] == image.layers
    assert tree_digest(home / "layers" / image.layers[0].removeprefix("sha256:") / "diff")[0] \
        == image.layers[0]
    assert list((home / "tmp").iterdir()) == []


def test_two_builds_at_once_take_turns_and_the_second_finds_nothing_to_do(tmp_path):
    home = tmp_path / "lab"
    env = {**os.environ, "LABKIT_HOME": str(home)}
    processes = [subprocess.Popen([LABKIT, "image", "build-base"], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]
    outputs = [process.communicate(timeout=120)[0] for process in processes]

    assert [process.returncode for process in processes] == [0, 0]
    built_line, idle_line = sorted(output.splitlines()[-1] for output in outputs)
    assert built_line.startswith("built busybox:latest ")
    assert idle_line.startswith("busybox:latest is up to date, nothing to do: ")
    assert len(list((home / "layers").iterdir())) == 1


def test_labkit_images_lists_the_base_image(built):
    image = image_of(built)

    result = run_labkit(built, "images")

    assert result.returncode == 0, result
    assert result.stdout.split() == [
        "REPOSITORY", "TAG", "DIGEST", "LAYERS", "SIZE", "CREATED",
        "busybox", "latest", store.short(image.digest), "1", measured_size(built), image.created,
    ]


def test_the_base_image_is_a_root_filesystem_busybox_can_live_in(built):
    (layer,) = image_of(built).layers
    rootfs = built / "layers" / layer.removeprefix("sha256:") / "diff"
    script = ("id -un; cat /etc/hostname; ls -1 /; "
              "stat -c '%n %a %u:%g' /tmp /root /proc /bin/busybox /etc/passwd; readlink /bin/sh")

    result = subprocess.run(["chroot", str(rootfs), "/bin/sh", "-c", script],
                            capture_output=True, text=True, timeout=30)

    assert result.returncode == 0, result
    assert result.stdout.splitlines() == [
        "root", "busybox",
        "bin", "dev", "etc", "proc", "root", "sys", "tmp",
        "/tmp 1777 0:0", "/root 700 0:0", "/proc 555 0:0", "/bin/busybox 755 0:0",
        "/etc/passwd 644 0:0",
        "busybox",
    ]


def _read_until_closed(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError as error:  # EIO: the last holder of the terminal has gone
            assert error.errno == errno.EIO
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_people_at_a_terminal_see_rich_progress(tmp_path):
    leader, follower = os.openpty()
    env = {name: value for name, value in os.environ.items() if name != "LABKIT_PLAIN"}
    env |= {"LABKIT_HOME": str(tmp_path / "lab"), "TERM": "xterm-256color"}
    process = subprocess.Popen([LABKIT, "image", "build-base"], env=env,
                               stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    output = _read_until_closed(leader).decode()
    os.close(leader)

    assert process.wait(timeout=60) == 0
    assert "\x1b[" in output  # drawn by rich, not printed as plain lines
    assert "hash the root filesystem and store it as a layer" in output
    assert "built busybox:latest" in output


def _a_script(tmp_path: Path) -> Path:
    script = tmp_path / "busybox"
    script.write_text("#!/bin/sh\necho I am not busybox\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("program, says", [
    (lambda tmp: tmp / "missing", "is missing: install busybox-static"),
    (lambda tmp: Path("/bin/ls"), "not a statically linked program"),
    (_a_script, "not a statically linked program"),
], ids=["missing", "dynamically linked", "a script"])
def test_a_busybox_that_could_not_run_alone_is_refused(tmp_path, monkeypatch, program, says):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "lab"))
    with store.writing() as lab, pytest.raises(LabError, match=says):
        baseimage.build(lab, program(tmp_path))

    for directory in (lab.layers_dir, lab.images_dir, lab.tmp_dir):
        assert list(directory.iterdir()) == []
