"""What the benchmarks share: the lab's CLI, robust statistics, the machine, markdown tables."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

# The CLI beside the interpreter running the benchmark: the venv's, as a learner types it.
LABKIT = str(Path(sys.executable).with_name("labkit"))
RESULTS = Path(__file__).resolve().parent / "results"


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def p90(samples: Sequence[float]) -> float:
    """The 90th percentile: nine runs in ten were at least this fast."""
    return statistics.quantiles(samples, n=10, method="inclusive")[8]


def machine() -> dict[str, str]:
    """The facts that decide how fast a container starts here, for the results' heading."""
    facts = {
        "cpus (nproc)": str(os.cpu_count()),
        "cpu model": _cpu_model(),
        "memory": _memory(),
        "kernel": platform.release(),
        "system": _os_release(),
        "python": platform.python_version(),
        "cgroups": _cgroup_mode(),
    }
    for tool, flag in (("crun", "--version"), ("runc", "--version"), ("bwrap", "--version"),
                       ("unshare", "--version"), ("gcc", "--version")):
        facts[tool] = _first_line([tool, flag])
    return facts


def markdown(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def facts_table(facts: dict[str, str]) -> str:
    return markdown(["machine", ""], list(facts.items()))


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory() -> str:
    with open("/proc/meminfo") as meminfo:
        kilobytes = int(meminfo.readline().split()[1])
    return f"{kilobytes / 1024 / 1024:.1f} GiB"


def _os_release() -> str:
    try:
        with open("/etc/os-release") as release:
            fields = dict(line.rstrip("\n").split("=", 1) for line in release if "=" in line)
        return fields.get("PRETTY_NAME", "unknown").strip('"')
    except FileNotFoundError:
        return "unknown"


def _cgroup_mode() -> str:
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "v2 (unified)"
    if os.path.ismount("/sys/fs/cgroup/unified"):
        return "v1 hybrid (v1 controllers, and cgroup2 at /sys/fs/cgroup/unified)"
    return "v1 (legacy)"


def _first_line(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "not installed"
    output = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    return output.splitlines()[0] if output else "unknown"
