"""The volume mount-point race (runc's CVE-2021-30465): a mount point must be found and made
inside the rootfs by descriptor, however a volume shared with another container changes.

Two volumes, one inside the other: a host directory ``shared`` at ``/data``, and ``src`` at
``/data/sub/new``, so the runtime must make ``new`` in ``shared/sub``. Meanwhile another
process, standing for a second container that shares ``shared``, swaps ``sub`` with a symlink
to a host directory, as fast as it can (renameat2 with RENAME_EXCHANGE). A runtime that made
``new`` by a path string, resolved from the host's root, made it in that host directory in 14
starts of 40; one that resolves in the rootfs by descriptor never does.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from labkit.engine import store
from labkit.engine.builds import static_init
from labkit.runtime.container import steps_for
from labkit.runtime.spawn import warm

SWAPPER = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
sub, link = sys.argv[1].encode(), sys.argv[2].encode()
print("swapping", flush=True)
while True:
    libc.renameat2(AT_FDCWD, sub, AT_FDCWD, link, RENAME_EXCHANGE)
"""
STARTS = 40


@pytest.fixture
def swapping(tmp_path):
    """``shared/sub`` and ``shared/link`` (to the host's ``victim``) swapped without pause."""
    shared, victim = tmp_path / "shared", tmp_path / "victim"
    (shared / "sub").mkdir(parents=True)
    victim.mkdir()
    (shared / "link").symlink_to(victim)
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(shared / "sub"),
                                str(shared / "link")], stdout=subprocess.PIPE, text=True)
    assert swapper.stdout.readline() == "swapping\n"
    yield shared, victim
    swapper.kill()
    swapper.wait()


def test_a_swapped_volume_directory_never_leads_a_mount_point_out_of_the_rootfs(
        base_image, tmp_path, swapping):
    shared, victim = swapping
    (tmp_path / "src").mkdir()
    lab = store.reading()
    layers = [lab.layer_tree(digest) for digest in reversed(lab.image(base_image).layers)]
    started = 0
    with warm.Launcher() as launcher:
        for number in range(STARTS):
            box = tmp_path / "boxes" / str(number)
            for name in ("upper", "work"):
                (box / name).mkdir(parents=True)
            steps = steps_for(layers, box / "upper", box / "work", "racer", init=static_init(),
                              volumes=[(shared, "/data", False),
                                       (tmp_path / "src", "/data/sub/new", False)])
            result = launcher.run(["true"], steps, env={"PATH": "/bin"}, timeout=30)
            started += result.exit_code == 0
    assert list(victim.iterdir()) == [], "a mount point was made on the host, outside the rootfs"
    assert started > 0  # the race lets some starts fail, inside the rootfs; not every one
