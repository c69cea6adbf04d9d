"""The network tables: every SQL statement about networks, attachments, addresses and ports.

- ``networks``: one row per network, the predefined ``bridge``/``host``/``none`` included;
- ``attachments``: which networks a container asked for (its endpoint settings, ``request``), and,
  while it runs, what it got (``state``: addresses, MAC, interface names);
- ``ip_allocs``: every address given out, unique per network (the primary key), inserted in the
  same transaction as the attachment's state, and deleted with it;
- ``port_maps``: published ports, unique per (protocol, host address, host port).

Rows come and go as plain values; the network package makes its model of them.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from berth.errors import Conflict
from berth.store.db import Database


@dataclass(frozen=True)
class NetworkRow:
    id: str
    name: str
    driver: str
    created: str
    data: dict[str, Any]  # the rest of the network, as the network package writes it


@dataclass(frozen=True)
class PortRow:
    container_id: str
    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int
    device: str


Attachment = tuple[str, dict[str, Any], dict[str, Any] | None]  # (the other side's ID, request, state or None)


def _network(r: sqlite3.Row) -> NetworkRow:
    return NetworkRow(r["id"], r["name"], r["driver"], r["created"], json.loads(r["data"]))


def _state(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text else None


class NetworkRows:
    def __init__(self, db: Database) -> None:
        self.db = db

    def transaction(self) -> Any:
        """Several writes as one (each method is its own transaction otherwise, or a savepoint)."""
        return self.db.transaction()

    # ---- networks --------------------------------------------------------------------------------
    def all(self) -> list[NetworkRow]:
        with self.db.read() as c:
            return [_network(r) for r in c.execute("SELECT * FROM networks ORDER BY created")]

    def find(self, ref: str) -> NetworkRow | None:
        """By ID, name or ID prefix (hex only: never a LIKE pattern); Conflict when ambiguous."""
        with self.db.read() as c:
            r = c.execute("SELECT * FROM networks WHERE id = ? OR name = ?", (ref, ref)).fetchone()
            if r is None and 1 <= len(ref) <= 64 and all(ch in "0123456789abcdef" for ch in ref):
                rows = c.execute("SELECT * FROM networks WHERE id LIKE ?", (ref + "%",)).fetchall()
                if len(rows) > 1:
                    raise Conflict(f"network {ref} is ambiguous ({len(rows)} matches found based on ID prefix)")
                r = rows[0] if rows else None
        return _network(r) if r is not None else None

    def names(self) -> set[str]:
        with self.db.read() as c:
            return {r[0] for r in c.execute("SELECT name FROM networks")}

    def insert(self, row: NetworkRow, replace: bool = False) -> None:
        try:
            with self.db.transaction() as c:
                c.execute(f"INSERT {'OR REPLACE ' if replace else ''}INTO networks VALUES (?, ?, ?, ?, ?)",
                          (row.id, row.name, row.driver, row.created, json.dumps(row.data)))
        except sqlite3.IntegrityError:
            raise Conflict(f"network with name {row.name} already exists") from None

    def delete(self, network_id: str) -> None:
        """The network and what asked for it (a container's request to be on it)."""
        with self.db.transaction() as c:
            c.execute("DELETE FROM networks WHERE id = ?", (network_id,))
            c.execute("DELETE FROM attachments WHERE network_id = ?", (network_id,))

    def delete_named(self, name: str) -> None:
        with self.db.transaction() as c:
            c.execute("DELETE FROM networks WHERE name = ?", (name,))

    # ---- attachments -----------------------------------------------------------------------------
    def endpoints(self, network_id: str) -> list[Attachment]:
        """(container ID, request, state) of every container on the network, in the order they asked."""
        with self.db.read() as c:
            return [(r[0], json.loads(r[1]), _state(r[2])) for r in c.execute(
                "SELECT container_id, request, state FROM attachments WHERE network_id = ? ORDER BY position",
                (network_id,))]

    def attachments(self, cid: str) -> list[Attachment]:
        """(network ID, request, state) of every network the container asked for, in order."""
        with self.db.read() as c:
            return [(r[0], json.loads(r[1]), _state(r[2])) for r in c.execute(
                "SELECT network_id, request, state FROM attachments WHERE container_id = ? ORDER BY position",
                (cid,))]

    def held(self, cid: str) -> list[str]:
        """IDs of the networks where the container holds an endpoint now."""
        with self.db.read() as c:
            return [r[0] for r in c.execute("SELECT network_id FROM attachments WHERE container_id = ? AND "
                                             "state IS NOT NULL", (cid,))]

    def attachment_state(self, cid: str, network_id: str) -> tuple[bool, dict[str, Any] | None]:
        """(whether the container asked for the network, its endpoint's state)."""
        with self.db.read() as c:
            row = c.execute("SELECT state FROM attachments WHERE container_id = ? AND network_id = ?",
                            (cid, network_id)).fetchone()
        return (row is not None, _state(row[0]) if row is not None else None)

    def attach(self, cid: str, requests: list[tuple[str, dict[str, Any]]]) -> None:
        """The container asks for these networks (network ID, request), after those it has."""
        with self.db.transaction() as c:
            pos = c.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM attachments WHERE container_id = ?",
                            (cid,)).fetchone()[0]
            for i, (nid, req) in enumerate(requests):
                try:
                    c.execute("INSERT INTO attachments VALUES (?, ?, ?, ?, NULL)", (cid, nid, pos + i, json.dumps(req)))
                except sqlite3.IntegrityError:
                    raise Conflict(f"container {cid} is already attached to network {nid}") from None

    def detach(self, cid: str, network_id: str) -> None:
        with self.db.transaction() as c:
            c.execute("DELETE FROM attachments WHERE container_id = ? AND network_id = ?", (cid, network_id))

    def set_state(self, cid: str, network_id: str, state: dict[str, Any] | None) -> None:
        with self.db.transaction() as c:
            c.execute("UPDATE attachments SET state = ? WHERE container_id = ? AND network_id = ?",
                      (json.dumps(state) if state is not None else None, cid, network_id))

    def forget(self, cid: str) -> tuple[list[str], bool]:
        """The container is removed: its attachments, addresses and ports go. Returns (the networks
        where it held an endpoint, whether it had published ports)."""
        with self.db.transaction() as c:
            held = [r[0] for r in c.execute("SELECT network_id FROM attachments WHERE container_id = ? AND "
                                            "state IS NOT NULL", (cid,)).fetchall()]
            c.execute("DELETE FROM attachments WHERE container_id = ?", (cid,))
            c.execute("DELETE FROM ip_allocs WHERE container_id = ?", (cid,))
            ports = c.execute("DELETE FROM port_maps WHERE container_id = ?", (cid,)).rowcount
        return held, bool(ports)

    def holders(self) -> set[str]:
        """Containers that hold an endpoint, an address or a port."""
        with self.db.read() as c:
            out = {r[0] for r in c.execute("SELECT container_id FROM attachments WHERE state IS NOT NULL")}
            out |= {r[0] for r in c.execute("SELECT container_id FROM ip_allocs")}
            out |= {r[0] for r in c.execute("SELECT container_id FROM port_maps")}
        return out

    def holds(self, cid: str) -> bool:
        """Whether the container holds an address or a port."""
        with self.db.read() as c:
            return c.execute("SELECT 1 FROM ip_allocs WHERE container_id = ? UNION ALL SELECT 1 FROM port_maps "
                             "WHERE container_id = ? LIMIT 1", (cid, cid)).fetchone() is not None

    # ---- addresses -------------------------------------------------------------------------------
    def addresses(self, network_id: str) -> list[str]:
        with self.db.read() as c:
            return [r[0] for r in c.execute("SELECT address FROM ip_allocs WHERE network_id = ?", (network_id,))]

    def add_address(self, network_id: str, address: str, cid: str) -> None:
        try:
            with self.db.transaction() as c:
                c.execute("INSERT INTO ip_allocs VALUES (?, ?, ?)", (network_id, address, cid))
        except sqlite3.IntegrityError:
            raise Conflict(f"Address already in use: {address}") from None

    def release(self, cid: str, network_id: str) -> dict[str, Any] | None:
        """The endpoint goes: its addresses are free, its state cleared; returns the state it had."""
        with self.db.transaction() as c:
            row = c.execute("SELECT state FROM attachments WHERE container_id = ? AND network_id = ?",
                            (cid, network_id)).fetchone()
            c.execute("DELETE FROM ip_allocs WHERE network_id = ? AND container_id = ?", (network_id, cid))
            c.execute("UPDATE attachments SET state = NULL WHERE container_id = ? AND network_id = ?", (cid, network_id))
        return _state(row[0]) if row is not None else None

    def release_addresses(self, cid: str) -> None:
        """Every address the container holds (those of networks removed meanwhile included)."""
        with self.db.transaction() as c:
            c.execute("DELETE FROM ip_allocs WHERE container_id = ?", (cid,))


class PortRows:
    """``port_maps``: published ports, unique per (protocol, host address, host port)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, rows: list[PortRow]) -> None:
        """All or none; System-free: a port another container has (the same address, or a wildcard
        either side) is a Conflict naming it."""
        with self.db.transaction() as c:
            for r in rows:
                clash = c.execute("SELECT container_id FROM port_maps WHERE proto = ? AND host_port = ? AND "
                                  "(host_ip = ? OR host_ip IN ('0.0.0.0', '::') OR ? IN ('0.0.0.0', '::'))",
                                  (r.proto, r.host_port, r.host_ip, r.host_ip)).fetchone()
                if clash is not None:
                    raise Conflict(f"Bind for {r.host_ip}:{r.host_port} failed: port is already allocated")
                c.execute("INSERT INTO port_maps VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (r.container_id, r.proto, r.host_ip, r.host_port, r.container_ip, r.container_port,
                           r.device))

    def of(self, cid: str) -> list[tuple[str, str, int, int]]:
        """(proto, host_ip, host_port, container_port) of the container's published ports."""
        with self.db.read() as c:
            return [(r[0], r[1], r[2], r[3]) for r in c.execute(
                "SELECT proto, host_ip, host_port, container_port FROM port_maps WHERE container_id = ? "
                "ORDER BY container_port, proto, host_ip", (cid,))]

    def has(self, cid: str) -> bool:
        with self.db.read() as c:
            return c.execute("SELECT 1 FROM port_maps WHERE container_id = ?", (cid,)).fetchone() is not None

    def all(self) -> list[tuple[Any, ...]]:
        """Every published port as stored (proto, host_ip, host_port, container_ip, container_port,
        device): the firewall types each again before it renders it."""
        with self.db.read() as c:
            return [tuple(r) for r in c.execute("SELECT proto, host_ip, host_port, container_ip, container_port, "
                                                "device FROM port_maps").fetchall()]

    def delete(self, cid: str) -> None:
        with self.db.transaction() as c:
            c.execute("DELETE FROM port_maps WHERE container_id = ?", (cid,))
