"""Connection storms: memory per idle connection, whether the daemon gives that memory back once the
connections close, and whether it runs containers as fast after the storm as before it.

For each daemon: RSS idle; RSS with N idle unix connections open (each sent one /_ping, then left
open: what a pool of keep-alive clients looks like); RSS 5 s after they all closed; containers per
second (create+start+wait+rm, 4 clients) before and after the storm.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import run
from containers import parallel_lifecycle, rootfs_tar
from run import DOCKER, Daemon


def _rss_mib(d: Daemon) -> float:
    return d.rss_kib() / 1024


def storm(sock: str, n: int) -> list[socket.socket]:
    conns = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock)
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: b\r\n\r\n")
        conns.append(s)
    for s in conns:
        s.settimeout(10)
        s.recv(4096)
    return conns


def main(n: int = 5000) -> dict[str, dict[str, float]]:
    if DOCKER is None:
        print("docker CLI missing: skipping the connection benchmark", file=sys.stderr)
        return {}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    n = min(n, hard - 512)
    kinds = run.kinds()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = tempfile.mkdtemp(prefix="berth-bench-cfg-")
    out: dict[str, dict[str, float]] = {"idle RSS before the storm (MiB)": {}, f"RSS, {n} idle conns (KiB/conn)": {},
                                        "RSS 5 s after they closed (MiB)": {}, "ctr/s, fresh daemon": {},
                                        "ctr/s after the storm": {}}
    try:
        for k in kinds:
            d = Daemon(k)
            try:
                d.start()
                subprocess.run([DOCKER, "-H", f"unix://{d.sock}", "import", "-", "bb:latest"], input=rootfs_tar(),
                               check=True, capture_output=True, env=env)
                out["ctr/s, fresh daemon"][k] = parallel_lifecycle(d.sock, 40, 4)
                time.sleep(1)
                before = _rss_mib(d)
                conns = storm(d.sock, n)
                time.sleep(1)
                held = _rss_mib(d)
                for s in conns:
                    s.close()
                time.sleep(5)
                after = _rss_mib(d)
                out["idle RSS before the storm (MiB)"][k] = before
                out[f"RSS, {n} idle conns (KiB/conn)"][k] = (held - before) * 1024 / n
                out["RSS 5 s after they closed (MiB)"][k] = after
                out["ctr/s after the storm"][k] = parallel_lifecycle(d.sock, 40, 4)
            finally:
                d.remove()
    finally:
        shutil.rmtree(env["DOCKER_CONFIG"], ignore_errors=True)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return out


if __name__ == "__main__":
    print(main())
