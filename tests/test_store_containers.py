"""The container half of the store, on disk only: the layout, the lookup, the removal."""

from __future__ import annotations

import json
import os

import pytest

from labkit.engine import names, store
from labkit.errors import LabError


@pytest.fixture
def lab(tmp_path):
    lab = store.Store(tmp_path / "store")
    lab.create()
    return lab


def make(lab: store.Store, name: str, container_id: str | None = None,
         created: str = "") -> store.ContainerConfig:
    config = store.ContainerConfig(
        id=container_id or names.new_id(), name=name, image="busybox:latest", image_digest="",
        layers=[], command=["true"], env={}, workdir="/", hostname="box",
        volumes=[("/srv", "/data", True)], created=created or store.timestamp())
    lab.create_container(config)
    return config


def test_a_container_appears_whole_under_its_id(lab):
    config = make(lab, "web")
    directory = lab.containers_dir / config.id
    assert sorted(os.listdir(directory)) == [
        "config.json", "hostname", "log", "state.json", "upper", "work"]
    assert (directory / "hostname").read_text() == "box\n"  # bound over its /etc/hostname
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    assert oct((directory / "upper").stat().st_mode & 0o777) == "0o755"
    assert lab.container_config(config.id) == config
    assert lab.container_state(config.id) == store.ContainerState()
    assert os.listdir(lab.tmp_dir) == []


def test_a_state_is_replaced_atomically_and_leaves_no_temporary_file(lab):
    config = make(lab, "web")
    state = store.ContainerState(status=store.EXITED, exit_code=3, error="oops")
    lab.save_container_state(config.id, state)
    assert lab.container_state(config.id) == state
    assert json.loads((lab.containers_dir / config.id / "state.json").read_text())["exit_code"] == 3
    assert sorted(os.listdir(lab.containers_dir / config.id)) == [
        "config.json", "hostname", "log", "state.json", "upper", "work"]


def test_lookup_takes_the_id_then_the_name_then_a_unique_prefix(lab):
    first = make(lab, "web", "ab" + "0" * 62)
    second = make(lab, "ab" + "0" * 62, "ac" + "0" * 62)  # a name that is the other's id
    third = make(lab, "abc", "ad" + "1" * 62)
    assert lab.find_container(first.id) == first.id
    assert lab.find_container("web") == first.id
    assert lab.find_container("abc") == third.id  # a name, though also a prefix
    assert lab.find_container("ac") == second.id
    with pytest.raises(LabError, match="'a' starts the ids of 3 containers"):
        lab.find_container("a")
    for unknown in ["", "ae", "../" + first.id, first.id + "0"]:
        with pytest.raises(LabError, match="no such container"):
            lab.find_container(unknown)


def test_configs_list_oldest_first_and_remove_takes_everything(lab):
    late = make(lab, "late", created="2024-01-02T00:00:00Z")
    early = make(lab, "early", created="2024-01-01T00:00:00Z")
    (lab.containers_dir / late.id / "upper" / "file").write_text("changed\n")
    assert [config.name for config in lab.container_configs()] == ["early", "late"]
    lab.remove_container(late.id)
    assert lab.container_ids() == [early.id]
    assert os.listdir(lab.tmp_dir) == []
