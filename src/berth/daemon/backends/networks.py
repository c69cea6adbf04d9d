"""The network backend: networks and their drivers, addresses, published ports, the firewall, DNS.

Where state lives:
- ``networks``: one row per network, the predefined ``bridge``/``host``/``none`` included;
- ``attachments``: which networks a container asked for (its endpoint settings), and, while it runs,
  what it got (``state``: addresses, MAC, interface names);
- ``ip_allocs``: every address given out, unique per network (the primary key), inserted in the
  same transaction as the attachment's state, and deleted with it;
- ``port_maps``: published ports, unique per (protocol, host address, host port).
A container's namespace is a file under ``<exec-root>/netns`` made before the runtime runs, so the
network is ready before the container's first instruction. Everything is released when the
container stops; ``reconcile`` at start releases what belongs to containers that are not running
(berthd killed in the middle of a start, or a container that ended while berthd was down), so no
address is leaked or given twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from berth import netvalues as ports
from berth.daemon.events import EventBus, make_event
from berth.errors import BerthError, Conflict, Forbidden, InvalidParameter, NotFound, NotSupported, System
from berth.linux import netlink, netns
from berth.linux.files import read_text
from berth.network import dns, ipam
from berth.network.drivers import DRIVERS, Join
from berth.network.firewall import BridgeRules, Firewall, NullFirewall, PortRule, Ruleset
from berth.network.model import (
    BRIDGE_NAME_OPT,
    DEFAULT_BRIDGE_OPT,
    HOST_BINDING_OPT,
    ICC_OPT,
    MASQ_OPT,
    MTU_OPT,
    Network,
    opt_bool,
)
from berth.store.db import Database

log = logging.getLogger("berth.network")

HOSTS_HEAD = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
              "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


@dataclass
class NetSettings:
    """What berthd's network options say (dockerd's flags of the same names)."""

    bridge: str = "berth0"  # "none": no default bridge network
    bip: str = ""
    fixed_cidr: str = ""
    fixed_cidr_v6: str = ""
    ipv6: bool = False
    iptables: bool = True
    ip_masq: bool = True
    ip_forward: bool = True
    icc: bool = True
    mtu: int = 0
    default_bind_ip: str = "0.0.0.0"
    pools: list[tuple[str, int]] = field(default_factory=lambda: list(ipam.DEFAULT_POOLS))
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_opts: list[str] = field(default_factory=list)


@dataclass
class Member:
    """What the network backend needs to know of a container."""

    id: str
    name: str
    hostname: str
    domainname: str
    host_config: dict[str, Any]
    exposed: dict[str, Any]
    mac: str = ""


@dataclass
class Setup:
    netns: str | None  # the namespace file for the runtime; None: host, or a new empty one (none)
    hosts: str
    resolv: str


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def _mac_for(addr: ipaddress.IPv4Address | None) -> str:
    if addr is None:
        return "02:42:" + ":".join(f"{b:02x}" for b in os.urandom(4))
    return "02:42:" + ":".join(f"{b:02x}" for b in addr.packed)


class Members(Protocol):
    """What the network needs to know of containers; ``daemon/backends/links.py`` answers from the
    container registry."""

    def ref(self, name: str) -> tuple[str, str]:
        """(ID, name) of the container ``name`` names; NotFound."""
        ...

    def member(self, cid: str) -> Member:
        ...

    def is_running(self, cid: str) -> bool:
        ...

    def pid(self, cid: str) -> int:
        """A running container's init process."""
        ...

    def etc_files(self, cid: str) -> tuple[str, str]:
        """Its /etc/hosts and /etc/resolv.conf, as berth wrote them."""
        ...


class _NoMembers:
    """For ``berthd --cleanup-network``, which touches no container."""

    def ref(self, name: str) -> tuple[str, str]:
        raise NotFound(f"No such container: {name}")

    def member(self, cid: str) -> Member:
        raise NotFound(f"No such container: {cid}")

    def is_running(self, cid: str) -> bool:
        return False

    def pid(self, cid: str) -> int:
        return 0

    def etc_files(self, cid: str) -> tuple[str, str]:
        return "", ""


NO_MEMBERS = _NoMembers()


def mode_of(hc: dict[str, Any]) -> str:
    return hc.get("NetworkMode") or "default"


class NetworkService:
    def __init__(self, db: Database, bus: EventBus, settings: NetSettings, exec_root: str,
                 members: Members = NO_MEMBERS) -> None:
        self.db = db
        self.bus = bus
        self.cfg = settings
        self.netns_dir = os.path.join(exec_root, "netns")
        self.firewall: Firewall = Firewall() if settings.iptables else NullFirewall()
        self._lock = threading.RLock()
        self._fw_lock = threading.Lock()
        self._dns: dict[str, dns.Server] = {}
        # bound at setup, served once the container started: (UDP, TCP)
        self._dns_socks: dict[str, tuple[socket.socket, socket.socket]] = {}
        self._port_socks: dict[str, list[socket.socket]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._guard_forward = False
        self._netns_dir_ready = False
        self._wrote_table = False
        self._fw_dirty = False  # port rows went before their rules
        self.members = members

    # ---- start -----------------------------------------------------------------------------------
    def init(self) -> None:
        """Predefined networks, the default bridge, the firewall. Runs in a thread at start."""
        with self.db.transaction() as c:
            have = {r[0] for r in c.execute("SELECT name FROM networks")}
            for name, driver in (("host", "host"), ("none", "null")):
                if name not in have:
                    c.execute("INSERT INTO networks VALUES (?, ?, ?, ?, ?)",
                              (secrets.token_hex(32), name, driver, _now(), Network("", name, driver, "").data()))
        if self.cfg.bridge != "none":
            self._default_bridge()
        else:
            with self.db.transaction() as c:
                c.execute("DELETE FROM networks WHERE name = 'bridge'")
        for net in self._all():
            if net.driver == "bridge" and net.name != "bridge":
                try:
                    DRIVERS["bridge"].create(net)
                except BerthError as exc:
                    log.warning("network %s: cannot recreate bridge %s: %s", net.name, net.device, exc.message)
        bridges = any(n.driver == "bridge" for n in self._all())
        if self.cfg.ip_forward and bridges:
            with open("/proc/sys/net/ipv4/ip_forward") as f:
                was = f.read().strip()
            if was != "1":
                netlink.write_sysctl("net/ipv4/ip_forward", "1")
                self._guard_forward = True
                log.info("set net.ipv4.ip_forward=1 (ip-forward); berth's forward chain drops forwarded traffic "
                         "that does not touch a berth bridge, so the host does not start routing for others")
        if bridges:
            self.apply_firewall()  # without any bridge network there is nothing to write (and no table to touch)

    def _default_bridge(self) -> None:
        cfg = self.cfg
        name = cfg.bridge or "berth0"
        existing = self._find("bridge")
        pool: ipam.Pool | None = None
        if cfg.bip:
            try:
                iface = ipaddress.ip_interface(cfg.bip)
            except ValueError:
                raise InvalidParameter(f"invalid bip {cfg.bip!r}: it must be an address with a prefix, such as "
                                       "10.0.1.1/24") from None
            pool = ipam.Pool(iface.network, gateway=iface.ip)
        elif existing is not None and existing.pools and existing.device == name:
            pool = existing.pools[0]  # the subnet chosen before stays
        else:
            have = [a for a in netlink.addresses(name) if a.version == 4]
            if have:
                pool = ipam.Pool(have[0].network, gateway=have[0].ip)
                log.info("default bridge: %s already has %s, keeping it", name, have[0])
            else:
                taken = netlink.host_networks() + self._subnets_in_use(exclude="bridge")
                subnet = ipam.choose_subnet(cfg.pools, taken)
                if subnet is None:
                    raise System("no address pool has a subnet that does not overlap the host's routes and addresses;"
                                 " set --bip or default-address-pools")
                pool = ipam.Pool(subnet, gateway=ipam.first_host(subnet))
                log.info("default bridge %s: chose %s (it overlaps no route or address on this host)", name, subnet)
        fixed: list[str] = []
        if cfg.fixed_cidr:
            fc = ipam.parse_network(cfg.fixed_cidr)
            if fc.version != 4 or not fc.subnet_of(pool.subnet):  # type: ignore[arg-type]
                raise InvalidParameter(f"fixed-cidr {cfg.fixed_cidr} is not inside the bridge's subnet {pool.subnet}")
            pool.ip_range = fc
            fixed.append(str(fc))
        pools = [pool]
        if cfg.ipv6 and cfg.fixed_cidr_v6:
            v6 = ipam.parse_network(cfg.fixed_cidr_v6)
            pools.append(ipam.Pool(v6, gateway=ipam.first_host(v6)))
            fixed.append(str(v6))
        opts = {DEFAULT_BRIDGE_OPT: "true", MASQ_OPT: str(cfg.ip_masq).lower(), ICC_OPT: str(cfg.icc).lower(),
                HOST_BINDING_OPT: cfg.default_bind_ip, BRIDGE_NAME_OPT: name, MTU_OPT: str(cfg.mtu or 1500)}
        net = Network(existing.id if existing else secrets.token_hex(32), "bridge", "bridge",
                      existing.created if existing else _now(), ipv6=cfg.ipv6 and bool(cfg.fixed_cidr_v6),
                      options=opts, pools=pools, device=name, made_device=existing.made_device if existing else False,
                      user_subnets=True, fixed=fixed)
        if existing is not None and existing.device != name and existing.made_device:
            DRIVERS["bridge"].delete(existing)
            net.made_device = False
        if existing is not None and existing.pools and existing.pools[0].subnet != pool.subnet:
            old = existing.pools[0]
            with contextlib.suppress(BerthError):
                netlink.ensure_bridge(name, [])
            with netlink.session() as ipr:  # the old gateway address goes, or two subnets would stay routed
                idx = netlink.index(ipr, name)
                if idx is not None and old.gateway is not None:
                    with contextlib.suppress(Exception):
                        ipr.addr("del", index=idx, address=str(old.gateway), prefixlen=old.subnet.prefixlen)
        DRIVERS["bridge"].create(net)
        if self.firewall.enabled:
            netlink.write_sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")
        with self.db.transaction() as c:
            c.execute("INSERT OR REPLACE INTO networks VALUES (?, ?, ?, ?, ?)",
                      (net.id, net.name, net.driver, net.created, net.data()))

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    # ---- lookups ---------------------------------------------------------------------------------
    def _all(self) -> list[Network]:
        with self.db.read() as c:
            return [Network.from_row(r) for r in c.execute("SELECT * FROM networks ORDER BY created")]

    def _find(self, ref: str) -> Network | None:
        with self.db.read() as c:
            r = c.execute("SELECT * FROM networks WHERE id = ? OR name = ?", (ref, ref)).fetchone()
            if r is None and 1 <= len(ref) <= 64 and all(ch in "0123456789abcdef" for ch in ref):
                rows = c.execute("SELECT * FROM networks WHERE id LIKE ?", (ref + "%",)).fetchall()
                if len(rows) > 1:
                    raise Conflict(f"network {ref} is ambiguous ({len(rows)} matches found based on ID prefix)")
                r = rows[0] if rows else None
        return Network.from_row(r) if r is not None else None

    def get(self, ref: str) -> Network:
        net = self._find(ref)
        if net is None:
            raise NotFound(f"network {ref} not found")
        return net

    def _subnets_in_use(self, exclude: str = "") -> list[ipam.Net]:
        return [p.subnet for n in self._all() if n.name != exclude for p in n.pools]

    def _endpoints(self, network_id: str) -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
        with self.db.read() as c:
            return [(r[0], json.loads(r[1]), json.loads(r[2]) if r[2] else None) for r in c.execute(
                "SELECT container_id, request, state FROM attachments WHERE network_id = ? ORDER BY position",
                (network_id,))]

    def _attachments(self, cid: str) -> list[tuple[Network, dict[str, Any], dict[str, Any] | None]]:
        with self.db.read() as c:
            rows = c.execute("SELECT network_id, request, state FROM attachments WHERE container_id = ? "
                             "ORDER BY position", (cid,)).fetchall()
        out = []
        for nid, req, st in rows:
            net = self._find(nid)
            if net is not None:
                out.append((net, json.loads(req), json.loads(st) if st else None))
        return out

    # ---- API: networks ---------------------------------------------------------------------------
    def _containers_view(self, net: Network) -> dict[str, Any]:
        out = {}
        for cid, _req, st in self._endpoints(net.id):
            if st is None:
                continue
            name = self.members.ref(cid)[1]
            out[cid] = {"Name": name, "EndpointID": st["EndpointID"], "MacAddress": st.get("MacAddress", ""),
                        "IPv4Address": f"{st['IPAddress']}/{st['IPPrefixLen']}" if st.get("IPAddress") else "",
                        "IPv6Address": (f"{st['GlobalIPv6Address']}/{st['GlobalIPv6PrefixLen']}"
                                        if st.get("GlobalIPv6Address") else "")}
        return out

    def inspect(self, ref: str) -> dict[str, Any]:
        net = self.get(ref)
        return net.view(self._containers_view(net))

    def list_networks(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        out = []
        for net in self._all():
            if not self._matches(net, filters):
                continue
            out.append(net.view(self._containers_view(net)))
        return out

    def _matches(self, net: Network, f: dict[str, list[str]]) -> bool:
        if "driver" in f and net.driver not in f["driver"]:
            return False
        if "id" in f and not any(net.id.startswith(v) for v in f["id"]):
            return False
        if "name" in f and not any(v in net.name for v in f["name"]):
            return False
        if "scope" in f and "local" not in f["scope"]:
            return False
        if "type" in f:
            kind = "builtin" if net.predefined else "custom"
            for v in f["type"]:
                if v not in ("builtin", "custom"):
                    raise InvalidParameter(f"invalid filter: 'type'='{v}'")
            if kind not in f["type"]:
                return False
        if "label" in f:
            for lbl in f["label"]:
                k, eq, v = lbl.partition("=")
                if k not in net.labels or (eq and net.labels[k] != v):
                    return False
        if "dangling" in f:
            want = f["dangling"][-1].lower() in ("true", "1")
            dangling = not net.predefined and not self._endpoints(net.id)
            if dangling != want:
                return False
        return True

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InvalidParameter("the network config must be a JSON object")
        _check_network_body(body)
        name = body.get("Name")
        if not name or not isinstance(name, str):
            raise InvalidParameter("a network name is required")
        driver = body.get("Driver") or "bridge"
        if name in ("bridge", "host", "none", "default"):
            raise Forbidden(f"{name} is a pre-defined network and cannot be created")
        if driver in ("host", "null"):
            raise Forbidden(f"only one instance of \"{driver}\" network is allowed")
        if driver == "overlay":
            raise NotSupported("the overlay driver is not supported by berth yet (bridge, macvlan and ipvlan are)")
        if driver not in DRIVERS:
            raise NotFound(f"plugin \"{driver}\" not found")
        ipam_cfg = body.get("IPAM") or {}
        if (ipam_cfg.get("Driver") or "default") != "default":
            raise NotSupported(f"IPAM driver {ipam_cfg['Driver']!r} is not supported (only \"default\")")
        if body.get("Scope") not in (None, "", "local"):
            raise InvalidParameter(f"scope {body['Scope']!r} is not supported (only \"local\")")
        if body.get("ConfigOnly") or body.get("ConfigFrom"):
            raise NotSupported("config-only networks are not supported by berth yet")
        options = {str(k): v or "" for k, v in (body.get("Options") or {}).items()}
        if options.get(BRIDGE_NAME_OPT):
            ports.parse_ifname(options[BRIDGE_NAME_OPT], "bridge name")
        if options.get(HOST_BINDING_OPT):
            ports.parse_ip(options[HOST_BINDING_OPT], f"{HOST_BINDING_OPT}")
        if options.get("parent"):
            ports.parse_ifname(options["parent"], "parent interface")
        ipv6 = bool(body.get("EnableIPv6"))
        pools = ipam.parse_pools(ipam_cfg.get("Config") or [])
        if pools and not ipv6 and any(p.subnet.version == 6 for p in pools):
            ipv6 = True
        with self._lock:
            if self._find(name) is not None and self._find(name).name == name:  # type: ignore[union-attr]
                raise Conflict(f"network with name {name} already exists")
            nid = secrets.token_hex(32)
            in_use = self._subnets_in_use()
            for p in pools:
                for other in in_use:
                    if other.version == p.subnet.version and other.overlaps(p.subnet):
                        raise Forbidden("invalid pool request: Pool overlaps with other one on this address space")
            user_subnets = bool(pools)
            if not any(p.subnet.version == 4 for p in pools):
                subnet = ipam.choose_subnet(self.cfg.pools, netlink.host_networks() + in_use)
                if subnet is None:
                    raise Forbidden("all predefined address pools have been fully subnetted (none overlaps no "
                                    "route or address on this host)")
                log.info("network %s: chose %s (it overlaps no route or address on this host)", name, subnet)
                pools.insert(0, ipam.Pool(subnet))
            if ipv6 and not any(p.subnet.version == 6 for p in pools):
                raise InvalidParameter("an IPv6 network needs an IPv6 --subnet (berth has no default IPv6 pool)")
            for p in pools:
                if p.gateway is None and not (driver == "ipvlan" and options.get("ipvlan_mode") in ("l3", "l3s")):
                    p.gateway = ipam.first_host(p.subnet)
            device = options.get(BRIDGE_NAME_OPT) or (f"br-{nid[:12]}" if driver == "bridge" else "")
            net = Network(nid, name, driver, _now(), bool(body.get("Internal")), bool(body.get("Attachable")), ipv6,
                          options, {str(k): v or "" for k, v in (body.get("Labels") or {}).items()}, pools,
                          "default", ipam_cfg.get("Options") or {}, device, False, user_subnets)
            if driver == "bridge" and any(n.device == device for n in self._all() if n.driver == "bridge"):
                raise Conflict(f"bridge name {device} is already used by another network")
            DRIVERS[driver].create(net)
            try:
                if driver == "bridge" and self.firewall.enabled:
                    netlink.write_sysctl(f"net/ipv4/conf/{device}/route_localnet", "1")
                with self.db.transaction() as c:
                    c.execute("INSERT INTO networks VALUES (?, ?, ?, ?, ?)",
                              (net.id, net.name, net.driver, net.created, net.data()))
                self.apply_firewall()
            except BaseException:
                with self.db.transaction() as c:
                    c.execute("DELETE FROM networks WHERE id = ?", (nid,))
                DRIVERS[driver].delete(net)
                raise
        self.bus.publish(make_event("network", "create", nid, {"name": name, "type": driver}))
        return {"Id": nid, "Warning": ""}

    def remove(self, ref: str) -> None:
        net = self.get(ref)
        if net.predefined:
            raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
        with self._lock:
            active = [cid for cid, _r, st in self._endpoints(net.id) if st is not None]
            if active:
                raise Forbidden(f"error while removing network: network {net.name} id {net.id} has active endpoints")
            with self.db.transaction() as c:
                c.execute("DELETE FROM networks WHERE id = ?", (net.id,))
                c.execute("DELETE FROM attachments WHERE network_id = ?", (net.id,))
            DRIVERS[net.driver].delete(net)
            self.apply_firewall()
        self.bus.publish(make_event("network", "destroy", net.id, {"name": net.name, "type": net.driver}))

    def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        deleted = []
        until = float(filters["until"][-1]) if filters.get("until") else None
        for net in self._all():
            if net.predefined or any(st is not None for _c, _r, st in self._endpoints(net.id)):
                continue
            if until is not None and dt.datetime.fromisoformat(net.created[:26] + "+00:00").timestamp() >= until:
                continue  # made at or after `until`: kept
            if "label" in filters and not self._matches(net, {"label": filters["label"]}):
                continue
            if "label!" in filters and any(self._matches(net, {"label": [lb]}) for lb in filters["label!"]):
                continue
            with contextlib.suppress(BerthError):
                self.remove(net.id)
                deleted.append(net.name)
        return {"NetworksDeleted": deleted or None}

    # ---- containers: create time -------------------------------------------------------------------
    def plan(self, hc: dict[str, Any], networking: dict[str, Any] | None) -> tuple[str, list[tuple[Network, dict[str, Any]]]]:
        """Check a container's network settings at create: (NetworkMode as stored, networks to attach).
        A missing network is a 400 here, not a 404: the docker CLI answers a 404 from create by trying
        to pull the image."""
        try:
            return self._plan(hc, networking)
        except NotFound as exc:
            raise InvalidParameter(exc.message) from None

    def _plan(self, hc: dict[str, Any], networking: dict[str, Any] | None) -> tuple[str, list[tuple[Network, dict[str, Any]]]]:
        mode = mode_of(hc)
        endpoints = dict((networking or {}).get("EndpointsConfig") or {})
        if mode.startswith("container:"):
            if endpoints:
                raise InvalidParameter("conflicting options: container type network can't be used with other "
                                       "networks")
            if hc.get("PortBindings") or hc.get("PublishAllPorts"):
                raise InvalidParameter("conflicting options: port publishing and the container type network mode")
            if hc.get("Links") or hc.get("ExtraHosts") or hc.get("Dns"):
                raise InvalidParameter("conflicting options: links, add-host or dns and the container type network "
                                       "mode")
            target, _ = self.members.ref(mode.split(":", 1)[1])
            return f"container:{target}", []
        if mode in ("none", "host"):
            if endpoints and any(k != mode for k in endpoints):
                raise InvalidParameter("container cannot be disconnected from host network or connected to host "
                                       "network" if mode == "host" else "conflicting options: none network mode "
                                       "and other networks")
            return mode, []
        if mode in ("default", "bridge"):
            if self._find("bridge") is None or self.cfg.bridge == "none":
                return "none", []  # as dockerd with --bridge=none
            net = self.get("bridge")
            stored = "bridge" if mode == "bridge" else "default"
        else:
            net = self.get(mode)
            if net.name in ("host", "none"):
                return net.name, []
            stored = net.name
        req = endpoints.pop(mode, None) or endpoints.pop(net.name, None) or endpoints.pop(net.id, None) or {}
        plan = [(net, self._check_request(net, req, hc))]
        for ref, extra in endpoints.items():
            other = self.get(ref)
            if other.predefined:
                raise InvalidParameter(f"container cannot be connected to {other.name} and {net.name} at once")
            plan.append((other, self._check_request(other, extra or {}, hc)))
        return stored, plan

    def _check_request(self, net: Network, req: dict[str, Any], hc: dict[str, Any]) -> dict[str, Any]:
        ipam_cfg = req.get("IPAMConfig") or {}
        for key in ("IPv4Address", "IPv6Address"):
            text = ipam_cfg.get(key)
            if not text:
                continue
            addr = ipam.parse_addr(text, "IP")
            if not net.user_subnets:
                raise InvalidParameter("user specified IP address is supported only when connecting to networks "
                                       "with user configured subnets")
            pool = next((p for p in net.pools if addr in p.subnet), None)
            if pool is None:
                raise InvalidParameter(f"Invalid address {addr}: It does not belong to any of this network's subnets")
            if net.name == "bridge" and pool.ip_range is not None and addr not in pool.ip_range:
                raise InvalidParameter(f"Invalid address {addr}: the default bridge gives addresses only inside "
                                       f"fixed-cidr {pool.ip_range}")
            if addr in pool.reserved():
                raise InvalidParameter(f"Invalid address {addr}: it is the network's own, broadcast, gateway or an "
                                       "auxiliary address")
        aliases = req.get("Aliases") or []
        if net.name == "bridge" and aliases:
            raise InvalidParameter("network-scoped alias is supported only for containers in user defined networks")
        mac = req.get("MacAddress") or ""
        if mac and not _valid_mac(mac):
            raise InvalidParameter(f"invalid MAC address: {mac}")
        return {"IPAMConfig": ipam_cfg or None, "Aliases": aliases or None, "Links": req.get("Links") or None,
                "MacAddress": mac, "DriverOpts": req.get("DriverOpts") or None}

    def register(self, cid: str, plan: list[tuple[Network, dict[str, Any]]]) -> None:
        """Record a new container's networks, inside the caller's create transaction."""
        with self.db.transaction() as c:
            for pos, (net, req) in enumerate(plan):
                c.execute("INSERT INTO attachments VALUES (?, ?, ?, ?, NULL)", (cid, net.id, pos, json.dumps(req)))

    def forget(self, cid: str) -> None:
        """The container's row goes (inside the caller's transaction): so do its attachments. What
        its network still holds (a ``--rm`` container's, removed at once) is released by ``teardown``
        after the removal has been answered; the disconnect events are sent now."""
        with self.db.transaction() as c:
            self._forget(c, cid)

    def _forget(self, c: Any, cid: str) -> None:
        for (nid,) in c.execute("SELECT network_id FROM attachments WHERE container_id = ? AND state IS NOT NULL",
                                (cid,)).fetchall():
            net = self._find(nid)
            if net is not None:
                self.bus.publish(make_event("network", "disconnect", net.id,
                                            {"container": cid, "name": net.name, "type": net.driver}))
        c.execute("DELETE FROM attachments WHERE container_id = ?", (cid,))
        # addresses and host ports are free as soon as the removal is answered (a script may reuse them)
        c.execute("DELETE FROM ip_allocs WHERE container_id = ?", (cid,))
        if c.execute("DELETE FROM port_maps WHERE container_id = ?", (cid,)).rowcount:
            self._fw_dirty = True  # the rules go at teardown, or with the next change
        for s in self._port_socks.pop(cid, []):
            s.close()

    def holds(self, cid: str) -> bool:
        """Whether the container's network still holds a namespace, an address or a port."""
        if os.path.exists(self.netns_path(cid)) or cid in self._dns or cid in self._dns_socks:
            return True
        with self.db.read() as c:
            return c.execute("SELECT 1 FROM ip_allocs WHERE container_id = ? UNION ALL SELECT 1 FROM port_maps "
                             "WHERE container_id = ? LIMIT 1", (cid, cid)).fetchone() is not None

    # ---- containers: start and stop ---------------------------------------------------------------
    def netns_path(self, cid: str) -> str:
        return os.path.join(self.netns_dir, cid)

    def setup(self, m: Member) -> Setup:
        """Before the runtime runs: the namespace, its links and addresses, published ports, /etc files."""
        mode = mode_of(m.host_config)
        if mode == "host":
            return Setup(None, self._hosts_file(m, []), read_text("/etc/resolv.conf"))
        if mode.startswith("container:"):
            other = mode.split(":", 1)[1]
            pid = self.members.pid(other) if self.members.is_running(other) else 0
            if not pid:
                raise Conflict(f"cannot join network of a non running container: {other}")
            path = self.netns_path(other)
            hosts, resolv = self.members.etc_files(other)
            return Setup(path if os.path.exists(path) else f"/proc/{pid}/ns/net", hosts, resolv)
        atts = self._attachments(m.id)
        if mode == "none" or not atts:
            return Setup(None, self._hosts_file(m, []), "")
        path = self.netns_path(m.id)
        self.teardown(m.id)  # whatever an interrupted run left
        if not self._netns_dir_ready:
            netns.prepare_dir(self.netns_dir)
            self._netns_dir_ready = True
        embedded_dns = any(not n.predefined for n, _r, _s in atts)

        def sockets() -> tuple[socket.socket, tuple[socket.socket, socket.socket] | None]:
            # run by the thread that made the namespace, so inside it: lo up, a netlink socket for eth0's
            # setup, and the DNS socket, bound before the container's first instruction (its first
            # question waits in the socket)
            netlink.loopback_up()
            return netlink.open_socket(), dns.open_sockets() if embedded_dns else None

        nl, dns_sock = netns.create(path, then=sockets)  # type: ignore[misc]
        try:
            if dns_sock is not None:
                self._dns_socks[m.id] = dns_sock
            got = []
            for i, (net, req, _st) in enumerate(atts):
                got.append((net, self._join(m, net, req, path, f"eth{i}", default_route=(i == 0),
                                            nl=nl if i == 0 else None)))
            self._publish(m, got)
        except BaseException:
            nl.close()
            self.teardown(m.id)
            raise
        return Setup(path, self._hosts_file(m, got), self._resolv_file(m, [n for n, _ in got]))

    def _join(self, m: Member, net: Network, req: dict[str, Any], path: str, ifname: str,
              default_route: bool, nl: socket.socket | None = None) -> dict[str, Any]:
        ipam_cfg = req.get("IPAMConfig") or {}
        addrs: list[tuple[ipam.Pool, ipam.Addr]] = []
        with self._lock, self.db.transaction() as c:
            used_rows = c.execute("SELECT address FROM ip_allocs WHERE network_id = ?", (net.id,)).fetchall()
            used = {ipaddress.ip_address(r[0]) for r in used_rows}
            for version, key in ((4, "IPv4Address"), (6, "IPv6Address")):
                pool = next((p for p in net.pools if p.subnet.version == version), None)
                if pool is None:
                    continue
                want_text = ipam_cfg.get(key)
                want = ipam.parse_addr(want_text, "IP") if want_text else None
                if want is not None:
                    pool = next((p for p in net.pools if want in p.subnet), pool)
                addr = ipam.allocate(pool, used, want)
                c.execute("INSERT INTO ip_allocs VALUES (?, ?, ?)", (net.id, str(addr), m.id))
                addrs.append((pool, addr))
            v4 = next((a for p, a in addrs if a.version == 4), None)
            mac = req.get("MacAddress") or (m.mac if ifname == "eth0" else "") or _mac_for(v4)
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
            c.execute("UPDATE attachments SET state = ? WHERE container_id = ? AND network_id = ?",
                      (json.dumps(state), m.id, net.id))
        try:
            got_mac = DRIVERS[net.driver].join(net, j, path)
        except BaseException:
            self._release_endpoint(m.id, net)
            raise
        if got_mac and got_mac != mac:  # the link kept its own (ipvlan shares the parent's)
            state["MacAddress"] = got_mac
            with self.db.transaction() as c:
                c.execute("UPDATE attachments SET state = ? WHERE container_id = ? AND network_id = ?",
                          (json.dumps(state), m.id, net.id))
        self.bus.publish(make_event("network", "connect", net.id,
                                    {"container": m.id, "name": net.name, "type": net.driver}))
        return state

    def _release_endpoint(self, cid: str, net: Network, links_too: bool = True) -> None:
        """Free the endpoint's addresses. ``links_too=False`` when the namespace is about to go: the
        kernel then removes its links itself, asynchronously (deleting a veth waits ~30 ms for RCU)."""
        with self.db.transaction() as c:
            row = c.execute("SELECT state FROM attachments WHERE container_id = ? AND network_id = ?",
                            (cid, net.id)).fetchone()
            c.execute("DELETE FROM ip_allocs WHERE network_id = ? AND container_id = ?", (net.id, cid))
            c.execute("UPDATE attachments SET state = NULL WHERE container_id = ? AND network_id = ?", (cid, net.id))
        if links_too and row is not None and row[0]:
            st = json.loads(row[0])
            with contextlib.suppress(BerthError):
                DRIVERS[net.driver].leave(net, st.get("HostIfname", ""))

    def teardown(self, cid: str) -> None:
        """Release everything the container's network holds; safe to call when it holds nothing."""
        server = self._dns.pop(cid, None)
        if server is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(server.close)
        for pending in self._dns_socks.pop(cid, ()):
            pending.close()
        for s in self._port_socks.pop(cid, []):
            s.close()
        with self.db.read() as c:
            had_ports = c.execute("SELECT 1 FROM port_maps WHERE container_id = ?", (cid,)).fetchone() is not None
            held = [r[0] for r in c.execute("SELECT network_id FROM attachments WHERE container_id = ? AND "
                                             "state IS NOT NULL", (cid,))]
        if had_ports or self._fw_dirty:
            with self._lock, self.db.transaction() as c:
                c.execute("DELETE FROM port_maps WHERE container_id = ?", (cid,))
            self._fw_dirty = False
            self.apply_firewall()
        path = self.netns_path(cid)
        ns_goes = os.path.exists(path)
        for nid in held:
            net = self._find(nid)
            if net is None:
                continue
            self._release_endpoint(cid, net, links_too=not ns_goes)
            self.bus.publish(make_event("network", "disconnect", net.id,
                                        {"container": cid, "name": net.name, "type": net.driver}))
        with self.db.transaction() as c:  # addresses of networks removed meanwhile
            c.execute("DELETE FROM ip_allocs WHERE container_id = ?", (cid,))
        if ns_goes:
            netns.remove(path)

    # ---- ports -------------------------------------------------------------------------------------
    def _publish(self, m: Member, got: list[tuple[Network, dict[str, Any]]]) -> None:
        hc = m.host_config
        bindings: dict[str, list[dict[str, str]]] = {k: list(v or [{}]) for k, v in (hc.get("PortBindings") or {}).items()}
        if hc.get("PublishAllPorts"):
            for port in m.exposed or {}:
                bindings.setdefault(port, [{}])
        if not bindings:
            return
        target = next(((n, st) for n, st in got if n.driver == "bridge"), None)
        if target is None:
            return  # as dockerd: published ports need a bridge network
        net, st = target
        rows, socks = [], []
        try:
            for port, entries in bindings.items():
                key = ports.parse_port_key(port)  # typed again at start: stored configs predate checks
                for e in entries:
                    host_ip = str(ports.parse_ip(e.get("HostIp") or net.options.get(HOST_BINDING_OPT)
                                                 or self.cfg.default_bind_ip, "host IP"))
                    cip = st["GlobalIPv6Address"] if ":" in host_ip else st["IPAddress"]
                    if not cip:  # nothing of that family to forward to (a DNAT cannot cross families)
                        log.warning("container %s: %s:%s not published: the container has no %s address",
                                    m.name, host_ip, e.get("HostPort") or "", "IPv6" if ":" in host_ip else "IPv4")
                        continue
                    sock, hport = _reserve(key.proto, host_ip, e.get("HostPort") or "")
                    socks.append(sock)
                    rows.append((m.id, key.proto, host_ip, hport, cip, key.port, net.device))
            with self._lock, self.db.transaction() as c:
                for r in rows:
                    clash = c.execute("SELECT container_id FROM port_maps WHERE proto = ? AND host_port = ? AND "
                                      "(host_ip = ? OR host_ip IN ('0.0.0.0', '::') OR ? IN ('0.0.0.0', '::'))",
                                      (r[1], r[3], r[2], r[2])).fetchone()
                    if clash is not None:
                        raise System(f"driver failed programming external connectivity on endpoint {m.name}: "
                                     f"Bind for {r[2]}:{r[3]} failed: port is already allocated")
                    c.execute("INSERT INTO port_maps VALUES (?, ?, ?, ?, ?, ?, ?)", r)
            self.apply_firewall()
        except BaseException:
            for s in socks:
                s.close()
            raise
        self._port_socks[m.id] = socks

    def ports(self, cid: str) -> list[tuple[str, str, int, int]]:
        """(proto, host_ip, host_port, container_port) of a running container."""
        with self.db.read() as c:
            return [(r[0], r[1], r[2], r[3]) for r in c.execute(
                "SELECT proto, host_ip, host_port, container_port FROM port_maps WHERE container_id = ? "
                "ORDER BY container_port, proto, host_ip", (cid,))]

    def apply_firewall(self) -> None:
        """Write berth's tables from the database. State is read under the same lock as the write, so
        two concurrent changes cannot leave the older picture in the kernel."""
        if not self.firewall.enabled:
            return
        with self._fw_lock:
            bridges = []
            for n in self._all():
                if n.driver != "bridge":
                    continue
                bridges.append(BridgeRules(n.device, tuple(p.subnet for p in n.pools),
                                           masquerade=self.cfg.ip_masq and opt_bool(n.options, MASQ_OPT, True),
                                           icc=opt_bool(n.options, ICC_OPT, True) and (n.name != "bridge" or self.cfg.icc),
                                           internal=n.internal))
            with self.db.read() as c:
                rows = c.execute("SELECT proto, host_ip, host_port, container_ip, container_port, device "
                                 "FROM port_maps").fetchall()
            rules = []
            for r in rows:  # typed again: a row that is not a valid rule is skipped, never rendered
                try:
                    rules.append(PortRule.parse(r[0], r[1], r[2], r[3], r[4], r[5]))
                except (ValueError, TypeError, BerthError) as exc:
                    log.error("port mapping %s is invalid and not published: %s", tuple(r), exc)
            if not bridges and not rules and not self._wrote_table:
                return  # nothing of berth's to write or to remove: leave nft alone
            self.firewall.apply(Ruleset(bridges, rules, self._guard_forward), self.cfg.ipv6)
            self._wrote_table = bool(bridges or rules)

    # ---- /etc files and DNS --------------------------------------------------------------------------
    def _hosts_file(self, m: Member, got: list[tuple[Network, dict[str, Any]]]) -> str:
        lines = [HOSTS_HEAD]
        for entry in m.host_config.get("ExtraHosts") or []:
            host, _, ip = entry.partition(":") if "=" not in entry else entry.partition("=")
            if ip == "host-gateway":
                ip = next((st["Gateway"] for _n, st in got if st.get("Gateway")), "")
                if not ip:
                    bridge = self._find("bridge")
                    ip = str(bridge.pools[0].gateway) if bridge and bridge.pools else ""
            lines.append(f"{ip}\t{host}\n")
        for link in m.host_config.get("Links") or []:
            target, _, alias = link.partition(":")
            ip = self._address_of(target.lstrip("/"), [n for n, _ in got])
            if ip:
                alias = alias.rsplit("/", 1)[-1] or target
                lines.append(f"{ip}\t{alias} {target.lstrip('/')}\n")
        fqdn = f"{m.hostname}.{m.domainname}" if m.domainname else ""
        for _n, st in got[:1]:
            for key in ("IPAddress", "GlobalIPv6Address"):
                if st.get(key):
                    lines.append(f"{st[key]}\t{fqdn + ' ' if fqdn else ''}{m.hostname}\n")
        return "".join(lines)

    def _address_of(self, ref: str, nets: list[Network]) -> str:
        try:
            cid, _ = self.members.ref(ref)
        except NotFound:
            return ""
        for net, _req, st in self._attachments(cid):
            if st and (not nets or any(n.id == net.id for n in nets)):
                return st.get("IPAddress") or st.get("GlobalIPv6Address") or ""
        return ""

    def bridge_address(self, ref: str) -> str:
        """The address of container ``ref`` on the default bridge ("" when it has none): a legacy link's."""
        bridge = self._find("bridge")
        return self._address_of(ref, [bridge]) if bridge is not None else ""

    def _dns_upstreams(self, m: Member) -> list[str]:
        """Where the embedded resolver forwards a container's other questions: nowhere when every
        network it is on is ``internal`` (such a container must not reach outside, DNS included)."""
        nets = [n for n, _r, st in self._attachments(m.id) if st is not None and not n.predefined]
        if nets and all(n.internal for n in nets):
            return []
        return self._upstreams(m.host_config)

    def _upstreams(self, m_hc: dict[str, Any]) -> list[str]:
        return list(m_hc.get("Dns") or self.cfg.dns or dns.host_resolvers()[0])

    def _resolv_file(self, m: Member, nets: list[Network]) -> str:
        hc = m.host_config
        servers, search, options = dns.host_resolvers()
        search = list(hc.get("DnsSearch") or self.cfg.dns_search or search)
        options = list(hc.get("DnsOptions") or self.cfg.dns_opts or options)
        embedded = any(not n.predefined for n in nets)
        if embedded:
            lines = ["# Generated by berth: the embedded DNS server answers for this container's networks and\n"
                     f"# forwards other names to {', '.join(self._upstreams(hc)) or 'no upstream server'}\n",
                     f"nameserver {dns.ADDRESS}\n"]
            if "ndots:0" not in options and not any(o.startswith("ndots:") for o in options):
                options.append("ndots:0")
        else:
            chosen = list(hc.get("Dns") or self.cfg.dns or
                          [s for s in servers if not ipaddress.ip_address(s).is_loopback])
            if not chosen:
                chosen = ["8.8.8.8", "8.8.4.4"]  # dockerd's fallback when the host has only local resolvers
            lines = ["# Generated by berth from the host's resolv.conf\n"] + [f"nameserver {s}\n" for s in chosen]
        if search:
            lines.append("search " + " ".join(search) + "\n")
        if options:
            lines.append("options " + " ".join(options) + "\n")
        return "".join(lines)

    def wants_dns(self, cid: str) -> bool:
        return any(not n.predefined and st is not None for n, _r, st in self._attachments(cid))

    async def start_dns(self, m: Member) -> None:
        """Serve the embedded resolver in the container's namespace (user-defined networks only)."""
        if not self.wants_dns(m.id) or m.id in self._dns:
            return
        socks = self._dns_socks.pop(m.id, None)
        if socks is None:
            try:
                socks = await asyncio.to_thread(netns.inside, self.netns_path(m.id), dns.open_sockets)
            except (OSError, BerthError) as exc:
                log.warning("container %s: embedded DNS not started: %s", m.id[:12], exc)
                return
        server = dns.Server(lambda name, qtype: self.lookup(m.id, name), lambda: self._dns_upstreams(m))
        await server.serve(socks)
        self._dns[m.id] = server

    def lookup(self, cid: str, name: str) -> list[str] | None:
        """Addresses of ``name`` as the container ``cid`` sees it: on the user-defined networks it shares."""
        mine = [(n, r) for n, r, st in self._attachments(cid) if st is not None and not n.predefined]
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
            for other, oreq, st in self._endpoints(net.id):
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

    # ---- connect / disconnect ------------------------------------------------------------------------
    def connect(self, ref: str, body: dict[str, Any]) -> tuple[str, str]:
        """Attach a container (running or not); returns (container id, network id)."""
        net = self.get(ref)
        cid, _ = self.members.ref(str(body.get("Container") or ""))
        m = self.members.member(cid)
        mode = mode_of(m.host_config)
        if mode in ("host", "none") or net.name in ("host", "none"):
            raise Forbidden("container cannot be disconnected from host network or connected to host network"
                            if "host" in (mode, net.name) else
                            "container cannot be connected to the none network or from a container in it")
        req = self._check_request(net, body.get("EndpointConfig") or {}, m.host_config)
        with self._lock, self.db.transaction() as c:
            if c.execute("SELECT 1 FROM attachments WHERE container_id = ? AND network_id = ?",
                         (cid, net.id)).fetchone():
                raise Forbidden(f"endpoint with name {m.name} already exists in network {net.name}")
            pos = c.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM attachments WHERE container_id = ?",
                            (cid,)).fetchone()[0]
            c.execute("INSERT INTO attachments VALUES (?, ?, ?, ?, NULL)", (cid, net.id, pos, json.dumps(req)))
        if self.members.is_running(cid):
            path = self.netns_path(cid)
            if not os.path.exists(path):
                with self.db.transaction() as c:
                    c.execute("DELETE FROM attachments WHERE container_id = ? AND network_id = ?", (cid, net.id))
                raise Forbidden("the container has no network namespace of berth's (it started with none or host)")
            used = {st["Ifname"] for _n, _r, st in self._attachments(cid) if st}
            ifname = next(f"eth{i}" for i in range(64) if f"eth{i}" not in used)
            try:
                self._join(m, net, req, path, ifname, default_route=False)
            except BaseException:
                with self.db.transaction() as c:
                    c.execute("DELETE FROM attachments WHERE container_id = ? AND network_id = ?", (cid, net.id))
                raise
        return cid, net.id

    def disconnect(self, ref: str, body: dict[str, Any]) -> None:
        net = self.get(ref)
        try:
            cid, name = self.members.ref(str(body.get("Container") or ""))
        except NotFound:
            if body.get("Force"):
                return
            raise
        with self.db.read() as c:
            row = c.execute("SELECT state FROM attachments WHERE container_id = ? AND network_id = ?",
                            (cid, net.id)).fetchone()
        if row is None:
            raise Forbidden(f"container {cid} is not connected to network {net.name}")
        if row[0]:
            st = json.loads(row[0])
            with contextlib.suppress(BerthError):
                netlink.delete_link(st["Ifname"], self.netns_path(cid))
            self._release_endpoint(cid, net)
            self.bus.publish(make_event("network", "disconnect", net.id,
                                        {"container": cid, "name": net.name, "type": net.driver}))
        with self.db.transaction() as c:
            c.execute("DELETE FROM attachments WHERE container_id = ? AND network_id = ?", (cid, net.id))

    # ---- views for containers -------------------------------------------------------------------------
    def settings(self, cid: str, hc: dict[str, Any], exposed: dict[str, Any] | None, running: bool) -> dict[str, Any]:
        nets: dict[str, Any] = {}
        first: dict[str, Any] | None = None
        mode = mode_of(hc)
        if mode in ("host", "none"):
            net = self._find(mode)
            nets[mode] = {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
                          "NetworkID": net.id if net else "", "EndpointID": "", "Gateway": "", "IPAddress": "",
                          "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                          "DNSNames": None}
        for net, req, st in self._attachments(cid):
            st = st if running and st else {}
            view = {"IPAMConfig": req.get("IPAMConfig"), "Links": req.get("Links"), "Aliases": req.get("Aliases"),
                    "MacAddress": st.get("MacAddress") or req.get("MacAddress") or "", "DriverOpts": req.get("DriverOpts"),
                    "NetworkID": net.id, "EndpointID": st.get("EndpointID", ""), "Gateway": st.get("Gateway", ""),
                    "IPAddress": st.get("IPAddress", ""), "IPPrefixLen": st.get("IPPrefixLen", 0),
                    "IPv6Gateway": st.get("IPv6Gateway", ""), "GlobalIPv6Address": st.get("GlobalIPv6Address", ""),
                    "GlobalIPv6PrefixLen": st.get("GlobalIPv6PrefixLen", 0), "DNSNames": None}
            if not net.predefined and st:
                names = [self.members.ref(cid)[1]]
                view["DNSNames"] = names + list(req.get("Aliases") or []) + [cid[:12]]
            nets[net.name] = view
            if first is None and net.name == "bridge":
                first = view
        ports: dict[str, Any] = {p: None for p in (exposed or {})}
        if running:
            for proto, hip, hport, cport in self.ports(cid):
                ports.setdefault(f"{cport}/{proto}", None)
                ports[f"{cport}/{proto}"] = (ports[f"{cport}/{proto}"] or []) + [{"HostIp": hip, "HostPort": str(hport)}]
        out = {"Bridge": "", "SandboxID": cid if running and os.path.exists(self.netns_path(cid)) else "",
               "SandboxKey": self.netns_path(cid) if running and os.path.exists(self.netns_path(cid)) else "",
               "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": ports,
               "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "",
               "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0,
               "IPv6Gateway": "", "MacAddress": "", "Networks": nets}
        if first is not None:
            for k in ("EndpointID", "Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen", "IPAddress", "IPPrefixLen",
                      "IPv6Gateway", "MacAddress"):
                out[k] = first[k]
        return out

    def summary(self, cid: str, hc: dict[str, Any], running: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """(Ports, NetworkSettings.Networks) for the container list."""
        ports = [{"IP": hip, "PrivatePort": cport, "PublicPort": hport, "Type": proto}
                 for proto, hip, hport, cport in (self.ports(cid) if running else [])]
        return ports, self.settings(cid, hc, None, running)["Networks"]

    def network_names(self, cid: str) -> list[str]:
        return [n.name for n, _r, _s in self._attachments(cid)]

    def reconcile(self, running: Callable[[str], bool], members: list[Member]) -> None:
        """At start: release what belongs to containers that are not running; re-reserve the published
        ports of those that are."""
        with self.db.read() as c:
            holders = {r[0] for r in c.execute("SELECT container_id FROM attachments WHERE state IS NOT NULL")}
            holders |= {r[0] for r in c.execute("SELECT container_id FROM ip_allocs")}
            holders |= {r[0] for r in c.execute("SELECT container_id FROM port_maps")}
        for cid in holders:
            if not running(cid):
                log.info("releasing the network of container %s (not running)", cid[:12])
                self.teardown(cid)
        if os.path.isdir(self.netns_dir):
            for name in os.listdir(self.netns_dir):
                if name.startswith("."):
                    continue
                if not running(name):
                    netns.remove(os.path.join(self.netns_dir, name))
        for m in members:
            socks = []
            for proto, hip, hport, _cport in self.ports(m.id):
                with contextlib.suppress(OSError, BerthError):
                    socks.append(_reserve(proto, hip, str(hport))[0])
            if socks:
                self._port_socks[m.id] = socks
        self.apply_firewall()

    def cleanup(self) -> None:
        """``berthd --cleanup-network``: berth's nft tables and the default bridge it made go."""
        Firewall().remove()
        net = self._find("bridge")
        if net is not None and net.made_device:
            DRIVERS["bridge"].delete(net)


def _string_map(value: Any, what: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or not all(isinstance(v, str) or v is None for v in value.values()):
        raise InvalidParameter(f"{what} must map strings to strings")


def _check_network_body(body: dict[str, Any]) -> None:
    """A network create request, type by type (as Go's JSON decoding would refuse it): a bad value is
    a 400 naming the field, never a traceback."""
    for key in ("Name", "Driver", "Scope"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise InvalidParameter(f"{key} must be a string")
    for key in ("Internal", "Attachable", "Ingress", "ConfigOnly", "EnableIPv4", "EnableIPv6", "CheckDuplicate"):
        if body.get(key) is not None and not isinstance(body[key], bool):
            raise InvalidParameter(f"{key} must be a boolean")
    _string_map(body.get("Options"), "Options")
    _string_map(body.get("Labels"), "Labels")
    ipam_cfg = body.get("IPAM")
    if ipam_cfg is None:
        return
    if not isinstance(ipam_cfg, dict):
        raise InvalidParameter("IPAM must be a JSON object")
    if ipam_cfg.get("Driver") is not None and not isinstance(ipam_cfg["Driver"], str):
        raise InvalidParameter("IPAM.Driver must be a string")
    _string_map(ipam_cfg.get("Options"), "IPAM.Options")
    if ipam_cfg.get("Config") is not None and not isinstance(ipam_cfg["Config"], list):
        raise InvalidParameter("IPAM.Config entries must be objects")
    for c in ipam_cfg.get("Config") or []:
        if not isinstance(c, dict):
            raise InvalidParameter("IPAM.Config entries must be objects")
        for key in ("Subnet", "IPRange", "Gateway"):
            if c.get(key) is not None and not isinstance(c[key], str):
                raise InvalidParameter(f"IPAM.Config.{key} must be a string")
        _string_map(c.get("AuxiliaryAddresses"), "IPAM.Config.AuxiliaryAddresses")


def _reserve(proto: str, host_ip: str, host_port: str) -> tuple[socket.socket, int]:
    """Bind (without listening) the host port, so no other program takes it while it is published;
    port "" or "0": the kernel picks a free one. Ranges "A-B": the first free one."""
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    stype = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    first, last = ports.parse_host_port(host_port)
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


def _valid_mac(mac: str) -> bool:
    parts = mac.split(":")
    return len(parts) == 6 and all(len(p) == 2 and all(ch in "0123456789abcdefABCDEF" for ch in p) for p in parts)


class NetworkAPI:
    """NetworkService in the api's NetworkBackend shape: blocking work (netlink, nft) in threads."""

    def __init__(self, service: NetworkService) -> None:
        self.s = service

    async def network_create(self, body: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self.s.create, body)

    async def network_list(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.s.list_networks, filters)

    async def network_inspect(self, name: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.s.inspect, name)

    async def network_remove(self, name: str) -> None:
        await asyncio.to_thread(self.s.remove, name)

    async def networks_prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        return await asyncio.to_thread(self.s.prune, filters)

    async def network_connect(self, name: str, body: dict[str, Any]) -> None:
        cid, _nid = await asyncio.to_thread(self.s.connect, name, body)
        if self.s.members.is_running(cid):
            await self.s.start_dns(self.s.members.member(cid))

    async def network_disconnect(self, name: str, body: dict[str, Any]) -> None:
        await asyncio.to_thread(self.s.disconnect, name, body)
