"""Network attacks, each performed for real, all inside network namespaces this test made: berthd
runs in one (its bridges, nft tables and sysctls are that namespace's), a "LAN host" in another,
joined by a veth pair. Nothing here touches the host's own addresses, routes or ruleset.

- an image whose ExposedPorts carries nft syntax (the injection once reached `nft -f`);
- a container with CAP_NET_RAW sending to 127.0.0.1 of its host (CVE-2020-8558, route_localnet);
- a LAN host sending to 127.0.0.1 to reach a port published on 127.0.0.1;
- a LAN host routing the bridge's subnet to reach a container's unpublished port;
- a container on an internal network asking the embedded DNS for an outside name;
- a container flooding the embedded DNS.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time

import pytest

from tests.lib import rawhttp
from tests.security.lib import assert_alive, load_image, run
from tests.security.netlib import (
    addr_of,
    in_ns,
    mac_of,
    make_netns,
    ns_path,
    require_tools,
    send_raw_udp,
    send_udp,
    sh,
    udp_listener,
)


@pytest.fixture
def net(make_berthd, cleanup):  # type: ignore[no-untyped-def]
    """(berthd inside its own netns, that netns's name)."""
    require_tools()
    ns = make_netns(cleanup, "d")
    d = make_berthd(network=True, config={"dns": ["127.0.0.1"]})
    d.start(prefix=in_ns(ns_path(ns)))
    load_image(d, "bb", [], {})
    return d, ns


def lan(cleanup, ns: str) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    """A LAN host: (its netns, the daemon side's veth name, the daemon side's address)."""
    lan_ns = make_netns(cleanup, "lan")
    sh("ip", "-n", ns, "link", "add", "vb0", "type", "veth", "peer", "name", "vl0", "netns", lan_ns)
    sh("ip", "-n", ns, "addr", "add", "10.254.1.1/30", "dev", "vb0")
    sh("ip", "-n", ns, "link", "set", "vb0", "up")
    sh("ip", "-n", lan_ns, "addr", "add", "10.254.1.2/30", "dev", "vl0")
    sh("ip", "-n", lan_ns, "link", "set", "vl0", "up")
    return lan_ns, "vb0", "10.254.1.1"


def pid_of(d, name: str) -> int:  # type: ignore[no-untyped-def]
    return int(run(d, "inspect", "-f", "{{.State.Pid}}", name).stdout.strip())


def test_nft_injection_through_exposed_ports_is_refused(net):
    d, ns = net
    host_rules = hashlib.sha256(sh("nft", "list", "ruleset").stdout.encode()).hexdigest()
    sh(*in_ns(ns_path(ns), "nft", "add", "table", "ip", "bystander"))
    sh(*in_ns(ns_path(ns), "nft", "add", "chain", "ip", "bystander", "keep"))
    evil = "80/tcp\nflush ruleset\nadd table ip pwned"
    load_image(d, "evil-ports", [], {"ExposedPorts": {evil: {}}})
    r = run(d, "run", "--rm", "-P", "evil-ports", "true")
    assert r.returncode != 0 and "invalid port specification" in r.stderr, r.stderr
    body = json.dumps({"Image": "bb", "Cmd": ["true"], "ExposedPorts": {"53/udp;flush ruleset": {}}}).encode()
    assert rawhttp.request(d.sock, "POST", "/containers/create", body=body).status == 400
    body = json.dumps({"Image": "bb", "Cmd": ["true"],
                       "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "0.0.0.0 flush ruleset"}]}}}).encode()
    assert rawhttp.request(d.sock, "POST", "/containers/create", body=body).status == 400
    rules = sh(*in_ns(ns_path(ns), "nft", "list", "ruleset")).stdout
    assert "table ip bystander" in rules and "pwned" not in rules
    assert "table ip berth" in rules  # berth's own table, still there
    assert hashlib.sha256(sh("nft", "list", "ruleset").stdout.encode()).hexdigest() == host_rules
    assert_alive(d)


def test_container_cannot_reach_the_hosts_loopback_with_raw_packets(net, cleanup):
    """CVE-2020-8558: berth's bridges have route_localnet=1; a container that sends a frame to its
    gateway addressed to 127.0.0.1 must not reach a service bound there."""
    d, ns = net
    listener = udp_listener(cleanup, ns_path(ns), "127.0.0.1", 4444)
    assert run(d, "run", "-d", "--name", "raw", "bb", "sleep", "300").returncode == 0
    cns = f"/proc/{pid_of(d, 'raw')}/ns/net"
    send_raw_udp(cns, "eth0", mac_of(ns_path(ns), "berth0"), addr_of(cns, "eth0"), "127.0.0.1", 4444, "attack")
    send_udp(ns_path(ns), "127.0.0.1", 4444, "control")  # the host itself may, of course
    got = listener.received()
    assert "control" in got and "attack" not in got, got
    assert_alive(d)


def test_lan_host_cannot_reach_a_port_published_on_127_0_0_1(net, cleanup):
    """The container's service is a UDP listener in the container's network namespace (busybox has
    no UDP server): the packets take the path they would take to any process in the container."""
    d, ns = net
    lan_ns, dev, _ = lan(cleanup, ns)
    assert run(d, "run", "-d", "--name", "loc", "-p", "127.0.0.1:5353:5353/udp", "bb", "sleep", "300").returncode == 0
    service = udp_listener(cleanup, f"/proc/{pid_of(d, 'loc')}/ns/net", "0.0.0.0", 5353)
    send_raw_udp(ns_path(lan_ns), "vl0", mac_of(ns_path(ns), dev), "10.254.1.2", "127.0.0.1", 5353, "attack")
    send_udp(ns_path(ns), "127.0.0.1", 5353, "control")  # from the host itself: published for that
    got = service.received()
    assert "control" in got and "attack" not in got, got
    assert_alive(d)


def test_lan_host_routing_the_bridge_subnet_cannot_reach_unpublished_ports(net, cleanup):
    """Docker 28's direct-routing fix: a host that routes the bridge's subnet through this one
    reaches a container only through its published ports."""
    d, ns = net
    lan_ns, _, gw = lan(cleanup, ns)
    assert run(d, "run", "-d", "--name", "unpub", "bb", "sleep", "300").returncode == 0
    service = udp_listener(cleanup, f"/proc/{pid_of(d, 'unpub')}/ns/net", "0.0.0.0", 9999)
    cip = run(d, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", "unpub").stdout.strip()
    sh("ip", "-n", lan_ns, "route", "add", cip, "via", gw)
    send_udp(ns_path(lan_ns), cip, 9999, "attack")
    send_udp(ns_path(ns), cip, 9999, "control")  # the host reaches its containers directly
    got = service.received()
    assert "control" in got and "attack" not in got, got
    assert_alive(d)


def test_internal_network_never_forwards_dns(net, cleanup):
    d, ns = net
    upstream = udp_listener(cleanup, ns_path(ns), "127.0.0.1", 53)  # the daemon's "dns": a recorder
    assert run(d, "network", "create", "--internal", "inside").returncode == 0
    assert run(d, "network", "create", "outside").returncode == 0
    r = run(d, "run", "--rm", "--network", "inside", "bb", "busybox", "nslookup", "leak-inside.test", timeout=60)
    assert r.returncode != 0
    assert "leak-inside" not in upstream.received()
    run(d, "run", "--rm", "--network", "outside", "bb", "busybox", "nslookup", "asked-outside.test", timeout=60)
    assert "asked-outside" in upstream.received()  # the control: other networks do forward
    assert_alive(d)


def test_dns_flood_from_a_container_does_not_stall_the_daemon(net):
    d, ns = net
    assert run(d, "network", "create", "flood").returncode == 0
    assert run(d, "run", "-d", "--name", "flooder", "--network", "flood", "bb", "sleep", "300").returncode == 0
    cns = f"/proc/{pid_of(d, 'flooder')}/ns/net"
    flood = ("import socket, time\n"
             "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setblocking(False)\n"
             "q = bytes.fromhex('abcd01000001000000000000') + b'\\x05flood\\x04test\\x00\\x00\\x01\\x00\\x01'\n"
             "end = time.monotonic() + 4\n"
             "while time.monotonic() < end:\n"
             "    try: s.sendto(q, ('127.0.0.11', 53))\n"
             "    except OSError: pass\n")
    proc = subprocess.Popen(in_ns(cns, sys.executable, "-c", flood))
    try:
        errors: list[str] = []

        def ping_while_flooding() -> None:
            for _ in range(20):
                try:
                    assert_alive(d, within=5)
                except AssertionError as exc:
                    errors.append(str(exc))
                time.sleep(0.1)

        t = threading.Thread(target=ping_while_flooding)
        t.start()
        ok = run(d, "run", "--rm", "--network", "flood", "bb", "echo", "served", timeout=60)
        t.join()
        assert ok.returncode == 0 and ok.stdout == "served\n", ok.stderr
        assert not errors, errors[0]
    finally:
        proc.kill()
        proc.wait()
