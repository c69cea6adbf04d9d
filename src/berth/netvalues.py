"""Typed network values for what reaches a firewall rule or a socket: ports, protocols, addresses and
interface names, each parsed once at the boundary (a request, an image config, a database row).

The nft script is rendered from these types only: an image whose ``ExposedPorts`` says
``"80/tcp\\nflush ruleset"`` is refused here with a 400, it never becomes text in a ruleset.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal, cast

from berth.errors import InvalidParameter

Proto = Literal["tcp", "udp", "sctp"]
PROTOCOLS: tuple[Proto, ...] = ("tcp", "udp", "sctp")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Linux allows more in an interface name; berth accepts what is safe in every context it is used in
# (nft strings, sysfs paths, command lines): at most 15 bytes of letters, digits, '_', '.', '-'.
_IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")


def parse_proto(text: str) -> Proto:
    proto = (text or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidParameter(f"invalid proto: {text!r}")
    return cast(Proto, proto)


def parse_port(value: object, what: str = "port") -> int:
    """A port number 1-65535, from an int or a string of digits."""
    if isinstance(value, bool):
        raise InvalidParameter(f"invalid {what}: {value!r}")
    if isinstance(value, int):
        port = value
    elif isinstance(value, str) and value.isdigit() and value.isascii() and len(value) <= 5:
        port = int(value)
    else:
        raise InvalidParameter(f"invalid {what}: {value!r}")
    if not 1 <= port <= 65535:
        raise InvalidParameter(f"invalid {what}: {value!r}: must be between 1 and 65535")
    return port


@dataclass(frozen=True, slots=True)
class PortKey:
    """An ``ExposedPorts`` / ``PortBindings`` key: "80", "80/tcp", "53/udp"."""

    port: int
    proto: Proto

    def __str__(self) -> str:
        return f"{self.port}/{self.proto}"


def parse_port_key(key: object) -> PortKey:
    if not isinstance(key, str):
        raise InvalidParameter(f"invalid port specification: {key!r}")
    port, sep, proto = key.partition("/")
    try:
        return PortKey(parse_port(port), parse_proto(proto) if sep else "tcp")
    except InvalidParameter:
        raise InvalidParameter(f"invalid port specification: {key!r}") from None


def parse_ip(text: object, what: str = "IP address") -> IPAddress:
    """An address without an IPv6 scope (``%zone`` is free text that ``ipaddress`` keeps and prints)."""
    if not isinstance(text, str) or "%" in text:
        raise InvalidParameter(f"invalid {what}: {text!r}")
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        raise InvalidParameter(f"invalid {what}: {text!r}") from None


def parse_ifname(name: object, what: str = "interface name") -> str:
    if not isinstance(name, str) or not _IFNAME.fullmatch(name) or name in (".", ".."):
        raise InvalidParameter(f"invalid {what} {name!r}: use at most 15 letters, digits, '_', '.' or '-'")
    return name


def parse_host_port(text: object) -> tuple[int, int]:
    """A HostPort: "" (any), "8080", or a range "8000-8010": (first, last), (0, 0) for any."""
    if text in (None, "", "0", 0):
        return 0, 0
    if not isinstance(text, (str, int)) or isinstance(text, bool):
        raise InvalidParameter(f"invalid port specification: {text!r}")
    lo, sep, hi = str(text).partition("-")
    try:
        first = parse_port(lo, "host port")
        last = parse_port(hi, "host port") if sep else first
    except InvalidParameter:
        raise InvalidParameter(f"invalid port specification: {text!r}") from None
    if last < first:
        raise InvalidParameter(f"invalid port range: {text!r}")
    return first, last
