"""Lesson 05's instrument: a merged view of overlay layers, for one command, from a notebook.

A notebook's kernel must never mount (docs/safety.md rule 1), so to show what an overlay makes
of some layers, the lesson starts this module as a helper process. The helper

1. moves into a new mount namespace, made private at once, and a new PID namespace;
2. mounts the overlay there (``steps.overlay.mounted``, which also claims upper and work);
3. runs the command in the merged view as PID 1 of that PID namespace, so that nothing it
   starts can outlive the mount;
4. unmounts, clears the work directory, and exits with the command's code, or with 125 and one
   ``labkit: ...`` line on stderr when the lab refuses the overlay.

The mount is seen only by the command; the host's mount table never holds it, even for a
moment, and if the helper is killed the namespace and its mount die with it.

    done = merged_view.run([d1, d2], upper, work, target, ["ls"])   # d1 on top of d2
    done.stdout
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from labkit.errors import LAB_ERROR, LabError
from labkit.kernel import syscalls
from labkit.kernel.process import shell_code
from labkit.runtime.steps.mounts import make_mounts_private
from labkit.runtime.steps.overlay import Overlay, Paths, mounted


def helper_argv(lowers: Paths, upper: str | Path, work: str | Path, target: str | Path,
                command: Sequence[str]) -> list[str]:
    """The helper's command line, for a caller that starts it its own way (nested, under a pty)."""
    overlay = json.dumps(asdict(Overlay.of(lowers, upper, work, target)))
    return [sys.executable, "-I", "-m", __name__, overlay, *command]


def start(lowers: Paths, upper: str | Path, work: str | Path, target: str | Path,
          command: Sequence[str], **popen) -> subprocess.Popen:
    """Start the helper that mounts the overlay and runs ``command`` in the merged view.

    The command starts in ``target``, as PID 1 of a PID namespace of its own, so that nothing
    it starts can outlive the mount. The helper exits with the command's code, or with 125 and
    one ``labkit: ...`` line on stderr when the lab refuses the overlay.
    """
    return subprocess.Popen(helper_argv(lowers, upper, work, target, command), **popen)


def run(lowers: Paths, upper: str | Path, work: str | Path, target: str | Path,
        command: Sequence[str]) -> subprocess.CompletedProcess:
    """Run ``command`` in the merged view; return its exit code and output, as text.

    The overlay is mounted only for the command, in a namespace only the command sees. A
    refusal raises the LabError the helper reported.
    """
    done = subprocess.run(helper_argv(lowers, upper, work, target, command),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode == LAB_ERROR and done.stderr.startswith("labkit: "):
        raise LabError(done.stderr.removeprefix("labkit: ").strip())
    return done


def _die_with_helper() -> None:
    """In the command's process: die when the helper dies (kill -9). As PID 1 it takes every
    process of its PID namespace along, so the mount namespace ends with the helper."""
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)


def _run_as_init(command: Sequence[str], cwd: Path) -> int:
    try:
        code = subprocess.run(command, cwd=cwd, preexec_fn=_die_with_helper).returncode
    except OSError as error:
        raise LabError(f"cannot run {command[0]!r}: {error.strerror}") from None
    return shell_code(code)


def _helper(argv: list[str]) -> int:
    """``python -I -m labkit.lessons.merged_view OVERLAY_JSON COMMAND...``: start()'s process."""
    overlay, command = json.loads(argv[0]), argv[1:]
    try:
        syscalls.unshare(syscalls.CLONE_NEWNS | syscalls.CLONE_NEWPID)
        make_mounts_private()
        with mounted(**overlay) as view:
            return _run_as_init(command, view)
    except LabError as error:
        print(f"labkit: {error}", file=sys.stderr)
        return LAB_ERROR


if __name__ == "__main__":
    sys.exit(_helper(sys.argv[1:]))
