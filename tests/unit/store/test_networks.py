"""The network tables' repositories on a real SQLite database under tmp: networks by name, ID and
prefix, attachments in order, addresses that cannot be given twice, ports that cannot clash."""

from __future__ import annotations

import pytest

from berth.errors import Conflict
from berth.store.db import Database
from berth.store.networks import NetworkRow, NetworkRows, PortRow, PortRows


@pytest.fixture()
def db(tmp_path):  # type: ignore[no-untyped-def]
    d = Database(str(tmp_path / "berth.db"))
    yield d
    d.close()


def _net(nid: str, name: str) -> NetworkRow:
    return NetworkRow(nid, name, "bridge", f"2026-11-30T00:00:0{nid[0]}Z", {"internal": False})


def test_networks_by_name_id_and_prefix_and_a_name_taken(db: Database) -> None:
    rows = NetworkRows(db)
    rows.insert(_net("1" * 64, "front"))
    rows.insert(_net("2" * 64, "back"))
    assert [r.name for r in rows.all()] == ["front", "back"]  # by creation
    found = rows.find("2222")
    assert found is not None and found.name == "back" and found.data == {"internal": False}
    assert rows.find("front") == rows.find("1" * 64)
    assert rows.find("%") is None
    with pytest.raises(Conflict, match="network with name front already exists"):
        rows.insert(_net("3" * 64, "front"))
    rows.insert(NetworkRow("1" * 64, "front", "bridge", "x", {"internal": True}), replace=True)
    again = rows.find("front")
    assert again is not None and again.data == {"internal": True}
    rows.delete_named("back")
    assert rows.names() == {"front"}


def test_attachments_addresses_and_forgetting_a_container(db: Database) -> None:
    rows, ports = NetworkRows(db), PortRows(db)
    nid, cid = "1" * 64, "c" * 64
    rows.insert(_net(nid, "front"))
    rows.attach(cid, [(nid, {"Aliases": ["web"]})])
    assert rows.attachments(cid) == [(nid, {"Aliases": ["web"]}, None)]
    with pytest.raises(Conflict):
        rows.attach(cid, [(nid, {})])  # once per network
    with rows.transaction():
        rows.add_address(nid, "10.0.0.2", cid)
        rows.set_state(cid, nid, {"IPAddress": "10.0.0.2"})
    with pytest.raises(Conflict, match="Address already in use: 10.0.0.2"):
        rows.add_address(nid, "10.0.0.2", "d" * 64)
    assert rows.held(cid) == [nid] and rows.holds(cid) and rows.holders() == {cid}
    ports.add([PortRow(cid, "tcp", "0.0.0.0", 8080, "10.0.0.2", 80, "br0")])
    held, had_ports = rows.forget(cid)
    assert (held, had_ports) == ([nid], True)
    assert rows.attachments(cid) == [] and rows.addresses(nid) == [] and ports.of(cid) == []


def test_a_published_port_clashes_with_the_same_address_or_a_wildcard(db: Database) -> None:
    ports = PortRows(db)
    ports.add([PortRow("a" * 64, "tcp", "127.0.0.1", 8080, "10.0.0.2", 80, "br0")])
    for host_ip in ("127.0.0.1", "0.0.0.0"):
        with pytest.raises(Conflict, match="port is already allocated"):
            ports.add([PortRow("b" * 64, "tcp", host_ip, 8080, "10.0.0.3", 80, "br0")])
    ports.add([PortRow("b" * 64, "udp", "0.0.0.0", 8080, "10.0.0.3", 80, "br0"),  # another protocol
               PortRow("b" * 64, "tcp", "127.0.0.2", 8081, "10.0.0.3", 81, "br0")])
    with pytest.raises(Conflict):  # all or none: the first row is not kept when the second clashes
        ports.add([PortRow("c" * 64, "tcp", "127.0.0.3", 9000, "10.0.0.4", 80, "br0"),
                   PortRow("c" * 64, "tcp", "127.0.0.2", 8081, "10.0.0.4", 81, "br0")])
    assert ports.of("c" * 64) == [] and len(ports.all()) == 3
