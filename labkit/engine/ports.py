"""Published ports: ``-p [HOSTIP:][HOSTPORT:]PORT[/tcp|/udp]``, ``-P``, ``--expose``, ``port``.

A container on the bridge has an address only the host can reach. Publishing a port makes one
of the host's own ports lead to it: ``-p 8080:80`` sends what arrives at the host's port 8080 to
the container's port 80 (``nat.py`` does it, in the kernel). The lab publishes on 127.0.0.1
unless told otherwise (``-p 0.0.0.0:8080:80``): a lab container is an experiment, and a laptop
on a café's network should not serve it to the room. docker publishes on every address of the
host by default.

``-P`` publishes every port the container exposes (``--expose``, or the image's), each on a
host port the kernel chooses: the lab asks for port 0 and reads which port it got. Before a
port is taken, the lab checks that no host process listens on it (here), and that no other
container has it (``leases.py``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from labkit.errors import LabError

LOOPBACK = "127.0.0.1"
PROTOCOLS = ("tcp", "udp")
_SPEC = re.compile(r"(?:(?P<ip>[^:]*):)??(?:(?P<host>[^:]*):)?(?P<port>[^:/]+)(?:/(?P<proto>.*))?")


@dataclass(frozen=True)
class Port:
    """A published port: ``host_ip:host_port`` on the host leads to ``port`` in the container.
    ``host_port`` 0 asks the kernel for a free one."""

    host_ip: str
    host_port: int
    port: int
    protocol: str = "tcp"

    @property
    def exposed(self) -> str:
        return f"{self.port}/{self.protocol}"

    def __str__(self) -> str:
        """docker's ``port`` line: ``80/tcp -> 127.0.0.1:32768``."""
        return f"{self.exposed} -> {self.host_ip}:{self.host_port}"


def parse(text: str) -> Port:
    """``-p`` as docker reads it: ``80``, ``8080:80``, ``127.0.0.1:8080:80``, ``127.0.0.1::80``,
    each with ``/udp`` if wanted; a LabError names what is wrong."""
    found = _SPEC.fullmatch(text)
    if not found:
        raise LabError(f"invalid -p {text!r}: use [HOSTIP:][HOSTPORT:]PORT[/tcp|/udp], "
                       f"such as 8080:80")
    host_ip = found["ip"] or LOOPBACK
    _check_address(text, host_ip)
    host_port = _number(text, found["host"]) if found["host"] else 0
    return Port(host_ip, host_port, _number(text, found["port"]), _protocol(text, found["proto"]))


def parse_exposed(text: str) -> str:
    """``--expose 80`` or ``80/udp`` -> ``80/tcp`` or ``80/udp``."""
    port, _, protocol = text.partition("/")
    return f"{_number(text, port, flag='--expose')}/{_protocol(text, protocol or None)}"


def publish_all(exposed: Iterable[str]) -> list[Port]:
    """``-P``: each exposed port on the loopback, on a port the kernel chooses."""
    return [Port(LOOPBACK, 0, int(port), protocol)
            for port, protocol in (item.split("/") for item in sorted(set(exposed)))]


def choose(wanted: Sequence[Port]) -> list[Port]:
    """Each port with its host port chosen, and bindable: no host process listens on it. For
    host port 0 the kernel chooses. A LabError says which cannot be had."""
    return [_bind_test(port) for port in wanted]


def _bind_test(port: Port) -> Port:
    """Bind the host's side for a moment: the kernel refuses a port in use, and chooses one
    for port 0. The port returned has the host port the kernel gave."""
    kind = socket.SOCK_STREAM if port.protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((port.host_ip, port.host_port))
        except OSError as error:
            raise LabError(f"cannot publish {port.host_ip}:{port.host_port}/{port.protocol}: "
                           f"{error.strerror} (a host process may be using it)") from None
        return Port(port.host_ip, probe.getsockname()[1], port.port, port.protocol)


def _number(text: str, value: str, flag: str = "-p") -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise LabError(f"invalid {flag} {text!r}: {value!r} is not a port from 1 to 65535")
    return int(value)


def _protocol(text: str, value: str | None) -> str:
    if value is None:
        return "tcp"
    if value not in PROTOCOLS:
        raise LabError(f"invalid port {text!r}: the lab publishes tcp and udp, not {value!r}")
    return value


def _check_address(text: str, address: str) -> None:
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        raise LabError(f"invalid -p {text!r}: {address!r} is not an IPv4 address of the host "
                       f"(the lab's network is IPv4 only)") from None
