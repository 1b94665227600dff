"""``--link NAME[:ALIAS]``: one container finds another by a name, as the article's web app finds
its MySQL (``--link mysql:mysql``).

A link is two things written into the new container, both taken from the linked one as it runs
now: a line of ``/etc/hosts`` giving its address under the alias (and its name and id), and
docker's legacy environment, which names its exposed ports: ``DB_PORT_5432_TCP_ADDR=10.87.0.2``,
``DB_PORT_5432_TCP_PORT=5432``, ``DB_PORT=tcp://10.87.0.2:5432``, its own variables as
``DB_ENV_...``, and ``DB_NAME=/web/db``. docker has since replaced links with user-defined
networks and their name server; the idea, names written into the container, is the same.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from labkit.engine import leases, names, store
from labkit.errors import LabError

_NOT_PASSED_ON = {"PATH", "HOME", "HOSTNAME"}  # the linked container's own, not its settings


@dataclass(frozen=True)
class Peer:
    """A linked container as the new one sees it."""

    alias: str
    config: store.ContainerConfig
    address: str
    exposed: list[str]  # its ports, such as 80/tcp

    def hosts_line(self) -> tuple[str, str]:
        return self.address, f"{self.alias} {self.config.name} {names.short(self.config.id)}"

    def environment(self, own_name: str) -> dict[str, str]:
        prefix = re.sub(r"[^A-Z0-9_]", "_", self.alias.upper())
        env = {f"{prefix}_NAME": f"/{own_name}/{self.alias}"}
        for exposed in self.exposed:
            port, protocol = exposed.split("/")
            where = f"{prefix}_PORT_{port}_{protocol.upper()}"
            env.update({where: f"{protocol}://{self.address}:{port}",
                        f"{where}_ADDR": self.address, f"{where}_PORT": port,
                        f"{where}_PROTO": protocol})
        if self.exposed:
            port, protocol = self.exposed[0].split("/")
            env[f"{prefix}_PORT"] = f"{protocol}://{self.address}:{port}"
        for key, value in self.config.env.items():
            if key not in _NOT_PASSED_ON:
                env[f"{prefix}_ENV_{key}"] = value
        return env


def parse(text: str) -> tuple[str, str]:
    """``NAME[:ALIAS]`` -> ``(NAME, ALIAS)``; the alias is the name if not given."""
    name, _, alias = text.partition(":")
    alias = alias or name
    if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", alias):
        raise LabError(f"invalid --link {text!r}: use NAME or NAME:ALIAS, an alias of letters, "
                       f"digits, '_', '.' and '-'")
    return name, alias


def peers(lab: store.Store, links: Sequence[str], exposed_of) -> list[Peer]:
    """The containers ``links`` name, each running on the bridge; ``exposed_of(config)`` lists
    a container's exposed ports. A LabError for one that is unknown, stopped or off the bridge."""
    found = []
    for text in links:
        name, alias = parse(text)
        try:
            container_id = lab.find_container(name)
        except LabError:
            raise LabError(f"cannot link to {name!r}: no such container") from None
        lease = leases.read(lab, container_id)
        if lease is None:
            raise LabError(f"cannot link to {name!r}: it is not running on the bridge "
                           f"(labkit start {name}, and run it without --network none/host)")
        config = lab.container_config(container_id)
        found.append(Peer(alias, config, lease.address, exposed_of(config)))
    return found
