"""The network routes' backend: the network controller in the api's NetworkBackend shape, its
blocking work (netlink, nft, the database) in threads."""

from __future__ import annotations

import asyncio
from typing import Any

from berth.network.controller import NetworkController


class NetworkAPI:
    def __init__(self, controller: NetworkController) -> None:
        self.c = controller

    async def network_create(self, body: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self.c.create, body)

    async def network_list(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.c.list_networks, filters)

    async def network_inspect(self, name: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.c.inspect, name)

    async def network_remove(self, name: str) -> None:
        await asyncio.to_thread(self.c.remove, name)

    async def networks_prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        return await asyncio.to_thread(self.c.prune, filters)

    async def network_connect(self, name: str, body: dict[str, Any]) -> None:
        cid, _nid = await asyncio.to_thread(self.c.connect, name, body)
        if self.c.members.is_running(cid):
            await self.c.discovery.start(self.c.members.member(cid))

    async def network_disconnect(self, name: str, body: dict[str, Any]) -> None:
        await asyncio.to_thread(self.c.disconnect, name, body)
