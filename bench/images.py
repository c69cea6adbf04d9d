"""Image load/save benchmark: a ~500 MB, 5-layer image (incompressible data), berthd vs dockerd.

Each round loads the archive over the unix socket with curl (streamed from disk), saves it back to
/dev/null, and removes the image; rounds alternate between the daemons. Peak daemon memory is the
process's VmHWM (high-water RSS) at the end, next to its RSS before the first load: if loading
buffered layers in memory, the peak would grow by hundreds of MB.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time

import run
from run import Daemon

LAYERS, FILES, FILE_MB = 5, 10, 10


def _status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def make_archive(path: str, n_layers: int = LAYERS, files: int = FILES, file_mb: int = FILE_MB) -> None:
    """A docker-archive of ``n_layers`` layers, each ``files`` files of ``file_mb`` MiB of random data."""
    layers = []
    for i in range(n_layers):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for j in range(files):
                data = os.urandom(file_mb << 20)
                info = tarfile.TarInfo(f"layer{i}/file{j}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        layers.append(buf.getvalue())
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
                         "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    with tarfile.open(path, "w") as tf:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

        paths = []
        for d, layer in zip(diff_ids, layers, strict=True):
            paths.append(f"{d[7:]}/layer.tar")
            add(paths[-1], layer)
        add(hashlib.sha256(config).hexdigest() + ".json", config)
        add("manifest.json", json.dumps([{"Config": hashlib.sha256(config).hexdigest() + ".json",
                                          "RepoTags": ["bench/big:1"], "Layers": paths}]).encode())


def curl(sock: str, *args: str) -> None:
    subprocess.run(["curl", "-sS", "--fail", "--unix-socket", sock, *args], check=True, stdout=subprocess.DEVNULL)


def main(rounds: int = 3) -> dict[str, dict[str, float]]:
    kinds = run.kinds()
    work = tempfile.mkdtemp(prefix="berth-bench-img-")
    archive = os.path.join(work, "big.tar")
    daemons: dict[str, Daemon] = {}
    samples: dict[str, dict[str, list[float]]] = {k: {"load": [], "save": []} for k in kinds}
    try:
        make_archive(archive)
        size_mb = os.path.getsize(archive) / 1e6
        for k in kinds:
            daemons[k] = Daemon(k)
            daemons[k].start()
        before = {k: _status(daemons[k].proc.pid, "VmRSS") for k in kinds}  # type: ignore[union-attr]
        for i in range(rounds):
            for k in (kinds if i % 2 == 0 else list(reversed(kinds))):
                sock = daemons[k].sock
                subprocess.run(["sync"], check=True)
                t0 = time.perf_counter()
                curl(sock, "-X", "POST", "-T", archive, "-H", "Content-Type: application/x-tar",
                     "http://d/images/load?quiet=1")
                samples[k]["load"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                curl(sock, "-o", "/dev/null", "http://d/images/get?names=bench/big:1")
                samples[k]["save"].append(time.perf_counter() - t0)
                curl(sock, "-X", "DELETE", "http://d/images/bench/big:1")
        peak = {k: _status(daemons[k].proc.pid, "VmHWM") for k in kinds}  # type: ignore[union-attr]
    finally:
        for d in daemons.values():
            d.remove()
        shutil.rmtree(work, ignore_errors=True)
    results = {
        f"load {size_mb:.0f} MB (s)": {k: statistics.median(samples[k]["load"]) for k in kinds},
        f"save {size_mb:.0f} MB (s)": {k: statistics.median(samples[k]["save"]) for k in kinds},
        "RSS before (MiB)": {k: before[k] / 1024 for k in kinds},
        "peak RSS (MiB)": {k: peak[k] / 1024 for k in kinds},
    }
    return results


if __name__ == "__main__":
    res = main()
    for name, vals in res.items():
        print(name, {k: round(v, 3) for k, v in vals.items()})
