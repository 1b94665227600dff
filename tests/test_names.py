"""Container names and ids: docker's rule for names, random names that are free, random ids."""

from __future__ import annotations

import pytest

from labkit.engine import names
from labkit.errors import LabError


@pytest.mark.parametrize("name", ["web", "a1", "my_app.v2-blue", "7up", "x" * names.NAME_MAX])
def test_a_name_by_docker_s_rule_is_accepted(name):
    assert names.check_name(name) == name


@pytest.mark.parametrize("name", ["", "x", "../x", "..", ".", "a/b", "-web", "_web", ".web",
                                  "my web", "web\n", "wéb", "x" * (names.NAME_MAX + 1)])
def test_any_other_name_is_refused_in_one_line(name):
    with pytest.raises(LabError, match="invalid container name") as refused:
        names.check_name(name)
    assert "\n" not in str(refused.value)


def test_a_random_name_is_valid_and_free():
    taken: set[str] = set()
    for _ in range(2000):  # more than there are mood_person pairs: the fallback is used too
        name = names.random_name(taken)
        assert names.check_name(name) == name and name not in taken
        taken.add(name)


def test_ids_are_64_random_hex_digits_shown_as_12():
    made = {names.new_id() for _ in range(100)}
    assert len(made) == 100 and all(names.is_id(container_id) for container_id in made)
    container_id = made.pop()
    assert names.short(container_id) == container_id[:12]
    assert not names.is_id(container_id.upper()) and not names.is_id(container_id[:63])
