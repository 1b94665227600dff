"""OCI bundles for crun and runc: ``runc spec``'s default config, pointed at the busybox rootfs.

The default config is what ``docker run`` would roughly ask for: its own /proc, a tmpfs /dev
with pts, shm and mqueue, a read-only /sys, masked and read-only /proc paths, docker's
capabilities, no_new_privs. Only what the comparison needs is changed: the root filesystem (the
same directory every contender uses, read-only), the command, no terminal, a hostname, and
exactly the namespaces the others create.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

NAMESPACES = ["pid", "uts", "mount", "ipc", "network"]


def bundle(directory: Path, rootfs: Path, command: list[str]) -> Path:
    """Write a bundle (``config.json``) for ``command`` in ``directory``; return it."""
    directory.mkdir(parents=True)
    subprocess.run(["runc", "spec", "--bundle", str(directory)], check=True)
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config["root"] = {"path": str(rootfs), "readonly": True}
    config["process"].update(args=command, terminal=False, env=["PATH=/bin"])
    config["hostname"] = "container"
    config["linux"]["namespaces"] = [{"type": kind} for kind in NAMESPACES]
    path.write_text(json.dumps(config, indent=1))
    return directory
