"""The networks every daemon has: ``host`` and ``none``, and the default ``bridge`` as berthd's options
say (``--bridge``, ``--bip``, ``--fixed-cidr``, ``--mtu``, ``--icc``, ``--ip-masq``), on a subnet that
overlaps none of the host's routes and addresses; the bridges of user-defined networks made again
after a reboot; forwarding and the firewall."""

from __future__ import annotations

import ipaddress
import logging
import secrets

from berth.errors import BerthError, InvalidParameter, System
from berth.network import drivers, ipam
from berth.network.catalog import Catalog
from berth.network.drivers import DRIVERS, BridgeDriver
from berth.network.model import (
    BRIDGE_NAME_OPT,
    DEFAULT_BRIDGE_OPT,
    HOST_BINDING_OPT,
    ICC_OPT,
    MASQ_OPT,
    MTU_OPT,
    NetSettings,
    Network,
    now,
)
from berth.network.ports import Ports

log = logging.getLogger("berth.network")


def init(catalog: Catalog, cfg: NetSettings, ports: Ports) -> None:
    """Predefined networks, the default bridge, the firewall. Runs in a thread at start."""
    have = catalog.rows.names()
    for name, driver in (("host", "host"), ("none", "null")):
        if name not in have:
            catalog.rows.insert(Network(secrets.token_hex(32), name, driver, now()).row())
    if cfg.bridge != "none":
        default_bridge(catalog, cfg, ports)
    else:
        catalog.rows.delete_named("bridge")
    for net in catalog.all():
        if net.driver == "bridge" and net.name != "bridge":
            try:
                DRIVERS["bridge"].create(net)
            except BerthError as exc:
                log.warning("network %s: cannot recreate bridge %s: %s", net.name, net.device, exc.message)
    bridges = any(n.driver == "bridge" for n in catalog.all())
    if cfg.ip_forward and bridges and drivers.enable_ip_forward():
        ports.guard_forward = True
        log.info("set net.ipv4.ip_forward=1 (ip-forward); berth's forward chain drops forwarded traffic "
                 "that does not touch a berth bridge, so the host does not start routing for others")
    if bridges:
        ports.apply()  # without any bridge network there is nothing to write (and no table to touch)


def _default_pool(catalog: Catalog, cfg: NetSettings, name: str, existing: Network | None) -> ipam.Pool:
    if cfg.bip:
        try:
            iface = ipaddress.ip_interface(cfg.bip)
        except ValueError:
            raise InvalidParameter(f"invalid bip {cfg.bip!r}: it must be an address with a prefix, such as "
                                   "10.0.1.1/24") from None
        return ipam.Pool(iface.network, gateway=iface.ip)
    if existing is not None and existing.pools and existing.device == name:
        return existing.pools[0]  # the subnet chosen before stays
    have = [a for a in BridgeDriver.addresses(name) if a.version == 4]
    if have:
        log.info("default bridge: %s already has %s, keeping it", name, have[0])
        return ipam.Pool(have[0].network, gateway=have[0].ip)
    subnet = ipam.choose_subnet(cfg.address_pools, drivers.host_networks() + catalog.subnets_in_use(exclude="bridge"))
    if subnet is None:
        raise System("no address pool has a subnet that does not overlap the host's routes and addresses;"
                     " set --bip or default-address-pools")
    log.info("default bridge %s: chose %s (it overlaps no route or address on this host)", name, subnet)
    return ipam.Pool(subnet, gateway=ipam.first_host(subnet))


def default_bridge(catalog: Catalog, cfg: NetSettings, ports: Ports) -> None:
    name = cfg.bridge or "berth0"
    existing = catalog.find("bridge")
    pool = _default_pool(catalog, cfg, name, existing)
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
                  existing.created if existing else now(), ipv6=cfg.ipv6 and bool(cfg.fixed_cidr_v6),
                  options=opts, pools=pools, device=name, made_device=existing.made_device if existing else False,
                  user_subnets=True, fixed=fixed)
    if existing is not None and existing.device != name and existing.made_device:
        DRIVERS["bridge"].delete(existing)
        net.made_device = False
    if existing is not None and existing.pools and existing.pools[0].subnet != pool.subnet:
        old = existing.pools[0]
        if old.gateway is not None:
            BridgeDriver.drop_address(name, str(old.gateway), old.subnet.prefixlen)
    DRIVERS["bridge"].create(net)
    if ports.firewall.enabled:
        BridgeDriver.route_localnet(net)
    catalog.rows.insert(net.row(), replace=True)


def cleanup(catalog: Catalog) -> None:
    """``berthd --cleanup-network``: berth's nft tables and the default bridge it made go."""
    from berth.network.firewall import Firewall

    Firewall().remove()
    net = catalog.find("bridge")
    if net is not None and net.made_device:
        DRIVERS["bridge"].delete(net)
