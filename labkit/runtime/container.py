"""A full container: every step, in order, from an image's layers to a hardened command.

The lessons add one isolation step at a time; a container of lesson 06 takes them all, as
``docker run --network none`` would; lesson 07 puts it on a network. This module only *lists*
them: the launcher applies them in a fresh process (``launch.py``), so it is safe to call from
the CLI or a notebook.

    from labkit.engine import builds       # the engine compiles the static init
    from labkit.runtime import api
    from labkit.runtime.spec import Spec

    steps = steps_for(layers, upper, work, hostname=container_id, init=builds.static_init(),
                      volumes=[("/srv/data", "/data", False)], workdir="/")
    api.run(["hostname"], steps, env={"PATH": "/bin"}).stdout   # the container's id
    container = api.ContainerProcess(Spec(["sh"], steps, {"PATH": "/bin"}), stdin=..., stdout=...)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

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
from labkit.runtime.steps.seccomp import Seccomp
from labkit.runtime.steps.static_init import StaticInit

Volume = tuple[str | Path, str, bool]
LOOPBACK_ONLY = LoopbackNetwork()

def steps_for(layers: Sequence[str | Path], upper: str | Path, work: str | Path, hostname: str,
              volumes: Sequence[Volume] = (), workdir: str = "/", *, init: str | Path,
              seccomp: str | None = None, engine_files: Sequence[tuple[str | Path, str]] = (),
              rootfs: str | Path | None = None,
              network: Step | None = LOOPBACK_ONLY, cgroup: Step | None = None) -> list[Step]:
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
    - ``init``: the host path of the static init (``init.c``, compiled ``-static``), which runs
      the command as the container's PID 1 (``steps/static_init.py``). The engine builds it
      (``labkit.engine.builds.static_init``), as docker hands runc its ``docker-init``;
    - ``seccomp``: a compiled seccomp filter (``labkit.engine.seccomp``), loaded last, or None
      for none (``--security-opt seccomp=unconfined``);
    - ``engine_files``: ``(host_file, container_path)`` files the engine wrote for this
      container, bound over the image's (its ``/etc/hostname``, as docker does);
    - ``rootfs``: the empty directory the container's root filesystem is mounted on, seen only
      inside the container's own mount namespace; by default ``merged`` beside ``upper``,
      created when the container starts (docker's overlay2 keeps ``merged`` beside ``diff``
      and ``work`` the same way). No mount is ever left on the host: the mounts live and die
      with the container's mount namespace;
    - ``network``: the network step: ``LoopbackNetwork()``, a namespace with only ``lo``
      (``--network none``, the default here); ``BridgedNetwork(...)`` (``steps/veth.py``), on
      the engine's bridge (``--network bridge``); or None, no namespace at all: the host's own
      network (``--network host``);
    - ``cgroup``: a ``Cgroup`` step (``steps/cgroups.py``), the container's limits, entered
      last before ``pivot_root`` hides the host's /sys/fs/cgroup (see that step for why
      late); None for none.

    The command and its environment go in the ``Spec``: the container gets that environment
    and nothing of the caller's. The init is bind-mounted read-only at ``/dev/init``.

    Bad input (a bad hostname, a relative container path or workdir, a missing volume source)
    raises a ``LabError`` with exit code 125.
    """
    upper = os.path.abspath(upper)
    mount_point = os.path.abspath(rootfs or os.path.join(os.path.dirname(upper), "merged"))
    return [
        Hostname(hostname),
        PidNamespace(),
        IpcNamespace(),
        *([network] if network else []),
        RootFs.of(layers, upper, work, mount_point, volumes, engine_files),
        Devices(mount_point),
        StaticInit(mount_point, str(init)),
        ProcAndSys(mount_point),
        *([cgroup] if cgroup else []),
        PivotRoot(mount_point, workdir),
        Hardening(),
        *([Seccomp(seccomp)] if seccomp else []),
    ]
