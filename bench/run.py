"""Side-by-side benchmarks: berthd against dockerd (Debian's docker.io) when it is installed.

Measures, each as a median over alternating rounds so that machine noise hits both daemons alike:
  start      daemon start until /_ping answers (spawn → first 200)
  ping-unix  /_ping requests per second, one keep-alive client, over the unix socket
  ping-tls   the same over mutual TLS on loopback
  cli        median wall time of `docker version` with the real docker CLI
Traffic goes only to the daemons' unix sockets and to 127.0.0.1. Every daemon is stopped and its
temporary directory removed at the end, also on failure.

    python bench/run.py [--quick] [--json PATH] [--only GROUP] [--baseline REV] [--tlscrl] [--authz]

GROUP: system, images, pull (a 500 MB image from a local registry, cold), build (a 12-step Dockerfile,
a 200 MB context: cold, one file changed, nothing changed), containers, networks, connections.

With ``--baseline REV`` the berthd of git revision REV runs beside today's ("baseline" column), to
show what a change costs; the last column is today's berthd against it (+: faster or smaller).
With ``--authz`` today's berthd runs three times: without an audit log and without a policy
("berthd"), with its audit log (the default; "audit"), and with its audit log and an authorization
policy (``AUTHZ_POLICY``: the rules a site would have; "authz"); the last two columns are what each
costs against "berthd".
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
sys.modules.setdefault("run", sys.modules[__name__])  # `import run` elsewhere sees this module's settings
BIN = os.path.dirname(sys.executable)
BERTHD = os.path.join(BIN, "berthd")
BERTH = os.path.join(BIN, "berth")
DOCKERD = shutil.which("dockerd")
DOCKER = shutil.which("docker")
BASELINE_SRC: str | None = None  # src/ of an older berth (``--baseline``), run beside today's
TLSCRL: str | None = None  # ``--tlscrl``: today's berthd checks client certificates against this CRL
AUTHZ = False  # ``--authz``: an "authz" berthd (today's, with AUTHZ_POLICY) runs beside the others
AUTHZ_POLICY = """
@id("root") permit(principal == UnixUser::"root", action, resource) unless { context.daemon_socket };
@id("bench-client") permit(principal == TlsClient::"bench", action, resource) unless { context.escalates };
@id("monitoring") permit(principal in UnixGroup::"adm", action in Action::"read-only", resource);
@id("ops") @labels("team=ops")
permit(principal in TlsUnit::"ops", action in Action::"container", resource)
  when { resource.hasTag("team") && resource.getTag("team") == "ops" } unless { context.escalates };
@id("no-daemon-socket") forbid(principal, action, resource) when { context.daemon_socket };
"""


def kinds() -> list[str]:
    """The daemons every benchmark compares: berthd, the baseline berthd, dockerd (those present)."""
    return (["berthd"] + (["baseline"] if BASELINE_SRC else []) + (["audit", "authz"] if AUTHZ else [])
            + (["dockerd"] if DOCKERD else []))


def baseline_src(rev: str) -> str:
    """The src/ directory of revision ``rev`` of this repository, unpacked under bench/.build."""
    repo = os.path.dirname(HERE)
    sha = subprocess.run(["git", "rev-parse", "--short=12", rev], capture_output=True, text=True, check=True,
                         cwd=repo).stdout.strip()
    out = os.path.join(HERE, ".build", f"baseline-{sha}")
    if not os.path.isdir(os.path.join(out, "src", "berth")):
        os.makedirs(out, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha, "src"], capture_output=True, check=True, cwd=repo).stdout
        subprocess.run(["tar", "-x", "-C", out], input=archive, check=True)
    return os.path.join(out, "src")


def build_pingload() -> str:
    out_dir = os.path.join(HERE, ".build")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "pingload")
    src = os.path.join(HERE, "pingload.c")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", out, src, "-lssl", "-lcrypto"], check=True)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ping_ok(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(path)
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: b\r\n\r\n")
            return s.recv(12) == b"HTTP/1.1 200"
    except OSError:
        return False


@dataclass
class Daemon:
    kind: str  # "berthd" | "dockerd"
    root: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="berth-bench-"))
    proc: subprocess.Popen[bytes] | None = None
    tls_port: int = 0
    net_args: list[str] = field(default_factory=lambda: ["--bridge=none"])  # no network unless asked

    @property
    def sock(self) -> str:
        return os.path.join(self.root, "api.sock")

    def argv(self, tls_dir: str | None) -> list[str]:
        cfg = os.path.join(self.root, "daemon.json")
        settings: dict[str, str] = {"audit-log": "none"} if AUTHZ and self.kind == "berthd" else {}
        if self.kind == "authz":
            policy = os.path.join(self.root, "policy.cedar")
            with open(policy, "w") as f:
                f.write(AUTHZ_POLICY)
            settings["authorization-policy"] = policy
        with open(cfg, "w") as f:
            json.dump(settings, f)
        common = ["-H", f"unix://{self.sock}", "--data-root", f"{self.root}/data", "--exec-root",
                  f"{self.root}/exec", "--pidfile", f"{self.root}/pid", "--config-file", cfg]
        if tls_dir:
            self.tls_port = free_port()
            common += ["-H", f"tcp://127.0.0.1:{self.tls_port}", "--tlsverify", "--tlscacert", f"{tls_dir}/ca.pem",
                       "--tlscert", f"{tls_dir}/cert.pem", "--tlskey", f"{tls_dir}/key.pem"]
            if TLSCRL and self.kind in ("berthd", "audit", "authz"):
                common += ["--tlscrl", TLSCRL]
        if self.kind in ("berthd", "baseline", "audit", "authz"):
            return [BERTHD, *common, *self.net_args]
        assert DOCKERD is not None
        return [DOCKERD, *common, *self.net_args, "--iptables=false", "--ip-masq=false"]

    def start(self, tls_dir: str | None = None) -> float:
        """Start; return seconds from spawn until /_ping answered."""
        if self.kind == "dockerd" and not hasattr(self, "made"):
            # dockerd makes /run/docker/plugins whatever its exec root: what it made goes again (remove())
            self.made = [d for d in ("/run/docker", "/run/docker/plugins") if not os.path.isdir(d)]
            self.started = time.time()
        log = open(os.path.join(self.root, "log"), "ab")
        t0 = time.perf_counter()
        env = dict(os.environ)
        if self.kind == "baseline":
            assert BASELINE_SRC is not None
            env["PYTHONPATH"] = BASELINE_SRC
        self.proc = subprocess.Popen(self.argv(tls_dir), stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=env)
        while not ping_ok(self.sock):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: " + open(os.path.join(self.root, "log")).read()[-2000:])
            if time.perf_counter() - t0 > 60:
                raise RuntimeError(f"{self.kind} did not answer within 60 s")
            time.sleep(0.001)
        elapsed = time.perf_counter() - t0
        if self.tls_port:
            deadline = time.time() + 30
            while time.time() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", self.tls_port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.01)
        return elapsed

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def rss_kib(self) -> int:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def remove(self) -> None:
        self.stop()
        with open("/proc/mounts") as f:  # overlays, berth's network namespaces and their directory
            mounts = [line.split()[1] for line in f if line.split()[1].startswith(self.root + "/")]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        for d in reversed(getattr(self, "made", [])):
            with contextlib.suppress(OSError):
                os.rmdir(d)  # only when nothing else has come to live there
        for stacks in glob.glob("/tmp/containerd.*.stacks.log"):  # what its containerd dumps on the way out
            if os.path.getmtime(stacks) >= getattr(self, "started", time.time()):
                with contextlib.suppress(OSError):
                    os.unlink(stacks)


def rps(pingload: str, args: list[str]) -> float:
    out = subprocess.run([pingload, *args], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"pingload failed: {out.stderr}")
    n, secs = out.stdout.split()
    return int(n) / float(secs)


def cli_latency(sock: str, runs: int) -> float:
    assert DOCKER is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = tempfile.mkdtemp(prefix="berth-bench-cfg-")
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([DOCKER, "-H", f"unix://{sock}", "version"], capture_output=True, check=True, env=env)
        times.append(time.perf_counter() - t0)
    shutil.rmtree(env["DOCKER_CONFIG"], ignore_errors=True)
    return statistics.median(times)


def make_certs(root: str) -> tuple[str, str]:
    def pki(*args: str) -> None:
        subprocess.run([BERTH, "pki", *args], check=True, capture_output=True)

    pki("init", "--dir", f"{root}/ca")
    pki("server", "--dir", f"{root}/ca", "--cn", "localhost", "--san", "IP:127.0.0.1", "--out", f"{root}/server")
    pki("client", "--dir", f"{root}/ca", "--cn", "bench", "--out", f"{root}/client")
    pki("client", "--dir", f"{root}/ca", "--cn", "revoked", "--out", f"{root}/revoked")
    pki("revoke", "--dir", f"{root}/ca", f"{root}/revoked/cert.pem")  # ca/crl.pem, for --tlscrl
    return f"{root}/server", f"{root}/client"


def alternate(kinds: list[str], rounds: int, fn: Callable[[str], float]) -> dict[str, float]:
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    for i in range(rounds):
        for k in (kinds if i % 2 == 0 else list(reversed(kinds))):
            samples[k].append(fn(k))
    return {k: statistics.median(v) for k, v in samples.items()}


class _SkipSystem(Exception):
    pass


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer and shorter rounds")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--only", choices=["system", "images", "pull", "build", "containers", "networks", "connections"],
                    help="run one group of measures")
    ap.add_argument("--baseline", metavar="REV", help="also run the berthd of this git revision, side by side")
    ap.add_argument("--tlscrl", action="store_true", help="today's berthd checks client certificates against a "
                    "CRL (the cost of revocation checking, against --baseline)")
    ap.add_argument("--authz", action="store_true", help="also run today's berthd with an authorization policy "
                    "(the \"authz\" column; its cost against berthd is the last column)")
    opts = ap.parse_args()
    global BASELINE_SRC, TLSCRL, AUTHZ
    AUTHZ = opts.authz
    if opts.baseline:
        BASELINE_SRC = baseline_src(opts.baseline)
    rounds, seconds, cli_runs, starts = (2, 1.0, 5, 2) if opts.quick else (5, 3.0, 21, 5)
    all_kinds = kinds()
    if not DOCKERD:
        print("dockerd is not installed (apt-get install docker.io, or `make bench` does it): berthd alone")
    pingload = build_pingload()
    certs_root = tempfile.mkdtemp(prefix="berth-bench-pki-")
    server_tls, client_tls = make_certs(certs_root)
    if opts.tlscrl:
        TLSCRL = f"{certs_root}/ca/crl.pem"
    daemons: dict[str, Daemon] = {}
    results: dict[str, dict[str, float]] = {}
    if opts.only in ("images", "pull", "build", "containers", "networks", "connections"):
        rounds = 0
    try:
        if rounds == 0:
            raise _SkipSystem
        def start_once(kind: str) -> float:
            d = Daemon(kind)
            try:
                return d.start()
            finally:
                d.remove()

        results["start (s)"] = alternate(all_kinds, starts, start_once)
        for k in all_kinds:
            daemons[k] = Daemon(k)
            daemons[k].start(server_tls)
        time.sleep(1)
        results["ping unix (req/s)"] = alternate(
            all_kinds, rounds, lambda k: rps(pingload, ["unix", daemons[k].sock, str(seconds)]))
        results["ping mTLS (req/s)"] = alternate(
            all_kinds, rounds, lambda k: rps(pingload, ["tcp", "127.0.0.1", str(daemons[k].tls_port), str(seconds),
                                                    f"{client_tls}/ca.pem", f"{client_tls}/cert.pem",
                                                    f"{client_tls}/key.pem"]))
        if DOCKER:
            results["docker version (s)"] = alternate(all_kinds, 1, lambda k: cli_latency(daemons[k].sock, cli_runs))
        results["idle RSS (MiB)"] = {k: daemons[k].rss_kib() / 1024 for k in all_kinds}
    except _SkipSystem:
        pass
    finally:
        for d in daemons.values():
            d.remove()
        shutil.rmtree(certs_root, ignore_errors=True)
    if opts.only in (None, "images"):
        import images

        results.update(images.main(rounds=2 if opts.quick else 3))
    if opts.only in (None, "pull"):
        import pull

        results.update(pull.main(rounds=3 if opts.quick else 5))
        results.update(pull.push_main(rounds=2 if opts.quick else 3))
    if opts.only in (None, "build"):
        import build

        results.update(build.main(rounds=3 if opts.quick else 5))
    if opts.only in (None, "containers"):
        import containers

        results.update(containers.main(runs=5 if opts.quick else 11))
    if opts.only in (None, "networks"):
        import networks

        results.update(networks.main(runs=7 if opts.quick else 21, many=100 if opts.quick else 200))

    if opts.only in (None, "connections"):
        import connections

        results.update(connections.main(n=2000 if opts.quick else 5000))

    higher_is_better = {"ping unix (req/s)", "ping mTLS (req/s)", "100 ctrs, 8 clients (ctr/s)",
                        "200 ctrs on a bridge net (ctr/s)", "100 ctrs on a bridge net (ctr/s)",
                        "ctr/s after the storm", "ctr/s, fresh daemon"}
    cols = [k for k in ("berthd", "baseline", "audit", "authz", "dockerd") if k in all_kinds]
    head = "".join(f"{c:>12}" for c in cols)
    extra = (("  vs dockerd" if "dockerd" in cols else "") + ("  vs baseline" if "baseline" in cols else "")
             + ("  audit/berthd  authz/berthd" if "authz" in cols else ""))
    print(f"\n{'measure':<46}{head}{extra}   (ratios: berthd better when > 1)")
    for name, vals in results.items():
        line = f"{name:<46}" + "".join(f"{vals[c]:>12.4g}" if c in vals else f"{'-':>12}" for c in cols)
        b = vals["berthd"]
        for other in ("dockerd", "baseline"):
            if other in cols and vals.get(other):
                ratio = b / vals[other] if name in higher_is_better else vals[other] / b
                line += f"{ratio:>12.2f}x" if other == "dockerd" else f"{ratio:>13.3f}x"
        for kind in ("audit", "authz"):
            if kind in cols and vals.get(kind) and b:
                ratio = vals[kind] / b if name in higher_is_better else b / vals[kind]
                line += f"{ratio:>13.3f}x"
        print(line)
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
