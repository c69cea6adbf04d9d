"""What the network tests share: a daemon with a bridge of its own on the host (``start``), the
docker CLI and docker-py against it, the host's links and ruleset, veth parents in namespaces of the
test's own, a fake upstream resolver on 127.0.0.1:53.

Network safety: traffic goes only to loopback, to the bridges these tests make and to namespaces they
make; containers get ``--dns 127.0.0.1`` so no question can reach an outside server.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
import time
import urllib.request

import docker

from tests.lib import rawhttp
from tests.lib.cleanup import Cleanup
from tests.lib.clis import docker as docker_cli
from tests.lib.daemon import Berthd
from tests.lib.images import busybox_rootfs_tar

HTTPD = ["sh", "-c", "mkdir -p /www && echo hello-from-httpd > /www/index.html && busybox httpd -f -p 80 -h /www"]


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def nft_ruleset() -> str:
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout


def drop_tables() -> None:
    for fam in ("ip", "ip6"):
        subprocess.run(["nft", "delete", "table", fam, "berth"], capture_output=True)


def start(env: dict[str, object], args: list[str] | None = None, config: dict | None = None) -> Berthd:
    bridge = "bt" + os.urandom(3).hex()
    d = Berthd(network=True, args=["-b", bridge, *(args or [])],
               config={"dns": ["127.0.0.1"], **(config or {})})
    env.setdefault("daemons", []).append(d)  # type: ignore[attr-defined]
    d.start()
    d.bridge = bridge  # type: ignore[attr-defined]
    r = rawhttp.request(d.sock, "POST", "/images/create?fromSrc=-&repo=bb&tag=latest", body=busybox_rootfs_tar())
    assert r.status == 200, r.body
    return d


def dk(d: Berthd, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return docker_cli("-H", d.url, *args, **kw)


def ok(d: Berthd, *args: str) -> str:
    r = dk(d, *args)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def api(d: Berthd) -> docker.APIClient:
    return docker.APIClient(base_url=d.url, version="1.47", timeout=60)


def addr_of(d: Berthd, name: str, net: str) -> str:
    return str(api(d).inspect_container(name)["NetworkSettings"]["Networks"][net]["IPAddress"])


def http_get(url: str) -> str:
    for _ in range(50):
        try:
            return urllib.request.urlopen(url, timeout=3).read().decode()
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def veth_parent(env: dict[str, object], peer_addr: str) -> str:
    """A veth pair: one end on the host (the parent), the other in a test namespace with ``peer_addr``."""
    tag = os.urandom(2).hex()
    host_end, ns_end, ns = f"bmv{tag}", f"bmp{tag}", f"bmns{tag}"
    cleanup: Cleanup = env["cleanup"]  # type: ignore[assignment]
    subprocess.run(["ip", "netns", "add", cleanup.netns(ns)], check=True)
    subprocess.run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end, "netns", ns], check=True)
    subprocess.run(["ip", "link", "set", host_end, "up"], check=True)
    subprocess.run(["ip", "-n", ns, "addr", "add", peer_addr, "dev", ns_end], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", ns_end, "up"], check=True)
    return host_end


def kernel_has(kind: str, *extra: str) -> bool:
    probe = "btprobe" + os.urandom(2).hex()
    host = links()
    parent = next(iter(sorted(n for n in host if n.startswith("bmv"))), None)
    if parent is None:
        return False
    r = subprocess.run(["ip", "link", "add", "link", parent, "name", probe, "type", kind, *extra],
                       capture_output=True, text=True)
    subprocess.run(["ip", "link", "del", probe], capture_output=True)
    return r.returncode == 0


def fake_dns(stop: threading.Event, sock: socket.socket) -> None:
    """Answers every A question with 10.9.9.9 (an upstream resolver on 127.0.0.1:53)."""
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            data, addr = sock.recvfrom(512)
        except OSError:
            continue
        qend = 12
        while data[qend] != 0:
            qend += data[qend] + 1
        qend += 5
        qtype = struct.unpack_from("!H", data, qend - 4)[0]
        answers = struct.pack("!HHHIH4s", 0xC00C, 1, 1, 60, 4, bytes([10, 9, 9, 9])) if qtype == 1 else b""
        header = struct.pack("!HHHHHH", struct.unpack_from("!H", data)[0], 0x8180, 1, 1 if answers else 0, 0, 0)
        sock.sendto(header + data[12:qend] + answers, addr)


def key_paths(value: object, prefix: str = "") -> set[str]:
    """Every key path of a JSON value (list items merged), for shape comparisons."""
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if prefix.endswith(("Containers", "Networks", "Ports", "Options", "Labels")):
                k = "*"  # IDs, names, ports: the shape below them matters, not the key
            out.add(prefix + "." + k)
            out |= key_paths(v, prefix + "." + k)
    elif isinstance(value, list):
        for v in value:
            out |= key_paths(v, prefix + "[]")
    return out
