"""What ``labkit commit`` costs: the bytes a container changed, not the size of its image.

1. **A 1 KB change in an image of about 100 MB**: a commit against a ``cp -a`` snapshot of the
   container's merged root filesystem, which is what a runtime without layers would have to
   copy. Target: the commit costs at most 1/20 of the snapshot.
2. **Throughput on a 50 MB change**: a commit against GNU tar archiving the same upper layer,
   in MB/s.

Each commit is timed twice, on two containers that made the same kind of change: through
``labkit commit``, a fresh interpreter that pays Python's start-up and imports first, and
through ``containers.commit()`` called in this process, which pays only the commit's own work.

    make -C benchmarks commit
    .venv/bin/python -m benchmarks.commit_cost --repeats 5     # the same, by hand, as root

It runs in a private mount namespace of its own (``private.py``): the merged view that ``cp -a``
copies is an overlay mounted there, read-only, and gone with it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import common, private
from labkit.engine import containers, store

COMMIT = "labkit commit (a fresh interpreter)"
API = "containers.commit() (in this process)"
SNAPSHOT = "cp -a of the merged rootfs"
TAR = "GNU tar of the upper layer"
BIG_IMAGE = "bench-big:latest"
MAKE_100_MB = "mkdir /data && for i in $(seq 100); do head -c 1048576 /dev/urandom > /data/$i; done"
CHANGE_1_KB = "head -c 1024 /dev/urandom > /data/changed"
CHANGE_50_MB = "mkdir /new && for i in $(seq 50); do head -c 1048576 /dev/urandom > /new/$i; done"


def labkit(*args: str) -> str:
    done = subprocess.run([common.LABKIT, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"labkit {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def timed(action: Callable, *args, **options) -> float:
    """Milliseconds that ``action(*args, **options)`` took."""
    began = time.perf_counter()
    action(*args, **options)
    return (time.perf_counter() - began) * 1000


def changed_container(name: str, image: str, change: str) -> tuple[Path, list[Path]]:
    """Run ``change`` in a new container ``name``, left stopped; its upper layer and its
    image's layers (top first)."""
    labkit("run", "--name", name, image, "sh", "-c", change)
    lab = store.reading()
    container = lab.find_container(name)
    layers = [lab.layer_tree(digest)
              for digest in reversed(lab.container_config(container).layers)]
    return lab.container_dir(container) / "upper", layers


def snapshot(upper: Path, layers: list[Path], scratch: Path) -> None:
    """``cp -a`` of the merged root filesystem: the upper over the image's layers, mounted
    read-only (an overlay of lower layers only) in this private mount namespace."""
    merged, copy = scratch / "merged", scratch / "copy"
    merged.mkdir()
    lowers = ":".join(str(path) for path in [upper, *layers])
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"ro,lowerdir={lowers}",
                    str(merged)], check=True)
    try:
        subprocess.run(["cp", "-a", f"{merged}/.", str(copy)], check=True)
    finally:
        subprocess.run(["umount", str(merged)], check=True)
        merged.rmdir()
        shutil.rmtree(copy, ignore_errors=True)


def commits(name: str, image: str, change: str, times: dict[str, list[float]],
            reference: str, action: Callable[[Path, list[Path]], None]) -> None:
    """Two containers of ``image`` make ``change``; time the ``reference`` ``action`` on the
    first one's layers, then commit it with the CLI, and the second one through the API."""
    upper, layers = changed_container(f"{name}-cli", image, change)
    changed_container(f"{name}-api", image, change)
    times[reference].append(timed(action, upper, layers))
    times[COMMIT].append(timed(labkit, "commit", f"{name}-cli", f"bench-{name}:cli"))
    times[API].append(timed(containers.commit, f"{name}-api", f"bench-{name}:api"))


def small_change(repeats: int, scratch: Path) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {COMMIT: [], API: [], SNAPSHOT: []}

    def copy(upper: Path, layers: list[Path]) -> None:
        snapshot(upper, layers, scratch)

    for number in range(repeats):
        commits(f"small{number}", BIG_IMAGE, CHANGE_1_KB, times, SNAPSHOT, copy)
    return times


def big_change(repeats: int, scratch: Path) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {COMMIT: [], API: [], TAR: []}

    def archive(upper: Path, layers: list[Path]) -> None:
        subprocess.run(["tar", "-C", str(upper), "-cf", str(scratch / "upper.tar"), "."],
                       check=True)
        (scratch / "upper.tar").unlink()

    for number in range(repeats):
        commits(f"large{number}", "busybox", CHANGE_50_MB, times, TAR, archive)
    return times


def write(out: Path, text: str) -> None:
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "commit.md").write_text(text + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.commit_cost",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="commits of each kind (15)")
    parser.add_argument("--out", type=Path, default=common.RESULTS, help="where results go")
    args = parser.parse_args(argv)
    private.enter("benchmarks.commit_cost", sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="labkit-bench-") as scratch:
        scratch = Path(scratch)
        os.environ["LABKIT_HOME"] = str(scratch / "store")
        labkit("image", "build-base")
        labkit("run", "--name", "big", "busybox", "sh", "-c", MAKE_100_MB)
        labkit("commit", "big", BIG_IMAGE)
        containers.commit("big", "bench-warm-up")  # the API's imports, before any timing
        small = small_change(args.repeats, scratch)
        large = big_change(args.repeats, scratch)
    write(args.out, summary(small, large, args.repeats))
    return 0


def summary(small: dict[str, list[float]], large: dict[str, list[float]], repeats: int) -> str:
    rows = [["1 KB changed in a 100 MB image", key, f"{common.median(times):.0f}",
             f"{common.p90(times):.0f}", ""] for key, times in small.items()]
    rows += [["50 MB changed", key, f"{common.median(times):.0f}", f"{common.p90(times):.0f}",
              f"{50 * 1000 / common.median(times):.0f} MB/s"] for key, times in large.items()]
    targets = []
    for key in (API, COMMIT):
        ratio = common.median(small[key]) / common.median(small[SNAPSHOT])
        targets.append(f"- commit of a 1 KB change at most 1/20 of the `cp -a` snapshot, "
                       f"{key}: 1/{1 / ratio:.0f}, {'met' if ratio <= 1 / 20 else 'missed'}")
    return "\n\n".join([f"{repeats} commits of each kind", common.markdown(
        ["change", "command", "median ms", "p90 ms", "throughput"], rows), "\n".join(targets)])


if __name__ == "__main__":
    sys.exit(main())
