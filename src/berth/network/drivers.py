"""Network drivers: what a driver does to the host when a network is made or removed, and to a
container's namespace when it joins or leaves. A small interface (``Driver``) so that more drivers
(overlay) can be added; ``DRIVERS`` maps the API's names to them. Every netlink call the network
package makes is in this module: the drivers', and the few about the host itself (its routes, the
forwarding switch) and about a new namespace (its loopback) at the end.

- ``bridge``: a Linux bridge (``berth0`` for the default network, ``br-<id12>`` or the
  ``com.docker.network.bridge.name`` option otherwise) holding each pool's gateway address; a
  container joins through a veth pair whose host end is enslaved to the bridge.
- ``macvlan`` (bridge mode) and ``ipvlan`` (l2, l3, l3s): a link on the ``parent`` interface moved
  into the container; ``parent=IFACE.VLAN`` makes the 802.1q sub-interface, removed with the network.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket
from dataclasses import dataclass, field
from typing import Protocol

from berth.errors import BerthError, InvalidParameter, NotFound
from berth.linux import netlink
from berth.network.model import MTU_OPT, Network

Iface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IFNAME = re.compile(r"^[A-Za-z0-9_.:-]{1,15}\Z")


@dataclass
class Join:
    ifname: str  # inside the container: eth0, eth1…
    addrs: list[Iface]
    gateways: list[str]
    default_route: bool
    mac: str | None = None
    host_ifname: str = field(default_factory=lambda: "veth" + os.urandom(4).hex()[:7])
    nl: socket.socket | None = None  # a netlink socket already in the namespace (saves opening one)


@dataclass(frozen=True)
class Leave:
    host_ifname: str  # the host's end of a veth ("" for a link that lives in the namespace only)
    ifname: str = ""  # inside the container
    netns: str | None = None  # the namespace, when it stays (a disconnect); None when it is about to go


class Driver(Protocol):
    name: str

    def create(self, net: Network) -> None: ...

    def delete(self, net: Network) -> None: ...

    def join(self, net: Network, j: Join, netns: str) -> str: ...

    def leave(self, net: Network, e: Leave) -> None: ...


def _mtu(net: Network) -> int:
    try:
        return int(net.options.get(MTU_OPT) or 0)
    except ValueError:
        raise InvalidParameter(f"invalid {MTU_OPT}: {net.options[MTU_OPT]!r}") from None


class BridgeDriver:
    name = "bridge"

    def create(self, net: Network) -> None:
        if not IFNAME.match(net.device):
            raise InvalidParameter(f"invalid bridge name {net.device!r}")
        kind = netlink.link_kind(net.device)
        if kind is not None and kind != "bridge":
            raise InvalidParameter(f"{net.device} exists and is not a bridge ({kind or 'a device'})")
        addrs = [ipaddress.ip_interface(f"{p.gateway}/{p.subnet.prefixlen}") for p in net.pools if p.gateway]
        made = netlink.ensure_bridge(net.device, addrs, _mtu(net))
        net.made_device = net.made_device or made

    def delete(self, net: Network) -> None:
        if net.made_device:
            netlink.delete_link(net.device)

    def join(self, net: Network, j: Join, netns: str) -> str:
        netlink.add_veth(j.host_ifname, j.ifname, netns, net.device, _mtu(net), j.mac)
        try:
            return netlink.configure(netns, j.ifname, j.addrs, j.gateways, j.mac, j.default_route, sock=j.nl,
                                     mac_set=True, lo_up=j.nl is not None)
        except BaseException:
            netlink.delete_link(j.host_ifname)
            raise

    def leave(self, net: Network, e: Leave) -> None:
        if e.netns is not None and e.ifname:
            with contextlib.suppress(BerthError):
                netlink.delete_link(e.ifname, e.netns)  # the pair goes with either end
        if e.host_ifname:
            netlink.delete_link(e.host_ifname)

    @staticmethod
    def route_localnet(net: Network) -> None:
        """Let DNAT to 127.0.0.0/8 through on the bridge (ports published on the host's loopback)."""
        netlink.write_sysctl(f"net/ipv4/conf/{net.device}/route_localnet", "1")

    @staticmethod
    def addresses(device: str) -> list[Iface]:
        return netlink.addresses(device)

    @staticmethod
    def drop_address(device: str, address: str, prefixlen: int) -> None:
        """A gateway address the bridge no longer has (its subnet changed): two subnets would stay routed."""
        with contextlib.suppress(BerthError):
            netlink.ensure_bridge(device, [])
        netlink.remove_address(device, address, prefixlen)


class _SubLinkDriver:
    name = ""
    modes: tuple[str, ...] = ()
    mode_opt = ""

    def _parent(self, net: Network) -> str:
        parent = net.options.get("parent") or ""
        if not parent:
            raise InvalidParameter(f"{self.name} needs a parent interface: -o parent=IFACE (berth makes no dummy "
                                   "parent)")
        if not IFNAME.match(parent):
            raise InvalidParameter(f"invalid parent interface {parent!r}")
        return parent

    def create(self, net: Network) -> None:
        mode = net.options.get(self.mode_opt) or self.modes[0]
        if mode not in self.modes:
            raise InvalidParameter(f"{self.name}: invalid {self.mode_opt} {mode!r} (one of {', '.join(self.modes)})")
        parent = self._parent(net)
        base, dot, vid = parent.partition(".")
        net.device = parent
        if netlink.link_exists(parent):
            self._probe(parent, mode)
            return
        if dot and vid.isdigit():
            if not netlink.link_exists(base):
                raise NotFound(f"the parent interface {base} of {parent} does not exist")
            try:
                netlink.add_vlan(base, int(vid))
            except InvalidParameter as exc:
                raise InvalidParameter(f"cannot create the 802.1q link {parent}: the kernel refused "
                                       f"({exc.message.split(': ')[-1]}); it may lack 802.1q support") from None
            net.made_device = True
            try:
                self._probe(parent, mode)
            except BaseException:
                netlink.delete_link(parent)
                raise
            return
        raise NotFound(f"the parent interface {parent} does not exist")

    def _probe(self, parent: str, mode: str) -> None:
        """Refuse the network now, not at the first container, when the kernel cannot make its links."""
        try:
            netlink.probe_sublink(self.name, parent, mode)
        except InvalidParameter as exc:
            raise InvalidParameter(f"{self.name} networks are not possible here: the kernel refused a {self.name} "
                                   f"link in {mode} mode on {parent} ({exc.message.split(': ')[-1]}); it may lack "
                                   f"{self.name} support") from None

    def delete(self, net: Network) -> None:
        if net.made_device:
            netlink.delete_link(net.device)

    def join(self, net: Network, j: Join, netns: str) -> str:
        mode = net.options.get(self.mode_opt) or self.modes[0]
        try:
            netlink.add_sublink(self.name, net.device, j.ifname, netns, mode, _mtu(net))
        except InvalidParameter as exc:
            raise InvalidParameter(f"cannot create a {self.name} link on {net.device}: {exc.message.split(': ')[-1]}"
                                   f" (the kernel may lack {self.name} support)") from None
        device_route = self.name == "ipvlan" and mode != "l2"
        return netlink.configure(netns, j.ifname, j.addrs, [] if device_route else j.gateways,
                                 j.mac if self.name == "macvlan" else None, j.default_route,
                                 device_route=device_route, sock=j.nl, lo_up=j.nl is not None)

    def leave(self, net: Network, e: Leave) -> None:
        if e.netns is not None and e.ifname:  # else the link goes with the container's namespace
            netlink.delete_link(e.ifname, e.netns)


class MacvlanDriver(_SubLinkDriver):
    name = "macvlan"
    modes = ("bridge", "private", "vepa", "passthru")
    mode_opt = "macvlan_mode"


class IpvlanDriver(_SubLinkDriver):
    name = "ipvlan"
    modes = ("l2", "l3", "l3s")
    mode_opt = "ipvlan_mode"


DRIVERS: dict[str, Driver] = {d.name: d for d in (BridgeDriver(), MacvlanDriver(), IpvlanDriver())}


# ---- the host and a new namespace ----------------------------------------------------------------------
def host_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Every destination of a route and every subnet of an address on this host: what a pool must not overlap."""
    return netlink.host_networks()


def enable_ip_forward() -> bool:
    """net.ipv4.ip_forward on; True when it was off (berth then guards what the host would forward)."""
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        was = f.read().strip()
    if was == "1":
        return False
    netlink.write_sysctl("net/ipv4/ip_forward", "1")
    return True


def namespace_ready() -> socket.socket:
    """Inside a new namespace (its creating thread): lo up, and a netlink socket for its first link."""
    netlink.loopback_up()
    return netlink.open_socket()
