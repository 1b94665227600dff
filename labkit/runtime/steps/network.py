"""Step: a network stack of the container's own, loopback only (the network namespace).

A new network namespace has its own interfaces, addresses, routes, firewall and ports, and it
starts with a single interface, the loopback ``lo``, switched off. So the container can reach no
network at all, as ``docker run --network none``; a later lesson connects it with a veth pair.
Even ``127.0.0.1`` needs ``lo`` up, and a program that talks to itself (a database and its
client, a test server) expects that. So the step switches it on.

``ip link set lo up`` does it with a netlink message; underneath is an older and smaller
interface that needs no binary of the host: an ioctl on any socket, naming the interface in a
``struct ifreq``. SIOCGIFFLAGS reads its flags, SIOCSIFFLAGS writes them back with IFF_UP set.
The socket only carries the request (the ioctl acts on the namespace the socket belongs to);
it comes from ctypes rather than the ``socket`` module, whose enums cost the launcher more
time to import than the whole step takes.
"""

from __future__ import annotations

import fcntl
import os
import struct
from dataclasses import dataclass

from labkit.kernel.syscalls import AF_INET, CLONE_NEWNET, SOCK_CLOEXEC, SOCK_DGRAM, socket
from labkit.runtime.spec import Step

# From <linux/sockios.h> and <net/if.h>.
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

# struct ifreq: the interface's name in 16 bytes, then a 24-byte union; here its short flags.
_IFREQ = struct.Struct("16sh22x")


def bring_up(interface: str) -> None:
    """Switch ``interface`` on, as ``ip link set INTERFACE up`` does."""
    descriptor = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC)
    try:
        request = _IFREQ.pack(interface.encode(), 0)
        _, flags = _IFREQ.unpack(fcntl.ioctl(descriptor, SIOCGIFFLAGS, request))
        fcntl.ioctl(descriptor, SIOCSIFFLAGS, _IFREQ.pack(interface.encode(), flags | IFF_UP))
    finally:
        os.close(descriptor)


@dataclass(frozen=True)
class LoopbackNetwork(Step):
    """Give the container a network namespace with nothing but ``lo``, switched on."""

    namespaces = CLONE_NEWNET

    def apply(self) -> None:
        bring_up("lo")
