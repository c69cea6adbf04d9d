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
        for applet in ("sh", "true"):
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
    finally:
        for d in daemons.values():
            d.remove()
        shutil.rmtree(env["DOCKER_CONFIG"], ignore_errors=True)
    return {"docker run --rm true (s)": {k: statistics.median(v) for k, v in samples.items()}}


if __name__ == "__main__":
    print(main())
