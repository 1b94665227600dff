"""``labkit doctor``: can this machine run the lab, and what kind of machine is it?

Each check is a small function that looks at one fact and returns a ``Check``: what it looked
at, what it found, whether the lab can live with it, and, when it cannot, one line saying what
to do. Two kinds of fact are reported:

- problems that stop the lab (not root, a namespace the kernel will not create, no overlayfs
  under the store, no gcc, no static busybox, no nft, a subnet the host already routes, an old
  Python) make ``ok`` False;
- facts the lab adapts to (a container or WSL, the cgroup mode, the propagation of ``/``,
  restricted unprivileged user namespaces) are reported with ``ok`` True, because the lab
  detects them rather than assuming them, and a learner may want to know.

Every file a check reads is a parameter with the live default, so the same function can judge
files captured on another machine (say, an Ubuntu 24.04 VM). Whatever needs a kernel experiment
(unshare, a mount) runs in a fresh single-threaded Python child, never in the caller, which may
be a multithreaded Jupyter kernel (docs/safety.md rule 1).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from labkit import show
from labkit.engine import store
from labkit.errors import NEEDS_ROOT, LabError
from labkit.kernel import procfs

PROC_STATUS = Path("/proc/self/status")
MOUNTINFO = Path("/proc/self/mountinfo")
PROC_SYS = Path("/proc/sys")
PROC_VERSION = Path("/proc/version")

# Namespace kinds, as /proc/PID/ns names them, and the syscalls constant that creates each.
NAMESPACES = {
    "mnt": "CLONE_NEWNS", "uts": "CLONE_NEWUTS", "ipc": "CLONE_NEWIPC", "pid": "CLONE_NEWPID",
    "net": "CLONE_NEWNET", "user": "CLONE_NEWUSER", "cgroup": "CLONE_NEWCGROUP",
    "time": "CLONE_NEWTIME",
}

# Capabilities the lab's root must hold (bit numbers from <linux/capability.h>): unshare, mount
# and pivot_root need CAP_SYS_ADMIN, veth pairs CAP_NET_ADMIN, the chroot lesson CAP_SYS_CHROOT.
NEEDED_CAPS = {"CAP_NET_ADMIN": 12, "CAP_SYS_CHROOT": 18, "CAP_SYS_ADMIN": 21}

STORE_REMEDY = ("point LABKIT_HOME at a writable directory on ext4, xfs or tmpfs "
                "(an overlay's upper dir cannot sit on another overlay)")

# Sysctls that stop unprivileged users from creating user namespaces, and the value that does.
USERNS_LIMITS = (
    ("kernel.unprivileged_userns_clone", "0"),  # Debian's and older Ubuntu's switch
    ("user.max_user_namespaces", "0"),  # no user namespaces for anyone
    ("kernel.apparmor_restrict_unprivileged_userns", "1"),  # Ubuntu 23.10 and newer
)


@dataclass(frozen=True)
class Check:
    """One fact about the machine: its name, what was found, and what to do if it is a problem."""

    name: str
    value: str
    ok: bool
    remedy: str = ""


# --- who we are -------------------------------------------------------------------------------


def root_check(status: Path = PROC_STATUS) -> Check:
    """The lab creates namespaces and mounts: it needs uid 0 *with* its capabilities.

    A root shell inside an unprivileged container has uid 0 but lacks CAP_SYS_ADMIN, so the
    effective capability set (CapEff) is read too, not just the uid.
    """
    fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
    uid = int(fields["Uid"].split()[1])  # real, effective, saved, filesystem
    cap_eff = fields["CapEff"].strip()
    missing = [name for name, bit in NEEDED_CAPS.items() if not int(cap_eff, 16) >> bit & 1]
    value = f"uid {uid}, CapEff {cap_eff}"
    if uid != 0:
        return Check("root", value, False, NEEDS_ROOT)
    if missing:
        return Check("root", f"{value} (no {', '.join(missing)})", False,
                     "this root is capability-limited (an unprivileged container?): run the lab "
                     "in the lab VM or a --privileged container")
    return Check("root", value, True)


def kernel_check(osrelease: Path = PROC_SYS / "kernel/osrelease") -> Check:
    """The kernel release, for the record: what the kernel can do is tested by the checks below."""
    return Check("kernel", osrelease.read_text().strip(), True)


def python_check(version: tuple[int, ...] = sys.version_info[:3]) -> Check:
    """The lab is written for Python 3.11 and newer, the oldest its target machines ship."""
    text = ".".join(str(part) for part in version)
    if tuple(version[:2]) < (3, 11):
        return Check("python", text, False,
                     "install Python 3.11 or newer (Debian 12 and Ubuntu 24.04 ship one)")
    return Check("python", text, True)


# --- what the kernel will do ------------------------------------------------------------------


def namespace_checks() -> list[Check]:
    """Try to create each kind of namespace, each in its own throw-away child process.

    Reading a kernel config says what was compiled in, not what this process may do here (a
    container's seccomp profile, a missing capability, a zero max_*_namespaces). Only trying
    tells, and trying changes the process that tries, so a child does it.
    """
    results = dict(line.split() for line in _run_in_child("try_namespaces", *NAMESPACES))
    return [_namespace_check(kind, int(results[kind])) for kind in NAMESPACES]


def _namespace_check(kind: str, error: int) -> Check:
    name = f"namespace {kind}"
    if not error:
        return Check(name, "creatable", True)
    remedies = {
        errno.EPERM: "the kernel refused: run as root with CAP_SYS_ADMIN, in the lab VM or a "
                     "--privileged container",
        errno.EINVAL: f"this kernel lacks {kind} namespaces: use the lab VM's kernel",
        errno.ENOSPC: f"raise the limit in /proc/sys/user/max_{kind}_namespaces",
    }
    reason = _errno_text(error)
    remedy = remedies.get(error, f"see man 2 unshare for {reason}")
    return Check(name, reason, False, remedy)


def try_namespaces(*kinds: str) -> None:
    """Child side of ``namespace_checks``: print ``KIND ERRNO`` (0 when it worked) per kind.

    Each attempt forks first, because a namespace, once entered, changes what the next attempt
    may do (a new user namespace grants every capability inside it).
    """
    from labkit.kernel import syscalls

    for kind in kinds:
        pid = os.fork()
        if pid == 0:
            try:
                syscalls.unshare(getattr(syscalls, NAMESPACES[kind]))
            except OSError as error:
                os._exit(error.errno)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print(kind, os.waitstatus_to_exitcode(status))


def overlay_check(home: Path | None = None, mountinfo: Path = MOUNTINFO) -> Check:
    """Mount a small overlay in the store, the way every container's rootfs will be mounted.

    The store is created if missing; if the overlay then fails, what was created is removed
    again, so a store in a bad place leaves nothing behind. The filesystem under the store
    matters: an overlay's upper dir on another overlay (a store inside a container) is refused.
    """
    home = Path(home or store.home()).absolute()
    try:
        created = _make_dirs(home)
    except OSError as error:
        return Check("overlayfs", f"cannot create {home}: {_describe(error)}", False, STORE_REMEDY)
    failure = "".join(_run_in_child("try_overlay", str(home)))
    fstype = filesystem_of(home, mountinfo)
    if failure:
        for directory in created:
            directory.rmdir()
        return Check("overlayfs", f"unusable on {fstype} ({home}): {failure}", False,
                     STORE_REMEDY)
    return Check("overlayfs", f"usable on {fstype} ({home})", True)


def _make_dirs(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents; return what was created, deepest first."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    return missing


def try_overlay(home: str) -> None:
    """Child side of ``overlay_check``: mount an overlay in a scratch dir under ``home``.

    Prints nothing when the overlay works (a write through it lands in the upper dir and the
    lower dir's file shows through), or one line saying what failed. The mount lives in a new
    mount namespace made private first, so it can never reach the host, and vanishes with it.
    """
    from labkit.kernel import syscalls

    try:
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        with tempfile.TemporaryDirectory(prefix=".doctor-", dir=home) as scratch:
            os.chdir(scratch)  # relative dirs keep odd characters in home out of the options
            for name in ("lower", "upper", "work", "merged"):
                os.mkdir(name)
            Path("lower/seen").write_text("from the lower dir\n")
            syscalls.mount("overlay", "merged", "overlay", 0,
                           "lowerdir=lower,upperdir=upper,workdir=work")
            try:
                Path("merged/written").write_text("through the overlay\n")
                seen = sorted(os.listdir("merged"))
            finally:
                syscalls.umount2("merged", syscalls.MNT_DETACH)
            if seen != ["seen", "written"] or not Path(scratch, "upper/written").exists():
                print(f"the overlay mounted but showed {seen}")
    except OSError as error:
        print(_describe(error))


def _describe(error: OSError) -> str:
    """``mount: EINVAL (Invalid argument)``: the failed call, if known, and errno's text."""
    call = getattr(error, "call", "")  # a syscalls.SyscallError names its call
    reason = _errno_text(error.errno)
    return f"{call.partition('(')[0]}: {reason}" if call else reason


def _errno_text(number: int) -> str:
    """``EPERM (Operation not permitted)``: the symbol is what a learner can search for."""
    return f"{errno.errorcode.get(number, str(number))} ({os.strerror(number)})"


def _run_in_child(function: str, *args: str) -> list[str]:
    """Run ``doctor.<function>(*args)`` in a fresh, single-threaded Python; return its lines.

    ``-I -S`` keeps the child small and deaf to the environment; the package's own directory
    is put on its path by hand. A child that crashes is a bug in the lab, so it is raised.
    """
    package_parent = str(Path(__file__).resolve().parent.parent)
    code = (f"import sys; sys.path.insert(0, {package_parent!r}); "
            f"from labkit import doctor; doctor.{function}(*sys.argv[1:])")
    child = subprocess.run([sys.executable, "-I", "-S", "-c", code, *args],
                           capture_output=True, text=True, timeout=60)
    if child.returncode != 0:
        raise RuntimeError(f"doctor's {function} child failed: {child.stderr.strip()}")
    return child.stdout.splitlines()


# --- how the machine is set up ----------------------------------------------------------------


def _mounts(mountinfo: Path) -> tuple[procfs.Mount, ...]:
    """The mount table in ``mountinfo``, in the kernel's order: later mounts sit on top."""
    return procfs.parse_mountinfo(mountinfo.read_bytes())


def _mount_of(path: Path, mounts: tuple[procfs.Mount, ...]) -> procfs.Mount:
    """The mount a path lives on: the longest mount point above it, the topmost if stacked."""
    text = str(path.resolve())
    above = [m for m in mounts
             if text == m.mount_point or text.startswith(m.mount_point.rstrip("/") + "/")]
    return max(reversed(above), key=lambda m: len(m.mount_point))


def filesystem_of(path: Path, mountinfo: Path = MOUNTINFO) -> str:
    """The filesystem type under ``path`` (ext4, tmpfs, overlay, ...)."""
    return _mount_of(path, _mounts(mountinfo)).fs_type


def propagation_check(mountinfo: Path = MOUNTINFO) -> Check:
    """Is ``/`` shared (systemd hosts) or private (plain Debian, most containers)?

    The lab makes every new mount namespace private first, so either works; but on a shared
    ``/`` the article's ``mount -t proc`` would break the host's /proc, which a lesson shows.
    """
    return Check("/ propagation", _mount_of(Path("/"), _mounts(mountinfo)).propagation.kind, True)


def cgroup_check(mountinfo: Path = MOUNTINFO) -> Check:
    """v2 (one cgroup2 tree), hybrid (v1 controllers plus a cgroup2 'unified'), or v1 only.

    The mode decides how the cgroup lesson sets limits, not whether the lab runs; but with no
    cgroup filesystem at all there is nothing to limit with.
    """
    mounts = [m for m in _mounts(mountinfo) if m.mount_point.startswith("/sys/fs/cgroup")]
    top = [m.fs_type for m in mounts if m.mount_point == "/sys/fs/cgroup"]
    kinds = {m.fs_type for m in mounts if m.mount_point.startswith("/sys/fs/cgroup/")}
    if top and top[-1] == "cgroup2":
        return Check("cgroups", "v2", True)
    if "cgroup" in kinds:
        return Check("cgroups", "hybrid" if "cgroup2" in kinds else "v1", True)
    return Check("cgroups", "not mounted", False,
                 "mount cgroup2 at /sys/fs/cgroup: mount -t cgroup2 cgroup2 /sys/fs/cgroup")


def container_check(root: Path = Path("/")) -> Check:
    """Hints that we run inside a container, like systemd-detect-virt --container looks for."""
    hints = []
    for marker, engine in ((".dockerenv", "docker"), ("run/.containerenv", "podman")):
        if (root / marker).exists():
            hints.append(f"{engine} (/{marker})")
    declared = _read(root / "run/systemd/container") or _container_variable(root)
    if declared:
        hints.append(f"{declared} (declared by the init system)")
    cgroup = re.search(r"/(docker|lxc|kubepods|libpod)\b", _read(root / "proc/1/cgroup"))
    if cgroup:
        hints.append(f"{cgroup[1]} (/proc/1/cgroup)")
    return Check("container", ", ".join(hints) or "none detected", True)


def _container_variable(root: Path) -> str:
    """The ``container=`` variable container managers hand to PID 1 (not always readable)."""
    environ = _read(root / "proc/1/environ").split("\0")
    return next((item.split("=", 1)[1] for item in environ if item.startswith("container=")), "")


def wsl_check(version: Path = PROC_VERSION) -> Check:
    """WSL's kernels say "microsoft" in their version; WSL 2 ones also say "WSL2"."""
    text = version.read_text().lower()
    if "microsoft" not in text:
        return Check("WSL", "no", True)
    return Check("WSL", "WSL 2" if "wsl2" in text else "WSL 1", True)


def userns_check(sysctl: Path = PROC_SYS) -> Check:
    """May users other than root create user namespaces?

    The lab runs as root, whom these switches spare (all but max_user_namespaces=0, which
    ``namespace_checks`` catches), so this only informs the user-namespace lesson, which shows
    why distributions (Ubuntu 24.04 through AppArmor) restrict it.
    """
    restricting = [f"{name}={value}" for name, value in USERNS_LIMITS
                   if _read(sysctl / name.replace(".", "/")) == value]
    if restricting:
        return Check("unprivileged userns", f"restricted ({', '.join(restricting)})", True)
    return Check("unprivileged userns", "allowed", True)


def _read(path: Path) -> str:
    """A small file's text, or "" when it is absent or unreadable (a hint, not a requirement)."""
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


# --- the tools the lab builds with ------------------------------------------------------------


def gcc_check(path: str | None = None) -> Check:
    """The lessons compile their C samples with gcc. ``path`` is a PATH; None means $PATH."""
    found = shutil.which("gcc", path=path)
    if not found:
        return Check("gcc", "not on PATH", False, "install it: apt-get install gcc")
    return Check("gcc", found, True)


def busybox_check(binary: Path | None = None) -> Check:
    """The base image is a static busybox: one file that runs with no libraries beside it.

    A dynamically linked busybox would need the host's loader and libc inside every image.
    """
    remedy = "install the static one: apt-get install busybox-static"
    binary = binary or shutil.which("busybox")
    if not binary:
        return Check("busybox-static", "busybox not on PATH", False, remedy)
    try:
        interpreter = elf_interpreter(Path(binary))
    except (OSError, ValueError) as error:
        return Check("busybox-static", f"{binary}: {error}", False, remedy)
    if interpreter:
        return Check("busybox-static", f"{binary} is dynamic (needs {interpreter})", False, remedy)
    return Check("busybox-static", f"{binary} (static)", True)


def nftables_check(path: str | None = None) -> Check:
    """``nft``, which loads the lab's rules for published ports and outbound NAT."""
    found = path or shutil.which("nft")
    if not found:
        return Check("nftables", "nft not on PATH", False, "install it: apt-get install nftables")
    return Check("nftables", found, True)


def subnet_check() -> Check:
    """The containers' subnet, which no route of the host's may already cover."""
    from labkit.engine import bridge

    try:
        network = bridge.subnet()
    except LabError as error:
        return Check("subnet", os.environ.get("LABKIT_SUBNET", ""), False, str(error))
    routes = bridge.colliding_routes(network)
    if routes:
        return Check("subnet", f"{network} overlaps {', '.join(routes)}", False,
                     "set LABKIT_SUBNET to a free subnet, such as 10.88.0.0/24")
    return Check("subnet", f"{network} (no route of the host's overlaps it)", True)


PT_INTERP = 3  # the program header naming a dynamic binary's loader


def elf_interpreter(binary: Path) -> str:
    """The loader a 64-bit ELF binary asks for (its PT_INTERP), or "" for a static binary."""
    with binary.open("rb") as elf:
        header = elf.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:
            raise ValueError("not a 64-bit ELF binary")
        order = "<" if header[5] == 1 else ">"
        (table,) = struct.unpack_from(order + "Q", header, 32)
        entry_size, count = struct.unpack_from(order + "HH", header, 54)
        for index in range(count):
            elf.seek(table + index * entry_size)
            kind, _, offset, _, _, size = struct.unpack(order + "IIQQQQ", elf.read(40))
            if kind == PT_INTERP:
                elf.seek(offset)
                return elf.read(size).rstrip(b"\0").decode()
    return ""


# --- the verdict ------------------------------------------------------------------------------


def run_checks() -> list[Check]:
    """Every check, in the order a learner would fix things."""
    return [root_check(), kernel_check(), python_check(), *namespace_checks(), overlay_check(),
            cgroup_check(), propagation_check(), container_check(), wsl_check(), userns_check(),
            gcc_check(), busybox_check(), nftables_check(), subnet_check()]


def problems(checks: list[Check]) -> list[str]:
    """One line per problem: what was found and what to do."""
    return [f"{c.name}: {c.value}; {c.remedy}" for c in checks if not c.ok]


def table(checks: list[Check]) -> show.Table:
    """The checks at a glance; ``problems(checks)`` are the lines that go below it."""
    rows = [[c.name, c.value, show.Mark("ok", True) if c.ok else show.Mark("problem", False)]
            for c in checks]
    ok = all(c.ok for c in checks)
    note = "The lab can run on this machine." if ok else "The lab cannot run until this is fixed:"
    return show.Table("labkit doctor", ["check", "found", "status"], rows, note)
