"""Step: a hostname of the container's own (the UTS namespace, lesson 02).

``uname()`` and ``hostname`` read the hostname from the caller's UTS namespace. In a new one
the container starts with a copy of the host's name and can change it freely: the host, still
in the old namespace, never sees the change.
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit.errors import LabError
from labkit.kernel.syscalls import CLONE_NEWUTS, sethostname
from labkit.runtime.spec import Step

HOST_NAME_MAX = 64  # the kernel's limit, from <limits.h>


def _is_hostname(name: str) -> bool:
    """Letters, digits, '-' and '.', starting with a letter or digit, as RFC 1123 asks."""
    return (isinstance(name, str) and 0 < len(name) <= HOST_NAME_MAX and name[0].isalnum()
            and all(c.isascii() and (c.isalnum() or c in "-.") for c in name))


@dataclass(frozen=True)
class Hostname(Step):
    """Give the container its own UTS namespace, and ``name`` as its hostname."""

    name: str
    namespaces = CLONE_NEWUTS

    def __post_init__(self) -> None:
        if not _is_hostname(self.name):
            raise LabError(f"bad hostname {self.name!r}: use 1 to {HOST_NAME_MAX} letters, "
                           f"digits, '-' and '.', starting with a letter or digit")

    def apply(self) -> None:
        sethostname(self.name)
