"""How containers are named: a random id for the machine, a name for people.

Every container gets an id of 64 hexadecimal digits (256 random bits, as docker's), shown cut to
12 digits, and a name: the one the learner gave with ``--name``, or a random one such as
``curious_hopper``. Either finds it again, and so does any prefix of its id that only it has.

A name follows docker's rule: a letter or digit, then at least one more letter, digit, ``_``,
``.`` or ``-``. The rule is what keeps a name harmless: it has no ``/``, cannot be ``.`` or
``..``, and has no space or control character to break a table or a shell line. The store never
makes a path out of a name anyway; it keeps containers under their ids.
"""

from __future__ import annotations

import os
import random
import re

from labkit.errors import LabError

ID_LENGTH = 64
SHORT_LENGTH = 12
NAME_MAX = 64  # long enough for any name a person types, short enough for a column of `ps`

_ID = re.compile(rf"[0-9a-f]{{{ID_LENGTH}}}")
_NAME = re.compile(rf"[a-zA-Z0-9][a-zA-Z0-9_.-]{{1,{NAME_MAX - 1}}}")

# The random names: a mood and someone whose work a container stands on.
_MOODS = ("brave", "calm", "clever", "curious", "eager", "gentle", "happy", "jolly", "keen",
          "kind", "lucid", "merry", "modest", "nimble", "patient", "quiet", "quirky", "sharp",
          "steady", "sunny", "tender", "tidy", "upbeat", "witty", "zealous")
_PEOPLE = ("allen", "backus", "corbato", "dijkstra", "hamilton", "hopper", "kernighan", "knuth",
           "lamport", "liskov", "lovelace", "mccarthy", "mcilroy", "morris", "pike", "ritchie",
           "sammet", "spafford", "tanenbaum", "thompson", "torvalds", "turing", "wirth")


def new_id() -> str:
    return os.urandom(ID_LENGTH // 2).hex()


def is_id(text: str) -> bool:
    return bool(_ID.fullmatch(text))


def short(container_id: str) -> str:
    """The first 12 digits, as docker shows an id (and uses as the container's hostname)."""
    return container_id[:SHORT_LENGTH]


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid container name; otherwise one line saying why not."""
    if not _NAME.fullmatch(name):
        raise LabError(f"invalid container name {name!r}: use 2 to {NAME_MAX} characters, "
                       f"letters, digits, '_', '.' or '-', starting with a letter or digit")
    return name


def random_name(taken: set[str]) -> str:
    """A name such as ``curious_hopper`` that no container in ``taken`` has."""
    for _ in range(20):
        name = f"{random.choice(_MOODS)}_{random.choice(_PEOPLE)}"
        if name not in taken:
            return name
    number = 2
    while f"{name}{number}" in taken:  # a crowded store: fall back to a numbered name
        number += 1
    return f"{name}{number}"
