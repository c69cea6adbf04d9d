"""berth machine create and what changes a provisioned host, against real hosts: each a network
namespace with its own sshd and a private copy of this machine's /etc, /var, /opt and /usr
(tests/lib/machinehost.py), provisioned over SSH from the wheelhouse, running berthd under the
supervisor (the hosts have no systemd of their own), and driven with the real docker CLI over TLS.

The seed article's scenario, in order: two hosts created; `eval $(berth machine env h1)` and a
container run on h1; `ls` shows both Running; `docker --context h2 ps`; regenerate-certs (the old
client certificate refused, the new one accepted); ssh; scp both ways; stop and start; rm --purge.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from berth import __version__
from tests.lib.cleanup import Cleanup
from tests.lib.clis import BERTH, base_env, berth, docker
from tests.lib.daemon import public_tmpdir
from tests.lib.images import busybox_rootfs_tar, config_for, docker_archive
from tests.lib.machinehost import TestHost, make_host

CREATE_TIMEOUT = 600


@dataclass
class Fleet:
    root: str
    hosts: dict[str, TestHost] = field(default_factory=dict)
    created: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)

    @property
    def store(self) -> str:
        return f"{self.root}/machine"

    def env(self, **extra: str) -> dict[str, str]:
        return base_env(MACHINE_STORAGE_PATH=self.store, DOCKER_CONFIG=f"{self.root}/docker", **extra)

    def machine(self, *args: str, timeout: float = 120, **extra: str) -> str:
        r = berth("machine", *args, env=self.env(**extra), timeout=timeout)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout

    def machine_env(self, name: str) -> dict[str, str]:
        env = {}
        for line in self.machine("env", name).splitlines():
            if line.startswith("export "):
                key, _, value = line.removeprefix("export ").partition("=")
                env[key] = json.loads(value)
        return env

    def create(self, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
        h = self.hosts[name]
        return berth("machine", "create", "--driver", "generic", "--generic-ip-address", h.ip,
                     "--generic-ssh-key", h.key, *extra, name, env=self.env(), timeout=CREATE_TIMEOUT)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network and mount namespaces for the test hosts)")
    cleanup = Cleanup()
    try:
        f = Fleet(cleanup.path(public_tmpdir("berth-fleet-")))
        for name in ("h1", "h2", "h3", "h4"):  # h3: the failed creates, then ssh-only; h4: no mirror
            f.hosts[name] = make_host(cleanup, name)
        # h1 and h2 are provisioned one after the other: each create is what a user runs
        f.created["h1"] = f.create("h1", "--engine-label", "role=web", "--engine-opt", "log-level=debug")
        f.created["h2"] = f.create("h2")
        yield f
    finally:
        cleanup.run()


def _image_tar() -> bytes:
    layer = busybox_rootfs_tar()
    return docker_archive([(config_for([layer]), [layer], ["machinebox:latest"])])


def test_create_provisions_each_step_and_writes_a_docker_machine_record(fleet: Fleet) -> None:
    for name in ("h1", "h2"):
        r = fleet.created[name]
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "Docker is up and running!" in r.stdout
        for step in ("Checking the host: done", f"Installing berth {__version__}", "Making certificates: done",
                     "Configuring berthd (supervised): done", "Waiting for the engine at tcp://"):
            assert step in r.stderr, r.stderr
    mdir = f"{fleet.store}/machines/h1"
    cfg = json.load(open(f"{mdir}/config.json"))
    assert cfg["DriverName"] == "generic" and cfg["Driver"]["IPAddress"] == fleet.hosts["h1"].ip
    assert cfg["HostOptions"]["EngineOptions"]["Labels"] == ["role=web"]
    for f, mode in (("ca.pem", 0o444), ("cert.pem", 0o444), ("key.pem", 0o400), ("server.pem", 0o444),
                    ("server-key.pem", 0o400), ("id_rsa", 0o600)):
        assert os.stat(f"{mdir}/{f}").st_mode & 0o777 == mode, f
    assert os.stat(f"{fleet.store}/certs/ca-key.pem").st_mode & 0o777 == 0o400
    # the server certificate names the host by its address and by its own name; the client's has a real CN
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", f"{mdir}/server.pem"], capture_output=True,
                          text=True, check=True).stdout
    assert f"IP Address:{fleet.hosts['h1'].ip}" in text and f"DNS:{os.uname().nodename}" in text
    subject = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in", f"{mdir}/cert.pem"],
                             capture_output=True, text=True, check=True).stdout
    assert "@" in subject and "berth machine" in subject
    # on the host: daemon.json as the issue asks, the label, the flag, berthd under the supervisor
    out = fleet.hosts["h1"].sh("cat /etc/berth/daemon.json; cat /etc/berth/berthd.argv.json; "
                               "stat -c %a /etc/berth/certs/server-key.pem").stdout
    daemon_json = json.loads(out[:out.index("}") + 1])
    assert daemon_json["tlsverify"] is True and "tcp://0.0.0.0:2376" in daemon_json["hosts"]
    assert daemon_json["labels"] == ["role=web"] and "--log-level=debug" in out and out.split()[-1] == "400"


def test_env_points_the_docker_cli_at_h1_and_a_container_runs_there(fleet: Fleet) -> None:
    env = fleet.machine_env("h1")
    assert env["DOCKER_HOST"] == f"tcp://{fleet.hosts['h1'].ip}:2376" and env["DOCKER_TLS_VERIFY"] == "1"
    denv = base_env(**env)
    with open(f"{fleet.root}/image.tar", "wb") as f:
        f.write(_image_tar())
    r = docker("load", "-i", f"{fleet.root}/image.tar", env=denv, timeout=60)
    assert r.returncode == 0, r.stderr
    r = docker("run", "--rm", "--network", "none", "machinebox", "sh", "-c", "echo hello from $(hostname -s)",
               env=denv, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("hello from"), r.stderr
    r = docker("info", "--format", "{{json .Labels}}", env=denv)
    assert json.loads(r.stdout) == ["role=web"], r.stderr


def test_ls_shows_both_running_and_docker_reaches_h2_by_context(fleet: Fleet) -> None:
    rows = {line.split()[0]: line.split() for line in fleet.machine("ls").splitlines()[1:]}
    for name in ("h1", "h2"):
        assert rows[name][2:6] == ["generic", "Running", f"tcp://{fleet.hosts[name].ip}:2376", __version__]
    r = docker("--context", "h2", "ps", "--format", "{{.ID}}", env=base_env(DOCKER_CONFIG=f"{fleet.root}/docker"))
    assert r.returncode == 0 and r.stdout == "", r.stderr
    r = docker("--context", "h2", "info", "--format", "{{.Name}}", env=base_env(DOCKER_CONFIG=f"{fleet.root}/docker"))
    assert r.returncode == 0 and r.stdout.strip() == os.uname().nodename, r.stderr


def _docker_with(cert_dir: str, host: TestHost, *args: str) -> subprocess.CompletedProcess[str]:
    return docker("--tlsverify", f"--tlscacert={cert_dir}/ca.pem", f"--tlscert={cert_dir}/cert.pem",
                  f"--tlskey={cert_dir}/key.pem", "-H", f"tcp://{host.ip}:2376", *args, env=base_env())


def _keep(fleet: Fleet, name: str, label: str) -> str:
    """A copy of machine ``name``'s client material as it is now."""
    dst = f"{fleet.root}/{label}"
    os.makedirs(dst)
    for f in ("ca.pem", "cert.pem", "key.pem"):
        subprocess.run(["cp", f"{fleet.store}/machines/{name}/{f}", f"{dst}/{f}"], check=True)
    return dst


def _berthd_pid(host: TestHost) -> str:
    return host.sh("cat /var/run/berth.pid").stdout.strip()


def test_regenerate_certs_reloads_without_a_restart_and_client_certs_revokes_the_old(fleet: Fleet) -> None:
    h1, h2 = fleet.hosts["h1"], fleet.hosts["h2"]
    pid = _berthd_pid(h1)
    old_server = open(f"{fleet.store}/machines/h1/server.pem").read()
    old_client = _keep(fleet, "h1", "client-before")
    out = fleet.machine("regenerate-certs", "-f", "h1")
    assert "Regenerating TLS certificates for h1" in out
    assert open(f"{fleet.store}/machines/h1/server.pem").read() != old_server
    served = subprocess.run(f"openssl s_client -connect {h1.ip}:2376 -cert {old_client}/cert.pem -key "
                            f"{old_client}/key.pem </dev/null 2>/dev/null | openssl x509 -noout -serial",
                            shell=True, capture_output=True, text=True).stdout
    new_serial = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", f"{fleet.store}/machines/h1/server.pem"],
                                capture_output=True, text=True).stdout
    assert served == new_serial and served  # the host serves the new certificate ...
    assert _berthd_pid(h1) == pid  # ... without a restart
    assert _docker_with(old_client, h1, "version").returncode == 0  # the same client certificate still works

    fleet.machine("regenerate-certs", "-f", "--client-certs", "h1")
    for host in (h1, h2):
        r = _docker_with(old_client, host, "version", "--format", "{{.Server.Version}}")
        assert r.returncode != 0 and "certificate" in r.stderr.lower(), r.stderr  # revoked on every host
    r = docker("version", "--format", "{{.Server.Version}}", env=base_env(**fleet.machine_env("h1")))
    assert r.returncode == 0 and r.stdout.strip() == __version__, r.stderr
    r = docker("--context", "h2", "version", "--format", "{{.Server.Version}}",
               env=base_env(DOCKER_CONFIG=f"{fleet.root}/docker"))
    assert r.returncode == 0, r.stderr  # the context got the new client certificate
    assert _berthd_pid(h1) == pid


def test_ssh_and_scp_to_a_provisioned_host(fleet: Fleet) -> None:
    assert fleet.machine("ssh", "h1", "uname").strip() == "Linux"
    # interactive: a pty on the host (script(1) gives this side a terminal), the shell's exit code ours
    r = subprocess.run(["script", "-qec", f"{BERTH} machine ssh h1", "/dev/null"], input="tty\nexit 5\n",
                       capture_output=True, text=True, timeout=60, env=fleet.env())
    assert r.returncode == 5 and "/dev/pts/" in r.stdout, (r.stdout, r.stderr)
    r = berth("machine", "ssh", "h1", "echo out; exit 7", env=fleet.env())
    assert (r.returncode, r.stdout) == (7, "out\n")
    assert fleet.hosts["h1"].host_key_pub in open(f"{fleet.store}/machines/h1/known_hosts").read()
    src = f"{fleet.root}/scp-src"
    os.makedirs(f"{src}/sub")
    with open(f"{src}/sub/f", "w") as f:
        f.write("there and back\n")
    fleet.machine("scp", "-r", src, "h1:/opt/from-runner")
    assert fleet.machine("ssh", "h1", "cat /opt/from-runner/sub/f") == "there and back\n"
    assert not os.path.exists("/opt/from-runner")  # the host's /opt, not this machine's
    fleet.machine("scp", "h1:/etc/berth/daemon.json", f"{fleet.root}/daemon.json")
    assert json.load(open(f"{fleet.root}/daemon.json"))["tlsverify"] is True


def test_the_supervisor_starts_a_berthd_that_died_again(fleet: Fleet) -> None:
    h1 = fleet.hosts["h1"]
    pid = _berthd_pid(h1)
    assert h1.sh(f"kill -KILL {pid}").returncode == 0
    r = h1.sh("for i in $(seq 1 100); do p=$(cat /var/run/berth.pid 2>/dev/null); "
              f"if [ -n \"$p\" ] && [ \"$p\" != {pid} ] && kill -0 $p 2>/dev/null && "
              "berth -H unix:///var/run/docker.sock version >/dev/null 2>&1; then echo back; exit 0; fi; "
              "sleep 0.2; done; tail /var/log/berth/berthd.log; exit 1")
    assert r.stdout.strip() == "back", r.stdout + r.stderr
    assert "berthd exited with -9; starting it again" in h1.sh("cat /var/log/berth/berthd.log").stdout


def test_stop_and_start(fleet: Fleet) -> None:
    pids = fleet.hosts["h2"].sh("cat /run/berth-supervise.pid /var/run/berth.pid").stdout.split()
    assert len(pids) == 2
    out = fleet.machine("stop", "h2")
    assert 'Stopping "h2"...' in out and 'Machine "h2" was stopped.' in out
    assert fleet.machine("status", "h2").strip() == "Stopped"
    r = docker("--context", "h2", "ps", env=base_env(DOCKER_CONFIG=f"{fleet.root}/docker"))
    assert r.returncode != 0
    assert fleet.hosts["h2"].sh(f"kill -0 {pids[0]} || kill -0 {pids[1]} || echo gone").stdout == "gone\n"
    out = fleet.machine("start", "h2")
    assert 'Machine "h2" was started.' in out
    assert fleet.machine("status", "h2").strip() == "Running"
    pid = _berthd_pid(fleet.hosts["h2"])
    assert 'Machine "h2" was restarted.' in fleet.machine("restart", "h2")
    assert _berthd_pid(fleet.hosts["h2"]) != pid


def test_upgrade_reinstalls_this_version_and_restarts(fleet: Fleet) -> None:
    pid = _berthd_pid(fleet.hosts["h2"])
    r = berth("machine", "upgrade", "h2", env=fleet.env(), timeout=CREATE_TIMEOUT)
    assert r.returncode == 0 and f"Upgrading berth to {__version__}: done" in r.stderr, r.stderr
    assert _berthd_pid(fleet.hosts["h2"]) != pid
    assert fleet.machine("ls", "--filter", "name=h2", "--format", "{{.DockerVersion}}").strip() == __version__


def test_revoke_pushes_the_crl_to_every_host(fleet: Fleet) -> None:
    other = f"{fleet.root}/other-client"
    r = berth("pki", "client", "--dir", f"{fleet.store}/certs", "--cn", "ci-runner", "--out", other)
    assert r.returncode == 0, r.stderr
    for host in (fleet.hosts["h1"], fleet.hosts["h2"]):
        assert _docker_with(other, host, "version").returncode == 0  # a certificate of the store's CA
    out = fleet.machine("revoke", f"{other}/cert.pem")
    assert out.startswith("revoked ") and "on 2 host(s)" in out
    for host in (fleet.hosts["h1"], fleet.hosts["h2"]):
        r = _docker_with(other, host, "version")
        assert r.returncode != 0 and "certificate" in r.stderr.lower(), r.stderr
        assert _docker_with(f"{fleet.store}/machines/h1", host, "version").returncode == 0
    r = berth("machine", "revoke", f"{fleet.store}/certs/cert.pem", env=fleet.env())
    assert r.returncode != 0 and "this store's own client certificate" in r.stderr


def _poll_h1(fleet: Fleet, stop: threading.Event, ok: list[int], refused: list[str]) -> None:
    """GET /version on h1 with the machine's client material as it is at each moment, until ``stop``."""
    mdir, ip = f"{fleet.store}/machines/h1", fleet.hosts["h1"].ip
    while not stop.is_set():
        try:
            ctx = ssl.create_default_context(cafile=f"{mdir}/ca.pem")
            ctx.load_cert_chain(f"{mdir}/cert.pem", f"{mdir}/key.pem")
        except (OSError, ssl.SSLError):
            continue  # read between two renames (a new certificate with the old key): not the host's doing
        conn = http.client.HTTPSConnection(ip, 2376, context=ctx, timeout=10)
        try:
            conn.request("GET", "/version")
            status = conn.getresponse().status
            if status == 200:
                ok.append(1)
            else:
                refused.append(f"HTTP {status}")
        except (OSError, ssl.SSLError) as exc:
            refused.append(repr(exc))
        finally:
            conn.close()


def test_rotate_ca_replaces_the_ca_everywhere_with_no_moment_a_client_is_refused(fleet: Fleet) -> None:
    before = _keep(fleet, "h1", "client-before-rotation")
    old_ca = open(f"{fleet.store}/certs/ca.pem").read()
    stop, ok, refused = threading.Event(), [], []  # type: ignore[var-annotated]
    poller = threading.Thread(target=_poll_h1, args=(fleet, stop, ok, refused))
    poller.start()
    try:
        out = fleet.machine("rotate-ca", timeout=300)
    finally:
        stop.set()
        poller.join()
    assert refused == [] and len(ok) > 10, (refused[:5], len(ok))
    assert "2 host(s) trust it alone" in out
    assert open(f"{fleet.store}/certs/ca.pem").read() != old_ca
    for name in ("h1", "h2"):
        host = fleet.hosts[name]
        r = docker("version", "--format", "{{.Server.Version}}", env=base_env(**fleet.machine_env(name)))
        assert r.returncode == 0 and r.stdout.strip() == __version__, r.stderr
        r = _docker_with(before, host, "version")  # the old CA's client: refused, and it refuses the new server
        assert r.returncode != 0
        assert host.sh("grep -c BEGIN /etc/berth/certs/ca.pem").stdout.strip() == "1"
    r = docker("--context", "h1", "ps", env=base_env(DOCKER_CONFIG=f"{fleet.root}/docker"))
    assert r.returncode == 0, r.stderr


def test_a_failed_create_says_which_step_and_registers_nothing(fleet: Fleet) -> None:
    r = fleet.create("h3", "--generic-ssh-port", "2222")
    assert r.returncode != 0
    assert "Connecting to root@" in r.stderr and f"failed on h3 ({fleet.hosts['h3'].ip})" in r.stderr
    assert "What to do: check the address, the SSH user and key" in r.stderr
    assert not os.path.exists(f"{fleet.store}/machines/h3")
    # berthd refuses the configuration (a key both a flag and in daemon.json): dockerd's words, nothing kept
    r = fleet.create("h3", "--engine-opt", "tlsverify=false")
    assert r.returncode != 0 and "Configuring berthd (supervised)" in r.stderr
    assert "specified both as a flag and in the configuration file: tlsverify" in r.stderr, r.stderr
    assert not os.path.exists(f"{fleet.store}/machines/h3")
    assert fleet.hosts["h3"].sh("ls /etc/berth").stdout.split() == ["certs"]  # no daemon.json half written
    r = fleet.create("h1")
    assert r.returncode != 0 and 'Host already exists: "h1"' in r.stderr


def test_a_missing_package_and_no_mirror_is_a_clear_error(fleet: Fleet) -> None:
    h4 = fleet.hosts["h4"]
    # tini, removed from h4's private copy of dpkg's database and /usr: the host has no route to a mirror
    # (and its .deb from apt's cache, which would install it offline)
    assert h4.sh("dpkg --remove --force-depends tini >/dev/null 2>&1; rm -f /var/cache/apt/archives/tini_*.deb; "
                 "command -v tini || echo gone").stdout == "gone\n"
    r = fleet.create("h4")
    assert r.returncode != 0
    assert "(h4) Installing tini with the host's apt: failed" in r.stderr, r.stderr
    assert "does it reach a Debian mirror?" in r.stderr and "What to do: give the host a route to a Debian mirror" in r.stderr
    assert not os.path.exists(f"{fleet.store}/machines/h4")


def test_a_host_whose_ssh_key_changed_is_refused(fleet: Fleet) -> None:
    kh = f"{fleet.store}/machines/h1/known_hosts"
    saved = open(kh).read()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{fleet.root}/impostor"], check=True)
    kind, key = open(f"{fleet.root}/impostor.pub").read().split()[:2]
    try:
        with open(kh, "w") as f:
            f.write(f"{fleet.hosts['h1'].ip} {kind} {key}\n")
        r = berth("machine", "restart", "h1", env=fleet.env(), timeout=120)
        assert r.returncode != 0 and "is not the one remembered" in r.stderr, r.stderr
        r = berth("machine", "ssh", "h1", "true", env=fleet.env())
        assert r.returncode == 255 and "Host key verification failed" in r.stderr
    finally:
        with open(kh, "w") as f:
            f.write(saved)
    assert fleet.machine("ssh", "h1", "echo back").strip() == "back"


def test_ssh_only_has_no_tcp_port_and_is_reached_through_ssh(fleet: Fleet) -> None:
    h3 = fleet.hosts["h3"]
    created = r = fleet.create("h3", "--ssh-only")
    assert r.returncode == 0, r.stderr
    assert h3.sh("ss -ltnH").stdout.count(":2376") == 0
    assert json.load(open(f"{fleet.store}/machines/h3/config.json"))["Berth"]["SSHOnly"] is True
    assert fleet.machine("url", "h3").strip() == f"ssh://root@{h3.ip}"
    env = fleet.machine_env("h3")
    assert env == {"DOCKER_HOST": f"ssh://root@{h3.ip}", "DOCKER_MACHINE_NAME": "h3"}
    assert fleet.machine("status", "h3").strip() == "Running"
    # the clients run OpenSSH, which finds the key where a user keeps it (~/.ssh/config, as create's
    # output says); OpenSSH reads the passwd entry's home, not $HOME: here an `ssh` first on PATH gives -F
    bindir = f"{fleet.root}/bin"
    os.makedirs(bindir)
    with open(f"{fleet.root}/ssh_config", "w") as f:
        f.write(f"Host {h3.ip}\n  IdentityFile {h3.key}\n  IdentitiesOnly yes\n  BatchMode yes\n"
                f"  UserKnownHostsFile {fleet.store}/machines/h3/known_hosts\n")
    with open(f"{bindir}/ssh", "w") as f:
        f.write(f"#!/bin/sh\nexec /usr/bin/ssh -F {fleet.root}/ssh_config \"$@\"\n")
    os.chmod(f"{bindir}/ssh", 0o755)
    assert f"IdentityFile {fleet.store}/machines/h3/id_rsa" in created.stdout  # create says what to put there
    cenv = base_env(PATH=f"{bindir}:{os.environ['PATH']}", DOCKER_CONFIG=f"{fleet.root}/docker")
    r = berth("--context", "h3", "version", "--format", "{{.Server.Version}}", env=cenv)
    assert r.returncode == 0 and r.stdout.strip() == __version__, r.stderr
    r = docker("--context", "h3", "ps", "--format", "{{.ID}}", env=cenv)
    assert r.returncode == 0, r.stderr  # the docker CLI's `docker system dial-stdio` reaches berthd's socket


def test_rm_purge_removes_berth_from_the_host(fleet: Fleet) -> None:
    h2 = fleet.hosts["h2"]
    out = fleet.machine("rm", "-y", "--purge", "h2", timeout=300)
    assert "Successfully removed h2" in out
    left = h2.sh("ls -d /opt/berth /etc/berth /usr/local/bin/berthd /var/log/berth 2>/dev/null; "
                 "ls /run/berth-supervise.pid /var/run/berth.pid; ls -A /var/lib/berth").stdout
    assert left == ""
    assert "h2" not in fleet.machine("ls", "-q").split()
    r = docker("--context", "h2", "ps", env=base_env(DOCKER_CONFIG=f"{fleet.root}/docker"))
    assert r.returncode != 0 and "h2" in r.stderr  # the context went with the record
    assert fleet.machine("ls", "-q").split() == ["h1", "h3"]  # h4 never made it
