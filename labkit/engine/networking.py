"""A container's network, set up by the engine at each start and taken down at its end.

``--network`` chooses one of docker's three:

- ``bridge`` (the default): a namespace of its own, joined to the lab's bridge by a veth pair
  (``runtime/steps/veth.py``), with an address leased for this run (``leases.py``), its
  published ports (``ports.py``, ``nat.py``), and ``/etc/hosts`` naming its links
  (``links.py``, ``etc_files.py``);
- ``none``: a namespace with only ``lo`` (``runtime/steps/network.py``), as lesson 06's were;
- ``host``: no namespace: the container shares the host's interfaces, addresses and ports.

What the runtime needs comes back as a ``Wiring``: the network step for its spec, the link
variables for its environment, and the files to bind into its ``/etc``. ``detach`` undoes the
lease and the ports; the veth pair needs nothing, it goes with the container's namespace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labkit.engine import bridge, etc_files, leases, links, names, nat, ports, store
from labkit.errors import LabError
from labkit.runtime.spec import Step
from labkit.runtime.steps.network import LoopbackNetwork
from labkit.runtime.steps.veth import BridgedNetwork

BRIDGE, NONE, HOST = "bridge", "none", "host"
MODES = (BRIDGE, NONE, HOST)
VETH_PREFIX = "lkv"  # the host's end of a container's pair: lkv + 12 digits of its id


@dataclass
class Wiring:
    """What a start needs of the network: the runtime's step (None: the host's network), the
    link variables, and the engine's files bound over the image's, as (host file, path)."""

    step: Step | None
    env: dict[str, str] = field(default_factory=dict)
    files: list[tuple[Path, str]] = field(default_factory=list)


@dataclass(frozen=True)
class NetworkOptions:
    """docker run's network flags: ``--network``, ``-p``, ``-P``, ``--expose``, ``--link``."""

    mode: str = BRIDGE
    publish: Sequence[str] = ()
    publish_all: bool = False
    expose: Sequence[str] = ()
    links: Sequence[str] = ()

    def check(self) -> None:
        """Refuse, before anything is made, what no start could do."""
        if self.mode not in MODES:
            raise LabError(f"unknown --network {self.mode!r}: the lab has bridge (the "
                           f"default), none and host")
        for text in self.publish:
            ports.parse(text)
        for text in self.expose:
            ports.parse_exposed(text)
        for text in self.links:
            links.parse(text)
        if self.mode != BRIDGE and (self.publish or self.publish_all or self.links):
            raise LabError(f"-p, -P and --link need --network bridge, not {self.mode}: a port "
                           f"or a link leads to the container's own address, which "
                           f"{self.mode} has not")

    def configure(self, config: store.ContainerConfig, image: store.Image) -> None:
        """Write the options into a new container's config; it exposes its image's ports too."""
        config.network = self.mode
        config.publish = list(self.publish)
        config.publish_all = self.publish_all
        config.expose = sorted({*image.exposed, *map(ports.parse_exposed, self.expose)})
        config.links = list(self.links)


DEFAULTS = NetworkOptions()


def attach(lab: store.Store, config: store.ContainerConfig) -> Wiring:
    """Set up the container's network for a start; call with the store's lock held."""
    directory = lab.container_dir(config.id)
    if config.network == HOST:
        return Wiring(None, files=_host_files(lab, config.id))
    if config.network == NONE:
        _write_etc(lab, config.id, etc_files.hosts(config.hostname, None))
        return Wiring(LoopbackNetwork(), files=_etc(directory))
    peers = links.peers(lab, config.links, exposed_ports)
    subnet = prepare()
    gateway = bridge.gateway(subnet)
    address = leases.take_address(lab, config.id, subnet, gateway)
    published = ports.choose(_wanted(config))
    leases.take_ports(lab, config.id, published)
    env = {key: value for peer in peers for key, value in peer.environment(config.name).items()}
    lease = leases.Lease(str(address), subnet.prefixlen, str(gateway), published, env)
    leases.record(lab, config.id, lease)
    nat.publish(lease.ports, lease.address)
    _write_etc(lab, config.id, etc_files.hosts(config.hostname, lease.address,
                                               [peer.hosts_line() for peer in peers]))
    step = BridgedNetwork(bridge.BRIDGE, VETH_PREFIX + names.short(config.id),
                          f"{lease.address}/{lease.prefix}", lease.gateway)
    return Wiring(step, env, _etc(directory))


def detach(lab: store.Store, container_id: str) -> leases.Lease | None:
    """Unpublish the container's ports and end its lease, whatever of it was made; safe to
    call twice. What it held, or None.

    Called once the container's processes are gone: its namespace goes with the last of them,
    and its veth pair with the namespace, but the kernel does that a moment later, in the
    background. Wait for the host's end to go, so that "stopped" means unplugged.
    """
    lease = leases.read(lab, container_id)
    if lease is not None:
        nat.unpublish(lease.ports)
    leases.release(lab, container_id)
    bridge.wait_unplugged(VETH_PREFIX + names.short(container_id))
    return lease


def exposed_ports(config: store.ContainerConfig) -> list[str]:
    """The ports a container exposes: its image's and ``--expose``'s, and those it publishes."""
    published = [ports.parse(text).exposed for text in config.publish]
    return sorted(set(config.expose) | set(published), key=lambda p: int(p.split("/")[0]))


def prepare():
    """The bridge and the lab's table, made the first time; forwarding on. The subnet."""
    subnet = bridge.ensure()
    if not nat.exists():
        switching_on = not bridge.forwarding()
        nat.create(subnet, bridge.BRIDGE, only_the_bridge=switching_on)
        if switching_on:
            bridge.set_forwarding(True)
    return subnet


def teardown() -> list[str]:
    """Remove the lab's table and bridge, and switch forwarding off if the lab switched it
    on (``labkit reset``); what was done, a line each. Not while a container of another store
    holds an address: they share the bridge. (A veth end still on it belongs to a container
    that has just died, whose namespace the kernel is taking down.)"""
    leases.release_stale()
    if leases.any_held():
        return []
    done = []
    if nat.lab_switched_forwarding_on():
        bridge.set_forwarding(False)
        done.append("switched IPv4 forwarding off again, as the lab found it")
    if nat.remove():
        done.append(f"removed the nftables table inet {nat.TABLE}")
    if bridge.remove():
        done.append(f"removed the bridge {bridge.BRIDGE}")
    return done


def _wanted(config: store.ContainerConfig) -> list[ports.Port]:
    wanted = [ports.parse(text) for text in config.publish]
    if config.publish_all:
        wanted += ports.publish_all(exposed_ports(config))
    return wanted


def _write_etc(lab: store.Store, container_id: str, hosts: str) -> None:
    lab.save_container_file(container_id, etc_files.HOSTS, hosts)
    lab.save_container_file(container_id, etc_files.RESOLV_CONF, etc_files.resolv_conf())


def _host_files(lab: store.Store, container_id: str) -> list[tuple[Path, str]]:
    """``--network host``: the host's own hosts and resolv.conf, copied as they are now."""
    for name, source in ((etc_files.HOSTS, Path("/etc/hosts")),
                         (etc_files.RESOLV_CONF, etc_files.HOST_RESOLV_CONF)):
        lab.save_container_file(container_id, name, source.read_text())
    return _etc(lab.container_dir(container_id))


def _etc(directory: Path) -> list[tuple[Path, str]]:
    return [(directory / etc_files.HOSTS, "/etc/hosts"),
            (directory / etc_files.RESOLV_CONF, "/etc/resolv.conf")]
