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

from run import DOCKER, DOCKERD, Daemon

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
    kinds = ["berthd"] + (["dockerd"] if DOCKERD else [])
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
        memory = {k: per_container_memory(daemons[k], 20) for k in kinds}
    finally:
        for d in daemons.values():
            d.remove()
        shutil.rmtree(env["DOCKER_CONFIG"], ignore_errors=True)
    return {"docker run --rm true (s)": {k: statistics.median(v) for k, v in samples.items()},
            "100 ctrs, 8 clients (ctr/s)": throughput,
            "RSS per running ctr (MiB)": memory}


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


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


def _tree_rss(root: str, daemon_pid: int) -> int:
    """RSS (KiB) of the daemon and every process whose command line names its root (conmon, containerd,
    shims); the containers' own processes are not counted."""
    total = _rss_kib(daemon_pid)
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == daemon_pid:
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if root.encode() in cmd and (b"conmon" in cmd[:60] or b"containerd" in cmd[:80]):
            total += _rss_kib(int(pid))
    return total


def per_container_memory(d: Daemon, n: int) -> float:
    """MiB that each running container adds to the daemon and its monitors (conmon, or containerd + shim)."""
    import docker

    client = docker.APIClient(base_url=f"unix://{d.sock}", version="1.41", timeout=120)
    assert d.proc is not None
    before = _tree_rss(d.root, d.proc.pid)
    ids = []
    for _ in range(n):
        cid = client.create_container("bb", ["sh", "-c", "while true; do sleep 1; done"],
                                      host_config=client.create_host_config(network_mode="none"))["Id"]
        client.start(cid)
        ids.append(cid)
    time.sleep(1)
    after = _tree_rss(d.root, d.proc.pid)
    for cid in ids:
        client.remove_container(cid, force=True)
    return (after - before) / n / 1024


if __name__ == "__main__":
    print(main())
