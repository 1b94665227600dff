"""rmi: an image goes with the layers no one else uses; never while a container stands on it."""

from __future__ import annotations

import pytest
from containers_support import labkit, removing_new_containers
from images_support import assert_refused_and_nothing_made, removing_new_images

from labkit.engine import containers, names, store


@pytest.fixture(autouse=True)
def _remove_what_the_test_made(base_image):
    with removing_new_images(), removing_new_containers():
        yield


def commit_change(image: str, script: str, name: str, reference: str) -> store.Image:
    """Run ``script`` in a new container of ``image``, then commit it as ``reference``."""
    assert containers.run(image, ["sh", "-c", script], name=name).exit_code == 0
    return containers.commit(name, reference)


def test_rmi_is_refused_while_a_container_uses_the_image_then_removes_its_own_layer():
    lab = store.reading()
    image = commit_change("busybox", "echo 1 > /one", "maker", "lab/one:v1")
    user = containers.run("lab/one:v1", ["true"], name="user")
    assert_refused_and_nothing_made(["rmi", "lab/one:v1"], 1,
                                    f"image lab/one:v1 is used by container user "
                                    f"({names.short(user.id)}): remove it first (labkit rm user)")

    containers.rm("user")
    removed = labkit("rmi", "lab/one:v1")
    new_layer = image.layers[-1]
    assert (removed.returncode, removed.stdout) == (
        0, f"Untagged: lab/one:v1\nDeleted: {image.digest}\nDeleted: {new_layer}\n"), (
        removed.stderr)
    assert labkit("images").stdout.count(store.short(image.digest)) == 0
    assert lab.image("lab/one:v1") is None
    assert not lab.layer_dir(new_layer).exists()
    assert lab.has_layers(lab.image("busybox")), "the base layer stays: busybox uses it"
    assert not (store.home() / "images" / "lab").exists(), "no empty repository left"


def test_a_layer_another_image_stands_on_stays_until_that_one_goes():
    lab = store.reading()
    first = commit_change("busybox", "echo 1 > /one", "first", "lab/stack:v1")
    second = commit_change("lab/stack:v1", "echo 2 > /two", "second", "lab/stack:v2")
    containers.rm("first")
    containers.rm("second")

    assert containers.rmi("lab/stack:v1") == []
    assert lab.layer_dir(first.layers[-1]).is_dir()
    assert containers.run("lab/stack:v2", ["cat", "/one", "/two"], remove=True).stdout == "1\n2\n"
    assert containers.rmi("lab/stack:v2") == second.layers[1:]
    assert not any(lab.layer_dir(digest).exists() for digest in second.layers[1:])


def test_a_second_name_of_the_same_image_is_only_untagged():
    image = commit_change("busybox", "echo 1 > /one", "twice", "lab/same:v1")
    assert containers.commit("twice", "lab/same:also").digest == image.digest
    user = containers.run("lab/same:also", ["true"], name="also-user")
    untagged = labkit("rmi", "lab/same:v1")  # the other name keeps the image and its layers
    assert (untagged.returncode, untagged.stdout) == (0, "Untagged: lab/same:v1\n")
    assert_refused_and_nothing_made(["rmi", "lab/same:also"], 1, "is used by container also-user")
    containers.rm(user.id)


@pytest.mark.parametrize(("reference", "says"), [
    ("lab/nothing:v1", "no such image: lab/nothing:v1"),
    ("Lab/Upper", "invalid image reference 'Lab/Upper'"),
    ("lab/../busybox", "invalid image reference"),
    ("..", "invalid image reference"),
])
def test_rmi_refuses_an_unknown_image_or_a_bad_reference(reference, says):
    assert_refused_and_nothing_made(["rmi", reference], 1, says)


def test_rmi_of_several_images_removes_each_and_reports_each_failure():
    commit_change("busybox", "echo 1 > /one", "maker-a", "lab/many:a")
    commit_change("busybox", "echo 2 > /two", "maker-b", "lab/many:b")
    containers.rm("maker-a")
    containers.rm("maker-b")
    done = labkit("rmi", "lab/many:a", "lab/nothing:here", "lab/many:b")
    assert done.returncode == 1  # one failed, and the others were still removed, as docker does
    assert [line for line in done.stdout.splitlines() if line.startswith("Untagged")] == [
        "Untagged: lab/many:a", "Untagged: lab/many:b"]
    assert done.stderr.splitlines() == [
        "labkit: no such image: lab/nothing:here (labkit images lists them)"]
    lab = store.reading()
    assert lab.image("lab/many:a") is None and lab.image("lab/many:b") is None
