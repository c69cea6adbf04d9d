"""Service discovery: the embedded DNS server in each container's namespace on user-defined networks,
and the names it answers — the containers sharing a network with the asker, by name, hostname,
short ID, network alias and link alias."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from berth.errors import BerthError, NotFound
from berth.linux import netns
from berth.network import dns, etc
from berth.network.catalog import Catalog
from berth.network.model import Member, Members, NetSettings

log = logging.getLogger("berth.network")


class Discovery:
    def __init__(self, catalog: Catalog, members: Members, cfg: NetSettings,
                 netns_path: Callable[[str], str]) -> None:
        self.catalog = catalog
        self.members = members
        self.cfg = cfg
        self._netns_path = netns_path
        self._servers: dict[str, dns.Server] = {}
        # bound at setup, served once the container started: (UDP, TCP)
        self._pending: dict[str, tuple[socket.socket, socket.socket]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def keep_sockets(self, cid: str, socks: tuple[socket.socket, socket.socket]) -> None:
        """Sockets bound inside the namespace as it was made: the first question waits in them."""
        self._pending[cid] = socks

    def holds(self, cid: str) -> bool:
        return cid in self._servers or cid in self._pending

    def stop(self, cid: str) -> None:
        server = self._servers.pop(cid, None)
        if server is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(server.close)
        for pending in self._pending.pop(cid, ()):
            pending.close()

    def wants_dns(self, cid: str) -> bool:
        return any(not n.predefined and st is not None for n, _r, st in self.catalog.attachments(cid))

    async def start(self, m: Member) -> None:
        """Serve the embedded resolver in the container's namespace (user-defined networks only)."""
        if not self.wants_dns(m.id) or m.id in self._servers:
            return
        socks = self._pending.pop(m.id, None)
        if socks is None:
            try:
                socks = await asyncio.to_thread(netns.inside, self._netns_path(m.id), dns.open_sockets)
            except (OSError, BerthError) as exc:
                log.warning("container %s: embedded DNS not started: %s", m.id[:12], exc)
                return
        server = dns.Server(lambda name, qtype: self.lookup(m.id, name), lambda: self.upstreams(m))
        await server.serve(socks)
        self._servers[m.id] = server

    def upstreams(self, m: Member) -> list[str]:
        """Where the embedded resolver forwards a container's other questions: nowhere when every
        network it is on is ``internal`` (such a container must not reach outside, DNS included)."""
        nets = [n for n, _r, st in self.catalog.attachments(m.id) if st is not None and not n.predefined]
        if nets and all(n.internal for n in nets):
            return []
        return etc.upstreams(m.host_config, self.cfg)

    def lookup(self, cid: str, name: str) -> list[str] | None:
        """Addresses of ``name`` as the container ``cid`` sees it: on the user-defined networks it shares."""
        mine = [(n, r) for n, r, st in self.catalog.attachments(cid) if st is not None and not n.predefined]
        if not mine:
            return None
        name = name.lower()
        links = {}
        with contextlib.suppress(NotFound):
            for link in self.members.member(cid).host_config.get("Links") or []:
                target, _, alias = link.partition(":")
                links[(alias.rsplit("/", 1)[-1] or target).lower()] = target.lstrip("/").lower()
        for net, req in mine:
            wanted = {name}
            for lk in req.get("Links") or []:
                target, _, alias = lk.partition(":")
                if (alias or target).lower() == name:
                    wanted.add(target.lower())
            if name in links:
                wanted.add(links[name])
            for other, oreq, st in self.catalog.endpoints(net.id):
                if st is None:
                    continue
                names = {a.lower() for a in oreq.get("Aliases") or []} | {other[:12]}
                with contextlib.suppress(NotFound):
                    names.add(self.members.ref(other)[1].lower())
                with contextlib.suppress(NotFound):
                    names.add(self.members.member(other).hostname.lower())
                if names & wanted or any(n + "." + net.name.lower() == name for n in names):
                    return [a for a in (st.get("IPAddress"), st.get("GlobalIPv6Address")) if a]
        return None
