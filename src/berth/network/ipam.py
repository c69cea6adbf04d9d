"""Address management, pure: subnets asked for, subnets chosen from pools, addresses given out.

Nothing here touches the kernel or the database: the callers pass what the host already uses (its
routes and addresses) and what is already allocated, and store the answers.

- ``parse_pools`` validates ``--subnet/--ip-range/--gateway/--aux-address`` as dockerd does.
- ``choose_subnet`` walks the address pools (``default-address-pools``) and returns the first subnet
  that overlaps neither another berth network nor anything routed or addressed on the host.
- ``allocate`` gives the lowest free address of the range (or the one asked for, if it is free).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from berth.errors import Forbidden, InvalidParameter

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

# dockerd's built-in default-address-pools
DEFAULT_POOLS: list[tuple[str, int]] = [(f"172.{n}.0.0/16", 16) for n in range(17, 32)] + [("192.168.0.0/16", 20)]


@dataclass
class Pool:
    subnet: Net
    ip_range: Net | None = None
    gateway: Addr | None = None
    aux: dict[str, Addr] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Subnet": str(self.subnet)}
        if self.ip_range is not None:
            out["IPRange"] = str(self.ip_range)
        if self.gateway is not None:
            out["Gateway"] = str(self.gateway)
        if self.aux:
            out["AuxiliaryAddresses"] = {k: str(v) for k, v in self.aux.items()}
        return out

    @classmethod
    def from_view(cls, v: dict[str, Any]) -> Pool:
        return cls(ipaddress.ip_network(v["Subnet"]),
                   ipaddress.ip_network(v["IPRange"]) if v.get("IPRange") else None,
                   ipaddress.ip_address(v["Gateway"]) if v.get("Gateway") else None,
                   {k: ipaddress.ip_address(a) for k, a in (v.get("AuxiliaryAddresses") or {}).items()})

    def reserved(self) -> set[Addr]:
        """Addresses never given to a container: the subnet's own address (and broadcast, IPv4), the
        gateway, the auxiliary addresses."""
        out: set[Addr] = {self.subnet.network_address}
        if self.subnet.version == 4 and self.subnet.prefixlen < 31:
            out.add(self.subnet.broadcast_address)
        if self.gateway is not None:
            out.add(self.gateway)
        out.update(self.aux.values())
        return out


def parse_network(text: str) -> Net:
    """A CIDR; host bits are allowed (10.0.0.5/24 means 10.0.0.0/24), as dockerd allows them."""
    if not isinstance(text, str) or "%" in text:  # no IPv6 scope: free text ipaddress would print back
        raise InvalidParameter(f"invalid CIDR address: {text!r}")
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidParameter(f"invalid CIDR address: {text}") from None
    if "/" not in text:
        raise InvalidParameter(f"invalid CIDR address: {text}")
    return net


def parse_addr(text: str, what: str) -> Addr:
    if not isinstance(text, str) or "%" in text:
        raise InvalidParameter(f"invalid {what} address: {text!r}")
    try:
        return ipaddress.ip_address(text.split("/")[0])
    except ValueError:
        raise InvalidParameter(f"invalid {what} address: {text}") from None


def parse_pools(configs: Iterable[dict[str, Any]]) -> list[Pool]:
    """IPAM.Config entries of a network create request, validated."""
    pools: list[Pool] = []
    for c in configs:
        if not isinstance(c, dict):
            raise InvalidParameter("IPAM.Config entries must be objects")
        if not c.get("Subnet"):
            if c.get("IPRange") or c.get("Gateway"):
                raise InvalidParameter("an ip-range or a gateway needs a subnet")
            continue
        subnet = parse_network(c["Subnet"])
        pool = Pool(subnet)
        if c.get("IPRange"):
            rng = parse_network(c["IPRange"])
            if rng.version != subnet.version or not rng.subnet_of(subnet):  # type: ignore[arg-type]
                raise InvalidParameter(f"no matching subnet for range {c['IPRange']}")
            pool.ip_range = rng
        if c.get("Gateway"):
            gw = parse_addr(c["Gateway"], "gateway")
            if gw not in subnet:
                raise InvalidParameter(f"no matching subnet for gateway {c['Gateway']}")
            pool.gateway = gw
        aux = c.get("AuxiliaryAddresses") or c.get("AuxAddress") or {}
        if not isinstance(aux, dict):
            raise InvalidParameter("IPAM.Config.AuxiliaryAddresses must map names to addresses")
        for name, text in aux.items():
            addr = parse_addr(text, "auxiliary")
            if addr not in subnet:
                raise InvalidParameter(f"no matching subnet for aux-address {text}")
            pool.aux[name] = addr
        for other in pools:
            if other.subnet.version == subnet.version and other.subnet.overlaps(subnet):
                raise InvalidParameter(f"multiple overlapping subnet configuration is not allowed: {subnet}")
        pools.append(pool)
    return pools


def parse_address_pools(entries: Iterable[Any]) -> list[tuple[str, int]]:
    """``default-address-pools``: daemon.json objects {"base", "size"} or flag strings "base=…,size=…"."""
    out: list[tuple[str, int]] = []
    for e in entries:
        if isinstance(e, str):
            fields = dict(part.split("=", 1) for part in e.split(",") if "=" in part)
        elif isinstance(e, dict):
            fields = e
        else:
            raise InvalidParameter(f"invalid default address pool: {e!r}")
        try:
            base = ipaddress.ip_network(str(fields["base"]), strict=False)
            size = int(fields["size"])
        except (KeyError, ValueError):
            raise InvalidParameter(f"invalid default address pool {e!r}: it needs base=CIDR and size=N") from None
        if size < base.prefixlen or size > base.max_prefixlen:
            raise InvalidParameter(f"invalid default address pool {e!r}: size {size} does not fit base {base}")
        out.append((str(base), size))
    return out


def choose_subnet(pools: Iterable[tuple[str, int]], taken: Iterable[Net], version: int = 4) -> Net | None:
    """The first subnet of the pools that overlaps nothing in ``taken``."""
    taken = [t for t in taken if t.version == version]
    for base_text, size in pools:
        base = ipaddress.ip_network(base_text, strict=False)
        if base.version != version:
            continue
        for candidate in base.subnets(new_prefix=size):
            if not any(candidate.overlaps(t) for t in taken):
                return candidate
    return None


def check_overlap(pools: Iterable[Pool], in_use: Iterable[Net]) -> None:
    """A network's asked-for subnets may not overlap another network's (dockerd's words)."""
    in_use = list(in_use)
    for p in pools:
        for other in in_use:
            if other.version == p.subnet.version and other.overlaps(p.subnet):
                raise Forbidden("invalid pool request: Pool overlaps with other one on this address space")


def first_host(net: Net) -> Addr:
    return net.network_address + 1 if net.num_addresses > 2 else net.network_address


def allocate(pool: Pool, used: set[Addr], want: Addr | None = None, within: Net | None = None) -> Addr:
    """An address of ``pool`` not in ``used``: ``want`` if given, else the lowest free one of ``within``
    (or of the pool's ip-range, or of the subnet)."""
    reserved = pool.reserved() | used
    if want is not None:
        if want not in pool.subnet:
            raise InvalidParameter(f"Invalid address {want}: It does not belong to any of this network's subnets")
        if want in reserved:
            raise Forbidden(f"Address already in use: {want}")
        return want
    space = within or pool.ip_range or pool.subnet
    for addr in space:
        if addr not in reserved:
            return addr
    raise Forbidden(f"no available IPv{space.version} addresses on this network's address pools: {space}")
