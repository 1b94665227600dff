"""The isolation steps: one kernel feature per module, read in the order the lessons add them.

1. ``hostname.py``: a UTS namespace, so the container has a hostname of its own (lesson 02).
2. ``pid.py``: a PID namespace, with the lab's init as its PID 1 (lesson 03).
3. ``mounts.py``: a mount namespace made private first, then a fresh ``/proc`` (lesson 04).
4. ``overlay.py``: read-only layers under one writable layer (lesson 05).

Lesson 06 completes a container, in the order ``labkit.runtime.container`` applies the steps
(lesson 08 adds ``cgroups.py`` before ``pivot_root.py``: a group of its own, with its limits):

5. ``ipc.py``: IPC tables of its own (an IPC namespace).
6. ``network.py``: a network namespace with only ``lo``, switched on (``--network none``);
   or ``veth.py`` (lesson 07): one joined to the host's bridge by a veth pair, as ``eth0``.
7. ``rootfs.py``: the image's layers under the container's upper, plus its volumes.
8. ``devices.py``: a minimal ``/dev`` on a tmpfs, no host device node.
9. ``static_init.py``: a PID 1 that is no host binary, bind-mounted read-only.
10. ``proc.py``: ``/proc`` with masked and read-only paths, ``/sys`` read-only.
11. ``pivot_root.py``: the rootfs becomes ``/``, the host's root is detached; the workdir.
12. ``hardening.py``: no leaked descriptor, fewer capabilities, no_new_privs.
13. ``seccomp.py``: a filter that refuses the system calls a container's root must not make.

Every step is a small dataclass built on ``labkit.runtime.spec.Step``: it names the namespaces
it needs and what it does inside them.
"""
