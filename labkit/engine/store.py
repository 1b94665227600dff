"""Where the lab keeps its images and containers on disk.

Everything lives under one directory, ``LABKIT_HOME`` (``/var/lib/labkit`` by default), so a test
session can point the whole lab at a temporary store and never touch a learner's lab::

    LABKIT_HOME/
      labkit-store              marks the directory as a store (the lab never touches any other)
      lock                      flock()ed by every command that changes the store
      layers/<hex>/diff/        a read-only layer: a directory tree, named by its content digest
      layers/<hex>/layer.json   its digest and size
      images/<repo>/<tag>.json  an image: its layers (bottom first), env, cmd, workdir, ...
      containers/<id>/          a container (lesson 06), under its 64-digit id, never its name:
        config.json             how it was made: image, layers, command, env, volumes, name
        state.json              what became of it: status, pids, exit code (its monitor writes it)
        hostname                its /etc/hostname, bound into it (the image's says busybox)
        upper/ work/            its writable layer, and the overlay's work directory beside it
        merged/                 where its root filesystem is mounted, in its own namespace only
        log                     its output, one JSON object per chunk: time, stream, text
        attach.sock             its monitor's socket (labkit.engine.monitor), while it has one
      cache/samples/            compiled C samples (labkit.lessons.samples)
      tmp/                      work in progress; whatever is here when the lock is taken was
                                left by a killed command, and is removed

Nothing appears half-made: a layer is built in ``tmp/`` and renamed into ``layers/``, a JSON file
is written in ``tmp/`` and renamed into place, and a rename is atomic. An image exists once its
config exists, and its layers are always in place before that. A container is laid out in
``tmp/`` and renamed into ``containers/`` whole, and removed by renaming it back out first; so
is a layer (``rmi``, ``gc``), once no image and no container uses it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from labkit.engine import names
from labkit.errors import LabError
from labkit.kernel import syscalls
from labkit.kernel.mountinfo import mount_points
from labkit.runtime.spec import DEFAULT_PATH

DEFAULT_HOME = "/var/lib/labkit"
MARKER = "labkit-store"
_MARKER_TEXT = "This directory is a labkit store (Namespace Lab): see labkit/engine/store.py.\n"
_USE_ANOTHER = "point LABKIT_HOME at another directory (unset, it is /var/lib/labkit)"


def home() -> Path:
    """The store's directory, as configured; not created or checked here."""
    return Path(os.environ.get("LABKIT_HOME") or DEFAULT_HOME)


@contextmanager
def writing() -> Iterator[Store]:
    """Open the store to change it: checked, created if new, locked, debris of killed commands
    removed. Every check comes before the first write, so a bad LABKIT_HOME is left untouched."""
    root = _checked_home()
    _check_writable(root)
    lab = Store(root)
    lab.create()
    with lab.locked(), _full_disk_as_one_line(root):
        lab.leftovers = lab.clear_tmp()
        yield lab


@contextmanager
def _full_disk_as_one_line(root: Path) -> Iterator[None]:
    """A change the store's disk has no room for fails as one line: what was half-made is in
    tmp/ (removed by the staging that made it, or by the next command), never in place."""
    try:
        yield
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise LabError(f"the disk of the store LABKIT_HOME={root} is full: remove containers "
                       f"and images you no longer need (labkit rm, labkit rmi), or give it more "
                       f"room") from None


def reading() -> Store:
    """Open the store to look at it; a store that does not exist yet is simply empty."""
    return Store(_checked_home())


def _checked_home() -> Path:
    """LABKIT_HOME, once it is sure to be a place for a store: an absolute path, a directory or
    not there yet, and never a directory of other files (the store removes what it finds in its
    tmp/, so LABKIT_HOME=/ must not make /tmp a store's)."""
    root = home()
    if not root.is_absolute():
        raise LabError(f"LABKIT_HOME={root} is a relative path: set it to an absolute one")
    existing = _nearest_existing(root)
    if not existing.is_dir():
        where = "is" if existing == root else f"lies under {existing}, which is"
        raise LabError(f"LABKIT_HOME={root} {where} not a directory: {_USE_ANOTHER}")
    if existing == root and not (root / MARKER).exists() and any(root.iterdir()):
        raise LabError(f"LABKIT_HOME={root} is a directory that is neither empty nor a labkit "
                       f"store, and the lab never writes among other files: {_USE_ANOTHER}")
    return root


def _check_writable(root: Path) -> None:
    """Refuse a store the lab could not finish writing, or could not run containers from."""
    existing = _nearest_existing(root)
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise LabError(f"LABKIT_HOME={root} is on a read-only filesystem: {_USE_ANOTHER}")
    if syscalls.filesystem_type(str(existing)) == syscalls.OVERLAYFS_SUPER_MAGIC:
        raise LabError(f"LABKIT_HOME={root} is on an overlay filesystem, which cannot hold a "
                       f"container's upper directory: point LABKIT_HOME at a directory on ext4, "
                       f"xfs or tmpfs (e.g. mount -t tmpfs tmpfs /var/lib/labkit)")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class Store:
    """The store's directories, and the few operations that change them safely."""

    def __init__(self, root: Path):
        self.root = root
        self.layers_dir = root / "layers"
        self.images_dir = root / "images"
        self.containers_dir = root / "containers"
        self.tmp_dir = root / "tmp"
        self.leftovers = 0

    def create(self) -> None:
        """Make the store's directories; the marker first, so a store is always recognised.

        The store is root's alone (mode 0700, as docker keeps /var/lib/docker 0710 since its
        CVE-2021-41091): a layer holds whatever a container made, setuid-root programs
        included, and a host user who could walk into it could run them as root.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.root.chmod(0o700)
            if not (self.root / MARKER).exists():
                (self.root / MARKER).write_text(_MARKER_TEXT)
            for directory in (self.layers_dir, self.images_dir, self.containers_dir,
                              self.tmp_dir):
                directory.mkdir(exist_ok=True)
        except OSError as error:
            raise LabError(f"LABKIT_HOME={self.root} cannot be written ({error.strerror}): "
                           f"{_USE_ANOTHER}") from None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock: one command changes the store at a time. The kernel drops an
        flock() when its holder dies, so a killed command never leaves the store locked."""
        with open(self.root / "lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print("labkit: waiting for another labkit command to finish with the store",
                      file=sys.stderr)
                fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def clear_tmp(self) -> int:
        """Remove what killed commands left in tmp/ (call it holding the lock); count it."""
        leftovers = list(self.tmp_dir.iterdir())
        for path in leftovers:
            if path.is_dir() and not path.is_symlink():
                remove_tree(path)
            else:
                path.unlink()
        return len(leftovers)

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh directory in tmp/ to build in, removed on the way out; if even that fails,
        the next command to take the lock removes it."""
        path = Path(tempfile.mkdtemp(dir=self.tmp_dir))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def add_layer(self, tree: Path) -> str:
        """Move ``tree`` (a directory in tmp/) into layers/ under its digest, and return that.

        A layer with the same digest is the same content: it is kept, and ``tree`` is left
        for its staging directory to remove.
        """
        from labkit.engine.digest import (
            tree_digest,  # tarfile and hashlib: not on `labkit run`'s path
        )

        digest, size = tree_digest(tree)
        if self.layer_dir(digest).exists():
            return digest
        layer = Path(tempfile.mkdtemp(dir=self.tmp_dir))
        os.chmod(layer, 0o755)
        tree.rename(layer / "diff")
        (layer / "layer.json").write_text(json.dumps({"digest": digest, "size": size}) + "\n")
        layer.rename(self.layer_dir(digest))
        return digest

    def layer_dir(self, digest: str) -> Path:
        return self.layers_dir / digest.removeprefix("sha256:")

    def layer_tree(self, digest: str) -> Path:
        """The layer's files: what an overlay mount stacks as one lower directory."""
        return self.layer_dir(digest) / "diff"

    def layer_size(self, digest: str) -> int:
        return json.loads((self.layer_dir(digest) / "layer.json").read_text())["size"]

    def save_image(self, image: Image) -> None:
        """Write the image's config atomically; from then on the image exists."""
        path = self._image_path(image.repository, image.tag)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_atomically(path, json.dumps(image.to_json(), indent=2) + "\n")

    def image(self, reference: str) -> Image | None:
        """The image a reference names (``busybox`` means ``busybox:latest``), if it exists."""
        path = self._image_path(*parse_reference(reference))
        return Image.from_json(json.loads(path.read_text())) if path.exists() else None

    def images(self) -> list[Image]:
        """Every image in the store, sorted by repository and tag."""
        if not self.images_dir.is_dir():
            return []
        found = [Image.from_json(json.loads(path.read_text()))
                 for path in self.images_dir.rglob("*.json")]
        return sorted(found, key=lambda image: (image.repository, image.tag))

    def has_layers(self, image: Image) -> bool:
        return all(self.layer_dir(digest).is_dir() for digest in image.layers)

    def image_size(self, image: Image) -> int:
        return sum(self.layer_size(digest) for digest in image.layers)

    def remove_image(self, image: Image) -> None:
        """Remove the image's config (its name is gone from then on), and the repository's
        directory with it when that was its last tag. Its layers stay: see unused_layers."""
        path = self._image_path(image.repository, image.tag)
        path.unlink()
        for directory in path.parents:
            if directory == self.images_dir or any(directory.iterdir()):
                break
            directory.rmdir()

    def layer_digests(self) -> list[str]:
        """The digest of every layer in layers/, sorted."""
        if not self.layers_dir.is_dir():
            return []
        return sorted(f"sha256:{entry.name}" for entry in os.scandir(self.layers_dir)
                      if _HEX_DIGEST.fullmatch(entry.name))

    def unused_layers(self) -> list[str]:
        """The layers that no image lists and no container stands on (a container keeps the
        layers it was made from, whatever became of its image's name)."""
        if self.damaged_containers():
            return []  # what a damaged container stands on is unknown: keep every layer
        used = {digest for image in self.images() for digest in image.layers}
        used.update(digest for config in self.container_configs() for digest in config.layers)
        return [digest for digest in self.layer_digests() if digest not in used]

    def remove_layer(self, digest: str) -> None:
        """Remove a layer, gone at once; call it holding the lock, on an unused layer."""
        self.discard(self.layer_dir(digest))

    def create_container(self, config: ContainerConfig) -> Path:
        """Lay out a new container in tmp/ and rename it into containers/, where it appears
        whole: config, a first state, an empty upper and work directory and an empty log."""
        with self.staging() as stage:
            draft = stage / config.id
            draft.mkdir(mode=0o700)
            for layer in (UPPER, WORK):
                (draft / layer).mkdir()
                os.chmod(draft / layer, 0o755)  # the upper's mode becomes the rootfs's mode
            (draft / LOG).touch(mode=0o600)
            (draft / CONFIG).write_text(json.dumps(asdict(config), indent=2) + "\n")
            (draft / STATE).write_text(json.dumps(asdict(ContainerState()), indent=2) + "\n")
            (draft / HOSTNAME).write_text(config.hostname + "\n")
            draft.rename(self.container_dir(config.id))
        return self.container_dir(config.id)

    def container_dir(self, container_id: str) -> Path:
        """A container's directory; only ever made from an id, so never outside the store."""
        if not names.is_id(container_id):
            raise LabError(f"{container_id!r} is not a container id (64 hexadecimal digits)")
        return self.containers_dir / container_id

    def container_ids(self) -> list[str]:
        """Every container's id, sorted."""
        if not self.containers_dir.is_dir():
            return []
        return sorted(entry.name for entry in os.scandir(self.containers_dir)
                      if names.is_id(entry.name))

    def container_config(self, container_id: str) -> ContainerConfig:
        """The container's config; a ``Damaged`` if its file cannot be read as one, and
        FileNotFoundError if the container itself is gone."""
        return self._record(container_id, CONFIG, ContainerConfig.from_json)

    def container_state(self, container_id: str) -> ContainerState:
        """The container's state, as ``container_config`` reads its config."""
        return self._record(container_id, STATE, lambda fields: ContainerState(**fields))

    def _record(self, container_id: str, name: str, make):
        """One of a container's JSON records. A file a crash, a full disk or a hand cut short
        or filled with garbage is one damaged container, never a traceback from every verb."""
        path = self.container_dir(container_id) / name
        try:
            return make(json.loads(path.read_text()))
        except FileNotFoundError:
            if path.parent.is_dir():
                raise Damaged(container_id, name, "it is missing") from None
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise Damaged(container_id, name, f"{type(error).__name__}: {error}") from None

    def save_container_state(self, container_id: str, state: ContainerState) -> None:
        self.save_container_file(container_id, STATE, json.dumps(asdict(state), indent=2) + "\n")

    def save_container_file(self, container_id: str, name: str, text: str) -> None:
        """Replace one of the container's files (its state, its lease, its /etc/hosts)
        atomically. The temporary file is made in the container's own directory, not tmp/: a
        monitor writes without the store's lock, and tmp/ is emptied by whoever takes it next."""
        directory = self.container_dir(container_id)
        self._write_atomically(directory / name, text, scratch=directory)

    def container_configs(self) -> list[ContainerConfig]:
        """The config of every container that has a readable one, oldest first; one removed
        meanwhile is left out, and so is a damaged one (``damaged_containers``)."""
        found = []
        for container_id in self.container_ids():
            try:
                found.append(self.container_config(container_id))
            except (FileNotFoundError, Damaged):
                continue
        return sorted(found, key=lambda config: (config.created, config.id))

    def damaged_containers(self) -> list[str]:
        """The ids of the containers whose config cannot be read."""
        readable = {config.id for config in self.container_configs()}
        return [container_id for container_id in self.container_ids()
                if container_id not in readable and self.container_dir(container_id).is_dir()]

    def find_container(self, reference: str) -> str:
        """The id of the container ``reference`` names, as docker looks it up: its full id,
        then its name, then a prefix of its id that no other container's id starts with. A
        damaged container, whose name is unreadable, is still found by its id."""
        ids = self.container_ids()
        if reference in ids:
            return reference
        named = [c.id for c in self.container_configs() if c.name == reference]
        if named:
            return named[0]
        by_prefix = [i for i in ids if reference and i.startswith(reference)]
        if len(by_prefix) > 1:
            raise LabError(f"{reference!r} starts the ids of {len(by_prefix)} containers: "
                           f"give more of the id, or the name")
        if not by_prefix:
            raise LabError(f"no such container: {reference!r} (labkit ps -a lists them)")
        return by_prefix[0]

    def remove_container(self, container_id: str) -> None:
        """Remove the container, gone at once; call it holding the lock."""
        self.discard(self.container_dir(container_id))

    def discard(self, path: Path) -> None:
        """Rename ``path`` into tmp/ (it is gone from then on), then delete it. Call it holding
        the lock: what it leaves in tmp/ if killed, the next command removes."""
        _refuse_mounts_under(path)
        trash = Path(tempfile.mkdtemp(dir=self.tmp_dir))
        path.rename(trash / path.name)
        shutil.rmtree(trash)

    def _image_path(self, repository: str, tag: str) -> Path:
        return self.images_dir / repository / f"{tag}.json"

    def _write_atomically(self, path: Path, text: str, scratch: Path | None = None) -> None:
        """Write a temporary file in ``scratch`` (tmp/ by default), flush it to disk, then rename
        it over ``path``."""
        fd, temporary = tempfile.mkstemp(dir=scratch or self.tmp_dir)
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.rename(temporary, path)


def remove_tree(path: Path) -> None:
    """Delete a directory tree of the store, but never through a mount.

    A mount left under it by a crash (a container's root, a bind-mounted volume) would let the
    deletion reach into whatever the mount shows: a layer, or a learner's own host files.
    """
    _refuse_mounts_under(path)
    shutil.rmtree(path)


def _refuse_mounts_under(path: Path) -> None:
    inside = f"{os.path.realpath(path)}/"
    mounted = [point for point in mount_points() if f"{point}/".startswith(inside)]
    if mounted:
        raise LabError(f"{mounted[0]} is still mounted, so {path} cannot be removed safely: "
                       f"run labkit gc, then try again")


# Docker's rule: lowercase path components joined by "/", each made of [a-z0-9] runs separated
# by ".", "_", "__" or dashes; a tag of up to 128 characters. Neither can name "..".
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def parse_reference(reference: str) -> tuple[str, str]:
    """``busybox`` -> ``("busybox", "latest")``; ``lab/web:v2`` -> ``("lab/web", "v2")``."""
    repository, colon, tag = reference.partition(":")
    tag = tag if colon else "latest"
    if len(repository) > 255 or not _REPOSITORY.fullmatch(repository) or not _TAG.fullmatch(tag):
        raise LabError(f"invalid image reference {reference!r}: use a lowercase name and an "
                       f"optional tag, such as busybox or busybox:latest")
    return repository, tag


@dataclass
class Image:
    """An image: read-only layers stacked bottom first, and how to start a container from them."""

    repository: str
    tag: str
    layers: list[str]
    env: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    workdir: str = "/"
    created: str = ""
    parent: str | None = None  # the digest of the image this one was committed from
    source: str | None = None  # what it was built from, so a rebuild can tell it has nothing to do
    exposed: list[str] = field(default_factory=list)  # ports its containers expose: 80/tcp

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def digest(self) -> str:
        """What a container of this image runs: its layers, env, cmd and workdir, hashed. When
        or from what the image was made does not change it."""
        identity = {"layers": self.layers, "env": self.env, "cmd": self.cmd,
                    "workdir": self.workdir, **({"exposed": self.exposed} if self.exposed else {})}
        canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    def to_json(self) -> dict:
        return {"reference": self.reference, "digest": self.digest, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict) -> Image:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


UPPER, WORK, LOG, CONFIG, STATE, SOCKET = (
    "upper", "work", "log", "config.json", "state.json", "attach.sock")
HOSTNAME = "hostname"  # the container's /etc/hostname, bound over the image's, as docker does
CREATED, RUNNING, EXITED = "created", "running", "exited"


class Damaged(LabError):
    """A container record (config or state) that cannot be read: cut short by a crash or a
    full disk, or written by hand. It names the container and says how to be rid of it."""

    def __init__(self, container_id: str, record: str, why: str):
        short_id = names.short(container_id)
        super().__init__(f"container {short_id} is damaged: its {record} cannot be read "
                         f"({why}); labkit rm -f {short_id} removes it")
        self.container_id = container_id


@dataclass
class ContainerConfig:
    """How a container was made; fixed from then on. The image's layers, env, command and
    workdir are copied in, so the container stays what it was whatever becomes of the image's
    name later."""

    id: str
    name: str
    image: str  # the reference it was made from, such as busybox:latest
    image_digest: str
    layers: list[str]  # bottom first, as in the image
    command: list[str]
    env: dict[str, str]
    workdir: str
    hostname: str
    volumes: list[tuple[str, str, bool]]  # (host path, container path, read-only)
    tty: bool = False
    interactive: bool = False
    auto_remove: bool = False
    created: str = ""
    seccomp: str = "default"  # the seccomp profile: default, or unconfined (--security-opt)
    # Its network (engine/network.py): bridge, none or host (none for records older than it),
    # the -p texts, -P, the ports it exposes (its image's and --expose's) and its --link texts.
    network: str = "none"
    publish: list[str] = field(default_factory=list)
    publish_all: bool = False
    expose: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    # What it may take (engine/resources.py): a Limits as a dict; empty for older records.
    limits: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict) -> ContainerConfig:
        config = cls(**data)
        config.volumes = [tuple(volume) for volume in config.volumes]
        return config


@dataclass
class ContainerState:
    """What became of a container: created by ``run``, then written only by its monitor."""

    status: str = CREATED
    monitor_pid: int | None = None
    init_pid: int | None = None  # the host's pid of the container's PID 1
    init_start: int | None = None  # its start time (/proc/PID/stat), which tells a reused pid
    started_at: str = ""
    finished_at: str = ""
    exit_code: int | None = None
    error: str | None = None
    oom_killed: bool = False  # the kernel's OOM killer killed in its cgroup (docker's OOMKilled)


def environment(image_env: Sequence[str], assignments: Sequence[str], hostname: str,
                tty: bool) -> dict[str, str]:
    """The command's environment, built as docker builds it: a default PATH, HOSTNAME and
    (with a terminal) TERM, then the image's variables, then each ``-e``: ``NAME=VALUE``, or
    ``NAME`` alone to pass on the caller's value, if it has one. HOME last, if still unset."""
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, **({"TERM": "xterm"} if tty else {})}
    for assignment in [*image_env, *assignments]:
        key, equals, value = assignment.partition("=")
        if not key or "\0" in assignment:
            raise LabError(f"invalid environment variable {assignment!r}: use NAME=VALUE")
        if equals:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    env.setdefault("HOME", "/root")
    return env


def timestamp() -> str:
    """Now, in UTC, as the store writes times: 2024-05-01T12:00:00.123456Z."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def short(digest: str) -> str:
    """The first 12 hex digits, as docker shows an image id."""
    return digest.removeprefix("sha256:")[:12]


def human_size(size: float) -> str:
    """Bytes in decimal units, as docker prints them: 2.15MB."""
    units = ["B", "kB", "MB", "GB", "TB"]
    while size >= 1000 and len(units) > 1:
        size /= 1000
        units.pop(0)
    return f"{size:.3g}{units[0]}"
