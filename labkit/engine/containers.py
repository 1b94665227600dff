"""Containers: docker's verbs as Python calls, shared by the notebooks and ``labkit``.

    from labkit.engine import containers
    containers.run("busybox", ["hostname"]).stdout         # foreground: wait, get the output
    web = containers.run("busybox", ["sh", "-c", "echo hi; sleep 100"], detach=True,
                         name="web")
    containers.logs("web")                                  # 'hi\\n'
    containers.exec("web", ["ps"]).stdout
    show.containers(containers.ps(all=True))                # what `labkit ps -a` shows
    containers.stop("web"); containers.rm("web")

A container is a directory in the store (``labkit.engine.store``: config, state, upper layer,
log) and, while it runs, a monitor process (``labkit.engine.monitor``) that holds it. Every call
here is a short conversation with those two: the store is read, or changed under its lock; a running
container is reached through its monitor's socket, which is also how a call waits for it to end.

Nothing here unshares or mounts, nor forks the caller: the monitor and the ``exec`` helper are
fresh processes started with subprocess, so a Jupyter kernel may call all of it. The one
exception is ``launch(..., fork=True)``, which forks the monitor, and which only ``labkit run``
passes, a single-threaded process of the lab's own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from labkit.engine import (
    leases,
    limiting,
    monitor,
    names,
    networking,
    ports,
    resources,
    seccomp,
    store,
)
from labkit.engine.frames import Connection, Kind
from labkit.errors import LabError
from labkit.kernel.process import shell_code
from labkit.runtime.cgroup.usage import Usage
from labkit.runtime.exec import argv as joining_argv
from labkit.runtime.spec import Spec

DEAD = "dead"  # its state says running, but its monitor is gone: `labkit gc` tidies it up
DAMAGED = "damaged"  # a record of it cannot be read: `labkit rm -f` removes it
STOP_TIMEOUT = 10.0  # docker's grace period between SIGTERM and SIGKILL


@dataclass(frozen=True)
class Container:
    """One container as ``ps`` and ``inspect`` see it: how it was made, what became of it, and
    its status now (created, running, exited, dead, or damaged)."""

    config: store.ContainerConfig
    state: store.ContainerState
    status: str
    lease: leases.Lease | None = None  # its address and published ports, while on the bridge

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def short_id(self) -> str:
        return names.short(self.config.id)

    @property
    def exit_code(self) -> int | None:
        return self.state.exit_code

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "status": self.status,
                "config": asdict(self.config), "state": asdict(self.state),
                "network": asdict(self.lease) if self.lease else None}


@dataclass(frozen=True)
class Outcome:
    """What a container (or an ``exec``) printed, and how it ended. ``error`` is the lab's
    one-line reason when the lab, not the command, failed (exit codes 125, 126, 127)."""

    id: str
    exit_code: int
    stdout: str
    stderr: str
    error: str | None = None


@dataclass(frozen=True)
class LogEntry:
    time: str
    stream: str  # stdout or stderr
    text: str


# ---------------------------------------------------------------------------------------------
# run and start


def run(image: str, command: Sequence[str] | None = None, *, detach: bool = False,
        input: str | None = None, name: str | None = None, env: Sequence[str] = (),
        volumes: Sequence[str] = (), hostname: str | None = None, remove: bool = False,
        security_opt: Sequence[str] = (), network: str = networking.BRIDGE,
        publish: Sequence[str] = (), publish_all: bool = False, expose: Sequence[str] = (),
        links: Sequence[str] = (), memory: str | None = None, memory_swap: str | None = None,
        cpus: float | None = None, cpu_shares: int | None = None,
        pids_limit: int | None = None) -> Outcome | Container:
    """``docker run``: a new container of ``image`` running ``command`` (the image's CMD by
    default). Options as on the command line: ``env=["K=V"]``, ``volumes=["/src:/dst:ro"]``,
    ``security_opt=["seccomp=unconfined"]``, ``network="none"``, ``publish=["8080:80"]``,
    ``publish_all=True`` (-P), ``expose=["80"]``, ``links=["db:database"]``, ``memory="64m"``,
    ``memory_swap="128m"``, ``cpus=0.5``, ``cpu_shares=512``, ``pids_limit=100``.

    In the foreground, wait for it and return its ``Outcome``; ``input`` goes to its stdin.
    With ``detach=True``, return the running ``Container`` at once.
    """
    wiring = networking.NetworkOptions(network, publish, publish_all, expose, links)
    limits = resources.ResourceOptions(memory, memory_swap, cpus, cpu_shares, pids_limit)
    config, connection = launch(image, command, attach=not detach, name=name, env=env,
                                volumes=volumes, hostname=hostname,
                                interactive=input is not None, remove=remove,
                                security_opt=security_opt, network=wiring, resources=limits)
    with closing(connection):
        return inspect(config.id) if detach else _collect(config.id, connection, input)


def launch(image: str, command: Sequence[str] | None, *, attach: bool,
           name: str | None = None, env: Sequence[str] = (), volumes: Sequence[str] = (),
           hostname: str | None = None, interactive: bool = False, tty: bool = False,
           remove: bool = False, security_opt: Sequence[str] = (),
           network: networking.NetworkOptions = networking.DEFAULTS,
           resources: resources.ResourceOptions = resources.DEFAULTS,
           fork: bool = False) -> tuple[store.ContainerConfig, Connection]:
    """Create a container and start its monitor; return its config and the connection of its
    first client, on which the monitor has answered. If the start failed, an ``attach``ed
    client reads why in the stream; a detached one gets it raised as a LabError. ``fork``:
    the caller may fork the monitor (``monitor.spawn``); only ``labkit run`` may.

    Every check comes before the store changes: a bad name, image, volume, hostname,
    environment or network option leaves nothing on disk; so does a start the network refuses
    (a port in use, no free address): the container is removed again.
    """
    if name is not None:
        names.check_name(name)
    network.check()
    limits = resources.limits()
    lab = store.reading()
    config = _new_config(lab, image, command, env, volumes, hostname, interactive, tty, remove)
    config.seccomp = seccomp_profile(security_opt)
    config.limits = limits
    network.configure(config, lab.image(image))
    _spec(lab, config, networking.Wiring(None))  # checks the rest; may build the static init
    with store.writing() as lab:
        config.name = _free_name(lab, name)
        if not all(lab.layer_dir(digest).is_dir() for digest in config.layers):
            raise LabError(f"the layers of {config.image} are gone: build the image again")
        directory = lab.create_container(config)
        try:
            spec = _spec(lab, config, networking.attach(lab, config))
        except BaseException:
            networking.detach(lab, config.id)
            lab.remove_container(config.id)
            raise
        return config, _start_monitor(directory, spec, attach, fork)


def start(reference: str) -> Container:
    """``docker start``: run a stopped container's command again, on its kept upper layer.
    A running container is left as it is."""
    lab = store.reading()
    container_id = lab.find_container(reference)
    _settle(lab, container_id)
    _refuse_orphaned(lab, container_id, "start it again")
    with store.writing() as lab:
        container_id = lab.find_container(container_id)
        directory = lab.container_dir(container_id)
        if not monitor.alive(directory):
            config = lab.container_config(container_id)
            try:
                spec = _spec(lab, config, networking.attach(lab, config))
            except BaseException:
                networking.detach(lab, container_id)
                raise
            _start_monitor(directory, spec, attach=False, fork=False).close()
    return inspect(container_id)


def _new_config(lab: store.Store, image_reference: str, command: Sequence[str] | None,
                env: Sequence[str], volumes: Sequence[str], hostname: str | None,
                interactive: bool, tty: bool, remove: bool) -> store.ContainerConfig:
    image = lab.image(image_reference)
    if image is None:
        raise LabError(f"no such image: {image_reference} (labkit images lists them; "
                       f"labkit image build-base makes busybox)")
    container_id = names.new_id()
    hostname = hostname or names.short(container_id)
    command = list(command or image.cmd)
    if not command:
        raise LabError(f"no command to run: give one after the image, as {image.reference} "
                       f"has no CMD")
    return store.ContainerConfig(
        id=container_id, name="", image=image.reference, image_digest=image.digest,
        layers=list(image.layers), command=command,
        env=store.environment(image.env, env, hostname, tty), workdir=image.workdir,
        hostname=hostname, volumes=[parse_volume(volume) for volume in volumes], tty=tty,
        interactive=interactive, auto_remove=remove, created=store.timestamp())


def _free_name(lab: store.Store, wanted: str | None) -> str:
    """``wanted`` if no container has it, else a LabError; a random free name if None."""
    taken = {config.name: config.id for config in lab.container_configs()}
    if wanted is None:
        return names.random_name(set(taken))
    if wanted in taken:
        raise LabError(f"the name {wanted!r} is already in use by container "
                       f"{names.short(taken[wanted])}: choose another, or remove that one "
                       f"(labkit rm {wanted})")
    return wanted


def seccomp_profile(security_opt: Sequence[str]) -> str:
    """The seccomp profile ``--security-opt`` asks for: docker's default, unless
    ``seccomp=unconfined``; the lab knows no other option."""
    profile = seccomp.DEFAULT
    for option in security_opt:
        key, _, value = option.partition("=")
        if key != "seccomp" or value not in seccomp.PROFILES:
            raise LabError(f"invalid --security-opt {option!r}: the lab knows "
                           f"seccomp=unconfined (and seccomp=default, docker's profile)")
        profile = value
    return profile


def parse_volume(text: str) -> tuple[str, str, bool]:
    """``-v HOST:CONTAINER[:ro|:rw]`` -> ``(host, container, read_only)``. The runtime checks
    the paths themselves (``steps/rootfs.py``): the source must exist, the target be absolute."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise LabError(f"invalid volume {text!r}: use HOST_PATH:CONTAINER_PATH, with :ro "
                       f"at the end for a read-only one")
    if not parts[0].startswith("/"):
        raise LabError(f"invalid volume {text!r}: the host path must be absolute, such as "
                       f"/srv/data (the lab has no named volumes)")
    return parts[0], parts[1], parts[2:] == ["ro"]


def _spec(lab: store.Store, config: store.ContainerConfig, wiring: networking.Wiring) -> Spec:
    """The runtime's spec for the container: every step of a full container, its own layers
    and paths, its network, and with -t a terminal of its own."""
    from labkit.engine.builds import static_init
    from labkit.runtime.container import steps_for
    from labkit.runtime.steps.console import Console

    directory = lab.container_dir(config.id)
    layers = [lab.layer_tree(digest) for digest in reversed(config.layers)]
    steps = steps_for(layers, directory / store.UPPER, directory / store.WORK, config.hostname,
                      config.volumes, config.workdir, init=static_init(),
                      seccomp=_seccomp_program(config), network=wiring.step,
                      cgroup=limiting.step(config),
                      engine_files=[(directory / store.HOSTNAME, "/etc/hostname"),
                                    *wiring.files])
    return Spec(config.command, [*steps, *([Console()] if config.tty else [])],
                {**config.env, **wiring.env})


def _seccomp_program(config: store.ContainerConfig) -> str | None:
    """The compiled filter of the container's profile, which its exec'd commands get too."""
    return None if config.seccomp == seccomp.UNCONFINED else seccomp.compile_profile()


def _start_monitor(directory: Path, spec: Spec, attach: bool, fork: bool) -> Connection:
    """Start the container's monitor with a first client, and wait for its first word: the
    store's lock, held meanwhile, keeps any other command off this container until then.
    A detached client gets a failed start raised."""
    ours, theirs = socket.socketpair()
    connection = Connection(ours)
    try:
        connection.send_control(Kind.HELLO, attach=attach)
        monitor.spawn(directory, spec, theirs, fork=fork)
    except BaseException:
        connection.close()
        raise
    finally:
        theirs.close()
    first = connection.wait_for(Kind.STARTED, Kind.EXIT)
    if first is None:
        connection.close()
        raise LabError("the container's monitor ended before it could start the container: "
                       "see labkit ps -a")
    if first.kind == Kind.EXIT and not attach:
        connection.close()
        end = first.fields()
        raise LabError(end["error"], exit_code=end["exit_code"])
    return connection


def _settle(lab: store.Store, container_id: str) -> None:
    """Wait for a monitor that has recorded its container's end and is tidying up."""
    directory = lab.container_dir(container_id)
    if monitor.alive(directory) and _view(lab, container_id).status == store.EXITED:
        monitor.wait_gone(directory)


def _collect(container_id: str, connection: Connection, input: str | None) -> Outcome:
    """Feed ``input``, gather the output until the monitor has exited, and the exit code."""
    if input is not None:
        connection.send(Kind.STDIN, input.encode())
        connection.send(Kind.CLOSE_STDIN)
    output = {Kind.STDOUT: bytearray(), Kind.STDERR: bytearray()}
    end = None
    while (frame := connection.receive()) is not None:
        if frame.kind in output:
            output[frame.kind] += frame.payload
        elif frame.kind == Kind.EXIT:
            end = frame.fields()
    if end is None:
        raise LabError("the container's monitor ended without its exit code: see labkit ps -a")
    stdout, stderr = (output[kind].decode(errors="replace") for kind in output)
    return Outcome(container_id, end["exit_code"], stdout, stderr, end["error"])


# ---------------------------------------------------------------------------------------------
# Looking at containers


def ps(all: bool = False) -> list[Container]:
    """``docker ps``: the running containers, newest first; every one with ``all=True``."""
    lab = store.reading()
    found = []
    for container_id in lab.container_ids():
        try:
            found.append(_view(lab, container_id))
        except FileNotFoundError:  # removed while we looked
            continue
    found.sort(key=lambda container: container.config.created, reverse=True)
    return [container for container in found if all or container.status == store.RUNNING]


def inspect(reference: str) -> Container:
    """``docker inspect``: everything about one container."""
    lab = store.reading()
    container_id = lab.find_container(reference)
    try:
        return _view(lab, container_id)
    except FileNotFoundError:
        raise LabError(f"no such container: {reference!r} (it was removed just now)") from None


@dataclass(frozen=True)
class ContainerStats:
    """What a running container uses: ``docker stats``' row. CPU % is of one core, measured
    over the interval ``stats`` waited (200% is two cores, busy)."""

    container: Container
    cpu_percent: float | None
    usage: Usage


def stats(references: Sequence[str] = (), interval: float = 0.5) -> list[ContainerStats]:
    """``docker stats --no-stream``: the running containers (or those named), each one's CPU
    time read twice ``interval`` seconds apart, its memory and processes read now."""
    found = [running(reference) for reference in references] if references else ps()
    before = {container.id: limiting.usage(container.id) for container in found}
    time.sleep(interval)
    rows = []
    for container in found:
        now = limiting.usage(container.id)
        used = (None if None in (now.cpu_ns, before[container.id].cpu_ns)
                else now.cpu_ns - before[container.id].cpu_ns)
        percent = None if used is None else 100 * used / (interval * 1e9)
        rows.append(ContainerStats(container, percent, now))
    return rows


def port(reference: str, which: str | None = None) -> list[ports.Port]:
    """``docker port``: the container's published ports, or those of ``which`` (``80``,
    ``80/udp``); none while it is stopped. A LabError if ``which`` is not published."""
    lease = inspect(reference).lease
    published = lease.ports if lease else []
    if which is None:
        return published
    wanted = ports.parse_exposed(which)
    found = [port for port in published if port.exposed == wanted]
    if not found:
        raise LabError(f"no public port {wanted} is published for {reference}")
    return found


def _view(lab: store.Store, container_id: str) -> Container:
    """A container's config, state and status. Whether its monitor lives is asked first: a
    monitor writes its container's end before it exits, so a state read after a monitor was
    found gone is final, and if it still says running, the monitor died without writing it."""
    holds = monitor.alive(lab.container_dir(container_id))
    try:
        config, state = lab.container_config(container_id), lab.container_state(container_id)
    except store.Damaged:
        return Container(_config_or_stand_in(lab, container_id), store.ContainerState(), DAMAGED)
    status = DEAD if state.status == store.RUNNING and not holds else state.status
    return Container(config, state, status, leases.read(lab, container_id))


def _config_or_stand_in(lab: store.Store, container_id: str) -> store.ContainerConfig:
    """A damaged container's config if that is what still reads, else one that says only what
    the store knows for sure: its id, and when its directory was made."""
    try:
        return lab.container_config(container_id)
    except store.Damaged:
        made = lab.container_dir(container_id).stat().st_mtime
        return store.ContainerConfig(
            id=container_id, name=names.short(container_id), image="?", image_digest="",
            layers=[], command=["?"], env={}, workdir="/", hostname="", volumes=[],
            created=datetime.fromtimestamp(made, UTC).isoformat())


# ---------------------------------------------------------------------------------------------
# stop and rm


def stop(reference: str, timeout: float = STOP_TIMEOUT) -> Container:
    """``docker stop``: SIGTERM, then SIGKILL if it is still running ``timeout`` seconds later;
    return once it has stopped. Stopping a stopped container succeeds and changes nothing."""
    lab = store.reading()
    container_id = lab.find_container(reference)
    _stop_orphans(lab, container_id, timeout)  # its monitor died, its processes run on
    _end(lab.container_dir(container_id), signal.SIGTERM, timeout)
    return inspect(container_id)


def rm(reference: str, force: bool = False) -> str:
    """``docker rm``: remove a container that is not running, with its upper layer and log;
    ``force`` kills a running one first. Return its id."""
    lab = store.reading()
    container_id = lab.find_container(reference)
    container = _view(lab, container_id)
    directory = lab.container_dir(container_id)
    if container.status == store.RUNNING or (container.status == DAMAGED
                                             and monitor.alive(directory)):
        if not force:
            raise LabError(f"cannot remove running container {container.name}: stop it first "
                           f"(labkit stop {container.name}), or use rm -f")
        _end(directory, signal.SIGKILL, None)
        # Its monitor may have been finishing, its socket closed and its state not yet
        # written: then _end found no one to tell, and only its exit says it is done.
        monitor.wait_gone(directory)
    if force:
        _stop_orphans(lab, container_id, 0)
    else:
        _refuse_orphaned(lab, container_id, "remove it, or use rm -f")
    _settle(lab, container_id)
    with store.writing() as lab:
        container_id = lab.find_container(container_id)
        if monitor.alive(lab.container_dir(container_id)):
            raise LabError(f"container {container.name} was started again meanwhile: "
                           f"stop it first")
        networking.detach(lab, container_id)  # a lease its killed monitor could not end
        limiting.remove(container_id)  # and its cgroup
        lab.remove_container(container_id)
    return container_id


def _stop_orphans(lab: store.Store, container_id: str, grace: float) -> None:
    """Stop the container's processes that run on without its monitor, if any, as ``stop``
    would through the monitor (``labkit.engine.reconcile``)."""
    from labkit.engine import reconcile

    orphaned = reconcile.orphans(lab, container_id)
    if orphaned:
        reconcile.stop_orphans(lab, container_id, orphaned, grace)


def _refuse_orphaned(lab: store.Store, container_id: str, then: str) -> None:
    """A LabError if the container's processes run on without its monitor: nothing may run a
    second instance on its upper directory, nor take its files from under it."""
    from labkit.engine import reconcile

    orphaned = reconcile.orphans(lab, container_id)
    for pidfd in orphaned:
        os.close(pidfd)
    if orphaned:
        name = _view(lab, container_id).name
        raise LabError(f"container {name} still runs without its monitor ({len(orphaned)} "
                       f"processes): stop it first (labkit stop {name}), then {then}")


def _end(directory: Path, first: signal.Signals, grace: float | None) -> None:
    """Send ``first`` through the monitor, SIGKILL after ``grace`` seconds, and return once
    the monitor has exited. Nothing to do when no monitor listens."""
    connection = Connection.to(directory, store.SOCKET)
    if connection is None:
        return
    with closing(connection):
        connection.send_control(Kind.SIGNAL, number=first)
        if not _ended_within(connection, grace):
            connection.send_control(Kind.SIGNAL, number=signal.SIGKILL)
            _ended_within(connection, None)


def _ended_within(connection: Connection, seconds: float | None) -> bool:
    """Whether the monitor's stream ends (it exits) within ``seconds`` (None: waits)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while True:
        left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        connection.socket.settimeout(left)
        try:
            if connection.receive() is None:
                return True
        except TimeoutError:
            return False


# ---------------------------------------------------------------------------------------------
# logs, exec, attach


def log_entries(reference: str, follow: bool = False) -> Iterator[LogEntry]:
    """Each chunk the container printed, in order; with ``follow``, also what it prints from
    now on, until it ends."""
    lab = store.reading()
    directory = lab.container_dir(lab.find_container(reference))
    with open(directory / store.LOG, "rb") as log:
        partial = b""
        while True:
            running = follow and monitor.alive(directory)  # before reading: see _view
            chunk = log.read()
            *lines, partial = (partial + chunk).split(b"\n")
            for line in lines:
                record = json.loads(line)
                yield LogEntry(record["time"], record["stream"], record["log"])
            if not running:
                return
            if not chunk:
                time.sleep(0.05)


def logs(reference: str) -> str:
    """``docker logs``: everything the container has printed, stdout and stderr interleaved."""
    return "".join(entry.text for entry in log_entries(reference))


def running(reference: str) -> Container:
    """The container ``reference`` names, which must be running (a LabError if not)."""
    container = inspect(reference)
    if container.status == DEAD:  # its processes may run on, unwatched: start would refuse
        raise LabError(f"container {container.name} lost its monitor, so nothing can be run in "
                       f"it: stop it (labkit stop {container.name}), then start it again")
    if container.status != store.RUNNING:
        raise LabError(f"container {container.name} is not running: start it first "
                       f"(labkit start {container.name})")
    return container


def exec_argv(container: Container, command: Sequence[str],
              console_fd: int | None = None) -> list[str]:
    """The ``exec`` helper's command line, for ``command`` in the running ``container``."""
    if not command:
        raise LabError("no command to run: give one after the container")
    links_env = container.lease.links_env if container.lease else {}
    return joining_argv(container.state.init_pid, container.state.init_start, list(command),
                        {**container.config.env, **links_env}, container.config.workdir,
                        _seccomp_program(container.config), console_fd)


def exec(reference: str, command: Sequence[str], *, input: str | None = None) -> Outcome:
    """``docker exec``: run ``command`` in a running container's namespaces, and wait."""
    container = running(reference)
    done = subprocess.run(exec_argv(container, command), input=input or "",
                          capture_output=True, text=True, errors="replace")
    code = shell_code(done.returncode)
    lab_failed = code in (125, 126, 127) and done.stderr.startswith("labkit: ")
    error = done.stderr.strip().removeprefix("labkit: ") if lab_failed else None
    return Outcome(container.id, code, done.stdout, done.stderr, error)


def attach(reference: str) -> tuple[Container, Connection]:
    """Connect to a running container's monitor to receive its output (and send input)."""
    container = running(reference)
    connection = Connection.to(store.reading().container_dir(container.id), store.SOCKET)
    if connection is None:
        raise LabError(f"container {container.name} has just stopped")
    connection.send_control(Kind.HELLO, attach=True)
    return container, connection


# ---------------------------------------------------------------------------------------------
# commit, rmi and gc


def commit(reference: str, image: str) -> store.Image:
    """``docker commit``: the new image ``image`` is the container's image plus one layer, a
    copy of the container's upper (``labkit.engine.commit``). Return it."""
    from labkit.engine.commit import commit as commit_container

    return commit_container(reference, image)


def rmi(image: str) -> list[str]:
    """``docker rmi``: remove an image; return the digests of the layers that went with it
    (``labkit.engine.rmi``)."""
    from labkit.engine.rmi import rmi as remove_image

    return remove_image(image)


def gc() -> list[str]:
    """``labkit gc``: make the store agree with what runs after a crash
    (``labkit.engine.reconcile``), in a process of its own; return what it did, line by line."""
    from labkit.engine.reconcile import in_fresh_process

    return in_fresh_process()
