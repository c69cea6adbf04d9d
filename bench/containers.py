"""`docker run --rm IMG true` with the real docker CLI, berthd vs dockerd (--bridge=none: no network
on either side), the same busybox image imported into both. Median of alternating runs."""

from __future__ import annotations

import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

import run
from run import DOCKER, Daemon

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def rootfs_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(BUSYBOX, "bin/busybox")
        for applet in ("sh", "true", "sleep"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tf.addfile(info)
    return buf.getvalue()


def main(runs: int = 11) -> dict[str, dict[str, float]]:
    if DOCKER is None or not os.path.exists(BUSYBOX):
        print("docker CLI or busybox missing: skipping the container benchmark", file=sys.stderr)
        return {}
    kinds = run.kinds()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = tempfile.mkdtemp(prefix="berth-bench-cfg-")
    daemons = {k: Daemon(k) for k in kinds}
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        for d in daemons.values():
            d.start()
            subprocess.run([DOCKER, "-H", f"unix://{d.sock}", "import", "-", "bb:latest"], input=rootfs_tar(),
                           check=True, capture_output=True, env=env)
            for _ in range(2):  # warm up
                subprocess.run([DOCKER, "-H", f"unix://{d.sock}", "run", "--rm", "--network", "none", "bb", "true"],
                               check=True, capture_output=True, env=env)
        for i in range(runs):
            for k in (kinds if i % 2 == 0 else list(reversed(kinds))):
                t0 = time.perf_counter()
                subprocess.run([DOCKER, "-H", f"unix://{daemons[k].sock}", "run", "--rm", "--network", "none", "bb",
                                "true"], check=True, capture_output=True, env=env)
                samples[k].append(time.perf_counter() - t0)
        throughput = {k: parallel_lifecycle(daemons[k].sock, 100, 8) for k in kinds}
        memory = {k: per_container_memory(daemons[k], 100) for k in kinds}
    finally:
        for d in daemons.values():
            d.remove()
        shutil.rmtree(env["DOCKER_CONFIG"], ignore_errors=True)
    return {"docker run --rm true (s)": {k: statistics.median(v) for k, v in samples.items()},
            "100 ctrs, 8 clients (ctr/s)": throughput,
            "per running ctr, RSS of daemon+monitors (MiB)": {k: m["rss"] for k, m in memory.items()},
            "per running ctr, PSS of daemon+monitors (MiB)": {k: m["pss"] for k, m in memory.items()},
            "per running ctr, machine's used memory (MiB)": {k: m["machine"] for k, m in memory.items()},
            "daemon RSS, 100 ctrs running (MiB)": {k: m["daemon_rss"] for k, m in memory.items()}}


def parallel_lifecycle(sock: str, total: int, clients: int) -> float:
    """Containers per second through create+start+wait+remove, ``clients`` at a time (docker-py)."""
    import concurrent.futures

    import docker

    client = docker.APIClient(base_url=f"unix://{sock}", version="1.41", timeout=120)

    def one(_: int) -> None:
        cid = client.create_container("bb", ["true"], host_config=client.create_host_config(network_mode="none"))["Id"]
        client.start(cid)
        client.wait(cid)
        client.remove_container(cid)

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(total)))
    return total / (time.perf_counter() - t0)


def _status_kib(pid: int, field: str = "VmRSS:") -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field))
    except (OSError, StopIteration):
        return 0


def _pss_kib(pid: int) -> int:
    """Proportional set size: private pages, plus shared pages divided among the processes mapping
    them. Summed over processes it counts a shared library once, where summed RSS counts it per process."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return 0


def _monitor_pids(root: str, daemon_pid: int) -> list[int]:
    """The daemon and every process whose command line names its root (conmon; containerd and its
    shims); the containers' own processes are not among them."""
    pids = [daemon_pid]
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == daemon_pid:
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if root.encode() in cmd and (b"conmon" in cmd[:60] or b"containerd" in cmd[:80]):
            pids.append(int(pid))
    return pids


def _mem_used_kib() -> int:
    """MemTotal - MemAvailable: what the whole machine uses, kernel objects and page cache included."""
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            info[k] = int(v.split()[0])
    return info["MemTotal"] - info["MemAvailable"]


def _settle() -> None:
    subprocess.run(["sync"], check=False)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")
    time.sleep(1)


def per_container_memory(d: Daemon, n: int) -> dict[str, float]:
    """What ``n`` running containers (each a ``sh`` loop around ``sleep 1``) add, in MiB per container:
    the RSS and the PSS of the daemon and its monitors, and the whole machine's used memory (container
    processes, cgroups, mounts, kernel objects included). Also the daemon's own RSS with them running."""
    import docker

    client = docker.APIClient(base_url=f"unix://{d.sock}", version="1.41", timeout=120)
    assert d.proc is not None
    _settle()
    pids = _monitor_pids(d.root, d.proc.pid)
    rss0, pss0, used0 = sum(map(_status_kib, pids)), sum(map(_pss_kib, pids)), _mem_used_kib()
    ids = []
    try:
        for _ in range(n):
            cid = client.create_container("bb", ["sh", "-c", "while true; do sleep 1; done"],
                                          host_config=client.create_host_config(network_mode="none"))["Id"]
            client.start(cid)
            ids.append(cid)
        _settle()
        pids = _monitor_pids(d.root, d.proc.pid)
        rss1, pss1, used1 = sum(map(_status_kib, pids)), sum(map(_pss_kib, pids)), _mem_used_kib()
        daemon_rss = _status_kib(d.proc.pid) / 1024
    finally:
        for cid in ids:
            client.remove_container(cid, force=True)
    return {"rss": (rss1 - rss0) / n / 1024, "pss": (pss1 - pss0) / n / 1024,
            "machine": (used1 - used0) / n / 1024, "daemon_rss": daemon_rss}


if __name__ == "__main__":
    print(main())
