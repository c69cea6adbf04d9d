"""Networking, berthd vs dockerd, each on a bridge made for the benchmark (traffic: none leaves it):

- the wall time a bridge network adds to `docker run --rm IMG true` over `--network none` (real CLI,
  median of alternating runs);
- 200 containers (`sleep`) started on one user-defined bridge network by 8 clients: containers per
  second, and the machine's used memory per running container.

dockerd runs with ``-b`` on a bridge made here and ``--iptables=false`` (it would otherwise edit the
host's iptables; this favours dockerd, which then programs no rules); berthd with its defaults (its
own nft table). Bridges and berth's table are removed at the end, also on failure.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import run
from containers import _mem_used_kib, _settle, rootfs_tar
from run import DOCKER, DOCKERD, Daemon


def _bridge(name: str, cidr: str) -> None:
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", cidr, "dev", name], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)


def main(runs: int = 11, many: int = 200) -> dict[str, dict[str, float]]:
    if DOCKER is None:
        print("docker CLI missing: skipping the network benchmark", file=sys.stderr)
        return {}
    kinds = [k for k in run.kinds() if k != "baseline"]  # two berthds would share one nft table
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = tempfile.mkdtemp(prefix="berth-bench-cfg-")
    daemons = {"berthd": Daemon("berthd", net_args=["-b", "bbench0", "--bip", "10.197.0.1/24", "--dns", "127.0.0.1"])}
    if DOCKERD:
        _bridge("bdbench0", "10.196.0.1/24")
        daemons["dockerd"] = Daemon("dockerd", net_args=["-b", "bdbench0", "--dns", "127.0.0.1"])
    overhead: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        for d in daemons.values():
            d.start()
            subprocess.run([DOCKER, "-H", f"unix://{d.sock}", "import", "-", "bb:latest"], input=rootfs_tar(),
                           check=True, capture_output=True, env=env)
            for net in ("none", "bridge", "none", "bridge"):  # warm up
                subprocess.run([DOCKER, "-H", f"unix://{d.sock}", "run", "--rm", "--network", net, "bb", "true"],
                               check=True, capture_output=True, env=env)

        def once(k: str, net: str) -> float:
            t0 = time.perf_counter()
            subprocess.run([DOCKER, "-H", f"unix://{daemons[k].sock}", "run", "--rm", "--network", net, "bb", "true"],
                           check=True, capture_output=True, env=env)
            return time.perf_counter() - t0

        times: dict[tuple[str, str], list[float]] = {(k, n): [] for k in kinds for n in ("none", "bridge")}
        for i in range(runs):
            for k in (kinds if i % 2 == 0 else list(reversed(kinds))):
                for n in (("none", "bridge") if i % 2 == 0 else ("bridge", "none")):
                    times[(k, n)].append(once(k, n))
        for k in kinds:  # the difference of the medians: steadier than the median of differences
            overhead[k].append(statistics.median(times[(k, "bridge")]) - statistics.median(times[(k, "none")]))
            print(f"{k}: run --rm with a bridge {1000 * statistics.median(times[(k, 'bridge')]):.1f} ms, "
                  f"with none {1000 * statistics.median(times[(k, 'none')]):.1f} ms", file=sys.stderr)
        rate, mem = {}, {}
        for k in kinds:
            rate[k], mem[k] = many_on_one_network(daemons[k], many)
    finally:
        for d in daemons.values():
            d.remove()
        subprocess.run(["nft", "delete", "table", "ip", "berth"], capture_output=True)
        for name in ("bbench0", "bdbench0"):
            subprocess.run(["ip", "link", "del", name], capture_output=True)
        shutil.rmtree(env["DOCKER_CONFIG"], ignore_errors=True)
    return {"bridge overhead on run --rm (s)": {k: statistics.median(v) for k, v in overhead.items()},
            f"{many} ctrs on a bridge net (ctr/s)": rate,
            f"{many} ctrs on a bridge net, machine MiB/ctr": mem}


def many_on_one_network(d: Daemon, n: int, clients: int = 8) -> tuple[float, float]:
    """Start ``n`` containers on one user-defined bridge network with ``clients`` threads; return
    (containers started per second, MiB of the machine's memory per running container)."""
    import docker

    client = docker.APIClient(base_url=f"unix://{d.sock}", version="1.41", timeout=120)
    client.create_network("benchnet", driver="bridge", ipam=docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet="10.198.0.0/16")]))
    _settle()
    used0 = _mem_used_kib()
    ids: list[str] = []

    def one(_: int) -> str:
        cid = client.create_container("bb", ["sleep", "600"], host_config=client.create_host_config(
            network_mode="benchnet"))["Id"]
        client.start(cid)
        return str(cid)

    try:
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            ids.extend(pool.map(one, range(n)))
        rate = n / (time.perf_counter() - t0)
        _settle()
        per = (_mem_used_kib() - used0) / n / 1024
    finally:
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            list(pool.map(lambda c: client.remove_container(c, force=True), ids))
        client.remove_network("benchnet")
    return rate, per


if __name__ == "__main__":
    print(main())
