"""C programs compiled once and kept in the store: the lessons' samples, the containers' init.

A binary is cached under a name that carries a hash of everything it is made from (the
compiler's flags, the source, the headers beside it), so an edited source is built again and an
unchanged one never is. It is compiled in the store's ``tmp/`` and renamed into the cache, so
that neither a failed nor a concurrent build ever leaves a half-written binary under that name.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from labkit.engine import store
from labkit.errors import LabError
from labkit.runtime.init import STATIC_INIT_SOURCE

CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror")


class BuildError(LabError):
    """gcc refused a program; the message carries what gcc said."""


def compiled(source: Path, *, static: bool = False) -> Path:
    """The path of ``source``'s binary, compiled now unless this exact build is cached.

    ``static=True`` links the C library into the binary (``gcc -static``), for a program that
    must run where the host's libc is not, such as a container's init.
    """
    flags = (*CFLAGS, "-static") if static else CFLAGS
    binary = cache_dir() / f"{source.stem}-{_fingerprint(source, flags)}"
    if not binary.exists():
        _compile(source, binary, flags)
    return binary


def static_init() -> Path:
    """The containers' PID 1 (``runtime/init.c``), linked statically: it runs in any image.

    Building it the first time takes the store's lock, so call this *before* taking the lock
    yourself: flock() does not nest, and a second lock on the same store in one process waits
    forever.
    """
    return compiled(STATIC_INIT_SOURCE, static=True)


def cache_dir() -> Path:
    """Where built programs are kept: inside the store, so a test session brings its own."""
    return store.home() / "cache" / "samples"


def _fingerprint(source: Path, flags: tuple[str, ...]) -> str:
    """A hash of everything the binary depends on: flags, the source, the shared headers."""
    digest = hashlib.sha256(" ".join(flags).encode())
    for path in [source, *sorted(source.parent.glob("*.h"))]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _compile(source: Path, binary: Path, flags: tuple[str, ...]) -> None:
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
