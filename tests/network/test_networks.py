"""Networking on a real berthd: bridges, IPAM, nftables in berth's own tables, published ports, the
embedded DNS, macvlan on a veth parent, with the real docker CLI and docker-py.

Every test here lives in this one file on purpose: berth's nft tables have fixed names (``ip berth``,
``ip6 berth``), so the tests that make them run one after the other (pytest-xdist ``loadfile``), and
the daemons of other files run with ``--bridge=none`` and write no table.

Network safety: traffic goes only to loopback, to the bridges these tests make and to a network
namespace they make; containers get ``--dns 127.0.0.1`` so no question can reach an outside server.
Every link, namespace and nft table a test makes is removed, even when it fails.
"""

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
import urllib.request
from collections.abc import Iterator

import docker
import pytest

from tests.lib import rawhttp
from tests.lib.clis import docker as docker_cli
from tests.lib.daemon import Berthd
from tests.lib.images import busybox_rootfs_tar


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def _nft() -> str:
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout


def _drop_tables() -> None:
    for fam in ("ip", "ip6"):
        subprocess.run(["nft", "delete", "table", fam, "berth"], capture_output=True)


@pytest.fixture
def netenv(request: pytest.FixtureRequest) -> Iterator[dict[str, object]]:
    """Removes, after the test, every link and network namespace made meanwhile and berth's tables."""
    before = _links()
    made_ns: list[str] = []
    env: dict[str, object] = {"netns": made_ns}
    try:
        yield env
    finally:
        for d in env.get("daemons", []):  # type: ignore[attr-defined]
            d.remove_containers()
            d.stop()
            rep = getattr(request.node, "rep_call", None)
            if rep is not None and rep.failed:
                print(f"\n----- berthd log ({d.log_path}) -----\n{d.log()}")
            d.cleanup()
        _drop_tables()
        for name in _links() - before:
            subprocess.run(["ip", "link", "del", name], capture_output=True)
        for ns in made_ns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        left = _links() - before
        assert not left, f"links left behind: {left}"


def start(env: dict[str, object], args: list[str] | None = None, config: dict | None = None) -> Berthd:
    bridge = "bt" + os.urandom(3).hex()
    d = Berthd(network=True, args=["-b", bridge, *(args or [])],
               config={"dns": ["127.0.0.1"], **(config or {})})
    env.setdefault("daemons", []).append(d)  # type: ignore[attr-defined]
    d.start()
    d.bridge = bridge  # type: ignore[attr-defined]
    r = rawhttp.request(d.sock, "POST", "/images/create?fromSrc=-&repo=bb&tag=latest", body=busybox_rootfs_tar())
    assert r.status == 200, r.body
    return d


def dk(d: Berthd, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return docker_cli("-H", d.url, *args, **kw)


def ok(d: Berthd, *args: str) -> str:
    r = dk(d, *args)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def api(d: Berthd) -> docker.APIClient:
    return docker.APIClient(base_url=d.url, version="1.47", timeout=60)


def addr_of(d: Berthd, name: str, net: str) -> str:
    return str(api(d).inspect_container(name)["NetworkSettings"]["Networks"][net]["IPAddress"])


# ---- the default bridge ---------------------------------------------------------------------------------

def test_bip_and_fixed_cidr_give_the_addresses_asked_for(netenv):
    d = start(netenv, ["--bip", "10.123.0.1/24", "--fixed-cidr", "10.123.0.128/25"])
    assert "10.123.0.1/24" in subprocess.run(["ip", "-o", "addr", "show", d.bridge], capture_output=True,
                                             text=True).stdout
    out = ok(d, "run", "--rm", "bb", "sh", "-c", "busybox ip -o -4 addr show eth0; busybox ip route")
    ip = ipaddress.ip_interface(out.split("inet ")[1].split()[0])
    assert ip.ip in ipaddress.ip_network("10.123.0.128/25") and ip.network.prefixlen == 24
    assert "default via 10.123.0.1 dev eth0" in out
    # a static address on the default bridge (dockerd refuses it; berth allows it inside fixed-cidr)
    out = ok(d, "run", "--rm", "--ip", "10.123.0.200", "bb", "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
    assert "10.123.0.200/24" in out
    r = dk(d, "run", "--rm", "--ip", "10.123.0.5", "bb", "true")
    assert r.returncode != 0 and "fixed-cidr" in r.stderr
    assert dk(d, "ps", "-aq").stdout == ""
    inspect = api(d).inspect_network("bridge")
    assert inspect["IPAM"]["Config"] == [{"Subnet": "10.123.0.0/24", "IPRange": "10.123.0.128/25",
                                          "Gateway": "10.123.0.1"}]
    assert inspect["Options"]["com.docker.network.bridge.name"] == d.bridge


def test_none_has_only_lo_and_host_sees_the_host_links(netenv):
    d = start(netenv)
    out = ok(d, "run", "--rm", "--network", "none", "bb", "busybox", "ip", "-o", "link")
    assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"]
    out = ok(d, "run", "--rm", "--network", "host", "bb", "busybox", "ip", "-o", "link")
    inside = {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}
    assert {"lo", d.bridge} <= inside and inside == _links() | inside
    info = api(d).inspect_container(ok(d, "create", "--network", "host", "bb", "true").strip())
    assert list(info["NetworkSettings"]["Networks"]) == ["host"] and info["HostConfig"]["NetworkMode"] == "host"


# ---- user-defined networks: IPAM, DNS -----------------------------------------------------------------

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
    assert "br-" + nid[:12] not in _links()


def test_connect_and_disconnect_a_running_container(netenv):
    d = start(netenv)
    ok(d, "network", "create", "--subnet", "10.0.5.0/24", "n1")
    ok(d, "network", "create", "--subnet", "10.0.6.0/24", "n2")
    ok(d, "run", "-d", "--name", "c1", "--network", "n1", "bb", "sleep", "300")
    ok(d, "run", "-d", "--name", "c2", "--network", "n2", "bb", "sleep", "300")
    r = dk(d, "exec", "c2", "busybox", "ping", "-c", "1", "-W", "1", addr_of(d, "c1", "n1"))
    assert r.returncode != 0  # two networks are isolated
    ok(d, "network", "connect", "--ip", "10.0.6.77", "--alias", "second", "n2", "c1")
    assert "10.0.6.77/24" in ok(d, "exec", "c1", "busybox", "ip", "-o", "addr", "show", "eth1")
    assert "1 packets received" in ok(d, "exec", "c2", "busybox", "ping", "-c", "1", "-W", "3", "second")
    assert set(api(d).inspect_container("c1")["NetworkSettings"]["Networks"]) == {"n1", "n2"}
    ok(d, "network", "disconnect", "n2", "c1")
    assert "eth1" not in ok(d, "exec", "c1", "busybox", "ip", "-o", "link")
    r = dk(d, "network", "rm", "n1")
    assert r.returncode != 0 and "has active endpoints" in r.stderr


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


def test_automatic_subnets_skip_what_the_host_routes(netenv):
    """A subnet that a link on the host already uses is skipped, and the choice is logged."""
    host_end, ns_end, ns = "bth" + os.urandom(2).hex(), "btn" + os.urandom(2).hex(), "btns" + os.urandom(2).hex()
    netenv["netns"].append(ns)  # type: ignore[attr-defined]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end, "netns", ns], check=True)
    subprocess.run(["ip", "addr", "add", "10.201.0.1/24", "dev", host_end], check=True)
    subprocess.run(["ip", "link", "set", host_end, "up"], check=True)
    d = start(netenv, ["--default-address-pool", "base=10.201.0.0/16,size=24"])
    bridge = api(d).inspect_network("bridge")["IPAM"]["Config"][0]["Subnet"]
    assert bridge == "10.201.1.0/24"  # 10.201.0.0/24 is on the host's veth
    ok(d, "network", "create", "auto1")
    assert api(d).inspect_network("auto1")["IPAM"]["Config"][0]["Subnet"] == "10.201.2.0/24"
    assert "chose 10.201.2.0/24" in d.log() and "chose 10.201.1.0/24" in d.log()


# ---- published ports ------------------------------------------------------------------------------------

HTTPD = ["sh", "-c", "mkdir -p /www && echo hello-from-httpd > /www/index.html && busybox httpd -f -p 80 -h /www"]


def _get(url: str) -> str:
    for _ in range(50):
        try:
            return urllib.request.urlopen(url, timeout=3).read().decode()
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_publish_to_busybox_httpd_in_the_kernel(netenv):
    d = start(netenv)
    port = _free_port()
    ok(d, "run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "-P", "--expose", "99", "bb", *HTTPD)
    assert _get(f"http://127.0.0.1:{port}/") == "hello-from-httpd\n"
    lines = ok(d, "port", "web").splitlines()
    assert f"80/tcp -> 127.0.0.1:{port}" in lines
    ephemeral = [line for line in lines if line.startswith("99/tcp -> 0.0.0.0:")]
    assert ephemeral and int(ephemeral[0].rsplit(":", 1)[1]) > 1024
    ps = ok(d, "ps", "--format", "{{.Ports}}").strip()
    assert f"127.0.0.1:{port}->80/tcp" in ps and "->99/tcp" in ps
    # no userland proxy: nothing listens on the port, the kernel forwards it
    listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
    assert listening.strip() == ""
    assert f"dport {port} dnat to" in _nft()
    # another container reaches it through the bridge's gateway (hairpin)
    gw = api(d).inspect_network("bridge")["IPAM"]["Config"][0]["Gateway"]
    p2 = _free_port()
    ok(d, "run", "-d", "--name", "web2", "-p", f"{p2}:80", "bb", *HTTPD)
    out = ok(d, "run", "--rm", "bb", "sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 {gw} {p2}")
    assert "hello-from-httpd" in out
    # the same host port again: refused, nothing left
    r = dk(d, "run", "-d", "--name", "clash", "-p", f"{p2}:80", "bb", "sleep", "5")
    assert r.returncode != 0 and "port is already allocated" in r.stderr
    assert "clash" not in ok(d, "ps", "--format", "{{.Names}}")
    ok(d, "rm", "-f", "web", "web2")
    assert f"dport {port} " not in _nft() and f"dport {p2} " not in _nft()
    for _ in range(2):  # a --rm container's host port is free as soon as its removal is answered
        ok(d, "run", "--rm", "-p", f"127.0.0.1:{port}:80", "bb", "true")


def test_iptables_false_leaves_the_ruleset_alone(netenv):
    before = _nft()
    d = start(netenv, config={"iptables": False})
    port = _free_port()
    ok(d, "network", "create", "--subnet", "10.0.11.0/24", "quiet")
    ok(d, "run", "-d", "--name", "web", "--network", "quiet", "-p", f"127.0.0.1:{port}:80", "bb", *HTTPD)
    ok(d, "run", "--rm", "--network", "quiet", "bb", "busybox", "ping", "-c", "1", "-W", "3", "web")
    assert _nft() == before
    ok(d, "rm", "-f", "web")
    ok(d, "network", "rm", "quiet")
    assert _nft() == before


def test_the_table_goes_with_the_last_bridge_network(netenv):
    d = start(netenv, ["--bridge=none"])
    assert "table ip berth" not in _nft()  # no bridge network: nothing written
    ok(d, "network", "create", "--subnet", "10.0.23.0/24", "only")
    assert "table ip berth" in _nft()
    ok(d, "network", "rm", "only")
    assert "table ip berth" not in _nft()


def test_cleanup_network_removes_berths_tables_only(netenv):
    subprocess.run(["nft", "add", "table", "ip", "bystander"], check=True)
    try:
        d = start(netenv)
        ok(d, "network", "create", "--subnet", "10.0.12.0/24", "n")
        assert "table ip berth" in _nft()
        d.stop()
        r = subprocess.run([*d.argv(), "--cleanup-network"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert "table ip berth" not in _nft() and "table ip bystander" in _nft()
        assert d.bridge not in _links()
    finally:
        subprocess.run(["nft", "delete", "table", "ip", "bystander"], capture_output=True)


# ---- macvlan, ipvlan, VLAN parents ------------------------------------------------------------------------

def _veth_parent(env: dict[str, object], peer_addr: str) -> str:
    """A veth pair: one end on the host (the parent), the other in a test namespace with ``peer_addr``."""
    tag = os.urandom(2).hex()
    host_end, ns_end, ns = f"bmv{tag}", f"bmp{tag}", f"bmns{tag}"
    env["netns"].append(ns)  # type: ignore[attr-defined]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end, "netns", ns], check=True)
    subprocess.run(["ip", "link", "set", host_end, "up"], check=True)
    subprocess.run(["ip", "-n", ns, "addr", "add", peer_addr, "dev", ns_end], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", ns_end, "up"], check=True)
    return host_end


def _kernel_has(kind: str, *extra: str) -> bool:
    probe = "btprobe" + os.urandom(2).hex()
    host = _links()
    parent = next(iter(sorted(n for n in host if n.startswith("bmv"))), None)
    if parent is None:
        return False
    r = subprocess.run(["ip", "link", "add", "link", parent, "name", probe, "type", kind, *extra],
                       capture_output=True, text=True)
    subprocess.run(["ip", "link", "del", probe], capture_output=True)
    return r.returncode == 0


def test_macvlan_on_a_veth_parent(netenv):
    parent = _veth_parent(netenv, "10.202.0.1/24")
    d = start(netenv)
    ok(d, "network", "create", "-d", "macvlan", "--subnet", "10.202.0.0/24", "--gateway", "10.202.0.1",
       "-o", f"parent={parent}", "mv")
    out = ok(d, "run", "--rm", "--network", "mv", "--ip", "10.202.0.20", "bb", "sh", "-c",
             "busybox ip -o addr show eth0; busybox ping -c 1 -W 3 10.202.0.1")
    assert "10.202.0.20/24" in out and "1 packets received" in out
    out = ok(d, "run", "--rm", "--network", "mv", "bb", "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
    assert "10.202.0.2/24" in out  # the first free address of the subnet
    ok(d, "network", "rm", "mv")
    assert parent in _links()  # berth did not make the parent, so it does not remove it


def test_ipvlan_l2_and_l3(netenv):
    parent = _veth_parent(netenv, "10.203.0.1/24")
    d = start(netenv)
    if not _kernel_has("ipvlan", "mode", "l2"):
        r = dk(d, "network", "create", "-d", "ipvlan", "--subnet", "10.203.0.0/24", "-o", f"parent={parent}", "iv")
        assert r.returncode != 0 and "ipvlan networks are not possible here" in r.stderr, r.stderr
        assert "iv" not in ok(d, "network", "ls", "--format", "{{.Name}}").split()
        pytest.skip("this kernel has no ipvlan links (CONFIG_IPVLAN): berth refuses ipvlan networks, as checked; "
                    "containers on one cannot be exercised")
    ok(d, "network", "create", "-d", "ipvlan", "--subnet", "10.203.0.0/24", "--gateway", "10.203.0.1",
       "-o", f"parent={parent}", "-o", "ipvlan_mode=l2", "iv2")
    out = ok(d, "run", "--rm", "--network", "iv2", "bb", "sh", "-c",
             "busybox ip -o -4 addr show eth0; busybox ping -c 1 -W 3 10.203.0.1")
    assert "10.203.0.2/24" in out and "1 packets received" in out
    ok(d, "network", "create", "-d", "ipvlan", "--subnet", "10.204.0.0/24", "-o", f"parent={parent}",
       "-o", "ipvlan_mode=l3", "iv3")
    out = ok(d, "run", "--rm", "--network", "iv3", "bb", "busybox", "ip", "route")
    assert "default dev eth0" in out


def test_vlan_parent_is_made_and_removed_with_the_network(netenv):
    parent = _veth_parent(netenv, "10.205.0.1/24")
    d = start(netenv)
    if not _kernel_has("vlan", "id", "7"):
        r = dk(d, "network", "create", "-d", "macvlan", "--subnet", "10.205.7.0/24", "-o", f"parent={parent}.7", "v7")
        assert r.returncode != 0 and "cannot create the 802.1q link" in r.stderr, r.stderr
        assert f"{parent}.7" not in _links()
        pytest.skip("this kernel has no 802.1q VLAN links (CONFIG_VLAN_8021Q): berth refuses parent=IFACE.VLAN, as "
                    "checked; the sub-interface's life cannot be exercised")
    ok(d, "network", "create", "-d", "macvlan", "--subnet", "10.205.7.0/24", "-o", f"parent={parent}.7", "v7")
    assert f"{parent}.7" in _links()
    ok(d, "network", "rm", "v7")
    assert f"{parent}.7" not in _links()


# ---- crash safety ------------------------------------------------------------------------------------------

def test_kill9_during_runs_leaks_no_address(netenv):
    d = start(netenv)
    ok(d, "network", "create", "--subnet", "10.0.13.0/24", "crash")
    ok(d, "run", "-d", "--name", "keeper", "--network", "crash", "bb", "sleep", "300")
    keeper_ip = addr_of(d, "keeper", "crash")
    procs = [subprocess.Popen(["docker", "-H", d.url, "run", "--rm", "--network", "crash", "bb", "sleep", "0.2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(6)]
    time.sleep(0.15)
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


# ---- DNS forwarding, events, docker-py ---------------------------------------------------------------------

def _fake_dns(stop: threading.Event, sock: socket.socket) -> None:
    """Answers every A question with 10.9.9.9 (an upstream resolver on 127.0.0.1:53)."""
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            data, addr = sock.recvfrom(512)
        except OSError:
            continue
        qend = 12
        while data[qend] != 0:
            qend += data[qend] + 1
        qend += 5
        qtype = struct.unpack_from("!H", data, qend - 4)[0]
        answers = struct.pack("!HHHIH4s", 0xC00C, 1, 1, 60, 4, bytes([10, 9, 9, 9])) if qtype == 1 else b""
        header = struct.pack("!HHHHHH", struct.unpack_from("!H", data)[0], 0x8180, 1, 1 if answers else 0, 0, 0)
        sock.sendto(header + data[12:qend] + answers, addr)


def test_other_names_are_forwarded_to_the_hosts_resolver(netenv):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 53))
    except OSError as exc:
        sock.close()
        pytest.skip(f"127.0.0.1:53 is taken on this host ({exc.strerror}): no fake upstream resolver")
    stop = threading.Event()
    t = threading.Thread(target=_fake_dns, args=(stop, sock), daemon=True)
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


def test_network_events_and_docker_py(netenv):
    d = start(netenv)
    c = docker.DockerClient(base_url=d.url, version="1.47", timeout=60)
    since = int(time.time()) - 1
    net = c.networks.create("pynet", driver="bridge", ipam=docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet="10.0.15.0/24", gateway="10.0.15.1")]))
    port = _free_port()
    ctr = c.containers.run("bb", HTTPD, detach=True, name="pyweb", network="pynet",
                           ports={"80/tcp": ("127.0.0.1", port)})
    assert _get(f"http://127.0.0.1:{port}/") == "hello-from-httpd\n"
    ctr.reload()
    assert ctr.ports == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert ctr.attrs["NetworkSettings"]["Networks"]["pynet"]["Gateway"] == "10.0.15.1"
    net.reload()
    assert [x.name for x in net.containers] == ["pyweb"]
    ctr.remove(force=True)
    net.remove()
    until = int(time.time()) + 1
    events = [json.loads(line) for line in ok(d, "events", "--since", str(since), "--until", str(until),
                                              "--filter", "type=network", "--format", "{{json .}}").splitlines()]
    assert [e["Action"] for e in events] == ["create", "connect", "disconnect", "destroy"]


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


def test_container_network_mode_shares_the_namespace(netenv):
    d = start(netenv)
    ok(d, "network", "create", "--subnet", "10.0.19.0/24", "pod")
    ok(d, "run", "-d", "--name", "podhost", "--network", "pod", "--ip", "10.0.19.9", "bb", "sleep", "300")
    out = ok(d, "run", "--rm", "--network", "container:podhost", "bb", "sh", "-c",
             "busybox ip -o -4 addr show eth0; cat /etc/resolv.conf")
    assert "10.0.19.9/24" in out and "nameserver 127.0.0.11" in out
    r = dk(d, "run", "--rm", "--network", "container:podhost", "-p", "8080:80", "bb", "true")
    assert r.returncode != 0 and "conflicting options" in r.stderr
    ok(d, "create", "--name", "stopped", "bb", "true")
    r = dk(d, "run", "--rm", "--network", "container:stopped", "bb", "true")
    assert r.returncode != 0 and "non running container" in r.stderr


def test_berth_cli_networks_and_ports(netenv):
    from tests.lib.clis import berth

    d = start(netenv)

    def b(*args: str) -> str:
        r = berth("-H", d.url, *args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout

    nid = b("network", "create", "--subnet", "10.0.21.0/24", "--ip-range", "10.0.21.64/26", "--gateway",
            "10.0.21.254", "--aux-address", "x=10.0.21.64", "-o", "com.docker.network.bridge.name=btcli0",
            "clinet").strip()
    assert "btcli0" in _links()
    assert b("network", "ls", "-q", "--filter", "name=clinet").strip() == nid[:12]
    assert "clinet" in b("network", "ls").split()
    info = json.loads(b("network", "inspect", "clinet"))[0]
    assert info["IPAM"]["Config"] == [{"Subnet": "10.0.21.0/24", "IPRange": "10.0.21.64/26",
                                       "Gateway": "10.0.21.254", "AuxiliaryAddresses": {"x": "10.0.21.64"}}]
    port = _free_port()
    b("run", "-d", "--name", "web", "--network", "clinet", "--network-alias", "www", "-p", f"127.0.0.1:{port}:80",
      "bb", *HTTPD)
    assert addr_of(d, "web", "clinet") == "10.0.21.65"  # .64 is the aux address
    assert _get(f"http://127.0.0.1:{port}/") == "hello-from-httpd\n"
    assert b("port", "web").strip() == f"80/tcp -> 127.0.0.1:{port}"
    assert b("port", "web", "80").strip() == f"127.0.0.1:{port}"
    assert f"127.0.0.1:{port}->80/tcp" in b("ps")
    b("network", "create", "other")
    b("network", "connect", "--alias", "second", "other", "web")
    assert set(api(d).inspect_container("web")["NetworkSettings"]["Networks"]) == {"clinet", "other"}
    b("network", "disconnect", "other", "web")
    b("rm", "-f", "web")
    assert "Deleted Networks:" in b("network", "prune", "-f")
    assert "btcli0" not in _links()


def _keys(value: object, prefix: str = "") -> set[str]:
    """Every key path of a JSON value (list items merged), for shape comparisons."""
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if prefix.endswith(("Containers", "Networks", "Ports", "Options", "Labels")):
                k = "*"  # IDs, names, ports: the shape below them matters, not the key
            out.add(prefix + "." + k)
            out |= _keys(v, prefix + "." + k)
    elif isinstance(value, list):
        for v in value:
            out |= _keys(v, prefix + "[]")
    return out


def test_network_shapes_match_dockerd(netenv):
    from tests.lib.dockerd import Dockerd

    dockerd = Dockerd().start()
    try:
        d = start(netenv)
        subprocess.run(["docker", "-H", dockerd.url, "import", "-", "bb:latest"], input=busybox_rootfs_tar(),
                       check=True, capture_output=True)
        views = {}
        for daemon, subnet in ((dockerd, "10.0.30"), (d, "10.0.31")):
            ok(daemon, "network", "create", "--subnet", f"{subnet}.0/24", "--ip-range", f"{subnet}.128/25",
               "--gateway", f"{subnet}.1", "--label", "a=b", "shape")
            ok(daemon, "run", "-d", "--name", "s1", "--network", "shape", "--ip", f"{subnet}.5", "--network-alias",
               "al", "bb", "sleep", "300")
            c = docker.APIClient(base_url=daemon.url, version="1.41", timeout=60)
            views[daemon] = (c.inspect_network("shape"), c.inspect_container("s1")["NetworkSettings"],
                             c.networks(names=["shape"])[0])
            r = dk(daemon, "network", "create", "shape")
            views[(daemon, "dup")] = r.stderr.strip()
            r = dk(daemon, "network", "rm", "bridge" if daemon is d else "host")
            views[(daemon, "rm")] = r.stderr.strip()
        (dn, dset, dls), (bn, bset, bls) = views[dockerd], views[d]
        assert _keys(dn) - _keys(bn) == set()
        assert _keys(dset) - _keys(bset) == set()
        assert _keys(dls) - _keys(bls) == set()
        for key in ("Driver", "Scope", "Internal", "Attachable", "Labels", "Name", "EnableIPv6"):
            assert dn[key] == bn[key], key
        assert [dict(p, Subnet="", IPRange="", Gateway="") for p in dn["IPAM"]["Config"]] == \
            [dict(p, Subnet="", IPRange="", Gateway="") for p in bn["IPAM"]["Config"]]
        dnet, bnet = dset["Networks"]["shape"], bset["Networks"]["shape"]
        assert (dnet["IPAddress"], dnet["IPPrefixLen"], dnet["Gateway"]) == ("10.0.30.5", 24, "10.0.30.1")
        assert (bnet["IPAddress"], bnet["IPPrefixLen"], bnet["Gateway"]) == ("10.0.31.5", 24, "10.0.31.1")
        assert dnet["IPAMConfig"] == {"IPv4Address": "10.0.30.5"} and bnet["IPAMConfig"] == {"IPv4Address": "10.0.31.5"}
        assert "al" in dnet["Aliases"] and "al" in bnet["Aliases"]
        assert views[(dockerd, "dup")] == views[(d, "dup")]
        assert "pre-defined network and cannot be removed" in views[(dockerd, "rm")]
        assert "pre-defined network and cannot be removed" in views[(d, "rm")]
    finally:
        subprocess.run(["docker", "-H", dockerd.url, "rm", "-f", "s1"], capture_output=True)
        subprocess.run(["docker", "-H", dockerd.url, "network", "rm", "shape"], capture_output=True)
        dockerd.stop()


def test_netlink_sessions_stay_in_their_namespace(tmp_path):
    """A container's eth0 has the host's name: a session must never fall back to the host's namespace."""
    from berth.linux import netlink, netns

    netns.prepare_dir(str(tmp_path))
    path = str(tmp_path / "ns")
    netns.create(path)
    try:
        assert netlink.link_names(path) == ["lo"]
        with netlink.session(path) as ipr:
            assert netlink.index(ipr, "eth0") is None
    finally:
        netns.remove(path)
        subprocess.run(["umount", str(tmp_path)], capture_output=True)


COMPOSE = """
version: "3.8"
services:
  web:
    image: bb
    command: ["sh", "-c", "mkdir -p /www && echo hello-compose > /www/index.html && busybox httpd -f -p 80 -h /www"]
    ports:
      - "127.0.0.1:{port}:80"
  client:
    image: bb
    command: ["sleep", "300"]
    depends_on: [web]
"""


def test_docker_compose_project(netenv, tmp_path):
    """docker-compose 1.29 (Debian's; Python, docker-py underneath) drives berth unchanged: a project
    network, service names in the embedded DNS, a published port, exec, logs, down."""
    import shutil

    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose)")
    d = start(netenv)
    port = _free_port()
    (tmp_path / "docker-compose.yml").write_text(COMPOSE.format(port=port))
    env = {**os.environ, "DOCKER_HOST": d.url, "COMPOSE_PROJECT_NAME": "proj"}

    def dc(*args: str) -> str:
        r = subprocess.run([compose, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout + r.stderr

    try:
        dc("up", "-d")
        assert _get(f"http://127.0.0.1:{port}/") == "hello-compose\n"
        out = dc("exec", "-T", "client", "sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 web 80")
        assert "hello-compose" in out
        assert "proj_default" in [n["Name"] for n in api(d).networks()]
        ps = dc("ps")
        assert "proj_web_1" in ps and f"127.0.0.1:{port}->80/tcp" in ps
        dc("down", "-t", "1")  # sh and sleep ignore SIGTERM as PID 1
        assert "proj_default" not in [n["Name"] for n in api(d).networks()]
        assert api(d).containers(all=True) == []
    finally:
        subprocess.run([compose, "down", "-t", "1"], cwd=tmp_path, env=env, capture_output=True, timeout=120)


# ---- what docker-py's suite checks (issue #10) -----------------------------------------------------------

def test_legacy_link_environment_space_in_a_name_mac_before_start_and_stats(netenv):
    d = start(netenv)
    c = api(d)
    child = c.create_container("bb", "cat", stdin_open=True, environment={"FOO": "1", "HOME": "/h"},
                               ports=[80, (53, "udp")], name="child")["Id"]
    c.start(child)
    parent = c.create_container("bb", "env", host_config=c.create_host_config(
        links={"child": "my-link1"}, network_mode="bridge"), name="parent")["Id"]
    c.start(parent)
    assert c.wait(parent)["StatusCode"] == 0
    env = set(c.logs(parent).decode().split())
    ip = addr_of(d, "child", "bridge")
    assert {"MY_LINK1_NAME=/parent/my-link1", "MY_LINK1_ENV_FOO=1", f"MY_LINK1_PORT=udp://{ip}:53",
            f"MY_LINK1_PORT_80_TCP=tcp://{ip}:80", f"MY_LINK1_PORT_80_TCP_ADDR={ip}", "MY_LINK1_PORT_80_TCP_PORT=80",
            "MY_LINK1_PORT_80_TCP_PROTO=tcp", f"MY_LINK1_PORT_53_UDP_ADDR={ip}"} <= env, env
    assert not any(e.startswith(("MY_LINK1_ENV_HOME=", "MY_LINK1_ENV_PATH=")) for e in env)
    # a name with a space, as docker-py quotes it (%20)
    net = c.create_network("test 01")["Id"]
    assert c.inspect_network("test 01")["Id"] == net
    c.remove_network("test 01")
    # the MAC asked for on connect is shown before the container starts
    c.create_network("macnet")
    other = c.create_container("bb", "true")["Id"]
    c.connect_container_to_network(other, "macnet", mac_address="02:42:ac:11:00:02")
    assert c.inspect_container(other)["NetworkSettings"]["Networks"]["macnet"]["MacAddress"] == "02:42:ac:11:00:02"
    # stats read the container's interfaces from its network namespace
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # into the test's own bridge
        for _ in range(3):
            s.sendto(b"x", (ip, 9))
    stats = c.stats(child, stream=False)
    assert set(stats["networks"]) == {"eth0"} and stats["networks"]["eth0"]["rx_packets"] > 0
    assert "io_service_bytes_recursive" in stats["blkio_stats"]


def test_network_prune_until_keeps_newer_networks(netenv):
    d = start(netenv)
    c = api(d)
    c.create_network("fresh", labels={"k": "v"})
    assert c.prune_networks(filters={"until": "1h"})["NetworksDeleted"] is None  # made now: kept
    assert c.prune_networks(filters={"label!": ["k"]})["NetworksDeleted"] is None
    assert c.prune_networks(filters={"until": str(int(time.time()) + 5)})["NetworksDeleted"] == ["fresh"]
