"""What the container tests share: the CLI in a fresh process, a picture of the store, and a
clean-up that removes every container a test made, whatever became of the test."""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from labkit.engine import containers, store
from labkit.errors import LabError
from tests.conftest import LABKIT


def labkit(*args: str, input: str | None = None, timeout: float = 120,
           ) -> subprocess.CompletedProcess:
    """``labkit ARGS`` in a fresh process, on the session's store; its output as text."""
    return subprocess.run([LABKIT, *args], input=input or "", capture_output=True, text=True,
                          timeout=timeout)


def read_until(process: subprocess.Popen, text: bytes, timeout: float = 60) -> bytes:
    """Read ``process``'s stdout (a binary pipe) until ``text`` has come; fail, rather than
    wait forever, if it does not."""
    output = b""
    deadline = time.monotonic() + timeout
    while text not in output:
        left = deadline - time.monotonic()
        assert left > 0, f"no {text!r} within {timeout} s, only {output!r}"
        if select.select([process.stdout], [], [], left)[0]:
            chunk = os.read(process.stdout.fileno(), 65536)
            assert chunk, f"the output ended before {text!r}: {output!r}"
            output += chunk
    return output


def assert_one_line(result: subprocess.CompletedProcess, exit_code: int, *words: str) -> None:
    """The command failed with ``exit_code`` and said why in one line, naming ``words``."""
    assert result.returncode == exit_code, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("labkit: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def store_files() -> dict[str, tuple[int, int]]:
    """Every path in the store with its mode and size: equal before and after, nothing moved."""
    root = store.home()
    return {str(path.relative_to(root)): (path.lstat().st_mode, path.lstat().st_size)
            for path in sorted(root.rglob("*"))}


def container_dirs() -> set[str]:
    return set(os.listdir(store.home() / "containers"))


@contextmanager
def removing_new_containers() -> Iterator[None]:
    """Remove (``rm -f``) every container that appears in the store during the block."""
    before = set(store.reading().container_ids())
    try:
        yield
    finally:
        for container_id in set(store.reading().container_ids()) - before:
            try:
                containers.rm(container_id, force=True)
            except LabError:  # it removed itself meanwhile (--rm)
                continue
