"""Step: a seccomp filter, so that the container's root cannot even ask for what it must not do.

The hardening step took away the capabilities that mount, load modules or reboot need. But a
process without them can still make a *user namespace*, in which it is root again, with every
capability, over the namespaces it creates there: ``unshare -U -r -m`` inside a container gives a
full capability set, and mounts work. Each such door is a system call, or a flag of one. A
seccomp filter is a small BPF program the kernel runs on every system call of the process and
its descendants, before the call does anything: it answers "go on" or "fail with this errno".

The program is compiled by the engine with libseccomp (``labkit.engine.seccomp``), from a profile
modelled on docker's default, and crosses to the launcher as data, as docker hands runc a
profile: the runtime only loads it. This step is the last one, after ``hardening.py``: the
kernel takes a filter only from a process with no_new_privs (or CAP_SYS_ADMIN), and nothing the
runtime does after it (the exec of the init, the init's fork and exec of the command) is a call
the filter refuses. ``exec`` loads the same filter into the command it starts.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from labkit.kernel.syscalls import set_seccomp_filter
from labkit.runtime.spec import Step


@dataclass(frozen=True)
class Seccomp(Step):
    """Load ``program``: a compiled seccomp filter, base64 text so that it survives JSON."""

    program: str

    def apply(self) -> None:
        set_seccomp_filter(base64.b64decode(self.program))
