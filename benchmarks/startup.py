"""Start-up time of one container: the lab's runtime beside crun, runc, bubblewrap and unshare.

Every contender starts busybox's ``/bin/true`` on the same root filesystem (the layer of the
store's busybox image) in new PID, UTS, mount, IPC and network namespaces, and the time is taken
from before the start to after the container has exited, as a user waits for it. The runs are
interleaved: each round runs every contender once, in a shuffled order, so a slow moment of the
machine (other tests on two cores) falls on all of them alike.

Before timing, each contender runs a probe that prints its namespaces from inside: the table
lists the ones it really created, not the ones it was asked for.

    make -C benchmarks startup                              # installs crun, runc, bwrap first
    .venv/bin/python -m benchmarks.startup --rounds 200     # the same, by hand, as root

It runs in a private mount namespace of its own (``private.py``), where the hybrid host's
cgroup2 mount is hidden so that crun agrees to run; everyone runs in that same namespace.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import common, oci, private, svg
from labkit.engine import store
from labkit.engine.builds import static_init
from labkit.runtime import api
from labkit.runtime.container import steps_for
from labkit.runtime.spawn import warm

REPO = Path(__file__).resolve().parent.parent
C_SAMPLE = REPO / "c_samples" / "bench" / "container.c"
TRUE = ["/bin/true"]
ENV = {"PATH": "/bin"}
KINDS = ("pid", "uts", "mnt", "ipc", "net")
PROBE = ["/bin/sh", "-c",
         f"for kind in {' '.join(KINDS)}; do echo $kind $(readlink /proc/self/ns/$kind); done"]
WARM_UP = 3
TOOLS = ("crun", "runc", "bwrap", "unshare", "gcc")
# What `labkit run` imports: the CLI, then (commands.run) the engine's containers and relay,
# which bring the monitor, the store and the runtime with its steps.
RUN_IMPORTS = ("import labkit.cli, labkit.commands, labkit.engine.containers, "
               "labkit.engine.relay, labkit.engine.builds, labkit.runtime.container, "
               "labkit.runtime.spawn.forked")


class BenchError(Exception):
    """A contender failed: a benchmark of failing runs would be meaningless."""


def _nothing() -> None:
    pass


@dataclass
class Contender:
    """One way to start a container: an outside program (``argv``) or a Python call."""

    key: str
    label: str
    does: str
    argv: Callable[[list[str]], list[str]] | None = None
    call: Callable[[list[str]], str] | None = None
    tidy: Callable[[], None] = _nothing  # after each run, untimed
    probed: bool = True
    samples: list[float] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    def output(self, command: list[str]) -> str:
        """Run ``command`` in a new container; what it printed."""
        try:
            if self.call:
                return self.call(command)
            result = subprocess.run(self.argv(command), capture_output=True, text=True,
                                    check=False)
            if result.returncode != 0:
                raise BenchError(f"{self.label} exited {result.returncode}: {result.stderr}")
            return result.stdout
        finally:
            self.tidy()

    def time_once(self) -> float:
        """Milliseconds from the start of ``/bin/true`` in a new container to its end."""
        argv = self.argv(TRUE) if self.argv else None
        began = time.perf_counter()
        if argv:
            _spawn_and_wait(argv)
        else:
            self.call(TRUE)
        elapsed = time.perf_counter() - began
        self.tidy()
        return elapsed * 1000


def _spawn_and_wait(argv: list[str]) -> None:
    """Start ``argv`` as cheaply as Python can (posix_spawn: vfork, then exec), output to
    /dev/null, and wait for it."""
    quiet = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=quiet)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise BenchError(f"{' '.join(argv)} exited {os.waitstatus_to_exitcode(status)} "
                         f"while being timed: run it by hand to see why")


# ---------------------------------------------------------------------------------------------
# The contenders


class Lab:
    """The benchmark's own store, with the busybox image every contender starts from."""

    def __init__(self, scratch: Path):
        os.environ["LABKIT_HOME"] = str(scratch / "store")
        subprocess.run([common.LABKIT, "image", "build-base"], check=True, capture_output=True)
        lab = store.reading()
        [layer] = lab.image("busybox").layers
        self.rootfs = lab.layer_tree(layer)
        self._containers = scratch / "containers"
        self._count = itertools.count()

    def steps(self) -> list:
        """A full container's steps (``steps_for``), on fresh upper and work directories."""
        directory = self._containers / str(next(self._count))
        (directory / "upper").mkdir(parents=True)
        (directory / "work").mkdir()
        return steps_for([self.rootfs], directory / "upper", directory / "work",
                         hostname="container", init=static_init())

    def tidy(self) -> None:
        shutil.rmtree(self._containers, ignore_errors=True)


def _python_call(run: Callable) -> Callable[[list[str]], str]:
    def call(command: list[str]) -> str:
        result = run(command)
        if result.exit_code != 0:
            raise BenchError(f"exit {result.exit_code}: {result.error or result.stderr}")
        return result.stdout
    return call


def contenders(lab: Lab, launcher: warm.Launcher, c_binary: Path,
               scratch: Path) -> list[Contender]:
    ids = itertools.count()
    bundles: dict[tuple[str, ...], Path] = {}

    def bundle(command: list[str]) -> str:
        if tuple(command) not in bundles:
            bundles[tuple(command)] = oci.bundle(scratch / f"bundle{len(bundles)}", lab.rootfs,
                                                 command)
        return str(bundles[tuple(command)])

    def oci_runtime(*runtime: str) -> Callable[[list[str]], list[str]]:
        state = scratch / f"{runtime[0]}-state"
        return lambda command: [*runtime, "--root", str(state), "run", "--bundle",
                                bundle(command), f"bench{next(ids)}"]

    rootfs = str(lab.rootfs)
    full = ("overlay (image + a fresh upper), minimal /dev, read-only static init as PID 1, "
            "/proc masks, /sys read-only, pivot_root, docker's capabilities, no_new_privs")
    oci_config = ("`runc spec`'s default config: /proc, tmpfs /dev with pts, shm, mqueue, /sys "
                  "read-only, masked paths, capabilities, no_new_privs")
    return [
        Contender("labkit-run", "labkit run --rm busybox /bin/true", f"the CLI: {full}; a "
                  "store entry and a monitor process; --rm removes it; --network bridge (the "
                  "default): a veth pair on labkit0, a leased address, /etc/hosts written",
                  argv=lambda command: [common.LABKIT, "run", "--rm", "busybox", *command]),
        Contender("labkit-run-none", "labkit run --rm --network none busybox /bin/true",
                  f"the CLI: {full}; a store entry and a monitor process; --rm removes it; "
                  "--network none: lo only, as before lesson 07",
                  argv=lambda command: [common.LABKIT, "run", "--rm", "--network", "none",
                                        "busybox", *command]),
        Contender("warm", "labkit warm launcher (Python API)", f"Launcher().run(): {full}; "
                  "the launcher is forked from a warm helper",
                  call=_python_call(lambda command: launcher.run(command, lab.steps(), env=ENV)),
                  tidy=lab.tidy),
        Contender("warm-bare", "labkit warm launcher, no step (reference)", "no namespace, "
                  "no mount: the helper's hand-over, two forks, the Python init, the report "
                  "pipe; the host's /bin/true", call=_python_call(
                      lambda command: launcher.run(command, [], env=ENV)), probed=False),
        Contender("api-run", "labkit api.run (cold launcher)", f"api.run(): {full}; a fresh "
                  "interpreter per container", call=_python_call(
                      lambda command: api.run(command, lab.steps(), env=ENV)), tidy=lab.tidy),
        Contender("c-sample", "C sample c_samples/bench/container.c", "clone(), private /, "
                  "hostname, lo up, read-only bind of the rootfs, /proc, pivot_root; no more",
                  argv=lambda command: [str(c_binary), rootfs, *command]),
        Contender("unshare", "unshare (util-linux)", "unshare --fork --mount-proc --root: "
                  "/proc, chroot (not pivot_root); lo stays down",
                  argv=lambda command: ["unshare", "--pid", "--fork", "--uts", "--ipc", "--net",
                                        "--mount", "--mount-proc", f"--root={rootfs}",
                                        *command]),
        Contender("bwrap", "bwrap (bubblewrap)", "read-only bind of the rootfs, /proc, minimal "
                  "/dev, hostname, lo up, pivot_root",
                  argv=lambda command: ["bwrap", "--unshare-pid", "--unshare-uts",
                                        "--unshare-ipc", "--unshare-net", "--ro-bind", rootfs,
                                        "/", "--proc", "/proc", "--dev", "/dev", "--hostname",
                                        "container", *command]),
        Contender("crun", "crun run (cgroup v1)", f"{oci_config}; a cgroup v1 per container "
                  "(the host's cgroup2 mount hidden: crun refuses hybrid cgroups)",
                  argv=oci_runtime("crun")),
        Contender("crun-no-cgroups", "crun run (cgroups disabled)", f"{oci_config}; "
                  "--cgroup-manager=disabled: no cgroup at all",
                  argv=oci_runtime("crun", "--cgroup-manager=disabled")),
        Contender("runc", "runc run (cgroup v1)", f"{oci_config}; a cgroup v1 per container",
                  argv=oci_runtime("runc")),
        Contender("python", "python3 -I -S -c pass (reference)", "no container: the "
                  "interpreter's own start-up, which any cold Python path pays first",
                  argv=lambda command: [sys.executable, "-I", "-S", "-c", "pass"],
                  probed=False),
        Contender("imports", "python3 -c 'import ...' (`labkit run`'s imports, reference)",
                  "no container: the start-up and imports of `labkit run` (the venv's site, "
                  "argparse, the modules its handler loads and the standard library they "
                  "use), no work", argv=lambda command: [sys.executable, "-c", RUN_IMPORTS],
                  probed=False),
    ]


# ---------------------------------------------------------------------------------------------
# Measuring


def _own_namespaces() -> dict[str, str]:
    return {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in KINDS}


def probe(contender: Contender) -> list[str]:
    """The namespaces a contender's container is in and the benchmark is not."""
    own = _own_namespaces()
    seen = dict(line.split() for line in contender.output(PROBE).splitlines())
    return [kind for kind in KINDS if seen.get(kind, own[kind]) != own[kind]]


def measure(contenders: list[Contender], rounds: int, seed: int = 8) -> None:
    order = list(contenders)
    shuffle = random.Random(seed).shuffle
    for contender in contenders:
        for _ in range(WARM_UP):
            contender.time_once()
    gc.disable()  # no collection in the middle of a timed start
    try:
        for done in range(1, rounds + 1):
            shuffle(order)
            for contender in order:
                contender.samples.append(contender.time_once())
            gc.collect()
            if done % 10 == 0 or done == rounds:
                common.say(f"  round {done}/{rounds}")
    finally:
        gc.enable()


# ---------------------------------------------------------------------------------------------
# Reporting


def rows(contenders: list[Contender]) -> list[dict]:
    medians = {c.key: common.median(c.samples) for c in contenders}
    return [{"key": c.key, "label": c.label, "does": c.does,
             "namespaces": " ".join(c.namespaces) if c.probed else "none",
             "median_ms": medians[c.key], "p90_ms": common.p90(c.samples),
             "vs_runc": _ratio(medians, c.key, "runc"),
             "vs_crun": _ratio(medians, c.key, "crun"),
             "samples_ms": c.samples} for c in contenders]


def _ratio(medians: dict[str, float], key: str, reference: str) -> float | None:
    """``key``'s median over ``reference``'s; None when the reference was left out."""
    return medians[key] / medians[reference] if reference in medians else None


def table(results: list[dict]) -> str:
    """The results, one row per contender; what each does is in README.md and the JSON."""
    def times(ratio: float | None) -> str:
        return "" if ratio is None else f"{ratio:.2f}x"

    lines = [[row["label"], row["namespaces"], f"{row['median_ms']:.1f}",
              f"{row['p90_ms']:.1f}", times(row["vs_runc"]), times(row["vs_crun"])]
             for row in results]
    return common.markdown(["command", "new namespaces", "median ms", "p90 ms", "vs runc",
                            "vs crun (cgroup v1)"], lines)


def targets(results: list[dict]) -> list[str]:
    """The issue's targets, met or not: reported here, never asserted."""
    medians = {row["key"]: row["median_ms"] for row in results}
    found = []
    for key, reference, most, target in (
            ("labkit-run", "runc", 0.8, "cold `labkit run` at most 0.8x runc's median"),
            ("warm", "c-sample", 2.0, "warm launcher at most 2x the C sample")):
        if key in medians and reference in medians:
            ratio = medians[key] / medians[reference]
            found.append(f"{target}: {ratio:.2f}x, {'met' if ratio <= most else 'missed'}")
        else:
            found.append(f"{target}: not measured in this run")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed runs of each (30)")
    parser.add_argument("--skip", action="append", default=[], metavar="KEY",
                        help="leave a contender out, such as labkit-run")
    parser.add_argument("--out", type=Path, default=common.RESULTS, help="where results go")
    args = parser.parse_args(argv)
    missing_tools = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing_tools:
        common.say(f"missing: {' '.join(missing_tools)}: run `make -C benchmarks install`")
        return 1
    private.enter("benchmarks.startup", sys.argv[1:] if argv is None else argv)
    facts = common.machine()  # before the cgroup2 mount is hidden: the host as it is
    notes = []
    if private.hide_cgroup2():
        notes.append(f"every contender ran in one private mount namespace where {private.UNIFIED}"
                     f" (the hybrid host's cgroup2) was unmounted, so that crun would run")
    chosen, loads = time_all(args.rounds, args.skip)
    results = rows(chosen)
    notes[:0] = targets(results)
    notes.append(f"the machine's load average (1 min) was {loads[0]:.1f} before the timed "
                 f"rounds and {loads[1]:.1f} after, on {os.cpu_count()} cpus: other work ran "
                 f"beside the benchmark")
    write(args.out, results, notes, args.rounds, facts)
    return 0


def time_all(rounds: int, skip: list[str]) -> tuple[list[Contender], tuple[float, float]]:
    """Set every contender up, probe its namespaces, time it; the load average before and
    after the timed rounds."""
    with tempfile.TemporaryDirectory(prefix="labkit-bench-") as scratch, \
            warm.Launcher() as launcher:
        scratch = Path(scratch)
        lab = Lab(scratch)
        c_binary = scratch / "container"
        subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(c_binary),
                        str(C_SAMPLE)], check=True)
        chosen = [c for c in contenders(lab, launcher, c_binary, scratch) if c.key not in skip]
        for contender in chosen:
            if contender.probed:
                contender.namespaces = probe(contender)
        common.say(f"timing {len(chosen)} contenders, {rounds} interleaved rounds")
        before = os.getloadavg()[0]
        measure(chosen, rounds)
        return chosen, (before, os.getloadavg()[0])


def write(out: Path, results: list[dict], notes: list[str], rounds: int,
          facts: dict[str, str]) -> None:
    text = "\n\n".join([table(results), "\n".join(f"- {note}" for note in notes),
                        common.facts_table(facts)])
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "startup.md").write_text(f"{rounds} interleaved rounds\n\n{text}\n")
    (out / "startup.json").write_text(json.dumps(
        {"rounds": rounds, "machine": facts, "notes": notes, "rows": results}, indent=1))
    (out / "startup.svg").write_text(svg.bars(
        "Start /bin/true in a new container (busybox rootfs)",
        [(row["label"], row["median_ms"], row["p90_ms"]) for row in results], "ms",
        note=f"{rounds} interleaved rounds, {facts['cpus (nproc)']} cpus"))


if __name__ == "__main__":
    sys.exit(main())
