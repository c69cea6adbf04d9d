"""Pull benchmark: a ~500 MB, 6-layer image from a local registry (Debian's docker-registry on
127.0.0.1, the image put there by skopeo), into berthd and into dockerd, cold (the image and its
layers removed between rounds), rounds alternating between the daemons. Each pull is timed from the
request to the end of the response stream, read with curl over the unix socket. Peak daemon memory
is VmHWM at the end, next to the RSS before the first pull.

Traffic goes only to 127.0.0.1 and the daemons' sockets.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

import run
from images import _status, make_archive
from run import Daemon, free_port

LAYERS, FILES, FILE_MB = 6, 8, 10  # 6 layers of 80 MiB of incompressible data: ~500 MB
REGISTRY = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")


def start_registry(work: str) -> tuple[subprocess.Popen[bytes], str]:
    assert REGISTRY is not None
    port = free_port()
    cfg = os.path.join(work, "registry.yml")
    with open(cfg, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {work}/registry\n"
                f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([REGISTRY, "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("the registry did not start") from None
            time.sleep(0.05)


def pull(sock: str, host: str) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(["curl", "-sS", "--fail", "--unix-socket", sock, "-X", "POST",
                        f"http://d/images/create?fromImage={host}/bench/big&tag=1"], capture_output=True, check=True)
    elapsed = time.perf_counter() - t0
    if b'"error"' in r.stdout:
        raise RuntimeError(f"the pull failed: {r.stdout[-400:]!r}")
    return elapsed


def remove(sock: str, host: str) -> None:
    subprocess.run(["curl", "-sS", "--fail", "--unix-socket", sock, "-X", "DELETE",
                    f"http://d/images/{host}/bench/big:1?force=1"], check=True, stdout=subprocess.DEVNULL)


def push(sock: str, host: str) -> float:
    """Push bench/big:1 (tagged for ``host``) and time it to the end of the response stream."""
    subprocess.run(["curl", "-sS", "--fail", "--unix-socket", sock, "-X", "POST",
                    f"http://d/images/bench/big:1/tag?repo={host}/bench/big&tag=1"], check=True, capture_output=True)
    t0 = time.perf_counter()
    r = subprocess.run(["curl", "-sS", "--fail", "--unix-socket", sock, "-X", "POST", "-H",
                        "X-Registry-Auth: e30=", f"http://d/images/{host}/bench/big/push?tag=1"],
                       capture_output=True, check=True)
    elapsed = time.perf_counter() - t0
    if b'"error"' in r.stdout:
        raise RuntimeError(f"the push failed: {r.stdout[-400:]!r}")
    return elapsed


def push_main(rounds: int = 3) -> dict[str, dict[str, float]]:
    """Each round, each daemon pushes the image to a registry of its own, fresh (nothing to skip)."""
    if REGISTRY is None:
        return {}
    kinds = run.kinds()
    work = tempfile.mkdtemp(prefix="berth-bench-push-")
    daemons: dict[str, Daemon] = {}
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        archive = os.path.join(work, "big.tar")
        make_archive(archive, LAYERS, FILES, FILE_MB)
        for k in kinds:
            daemons[k] = Daemon(k)
            daemons[k].start()
            subprocess.run(["curl", "-sS", "--fail", "--unix-socket", daemons[k].sock, "-X", "POST", "-T", archive,
                            "-H", "Content-Type: application/x-tar", "http://d/images/load?quiet=1"],
                           check=True, stdout=subprocess.DEVNULL)
        for i in range(rounds):
            for k in (kinds if i % 2 == 0 else list(reversed(kinds))):
                regdir = os.path.join(work, f"reg-{i}-{k}")
                os.makedirs(regdir)
                registry, host = start_registry(regdir)
                try:
                    subprocess.run(["sync"], check=True)
                    samples[k].append(push(daemons[k].sock, host))
                finally:
                    registry.terminate()
                    registry.wait()
                    shutil.rmtree(regdir, ignore_errors=True)
    finally:
        for d in daemons.values():
            d.remove()
        shutil.rmtree(work, ignore_errors=True)
    return {f"push {LAYERS} layers of {FILES * FILE_MB} MiB, fresh registry (s)":
            {k: statistics.median(samples[k]) for k in kinds}}


def main(rounds: int = 5) -> dict[str, dict[str, float]]:
    if REGISTRY is None or SKOPEO is None:
        print("pull: needs docker-registry and skopeo (apt-get install docker-registry skopeo): skipped")
        return {}
    kinds = run.kinds()
    work = tempfile.mkdtemp(prefix="berth-bench-pull-")
    daemons: dict[str, Daemon] = {}
    registry: subprocess.Popen[bytes] | None = None
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        archive = os.path.join(work, "big.tar")
        make_archive(archive, LAYERS, FILES, FILE_MB)
        registry, host = start_registry(work)
        subprocess.run([SKOPEO, "copy", "--quiet", "--dest-tls-verify=false", f"docker-archive:{archive}",
                        f"docker://{host}/bench/big:1"], check=True)
        blobs = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(f"{work}/registry") for f in fs)
        os.unlink(archive)
        for k in kinds:
            daemons[k] = Daemon(k)
            daemons[k].start()
        before = {k: _status(daemons[k].proc.pid, "VmRSS") for k in kinds}  # type: ignore[union-attr]
        for i in range(rounds):
            for k in (kinds if i % 2 == 0 else list(reversed(kinds))):
                subprocess.run(["sync"], check=True)
                samples[k].append(pull(daemons[k].sock, host))
                remove(daemons[k].sock, host)
        peak = {k: _status(daemons[k].proc.pid, "VmHWM") for k in kinds}  # type: ignore[union-attr]
    finally:
        for d in daemons.values():
            d.remove()
        if registry is not None:
            registry.terminate()
            registry.wait()
        shutil.rmtree(work, ignore_errors=True)
    return {
        f"pull {blobs / 1e6:.0f} MB, {LAYERS} layers, cold (s)": {k: statistics.median(samples[k]) for k in kinds},
        "pull: RSS before (MiB)": {k: before[k] / 1024 for k in kinds},
        "pull: peak RSS (MiB)": {k: peak[k] / 1024 for k in kinds},
    }


if __name__ == "__main__":
    res = {**main(), **push_main()}
    for name, vals in res.items():
        print(name, {k: round(v, 3) for k, v in vals.items()})
