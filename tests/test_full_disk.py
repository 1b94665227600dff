"""A store whose disk fills up: one clear line, a monitor that survives, a store that stays whole.

The store lives on a 12 MB tmpfs, mounted in a private mount namespace of the test's own (the
host never sees it). A container fills it from inside (its upper is in the store), and then
the lab has to live with a disk that takes nothing more.
"""

from __future__ import annotations

import os
import subprocess

from tests.conftest import LABKIT

FILL_THEN_USE = """
mount -t tmpfs -o size=12m lab-full "$1" && export LABKIT_HOME="$1/store" || exit 99
"$LABKIT" image build-base > /dev/null || exit 98
say() { echo "== $1 exit=$2"; }
"$LABKIT" run --name filler busybox sh -c 'dd if=/dev/zero of=/big bs=1M count=20; exit 3'
say filler $?
"$LABKIT" run busybox true; say run-when-full $?
"$LABKIT" ps -a > /dev/null; say ps $?
"$LABKIT" rm -f filler > /dev/null; say rm $?
"$LABKIT" gc > /dev/null; say gc $?
"$LABKIT" run --rm busybox echo room again; say run-after $?
ls "$LABKIT_HOME/containers" "$LABKIT_HOME/tmp"
"""


def test_a_full_store_gives_one_line_and_the_lab_carries_on(tmp_path):
    (tmp_path / "mnt").mkdir()
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                           FILL_THEN_USE, "sandbox", str(tmp_path / "mnt")],
                          env={**os.environ, "LABKIT": LABKIT}, capture_output=True, text=True,
                          timeout=120)
    out, err = done.stdout, done.stderr
    assert "Traceback" not in out + err, err
    assert "== filler exit=3" in out, err  # its monitor lived to pass on the command's code
    assert "== run-when-full exit=125" in out
    full = [line for line in err.splitlines() if "is full" in line]
    assert full == [f"labkit: the disk of the store LABKIT_HOME={tmp_path}/mnt/store is full: "
                    f"remove containers and images you no longer need (labkit rm, labkit rmi), "
                    f"or give it more room"]
    for step in ("ps", "rm", "gc", "run-after"):
        assert f"== {step} exit=0" in out, (step, out, err)
    assert "room again\n" in out
    assert out.rstrip().endswith(f"{tmp_path}/mnt/store/tmp:"), out  # no container, no debris
