"""The article's C samples: list them, build them with gcc, run them, replay their sessions.

Each sample in ``c_samples/`` is one small C program that shows one kernel feature. A lesson
builds it here (once: the binary is cached under the store, keyed by a hash of the source, the
shared headers and the compiler flags, so an edited sample is rebuilt and an unchanged one is
not), then runs it with a command, or replays an interactive session in its shell:

    samples.run("02_uts", ["hostname"])                    # -> Run: output and exit code
    samples.session("04_mount_proc", ["ps aux", "exit"])   # -> Transcript of the terminal

Every run has a timeout and leaves nothing running (``labkit.lessons.supervisor``). With
``sandbox=True`` the sample runs in a fake systemd host (``labkit.lessons.sandbox``), the only place
where ``04_mount_proc_naive`` may ever run.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from labkit.engine import builds
from labkit.errors import LabError
from labkit.lessons import supervisor, terminal
from labkit.lessons.sandbox import shared_root
from labkit.lessons.supervisor import DEFAULT_TIMEOUT, Run
from labkit.lessons.terminal import Transcript

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "c_samples"
# Samples that would damage a systemd host (its / is shared): run only in labkit.lessons.sandbox.
SANDBOX_ONLY = frozenset({"04_mount_proc_naive"})


def names(samples_dir: Path = SAMPLES_DIR) -> list[str]:
    """The samples, in lesson order (their names start with the lesson's number)."""
    return sorted(source.stem for source in samples_dir.glob("*.c"))


def build(name: str, *, samples_dir: Path = SAMPLES_DIR, static: bool = False) -> Path:
    """The path of the sample's binary, compiled now unless this exact build is cached
    (``labkit.engine.builds``). ``static=True`` links the C library in, for a sample that runs
    inside a container's root filesystem, where the host's libc is not."""
    return builds.compiled(_source(name, samples_dir), static=static)


def run(name: str, command: list[str] | None = None, *, timeout: float = DEFAULT_TIMEOUT,
        sandbox: bool = False, samples_dir: Path = SAMPLES_DIR) -> Run:
    """Run the sample with ``command`` (its default: /bin/bash, which reads no input here)."""
    return supervisor.run(_argv(name, command, sandbox, samples_dir), timeout=timeout)


def session(name: str, typed: Iterable[str], command: list[str] | None = None, *,
            timeout: float = DEFAULT_TIMEOUT, sandbox: bool = False,
            samples_dir: Path = SAMPLES_DIR) -> Transcript:
    """Start the sample's shell on a terminal, type ``typed`` a line at a prompt, and return
    what the screen showed: the article's terminal session, replayed."""
    argv = _argv(name, command, sandbox, samples_dir)
    return terminal.replay(argv, typed, timeout=timeout)


def _argv(name: str, command: list[str] | None, sandbox: bool, samples_dir: Path) -> list[str]:
    if name in SANDBOX_ONLY and not sandbox:
        raise LabError(f"{name} leaks its /proc mount into a host whose / is shared: "
                       f"it only runs in the sandbox (sandbox=True)")
    argv = [str(build(name, samples_dir=samples_dir)), *(command or [])]
    return shared_root(argv) if sandbox else argv


def _source(name: str, samples_dir: Path) -> Path:
    known = names(samples_dir)
    if name not in known:
        raise LabError(f"no sample named {name!r}; the samples are: {', '.join(known)}")
    return samples_dir / f"{name}.c"
