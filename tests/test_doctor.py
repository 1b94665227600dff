"""``labkit doctor``: it passes on this machine, and each remedy appears when its failure is real.

Failures are reproduced, not simulated: a dropped uid, a root without CAP_SYS_ADMIN, a shared
``/`` and a store on an overlay inside throw-away mount namespaces, a PATH without gcc, a
dynamic binary. Facts that only another machine has (Ubuntu 24.04's sysctls, a cgroup v2 mount
table) are fed to the same functions as small files written the way the kernel writes them.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from labkit import doctor
from labkit.errors import NEEDS_ROOT
from labkit.lessons.sandbox import shared_root
from tests.conftest import AS_NOBODY, LABKIT


def prefixed(*words: str):
    """Run the command behind ``words``: ``setpriv ... labkit doctor``."""
    return lambda argv: [*words, *argv]


def sandboxed(script: str):
    """Run the command in a fresh mount namespace, private first, after ``script`` ran there."""
    return prefixed("unshare", "--mount", "--propagation", "private", "--",
                    "sh", "-c", f'{script} && exec "$@"', "sandbox")


def run_doctor(wrap=None, json_output: bool = True, cwd: Path | None = None,
               labkit: str = LABKIT, **env: str) -> subprocess.CompletedProcess:
    """``labkit doctor [--json]``, wrapped in ``wrap`` (a sandbox, a dropped uid) if given."""
    argv = [labkit, "doctor", *(["--json"] if json_output else [])]
    argv = wrap(argv) if wrap else argv
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd,
                          env={**os.environ, **env})


def checks_of(result: subprocess.CompletedProcess) -> dict[str, dict]:
    report = json.loads(result.stdout)
    assert report["ok"] == (result.returncode == 0)
    return {check["name"]: check for check in report["checks"]}


def failed(checks: dict[str, dict]) -> list[str]:
    return [name for name, check in checks.items() if not check["ok"]]


# --- this machine -----------------------------------------------------------------------------


def findmnt(target: str, column: str) -> str:
    """What util-linux's findmnt says of the mount at ``target``: a second opinion."""
    return subprocess.run(["findmnt", "-no", column, target], capture_output=True, text=True,
                          check=True).stdout.strip()


def cgroup_mode_by_findmnt() -> str:
    if findmnt("/sys/fs/cgroup", "FSTYPE") == "cgroup2":
        return "v2"
    unified = subprocess.run(["findmnt", "-no", "FSTYPE", "/sys/fs/cgroup/unified"],
                             capture_output=True, text=True).stdout.strip()
    return "hybrid" if unified == "cgroup2" else "v1"


def test_doctor_passes_here_and_reports_this_machine_s_mounts_as_findmnt_sees_them():
    """The facts of whatever machine runs it (private or shared /, v1, hybrid or v2), each
    read again by another tool."""
    result = run_doctor()
    checks = checks_of(result)
    assert result.returncode == 0, result.stdout
    assert failed(checks) == []
    assert checks["/ propagation"]["value"] == findmnt("/", "PROPAGATION")
    assert checks["cgroups"]["value"] == cgroup_mode_by_findmnt()
    home = os.environ["LABKIT_HOME"]
    assert checks["overlayfs"]["value"] == f"usable on {doctor.filesystem_of(Path(home))} ({home})"
    for kind in doctor.NAMESPACES:
        assert checks[f"namespace {kind}"]["value"] == "creatable"
    assert checks["python"]["value"] == platform.python_version()
    assert checks["kernel"]["value"] == os.uname().release
    assert all(check["remedy"] == "" for check in checks.values())


def test_the_table_shows_every_check_and_says_the_lab_can_run():
    names = list(checks_of(run_doctor()))
    result = run_doctor(json_output=False)
    lines = result.stdout.splitlines()
    assert result.returncode == 0
    assert lines[0] == "labkit doctor"
    assert lines[1].split() == ["check", "found", "status"]
    rows = lines[2:2 + len(names)]
    assert [(row[:len(name)], row.split()[-1]) for name, row in zip(names, rows, strict=True)] \
        == [(name, "ok") for name in names]
    assert lines[2 + len(names):] == ["The lab can run on this machine."]


# --- who runs it ------------------------------------------------------------------------------


@pytest.fixture
def world_writable():
    """A directory anyone may write, so "nothing was created" is not just "could not create"."""
    with tempfile.TemporaryDirectory(prefix="labkit-doctor-") as path:
        os.chmod(path, 0o777)
        yield Path(path)


def test_non_root_gets_one_line_saying_root_is_needed_and_nothing_is_created(world_writable,
                                                                             public_lab):
    store = world_writable / "store"
    result = run_doctor(prefixed(*AS_NOBODY), json_output=False,
                        labkit=str(public_lab / "labkit-command"), LABKIT_HOME=str(store))
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"labkit: {NEEDS_ROOT}"]
    assert "sudo" in result.stderr
    assert list(world_writable.iterdir()) == []


def test_a_dropped_uid_fails_the_root_check_and_cannot_create_namespaces(public_lab):
    code = (f"import json, sys, dataclasses; sys.path.insert(0, {str(public_lab)!r}); "
            "from labkit import doctor; "
            "checks = [doctor.root_check(), *doctor.namespace_checks()]; "
            "print(json.dumps([dataclasses.asdict(check) for check in checks]))")
    child = subprocess.run([*AS_NOBODY, "/usr/bin/python3", "-c", code],
                           capture_output=True, text=True, check=True, timeout=60)
    checks = {check["name"]: check for check in json.loads(child.stdout)}
    assert checks["root"] == {"name": "root", "value": "uid 65534, CapEff 0000000000000000",
                              "ok": False, "remedy": NEEDS_ROOT}
    assert checks["namespace mnt"]["value"] == "EPERM (Operation not permitted)"
    assert "CAP_SYS_ADMIN" in checks["namespace mnt"]["remedy"]
    # Without privilege only a user namespace may be created, and only where that is allowed.
    users_may = doctor.userns_check().value == "allowed"
    assert {name: check["ok"] for name, check in checks.items() if name != "root"} == \
        {f"namespace {kind}": kind == "user" and users_may for kind in doctor.NAMESPACES}


def test_root_without_cap_sys_admin_fails_and_leaves_no_store(tmp_path):
    store = tmp_path / "new" / "store"
    result = run_doctor(prefixed("setpriv", "--bounding-set", "-sys_admin"), LABKIT_HOME=str(store))
    checks = checks_of(result)
    assert result.returncode == 1
    assert checks["root"]["value"].endswith("(no CAP_SYS_ADMIN)")
    assert "--privileged" in checks["root"]["remedy"]
    assert failed(checks) == ["root", *[f"namespace {kind}" for kind in doctor.NAMESPACES
                                        if kind != "user"], "overlayfs"]
    assert "unshare: EPERM" in checks["overlayfs"]["value"]
    assert list(tmp_path.iterdir()) == []  # the store it created for the probe is gone again


# --- mounts, in throw-away mount namespaces ---------------------------------------------------


def test_a_shared_root_inside_a_sandbox_is_reported_shared_and_does_not_fail():
    result = run_doctor(shared_root)
    checks = checks_of(result)
    assert result.returncode == 0
    assert checks["/ propagation"] == {"name": "/ propagation", "value": "shared", "ok": True,
                                       "remedy": ""}


def test_a_store_on_an_overlay_fails_with_a_labkit_home_remedy_and_writes_nothing(tmp_path):
    for name in ("lower", "upper", "work", "merged"):
        (tmp_path / name).mkdir()
    overlay = "mount -t overlay overlay -o lowerdir=lower,upperdir=upper,workdir=work merged"
    store = tmp_path / "merged" / "store"
    result = run_doctor(sandboxed(overlay), cwd=tmp_path,
                        LABKIT_HOME=str(store))
    checks = checks_of(result)
    assert result.returncode == 1
    assert failed(checks) == ["overlayfs"]
    assert checks["overlayfs"]["value"] == \
        f"unusable on overlay ({store}): mount: EINVAL (Invalid argument)"
    assert checks["overlayfs"]["remedy"].startswith("point LABKIT_HOME at a writable directory")
    assert list((tmp_path / "upper").iterdir()) == []


@pytest.mark.parametrize("inside", ["", "new/store"])
def test_a_read_only_store_fails_the_overlay_check_and_writes_nothing(tmp_path, inside):
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    store = frozen / inside
    result = run_doctor(sandboxed(f"mount --bind -o ro {frozen} {frozen}"), LABKIT_HOME=str(store))
    checks = checks_of(result)
    assert failed(checks) == ["overlayfs"]
    assert "EROFS (Read-only file system)" in checks["overlayfs"]["value"]
    assert "LABKIT_HOME" in checks["overlayfs"]["remedy"]
    assert list(frozen.iterdir()) == []


def test_a_store_that_is_a_file_fails_and_the_file_is_untouched(tmp_path):
    store = tmp_path / "store"
    store.write_text("not a directory\n")
    check = doctor.overlay_check(store)
    assert check == doctor.Check("overlayfs", f"cannot create {store}: EEXIST (File exists)",
                                 False, doctor.STORE_REMEDY)
    assert store.read_text() == "not a directory\n"


# --- tools ------------------------------------------------------------------------------------


def test_gcc_missing_from_path_is_the_one_problem_with_one_line(tmp_path):
    for tool in ("busybox", "nft"):
        (tmp_path / tool).symlink_to(shutil.which(tool))
    checks = checks_of(run_doctor(PATH=str(tmp_path)))
    assert failed(checks) == ["gcc"]
    result = run_doctor(json_output=False, PATH=str(tmp_path))
    assert result.returncode == 1
    assert result.stdout.splitlines()[2 + len(checks):] == [
        "The lab cannot run until this is fixed:",
        "gcc: not on PATH; install it: apt-get install gcc"]


def test_gcc_check_finds_gcc_on_the_given_path(tmp_path):
    assert doctor.gcc_check(str(tmp_path)).ok is False
    (tmp_path / "gcc").symlink_to(shutil.which("gcc"))
    assert doctor.gcc_check(str(tmp_path)) == doctor.Check("gcc", str(tmp_path / "gcc"), True)


def test_the_static_busybox_passes():
    busybox = shutil.which("busybox")
    assert doctor.busybox_check() == doctor.Check("busybox-static", f"{busybox} (static)", True)


def test_a_dynamic_busybox_fails_naming_its_loader():
    dynamic = Path(shutil.which("gcc"))
    loader = doctor.elf_interpreter(dynamic)
    assert Path(loader).is_file()
    check = doctor.busybox_check(dynamic)
    assert (check.ok, check.value) == (False, f"{dynamic} is dynamic (needs {loader})")
    assert check.remedy == "install the static one: apt-get install busybox-static"


def test_a_busybox_that_is_no_elf_binary_or_missing_fails(tmp_path):
    script = tmp_path / "busybox"
    script.write_text("#!/bin/sh\n")
    assert doctor.busybox_check(script).value == f"{script}: not a 64-bit ELF binary"
    missing = doctor.busybox_check(tmp_path / "absent")
    assert (missing.ok, "No such file or directory" in missing.value) == (False, True)


def test_python_older_than_3_11_fails():
    assert doctor.python_check((3, 10, 12)) == doctor.Check(
        "python", "3.10.12", False,
        "install Python 3.11 or newer (Debian 12 and Ubuntu 24.04 ship one)")
    assert doctor.python_check((3, 11, 0)).ok
    assert doctor.python_check((3, 13, 1)).ok


# --- facts read from files: captured from other machines --------------------------------------


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


UBUNTU_2404_MOUNTINFO = """\
26 1 252:1 / / rw,relatime shared:1 - ext4 /dev/mapper/ubuntu--vg-ubuntu--lv rw
22 26 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
27 22 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw
"""

V1_MOUNTINFO = """\
20 1 8:1 / / rw,relatime master:1 - ext4 /dev/sda1 rw
21 20 0:19 / /sys/fs/cgroup rw,nosuid shared:4 master:2 - tmpfs tmpfs rw,mode=755
22 21 0:20 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
23 21 0:21 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
"""


def test_cgroup_mode_and_propagation_from_captured_mount_tables(tmp_path):
    ubuntu = write_tree(tmp_path, {"ubuntu": UBUNTU_2404_MOUNTINFO}) / "ubuntu"
    v1 = write_tree(tmp_path, {"v1": V1_MOUNTINFO}) / "v1"
    assert doctor.cgroup_check(ubuntu).value == "v2"
    assert doctor.propagation_check(ubuntu).value == "shared"
    assert doctor.cgroup_check(v1).value == "v1"
    assert doctor.propagation_check(v1).value == "slave"


def test_no_cgroup_filesystem_is_a_problem(tmp_path):
    bare = write_tree(tmp_path, {"bare": "20 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw\n"})
    check = doctor.cgroup_check(bare / "bare")
    assert (check.ok, check.value) == (False, "not mounted")
    assert "mount -t cgroup2" in check.remedy


@pytest.mark.parametrize(("files", "verdict"), [
    ({"kernel/apparmor_restrict_unprivileged_userns": "1\n",
      "user/max_user_namespaces": "63349\n"},
     "restricted (kernel.apparmor_restrict_unprivileged_userns=1)"),
    ({"kernel/unprivileged_userns_clone": "0\n", "user/max_user_namespaces": "15637\n"},
     "restricted (kernel.unprivileged_userns_clone=0)"),
    ({"user/max_user_namespaces": "0\n"}, "restricted (user.max_user_namespaces=0)"),
    ({"kernel/apparmor_restrict_unprivileged_userns": "0\n",
      "kernel/unprivileged_userns_clone": "1\n", "user/max_user_namespaces": "63349\n"},
     "allowed"),
    ({}, "allowed"),
])
def test_unprivileged_userns_from_captured_sysctls(tmp_path, files, verdict):
    check = doctor.userns_check(write_tree(tmp_path, files))
    assert check == doctor.Check("unprivileged userns", verdict, True)


@pytest.mark.parametrize(("files", "verdict"), [
    ({".dockerenv": ""}, "docker (/.dockerenv)"),
    ({"run/.containerenv": "engine=\"podman-4.9\"\n"}, "podman (/run/.containerenv)"),
    ({"run/systemd/container": "lxc\n"}, "lxc (declared by the init system)"),
    ({"proc/1/environ": "PATH=/bin\0container=systemd-nspawn\0"},
     "systemd-nspawn (declared by the init system)"),
    ({"proc/1/cgroup": "0::/kubepods/besteffort/pod1\n"}, "kubepods (/proc/1/cgroup)"),
    ({"proc/1/cgroup": "0::/init.scope\n"}, "none detected"),
])
def test_container_hints_from_captured_files(tmp_path, files, verdict):
    assert doctor.container_check(write_tree(tmp_path, files)) == \
        doctor.Check("container", verdict, True)


@pytest.mark.parametrize(("version", "verdict"), [
    ("Linux version 5.15.153.1-microsoft-standard-WSL2 (root@1ff1) #1 SMP", "WSL 2"),
    ("Linux version 4.4.0-19041-Microsoft (Microsoft@Microsoft.com) #1237", "WSL 1"),
    ("Linux version 6.8.0-31-generic (buildd@lcy02-amd64-080) #31-Ubuntu SMP", "no"),
])
def test_wsl_from_a_captured_proc_version(tmp_path, version, verdict):
    path = write_tree(tmp_path, {"version": version + "\n"}) / "version"
    assert doctor.wsl_check(path) == doctor.Check("WSL", verdict, True)


def test_root_check_reads_a_captured_status_of_a_limited_root(tmp_path):
    # A root shell in an unprivileged docker container: uid 0, docker's default capabilities.
    status = write_tree(tmp_path, {"status": "Name:\tsh\nUid:\t0\t0\t0\t0\n"
                                             "CapEff:\t00000000a80425fb\n"}) / "status"
    check = doctor.root_check(status)
    assert check.value == "uid 0, CapEff 00000000a80425fb (no CAP_NET_ADMIN, CAP_SYS_ADMIN)"
    assert not check.ok


def test_kernel_release_from_a_captured_file(tmp_path):
    osrelease = write_tree(tmp_path, {"osrelease": "6.8.0-31-generic\n"}) / "osrelease"
    assert doctor.kernel_check(osrelease) == doctor.Check("kernel", "6.8.0-31-generic", True)


def test_nft_missing_from_path_is_a_problem_with_its_remedy(tmp_path):
    for tool in ("busybox", "gcc"):
        (tmp_path / tool).symlink_to(shutil.which(tool))
    checks = checks_of(run_doctor(PATH=str(tmp_path)))
    assert failed(checks) == ["nftables"]
    assert checks["nftables"]["remedy"] == "install it: apt-get install nftables"


def test_a_subnet_the_host_already_routes_is_a_problem_naming_the_route():
    routes = json.loads(subprocess.run(["ip", "-j", "-4", "route"], capture_output=True,
                                       text=True, check=True).stdout)
    [taken, device] = next([route["dst"], route["dev"]] for route in routes
                           if "/" in route["dst"] and route["dev"] != "labkit0")
    checks = checks_of(run_doctor(LABKIT_SUBNET=taken))
    assert checks["subnet"]["ok"] is False
    assert checks["subnet"]["value"] == f"{taken} overlaps {taken} dev {device}"
    assert "LABKIT_SUBNET" in checks["subnet"]["remedy"]
    assert checks_of(run_doctor())["subnet"]["ok"] is True


@pytest.mark.parametrize(("subnet", "says"), [("banana", "is not an IPv4 subnet"),
                                               ("10.87.0.0/30", "a prefix from /16 to /29")])
def test_an_unusable_subnet_is_a_problem_that_says_why(subnet, says):
    check = checks_of(run_doctor(LABKIT_SUBNET=subnet))["subnet"]
    assert check["ok"] is False and says in check["remedy"]
