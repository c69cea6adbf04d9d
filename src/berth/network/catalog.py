"""The networks as the network package reads them: typed ``Network``s from the store, found by ID,
name or ID prefix, with the attachments on each side."""

from __future__ import annotations

from typing import Any

from berth.errors import NotFound
from berth.network import ipam
from berth.network.model import Network
from berth.store.networks import NetworkRows

Endpoint = tuple[Network, dict[str, Any], dict[str, Any] | None]  # (network, request, state or None)


class Catalog:
    def __init__(self, rows: NetworkRows) -> None:
        self.rows = rows

    def all(self) -> list[Network]:
        return [Network.from_row(r) for r in self.rows.all()]

    def find(self, ref: str) -> Network | None:
        row = self.rows.find(ref)
        return Network.from_row(row) if row is not None else None

    def get(self, ref: str) -> Network:
        net = self.find(ref)
        if net is None:
            raise NotFound(f"network {ref} not found")
        return net

    def subnets_in_use(self, exclude: str = "") -> list[ipam.Net]:
        return [p.subnet for n in self.all() if n.name != exclude for p in n.pools]

    def attachments(self, cid: str) -> list[Endpoint]:
        """The networks the container asked for (those removed meanwhile left out), in order."""
        out = []
        for nid, req, st in self.rows.attachments(cid):
            net = self.find(nid)
            if net is not None:
                out.append((net, req, st))
        return out

    def endpoints(self, network_id: str) -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
        return self.rows.endpoints(network_id)
