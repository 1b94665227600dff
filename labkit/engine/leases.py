"""Addresses and ports leased to running containers: who has what on the bridge.

There is one bridge per host, but there may be several stores (a learner's, a test session's),
so who holds an address cannot be a store's secret. Each address and each published port a
container holds is a *claim*: a file under ``/run/labkit/`` named after it (``addresses/
10.87.0.2``, ``ports/tcp-127.0.0.1-8080``), made with O_EXCL, which the kernel lets only one
process create: two containers starting at once, from any store, cannot take the same one.
Each file names its owner, the store and the container. ``/run`` is emptied at boot, as the
bridge and its containers are gone then too. (CNI's host-local allocator keeps its leases the
same way.)

The container's own directory keeps a copy of what it holds, ``network.json``, for ``port``
and ``inspect``. The monitor releases it all when the container ends, and ``gc`` does for a
container whose monitor was killed; like docker, a container gets an address for each run.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labkit.engine import store
from labkit.engine.ports import Port
from labkit.errors import LabError

RECORD = "network.json"
ADDRESSES, PORTS = "addresses", "ports"


def claims_dir() -> Path:
    """Where the host's claims are: /run/labkit, unless LABKIT_RUN says otherwise."""
    return Path(os.environ.get("LABKIT_RUN") or "/run/labkit")


@dataclass(frozen=True)
class Lease:
    """What a running container holds: its address on the subnet, its published ports, and
    the variables of its links (which name the linked containers' addresses of this run)."""

    address: str
    prefix: int
    gateway: str
    ports: list[Port] = field(default_factory=list)
    links_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict) -> Lease:
        return cls(data["address"], data["prefix"], data["gateway"],
                   [Port(**port) for port in data["ports"]], data.get("links_env", {}))


def read(lab: store.Store, container_id: str) -> Lease | None:
    """The container's lease, if it holds one."""
    try:
        text = (lab.container_dir(container_id) / RECORD).read_text()
    except FileNotFoundError:
        return None
    return Lease.from_json(json.loads(text))


def take_address(lab: store.Store, container_id: str, network: ipaddress.IPv4Network,
                 gateway: ipaddress.IPv4Address) -> ipaddress.IPv4Address:
    """Claim the lowest free address of ``network`` other than the gateway's."""
    for address in network.hosts():
        if address != gateway and _claim(ADDRESSES, str(address), lab, container_id):
            return address
    raise LabError(f"no free address in the lab's subnet {network}: every one is held by a "
                   f"running container; stop some, or set LABKIT_SUBNET to a larger subnet")


def take_ports(lab: store.Store, container_id: str, ports: list[Port]) -> None:
    """Claim each published port; if one is taken, release those claimed and say which."""
    taken: list[Port] = []
    for port in ports:
        if _claim(PORTS, _port_key(port), lab, container_id):
            taken.append(port)
            if not _overlaps(port):
                continue
        for claimed in taken:
            _release(PORTS, _port_key(claimed))
        raise LabError(f"cannot publish {port.host_ip}:{port.host_port}/{port.protocol}: "
                       f"port is already allocated to another container")


def published() -> list[Port]:
    """Every port claimed on this host, by any store's containers."""
    return [_port_of(key) for key in _claims(PORTS)]


def record(lab: store.Store, container_id: str, lease: Lease) -> None:
    lab.save_container_file(container_id, RECORD, json.dumps(asdict(lease), indent=2) + "\n")


def release(lab: store.Store, container_id: str) -> Lease | None:
    """End the container's lease: its claims, then its record. What it held, or None."""
    lease = read(lab, container_id)
    for kind, key in _owned(lab, container_id):
        _release(kind, key)
    (lab.container_dir(container_id) / RECORD).unlink(missing_ok=True)
    return lease


def release_stale() -> list[str]:
    """Release the claims whose container is gone, its store or its directory removed while it
    held them; return their names. (A container of this store that merely lost its monitor
    is ``gc``'s to release, with the rest of it.)"""
    found = []
    for kind in (ADDRESSES, PORTS):
        for key, owner in _claims(kind).items():
            root, _, container_id = owner.partition(" ")
            if not (Path(root) / "containers" / container_id).is_dir():
                _release(kind, key)
                found.append(key)
    return found


def any_held() -> bool:
    """Whether any container of any store holds an address on this host."""
    return bool(_claims(ADDRESSES) or _claims(PORTS))


def _claim(kind: str, key: str, lab: store.Store, container_id: str) -> bool:
    directory = claims_dir() / kind
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(directory / key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as file:
        file.write(f"{lab.root} {container_id}")
    return True


def _release(kind: str, key: str) -> None:
    (claims_dir() / kind / key).unlink(missing_ok=True)


def _claims(kind: str) -> dict[str, str]:
    directory = claims_dir() / kind
    if not directory.is_dir():
        return {}
    return {path.name: path.read_text() for path in directory.iterdir()}


def _owned(lab: store.Store, container_id: str) -> list[tuple[str, str]]:
    owner = f"{lab.root} {container_id}"
    return [(kind, key) for kind in (ADDRESSES, PORTS)
            for key, holder in _claims(kind).items() if holder == owner]


def _port_key(port: Port) -> str:
    return f"{port.protocol}-{port.host_ip}-{port.host_port}"


def _port_of(key: str) -> Port:
    protocol, host_ip, host_port = key.split("-")
    return Port(host_ip, int(host_port), 0, protocol)


def _overlaps(port: Port) -> bool:
    """Another claim for the same port on every address (0.0.0.0) or, for 0.0.0.0, on any."""
    return any(other.host_port == port.host_port and other.protocol == port.protocol
               and other.host_ip != port.host_ip and "0.0.0.0" in (port.host_ip, other.host_ip)
               for other in published())
