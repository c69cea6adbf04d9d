"""A container's network while it runs, in the manner of libnetwork's sandbox: its namespace (a file
under ``<exec-root>/netns``, made before the runtime runs, so the network is ready before the
container's first instruction), an endpoint per network it joins (addresses from IPAM, the link the
driver makes, the state recorded with the addresses in one transaction), its published ports and
its /etc files. Everything is released when the container stops; ``reconcile`` at start releases
what belongs to containers that are not running, so no address is leaked or given twice."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from typing import Any

from berth.errors import BerthError, Conflict, Forbidden, NotFound
from berth.linux import netns
from berth.linux.files import read_text
from berth.network import dns, etc, ipam
from berth.network.catalog import Catalog
from berth.network.discovery import Discovery
from berth.network.drivers import DRIVERS, Join, Leave, namespace_ready
from berth.network.model import Member, Members, NetSettings, Network, Setup
from berth.network.ports import Ports

log = logging.getLogger("berth.network")
Emit = Callable[[str, str, str, dict[str, str]], None]


def mac_for(addr: ipaddress.IPv4Address | None) -> str:
    """Docker's MAC for an IPv4 address (02:42 and the address), or a random one of the same prefix."""
    if addr is None:
        return "02:42:" + ":".join(f"{b:02x}" for b in os.urandom(4))
    return "02:42:" + ":".join(f"{b:02x}" for b in addr.packed)


class Sandboxes:
    def __init__(self, catalog: Catalog, members: Members, cfg: NetSettings, ports: Ports, discovery: Discovery,
                 emit: Emit, lock: threading.RLock, netns_dir: str) -> None:
        self.catalog = catalog
        self.rows = catalog.rows
        self.members = members
        self.cfg = cfg
        self.ports = ports
        self.discovery = discovery
        self.emit = emit
        self.lock = lock
        self.netns_dir = netns_dir
        self._netns_dir_ready = False

    def netns_path(self, cid: str) -> str:
        return os.path.join(self.netns_dir, cid)

    def _event(self, action: str, net: Network, cid: str) -> None:
        self.emit("network", action, net.id, {"container": cid, "name": net.name, "type": net.driver})

    # ---- start -----------------------------------------------------------------------------------
    def setup(self, m: Member) -> Setup:
        """Before the runtime runs: the namespace, its links and addresses, published ports, /etc files."""
        mode = m.mode
        if mode == "host":
            return Setup(None, self._hosts(m, []), read_text("/etc/resolv.conf"))
        if mode.startswith("container:"):
            other = mode.split(":", 1)[1]
            pid = self.members.pid(other) if self.members.is_running(other) else 0
            if not pid:
                raise Conflict(f"cannot join network of a non running container: {other}")
            path = self.netns_path(other)
            hosts, resolv = self.members.etc_files(other)
            return Setup(path if os.path.exists(path) else f"/proc/{pid}/ns/net", hosts, resolv)
        atts = self.catalog.attachments(m.id)
        if mode == "none" or not atts:
            return Setup(None, self._hosts(m, []), "")
        path = self.netns_path(m.id)
        self.teardown(m.id)  # whatever an interrupted run left
        if not self._netns_dir_ready:
            netns.prepare_dir(self.netns_dir)
            self._netns_dir_ready = True
        embedded_dns = any(not n.predefined for n, _r, _s in atts)

        def inside() -> tuple[socket.socket, tuple[socket.socket, socket.socket] | None]:
            # run by the thread that made the namespace, so inside it: lo up, a netlink socket for eth0's
            # setup, and the DNS socket, bound before the container's first instruction (its first
            # question waits in the socket)
            return namespace_ready(), dns.open_sockets() if embedded_dns else None

        nl, dns_sock = netns.create(path, then=inside)  # type: ignore[misc]
        try:
            if dns_sock is not None:
                self.discovery.keep_sockets(m.id, dns_sock)
            got = []
            for i, (net, req, _st) in enumerate(atts):
                got.append((net, self.join(m, net, req, path, f"eth{i}", default_route=(i == 0),
                                           nl=nl if i == 0 else None)))
            self.ports.publish(m, got)
        except BaseException:
            nl.close()
            self.teardown(m.id)
            raise
        return Setup(path, self._hosts(m, got), etc.resolv_file(m, [n for n, _ in got], self.cfg))

    def join(self, m: Member, net: Network, req: dict[str, Any], path: str, ifname: str,
             default_route: bool, nl: socket.socket | None = None) -> dict[str, Any]:
        """An endpoint on ``net``: addresses allocated and recorded with the endpoint's state in one
        transaction, then the driver's link."""
        ipam_cfg = req.get("IPAMConfig") or {}
        addrs: list[tuple[ipam.Pool, ipam.Addr]] = []
        with self.lock, self.rows.transaction():
            used = {ipaddress.ip_address(a) for a in self.rows.addresses(net.id)}
            for version, key in ((4, "IPv4Address"), (6, "IPv6Address")):
                pool = next((p for p in net.pools if p.subnet.version == version), None)
                if pool is None:
                    continue
                want_text = ipam_cfg.get(key)
                want = ipam.parse_addr(want_text, "IP") if want_text else None
                if want is not None:
                    pool = next((p for p in net.pools if want in p.subnet), pool)
                addr = ipam.allocate(pool, used, want)
                self.rows.add_address(net.id, str(addr), m.id)
                addrs.append((pool, addr))
            v4 = next((a for p, a in addrs if a.version == 4), None)
            mac = req.get("MacAddress") or (m.mac if ifname == "eth0" else "") or mac_for(v4)
            gateways = [str(p.gateway) for p, _a in addrs if p.gateway is not None]
            j = Join(ifname, [ipaddress.ip_interface(f"{a}/{p.subnet.prefixlen}") for p, a in addrs],
                     gateways, default_route and not net.internal, mac, nl=nl)
            state = {"EndpointID": secrets.token_hex(32), "Ifname": ifname, "HostIfname": j.host_ifname,
                     "MacAddress": mac, "IPAddress": "", "IPPrefixLen": 0, "Gateway": "", "GlobalIPv6Address": "",
                     "GlobalIPv6PrefixLen": 0, "IPv6Gateway": ""}
            for p, a in addrs:
                if a.version == 4:
                    state.update(IPAddress=str(a), IPPrefixLen=p.subnet.prefixlen, Gateway=str(p.gateway or ""))
                else:
                    state.update(GlobalIPv6Address=str(a), GlobalIPv6PrefixLen=p.subnet.prefixlen,
                                 IPv6Gateway=str(p.gateway or ""))
            self.rows.set_state(m.id, net.id, state)
        try:
            got_mac = DRIVERS[net.driver].join(net, j, path)
        except BaseException:
            self.release_endpoint(m.id, net)
            raise
        if got_mac and got_mac != mac:  # the link kept its own (ipvlan shares the parent's)
            state["MacAddress"] = got_mac
            self.rows.set_state(m.id, net.id, state)
        self._event("connect", net, m.id)
        return state

    def release_endpoint(self, cid: str, net: Network, links_too: bool = True) -> None:
        """Free the endpoint's addresses. ``links_too=False`` when the namespace is about to go: the
        kernel then removes its links itself, asynchronously (deleting a veth waits ~30 ms for RCU)."""
        st = self.rows.release(cid, net.id)
        if links_too and st:
            with contextlib.suppress(BerthError):
                DRIVERS[net.driver].leave(net, Leave(st.get("HostIfname", "")))

    # ---- stop ------------------------------------------------------------------------------------
    def teardown(self, cid: str) -> None:
        """Release everything the container's network holds; safe to call when it holds nothing."""
        self.discovery.stop(cid)
        self.ports.release(cid)
        path = self.netns_path(cid)
        ns_goes = os.path.exists(path)
        for nid in self.rows.held(cid):
            net = self.catalog.find(nid)
            if net is None:
                continue
            self.release_endpoint(cid, net, links_too=not ns_goes)
            self._event("disconnect", net, cid)
        self.rows.release_addresses(cid)  # addresses of networks removed meanwhile
        if ns_goes:
            netns.remove(path)

    def holds(self, cid: str) -> bool:
        """Whether the container's network still holds a namespace, an address or a port."""
        return os.path.exists(self.netns_path(cid)) or self.discovery.holds(cid) or self.rows.holds(cid)

    def reconcile(self, running: Callable[[str], bool], live: list[Member]) -> None:
        """At start: release what belongs to containers that are not running; re-reserve the published
        ports of those that are."""
        for cid in self.rows.holders():
            if not running(cid):
                log.info("releasing the network of container %s (not running)", cid[:12])
                self.teardown(cid)
        if os.path.isdir(self.netns_dir):
            for name in os.listdir(self.netns_dir):
                if not name.startswith(".") and not running(name):
                    netns.remove(os.path.join(self.netns_dir, name))
        self.ports.reserve_again(live)
        self.ports.apply()

    # ---- a running container joins or leaves ------------------------------------------------------
    def connect_running(self, m: Member, net: Network, req: dict[str, Any]) -> None:
        path = self.netns_path(m.id)
        if not os.path.exists(path):
            raise Forbidden("the container has no network namespace of berth's (it started with none or host)")
        used = {st["Ifname"] for _n, _r, st in self.catalog.attachments(m.id) if st}
        ifname = next(f"eth{i}" for i in range(64) if f"eth{i}" not in used)
        self.join(m, net, req, path, ifname, default_route=False)

    def disconnect(self, cid: str, net: Network, state: dict[str, Any]) -> None:
        """The container leaves ``net``, its namespace staying: its link goes first, then its addresses."""
        with contextlib.suppress(BerthError):
            DRIVERS[net.driver].leave(net, Leave("", state.get("Ifname", ""), self.netns_path(cid)))
        self.release_endpoint(cid, net)
        self._event("disconnect", net, cid)

    # ---- /etc/hosts --------------------------------------------------------------------------------
    def _hosts(self, m: Member, got: list[tuple[Network, dict[str, Any]]]) -> str:
        return etc.hosts_file(m, got, self.address_of, self._bridge_gateway)

    def _bridge_gateway(self) -> str:
        bridge = self.catalog.find("bridge")
        return str(bridge.pools[0].gateway) if bridge and bridge.pools else ""

    def address_of(self, ref: str, nets: list[Network]) -> str:
        """Container ``ref``'s address on one of ``nets`` (any network when empty); "" when none."""
        try:
            cid, _ = self.members.ref(ref)
        except NotFound:
            return ""
        for net, _req, st in self.catalog.attachments(cid):
            if st and (not nets or any(n.id == net.id for n in nets)):
                return st.get("IPAddress") or st.get("GlobalIPv6Address") or ""
        return ""
