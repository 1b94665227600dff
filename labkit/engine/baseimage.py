"""The default base image, ``busybox``, built offline from the host's busybox-static.

One static binary is a whole userland: busybox behaves as the applet it was started as, so
``/bin/sh`` and ``/bin/ls`` are links to ``/bin/busybox``. Add the empty directories the runtime
mounts over (``/proc``, ``/sys``, ``/dev``, ``/tmp``) and the few files in ``/etc`` that programs
look for, and a container has a root filesystem without a package manager or a network.

The build is deterministic: it sets every mode and owner itself, and the layer's digest ignores
times. It is atomic: everything is made in the store's ``tmp/`` and appears by rename. And it is
idempotent: the image records what it was made from, and the same input again does nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from labkit.engine import store
from labkit.errors import LabError

BUSYBOX = Path("/bin/busybox")
REFERENCE = "busybox:latest"
ENV = ["PATH=/bin"]
CMD = ["/bin/sh"]

_DIRECTORIES = {"bin": 0o755, "dev": 0o755, "etc": 0o755, "proc": 0o555, "root": 0o700,
                "sys": 0o555, "tmp": 0o1777}
_ETC = {
    "hostname": "busybox\n",
    "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    "passwd": "root:x:0:0:root:/root:/bin/sh\n"
              "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    "group": "root:x:0:\nnogroup:x:65534:\n",
    # Empty: the engine binds each container's own over it (engine/etc_files.py). Without it
    # the bind would need a mount point made in the container's upper layer, and ``commit``
    # would take that empty file into the new image.
    "resolv.conf": "",
}
_INSTALL = "install busybox-static (apt-get install busybox-static)"

Progress = Callable[[str], None]  # told each step of the build as it starts


def quiet(step: str) -> None:
    """The progress of a build that nobody watches."""


def build(lab: store.Store, busybox: Path = BUSYBOX,
          progress: Progress = quiet) -> tuple[store.Image, bool]:
    """Build the base image into an open, locked store, unless it is there already from the
    same input. Returns the image and whether it was built now; ``progress`` hears of each
    step as it starts."""
    source = source_digest(busybox)
    current = lab.image(REFERENCE)
    if current and current.source == source and lab.has_layers(current):
        return current, False
    with lab.staging() as stage:
        rootfs = stage / "rootfs"
        _make_rootfs(rootfs, busybox, progress)
        progress("hash the root filesystem and store it as a layer")
        layer = lab.add_layer(rootfs)
        progress(f"save the image config of {REFERENCE}")
        repository, tag = store.parse_reference(REFERENCE)
        image = store.Image(repository, tag, layers=[layer], env=ENV, cmd=CMD, workdir="/",
                            created=_now(), source=source)
        lab.save_image(image)
    return image, True


def source_digest(busybox: Path) -> str:
    """What the image is made from: the busybox binary, and the recipe, which is this file."""
    _check_static(busybox)
    digest = hashlib.sha256()
    for part in (busybox, Path(__file__)):
        digest.update(part.read_bytes())
    return f"sha256:{digest.hexdigest()}"


def _check_static(busybox: Path) -> None:
    """A dynamically linked busybox would need its loader and libc inside every container."""
    if not busybox.is_file():
        raise LabError(f"{busybox} is missing: {_INSTALL}")
    if _needs_loader(busybox):
        raise LabError(f"{busybox} is not a statically linked program, so it cannot run alone "
                       f"in a container: {_INSTALL}")


def _needs_loader(program: Path) -> bool:
    """True unless ``program`` is a 64-bit ELF file without a PT_INTERP (loader) header."""
    pt_interp = 3
    with open(program, "rb") as file:
        header = file.read(64)
        if len(header) < 64 or header[:5] != b"\x7fELF\x02":
            return True
        (table_offset,) = struct.unpack_from("<Q", header, 32)
        entry_size, count = struct.unpack_from("<HH", header, 54)
        file.seek(table_offset)
        table = file.read(entry_size * count)
    kinds = [struct.unpack_from("<I", table, index * entry_size)[0] for index in range(count)]
    return pt_interp in kinds


def _applets(busybox: Path) -> list[str]:
    """The applets this busybox was compiled with, as it lists them itself."""
    listing = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True)
    return sorted(set(listing.stdout.split()) - {"busybox"})


def _make_rootfs(rootfs: Path, busybox: Path, progress: Progress) -> None:
    """busybox, its applets, the empty mount points and /etc: every mode and owner set here."""
    progress(f"copy {busybox} into a new root filesystem")
    _make_directories(rootfs)
    _copy(busybox, rootfs / "bin" / "busybox", 0o755)
    applets = _applets(busybox)
    progress(f"link {len(applets)} applets to /bin/busybox")
    for applet in applets:
        os.symlink("busybox", rootfs / "bin" / applet)
    progress(f"write /etc: {', '.join(_ETC)}")
    for name, text in _ETC.items():
        _write(rootfs / "etc" / name, text, 0o644)
    _own_by_root(rootfs)


def _make_directories(rootfs: Path) -> None:
    """The root and its top directories, each with its mode set explicitly, whatever the umask."""
    for path, mode in [(rootfs, 0o755)] + [(rootfs / name, mode) for name, mode in
                                           _DIRECTORIES.items()]:
        path.mkdir()
        os.chmod(path, mode)


def _copy(source: Path, target: Path, mode: int) -> None:
    shutil.copyfile(source, target)
    os.chmod(target, mode)


def _write(target: Path, text: str, mode: int) -> None:
    target.write_text(text)
    os.chmod(target, mode)


def _own_by_root(rootfs: Path) -> None:
    """Owner 0:0 everywhere, whoever the store's directories would have handed files to."""
    for top, directories, files in os.walk(rootfs):
        os.lchown(top, 0, 0)
        for name in directories + files:
            os.lchown(os.path.join(top, name), 0, 0)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
