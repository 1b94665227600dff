"""The lab's bridge, ``labkit0``: the virtual switch every ``--network bridge`` container is on.

docker makes ``docker0`` the first time it needs it and keeps it; so does the lab with
``labkit0``, and ``labkit reset`` removes it. The bridge has the subnet's first address, the
containers' gateway; each container gets another (``leases.py``). The subnet must not be one the
host already routes, or the host could no longer reach that network: 10.87.0.0/24 unless
``LABKIT_SUBNET`` says otherwise, and ``labkit doctor`` reports a collision.

Two switches of the host's are turned, both by docker too:

- ``route_localnet`` on the bridge alone, so that a connection from the host's own loopback
  (``curl 127.0.0.1:8080``) may be sent, once redirected (``nat.py``), to a container;
- IPv4 forwarding, without which the host passes no packet between the bridge and its other
  networks: the containers could not reach the internet. Where it was off, the lab forwards for
  its bridge only (``nat.py``), and ``reset`` turns it off again.

Links are made over netlink, with pyroute2.
"""

from __future__ import annotations

import ipaddress
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from labkit.errors import LabError

BRIDGE = "labkit0"
DEFAULT_SUBNET = "10.87.0.0/24"
FORWARDING = Path("/proc/sys/net/ipv4/ip_forward")
ROUTE_LOCALNET = Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet")
SYSFS = Path(f"/sys/class/net/{BRIDGE}/bridge")  # there only while labkit0 is a bridge


def subnet() -> ipaddress.IPv4Network:
    """The containers' subnet: ``LABKIT_SUBNET``, or 10.87.0.0/24; a LabError if unusable."""
    text = os.environ.get("LABKIT_SUBNET") or DEFAULT_SUBNET
    try:
        network = ipaddress.IPv4Network(text)
    except ValueError as error:
        raise LabError(f"LABKIT_SUBNET={text} is not an IPv4 subnet such as {DEFAULT_SUBNET}: "
                       f"{error}") from None
    if not 16 <= network.prefixlen <= 29:
        raise LabError(f"LABKIT_SUBNET={text}: use a prefix from /16 to /29, room for the "
                       f"gateway and at least a few containers")
    return network


def gateway(network: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The bridge's own address, which the containers route through: the subnet's first."""
    return network.network_address + 1


def colliding_routes(network: ipaddress.IPv4Network) -> list[str]:
    """The host's routes, other than the bridge's own, to addresses inside ``network``."""
    def collisions(ipr) -> list[str]:
        found = []
        for route in ipr.get_routes(family=2):
            destination = route.get_attr("RTA_DST")
            if destination is None or route.get_attr("RTA_TABLE") != 254:
                continue
            routed = ipaddress.IPv4Network(f"{destination}/{route['dst_len']}")
            device = _name_of(ipr, route.get_attr("RTA_OIF"))
            if device != BRIDGE and routed.overlaps(network):
                found.append(f"{routed} dev {device}")
        return found

    return _netlink(collisions)


def ensure() -> ipaddress.IPv4Network:
    """Make ``labkit0`` if it is missing, with the gateway's address and switched on; return
    the subnet. A link of that name that is no bridge is a LabError, and is left alone.

    Once made, the bridge is only looked at in /sys, where the kernel shows a bridge's
    settings: no netlink, and no import of pyroute2, for each container started.
    """
    network = subnet()
    if SYSFS.is_dir():
        return network

    def make(ipr) -> None:
        found = ipr.link_lookup(ifname=BRIDGE)
        if not found:
            _refuse_collisions(network)
            ipr.link("add", ifname=BRIDGE, kind="bridge")
            found = ipr.link_lookup(ifname=BRIDGE)
        elif (kind := _kind(ipr.get_links(found[0])[0])) != "bridge":
            raise LabError(f"the host has a link named {BRIDGE} that is not a bridge (a "
                           f"{kind or 'device'}): remove it, or the lab cannot make its network")
        address = str(gateway(network))
        if address not in [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=found[0])]:
            ipr.addr("add", index=found[0], address=address, prefixlen=network.prefixlen)
        ipr.link("set", index=found[0], state="up")

    _netlink(make)
    ROUTE_LOCALNET.write_text("1\n")
    return network


def forwarding() -> bool:
    return FORWARDING.read_text().strip() == "1"


def set_forwarding(on: bool) -> None:
    FORWARDING.write_text("1\n" if on else "0\n")


def remove() -> bool:
    """Delete ``labkit0`` (``labkit reset``); True if there was one. Its address and routes go
    with it."""
    def delete(ipr) -> bool:
        found = ipr.link_lookup(ifname=BRIDGE)
        if found and _kind(ipr.get_links(found[0])[0]) == "bridge":
            ipr.link("del", index=found[0])
            return True
        return False

    return _netlink(delete)


def ports() -> list[str]:
    """The links plugged into ``labkit0``, the host's ends of running containers' veth pairs,
    as the kernel lists a bridge's ports in /sys."""
    try:
        return sorted(os.listdir(f"/sys/class/net/{BRIDGE}/brif"))
    except FileNotFoundError:
        return []


def wait_unplugged(link: str, seconds: float = 5.0) -> None:
    """Wait until ``link`` is gone from the host (a container's veth end, which the kernel
    removes a moment after the container's namespace dies); give up quietly after ``seconds``."""
    deadline = time.monotonic() + seconds
    while Path("/sys/class/net", link).exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def _refuse_collisions(network: ipaddress.IPv4Network) -> None:
    routes = colliding_routes(network)
    if routes:
        raise LabError(f"the lab's subnet {network} overlaps the host's route "
                       f"{routes[0]}: set LABKIT_SUBNET to a free one, such as 10.88.0.0/24")


def _kind(link) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info else None


def _name_of(ipr, index: int | None) -> str:
    links = ipr.get_links(index) if index else []
    return links[0].get_attr("IFLA_IFNAME") if links else "?"


def _netlink(work):
    """``work(ipr)`` with a netlink socket of this process's network namespace, on a thread of
    its own, and its result. pyroute2 drives the socket with an asyncio loop, which cannot run
    on a thread whose loop runs already, as a Jupyter kernel's does. Its import is paid only
    here: most of the lab never needs it."""
    from pyroute2 import IPRoute

    def job():
        with IPRoute() as ipr:
            return work(ipr)

    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(job).result()
