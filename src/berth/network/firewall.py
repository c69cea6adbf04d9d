"""nftables, only in berth's own tables: ``table ip berth`` and ``table ip6 berth``.

The whole of each table is written from berth's state in one ``nft -f`` transaction (create the
table if missing, delete it, declare it again): the kernel swaps it atomically, berth never reads,
flushes or edits a rule it did not write, and a table left by a crash is replaced at the next change.
``NullFirewall`` (``iptables: false``) writes nothing, ever.

The script is rendered from typed values only (``ipaddress`` objects, ports as ints, protocols from
a closed set, interface names checked by ``ports.parse_ifname``): ``BridgeRules`` and ``PortRule``
refuse anything else when they are made, so no text from a request, an image or a database row can
become a rule.

Per bridge network:
- masquerade of its subnets towards other interfaces (``ip-masq``, per network
  ``com.docker.network.bridge.enable_ip_masquerade``);
- isolation from the other berth bridges, except for connections to a published port (dockerd drops
  those too; berth lets them through, as its ports are published in the kernel and not by a proxy);
- direct routing refused: a new connection from outside the bridge reaches a container only through
  a published port (DNAT), so a host on the LAN that routes the bridge's subnet to this host cannot
  reach unpublished ports (Docker 28's fix);
- ``internal``: nothing in or out but its own bridge; ``enable_icc=false``: nothing between its containers.
Per published port: a DNAT for packets to a local address (from outside, from the host itself,
127.0.0.1 included, and from containers: hairpin), and a masquerade for connections that leave on the
bridge they came from, or that came from 127.0.0.0/8.

Loopback guard: berth's bridges have ``route_localnet=1`` (so a port published on 127.0.0.1 works
from the host), which would also let a container with CAP_NET_RAW, or a host on the LAN, send
packets addressed to 127.0.0.1 and reach services bound there (the CVE-2020-8558 class). The
``guard`` chain, at raw priority, drops every packet addressed to 127.0.0.0/8 (and ::1) that arrives
on an interface other than ``lo`` before anything else sees it.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from dataclasses import dataclass, field

from berth.errors import System
from berth.netvalues import IPAddress, IPNetwork, Proto, parse_ifname, parse_port, parse_proto

TABLE = "berth"


@dataclass(frozen=True)
class BridgeRules:
    device: str
    subnets: tuple[IPNetwork, ...]
    masquerade: bool = True
    icc: bool = True
    internal: bool = False

    def __post_init__(self) -> None:
        parse_ifname(self.device, "bridge name")
        for s in self.subnets:
            if not isinstance(s, (ipaddress.IPv4Network, ipaddress.IPv6Network)) or "%" in str(s):
                raise TypeError(f"subnet {s!r} is not an ip_network without a scope")

    @classmethod
    def parse(cls, device: str, subnets: list[str], **kw: bool) -> BridgeRules:
        return cls(device, tuple(ipaddress.ip_network(s) for s in subnets), **kw)


@dataclass(frozen=True)
class PortRule:
    proto: Proto
    host_ip: IPAddress | None  # None: every local address
    host_port: int
    container_ip: IPAddress
    container_port: int
    device: str

    def __post_init__(self) -> None:
        parse_proto(self.proto)
        parse_port(self.host_port, "host port")
        parse_port(self.container_port, "container port")
        parse_ifname(self.device, "bridge name")
        for a in (self.host_ip, self.container_ip):
            if a is not None and (not isinstance(a, (ipaddress.IPv4Address, ipaddress.IPv6Address)) or "%" in str(a)):
                raise TypeError(f"address {a!r} is not an ip_address without a scope")
        if self.host_ip is not None and self.host_ip.version != self.container_ip.version:
            raise TypeError(f"host address {self.host_ip} and container address {self.container_ip} differ in family")

    @classmethod
    def parse(cls, proto: str, host_ip: str, host_port: int, container_ip: str, container_port: int,
              device: str) -> PortRule:
        if "%" in host_ip or "%" in container_ip:
            raise ValueError("an address with an IPv6 scope")
        hip = ipaddress.ip_address(host_ip) if host_ip else None
        if hip is not None and hip.is_unspecified:
            hip = None
        return cls(parse_proto(proto), hip, host_port, ipaddress.ip_address(container_ip), container_port, device)


@dataclass
class Ruleset:
    bridges: list[BridgeRules] = field(default_factory=list)
    ports: list[PortRule] = field(default_factory=list)
    guard_forward: bool = False  # berth turned ip_forward on: do not route what is not berth's


def _q(name: str) -> str:
    return '"' + parse_ifname(name) + '"'


def render(rs: Ruleset, family: str) -> str:
    """The ``nft -f`` script that replaces berth's table of ``family`` (ip or ip6)."""
    version = 4 if family == "ip" else 6
    ipkw = "ip" if version == 4 else "ip6"
    bridges = [b for b in rs.bridges if any(s.version == version for s in b.subnets)]
    ports = [p for p in rs.ports if p.container_ip.version == version]
    lines = [f"table {family} {TABLE}", f"delete table {family} {TABLE}"]
    if not bridges and not ports:
        return "\n".join(lines) + "\n"
    loopback = "127.0.0.0/8" if version == 4 else "::1"
    lines.append(f"table {family} {TABLE} {{")
    lines += ["  chain guard {", "    type filter hook prerouting priority raw; policy accept;",
              f'    iifname != "lo" {ipkw} daddr {loopback} drop', "  }"]
    lines += ["  chain prerouting {", "    type nat hook prerouting priority dstnat; policy accept;",
              "    fib daddr type local jump publish", "  }",
              "  chain output {", "    type nat hook output priority -100; policy accept;",
              "    fib daddr type local jump publish", "  }",
              "  chain publish {"]
    for p in ports:
        match = f"{ipkw} daddr {p.host_ip} " if p.host_ip is not None else ""
        target = f"{p.container_ip}:{p.container_port}" if version == 4 else f"[{p.container_ip}]:{p.container_port}"
        lines.append(f"    {match}{p.proto} dport {p.host_port} dnat to {target}")
    lines += ["  }", "  chain postrouting {", "    type nat hook postrouting priority srcnat; policy accept;"]
    for b in bridges:
        dev = _q(b.device)
        if version == 4:
            lines.append(f"    oifname {dev} ip saddr 127.0.0.0/8 masquerade")
        lines.append(f"    oifname {dev} ct status dnat iifname {dev} masquerade")
        if b.masquerade and not b.internal:
            for s in b.subnets:
                if s.version == version:
                    lines.append(f"    {ipkw} saddr {s} oifname != {dev} masquerade")
    lines += ["  }", "  chain forward {", "    type filter hook forward priority filter; policy accept;"]
    devices = [b.device for b in bridges]
    for b in bridges:
        dev = _q(b.device)
        if b.internal:
            lines.append(f"    iifname {dev} oifname != {dev} drop")
            lines.append(f"    oifname {dev} iifname != {dev} drop")
        if not b.icc:
            lines.append(f"    iifname {dev} oifname {dev} drop")
    for a in devices:
        for b_ in devices:
            if a != b_:
                lines.append(f"    iifname {_q(a)} oifname {_q(b_)} ct status & dnat == 0 drop")
    for d in devices:
        lines.append(f"    oifname {_q(d)} iifname != {_q(d)} ct state new ct status & dnat == 0 drop")
    if rs.guard_forward and devices:
        names = "{ " + ", ".join(_q(d) for d in devices) + " }"
        lines.append(f"    iifname != {names} oifname != {names} drop")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


class Firewall:
    """Writes berth's tables with the ``nft`` command."""

    enabled = True

    def __init__(self, nft: str | None = None) -> None:
        self.nft = nft or shutil.which("nft") or "/usr/sbin/nft"

    def _apply(self, script: str) -> None:
        try:
            r = subprocess.run([self.nft, "-f", "-"], input=script, capture_output=True, text=True, timeout=30)
        except FileNotFoundError:
            raise System(f"nft not found ({self.nft}): install nftables, or start berthd with --iptables=false") from None
        except subprocess.TimeoutExpired:
            raise System("nft did not finish within 30 s") from None
        if r.returncode != 0:
            raise System(f"nft: {r.stderr.strip() or r.stdout.strip()}")

    def apply(self, rs: Ruleset, ipv6: bool) -> None:
        script = render(rs, "ip")
        if ipv6 or any(s.version == 6 for b in rs.bridges for s in b.subnets):
            script += render(rs, "ip6")
        self._apply(script)

    def remove(self) -> None:
        """Delete berth's tables (``berthd --cleanup-network``; the last network gone)."""
        self._apply("".join(f"table {f} {TABLE}\ndelete table {f} {TABLE}\n" for f in ("ip", "ip6")))


class NullFirewall(Firewall):
    """``iptables: false``: berth writes no rule at all."""

    enabled = False

    def apply(self, rs: Ruleset, ipv6: bool) -> None:
        return None

    def remove(self) -> None:
        return None
