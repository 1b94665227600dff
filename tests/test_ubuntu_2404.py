"""The lab on its reference VM, Ubuntu 24.04, checked where that VM differs from this machine.

Ubuntu 24.04 boots with systemd, which makes ``/`` shared; it mounts cgroup v2 only; and AppArmor
restricts unprivileged user namespaces. ``labkit doctor``'s checks take the files they read as
parameters, so they judge the VM's files in tests/data/ubuntu-24.04 (its README says where they
come from). The runtime's answer to a shared ``/`` is tested for real: a full container from the
busybox image, started inside a sandbox whose ``/`` is rshared, leaves the sandbox's mount table
exactly as it found it, and sees only private mounts itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from labkit import doctor
from labkit.doctor import Check
from labkit.lessons.sandbox import shared_root

VM = Path(__file__).with_name("data") / "ubuntu-24.04"
MOUNTINFO = VM / "proc/self/mountinfo"


def test_doctor_judges_the_vm_s_files_fit_for_the_lab():
    checks = [doctor.root_check(VM / "proc/self/status"),
              doctor.kernel_check(VM / "proc/sys/kernel/osrelease"),
              doctor.cgroup_check(MOUNTINFO), doctor.propagation_check(MOUNTINFO),
              doctor.container_check(VM), doctor.wsl_check(VM / "proc/version"),
              doctor.userns_check(VM / "proc/sys")]
    assert checks == [
        Check("root", "uid 0, CapEff 000001ffffffffff", True),
        Check("kernel", "6.8.0-71-generic", True),
        Check("cgroups", "v2", True),
        Check("/ propagation", "shared", True),
        Check("container", "none detected", True),
        Check("WSL", "no", True),
        Check("unprivileged userns",
              "restricted (kernel.apparmor_restrict_unprivileged_userns=1)", True)]
    assert doctor.problems(checks) == []


def test_on_the_vm_the_store_can_hold_an_overlay_and_the_lessons_sit_on_the_shared_folder():
    assert doctor.filesystem_of(Path("/var/lib/labkit"), MOUNTINFO) == "ext4"
    assert doctor.filesystem_of(Path("/lab/notebooks"), MOUNTINFO) == "vboxsf"


def test_capture_sh_refreshes_exactly_the_files_the_tests_read():
    listed = re.search(r"FILES=\(\n(.*?)\n\)", (VM / "capture.sh").read_text(), re.DOTALL)
    assert listed
    held = {str(path.relative_to(VM)) for path in VM.rglob("*") if path.is_file()}
    assert set(listed.group(1).split()) == held - {"README.md", "SOURCE", "capture.sh"}


FULL_CONTAINER = """
import json, sys
from pathlib import Path

from labkit.engine import store
from labkit.runtime.api import run
from labkit.engine.builds import static_init
from labkit.runtime.container import steps_for

work = Path(sys.argv[1])
lab = store.reading()
layers = [lab.layer_tree(digest) for digest in reversed(lab.image("busybox").layers)]
for name in ("upper", "work"):
    (work / name).mkdir()
steps = steps_for(layers, work / "upper", work / "work", "ubuntu-vm", init=static_init())
before = Path("/proc/self/mountinfo").read_text()
result = run(["sh", "-c", "hostname; cat /proc/self/mountinfo"], steps, env={"PATH": "/bin"},
             timeout=60)
print(json.dumps({"sandbox": before, "after": Path("/proc/self/mountinfo").read_text(),
                  "exit": result.exit_code, "stdout": result.stdout, "stderr": result.stderr}))
"""


def _root_line(mountinfo: str) -> list[str]:
    [root] = [line.split() for line in mountinfo.splitlines() if line.split()[4] == "/"]
    return root


def test_a_full_container_under_an_rshared_root_keeps_its_mounts_to_itself(base_image, tmp_path):
    sandbox = subprocess.run(shared_root([sys.executable, "-I", "-c", FULL_CONTAINER,
                                          str(tmp_path)]),
                             capture_output=True, text=True, timeout=120)
    assert sandbox.returncode == 0, sandbox.stderr
    seen = json.loads(sandbox.stdout)
    assert any(field.startswith("shared:") for field in _root_line(seen["sandbox"]))
    assert (seen["exit"], seen["stderr"]) == (0, "")
    hostname, container_mounts = seen["stdout"].split("\n", 1)
    assert hostname == "ubuntu-vm"
    assert _root_line(container_mounts)[-3] == "overlay"
    assert "shared:" not in container_mounts  # every mount inside was made private first
    assert seen["after"] == seen["sandbox"]  # nothing propagated back to the "host"
