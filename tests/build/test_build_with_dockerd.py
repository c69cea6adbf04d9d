"""The same Dockerfiles built on berthd and on dockerd 20.10 side by side, from the same base image:
the same files in the results (``docker export``), the same config, history in the same words; a
berth-built image saved and loaded into dockerd keeps its ID; docker-compose 1.29's ``build:``."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator

import pytest

from tests.lib.clis import base_env, docker
from tests.lib.daemon import Berthd
from tests.lib.dockerd import Dockerd
from tests.lib.images import busybox_rootfs_tar

CORPUS = {
    "app": ("FROM bb\nARG VERSION=1.0\nENV APP_HOME=/srv/app PATH=/srv/app/bin:$PATH\nWORKDIR $APP_HOME\n"
            "COPY --chown=10:20 src/ ./\nCOPY bin/* bin/\nRUN chmod 755 bin/run && echo $VERSION > VERSION\n"
            "RUN mkdir -p /var/lib/app && echo state > /var/lib/app/state && rm -f /etc/motd\n"
            "USER 10:20\nEXPOSE 8080/tcp 9090/udp\nVOLUME [\"/var/lib/app\"]\n"
            "HEALTHCHECK --interval=30s --timeout=3s CMD [\"true\"]\nSTOPSIGNAL SIGINT\n"
            "LABEL org.example.name=\"app\" org.example.version=${VERSION}\nENTRYPOINT [\"bin/run\"]\nCMD [\"--serve\"]\n"),
    "multistage": ("FROM bb AS build\nRUN mkdir /out && echo artifact > /out/a && ln -s a /out/link\n"
                   "FROM bb\nCOPY --from=build /out /opt/out\nADD archive.tar.gz /opt/unpacked/\n"
                   "SHELL [\"/bin/sh\", \"-e\", \"-c\"]\nRUN test -L /opt/out/link && cat /opt/unpacked/inner/x\n"),
    "ignore": ("FROM bb\nCOPY . /ctx/\nRUN ls -a /ctx | sort > /listing\n"),
    "scratch": "FROM scratch\nCOPY f /f\nCOPY sub/ /sub/\nLABEL a=b\nCMD [\"/f\"]\n",
}


def _files(ctx: str, name: str) -> None:
    if name == "app":
        for rel, text in (("src/main.py", "print(1)\n"), ("src/lib/util.py", "x = 1\n"), ("bin/run", "#!/bin/sh\n")):
            os.makedirs(os.path.dirname(os.path.join(ctx, rel)), exist_ok=True)
            with open(os.path.join(ctx, rel), "w") as f:
                f.write(text)
    elif name == "multistage":
        with tarfile.open(os.path.join(ctx, "archive.tar.gz"), "w:gz") as tf:
            info = tarfile.TarInfo("inner/x")
            info.size, info.mode, info.mtime = 6, 0o640, 1_700_000_000
            tf.addfile(info, io.BytesIO(b"inner\n"))
    elif name == "scratch":
        os.makedirs(os.path.join(ctx, "sub"))
        for rel in ("f", "sub/x"):
            with open(os.path.join(ctx, rel), "w") as f:
                f.write(rel)
    else:
        for rel in ("keep.txt", "drop.log", "sub/keep.md", "sub/drop.log", "node_modules/m/index.js"):
            os.makedirs(os.path.dirname(os.path.join(ctx, rel)) or ctx, exist_ok=True)
            with open(os.path.join(ctx, rel), "w") as f:
                f.write(rel)
        with open(os.path.join(ctx, ".dockerignore"), "w") as f:
            f.write("**/*.log\nnode_modules\n!sub/drop.log\n")


@pytest.fixture(scope="module")
def dockerd() -> Iterator[Dockerd]:
    d = Dockerd().start()
    try:
        r = docker("-H", d.url, "import", "-", "bb", input=busybox_rootfs_tar().decode("latin-1"), encoding="latin-1")
        assert r.returncode == 0, r.stderr
        yield d
    finally:
        d.stop()


def _build(url: str, ctx: str, tag: str) -> str:
    r = docker("-H", url, "build", "-t", tag, ctx, env=base_env(DOCKER_BUILDKIT="0"), timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def _export(url: str, tag: str, skip: tuple[str, ...] = ()) -> dict[str, tuple[str, int, int, int, str, bytes]]:
    cid = docker("-H", url, "create", tag, "true").stdout.strip()
    assert cid
    try:
        data = subprocess.run(["docker", "-H", url, "export", cid], capture_output=True, check=True,
                              env=base_env()).stdout
    finally:
        docker("-H", url, "rm", "-f", cid)
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf:
            if m.name.rstrip("/") in ("etc/hostname", "etc/hosts", "etc/resolv.conf", ".dockerenv", "etc/mtab", "dev",
                                      "dev/console", "dev/pts", "dev/shm", "proc", "sys", *skip):
                continue  # the runtime's mount points (dockerd's init layer), not the image's
            content = tf.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
            # the permission bits (Go's tar writer adds the file type's bits to the mode field, berth's does not)
            out[m.name.rstrip("/")] = (m.type.decode(), m.mode & 0o7777, m.uid, m.gid, m.linkname, content)
    return out


_CONFIG_KEYS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels",
                "Healthcheck", "StopSignal", "Shell", "OnBuild")


def _history(url: str, tag: str) -> list[str]:
    r = docker("-H", url, "history", "--no-trunc", "--format", "{{.CreatedBy}}", tag)
    return [re.sub(r"(file|dir|multi):[0-9a-f]{64}", r"\1:HASH", line) for line in r.stdout.splitlines()]


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_the_corpus_builds_the_same_on_berth_and_dockerd(name: str, dockerd: Dockerd, bb: Berthd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = str(tmp_path / name)
    os.makedirs(ctx)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(CORPUS[name])
    _files(ctx, name)
    _build(dockerd.url, ctx, f"{name}:1")
    _build(bb.url, ctx, f"{name}:1")
    skip = ("etc",) if name == "scratch" else ()  # on scratch, dockerd's init layer makes /etc for its mount points
    theirs, ours = _export(dockerd.url, f"{name}:1", skip), _export(bb.url, f"{name}:1", skip)
    assert sorted(set(ours) ^ set(theirs)) == [], (sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours)))
    for path in theirs:
        assert ours[path] == theirs[path], path
    cfg = {u: json.loads(docker("-H", u, "image", "inspect", f"{name}:1").stdout)[0]["Config"]
           for u in (dockerd.url, bb.url)}
    for key in _CONFIG_KEYS:
        assert cfg[bb.url].get(key) == cfg[dockerd.url].get(key), key
    if name == "scratch":  # no base: every entry is the build's (berth once added one for FROM scratch)
        assert _history(bb.url, f"{name}:1") == _history(dockerd.url, f"{name}:1")
    else:
        assert _history(bb.url, f"{name}:1")[:-1] == _history(dockerd.url, f"{name}:1")[:-1]  # the base's differs


def test_a_berth_built_image_loads_into_dockerd_with_the_same_id(dockerd: Dockerd, bb: Berthd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = str(tmp_path)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM bb\nRUN echo hi > /hi\nCOPY Dockerfile /\nENV X=1\n")
    _build(bb.url, ctx, "moved:1")
    archive = str(tmp_path / "moved.tar")
    assert docker("-H", bb.url, "save", "-o", archive, "moved:1").returncode == 0
    r = docker("-H", dockerd.url, "load", "-i", archive)
    assert r.returncode == 0, r.stderr
    ids = [docker("-H", u, "image", "inspect", "--format", "{{.Id}}", "moved:1").stdout.strip()
           for u in (bb.url, dockerd.url)]
    assert ids[0] == ids[1] and ids[0].startswith("sha256:")
    assert docker("-H", dockerd.url, "run", "--rm", "moved:1", "cat", "/hi").stdout == "hi\n"


def test_docker_compose_builds_a_project(bb: Berthd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose)")
    os.makedirs(tmp_path / "web")
    (tmp_path / "web" / "Dockerfile").write_text("FROM bb\nARG GREETING\nRUN echo $GREETING > /greeting\n")
    (tmp_path / "docker-compose.yml").write_text(
        "version: '3'\nservices:\n  web:\n    build:\n      context: web\n      args:\n        GREETING: hello\n"
        "    image: proj/web:1\n")
    r = subprocess.run([compose, "build"], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                       env=base_env(DOCKER_HOST=bb.url, COMPOSE_DOCKER_CLI_BUILD="0"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert docker("-H", bb.url, "run", "--rm", "proj/web:1", "cat", "/greeting").stdout == "hello\n"
