"""Build benchmark (#15): a 12-step Dockerfile with a ~200 MB context (20 files of 10 MiB of random
data and 200 small source files), built with the real docker CLI (DOCKER_BUILDKIT=0, the classic
builder's protocol) on berthd and on dockerd, rounds alternating between the daemons:

  cold       ``--no-cache``: every step runs (the base image is there)
  one file   one source file changed since the last build: its COPY and what follows run again
  no change  nothing changed: every step from the cache

Each is the wall time of ``docker build -q`` (the CLI's tar of the context and its upload included,
alike for both). Traffic goes only to the daemons' unix sockets.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time

import run
from containers import rootfs_tar
from run import DOCKER, Daemon

DOCKERFILE = """\
FROM bb
ENV APP=/app
WORKDIR /app
COPY data/ /app/data/
COPY src/ /app/src/
RUN cat src/*.py > /app/all.txt && wc -c /app/all.txt
RUN mkdir -p /var/cache/app && echo ready > /var/cache/app/state
ARG VERSION=1
LABEL version=$VERSION
EXPOSE 8080
USER 1000
CMD ["sh"]
"""
DATA_FILES, DATA_MB, SOURCES = 20, 10, 200


def _context(root: str) -> str:
    ctx = os.path.join(root, "ctx")
    os.makedirs(os.path.join(ctx, "data"))
    os.makedirs(os.path.join(ctx, "src"))
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE)
    for i in range(DATA_FILES):
        with open(os.path.join(ctx, "data", f"blob{i}"), "wb") as f:
            f.write(os.urandom(DATA_MB << 20))
    for i in range(SOURCES):
        with open(os.path.join(ctx, "src", f"mod{i}.py"), "w") as f:
            f.write(f"# module {i}\n" + "x = 1\n" * 50)
    return ctx


def _build(sock: str, ctx: str, env: dict[str, str], *extra: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([DOCKER, "-H", f"unix://{sock}", "build", "-q", "-t", "bench/build:1", *extra, ctx],
                   check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def main(rounds: int = 5) -> dict[str, dict[str, float]]:
    if DOCKER is None:
        print("build: the docker CLI is missing: skipped")
        return {}
    kinds = run.kinds()
    work = tempfile.mkdtemp(prefix="berth-bench-build-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_BUILDKIT="0", DOCKER_CONFIG=os.path.join(work, "cfg"))
    daemons = {k: Daemon(k) for k in kinds}
    cold: dict[str, list[float]] = {k: [] for k in kinds}
    one: dict[str, list[float]] = {k: [] for k in kinds}
    none: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        ctx = _context(work)
        size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(ctx) for f in fs)
        for d in daemons.values():
            d.start()
            subprocess.run([DOCKER, "-H", f"unix://{d.sock}", "import", "-", "bb:latest"], input=rootfs_tar(),
                           check=True, capture_output=True, env=env)
            _build(d.sock, ctx, env)  # warm up (and the cache for the first "one file" round)
        for i in range(rounds):
            order = kinds if i % 2 == 0 else list(reversed(kinds))
            for k in order:
                cold[k].append(_build(daemons[k].sock, ctx, env, "--no-cache"))
            with open(os.path.join(ctx, "src", "mod7.py"), "a") as f:
                f.write(f"y = {i}\n")
            for k in order:
                one[k].append(_build(daemons[k].sock, ctx, env))
            for k in order:
                none[k].append(_build(daemons[k].sock, ctx, env))
    finally:
        for d in daemons.values():
            d.remove()
        shutil.rmtree(work, ignore_errors=True)
    label = f"{size / 1e6:.0f} MB context, 12 steps"
    return {f"build {label}, cold (s)": {k: statistics.median(v) for k, v in cold.items()},
            "build, one source file changed (s)": {k: statistics.median(v) for k, v in one.items()},
            "build, nothing changed (s)": {k: statistics.median(v) for k, v in none.items()}}


if __name__ == "__main__":
    for name, vals in main().items():
        print(name, {k: round(v, 3) for k, v in vals.items()})
