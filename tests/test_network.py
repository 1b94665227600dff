"""Lesson 07's network, for real: veth pairs on the lab's bridge, published ports, links, NAT.

Every packet here goes to 127.0.0.1 or to addresses inside network namespaces the tests made:
the containers', and an "upstream" namespace standing in for the internet. The host guard
checks after each test that no veth end, published port or claim is left.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import time

import pytest
from containers_support import assert_one_line, labkit, removing_new_containers, store_files

from labkit.engine import bridge, containers, leases, monitor, nat, networking, store
from labkit.lessons.networks import fetch  # the page, or what answered instead
from tests.conftest import LABKIT

PAGE = "served by a container\n"
# busybox's httpd in the foreground, serving PAGE; what the article's web app stands for.
WEB = ["sh", "-c", f"mkdir -p /www && echo -n '{PAGE}' > /www/index.html && "
                   f"exec httpd -f -p 80 -h /www"]


@pytest.fixture(autouse=True)
def _remove_what_the_test_made(base_image):
    with removing_new_containers():
        yield


def refused(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(5)
        return probe.connect_ex((host, port)) != 0


def lease_of(container: containers.Container) -> leases.Lease:
    lease = leases.read(store.reading(), container.id)
    assert lease is not None
    return lease


def run_in(container: containers.Container, *command: str) -> str:
    done = containers.exec(container.id, list(command))
    assert done.exit_code == 0, done
    return done.stdout


# --- publishing ports ---------------------------------------------------------------------------


def test_a_published_port_serves_the_container_s_page_on_the_host_s_loopback():
    web = containers.run("busybox", WEB, detach=True, name="net-web", publish=["127.0.0.1::80"])
    [published] = containers.port("net-web")
    assert (published.host_ip, published.port, published.protocol) == ("127.0.0.1", 80, "tcp")
    assert fetch(f"http://127.0.0.1:{published.host_port}/") == PAGE
    said = labkit("port", "net-web")
    assert said.stdout == f"80/tcp -> 127.0.0.1:{published.host_port}\n"
    assert labkit("port", "net-web", "80").stdout == f"127.0.0.1:{published.host_port}\n"
    assert f"tcp . 127.0.0.1 . {published.host_port}" in nat.elements()
    containers.stop(web.id, timeout=1)
    assert refused("127.0.0.1", published.host_port)
    assert f"tcp . 127.0.0.1 . {published.host_port}" not in nat.elements()
    assert containers.port("net-web") == []


def test_dash_p_with_a_host_port_and_dash_big_p_with_the_kernel_s_choice():
    free = _free_port()
    containers.run("busybox", WEB, detach=True, name="net-fixed", publish=[f"{free}:80"])
    assert fetch(f"http://127.0.0.1:{free}/") == PAGE
    containers.run("busybox", WEB, detach=True, name="net-all", expose=["80", "53/udp"],
                   publish_all=True)
    chosen = {port.exposed: port for port in containers.port("net-all")}
    assert set(chosen) == {"80/tcp", "53/udp"}
    assert all(port.host_ip == "127.0.0.1" and port.host_port > 1024 for port in chosen.values())
    assert fetch(f"http://127.0.0.1:{chosen['80/tcp'].host_port}/") == PAGE


def test_a_port_published_on_every_address_is_reached_on_the_host_s_own_address():
    free = _free_port()
    containers.run("busybox", WEB, detach=True, publish=[f"0.0.0.0:{free}:80"])
    assert f"tcp . {free}" in nat.elements()
    assert fetch(f"http://127.0.0.1:{free}/") == PAGE
    assert fetch(f"http://{_host_address()}:{free}/") == PAGE


# --- addresses, names and links -----------------------------------------------------------------


def test_two_containers_reach_each_other_by_address_and_by_link_alias():
    web = containers.run("busybox", WEB, detach=True, name="net-db", expose=["80"],
                         env=["SECRET=kept"])
    address = lease_of(web).address
    client = containers.run("busybox", ["sleep", "1000"], detach=True, name="net-app",
                            links=["net-db:db"])
    assert run_in(client, "wget", "-qO-", f"http://{address}/") == PAGE
    assert run_in(client, "wget", "-qO-", "http://db/") == PAGE
    hosts = run_in(client, "cat", "/etc/hosts").splitlines()
    assert f"{address}\tdb net-db {web.short_id}" in hosts
    assert f"{lease_of(client).address}\t{client.config.hostname}" in hosts
    env = dict(line.split("=", 1) for line in run_in(client, "env").splitlines())
    assert {key: value for key, value in env.items() if key.startswith("DB_")} == {
        "DB_NAME": "/net-app/db", "DB_PORT": f"tcp://{address}:80",
        "DB_PORT_80_TCP": f"tcp://{address}:80", "DB_PORT_80_TCP_ADDR": address,
        "DB_PORT_80_TCP_PORT": "80", "DB_PORT_80_TCP_PROTO": "tcp", "DB_ENV_SECRET": "kept"}


def test_a_bridged_container_has_lo_and_eth0_with_its_lease_and_a_route_through_the_bridge():
    box = containers.run("busybox", ["sleep", "1000"], detach=True)
    lease = lease_of(box)
    assert lease.gateway == str(bridge.gateway(bridge.subnet()))
    links = run_in(box, "ip", "-o", "link")
    assert [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()] == \
        ["lo", "eth0"]
    assert f"inet {lease.address}/{lease.prefix}" in run_in(box, "ip", "-o", "addr", "show", "eth0")
    assert run_in(box, "ip", "route").splitlines()[0].strip() == \
        f"default via {lease.gateway} dev eth0"
    assert f"lkv{box.short_id}" in bridge.ports()
    resolv = run_in(box, "cat", "/etc/resolv.conf")
    assert "127.0.0" not in resolv


def test_network_none_has_only_lo_and_host_shares_the_host_s_links():
    alone = containers.run("busybox", ["ip", "-o", "link"], network="none")
    assert [line.split(":")[1].strip() for line in alone.stdout.splitlines()] == ["lo"]
    shared = containers.run("busybox", ["ls", "/sys/class/net"], network="host")
    assert sorted(shared.stdout.split()) == sorted(os.listdir("/sys/class/net"))
    assert leases.read(store.reading(), alone.id) is None


def test_twenty_containers_started_at_once_get_distinct_addresses_and_ports():
    def start(index: int) -> containers.Container:
        return containers.run("busybox", ["sleep", "1000"], detach=True, name=f"net-many-{index}",
                              publish=["127.0.0.1::80", "127.0.0.1::53/udp"])

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        started = list(pool.map(start, range(20)))
    held = [lease_of(container) for container in started]
    assert len({lease.address for lease in held}) == 20
    ports = [(port.protocol, port.host_port) for lease in held for port in lease.ports]
    assert len(set(ports)) == 40
    for container in started:
        containers.rm(container.id, force=True)
    assert not {f"lkv{container.short_id}" for container in started} & set(bridge.ports())
    assert not [key for key in nat.elements() if any(key.endswith(f" . {p}") for _, p in ports)]
    assert _ours(str(store.home())) == []


def test_a_killed_monitor_s_lease_and_ports_are_released_by_gc():
    box = containers.run("busybox", WEB, detach=True, publish=["127.0.0.1::80"])
    [published] = lease_of(box).ports
    os.kill(store.reading().container_state(box.id).monitor_pid, signal.SIGKILL)
    monitor.wait_gone(store.reading().container_dir(box.id))
    said = labkit("gc")
    assert said.returncode == 0, said
    assert f"released {lease_of_address(said.stdout)}" in said.stdout
    assert leases.read(store.reading(), box.id) is None
    assert f"tcp . 127.0.0.1 . {published.host_port}" not in nat.elements()


def lease_of_address(text: str) -> str:
    [line] = [line for line in text.splitlines() if line.startswith("released ")]
    return line.split()[1]


# --- outbound NAT -------------------------------------------------------------------------------


UPSTREAM = "labkit-test-up"
# The upstream's server answers with the address the connection came from.
ECHO_PEER = ("import socket\n"
             "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
             "s.bind(('198.51.100.2', 8000)); s.listen()\n"
             "c, peer = s.accept(); c.recv(1024)\n"
             "c.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\n' + peer[0].encode()); c.close()\n")


@pytest.fixture
def upstream():
    """A network namespace behind a veth pair, 198.51.100.2 (TEST-NET-2), as the internet."""
    run = lambda *args: subprocess.run(args, check=True, capture_output=True)  # noqa: E731
    run("ip", "netns", "add", UPSTREAM)
    try:
        run("ip", "link", "add", "lkt-up0", "type", "veth", "peer", "name", "eth0",
            "netns", UPSTREAM)
        run("ip", "addr", "add", "198.51.100.1/30", "dev", "lkt-up0")
        run("ip", "link", "set", "lkt-up0", "up")
        for command in (["ip", "addr", "add", "198.51.100.2/30", "dev", "eth0"],
                        ["ip", "link", "set", "eth0", "up"], ["ip", "link", "set", "lo", "up"]):
            run("ip", "netns", "exec", UPSTREAM, *command)
        server = subprocess.Popen(["ip", "netns", "exec", UPSTREAM, "python3", "-c", ECHO_PEER])
        try:
            yield "198.51.100.2"
        finally:
            server.kill()
            server.wait()
    finally:
        subprocess.run(["ip", "link", "del", "lkt-up0"], capture_output=True)
        run("ip", "netns", "del", UPSTREAM)


def test_a_container_reaches_the_outside_world_behind_the_host_s_address(upstream):
    box = containers.run("busybox", ["sleep", "1000"], detach=True)
    seen = ""
    for _ in range(50):  # the upstream's server may still be starting
        done = containers.exec(box.id, ["wget", "-qO-", f"http://{upstream}:8000/"])
        if done.exit_code == 0:
            seen = done.stdout
            break
        time.sleep(0.1)
    assert seen == "198.51.100.1"  # the host's address on that network, not the container's
    assert bridge.forwarding()


# --- bad input: one line, exit 125, nothing left ------------------------------------------------


@pytest.mark.parametrize(("args", "words"), [
    (["-p", "99999:80"], ["'99999' is not a port"]),
    (["-p", "abc"], ["'abc' is not a port"]),
    (["-p", "80:80/sctp"], ["tcp and udp, not 'sctp'"]),
    (["-p", "::1:80:80"], ["invalid -p"]),
    (["--expose", "http"], ["--expose", "not a port"]),
    (["--network", "overlay"], ["unknown --network 'overlay'"]),
    (["--network", "none", "-p", "8080:80"], ["need --network bridge"]),
    (["--link", "no-such-container"], ["cannot link to 'no-such-container': no such container"]),
    (["--link", "a:b c"], ["invalid --link"]),
])
def test_bad_network_options_are_one_line_and_exit_125(args, words):
    before = store_files()
    assert_one_line(labkit("run", "--rm", *args, "busybox", "true"), 125, *words)
    assert store_files() == before


def test_a_host_port_held_by_another_container_or_a_host_process_is_refused():
    free = _free_port()
    containers.run("busybox", ["sleep", "1000"], detach=True, name="net-holder",
                   publish=[f"{free}:80"])
    before = store_files()
    assert_one_line(labkit("run", "-p", f"{free}:81", "busybox", "true"), 125,
                    f"127.0.0.1:{free}/tcp", "already allocated")
    assert store_files() == before
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        assert_one_line(labkit("run", "-p", f"{taken}:80", "busybox", "true"), 125,
                        f"127.0.0.1:{taken}/tcp", "Address already in use")
    assert store_files() == before


def test_a_link_to_a_stopped_container_is_refused():
    containers.run("busybox", ["true"], name="net-stopped")
    assert_one_line(labkit("run", "--link", "net-stopped", "busybox", "true"), 125,
                    "cannot link to 'net-stopped': it is not running on the bridge")


def test_a_full_subnet_refuses_the_next_container_in_one_line(monkeypatch):
    """A /29 has six addresses: the gateway and five containers. (The bridge is made first,
    with the default subnet, which holds that /29.)"""
    networking.prepare()
    monkeypatch.setenv("LABKIT_SUBNET", "10.87.0.0/29")
    assert not leases.any_held(), "containers of another store hold addresses on the bridge"
    for index in range(5):
        containers.run("busybox", ["sleep", "1000"], detach=True, name=f"net-fill-{index}")
    before = store_files()
    assert_one_line(labkit("run", "busybox", "true"), 125,
                    "no free address in the lab's subnet 10.87.0.0/29")
    assert store_files() == before


def test_a_bridge_name_taken_by_another_kind_of_link_is_refused(tmp_path):
    """In a network namespace of the test's own, where labkit0 is one end of a veth pair; its
    /sys mounted anew, as sysfs shows the links of the namespace that mounts it."""
    script = ("mount -t sysfs sysfs /sys && ip link add labkit0 type veth peer name lkt-peer && "
              f"LABKIT_RUN={tmp_path}/run {LABKIT} run --rm busybox true")
    done = subprocess.run(["unshare", "--net", "--mount", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 125, done
    assert done.stderr.splitlines() == [
        "labkit: the host has a link named labkit0 that is not a bridge (a veth): remove it, or "
        "the lab cannot make its network"]


# --- helpers ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _host_address() -> str:
    """An address of the host's own other than the loopback and the bridge's."""
    interfaces = json.loads(subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True,
                                           text=True, check=True).stdout)
    return next(address["local"] for interface in interfaces
                if interface["ifname"] not in ("lo", bridge.BRIDGE)
                for address in interface.get("addr_info", []))


def _ours(claims_owned_by: str) -> list[str]:
    """The claims on the host that containers of this test session's store hold."""
    return [path.name for kind in (leases.ADDRESSES, leases.PORTS)
            for path in (leases.claims_dir() / kind).glob("*")
            if path.read_text().startswith(claims_owned_by + " ")]
