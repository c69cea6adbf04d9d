"""macvlan and ipvlan on a veth parent of the test's own (never the host's NIC), and a VLAN parent made
and removed with its network (skipped, saying so, where the kernel lacks ipvlan or 802.1q)."""

from __future__ import annotations

import pytest

from tests.network.netenv import dk, kernel_has, links, ok, start, veth_parent


def test_macvlan_on_a_veth_parent(netenv):
    parent = veth_parent(netenv, "10.202.0.1/24")
    d = start(netenv)
    ok(d, "network", "create", "-d", "macvlan", "--subnet", "10.202.0.0/24", "--gateway", "10.202.0.1",
       "-o", f"parent={parent}", "mv")
    out = ok(d, "run", "--rm", "--network", "mv", "--ip", "10.202.0.20", "bb", "sh", "-c",
             "busybox ip -o addr show eth0; busybox ping -c 1 -W 3 10.202.0.1")
    assert "10.202.0.20/24" in out and "1 packets received" in out
    out = ok(d, "run", "--rm", "--network", "mv", "bb", "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
    assert "10.202.0.2/24" in out  # the first free address of the subnet
    ok(d, "network", "rm", "mv")
    assert parent in links()  # berth did not make the parent, so it does not remove it


def test_ipvlan_l2_and_l3(netenv):
    parent = veth_parent(netenv, "10.203.0.1/24")
    d = start(netenv)
    if not kernel_has("ipvlan", "mode", "l2"):
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
    parent = veth_parent(netenv, "10.205.0.1/24")
    d = start(netenv)
    if not kernel_has("vlan", "id", "7"):
        r = dk(d, "network", "create", "-d", "macvlan", "--subnet", "10.205.7.0/24", "-o", f"parent={parent}.7", "v7")
        assert r.returncode != 0 and "cannot create the 802.1q link" in r.stderr, r.stderr
        assert f"{parent}.7" not in links()
        pytest.skip("this kernel has no 802.1q VLAN links (CONFIG_VLAN_8021Q): berth refuses parent=IFACE.VLAN, as "
                    "checked; the sub-interface's life cannot be exercised")
    ok(d, "network", "create", "-d", "macvlan", "--subnet", "10.205.7.0/24", "-o", f"parent={parent}.7", "v7")
    assert f"{parent}.7" in links()
    ok(d, "network", "rm", "v7")
    assert f"{parent}.7" not in links()
