"""User-defined networks: subnets, ranges, gateways and static addresses, the embedded DNS and
forwarding, /etc/hosts and resolv.conf, API errors that leave nothing half made, and no address
leaked or given twice after berthd is killed in the middle of starts."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from tests.lib import rawhttp
from tests.lib.wait import until
from tests.network.netenv import addr_of, api, dk, fake_dns, links, ok, start


def test_subnet_range_gateway_static_ip_and_dns(netenv):
    d = start(netenv)
    nid = ok(d, "network", "create", "--subnet", "10.0.2.0/24", "--ip-range", "10.0.2.128/25", "--gateway",
             "10.0.2.1", "--label", "team=blue", "dnet").strip()
    assert len(nid) == 64
    ok(d, "run", "-d", "--name", "web", "--network", "dnet", "--ip", "10.0.2.10", "--network-alias", "www",
       "--hostname", "webhost", "bb", "sleep", "300")
    ok(d, "run", "-d", "--name", "app", "--network", "dnet", "bb", "sleep", "300")
    assert addr_of(d, "web", "dnet") == "10.0.2.10"
    auto = ipaddress.ip_address(addr_of(d, "app", "dnet"))
    assert auto in ipaddress.ip_network("10.0.2.128/25")
    # the same static address again: refused, and nothing is left of the attempt
    r = dk(d, "run", "-d", "--name", "dup", "--network", "dnet", "--ip", "10.0.2.10", "bb", "sleep", "5")
    assert r.returncode != 0 and "already in use" in r.stderr.lower()
    # the two containers reach each other by name, by alias, by hostname
    for name in ("web", "www", "webhost", "web.dnet"):
        out = ok(d, "exec", "app", "busybox", "ping", "-c", "1", "-W", "3", name)
        assert "10.0.2.10" in out and "1 packets received" in out
    out = ok(d, "exec", "web", "busybox", "nslookup", "app", "127.0.0.11")
    assert str(auto) in out
    out = ok(d, "run", "--rm", "--network", "dnet", "--link", "web:dbalias", "bb", "busybox", "ping", "-c", "1",
             "-W", "3", "dbalias")
    assert "10.0.2.10" in out  # a --link alias resolves on a user-defined network too
    # the same over TCP (what resolvers use after a truncated UDP answer), from inside app's namespace
    from berth.linux import netns

    def ask_tcp() -> bytes:
        q = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\x03web\x00" + struct.pack("!HH", 1, 1)
        with socket.create_connection(("127.0.0.11", 53), timeout=5) as c:
            c.sendall(struct.pack("!H", len(q)) + q)
            size = struct.unpack("!H", c.recv(2, socket.MSG_WAITALL))[0]
            return c.recv(size, socket.MSG_WAITALL)

    app_id = api(d).inspect_container("app")["Id"]
    reply = netns.inside(os.path.join(d.root, "exec", "netns", app_id), ask_tcp)
    assert reply[:2] == b"\x00\x07" and reply.endswith(bytes([10, 0, 2, 10]))
    out = ok(d, "exec", "web", "cat", "/etc/resolv.conf")
    assert "nameserver 127.0.0.11" in out and "ndots:0" in out
    assert "10.0.2.10\twebhost" in ok(d, "exec", "web", "cat", "/etc/hosts")
    net = api(d).inspect_network("dnet")
    assert net["Labels"] == {"team": "blue"}
    assert {c["Name"]: c["IPv4Address"] for c in net["Containers"].values()} == {
        "web": "10.0.2.10/24", "app": f"{auto}/24"}
    assert ok(d, "ps", "--filter", "network=dnet", "--format", "{{.Names}}").split() == ["app", "web"]
    assert ok(d, "network", "ls", "--filter", "label=team=blue", "--format", "{{.Name}}").split() == ["dnet"]
    # stopping releases the address: a new container may take it
    ok(d, "rm", "-f", "web")
    ok(d, "run", "--rm", "--network", "dnet", "--ip", "10.0.2.10", "bb", "true")
    ok(d, "run", "--rm", "--network", "dnet", "--ip", "10.0.2.10", "bb", "true")  # free once --rm answered
    ok(d, "rm", "-f", "app")
    ok(d, "network", "rm", "dnet")
    assert "br-" + nid[:12] not in links()


def test_network_api_errors_and_nothing_half_made(netenv):
    d = start(netenv)
    c = api(d)
    ok(d, "network", "create", "--subnet", "10.0.7.0/24", "taken")
    cases = [
        ({"Name": "taken"}, 409, "already exists"),
        ({"Name": "bridge"}, 403, "pre-defined"),
        ({"Name": "x1", "IPAM": {"Config": [{"Subnet": "10.0.8.0/24", "Gateway": "10.0.9.1"}]}}, 400,
         "no matching subnet for gateway"),
        ({"Name": "x2", "IPAM": {"Config": [{"Subnet": "10.0.7.128/25"}]}}, 403, "overlaps"),
        ({"Name": "x3", "IPAM": {"Config": [{"Subnet": "not-a-cidr"}]}}, 400, "invalid CIDR address"),
        ({"Name": "x4", "Driver": "nosuch"}, 404, "not found"),
        ({"Name": "x5", "Driver": "macvlan", "Options": {"parent": "nosuchlink0"}}, 404, "does not exist"),
    ]
    for body, status, text in cases:
        r = rawhttp.request(d.sock, "POST", "/networks/create", body=json.dumps(body).encode(),
                            headers={"Content-Type": "application/json"})
        assert r.status == status and text in r.json()["message"], (body, r.status, r.body)
    assert sorted(n["Name"] for n in c.networks()) == ["bridge", "host", "none", "taken"]
    r = rawhttp.request(d.sock, "DELETE", "/networks/bridge")
    assert r.status == 403
    r = rawhttp.request(d.sock, "GET", "/networks/nosuch")
    assert r.status == 404 and r.json()["message"] == "network nosuch not found"
    r = dk(d, "run", "--rm", "--network", "nosuch", "bb", "true")
    assert r.returncode != 0 and "network nosuch not found" in r.stderr
    ok(d, "network", "create", "auto")
    r = dk(d, "run", "--rm", "--network", "auto", "--ip", "10.0.7.9", "bb", "true")
    assert r.returncode != 0 and "user configured subnets" in r.stderr
    r = dk(d, "run", "--rm", "--network", "taken", "--ip", "10.9.9.9", "bb", "true")
    assert r.returncode != 0 and "does not belong" in r.stderr
    assert dk(d, "ps", "-aq").stdout == ""


def test_kill9_during_runs_leaks_no_address(netenv):
    d = start(netenv)
    ok(d, "network", "create", "--subnet", "10.0.13.0/24", "crash")
    ok(d, "run", "-d", "--name", "keeper", "--network", "crash", "bb", "sleep", "300")
    keeper_ip = addr_of(d, "keeper", "crash")
    procs = [subprocess.Popen(["docker", "-H", d.url, "run", "--rm", "--network", "crash", "bb", "sleep", "0.2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(6)]
    until(lambda: len(api(d).containers(all=True)) > 1, "a run in the middle of its start")  # kill during them
    assert d.proc is not None
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    for p in procs:
        p.wait(timeout=30)
    d.start()
    assert addr_of(d, "keeper", "crash") == keeper_ip
    assert "1 packets received" in ok(d, "run", "--rm", "--network", "crash", "bb", "busybox", "ping", "-c", "1",
                                      "-W", "3", "keeper")
    import sqlite3

    def settled() -> bool:
        """Every address and namespace belongs to a running container (the exiting ones are gone)."""
        db = sqlite3.connect(os.path.join(d.root, "data", "berth.db"))
        try:
            owners = {r[0] for r in db.execute("SELECT container_id FROM ip_allocs")}
        finally:
            db.close()
        owners |= set(os.listdir(os.path.join(d.root, "exec", "netns")))
        return owners <= {c["Id"] for c in api(d).containers()}

    deadline = time.time() + 20
    while not settled():
        assert time.time() < deadline, "an address stayed with a container that is not running"
        time.sleep(0.1)
    # ten more runs: every one gets an address, none is given twice
    seen = set()
    for i in range(4):
        ok(d, "run", "-d", "--name", f"n{i}", "--network", "crash", "bb", "sleep", "300")
        seen.add(addr_of(d, f"n{i}", "crash"))
    assert len(seen) == 4 and keeper_ip not in seen
    # the keeper's own resolver came back with berthd
    assert addr_of(d, "n0", "crash") in ok(d, "exec", "keeper", "busybox", "nslookup", "n0", "127.0.0.11")


def test_other_names_are_forwarded_to_the_hosts_resolver(netenv):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 53))
    except OSError as exc:
        sock.close()
        pytest.skip(f"127.0.0.1:53 is taken on this host ({exc.strerror}): no fake upstream resolver")
    stop = threading.Event()
    t = threading.Thread(target=fake_dns, args=(stop, sock), daemon=True)
    t.start()
    try:
        d = start(netenv)
        ok(d, "network", "create", "--subnet", "10.0.14.0/24", "fw")
        out = ok(d, "run", "--rm", "--network", "fw", "bb", "busybox", "nslookup", "outside.test", "127.0.0.11")
        assert "10.9.9.9" in out
    finally:
        stop.set()
        t.join()
        sock.close()


def test_hosts_links_dns_options_internal_icc_and_ipv6(netenv):
    d = start(netenv, ["--bip", "10.124.0.1/24"])
    ok(d, "run", "-d", "--name", "srv", "bb", "sleep", "300")
    out = ok(d, "run", "--rm", "--link", "srv:db", "--add-host", "gw:host-gateway", "--add-host", "other:10.1.2.3",
             "--dns", "127.0.0.1", "--dns-search", "example.test", "--hostname", "hh", "--domainname", "dom.test",
             "bb", "sh", "-c", "cat /etc/hosts /etc/resolv.conf; busybox ping -c 1 -W 3 db")
    assert "10.124.0.1\tgw\n" in out and "10.1.2.3\tother\n" in out
    assert f"{addr_of(d, 'srv', 'bridge')}\tdb srv\n" in out and "\thh.dom.test hh\n" in out
    assert "nameserver 127.0.0.1\n" in out and "search example.test\n" in out and "1 packets received" in out
    ok(d, "network", "create", "--internal", "--subnet", "10.0.16.0/24", "intnet")
    assert "default" not in ok(d, "run", "--rm", "--network", "intnet", "bb", "busybox", "ip", "route")
    ok(d, "network", "create", "--subnet", "10.0.17.0/24", "-o", "com.docker.network.bridge.enable_icc=false",
       "noicc")
    ok(d, "run", "-d", "--name", "i1", "--network", "noicc", "bb", "sleep", "300")
    r = dk(d, "run", "--rm", "--network", "noicc", "bb", "busybox", "ping", "-c", "1", "-W", "1", "i1")
    assert r.returncode != 0 and "0 packets received" in r.stdout
    ok(d, "network", "create", "--ipv6", "--subnet", "fd00:77::/64", "--subnet", "10.0.18.0/24",
       "--aux-address", "router=10.0.18.2", "v6net")
    ok(d, "run", "-d", "--name", "v6a", "--network", "v6net", "bb", "sleep", "300")
    out = ok(d, "run", "--rm", "--network", "v6net", "--ip6", "fd00:77::99", "bb", "busybox", "ip", "-o", "-6",
             "addr", "show", "eth0")
    assert "fd00:77::99/64" in out
    ok(d, "network", "create", "--subnet", "10.0.22.0/24", "-o", "com.docker.network.driver.mtu=1400", "small")
    assert "mtu 1400" in ok(d, "run", "--rm", "--network", "small", "bb", "busybox", "ip", "link", "show", "eth0")
    info = api(d).inspect_container("v6a")["NetworkSettings"]["Networks"]["v6net"]
    assert info["GlobalIPv6Address"] == "fd00:77::2" and info["IPAddress"] == "10.0.18.3"  # .2 is the aux address
    out = ok(d, "run", "--rm", "--network", "v6net", "bb", "busybox", "ping6", "-c", "1", "-W", "3", "v6a")
    assert "fd00:77::2" in out and "1 packets received" in out
