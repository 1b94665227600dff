"""The lab's firewall rules: one nftables table, ``inet labkit``, one place to look and to delete.

Published ports are destination NAT: a packet for the host's port 8080 has its destination
rewritten to the container's address and port 80 before the host routes it, and the replies are
rewritten back on their way out. docker does it with iptables rules plus, for connections from
the host's own loopback, a userland proxy process per port. The lab does it all in the kernel,
with rules that never change, and the ports in two *maps*, which ``publish`` and ``unpublish``
fill and empty: ``nft list table inet labkit`` shows the whole state at once.

- ``prerouting`` rewrites what arrives from other machines (ports published on 0.0.0.0 or on
  an address of the host's);
- ``output`` rewrites what the host itself sends: ``curl 127.0.0.1:8080`` from the host never
  passes prerouting;
- ``postrouting`` masquerades: a connection from the host's loopback leaves with the bridge's
  address as its source (a container cannot answer 127.0.0.1, which is its own), and the
  containers' connections to the world leave with the host's address (outbound NAT);
- ``forward`` lets the bridge's traffic through; where the host forwarded nothing before the lab
  switched forwarding on (``bridge.py``), it forwards nothing else now either.

Rules are loaded with ``nft -f -``, each change one transaction: all of it happens or none.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from collections.abc import Iterable

from labkit.engine.ports import Port
from labkit.errors import LabError

TABLE = "labkit"
# The rule that keeps forwarding to the bridge's traffic, marked so that reset can tell that
# the lab switched forwarding on.
ONLY_THE_BRIDGE = "the lab switched forwarding on: the bridge's traffic only"

_TABLE = """\
table inet labkit {{
    map published {{
        type inet_proto . ipv4_addr . inet_service : ipv4_addr . inet_service
    }}
    map published_any {{
        type inet_proto . inet_service : ipv4_addr . inet_service
    }}
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        fib daddr type local dnat ip to meta l4proto . ip daddr . th dport map @published
        fib daddr type local dnat ip to meta l4proto . th dport map @published_any
    }}
    chain output {{
        type nat hook output priority -100; policy accept;
        fib daddr type local dnat ip to meta l4proto . ip daddr . th dport map @published
        fib daddr type local dnat ip to meta l4proto . th dport map @published_any
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr 127.0.0.0/8 oifname "{bridge}" masquerade
        ip saddr {subnet} oifname != "{bridge}" masquerade
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname "{bridge}" accept
        oifname "{bridge}" accept
{only_the_bridge}    }}
}}
"""


def exists() -> bool:
    return _nft("list", "table", "inet", TABLE, check=False).returncode == 0


def create(subnet: ipaddress.IPv4Network, bridge: str, only_the_bridge: bool) -> None:
    """Load the table; ``only_the_bridge``: drop every other forwarded packet."""
    drop = f'        drop comment "{ONLY_THE_BRIDGE}"\n' if only_the_bridge else ""
    _load(_TABLE.format(bridge=bridge, subnet=subnet, only_the_bridge=drop))


def remove() -> bool:
    """Delete the table, rules, maps and all (``labkit reset``); True if there was one."""
    if not exists():
        return False
    _load(f"delete table inet {TABLE}\n")
    return True


def lab_switched_forwarding_on() -> bool:
    return exists() and ONLY_THE_BRIDGE in _nft("list", "chain", "inet", TABLE, "forward").stdout


def publish(ports: Iterable[Port], address: str) -> None:
    """Send each port's traffic to ``address``, in one transaction."""
    _load("".join(f"add element inet {TABLE} {_map(port)} "
                  f"{{ {_key(port)} : {address} . {port.port} }}\n" for port in ports))


def unpublish(ports: Iterable[Port]) -> None:
    """Stop sending the ports' traffic anywhere; a port already gone is no error."""
    published = set(elements())
    _load("".join(f"delete element inet {TABLE} {_map(port)} {{ {_key(port)} }}\n"
                  for port in ports if _key(port) in published))


def elements() -> list[str]:
    """Every published port's key, as ``tcp . 127.0.0.1 . 8080`` or ``tcp . 8080`` (on every
    address); what the host guard compares before and after a test."""
    if not exists():
        return []
    found = []
    for item in json.loads(_nft("-j", "list", "table", "inet", TABLE).stdout)["nftables"]:
        for element in item.get("map", {}).get("elem", []):
            key = element[0]["concat"]
            found.append(" . ".join(str(part) for part in key))
    return sorted(found)


def ruleset() -> str:
    """The table as the kernel holds it now, in nft's own words."""
    return _nft("list", "table", "inet", TABLE).stdout if exists() else ""


def _map(port: Port) -> str:
    return "published_any" if port.host_ip == "0.0.0.0" else "published"


def _key(port: Port) -> str:
    if port.host_ip == "0.0.0.0":
        return f"{port.protocol} . {port.host_port}"
    return f"{port.protocol} . {port.host_ip} . {port.host_port}"


def _load(script: str) -> None:
    if script:
        _nft("-f", "-", input=script)


def _nft(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    if shutil.which("nft") is None:
        raise LabError("nft is not installed: apt install nftables (./lab.sh setup does)")
    done = subprocess.run(["nft", *args], input=input, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise LabError(f"nft refused the lab's rules: {done.stderr.strip().splitlines()[0]}")
    return done
