"""Test networks for the network attacks: a berthd inside a network namespace of the test's own (its
bridges, nft tables and sysctls are that namespace's, never the host's), a "LAN host" namespace
joined to it by a veth pair, and helpers that listen and send (raw frames included) from inside
those namespaces. Traffic never leaves the namespaces the test made."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from tests.lib.cleanup import Cleanup

RAW_SENDER = r"""
import socket, struct, sys
ifname, dst_mac, src_ip, dst_ip, dport, payload = sys.argv[1:7]
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
data = payload.encode()
udp = struct.pack("!HHHH", 40000, int(dport), 8 + len(data), 0) + data
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
src_mac = s.getsockname()[4]
for _ in range(3):
    s.send(bytes.fromhex(dst_mac.replace(":", "")) + src_mac + b"\x08\x00" + ip + udp)
"""

UDP_LISTENER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(65535)
    print(repr(data), addr[0], flush=True)
"""

UDP_SENDER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3):
    s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
"""


def require_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    for tool in ("ip", "nsenter", "nft"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            pytest.skip(f"needs {tool}")


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {r.stderr}")
    return r


def make_netns(cleanup: Cleanup, tag: str) -> str:
    name = f"bsec-{tag}-{secrets.token_hex(3)}"
    sh("ip", "netns", "add", name)
    cleanup.add(f"netns {name}", lambda: sh("ip", "netns", "del", name, check=False))
    sh("ip", "-n", name, "link", "set", "lo", "up")
    return name


def in_ns(ns_path: str, *argv: str) -> list[str]:
    return ["nsenter", f"--net={ns_path}", *argv]


def ns_path(name: str) -> str:
    return f"/run/netns/{name}"


def mac_of(ns: str, dev: str) -> str:
    out = sh(*in_ns(ns, "ip", "-j", "link", "show", "dev", dev)).stdout
    return str(json.loads(out)[0]["address"])


def addr_of(ns: str, dev: str) -> str:
    out = sh(*in_ns(ns, "ip", "-j", "-4", "addr", "show", "dev", dev)).stdout
    return str(json.loads(out)[0]["addr_info"][0]["local"])


@dataclass
class Listener:
    proc: subprocess.Popen[bytes]

    def received(self, settle: float = 0.5) -> str:
        """What arrived so far (reads until nothing more comes for ``settle`` seconds)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        os.set_blocking(fd, False)
        got, quiet_since = b"", time.monotonic()
        while time.monotonic() - quiet_since < settle:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                chunk = b""
            if chunk:
                got += chunk
                quiet_since = time.monotonic()
            else:
                time.sleep(0.05)
        return got.decode(errors="replace")


def udp_listener(cleanup: Cleanup, ns: str, host: str, port: int) -> Listener:
    """A UDP service bound in the namespace ``ns`` (a path): the host's, a container's, or a LAN host's."""
    proc = subprocess.Popen(in_ns(ns, sys.executable, "-u", "-c", UDP_LISTENER, host, str(port)),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    cleanup.process(proc, f"udp listener {host}:{port}")
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return Listener(proc)


def send_udp(ns: str, host: str, port: int, payload: str) -> None:
    sh(*in_ns(ns, sys.executable, "-c", UDP_SENDER, host, str(port), payload))


def send_raw_udp(ns: str, ifname: str, dst_mac: str, src_ip: str, dst_ip: str, port: int, payload: str) -> None:
    """A UDP datagram in a hand-made Ethernet frame: what a process with CAP_NET_RAW can send."""
    sh(*in_ns(ns, sys.executable, "-c", RAW_SENDER, ifname, dst_mac, src_ip, dst_ip, str(port), payload))
