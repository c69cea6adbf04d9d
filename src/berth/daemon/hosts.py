"""Daemon listen addresses (-H / "hosts"), parsed as dockerd parses them.

    unix://            → unix:///var/run/docker.sock
    unix:///path       → that path
    tcp://[HOST][:PORT] → HOST defaults to 127.0.0.1, PORT to 2375 (2376 with TLS)
    HOST:PORT          → tcp://HOST:PORT
    fd://              → every socket systemd passed; fd://N → the one at file descriptor N
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from berth.errors import InvalidParameter

DEFAULT_UNIX_SOCKET = "/var/run/docker.sock"
DEFAULT_HTTP_PORT = 2375
DEFAULT_TLS_PORT = 2376


@dataclass(frozen=True, slots=True)
class HostAddr:
    proto: str  # "unix" | "tcp" | "fd"
    address: str  # path, "host:port" (IPv6 in brackets), or fd spec ("" = all)
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        return f"{self.proto}://{self.address}"


def parse_host(text: str, tls: bool) -> HostAddr:
    """Parse one -H value; raises InvalidParameter naming the value when it is not an address."""
    raw = text.strip()
    if not raw:
        raise InvalidParameter("invalid bind address (empty)")
    if "://" not in raw:
        raw = "tcp://" + raw
    scheme, _, rest = raw.partition("://")
    scheme = scheme.lower()
    if scheme == "unix":
        path = rest or DEFAULT_UNIX_SOCKET
        if not path.startswith("/"):
            raise InvalidParameter(f"invalid bind address format: {text}: a unix socket path must be absolute")
        return HostAddr("unix", path)
    if scheme == "fd":
        if rest and not rest.isdigit():
            raise InvalidParameter(f"invalid bind address format: {text}: fd:// takes a file descriptor number")
        return HostAddr("fd", rest)
    if scheme == "tcp":
        try:
            u = urlsplit("//" + rest)
            port = u.port
        except ValueError as exc:
            raise InvalidParameter(f"invalid bind address format: {text}: {exc}") from None
        if u.path not in ("", "/") or u.query or u.fragment or u.username:
            raise InvalidParameter(f"invalid bind address format: {text}")
        host = u.hostname or "127.0.0.1"
        if port is None:
            if rest.rstrip("/").endswith(":"):
                raise InvalidParameter(f"invalid bind address format: {text}: missing port")
            port = DEFAULT_TLS_PORT if tls else DEFAULT_HTTP_PORT
        shown = f"[{host}]" if ":" in host else host
        return HostAddr("tcp", f"{shown}:{port}", host, port)
    raise InvalidParameter(f"invalid bind address format: {text}: unsupported protocol {scheme!r}")


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    addrs = {info[4][0] for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addrs)
