"""A full container: every step, in order, from an image's layers to a hardened command.

The lessons add one isolation step at a time; a container of lesson 06 takes them all, as
``docker run --network none`` would. This module only *lists* them: the launcher applies them in
a fresh process (``launch.py``), so it is safe to call from the CLI or a notebook.

    from labkit.runtime import api
    from labkit.runtime.spec import Spec

    steps = steps_for(layers, upper, work, hostname=container_id,
                      volumes=[("/srv/data", "/data", False)], workdir="/")
    api.run(["hostname"], steps, env={"PATH": "/bin"}).stdout   # the container's id
    container = api.Container(Spec(["sh"], steps, {"PATH": "/bin"}), stdin=..., stdout=...)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from labkit import samples
from labkit.runtime.spec import Step
from labkit.runtime.steps.devices import Devices
from labkit.runtime.steps.hardening import Hardening
from labkit.runtime.steps.hostname import Hostname
from labkit.runtime.steps.ipc import IpcNamespace
from labkit.runtime.steps.network import LoopbackNetwork
from labkit.runtime.steps.pid import PidNamespace
from labkit.runtime.steps.pivot_root import PivotRoot
from labkit.runtime.steps.proc import ProcAndSys
from labkit.runtime.steps.rootfs import RootFs
from labkit.runtime.steps.static_init import StaticInit

Volume = tuple[str | Path, str, bool]

# The static init's C source sits beside init.py, which does the same job in Python.
INIT_SOURCE_DIR = Path(__file__).resolve().parent


def steps_for(layers: Sequence[str | Path], upper: str | Path, work: str | Path, hostname: str,
              volumes: Sequence[Volume] = (), workdir: str = "/", *,
              rootfs: str | Path | None = None) -> list[Step]:
    """The ordered steps of a full container; give them to a ``Spec`` with the command and env.

    - ``layers``: the image's read-only layer directories, **top first** (the order of overlay's
      ``lowerdir=``; an ``Image`` lists its layers bottom first, so reverse them);
    - ``upper`` and ``work``: the container's own empty-at-creation directories, on the same
      filesystem: ``upper`` takes every change and is what ``commit`` turns into a layer;
    - ``hostname``: the container's hostname, by docker's habit its id;
    - ``volumes``: ``(host_path, container_path, read_only)`` bind mounts, as ``-v
      HOST:CTR[:ro]``. A host path that does not exist is a ``LabError`` raised here, before
      any process or mount exists; a container path missing in the image is created (see
      ``steps/rootfs.py``);
    - ``workdir``: the command's working directory inside the container, created if missing,
      as ``docker run -w`` does;
    - ``rootfs``: the empty directory the container's root filesystem is mounted on, seen only
      inside the container's own mount namespace; by default ``merged`` beside ``upper``,
      created when the container starts (docker's overlay2 keeps ``merged`` beside ``diff``
      and ``work`` the same way). No mount is ever left on the host: the mounts live and die
      with the container's mount namespace.

    The command and its environment go in the ``Spec``: the container gets that environment
    and nothing of the caller's. The command runs under a static init bind-mounted read-only at
    ``/dev/init`` (``steps/static_init.py``). Building that init the first time takes the
    store's lock (``labkit.samples``), so call this *before* taking the lock yourself: flock()
    does not nest, and a second lock on the same store in one process waits forever.

    Bad input (a bad hostname, a relative container path or workdir, a missing volume source)
    raises a ``LabError`` with exit code 125.
    """
    upper = os.path.abspath(upper)
    mount_point = os.path.abspath(rootfs or os.path.join(os.path.dirname(upper), "merged"))
    return [
        Hostname(hostname),
        PidNamespace(),
        IpcNamespace(),
        LoopbackNetwork(),
        RootFs.of(layers, upper, work, mount_point, volumes),
        Devices(mount_point),
        StaticInit(mount_point, str(init_binary())),
        ProcAndSys(mount_point),
        PivotRoot(mount_point, workdir),
        Hardening(),
    ]


def init_binary() -> Path:
    """The static init (``init.c``), compiled once per store and cached like the C samples."""
    return samples.build("init", samples_dir=INIT_SOURCE_DIR, static=True)
