"""Lesson 07: a network of its own, then a way out: veth pairs, a bridge, published ports, links.

The sample shows what a new network namespace holds (``lo``, switched off) and the terminal
session wires it by hand, as the engine will; the rest of the lesson looks at the engine's work
on containers it starts itself (named ``l07-...``), from both sides of the veth pair, and at the
kernel's NAT rules that publish their ports.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from labkit import show
from labkit.engine import bridge, containers, nat
from labkit.lessons.checks import Exercise, expect
from labkit.lessons.lesson_containers import LessonContainers, running_answer
from labkit.lessons.terminal import Transcript, replay

CONTAINERS = LessonContainers("l07-")  # the lesson's, removed at its start and end
SESSION_SECONDS = 60
# The hand-made network of the sample: TEST-NET-3, reserved for documentation, so no real
# network is ever reached through it.
HAND_SUBNET = ipaddress.IPv4Network("203.0.113.0/24")
HAND_HOST, HAND_CONTAINER = "203.0.113.1", "203.0.113.2"
# busybox's httpd in the foreground, serving one page: the article's web app, in small.
PAGE = "hello from a container"
WEB = ["sh", "-c", f"mkdir -p /www && echo -n '{PAGE}' > /www/index.html && "
                   f"exec httpd -f -p 80 -h /www"]

def wiring(sample: Path) -> list[str]:
    """The host's side of the sample's session: start it, find the container's pid (the
    sample's child), wire a veth pair into its namespace, look from both sides, ping, end it."""
    return [
        f"{sample} sleep 1000 &",
        "sleep 0.5; ctr=$(cat /proc/$!/task/$!/children); echo container pid: $ctr",
        "nsenter -t $ctr -n ip -br link",
        "ip link add l07-host type veth peer name l07-ctr netns $ctr",
        f"ip addr add {HAND_HOST}/24 dev l07-host && ip link set l07-host up",
        f"nsenter -t $ctr -n sh -c 'ip addr add {HAND_CONTAINER}/24 dev l07-ctr && "
        f"ip link set l07-ctr up && ip link set lo up'",
        "nsenter -t $ctr -n ip -br addr",
        f"busybox ping -c 1 -W 2 {HAND_CONTAINER}",
        "kill $ctr; wait",
        "while ip link show l07-host >/dev/null 2>&1; do sleep 0.1; done; ip link show l07-host",
        "exit",
    ]


def wiring_session(sample: Path) -> Transcript:
    """The host's shell wiring the sample's network namespace by hand."""
    return replay(["env", "PS1=$ ", "sh"], wiring(sample), timeout=SESSION_SECONDS)


def free_of_host_routes(network: ipaddress.IPv4Network) -> list[str]:
    """The host's routes that would collide with ``network``: none, or the session's pings
    could go astray."""
    return bridge.colliding_routes(network)


def expect_only_lo_switched_off(sample_output: str) -> None:
    line = next((text for text in sample_output.splitlines()
                 if text.startswith("Container - my interfaces:")), "")
    expect("a new network namespace has one interface, lo, switched off",
           line == "Container - my interfaces: lo (DOWN)", line)


def expect_hand_wiring_worked(transcript: str) -> None:
    expect("inside, the veth's far end has the address the host gave it",
           re.search(rf"l07-ctr@\S+\s+UP\s+{re.escape(HAND_CONTAINER)}/24", transcript),
           transcript)
    expect("the host pings the container through the veth pair",
           "1 packets received" in transcript, transcript)
    expect("when the namespace dies, the kernel destroys the pair, the host's end too",
           'Device "l07-host" does not exist' in transcript, transcript)


# --- the engine's network, seen from both sides --------------------------------------------


def inside(container: containers.Container, *command: str) -> str:
    done = containers.exec(container.id, list(command))
    if done.exit_code != 0:
        raise RuntimeError(f"{' '.join(command)} failed in {container.name}: {done.stderr}")
    return done.stdout


def interfaces_table(container: containers.Container) -> show.Table:
    """The container's interfaces and addresses (busybox's ``ip -o``), beside the host's side
    of its cable: the veth end on the bridge, and the bridge's own address."""
    addresses: dict[str, list[str]] = {}
    for line in inside(container, "ip", "-o", "-4", "addr").splitlines():
        words = line.split()
        addresses.setdefault(words[1], []).append(words[3])
    rows = []
    for line in inside(container, "ip", "-o", "link").splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        flags = re.search(r"<([^>]*)>", line).group(1).split(",")
        rows.append([f"container {container.name}", name, "UP" if "UP" in flags else "DOWN",
                     ", ".join(addresses.get(name, [])) or "-"])
    veth = f"lkv{container.short_id}"
    rows.append(["host", veth, "UP" if veth in bridge.ports() else "gone",
                 f"plugged into {bridge.BRIDGE}"])
    subnet = bridge.subnet()
    rows.append(["host", bridge.BRIDGE, "UP", f"{bridge.gateway(subnet)}/{subnet.prefixlen}"])
    return show.Table(f"both ends of {container.name}'s cable",
                      ["side", "link", "state", "addresses"], rows)


def picture(running: Sequence[containers.Container]) -> show.Mermaid:
    """The host, its bridge, and each container on its veth pair, as a Mermaid graph."""
    lines = ["flowchart LR", f'    host["host: {bridge.gateway(bridge.subnet())}'
                             f' on {bridge.BRIDGE}"]',
             f'    bridge(("{bridge.BRIDGE}<br/>bridge"))', "    host --- bridge"]
    for index, container in enumerate(running):
        address = container.lease.address if container.lease else "?"
        lines.append(f'    c{index}["container {container.name}<br/>eth0 {address}"]')
        lines.append(f"    bridge ---|lkv{container.short_id} ~ eth0| c{index}")
    return show.Mermaid("\n".join(lines))


def expect_on_the_bridge(container: containers.Container) -> None:
    lease = container.lease
    expect("the container holds an address of the lab's subnet",
           lease is not None and ipaddress.IPv4Address(lease.address) in bridge.subnet(), lease)
    expect("its host end is plugged into the bridge",
           f"lkv{container.short_id}" in bridge.ports(), bridge.ports())
    expect("its default route goes through the bridge's address",
           routes_of(container)[:1] == [f"default via {lease.gateway} dev eth0"],
           routes_of(container))


def routes_of(container: containers.Container) -> list[str]:
    return [line.strip() for line in inside(container, "ip", "route").splitlines()]


# --- published ports -----------------------------------------------------------------------


def fetch(url: str, seconds: float = 20) -> str:
    """The page at ``url``, waiting a little for a server that is still starting."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return reply.read().decode()
        except (urllib.error.URLError, ConnectionError) as error:
            if time.monotonic() > deadline:
                return f"(nothing answered: {error})"
            time.sleep(0.1)


def labkit_session(typed: Sequence[str]) -> Transcript:
    """A shell with ``labkit`` on its PATH, ``typed`` a line at a prompt."""
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', os.defpath)}"
    return replay(["env", f"PATH={path}", "PS1=$ ", "sh"], typed, timeout=SESSION_SECONDS)


def expect_served(page: str) -> None:
    expect("the host's 127.0.0.1 port leads to the container's web server", page == PAGE, page)


def expect_port_line(said: str, container_port: str, host_port: int) -> None:
    wanted = f"{container_port} -> 127.0.0.1:{host_port}"
    expect(f"labkit port says {wanted}", wanted in said.splitlines(), said)


def published_table() -> show.Table:
    """The ports the lab published, as the kernel's maps hold them."""
    rows = [[key, value] for key, value in published_elements()]
    return show.Table(f"nft maps of table inet {nat.TABLE}", ["host side", "container side"],
                      rows)


def published_elements() -> list[tuple[str, str]]:
    """(``tcp . 127.0.0.1 . 8080``, ``10.87.0.2 . 80``) for each published port."""
    listing = re.findall(r"elements = \{([^}]*)\}", nat.ruleset())
    pairs = []
    for block in listing:
        for element in block.split(","):
            key, _, value = element.partition(":")
            pairs.append((" ".join(key.split()), " ".join(value.split())))
    return pairs


def expect_rule_for(host_port: int, address: str, port: int) -> None:
    found = [(key, value) for key, value in published_elements()
             if key.endswith(f" . {host_port}")]
    expect(f"the kernel's map sends port {host_port} to {address}:{port}",
           found == [(f"tcp . 127.0.0.1 . {host_port}", f"{address} . {port}")], found)


def expect_closed_after_stop(host_port: int) -> None:
    gone = all(not key.endswith(f" . {host_port}") for key, _ in published_elements())
    expect("once the container stops, its port is unpublished", gone, published_elements())


# --- links -----------------------------------------------------------------------------------


def expect_found_by_alias(page: str, env: dict[str, str], address: str) -> None:
    expect("the linked container answers at its alias", page == PAGE, page)
    expect("the link's variables name its address and port",
           env.get("DB_PORT_80_TCP") == f"tcp://{address}:80", env)


def environment_of(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


# --- clean-up and exercise -------------------------------------------------------------------


def tidy_earlier_run() -> str:
    return CONTAINERS.tidy_earlier_run()


def finish() -> str:
    return CONTAINERS.finish()


EXERCISE_PORT = 8081


def _serves_on_8081(answer) -> str | None:
    container = running_answer(answer)
    if isinstance(container, str):
        return container
    if container.lease is None:
        return f"{container.name} is not on the bridge: leave network= at its default"
    wanted = [p for p in container.lease.ports if (p.host_ip, p.host_port) ==
              ("127.0.0.1", EXERCISE_PORT)]
    if not wanted:
        return f"nothing publishes 127.0.0.1:{EXERCISE_PORT}: add publish=[...]"
    if wanted[0].port != EXERCISE_PORT:
        return (f"127.0.0.1:{EXERCISE_PORT} leads to the container's port {wanted[0].port}; "
                f"the server listens on {EXERCISE_PORT} inside")
    page = fetch(f"http://127.0.0.1:{EXERCISE_PORT}/", seconds=5)
    if page.startswith("(nothing answered"):
        return f"the port is published, but no server answers: {page}"
    return None


EXERCISE = Exercise(
    question=f"Run busybox's httpd listening on port {EXERCISE_PORT} inside a container named "
             f"l07-mine, and publish it on the host's 127.0.0.1:{EXERCISE_PORT}; pass the "
             f"Container.",
    verify=_serves_on_8081,
    hint_text="httpd -f -p PORT -h DIR serves DIR on PORT; publish=['HOSTPORT:PORT'] maps a host "
              "port to the container's, and the two numbers need not be the same.",
    solution_text=f"answer = containers.run('busybox', ['sh', '-c', 'mkdir -p /w && echo hi > "
                  f"/w/index.html && exec httpd -f -p {EXERCISE_PORT} -h /w'], detach=True, "
                  f"name='l07-mine', publish=['{EXERCISE_PORT}:{EXERCISE_PORT}'])",
)
