"""The network controller, in the manner of libnetwork's: networks made and removed (the driver's
device, the IPAM pools, the firewall), a container's networks planned at create and recorded, and
its endpoints joined and left at connect and disconnect. A running container's side is the
sandbox's (``sandbox.py``); the views are ``views.py``'s."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import threading
from typing import Any

from berth import netvalues
from berth.errors import BerthError, Conflict, Forbidden, InvalidParameter, NotFound, NotSupported
from berth.network import defaults, drivers, ipam
from berth.network.catalog import Catalog
from berth.network.discovery import Discovery
from berth.network.drivers import DRIVERS, BridgeDriver
from berth.network.model import (
    BRIDGE_NAME_OPT,
    HOST_BINDING_OPT,
    Members,
    NetSettings,
    Network,
    mode_of,
    now,
)
from berth.network.ports import Ports
from berth.network.sandbox import Emit, Sandboxes
from berth.network.views import NetworkViews
from berth.store.networks import NetworkRows

log = logging.getLogger("berth.network")
Plan = list[tuple[Network, dict[str, Any]]]


class NetworkController:
    def __init__(self, rows: NetworkRows, emit: Emit, cfg: NetSettings, exec_root: str, members: Members) -> None:
        self.rows = rows
        self.emit = emit
        self.cfg = cfg
        self.members = members
        self.lock = threading.RLock()
        self.catalog = Catalog(rows)
        self.ports = Ports(self.catalog, cfg, self.lock)
        netns_dir = os.path.join(exec_root, "netns")
        self.discovery = Discovery(self.catalog, members, cfg, lambda cid: os.path.join(netns_dir, cid))
        self.sandboxes = Sandboxes(self.catalog, members, cfg, self.ports, self.discovery, emit, self.lock, netns_dir)
        self.views = NetworkViews(self.catalog, self.ports.rows, members, self.sandboxes.netns_path)

    def init(self) -> None:
        """Predefined networks, the default bridge, the firewall. Runs in a thread at start."""
        defaults.init(self.catalog, self.cfg, self.ports)

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self.discovery.attach_loop(loop)

    def cleanup(self) -> None:
        """``berthd --cleanup-network``: berth's nft tables and the default bridge it made go."""
        defaults.cleanup(self.catalog)

    # ---- networks --------------------------------------------------------------------------------
    def get(self, ref: str) -> Network:
        return self.catalog.get(ref)

    def inspect(self, ref: str) -> dict[str, Any]:
        net = self.catalog.get(ref)
        return net.view(self.views.containers(net))

    def list_networks(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        return [net.view(self.views.containers(net)) for net in self.catalog.all() if self.views.matches(net, filters)]

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
            netvalues.parse_ifname(options[BRIDGE_NAME_OPT], "bridge name")
        if options.get(HOST_BINDING_OPT):
            netvalues.parse_ip(options[HOST_BINDING_OPT], f"{HOST_BINDING_OPT}")
        if options.get("parent"):
            netvalues.parse_ifname(options["parent"], "parent interface")
        ipv6 = bool(body.get("EnableIPv6"))
        pools = ipam.parse_pools(ipam_cfg.get("Config") or [])
        if pools and not ipv6 and any(p.subnet.version == 6 for p in pools):
            ipv6 = True
        with self.lock:
            same = self.catalog.find(name)
            if same is not None and same.name == name:
                raise Conflict(f"network with name {name} already exists")
            nid = secrets.token_hex(32)
            in_use = self.catalog.subnets_in_use()
            ipam.check_overlap(pools, in_use)
            user_subnets = bool(pools)
            if not any(p.subnet.version == 4 for p in pools):
                subnet = ipam.choose_subnet(self.cfg.address_pools, drivers.host_networks() + in_use)
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
            net = Network(nid, name, driver, now(), bool(body.get("Internal")), bool(body.get("Attachable")), ipv6,
                          options, {str(k): v or "" for k, v in (body.get("Labels") or {}).items()}, pools,
                          "default", ipam_cfg.get("Options") or {}, device, False, user_subnets)
            if driver == "bridge" and any(n.device == device for n in self.catalog.all() if n.driver == "bridge"):
                raise Conflict(f"bridge name {device} is already used by another network")
            DRIVERS[driver].create(net)
            try:
                if driver == "bridge" and self.ports.firewall.enabled:
                    BridgeDriver.route_localnet(net)
                self.rows.insert(net.row())
                self.ports.apply()
            except BaseException:
                self.rows.delete(nid)
                DRIVERS[driver].delete(net)
                raise
        self.emit("network", "create", nid, {"name": name, "type": driver})
        return {"Id": nid, "Warning": ""}

    def remove(self, ref: str) -> None:
        net = self.catalog.get(ref)
        if net.predefined:
            raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
        with self.lock:
            active = [cid for cid, _r, st in self.catalog.endpoints(net.id) if st is not None]
            if active:
                raise Forbidden(f"error while removing network: network {net.name} id {net.id} has active endpoints")
            self.rows.delete(net.id)
            DRIVERS[net.driver].delete(net)
            self.ports.apply()
        self.emit("network", "destroy", net.id, {"name": net.name, "type": net.driver})

    def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        deleted = []
        until = float(filters["until"][-1]) if filters.get("until") else None
        for net in self.catalog.all():
            if net.predefined or any(st is not None for _c, _r, st in self.catalog.endpoints(net.id)):
                continue
            if until is not None and dt.datetime.fromisoformat(net.created[:26] + "+00:00").timestamp() >= until:
                continue  # made at or after `until`: kept
            if "label" in filters and not self.views.matches(net, {"label": filters["label"]}):
                continue
            if "label!" in filters and any(self.views.matches(net, {"label": [lb]}) for lb in filters["label!"]):
                continue
            with contextlib.suppress(BerthError):
                self.remove(net.id)
                deleted.append(net.name)
        return {"NetworksDeleted": deleted or None}

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
            if self.catalog.find("bridge") is None or self.cfg.bridge == "none":
                return "none", []  # as dockerd with --bridge=none
            net = self.catalog.get("bridge")
            stored = "bridge" if mode == "bridge" else "default"
        else:
            net = self.catalog.get(mode)
            if net.name in ("host", "none"):
                return net.name, []
            stored = net.name
        req = endpoints.pop(mode, None) or endpoints.pop(net.name, None) or endpoints.pop(net.id, None) or {}
        plan = [(net, _check_request(net, req, hc))]
        for ref, extra in endpoints.items():
            other = self.catalog.get(ref)
            if other.predefined:
                raise InvalidParameter(f"container cannot be connected to {other.name} and {net.name} at once")
            plan.append((other, _check_request(other, extra or {}, hc)))
        return stored, plan

    def register(self, cid: str, plan: Plan) -> None:
        """Record a new container's networks (inside the caller's create transaction)."""
        self.rows.attach(cid, [(net.id, req) for net, req in plan])

    def forget(self, cid: str) -> None:
        """The container's row goes (inside the caller's transaction): so do its attachments, addresses
        and ports. What its network still holds (a ``--rm`` container's, removed at once) is released by
        the sandbox's teardown after the removal has been answered; the disconnect events are sent now."""
        held, had_ports = self.rows.forget(cid)
        for nid in held:
            net = self.catalog.find(nid)
            if net is not None:
                self.emit("network", "disconnect", net.id, {"container": cid, "name": net.name, "type": net.driver})
        self.ports.forgotten(cid, had_ports)

    # ---- connect / disconnect ----------------------------------------------------------------------
    def connect(self, ref: str, body: dict[str, Any]) -> tuple[str, str]:
        """Attach a container (running or not); returns (container id, network id)."""
        net = self.catalog.get(ref)
        cid, _ = self.members.ref(str(body.get("Container") or ""))
        m = self.members.member(cid)
        mode = mode_of(m.host_config)
        if mode in ("host", "none") or net.name in ("host", "none"):
            raise Forbidden("container cannot be disconnected from host network or connected to host network"
                            if "host" in (mode, net.name) else
                            "container cannot be connected to the none network or from a container in it")
        req = _check_request(net, body.get("EndpointConfig") or {}, m.host_config)
        with self.lock:
            if self.rows.attachment_state(cid, net.id)[0]:
                raise Forbidden(f"endpoint with name {m.name} already exists in network {net.name}")
            self.rows.attach(cid, [(net.id, req)])
        if self.members.is_running(cid):
            try:
                self.sandboxes.connect_running(m, net, req)
            except BaseException:
                self.rows.detach(cid, net.id)
                raise
        return cid, net.id

    def disconnect(self, ref: str, body: dict[str, Any]) -> None:
        net = self.catalog.get(ref)
        try:
            cid, _name = self.members.ref(str(body.get("Container") or ""))
        except NotFound:
            if body.get("Force"):
                return
            raise
        asked, st = self.rows.attachment_state(cid, net.id)
        if not asked:
            raise Forbidden(f"container {cid} is not connected to network {net.name}")
        if st is not None:
            self.sandboxes.disconnect(cid, net, st)
        self.rows.detach(cid, net.id)


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


def _valid_mac(mac: str) -> bool:
    parts = mac.split(":")
    return len(parts) == 6 and all(len(p) == 2 and all(ch in "0123456789abcdefABCDEF" for ch in p) for p in parts)




def _check_request(net: Network, req: dict[str, Any], hc: dict[str, Any]) -> dict[str, Any]:
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

