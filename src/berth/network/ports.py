"""Published ports: the host port reserved with a socket of berth's own (so no other program takes
it), a row per mapping, and the firewall's DNAT rules written from those rows — in the kernel, with
no userland proxy. Where nft rules are made: ``firewall.py`` renders them; ``Ports.apply`` decides
what they say, from the database."""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from berth import netvalues
from berth.errors import BerthError, Conflict, System
from berth.network.catalog import Catalog
from berth.network.firewall import BridgeRules, Firewall, NullFirewall, PortRule, Ruleset
from berth.network.model import HOST_BINDING_OPT, ICC_OPT, MASQ_OPT, Member, NetSettings, Network, opt_bool
from berth.store.networks import PortRow, PortRows

log = logging.getLogger("berth.network")


def reserve(proto: str, host_ip: str, host_port: str) -> tuple[socket.socket, int]:
    """Bind (without listening) the host port, so no other program takes it while it is published;
    port "" or "0": the kernel picks a free one. Ranges "A-B": the first free one."""
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    stype = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    first, last = netvalues.parse_host_port(host_port)
    err: OSError | None = None
    for port in range(first, last + 1):
        sock = socket.socket(family, stype | socket.SOCK_CLOEXEC, socket.IPPROTO_SCTP if proto == "sctp" else 0)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host_ip, port))
            return sock, sock.getsockname()[1]
        except OSError as exc:
            sock.close()
            err = exc
    raise System(f"Bind for {host_ip}:{host_port or 0} failed: port is already allocated"
                 + (f" ({err.strerror})" if err and err.errno != 98 else ""))


class Ports:
    def __init__(self, catalog: Catalog, cfg: NetSettings, lock: threading.RLock) -> None:
        self.catalog = catalog
        self.rows = PortRows(catalog.rows.db)
        self.cfg = cfg
        self.lock = lock  # the network package's: allocations and their rows, one change at a time
        self.firewall: Firewall = Firewall() if cfg.iptables else NullFirewall()
        self.guard_forward = False  # berth turned ip_forward on: its forward chain guards the host's routing
        self._fw_lock = threading.Lock()
        self._socks: dict[str, list[socket.socket]] = {}
        self._wrote_table = False
        self._dirty = False  # port rows went before their rules

    def publish(self, m: Member, got: list[tuple[Network, dict[str, Any]]]) -> None:
        """The container's PortBindings (and its exposed ports with PublishAllPorts), to the address it
        got on its first bridge network (as dockerd: published ports need a bridge network)."""
        hc = m.host_config
        bindings: dict[str, list[dict[str, str]]] = {k: list(v or [{}]) for k, v in (hc.get("PortBindings") or {}).items()}
        if hc.get("PublishAllPorts"):
            for port in m.exposed or {}:
                bindings.setdefault(port, [{}])
        if not bindings:
            return
        target = next(((n, st) for n, st in got if n.driver == "bridge"), None)
        if target is None:
            return
        net, st = target
        rows, socks = [], []
        try:
            for port, entries in bindings.items():
                key = netvalues.parse_port_key(port)  # typed again at start: stored configs predate checks
                for e in entries:
                    host_ip = str(netvalues.parse_ip(e.get("HostIp") or net.options.get(HOST_BINDING_OPT)
                                                     or self.cfg.default_bind_ip, "host IP"))
                    cip = st["GlobalIPv6Address"] if ":" in host_ip else st["IPAddress"]
                    if not cip:  # nothing of that family to forward to (a DNAT cannot cross families)
                        log.warning("container %s: %s:%s not published: the container has no %s address",
                                    m.name, host_ip, e.get("HostPort") or "", "IPv6" if ":" in host_ip else "IPv4")
                        continue
                    sock, hport = reserve(key.proto, host_ip, e.get("HostPort") or "")
                    socks.append(sock)
                    rows.append(PortRow(m.id, key.proto, host_ip, hport, cip, key.port, net.device))
            with self.lock:
                try:
                    self.rows.add(rows)
                except Conflict as exc:
                    raise System(f"driver failed programming external connectivity on endpoint {m.name}: "
                                 f"{exc.message}") from None
            self.apply()
        except BaseException:
            for s in socks:
                s.close()
            raise
        self._socks[m.id] = socks

    def release(self, cid: str) -> None:
        """The container stopped: its host ports are free, its rules go."""
        for s in self._socks.pop(cid, []):
            s.close()
        if self.rows.has(cid) or self._dirty:
            with self.lock:
                self.rows.delete(cid)
            self._dirty = False
            self.apply()

    def forgotten(self, cid: str, had_ports: bool) -> None:
        """The container's rows went with it: the sockets now, the rules at its teardown or the next change."""
        if had_ports:
            self._dirty = True
        for s in self._socks.pop(cid, []):
            s.close()

    def reserve_again(self, members: list[Member]) -> None:
        """At start: the host ports of containers that kept running while berthd was down."""
        for m in members:
            socks = []
            for proto, hip, hport, _cport in self.rows.of(m.id):
                try:
                    socks.append(reserve(proto, hip, str(hport))[0])
                except (OSError, BerthError):
                    pass
            if socks:
                self._socks[m.id] = socks

    def apply(self) -> None:
        """Write berth's tables from the database. State is read under the same lock as the write, so
        two concurrent changes cannot leave the older picture in the kernel."""
        if not self.firewall.enabled:
            return
        with self._fw_lock:
            bridges = []
            for n in self.catalog.all():
                if n.driver != "bridge":
                    continue
                bridges.append(BridgeRules(n.device, tuple(p.subnet for p in n.pools),
                                           masquerade=self.cfg.ip_masq and opt_bool(n.options, MASQ_OPT, True),
                                           icc=opt_bool(n.options, ICC_OPT, True) and (n.name != "bridge" or self.cfg.icc),
                                           internal=n.internal))
            rules = []
            for r in self.rows.all():  # typed again: a row that is not a valid rule is skipped, never rendered
                try:
                    rules.append(PortRule.parse(r[0], r[1], r[2], r[3], r[4], r[5]))
                except (ValueError, TypeError, BerthError) as exc:
                    log.error("port mapping %s is invalid and not published: %s", tuple(r), exc)
            if not bridges and not rules and not self._wrote_table:
                return  # nothing of berth's to write or to remove: leave nft alone
            self.firewall.apply(Ruleset(bridges, rules, self.guard_forward), self.cfg.ipv6)
            self._wrote_table = bool(bridges or rules)
