"""The containers' seccomp profile: which system calls a container may not make.

Modelled on docker's default profile, written as what it refuses rather than the 300-odd calls
it allows. Each entry closes a door that the capabilities a container keeps would leave open,
or that the kernel has found dangerous to hand to a container's root:

- new namespaces: ``unshare`` and ``setns``, and ``clone`` with a ``CLONE_NEW*`` flag (a plain
  fork is a ``clone`` too, and stays allowed); ``clone3``, whose flags sit in memory where a
  filter cannot read them, fails with ENOSYS, so the C library falls back to ``clone``;
- the mount family, old and new (``mount``, ``umount2``, ``pivot_root``, ``fsopen``, ``fsmount``,
  ``move_mount``, ``open_tree``...), for a root that would make itself a namespace to mount in;
- the kernel's keyring (``keyctl``, ``add_key``, ``request_key``): it is not namespaced, and
  holds the host's secrets;
- ``bpf``, ``perf_event_open``, ``userfaultfd``: large attack surfaces of their own;
- loading a kernel or a module, rebooting, swap, the clock, accounting, quotas;
- ``open_by_handle_at`` and ``name_to_handle_at``: a file handle opens a file by number, past
  every mount and chroot (the "shocker" escape from docker 0.11);
- reading and writing other processes' memory (``process_vm_readv``/``writev``), NUMA policy.

``compile_profile`` turns the profile into BPF with libseccomp, through pyseccomp (a ctypes
binding of it, rather than BPF assembled by hand: libseccomp knows every architecture's syscall
numbers and how to check the architecture first). The runtime's ``Seccomp`` step loads the result
(``runtime/steps/seccomp.py``).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import tempfile
from pathlib import Path

from labkit.engine import builds, store
from labkit.kernel.syscalls import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWTIME,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
)

DEFAULT = "default"
UNCONFINED = "unconfined"
PROFILES = (DEFAULT, UNCONFINED)

REFUSED = (
    "unshare", "setns",
    "mount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
    "open_tree", "mount_setattr",
    "keyctl", "add_key", "request_key",
    "bpf", "perf_event_open", "userfaultfd",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "acct", "quotactl",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "open_by_handle_at", "name_to_handle_at",
    "process_vm_readv", "process_vm_writev", "mbind", "set_mempolicy", "move_pages",
    "lookup_dcookie", "uselib", "ustat", "sysfs", "vhangup", "iopl", "ioperm",
)
NAMESPACE_FLAGS = (CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
                   CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWTIME)


def compile_profile() -> str:
    """The default profile as a BPF program for this machine, base64 text for a spec.

    Compiled once per store and kept beside the built C programs: loading libseccomp through
    pyseccomp alone costs tens of milliseconds, which every ``labkit run`` would pay. The cache
    is named by a hash of this file, the profile's one source, and of the machine's kind.
    """
    cached = builds.cache_dir() / f"seccomp-{_fingerprint()}.bpf"
    if not cached.exists():
        with store.writing() as lab, lab.staging() as work:
            (work / cached.name).write_bytes(_compile())
            cached.parent.mkdir(parents=True, exist_ok=True)
            (work / cached.name).rename(cached)
    return base64.b64encode(cached.read_bytes()).decode()


def _fingerprint() -> str:
    digest = hashlib.sha256(Path(__file__).read_bytes() + os.uname().machine.encode())
    return digest.hexdigest()[:16]


def _compile() -> bytes:
    """The profile, compiled by libseccomp: the BPF instructions the kernel runs."""
    import pyseccomp  # loads libseccomp: only when the cache has no program yet

    refused = pyseccomp.ERRNO(errno.EPERM)
    rules = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for name in REFUSED:
        rules.add_rule(refused, name)
    for flag in NAMESPACE_FLAGS:  # clone(flags, ...): refused if any namespace bit is set
        rules.add_rule(refused, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
    rules.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as program:
        rules.export_bpf(program)
        program.seek(0)
        return program.read()
