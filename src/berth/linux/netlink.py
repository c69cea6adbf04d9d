"""Links, addresses and routes through netlink (pyroute2), and sysctls; errors become berth's kinds.

pyroute2 is imported on first use (it costs ~0.1 s), so a daemon that never touches a network does
not pay for it. ``session(netns)`` gives an ``IPRoute`` whose socket lives in that namespace.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

from berth.errors import Conflict, InvalidParameter, NotFound, System
from berth.linux import netns as _netns

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Iface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def _socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, 0)  # NETLINK_ROUTE


_local = threading.local()  # one host session per thread: pyroute2's IPRoute cannot be shared by threads


@contextlib.contextmanager
def session(netns: str | None = None, sock: socket.socket | None = None) -> Iterator[Any]:
    """An IPRoute on a netlink socket opened in ``netns`` (by a thread that entered it: pyroute2's own
    netns support forks a process for it), subscribed to no multicast group; or on ``sock``, a netlink
    socket already opened in ``netns``. Each thread keeps its session of the host's namespace (the
    worker threads of asyncio.to_thread are reused, so this is a handful of sockets)."""
    from pyroute2 import IPRoute

    if netns is None and sock is None:
        host = getattr(_local, "ipr", None)
        if host is None:
            host = _local.ipr = IPRoute(use_socket=_socket(), groups=0)
        yield host
        return
    if sock is None:
        sock = _netns.inside(netns, _socket)  # type: ignore[arg-type]
    ipr = IPRoute(use_socket=sock, groups=0)
    if netns is not None:
        _check_namespace(ipr, netns)
    try:
        yield ipr
    finally:
        ipr.close()


def open_socket() -> socket.socket:
    """A netlink socket in the calling thread's namespace (for ``session(netns, sock=…)``)."""
    return _socket()


def loopback_up() -> None:
    """``lo`` up in the calling thread's namespace, with two ioctls (no netlink session needed)."""
    import fcntl
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), siocgifflags, req))[1]
        fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


SIOCGSKNS = 0x894C  # ioctl: a file descriptor of the network namespace a socket belongs to


def _check_namespace(ipr: Any, netns: str) -> None:
    """The session must really talk to ``netns``: a container's ``eth0`` has the host's name, and a
    session that fell back to the host's namespace would reconfigure the host (its address and default
    route). Checked on the socket pyroute2 actually uses."""
    import fcntl

    used = getattr(getattr(ipr, "asyncore", None), "socket", None)
    ok = False
    if isinstance(used, socket.socket):
        try:
            fd = fcntl.ioctl(used.fileno(), SIOCGSKNS)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                ok = os.fstat(fd).st_ino == os.stat(netns).st_ino
            finally:
                os.close(fd)
    if not ok:
        ipr.close()
        raise System(f"the netlink socket is not in the namespace {netns}: refusing to configure links through it")


def _error(what: str, exc: Exception) -> Exception:
    code = getattr(exc, "code", None)
    text = os.strerror(code) if isinstance(code, int) else str(exc)
    if code == 17:
        return Conflict(f"{what}: {text}")
    if code in (19, 2):
        return NotFound(f"{what}: {text}")
    if code in (22, 95, 93):  # EINVAL, EOPNOTSUPP, EPROTONOSUPPORT: the kernel lacks the link kind
        return InvalidParameter(f"{what}: {text}")
    return System(f"{what}: {text}")


def index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def link_exists(name: str) -> bool:
    with session() as ipr:
        return index(ipr, name) is not None


def link_kind(name: str) -> str | None:
    with session() as ipr:
        idx = index(ipr, name)
        if idx is None:
            return None
        link = ipr.get_links(idx)[0]
        info = link.get_attr("IFLA_LINKINFO")
        return info.get_attr("IFLA_INFO_KIND") if info is not None else ""


def host_networks() -> list[Net]:
    """Every destination of a route and every subnet of an address in this namespace (all tables)."""
    out: list[Net] = []
    with session() as ipr:
        for family in (2, 10):
            for r in ipr.get_routes(family=family, table=0):
                dst = r.get_attr("RTA_DST")
                if dst is None or r["dst_len"] == 0:
                    continue
                with contextlib.suppress(ValueError):
                    out.append(ipaddress.ip_network(f"{dst}/{r['dst_len']}", strict=False))
            for a in ipr.get_addr(family=family):
                addr = a.get_attr("IFA_ADDRESS")
                with contextlib.suppress(ValueError, TypeError):
                    out.append(ipaddress.ip_network(f"{addr}/{a['prefixlen']}", strict=False))
    return [n for n in out if not n.is_loopback and not n.is_link_local]


def _addresses(ipr: Any, idx: int) -> list[Iface]:
    return [ipaddress.ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}") for a in ipr.get_addr(index=idx)]


def addresses(name: str) -> list[Iface]:
    with session() as ipr:
        idx = index(ipr, name)
        return [] if idx is None else _addresses(ipr, idx)


def ensure_bridge(name: str, addrs: list[Iface], mtu: int = 0) -> bool:
    """The bridge ``name`` up with at least ``addrs``; True when it was created now."""
    with session() as ipr:
        idx = index(ipr, name)
        made = idx is None
        if made:
            kw: dict[str, Any] = {"ifname": name, "kind": "bridge"}
            if mtu:
                kw["mtu"] = mtu
            try:
                ipr.link("add", **kw)
            except Exception as exc:  # noqa: BLE001
                raise _error(f"creating bridge {name}", exc) from None
            idx = index(ipr, name)
        if idx is None:
            raise NotFound(f"bridge {name} vanished as it was made")
        have = set(_addresses(ipr, idx))
        for a in addrs:
            if a not in have:
                try:
                    ipr.addr("add", index=idx, address=str(a.ip), prefixlen=a.network.prefixlen)
                except Exception as exc:  # noqa: BLE001
                    if getattr(exc, "code", None) != 17:
                        raise _error(f"adding {a} to {name}", exc) from None
        ipr.link("set", index=idx, state="up")
        return made


def remove_address(name: str, address: str, prefixlen: int) -> None:
    """Remove one address from a link of this namespace; a link or address that is gone is no error."""
    with session() as ipr:
        idx = index(ipr, name)
        if idx is not None:
            with contextlib.suppress(Exception):
                ipr.addr("del", index=idx, address=address, prefixlen=prefixlen)


def delete_link(name: str, netns: str | None = None) -> None:
    """Delete a link; gone already is not an error."""
    if netns is None:
        _bridge_index.pop(name, None)
    with session(netns) as ipr:
        idx = index(ipr, name)
        if idx is not None:
            with contextlib.suppress(Exception):
                ipr.link("del", index=idx)


def _ns_fd(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


_bridge_index: dict[str, int] = {}


def add_veth(host_name: str, peer_name: str, netns: str, bridge: str, mtu: int = 0, mac: str | None = None) -> None:
    """A veth pair: ``host_name`` enslaved to ``bridge`` and up; ``peer_name`` (with ``mac``) in
    ``netns``. One netlink request when the bridge's index is known (each costs ~0.3 ms of Python)."""
    fd = _ns_fd(netns)
    try:
        with session() as ipr:
            for attempt in (1, 2):
                br = _bridge_index.get(bridge)
                if br is None:
                    br = index(ipr, bridge)
                    if br is None:
                        raise NotFound(f"bridge {bridge} does not exist")
                    _bridge_index[bridge] = br
                peer: dict[str, Any] = {"ifname": peer_name, "net_ns_fd": fd}
                kw: dict[str, Any] = {"ifname": host_name, "kind": "veth", "peer": peer, "master": br, "state": "up"}
                if mac:
                    peer["address"] = mac
                if mtu:
                    kw["mtu"] = peer["mtu"] = mtu
                try:
                    ipr.link("add", **kw)
                    return
                except Exception as exc:  # noqa: BLE001
                    if attempt == 1 and getattr(exc, "code", None) in (19, 22):  # the bridge was made again
                        _bridge_index.pop(bridge, None)
                        continue
                    raise _error(f"creating veth {host_name}", exc) from None
    finally:
        os.close(fd)


def _add_sublink(ipr: Any, kind: str, parent: str, name: str, mode: str, mtu: int = 0) -> int:
    """A macvlan or ipvlan link ``name`` on ``parent`` in ``ipr``'s namespace; returns its index."""
    p = index(ipr, parent)
    if p is None:
        raise NotFound(f"parent interface {parent} does not exist")
    kw: dict[str, Any] = {"ifname": name, "kind": kind, "link": p}
    if kind == "macvlan":
        kw["macvlan_mode"] = mode
    else:
        kw["ipvlan_mode"] = {"l2": 0, "l3": 1, "l3s": 2}[mode]
    if mtu:
        kw["mtu"] = mtu
    try:
        ipr.link("add", **kw)
    except Exception as exc:  # noqa: BLE001
        raise _error(f"creating a {kind} link on {parent}", exc) from None
    idx = index(ipr, name)
    assert idx is not None
    return idx


def add_sublink(kind: str, parent: str, name: str, netns: str, mode: str, mtu: int = 0) -> None:
    """A macvlan or ipvlan link on ``parent``, moved into ``netns`` as ``name``."""
    fd = _ns_fd(netns)
    tmp = f"bt{os.urandom(4).hex()}"
    try:
        with session() as ipr:
            idx = _add_sublink(ipr, kind, parent, tmp, mode, mtu)
            try:
                ipr.link("set", index=idx, net_ns_fd=fd)
            except Exception as exc:  # noqa: BLE001
                with contextlib.suppress(Exception):
                    ipr.link("del", index=idx)
                raise _error(f"moving {kind} link into the container", exc) from None
        with session(netns) as ipr:
            ipr.link("set", index=index(ipr, tmp), ifname=name)
    finally:
        os.close(fd)


def probe_sublink(kind: str, parent: str, mode: str) -> None:
    """Make and delete a ``kind`` link on ``parent`` (in this namespace): raises InvalidParameter, with
    the kernel's words, when the kernel has no such link type or refuses the mode."""
    with session() as ipr:
        idx = _add_sublink(ipr, kind, parent, f"bp{os.urandom(4).hex()}", mode)
        with contextlib.suppress(Exception):
            ipr.link("del", index=idx)


def add_vlan(parent: str, vid: int) -> str:
    """``parent.vid``, an 802.1q sub-interface, up; returns its name."""
    name = f"{parent}.{vid}"
    with session() as ipr:
        p = index(ipr, parent)
        if p is None:
            raise NotFound(f"parent interface {parent} does not exist")
        if index(ipr, name) is None:
            try:
                ipr.link("add", ifname=name, kind="vlan", link=p, vlan_id=vid)
            except Exception as exc:  # noqa: BLE001
                raise _error(f"creating VLAN link {name}", exc) from None
        ipr.link("set", index=index(ipr, name), state="up")
    return name


def configure(netns: str, ifname: str, addrs: list[Iface], gateways: list[str], mac: str | None = None,
              default_route: bool = True, device_route: bool = False, sock: socket.socket | None = None,
              mac_set: bool = False, lo_up: bool = False) -> str:
    """Inside ``netns``: ``lo`` up; ``ifname`` gets ``addrs`` (and ``mac``), goes up; default routes via
    ``gateways`` (or, with no gateway, through the link). Returns the link's MAC address."""
    with session(netns, sock) as ipr:
        if not lo_up:
            ipr.link("set", index=1, state="up")  # lo is index 1 in every namespace
        idx = index(ipr, ifname)
        if idx is None:
            raise NotFound(f"{ifname} is not in the container's namespace")
        if mac and not mac_set:
            ipr.link("set", index=idx, address=mac)
        for a in addrs:
            kw: dict[str, Any] = {}
            if a.version == 6:
                kw["flags"] = 0x02  # IFA_F_NODAD: usable at once
            try:
                ipr.addr("add", index=idx, address=str(a.ip), prefixlen=a.network.prefixlen, **kw)
            except Exception as exc:  # noqa: BLE001
                raise _error(f"adding address {a}", exc) from None
        ipr.link("set", index=idx, state="up")
        if default_route:
            for gw in gateways:
                family = 10 if ":" in gw else 2
                dst = "::/0" if family == 10 else "0.0.0.0/0"
                with contextlib.suppress(Exception):
                    ipr.route("replace", dst=dst, gateway=gw, oif=idx, family=family)
            if device_route:
                for family in sorted({a.version for a in addrs}):
                    with contextlib.suppress(Exception):
                        ipr.route("replace", dst="0.0.0.0/0" if family == 4 else "::/0", oif=idx,
                                  family=2 if family == 4 else 10)
        if mac:
            return mac
        link = ipr.get_links(idx)[0]
        return str(link.get_attr("IFLA_ADDRESS"))


def link_names(netns: str | None = None) -> list[str]:
    with session(netns) as ipr:
        return [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]


def write_sysctl(key: str, value: str) -> bool:
    """Write /proc/sys/<key> (dots or slashes); False when it does not exist."""
    path = "/proc/sys/" + key.replace(".", "/") if "/" not in key else "/proc/sys/" + key
    try:
        with open(path) as f:
            if f.read().strip() == value:
                return True
        with open(path, "w") as f:
            f.write(value)
        return True
    except FileNotFoundError:
        return False
