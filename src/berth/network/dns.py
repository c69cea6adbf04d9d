"""The embedded DNS resolver of user-defined networks (dockerd's 127.0.0.11).

One UDP socket per container, bound to 127.0.0.11:53 inside the container's network namespace (the
socket is opened there by a thread that entered it, then served by berthd's event loop). A question
for a name berth knows (container names, network aliases, ``--link`` aliases, short IDs, hostnames
on the same networks) is answered from berth's state; anything else is forwarded, unchanged, to the
host's resolvers, and their answer is passed back unchanged.

Only the wire format needed for that is here: parse the question, build an answer of A/AAAA records.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

A, AAAA, ANY = 1, 28, 255
TTL = 600
ADDRESS = "127.0.0.11"


@dataclass
class Question:
    id: int
    flags: int
    name: str  # lower case, no trailing dot
    qtype: int
    qclass: int
    end: int  # offset after the question section


def parse(data: bytes) -> Question | None:
    """The first question of a query, or None when it is not a well-formed standard query."""
    if len(data) < 12:
        return None
    qid, flags, qd = struct.unpack_from("!HHH", data)
    if flags & 0x8000 or (flags >> 11) & 0xF != 0 or qd < 1:
        return None
    labels, i = [], 12
    while True:
        if i >= len(data):
            return None
        n = data[i]
        i += 1
        if n == 0:
            break
        if n & 0xC0 or i + n > len(data):
            return None
        labels.append(data[i:i + n].decode("ascii", "replace"))
        i += n
    if i + 4 > len(data):
        return None
    qtype, qclass = struct.unpack_from("!HH", data, i)
    return Question(qid, flags, ".".join(labels).lower().rstrip("."), qtype, qclass, i + 4)


def answer(data: bytes, q: Question, addrs: list[str], rcode: int = 0) -> bytes:
    """A response to ``data`` (its first question only) with A/AAAA records for ``addrs``."""
    records = []
    for a in addrs:
        ip = ipaddress.ip_address(a)
        rtype = A if ip.version == 4 else AAAA
        if q.qtype not in (rtype, ANY):
            continue
        records.append(struct.pack("!HHHIH", 0xC00C, rtype, 1, TTL, len(ip.packed)) + ip.packed)
    flags = 0x8000 | 0x0400 | (q.flags & 0x0100) | 0x0080 | rcode  # QR, AA, RD copied, RA
    header = struct.pack("!HHHHHH", q.id, flags, 1, len(records), 0, 0)
    return header + data[12:q.end] + b"".join(records)


Lookup = Callable[[str, int], "list[str] | None"]


# Bounds, per container: a container that floods its resolver slows only its own answers.
MAX_IN_FLIGHT = 64  # questions being answered (forwarded ones wait for an upstream) at once
MAX_TCP_CLIENTS = 16
RATE = 500.0  # questions per second, on average...
BURST = 1000.0  # ...with bursts up to this many; beyond, UDP questions are dropped (resolvers retry)


class _Bucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: set[asyncio.Task[None]] = set()
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(self.pending) >= MAX_IN_FLIGHT or not self.server.bucket.take():
            self.dropped += 1
            return
        task = asyncio.ensure_future(self.server.handle(data, addr, self))
        self.pending.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self.pending.discard)


class Server:
    """Answers one container's questions, over UDP and TCP. ``lookup(name, qtype)`` returns its
    addresses (an empty list for a name berth knows without an address of that family) or None to
    forward."""

    def __init__(self, lookup: Lookup, upstreams: Callable[[], list[str]]) -> None:
        self.lookup = lookup
        self.upstreams = upstreams  # [] answers SERVFAIL for names berth does not know (internal networks)
        self.bucket = _Bucket(RATE, BURST)
        self._proto: _Protocol | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._tcp_clients = 0

    async def serve(self, socks: tuple[socket.socket, socket.socket]) -> None:
        udp, tcp = socks
        loop = asyncio.get_running_loop()
        udp.setblocking(False)
        _, proto = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=udp)
        self._proto = proto
        tcp.setblocking(False)
        self._tcp = await asyncio.start_server(self._tcp_client, sock=tcp)

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None

    async def answer_for(self, data: bytes, tcp: bool = False) -> bytes | None:
        q = parse(data)
        if q is None:
            return None
        found = self.lookup(q.name, q.qtype) if q.qclass == 1 else None
        if found is not None:
            return answer(data, q, found)
        reply = await (forward_tcp(data, self.upstreams()) if tcp else forward(data, self.upstreams()))
        return reply if reply is not None else answer(data, q, [], rcode=2)

    async def handle(self, data: bytes, addr: tuple[str, int], proto: _Protocol) -> None:
        reply = await self.answer_for(data)
        if reply is not None and proto.transport is not None:
            proto.transport.sendto(reply, addr)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """DNS over TCP (RFC 1035 4.2.2): two-byte lengths before each message; resolvers use it when
        a UDP answer came back truncated."""
        if self._tcp_clients >= MAX_TCP_CLIENTS:
            writer.close()
            return
        self._tcp_clients += 1
        try:
            while True:
                size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 30))[0]
                data = await asyncio.wait_for(reader.readexactly(size), 30)
                if not self.bucket.take():
                    break
                reply = await self.answer_for(data, tcp=True)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await asyncio.wait_for(writer.drain(), 30)
        except (asyncio.IncompleteReadError, TimeoutError, OSError):
            pass
        finally:
            self._tcp_clients -= 1
            writer.close()


async def forward(data: bytes, servers: list[str], timeout: float = 3.0) -> bytes | None:
    """Ask each upstream in turn (UDP); the first answer with the same ID wins."""
    loop = asyncio.get_running_loop()
    for server in servers:
        try:
            ip = ipaddress.ip_address(server)
        except ValueError:
            continue
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            await loop.sock_connect(sock, (server, 53))
            await loop.sock_sendall(sock, data)
            deadline = loop.time() + timeout
            while (left := deadline - loop.time()) > 0:
                reply = await asyncio.wait_for(loop.sock_recv(sock, 65535), left)
                if reply[:2] == data[:2]:
                    return reply
        except (TimeoutError, OSError):
            continue
        finally:
            sock.close()
    return None


async def forward_tcp(data: bytes, servers: list[str], timeout: float = 5.0) -> bytes | None:
    """Ask each upstream in turn over TCP (for answers too large for UDP)."""
    for server in servers:
        try:
            ipaddress.ip_address(server)
            reader, writer = await asyncio.wait_for(asyncio.open_connection(server, 53), timeout)
        except (ValueError, OSError, TimeoutError):
            continue
        try:
            writer.write(struct.pack("!H", len(data)) + data)
            await writer.drain()
            size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), timeout))[0]
            reply = await asyncio.wait_for(reader.readexactly(size), timeout)
            if reply[:2] == data[:2]:
                return reply
        except (asyncio.IncompleteReadError, OSError, TimeoutError):
            continue
        finally:
            writer.close()
    return None


def open_sockets() -> tuple[socket.socket, socket.socket]:
    """UDP and TCP sockets on 127.0.0.11:53 in the calling thread's network namespace (``lo`` must be
    up: bound before, with IP_FREEBIND, UDP replies would leave from 127.0.0.1 and resolvers would
    drop them)."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        for s in (udp, tcp):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((ADDRESS, 53))
        tcp.listen(16)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


def host_resolvers(path: str = "/etc/resolv.conf") -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of a resolv.conf."""
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if not parts or parts[0].startswith(("#", ";")):
                    continue
                if parts[0] == "nameserver" and len(parts) > 1:
                    servers.append(parts[1].split("%")[0])
                elif parts[0] in ("search", "domain"):
                    search = parts[1:]
                elif parts[0] == "options":
                    options += parts[1:]
    except OSError:
        pass
    return servers, search, options
