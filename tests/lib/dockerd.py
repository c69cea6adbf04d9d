"""Real dockerd (Debian's docker.io) on a private socket, data root and exec root, for comparing
berth with it. ``--bridge=none --iptables=false``: it touches no network configuration."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from tests.lib.daemon import NO_OUTSIDE, public_tmpdir, unix_ping

DOCKERD = shutil.which("dockerd")


class Dockerd:
    def __init__(self) -> None:
        if DOCKERD is None:
            pytest.skip("dockerd is not installed (Debian package docker.io)")
        self.root = public_tmpdir("berth-dockerd-")
        self.sock = os.path.join(self.root, "docker.sock")
        self.proc: subprocess.Popen[bytes] | None = None
        # dockerd makes /run/docker/plugins (its plugins' sockets) whatever its exec root: what it made
        # is removed again, if nothing else has come to live there
        self._made = [d for d in ("/run/docker", "/run/docker/plugins") if not os.path.isdir(d)]
        self._started = time.time()

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def start_with(self, extra: list[str]) -> Dockerd:
        return self.start(extra)

    def start(self, extra: list[str] | None = None) -> Dockerd:
        cfg = os.path.join(self.root, "daemon.json")
        with open(cfg, "w") as f:
            json.dump({}, f)
        assert DOCKERD is not None
        self.proc = subprocess.Popen(
            [DOCKERD, "-H", self.url, "--data-root", f"{self.root}/data", "--exec-root", f"{self.root}/exec",
             "--pidfile", f"{self.root}/pid", "--config-file", cfg, "--bridge=none", "--iptables=false",
             "--ip-masq=false", *(extra or [])], stdout=open(f"{self.root}/log", "wb"), stderr=subprocess.STDOUT,
            env={**os.environ, **NO_OUTSIDE},
            start_new_session=True)
        deadline = time.time() + 60
        while not unix_ping(self.sock):
            if self.proc.poll() is not None or time.time() > deadline:
                log = open(f"{self.root}/log").read()[-3000:]
                self.stop()
                pytest.skip(f"dockerd would not start here: {log}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # containerd's and overlay mounts under the root, if any survived
        with open("/proc/mounts") as f:
            mounts = [line.split()[1] for line in f if self.root in line.split()[1]]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        import glob

        for stacks in glob.glob("/tmp/containerd.*.stacks.log"):  # the stacks its containerd dumps on the way out
            try:
                if os.path.getmtime(stacks) >= self._started:
                    os.unlink(stacks)
            except OSError:
                pass
        for d in reversed(self._made):
            try:
                os.rmdir(d)
            except OSError:
                pass
