"""The whole course under nbval: how long each notebook takes, and all of them together.

It runs the notebooks' tests as CI does (``pytest notebooks``, every cell executed, the host
guard around each notebook) and collects the ``notebook time:`` lines the repository's
conftest.py prints for each. Target: the whole course in under 90 s on two cores.

    make -C benchmarks course
    .venv/bin/python -m benchmarks.course
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import common

REPO = Path(__file__).resolve().parent.parent
TIME_LINE = re.compile(r"^notebook time: (?P<notebook>\S+) (?P<seconds>[\d.]+) s$", re.MULTILINE)
TARGET_SECONDS = 90


def run_course() -> tuple[list[tuple[str, float]], float, str]:
    """Each notebook's seconds, the whole run's wall time, and pytest's closing line."""
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "notebooks", "-p", "no:cacheprovider",
                           "-q"], cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(f"the notebooks failed, so their times mean nothing:\n{done.stdout}")
    times = [(match["notebook"], float(match["seconds"]))
             for match in TIME_LINE.finditer(done.stdout)]
    return times, wall, done.stdout.strip().splitlines()[-1]


def summary(times: list[tuple[str, float]], wall: float, closing: str) -> str:
    total = sum(seconds for _, seconds in times)
    rows = [[notebook, f"{seconds:.1f}"] for notebook, seconds in times]
    rows.append(["**all notebooks**", f"**{total:.1f}**"])
    verdict = "met" if wall < TARGET_SECONDS else "missed"
    return "\n\n".join([
        common.markdown(["notebook", "seconds under nbval"], rows),
        f"- pytest's whole run, kernels and collection included: {wall:.1f} s ({closing})\n"
        f"- the whole course under {TARGET_SECONDS} s on two cores: {verdict}",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.course",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=common.RESULTS, help="where results go")
    args = parser.parse_args(argv)
    text = summary(*run_course())
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "course.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
