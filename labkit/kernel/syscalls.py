"""The thin ctypes layer between the lab and the kernel.

Python 3.12 grew ``os.unshare`` and ``os.setns``, but 3.11 has neither and no version has
``mount`` or ``pivot_root``. So every namespace and mount call goes through libc here, on one
code path for every Python version, and every failure names the call and errno's symbol, because
"EINVAL from mount" is what a learner needs to search for, not "OSError 22".

Never call these from the Jupyter kernel: it is multithreaded, and unshare/setns/mount change the
calling process (docs/safety.md rule 1). Call them from a fresh, single-threaded process.
"""

from __future__ import annotations

import ctypes
import errno
import os

# Namespace flags for clone(2), unshare(2) and setns(2), from <linux/sched.h>.
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# mount(2) flags, from <linux/mount.h>.
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20

# umount2(2) flags.
MNT_DETACH = 2

# prctl(2) options used by the runtime.
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# close_range(2) flag: mark the descriptors close-on-exec instead of closing them.
CLOSE_RANGE_CLOEXEC = 1 << 2

# socket(2) arguments, for the ioctls that configure network interfaces.
AF_INET = 2
SOCK_DGRAM = 2
SOCK_CLOEXEC = 0o2000000

# prctl(PR_SET_SECCOMP) mode: a BPF program judges every system call (seccomp(2)).
SECCOMP_MODE_FILTER = 2
_SOCK_FILTER_SIZE = 8  # one BPF instruction: u16 code, u8 jt, u8 jf, u32 k

# capset(2): the version of its header that takes 64 capabilities, as two 32-bit halves.
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# glibc has no pivot_root() wrapper, so it is called by number.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}

# openat2(2): how a path may be resolved (struct open_how's resolve field), and its number (the
# same on every architecture: it came after the numbers were unified).
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10
_SYS_OPENAT2 = 437

_libc = ctypes.CDLL(None, use_errno=True)


class SyscallError(OSError):
    """A failed system call, named with its arguments and errno's symbol."""

    def __init__(self, call: str, err: int):
        name = errno.errorcode.get(err, str(err))
        super().__init__(err, f"{call}: {name} ({os.strerror(err)})")
        self.call = call


def _check(result: int, call: str) -> int:
    if result == -1:
        raise SyscallError(call, ctypes.get_errno())
    return result


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces of the kinds in ``flags``."""
    _check(_libc.unshare(flags), f"unshare({flag_names(flags)})")


def setns(fd: int, nstype: int = 0) -> None:
    """Join the namespace that ``fd`` (an open /proc/PID/ns/* file) refers to."""
    _check(_libc.setns(fd, nstype), f"setns({fd}, {flag_names(nstype) or 0})")


def mount(source: str | None, target: str, fstype: str | None = None,
          flags: int = 0, data: str | None = None) -> None:
    """Attach a filesystem, or change a mount's flags or propagation."""
    call = f"mount({source!r}, {target!r}, {fstype!r}, {mount_flag_names(flags)}, {data!r})"
    _check(_libc.mount(_bytes(source), _bytes(target), _bytes(fstype),
                       ctypes.c_ulong(flags), _bytes(data)), call)


def umount2(target: str, flags: int = 0) -> None:
    """Detach the mount at ``target``; MNT_DETACH makes it lazy."""
    _check(_libc.umount2(_bytes(target), flags), f"umount2({target!r}, {flags})")


def pivot_root(new_root: str, put_old: str) -> None:
    """Make ``new_root`` the root of this mount namespace, the old root moved to ``put_old``."""
    number = _SYS_PIVOT_ROOT[os.uname().machine]
    _check(_libc.syscall(number, _bytes(new_root), _bytes(put_old)),
           f"pivot_root({new_root!r}, {put_old!r})")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def openat2(directory: int, path: str, flags: int, resolve: int) -> int:
    """Open ``path`` relative to the open ``directory``, resolved as ``resolve`` says: with
    RESOLVE_IN_ROOT, ``directory`` is the root of the lookup, and no ``..`` nor symlink (an
    absolute one included) can lead out of it, whatever changes on the way."""
    how = _OpenHow(flags | os.O_CLOEXEC, 0, resolve)
    return _check(_libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_long(directory),
                                _bytes(path), ctypes.byref(how),
                                ctypes.c_size_t(ctypes.sizeof(how))), f"openat2({path!r})")


def sethostname(name: str) -> None:
    """Set the hostname of the calling process's UTS namespace."""
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), f"sethostname({name!r})")


def prctl(option: int, arg: int = 0) -> int:
    """Read or set a per-process attribute (subreaper, no_new_privs, capability bounding set)."""
    return _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl({option}, {arg})")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's capability sets, each a bit mask (bit N = capability N)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    halves = (_CapData * 2)(*[_CapData(*(mask >> shift & 0xFFFFFFFF
                                         for mask in (effective, permitted, inheritable)))
                              for shift in (0, 32)])
    _check(_libc.capset(ctypes.byref(header), halves),
           f"capset({effective:#x}, {permitted:#x}, {inheritable:#x})")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def set_seccomp_filter(program: bytes) -> None:
    """Load a compiled seccomp filter (BPF instructions, as libseccomp exports them) onto the
    calling thread: it judges every system call from here on, across exec, and is never lifted.
    The kernel takes it only with no_new_privs set, or from a caller with CAP_SYS_ADMIN."""
    fprog = _SockFprog(len(program) // _SOCK_FILTER_SIZE, program)
    _check(_libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(fprog),
                       0, 0), f"prctl(PR_SET_SECCOMP, {fprog.len} instructions)")


def close_range(first: int, last: int, flags: int = 0) -> None:
    """Close (or, with CLOSE_RANGE_CLOEXEC, mark close-on-exec) descriptors first..last."""
    _check(_libc.close_range(ctypes.c_uint(first), ctypes.c_uint(last), ctypes.c_int(flags)),
           f"close_range({first}, {last}, {flags})")


def socket(domain: int, kind: int) -> int:
    """A new socket's descriptor; the lab only needs one to aim network ioctls at."""
    return _check(_libc.socket(domain, kind, 0), f"socket({domain}, {kind})")


# statfs(2) f_type of an overlay filesystem and of a tmpfs, from <linux/magic.h>.
OVERLAYFS_SUPER_MAGIC = 0x794C7630
TMPFS_MAGIC = 0x01021994


def filesystem_type(path: str) -> int:
    """The magic number (statfs f_type) of the filesystem holding ``path``.

    ``os.statvfs`` leaves the type out, and the type is what tells an overlay filesystem (which
    cannot hold another overlay's upper directory) from ext4 or tmpfs.
    """
    buffer = ctypes.create_string_buffer(256)  # struct statfs: 120 bytes, f_type a long first
    _check(_libc.statfs(_bytes(path), buffer), f"statfs({path!r})")
    return ctypes.c_long.from_buffer(buffer).value


_CLONE_NAMES = {value: name for name, value in globals().items() if name.startswith("CLONE_NEW")}
_MOUNT_NAMES = {value: name for name, value in globals().items() if name.startswith("MS_")}


def _names(flags: int, table: dict[int, str]) -> str:
    parts = [name for value, name in sorted(table.items()) if flags & value]
    rest = flags & ~sum(table)
    if rest:
        parts.append(hex(rest))
    return "|".join(parts)


def flag_names(flags: int) -> str:
    """``CLONE_NEWNS|CLONE_NEWUTS`` for the namespace bits in ``flags``."""
    return _names(flags, _CLONE_NAMES)


def mount_flag_names(flags: int) -> str:
    """``MS_REC|MS_PRIVATE`` for the mount bits in ``flags``, or 0."""
    return _names(flags, _MOUNT_NAMES) or "0"
