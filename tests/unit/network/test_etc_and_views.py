"""The network package's pure parts: /etc/hosts and resolv.conf as containers get them, the overlap
check of asked-for subnets, the network list's filters."""

from __future__ import annotations

import ipaddress

import pytest

from berth.errors import Forbidden, InvalidParameter
from berth.network import etc, ipam
from berth.network.catalog import Catalog
from berth.network.model import NO_MEMBERS, Member, NetSettings, Network
from berth.network.views import NetworkViews
from berth.store.db import Database
from berth.store.networks import NetworkRows, PortRows


def _member(**hc: object) -> Member:
    return Member("c" * 64, "web", "web", "example.test", dict(hc), {})


def _net(name: str, predefined_gateway: str = "10.0.0.1") -> Network:
    return Network("1" * 64, name, "bridge", "", pools=[ipam.Pool(ipaddress.ip_network("10.0.0.0/24"),
                                                                 gateway=ipaddress.ip_address(predefined_gateway))])


def test_hosts_has_the_containers_own_names_links_and_extra_hosts() -> None:
    got = [(_net("front"), {"IPAddress": "10.0.0.5", "Gateway": "10.0.0.1"})]
    text = etc.hosts_file(_member(ExtraHosts=["gw:host-gateway", "db=10.9.9.9"], Links=["/other:alias"]), got,
                          lambda ref, nets: "10.0.0.7" if ref == "other" else "", lambda: "172.17.0.1")
    assert text.startswith(etc.HOSTS_HEAD)
    assert "10.0.0.1\tgw\n" in text and "10.9.9.9\tdb\n" in text  # host-gateway: this network's gateway
    assert "10.0.0.7\talias other\n" in text and text.endswith("10.0.0.5\tweb.example.test web\n")
    alone = etc.hosts_file(_member(ExtraHosts=["gw:host-gateway"]), [], lambda r, n: "", lambda: "172.17.0.1")
    assert "172.17.0.1\tgw\n" in alone  # no network of its own: the default bridge's gateway


def test_resolv_conf_embedded_or_the_hosts() -> None:
    cfg = NetSettings(dns=["192.0.2.53"], dns_search=["corp.test"])
    embedded = etc.resolv_file(_member(), [_net("front")], cfg)
    assert "nameserver 127.0.0.11\n" in embedded and "options ndots:0\n" in embedded
    assert "forwards other names to 192.0.2.53" in embedded and "search corp.test\n" in embedded
    default = etc.resolv_file(_member(Dns=["198.51.100.1"]), [_net("bridge")], cfg)
    assert "nameserver 198.51.100.1\n" in default and "127.0.0.11" not in default
    assert etc.upstreams({"Dns": ["198.51.100.1"]}, cfg) == ["198.51.100.1"]


def test_asked_for_subnets_may_not_overlap_another_networks() -> None:
    pools = ipam.parse_pools([{"Subnet": "10.1.0.0/24"}])
    ipam.check_overlap(pools, [ipaddress.ip_network("10.2.0.0/16"), ipaddress.ip_network("fd00::/64")])
    with pytest.raises(Forbidden, match="Pool overlaps with other one"):
        ipam.check_overlap(pools, [ipaddress.ip_network("10.1.0.128/25")])


def test_the_network_list_filters(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = Database(str(tmp_path / "berth.db"))
    try:
        _filters(db)
    finally:
        db.close()


def _filters(db: Database) -> None:
    rows = NetworkRows(db)
    views = NetworkViews(Catalog(rows), PortRows(db), NO_MEMBERS, lambda cid: "")
    net = Network("ab" + "0" * 62, "front", "bridge", "", labels={"team": "blue"})
    rows.insert(net.row())
    assert views.matches(net, {"name": ["ron"], "id": ["ab"], "label": ["team=blue"], "type": ["custom"],
                               "dangling": ["true"], "driver": ["bridge"], "scope": ["local"]})
    assert not views.matches(net, {"label": ["team=red"]}) and not views.matches(net, {"type": ["builtin"]})
    with pytest.raises(InvalidParameter, match="invalid filter: 'type'='odd'"):
        views.matches(net, {"type": ["odd"]})
    rows.attach("c" * 64, [(net.id, {})])
    rows.set_state("c" * 64, net.id, {"EndpointID": "e"})
    assert not views.matches(net, {"dangling": ["true"]})  # a container is on it
