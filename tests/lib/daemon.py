"""The berthd fixture's engine: a real daemon on private paths, polled until /_ping answers, with its
log kept for the failure report, and always stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BERTHD = shutil.which("berthd", path=os.path.dirname(sys.executable)) or "berthd"
BERTH = shutil.which("berth", path=os.path.dirname(sys.executable)) or "berth"

# Network safety: a test daemon reaches no registry beyond this machine. A pull of a name without a
# registry (Docker Hub) goes to a proxy on a closed loopback port and is refused at once, without a DNS
# question; registries on loopback bypass it. A test with a registry elsewhere adds it to NO_PROXY.
NO_OUTSIDE = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost,::1",
              "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "no_proxy": "127.0.0.1,localhost,::1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def public_tmpdir(prefix: str = "berth-test-") -> str:
    """A temporary directory other users can traverse (for sockets they must reach)."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    return d


def unix_ping(path: str, timeout: float = 1.0) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: berth\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Berthd:
    """One berthd process. ``start()`` returns once every listener answers; ``stop()`` is idempotent."""

    def __init__(self, root: str | None = None, args: list[str] | None = None, config: dict | None = None,
                 env: dict[str, str] | None = None, hosts: list[str] | None = None, network: bool = False) -> None:
        self.root = root or public_tmpdir()
        self.network = network  # False: --bridge=none (no bridge, no nft table), unless args/config say otherwise
        self.sock = os.path.join(self.root, "berth.sock")
        self.hosts = hosts if hosts is not None else [f"unix://{self.sock}"]
        self.args = list(args or [])
        self.config = config
        self.env = env
        self.log_path = os.path.join(self.root, "berthd.log")
        self.pidfile = os.path.join(self.root, "berthd.pid")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def argv(self) -> list[str]:
        argv = [BERTHD, "--data-root", os.path.join(self.root, "data"), "--exec-root",
                os.path.join(self.root, "exec"), "--pidfile", self.pidfile]
        cfg_path = os.path.join(self.root, "daemon.json")
        with open(cfg_path, "w") as f:
            json.dump(self.config or {}, f)
        argv += ["--config-file", cfg_path]
        for h in self.hosts:
            argv += ["-H", h]
        given = self.args + list((self.config or {}).keys())
        if not self.network and not any(a in ("-b", "bridge") or a.startswith("--bridge") for a in given):
            argv += ["--bridge=none"]
        return argv + self.args

    def start(self, timeout: float = 15, wait_for: list[int] | None = None, pass_fds: tuple[int, ...] = (),
              prefix: list[str] | None = None) -> Berthd:
        log = open(self.log_path, "ab")
        env = {**os.environ, **NO_OUTSIDE, **(self.env or {})}
        self.proc = subprocess.Popen([*(prefix or []), *self.argv()], stdout=log, stderr=subprocess.STDOUT,
                                     env=env, pass_fds=pass_fds, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        unix_paths = [h[len("unix://"):] for h in self.hosts if h.startswith("unix://")]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"berthd exited with {self.proc.returncode}:\n{self.log()}")
            if all(unix_ping(p) for p in unix_paths) and all(tcp_open(p) for p in (wait_for or [])):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"berthd did not answer within {timeout}s:\n{self.log()}")

    def run_to_exit(self, timeout: float = 20) -> tuple[int, str]:
        """Run berthd expecting it to refuse to start: (exit code, everything it printed)."""
        r = subprocess.run(self.argv(), capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, **NO_OUTSIDE, **(self.env or {})})
        return r.returncode, r.stdout + r.stderr

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def reload(self, timeout: float = 10) -> None:
        """SIGHUP, then wait until the daemon says it reloaded (or failed to)."""
        before = self.log().count("reload")
        self.signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while self.log().count("reload") == before:
            if time.monotonic() > deadline:
                raise RuntimeError("berthd did not reload:\n" + self.log())
            time.sleep(0.02)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        return Path(self.log_path).read_text(errors="replace") if os.path.exists(self.log_path) else ""

    def remove_containers(self) -> list[str]:
        """Force-remove every container through the API (containers outlive berthd by design)."""
        ids: list[str] = []
        if self.proc is None or self.proc.poll() is not None or not unix_ping(self.sock):
            return ids
        try:
            from tests.lib import rawhttp

            r = rawhttp.request(self.sock, "GET", "/containers/json?all=1", timeout=10)
            ids = [c["Id"] for c in r.json()] if r.status == 200 else []
            for cid in ids:
                rawhttp.request(self.sock, "DELETE", f"/containers/{cid}?force=1", timeout=40)
        except (OSError, ValueError):
            pass
        return ids

    def cleanup(self) -> None:
        ids = self.remove_containers()
        self.stop()
        kill_leftovers(self.root, ids)
        shutil.rmtree(self.root, ignore_errors=True)


def kill_leftovers(root: str, ids: list[str]) -> None:
    """The safety net: conmon processes, mounts and cgroups of containers under ``root``."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if cmdline.startswith(b"conmon") or b"/conmon\0" in cmdline[:40]:
            if root.encode() in cmdline:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
                ids.extend(c.decode() for c in cmdline.split(b"\0") if len(c) == 64)
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[1].startswith(root)]
    for m in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
    for cid in set(ids):
        for ctrl in os.listdir("/sys/fs/cgroup"):
            path = f"/sys/fs/cgroup/{ctrl}/berth/{cid}"
            if os.path.isdir(path):
                try:
                    with open(os.path.join(path, "cgroup.procs")) as f:
                        for pid in f.read().split():
                            os.kill(int(pid), signal.SIGKILL)
                    time.sleep(0.05)
                    os.rmdir(path)
                except OSError:
                    pass
