"""``/etc/hosts`` and ``/etc/resolv.conf``, which the engine writes for each container, as docker.

An image's own ``/etc/hosts`` knows nothing of the address the container got this run, nor of
the containers it is linked to; its ``resolv.conf`` knows nothing of the host's name servers. So
at each start the engine writes both in the container's directory, and the runtime binds them
over the image's (``steps/rootfs.py``), beside ``/etc/hostname``. A container cannot delete or
rename them (the mount is in the way: ``Device or resource busy``), but it can edit them.

A name server on the host's loopback (systemd-resolved's 127.0.0.53, on Ubuntu) is of no use
inside: there 127.0.0.53 is the container's own loopback. docker then reads the real servers
from systemd-resolved's other file; so does the lab.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path

HOSTS = "hosts"
RESOLV_CONF = "resolv.conf"
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
RESOLVED_UPSTREAM = Path("/run/systemd/resolve/resolv.conf")  # systemd-resolved's real servers


def hosts(hostname: str, address: str | None, linked: Sequence[tuple[str, str]] = ()) -> str:
    """The container's /etc/hosts: localhost, itself at ``address`` (None: no network), and
    each ``(address, names)`` of ``linked``, its link alias first."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if address:
        lines.append(f"{address}\t{hostname}")
    lines += [f"{peer}\t{names}" for peer, names in linked]
    return "\n".join(lines) + "\n"


def resolv_conf(host_file: Path = HOST_RESOLV_CONF,
                resolved_file: Path = RESOLVED_UPSTREAM) -> str:
    """The host's resolv.conf without its loopback name servers; systemd-resolved's upstream
    servers where the host has only its stub."""
    lines = _lines(host_file)
    servers = _servers(lines)
    if servers and all(_loopback(server) for server in servers):
        lines = _lines(resolved_file) or lines
    kept = [line for line in lines if not any(_loopback(s) for s in _servers([line]))]
    if not _servers(kept):
        kept.append("# no name server: the host's are on its own loopback, out of a container's "
                    "reach")
    return "\n".join(kept) + "\n"


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError:
        return []


def _servers(lines: list[str]) -> list[str]:
    return [words[1] for words in map(str.split, lines)
            if len(words) > 1 and words[0] == "nameserver"]


def _loopback(server: str) -> bool:
    try:
        return ipaddress.ip_address(server).is_loopback
    except ValueError:
        return False
