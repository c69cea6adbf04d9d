"""Hostile images and helpers shared by the attack tests."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import time

from tests.lib import rawhttp
from tests.lib.clis import docker
from tests.lib.daemon import Berthd, unix_ping
from tests.lib.images import busybox_rootfs_tar, docker_archive, sha


def layer(entries: list[tuple[str, str, bytes | str]]) -> bytes:
    """A layer tar from (name, kind, data): kind "file" (data: bytes), "dir", "symlink" (data: target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                tf.addfile(info)
            else:
                assert isinstance(data, bytes)
                info.size, info.mode = len(data), 0o644
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def load_image(d: Berthd, name: str, layers: list[bytes], config: dict[str, object]) -> None:
    """Load an image (busybox base + ``layers``) whose container config is ``config``."""
    base = busybox_rootfs_tar()
    all_layers = [base, *layers]
    cfg = {"architecture": "amd64", "os": "linux", "created": "2026-01-02T03:04:05Z",
           "config": {"Cmd": ["sh"], **config},
           "rootfs": {"type": "layers", "diff_ids": [sha(x) for x in all_layers]}}
    r = rawhttp.request(d.sock, "POST", "/images/load?quiet=1",
                        body=docker_archive([(json.dumps(cfg).encode(), all_layers, [f"{name}:latest"])]),
                        headers={"Content-Type": "application/x-tar"}, timeout=60)
    assert r.status == 200, r.body


def run(d: Berthd, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return docker("-H", d.url, *args, timeout=timeout)


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def assert_alive(d: Berthd, within: float = 5.0) -> None:
    """The daemon still answers /_ping, within ``within`` seconds (a bound on a hang, not a timing)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if unix_ping(d.sock, timeout=within):
            return
        time.sleep(0.05)
    raise AssertionError(f"berthd did not answer /_ping within {within}s:\n{d.log()[-3000:]}")


def host_canary(tag: str) -> str:
    """A host path no test creates: if it appears, a container wrote on the host."""
    return f"/tmp/berth-pwned-{tag}-{os.getpid()}"
