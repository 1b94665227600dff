"""The namespace probe every lesson uses: which namespaces did the child end up in?

A child prints its own ``/proc/self/ns`` links (``NS_PROBE``); the runtime reports the same ids
itself. Either way the lesson gets ``{link: id}`` and compares it with the notebook's own
process, which lives in the host's namespaces.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from labkit.kernel import procfs

# A shell loop that prints each namespace link of the process running it: "uts uts:[4026531838]".
NS_PROBE = ["sh", "-c",
            'for link in /proc/self/ns/*; do echo "${link##*/} $(readlink "$link")"; done']


def printed_ids(output: str) -> dict[str, int]:
    """The ids NS_PROBE printed, by link name; any other line (the sample's greeting) is skipped."""
    found = {}
    for line in output.splitlines():
        name, _, target = line.partition(" ")
        if ":[" in target and target.endswith("]"):
            found[name] = procfs.parse_ns_link(name, target).inode
    return found


def versus_host(ids: Mapping[str, int]) -> tuple[procfs.NamespacePair, ...]:
    """The child's namespaces beside the host's (this process's), link by link."""
    child = [procfs.Namespace(name, name.removesuffix("_for_children"), inode)
             for name, inode in ids.items()]
    return procfs.compare_namespaces(procfs.namespaces(os.getpid()), child)


def different(pairs: tuple[procfs.NamespacePair, ...]) -> set[str]:
    """The links in which the two sides are not in the same namespace."""
    return {pair.name for pair in pairs if not pair.same}
