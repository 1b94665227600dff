"""The article's C samples: list them, build them with gcc, run them, replay their sessions.

Each sample in ``c_samples/`` is one small C program that shows one kernel feature. A lesson
builds it here (once: the binary is cached under the store, keyed by a hash of the source, the
shared headers and the compiler flags, so an edited sample is rebuilt and an unchanged one is
not), then runs it with a command, or replays an interactive session in its shell:

    samples.run("02_uts", ["hostname"])                    # -> Run: output and exit code
    samples.session("04_mount_proc", ["ps aux", "exit"])   # -> Transcript of the terminal

Every run has a timeout and leaves nothing running (``labkit.supervisor``). With
``sandbox=True`` the sample runs in a fake systemd host (``labkit.sandbox``), the only place
where ``04_mount_proc_naive`` may ever run.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from labkit import store, supervisor, terminal
from labkit.errors import LabError
from labkit.sandbox import shared_root
from labkit.supervisor import DEFAULT_TIMEOUT, Run
from labkit.terminal import Transcript

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "c_samples"
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror")
# Samples that would damage a systemd host (its / is shared): run only inside labkit.sandbox.
SANDBOX_ONLY = frozenset({"04_mount_proc_naive"})


class BuildError(LabError):
    """gcc refused a sample; the message carries what gcc said."""


def names(samples_dir: Path = SAMPLES_DIR) -> list[str]:
    """The samples, in lesson order (their names start with the lesson's number)."""
    return sorted(source.stem for source in samples_dir.glob("*.c"))


def build(name: str, *, samples_dir: Path = SAMPLES_DIR, static: bool = False) -> Path:
    """The path of the sample's binary, compiled now unless this exact build is cached.

    ``static=True`` links the C library into the binary (``gcc -static``), for a program that
    must run where the host's libc is not, such as a container's init.
    """
    source = _source(name, samples_dir)
    flags = (*CFLAGS, "-static") if static else CFLAGS
    binary = cache_dir() / f"{name}-{_fingerprint(source, flags)}"
    if not binary.exists():
        _compile(source, binary, flags)
    return binary


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


def command(args) -> int:
    """``labkit samples [list | build NAME | run NAME CMD...]``: the samples from a terminal.

    ``build`` prints the binary's path, to run it by hand with a terminal of your own; ``run``
    runs it with a command and a timeout, as a lesson does, and passes on its exit code.
    """
    if args.action == "list":
        print("\n".join(names()))
        return 0
    if args.name is None:
        raise LabError(f"say which sample to {args.action}: one of {', '.join(names())}")
    if args.action == "build":
        print(build(args.name))
        return 0
    result = run(args.name, args.command or None)
    print(result.stdout, end="")
    print(result.stderr, end="", file=sys.stderr)
    return result.exit_code


def cache_dir() -> Path:
    """Where built samples are kept: inside the store, so a test session brings its own."""
    return store.home() / "cache" / "samples"


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


def _fingerprint(source: Path, flags: tuple[str, ...]) -> str:
    """A hash of everything the binary depends on: flags, the source, the shared headers."""
    digest = hashlib.sha256(" ".join(flags).encode())
    for path in [source, *sorted(source.parent.glob("*.h"))]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _compile(source: Path, binary: Path, flags: tuple[str, ...]) -> None:
    """Compile in the store's tmp/ and rename into the cache, so that neither a failed nor a
    concurrent build ever leaves a half-written binary under the final name."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise LabError("gcc is not on PATH: install it (apt-get install gcc) and try again")
    with store.writing() as lab, lab.staging() as work:
        built = work / binary.name
        result = subprocess.run([gcc, *flags, "-o", str(built), str(source)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BuildError(f"gcc could not compile {source.name}:\n{result.stderr.strip()}")
        binary.parent.mkdir(parents=True, exist_ok=True)
        built.rename(binary)
