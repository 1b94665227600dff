"""commit: a container's upper layer becomes exactly one new read-only layer of a new image, on
top of its image's own layers, reused as they are.

Every container and image here is real: the session's busybox, the runtime's full set of steps,
overlays the kernel mounts. Each test removes what it made.
"""

from __future__ import annotations

import os

import pytest
from containers_support import labkit, removing_new_containers
from images_support import assert_refused_and_nothing_made, container_dir, removing_new_images

from labkit.engine import containers, layers, store
from labkit.engine.layers import DIR, FILE, OPAQUE_DIR, SYMLINK, WHITEOUT
from labkit.kernel import procfs


@pytest.fixture(autouse=True)
def _remove_what_the_test_made(base_image):
    with removing_new_images(), removing_new_containers():
        yield


def run_ok(image: str, script: str, **options) -> containers.Outcome:
    result = containers.run(image, ["sh", "-c", script], **options)
    assert result.exit_code == 0, result.stderr
    return result


def xattrs(tree) -> dict[str, dict[str, bytes]]:
    """Every extended attribute in ``tree``, by relative path (the root is ``.``)."""
    found = {}
    for path in [".", *layers.entries(tree)]:
        full = os.path.join(tree, path)
        names = os.listxattr(full, follow_symlinks=False)
        if names:
            found[path] = {name: os.getxattr(full, name, follow_symlinks=False) for name in names}
    return found


# A first image to change: a site, and a few files and directories to add to, change and delete.
SITE = ("mkdir -p /srv/site/css /srv/gone/sub /srv/redo"
        " && echo '<h1>v1</h1>' > /srv/site/index.html"
        " && echo 'body {}' > /srv/site/css/style.css && echo bye > /srv/gone/sub/file"
        " && echo old > /srv/redo/old && echo v1 > /srv/change.txt && echo doomed > /srv/doomed.txt"
        " && echo kept > /srv/keep.txt")

# Add, change and delete a file and a directory; delete a directory and make it again; rename a
# directory of the layer below; delete a file of the base layer; a symlink and a hard link.
CHANGES = ("echo new > /srv/added.txt && ln /srv/added.txt /srv/added-too.txt"
           " && mkdir /srv/newdir && echo n > /srv/newdir/f && echo v2 > /srv/change.txt"
           " && rm /srv/doomed.txt && rm -r /srv/gone"
           " && rm -r /srv/redo && mkdir /srv/redo && echo fresh > /srv/redo/new"
           " && mv /srv/site /srv/www && ln -s /etc/passwd /srv/link && rm /etc/group")

LOOK = "find /srv | sort; cat /srv/change.txt /srv/www/index.html /srv/redo/new; ls /etc"
SEEN = ("/srv\n/srv/added-too.txt\n/srv/added.txt\n/srv/change.txt\n/srv/keep.txt\n/srv/link\n"
        "/srv/newdir\n/srv/newdir/f\n/srv/redo\n/srv/redo/new\n/srv/www\n/srv/www/css\n"
        "/srv/www/css/style.css\n/srv/www/index.html\n"
        "v2\n<h1>v1</h1>\nfresh\n"
        "hostname\nhosts\npasswd\nresolv.conf\n")

NEW_LAYER = {
    "etc": DIR, "etc/group": WHITEOUT,
    "srv": DIR, "srv/added-too.txt": FILE, "srv/added.txt": FILE, "srv/change.txt": FILE,
    "srv/doomed.txt": WHITEOUT, "srv/gone": WHITEOUT, "srv/link": SYMLINK,
    "srv/newdir": DIR, "srv/newdir/f": FILE,
    "srv/redo": OPAQUE_DIR, "srv/redo/new": FILE,
    "srv/site": WHITEOUT,  # renamed: redirect_dir=off copied it up whole as srv/www
    "srv/www": DIR, "srv/www/css": DIR, "srv/www/css/style.css": FILE, "srv/www/index.html": FILE,
}


def test_a_commit_round_trip_keeps_every_change_and_every_deletion():
    lab = store.reading()
    run_ok("busybox", SITE, name="site-v1")
    committed = labkit("commit", "site-v1", "lab/site:v1")
    v1 = lab.image("lab/site:v1")
    assert (committed.returncode, committed.stdout) == (0, f"{v1.digest}\n"), committed.stderr
    assert v1.layers[:-1] == lab.image("busybox").layers

    changer = run_ok("lab/site:v1", CHANGES, name="site-v2")
    layers_before = set(lab.layer_digests())
    v2 = containers.commit("site-v2", "lab/site:v2")
    assert v2.layers[:-1] == v1.layers, "the parent's layers, reused"
    assert set(lab.layer_digests()) - layers_before == {v2.layers[-1]}, "exactly one new layer"

    new_layer = lab.layer_tree(v2.layers[-1])
    upper = container_dir(changer.id) / "upper"
    assert layers.entries(new_layer) == NEW_LAYER == layers.entries(upper)
    assert xattrs(new_layer) == {"srv/redo": {"trusted.overlay.opaque": b"y"}}
    assert any("trusted.overlay.origin" in found for found in xattrs(upper).values()), (
        "the kernel's bookkeeping was in the upper, and was dropped")
    added, added_too = (os.lstat(new_layer / "srv" / name) for name in ("added.txt",
                                                                      "added-too.txt"))
    assert added.st_ino == added_too.st_ino, "a hard link stays one file"
    assert os.readlink(new_layer / "srv" / "link") == "/etc/passwd"

    assert run_ok("lab/site:v2", LOOK, remove=True).stdout == SEEN


def test_the_new_image_stands_on_the_very_same_layer_directories():
    lab = store.reading()
    run_ok("busybox", "echo kept > /kept.txt", name="parent")
    parent = containers.commit("parent", "lab/parent:v1")
    run_ok("lab/parent:v1", "echo child > /child.txt", name="child")
    child = containers.commit("child", "lab/child:v1")

    box = containers.run("lab/child:v1", ["sleep", "1000"], detach=True)
    root = next(mount for mount in procfs.mounts(box.state.init_pid) if mount.mount_point == "/")
    lowers = [lab.layer_tree(digest) for digest in reversed(child.layers)]
    assert f"lowerdir={':'.join(map(str, lowers))}" in root.super_options
    assert lowers[1:] == [lab.layer_tree(digest) for digest in reversed(parent.layers)]

    inodes = containers.exec(box.id, ["stat", "-c", "%i", "/bin/busybox", "/kept.txt"]).stdout
    base, first = (lab.layer_tree(digest) for digest in parent.layers)
    assert inodes.split() == [str(os.stat(base / "bin" / "busybox").st_ino),
                              str(os.stat(first / "kept.txt").st_ino)], "the layers' own files"


def test_what_the_runtime_mounted_is_not_committed(tmp_path):
    script = ("echo out > /data/file && echo shm > /dev/shm/note && echo kept > /tmp/kept"
              " && cat /proc/self/status > /dev/null")
    run_ok("busybox", script, name="mounted", volumes=[f"{tmp_path}:/data"])
    image = containers.commit("mounted", "lab/mounted:v1")

    new_layer = store.reading().layer_tree(image.layers[-1])
    assert layers.entries(new_layer) == {"data": DIR, "tmp": DIR, "tmp/kept": FILE}, (
        "only the volume's mount point, made in the image as docker makes it")
    assert (tmp_path / "file").read_text() == "out\n"


def test_a_running_container_is_committed_as_it_is_and_runs_on():
    box = containers.run("busybox", ["sleep", "1000"], detach=True)
    changed = containers.exec(box.id, ["sh", "-c", "echo live > /state && rm /etc/group"])
    assert changed.exit_code == 0, changed.stderr
    image = containers.commit(box.name, "lab/live:v1")
    after = containers.inspect(box.id)
    assert (after.status, after.state.init_pid) == ("running", box.state.init_pid)
    assert image.cmd == ["sleep", "1000"]
    seen = run_ok("lab/live:v1", "cat /state; ls /etc", remove=True)
    assert seen.stdout == "live\nhostname\nhosts\npasswd\nresolv.conf\n"


def test_the_new_image_runs_the_container_s_command_with_its_environment():
    run_ok("busybox", 'echo "$GREETING from $HOSTNAME"', name="greeter", env=["GREETING=hi"])
    image = containers.commit("greeter", "lab/greeter:v1")
    assert (image.env, image.cmd) == (["PATH=/bin", "GREETING=hi"],
                                      ["sh", "-c", 'echo "$GREETING from $HOSTNAME"'])
    again = containers.run("lab/greeter:v1", detach=False, name="greeter-again")
    assert again.stdout == f"hi from {containers.inspect('greeter-again').short_id}\n", (
        "the container's command and -e; but HOSTNAME is each container's own")


def test_a_container_without_changes_commits_to_an_empty_layer_once():
    run_ok("busybox", "true", name="still")
    empty = containers.commit("still", "lab/empty:v1")
    assert layers.entries(store.reading().layer_tree(empty.layers[-1])) == {}

    run_ok("lab/empty:v1", "true", name="still-again")
    assert_refused_and_nothing_made(["commit", "still-again", "lab/empty:v2"], 1,
                                    "nothing new to commit", "an overlay cannot stack one layer")


@pytest.mark.parametrize("reference", ["Lab/Site", "lab/../etc", "../lab", "..", "lab:..",
                                       "lab/site:a/b", "lab site"])
def test_commit_refuses_a_bad_image_reference(reference):
    run_ok("busybox", "echo x > /x", name="source")
    assert_refused_and_nothing_made(["commit", "source", reference], 1,
                                    "invalid image reference")


def test_commit_refuses_an_unknown_container():
    assert_refused_and_nothing_made(["commit", "nobody-here", "lab/x"], 1,
                                    "no such container: 'nobody-here'")


SPARSE = ("dd if=/dev/zero of=/sparse bs=1 count=0 seek=256M 2>/dev/null && "
          "echo middle | dd of=/sparse bs=1 seek=128M conv=notrunc 2>/dev/null && "
          "echo end >> /sparse")


def test_a_sparse_file_stays_sparse_in_the_layer():
    """A 256 MB file of holes with two short runs of data takes a few KB of disk; copied byte
    by byte it became 256 MB of zeros in the layer. The commit keeps its holes, and its bytes."""
    lab = store.reading()
    run_ok("busybox", SPARSE, name="sparse")
    image = containers.commit("sparse", "lab/sparse:v1")
    copy = lab.layer_tree(image.layers[-1]) / "sparse"
    info = copy.stat()
    assert info.st_size == 2**28 + len("end\n")
    assert info.st_blocks * 512 < 1 << 20, f"{info.st_blocks * 512} bytes on disk"
    with open(copy, "rb") as sparse:
        sparse.seek(2**27)
        assert sparse.read(7) == b"middle\n"
        sparse.seek(info.st_size - 4)
        assert sparse.read() == b"end\n"
    seen = run_ok("lab/sparse:v1", "tail -c 4 /sparse; dd if=/sparse bs=1 skip=134217728 "
                  "count=6 2>/dev/null", remove=True).stdout
    assert seen == "end\nmiddle"
