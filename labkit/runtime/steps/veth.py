"""Step: a network namespace joined to the host by a veth pair on a bridge (``--network bridge``).

A veth pair is a virtual cable: two interfaces, and what goes in at one end comes out of the
other. Put one end in the container's network namespace, renamed ``eth0``, and plug the other
into a bridge on the host (a virtual switch, ``labkit0`` as docker's ``docker0``): the container
is on a network with the host and with every other container on that bridge. Then it needs an
address on the bridge's subnet, ``lo`` and ``eth0`` switched on, and a default route through the
bridge's own address, the gateway; the engine leased the address and made the bridge.

The wiring needs both sides at once: the host's namespace, where the bridge is, and the
container's. A netlink socket talks to the network namespace it was made in, for its whole life,
wherever its process moves. So this step opens one while still in the host's namespace, *then*
unshares the network namespace (which is why it declares none for the launcher to unshare), and
through that socket creates the pair with its second end already in the new namespace, and
plugs the first into the bridge. A second socket, made inside, sets up ``eth0``.

Nothing needs undoing: when the container's last process exits its namespace goes, and the
kernel destroys ``eth0`` and with it the host's end of the cable.

Netlink comes from pyroute2, whose import (about 0.2 s) only containers on a bridge pay.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from labkit.errors import LabError
from labkit.kernel.syscalls import CLONE_NEWNET, unshare
from labkit.runtime.spec import Step

CONTAINER_END = "eth0"


@dataclass(frozen=True)
class BridgedNetwork(Step):
    """Put the container on ``bridge`` through a veth pair: ``host_end`` stays on the host,
    the other end becomes the container's ``eth0`` with ``address`` (CIDR, ``10.87.0.2/24``)
    and a default route through ``gateway``."""

    bridge: str
    host_end: str
    address: str
    gateway: str

    def apply(self) -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            with IPRoute() as host:
                unshare(CLONE_NEWNET)
                self._plug(host)
            with IPRoute() as inside:
                self._configure(inside)
        except NetlinkError as error:
            raise LabError(f"cannot wire the container to {self.bridge}: "
                           f"{os.strerror(error.code)}") from None

    def _plug(self, host) -> None:
        """Through the host's socket: the pair, its far end in this new namespace, its near
        end on the bridge and switched on."""
        [bridge] = host.link_lookup(ifname=self.bridge) or [None]
        if bridge is None:
            raise LabError(f"there is no bridge {self.bridge} on the host to plug into")
        here = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            host.link("add", ifname=self.host_end, kind="veth",
                      peer={"ifname": CONTAINER_END, "net_ns_fd": here})
        finally:
            os.close(here)
        host.link("set", ifname=self.host_end, master=bridge, state="up")

    def _configure(self, inside) -> None:
        """Through a socket of the container's own namespace: ``lo`` and ``eth0`` up, the
        address, the default route."""
        address, prefix = self.address.split("/")
        [eth0] = inside.link_lookup(ifname=CONTAINER_END)
        inside.addr("add", index=eth0, address=address, prefixlen=int(prefix))
        inside.link("set", index=eth0, state="up")
        [lo] = inside.link_lookup(ifname="lo")
        inside.link("set", index=lo, state="up")
        inside.route("add", dst="0.0.0.0/0", gateway=self.gateway)
