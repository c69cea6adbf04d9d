"""The default bridge (``--bip``, ``--fixed-cidr``, ``-b``), ``none`` and ``host``, and the subnets berth
chooses itself: never one the host routes."""

from __future__ import annotations

import ipaddress
import os
import subprocess

from tests.network.netenv import api, dk, links, ok, start


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
    assert {"lo", d.bridge} <= inside and inside == links() | inside
    info = api(d).inspect_container(ok(d, "create", "--network", "host", "bb", "true").strip())
    assert list(info["NetworkSettings"]["Networks"]) == ["host"] and info["HostConfig"]["NetworkMode"] == "host"


def test_automatic_subnets_skip_what_the_host_routes(netenv):
    """A subnet that a link on the host already uses is skipped, and the choice is logged."""
    host_end, ns_end, ns = "bth" + os.urandom(2).hex(), "btn" + os.urandom(2).hex(), "btns" + os.urandom(2).hex()
    subprocess.run(["ip", "netns", "add", netenv["cleanup"].netns(ns)], check=True)  # type: ignore[attr-defined]
    subprocess.run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end, "netns", ns], check=True)
    subprocess.run(["ip", "addr", "add", "10.201.0.1/24", "dev", host_end], check=True)
    subprocess.run(["ip", "link", "set", host_end, "up"], check=True)
    d = start(netenv, ["--default-address-pool", "base=10.201.0.0/16,size=24"])
    bridge = api(d).inspect_network("bridge")["IPAM"]["Config"][0]["Subnet"]
    assert bridge == "10.201.1.0/24"  # 10.201.0.0/24 is on the host's veth
    ok(d, "network", "create", "auto1")
    assert api(d).inspect_network("auto1")["IPAM"]["Config"][0]["Subnet"] == "10.201.2.0/24"
    assert "chose 10.201.2.0/24" in d.log() and "chose 10.201.1.0/24" in d.log()
