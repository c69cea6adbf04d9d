"""berth machine against a store in docker-machine 0.16's layout (written here file by file, as
docker-machine leaves it): the hosts are listed with their state and engine version, and the real
docker CLI reaches a host through `berth machine env` and `berth machine config` over mutual TLS.

The "host" is a real berthd listening on 127.0.0.1 with the store's server certificate: provisioning
over SSH (`berth machine create`) is not part of this file."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from berth import __version__
from tests.lib.clis import base_env, berth, docker
from tests.lib.daemon import Berthd, free_port, public_tmpdir


@dataclass
class Store:
    path: str
    h1: Berthd
    port: int

    def env(self, **extra: str) -> dict[str, str]:
        return base_env(MACHINE_STORAGE_PATH=self.path, **extra)

    def machine(self, *args: str, **extra: str) -> str:
        r = berth("machine", *args, env=self.env(**extra))
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout


def _pki(*args: str) -> None:
    r = berth("pki", *args)
    assert r.returncode == 0, r.stderr


def _config(name: str, store: str, ip: str, engine_port: int, ssh_port: int) -> dict:
    """A host's config.json as docker-machine 0.16's generic driver writes it."""
    certs, mdir = f"{store}/certs", f"{store}/machines/{name}"
    return {
        "ConfigVersion": 3,
        "Driver": {"IPAddress": ip, "MachineName": name, "SSHUser": "root", "SSHPort": ssh_port,
                   "SSHKeyPath": f"{mdir}/id_rsa", "StorePath": store, "SwarmMaster": False, "SwarmHost": "",
                   "SwarmDiscovery": "", "EnginePort": engine_port, "SSHKey": "/root/.ssh/id_rsa"},
        "DriverName": "generic",
        "HostOptions": {
            "Driver": "", "Memory": 0, "Disk": 0,
            "EngineOptions": {"ArbitraryFlags": [], "Dns": None, "GraphDir": "", "Env": [], "Ipv6": False,
                              "InsecureRegistry": [], "Labels": [], "LogLevel": "", "StorageDriver": "",
                              "SelinuxEnabled": False, "TlsVerify": True, "RegistryMirror": [],
                              "InstallURL": "https://get.docker.com"},
            "SwarmOptions": {"IsSwarm": False, "Address": "", "Discovery": "", "Agent": False, "Master": False,
                             "Host": "tcp://0.0.0.0:3376", "Image": "swarm:latest", "Strategy": "spread",
                             "Heartbeat": 0, "Overcommit": 0, "ArbitraryFlags": [], "ArbitraryJoinFlags": [],
                             "Env": None, "IsExperimental": False},
            "AuthOptions": {"CertDir": certs, "CaCertPath": f"{certs}/ca.pem", "CaPrivateKeyPath": f"{certs}/ca-key.pem",
                            "CaCertRemotePath": "", "ServerCertPath": f"{mdir}/server.pem",
                            "ServerKeyPath": f"{mdir}/server-key.pem", "ClientKeyPath": f"{certs}/key.pem",
                            "ServerCertRemotePath": "", "ServerKeyRemotePath": "",
                            "ClientCertPath": f"{certs}/cert.pem", "ServerCertSANs": [], "StorePath": mdir}},
        "Name": name,
    }


def _hold() -> tuple[socket.socket, int]:
    """A loopback port bound and never listened on: connections to it are refused, and nothing else gets it."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, int(s.getsockname()[1])


@pytest.fixture
def store(make_berthd) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    root = public_tmpdir("berth-machine-")
    path = f"{root}/machine"
    held: list[tuple[socket.socket, int]] = []
    try:
        _pki("init", "--dir", f"{path}/certs")
        _pki("client", "--dir", f"{path}/certs", "--cn", "machine-client", "--out", f"{root}/client")
        for f in ("cert.pem", "key.pem"):
            shutil.copy(f"{root}/client/{f}", f"{path}/certs/{f}")
        port = free_port()
        # h2's ports are held (bound, never listening) so that no other test's server takes them: it stays down
        held += [_hold() for _ in range(3)]
        for name, engine_port, ssh_port in (("h1", port, held[0][1]), ("h2", held[1][1], held[2][1])):
            mdir = f"{path}/machines/{name}"
            _pki("server", "--dir", f"{path}/certs", "--cn", name, "--san", "IP:127.0.0.1", "--out", f"{root}/{name}")
            os.makedirs(mdir)
            shutil.copy(f"{root}/{name}/cert.pem", f"{mdir}/server.pem")
            shutil.copy(f"{root}/{name}/key.pem", f"{mdir}/server-key.pem")
            for f in ("ca.pem", "cert.pem", "key.pem"):
                shutil.copy(f"{path}/certs/{f}", f"{mdir}/{f}")
            with open(f"{mdir}/config.json", "w") as out:
                json.dump(_config(name, path, "127.0.0.1", engine_port, ssh_port), out, indent=4)
        os.makedirs(f"{path}/machines/broken")
        with open(f"{path}/machines/broken/config.json", "w") as out:
            out.write('{"Driver": {"IPAddress": 7}}')
        d = make_berthd()
        d.hosts = [f"unix://{d.sock}", f"tcp://127.0.0.1:{port}"]
        d.args = ["--tlsverify", "--tlscacert", f"{path}/certs/ca.pem", "--tlscert", f"{path}/machines/h1/server.pem",
                  "--tlskey", f"{path}/machines/h1/server-key.pem"]
        d.start(wait_for=[port])
        yield Store(path, d, port)
    finally:
        for sock, _ in held:
            sock.close()
        shutil.rmtree(root, ignore_errors=True)


def test_ls_shows_each_host_its_state_and_engine(store: Store) -> None:
    out = store.machine("ls", "--timeout", "3").splitlines()
    assert out[0].split() == ["NAME", "ACTIVE", "DRIVER", "STATE", "URL", "DOCKER", "ERRORS"]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert rows["h1"][:6] == ["h1", "-", "generic", "Running", f"tcp://127.0.0.1:{store.port}", __version__]
    assert rows["h2"][2:4] == ["generic", "Stopped"]
    assert rows["broken"][1:3] == ["-", "Error"] and "Driver.IPAddress must be a string" in out[1]
    assert store.machine("ls", "-q", "--filter", "state=Running").split() == ["h1"]
    assert store.machine("ls", "--format", "{{.Name}} {{.Active}}", "--filter", "name=h1",
                         DOCKER_HOST=f"tcp://127.0.0.1:{store.port}").strip() == "h1 *"
    r = berth("machine", "ls", "--filter", "colour=red", env=store.env())
    assert r.returncode != 0 and "Unsupported filter key 'colour'" in r.stderr


def test_the_docker_cli_reaches_a_host_through_env_and_config(store: Store) -> None:
    exports = store.machine("env", "h1").splitlines()
    mdir = f"{store.path}/machines/h1"
    assert exports == [
        'export DOCKER_TLS_VERIFY="1"', f'export DOCKER_HOST="tcp://127.0.0.1:{store.port}"',
        f'export DOCKER_CERT_PATH="{mdir}"', 'export DOCKER_MACHINE_NAME="h1"',
        "# Run this command to configure your shell: ", "# eval $(berth machine env h1)"]
    env = {}
    for line in exports[:4]:
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = json.loads(value)
    r = docker("version", "--format", "{{.Server.Version}}", env=base_env(**env))
    assert r.returncode == 0 and r.stdout.strip() == __version__, r.stderr
    flags = shlex.split(store.machine("config", "h1"))
    assert flags == ["--tlsverify", f"--tlscacert={mdir}/ca.pem", f"--tlscert={mdir}/cert.pem",
                     f"--tlskey={mdir}/key.pem", f"-H=tcp://127.0.0.1:{store.port}"]
    r = docker(*flags, "info", "--format", "{{.OSType}}")
    assert r.returncode == 0 and r.stdout.strip() == "linux", r.stderr
    assert store.machine("active", DOCKER_HOST=env["DOCKER_HOST"]).strip() == "h1"
    r = berth("machine", "active", env=store.env(DOCKER_HOST="tcp://127.0.0.1:1"))
    assert r.returncode != 0 and "No active host found" in r.stderr


def test_ip_url_status_inspect_and_unknown_hosts(store: Store) -> None:
    assert store.machine("ip", "h1").strip() == "127.0.0.1"
    assert store.machine("url", "h1").strip() == f"tcp://127.0.0.1:{store.port}"
    assert store.machine("status", "h1").strip() == "Running"
    assert store.machine("status", "h2").strip() == "Stopped"
    assert store.machine("inspect", "--format", "{{.Driver.EnginePort}}", "h1").strip() == str(store.port)
    assert json.loads(store.machine("inspect", "h1"))["HostOptions"]["AuthOptions"]["StorePath"].endswith("/h1")
    r = berth("machine", "ip", "nosuch", env=store.env())
    assert r.returncode != 0 and 'Host does not exist: "nosuch"' in r.stderr
    r = berth("machine", "ip", "../h1", env=store.env())
    assert r.returncode != 0 and "invalid machine name" in r.stderr


def test_env_for_every_shell_unset_and_no_proxy(store: Store) -> None:
    port = store.port
    assert store.machine("env", "--shell", "fish", "h1").splitlines()[1] == \
        f'set -gx DOCKER_HOST "tcp://127.0.0.1:{port}";'
    assert store.machine("env", "--shell", "powershell", "h1").splitlines()[-1] == \
        "# & berth machine env h1 | Invoke-Expression"
    assert store.machine("env", "--shell", "cmd", "h1").splitlines()[0] == "SET DOCKER_TLS_VERIFY=1"
    assert store.machine("env", "--no-proxy", "h1", NO_PROXY="example.test").splitlines()[4] == \
        'export NO_PROXY="example.test,127.0.0.1"'
    assert store.machine("env", "-u").splitlines()[:4] == [
        "unset DOCKER_TLS_VERIFY", "unset DOCKER_HOST", "unset DOCKER_CERT_PATH", "unset DOCKER_MACHINE_NAME"]
    assert store.machine("env", "-u", "--shell", "powershell").splitlines()[0] == \
        "Remove-Item Env:\\\\DOCKER_TLS_VERIFY"


def test_ssh_and_scp_check_the_host_key_and_keep_the_exit_code(store: Store, cleanup) -> None:  # type: ignore[no-untyped-def]
    from tests.system.test_ssh import start_sshd

    _env, w = start_sshd(cleanup, store.h1.url, ("root",))
    port = int(next(line.split()[1] for line in open(f"{w}/sshd_config") if line.startswith("Port ")))
    mdir = f"{store.path}/machines/h3"
    os.makedirs(mdir)
    cfg = _config("h3", store.path, "127.0.0.1", free_port(), port)
    cfg["Driver"]["SSHKeyPath"] = f"{w}/docker-remote"  # a key sshd lets in
    with open(f"{mdir}/config.json", "w") as out:
        json.dump(cfg, out)
    assert store.machine("ssh", "h3", "uname").strip() == "Linux"
    host_key = open(f"{w}/host_key.pub").read().split()[1]
    assert host_key in open(f"{mdir}/known_hosts").read()  # the host's key, remembered the first time
    r = berth("machine", "ssh", "h3", "echo out; exit 3", env=store.env())  # as ssh: one command line
    assert (r.returncode, r.stdout) == (3, "out\n")
    work = cleanup.path(public_tmpdir("berth-scp-"))
    os.makedirs(f"{work}/tree/sub")
    with open(f"{work}/tree/sub/f", "w") as f:
        f.write("payload\n")
    store.machine("scp", "-r", f"{work}/tree", f"h3:{work}/there")
    store.machine("scp", f"h3:{work}/there/sub/f", f"{work}/back")
    assert open(f"{work}/back").read() == "payload\n"
    # a host whose key changed is refused (docker-machine accepted any key)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{work}/otherkey"], check=True)
    kind, key = open(f"{work}/otherkey.pub").read().split()[:2]
    with open(f"{mdir}/known_hosts", "w") as f:
        f.write(f"[127.0.0.1]:{port} {kind} {key}\n")
    r = berth("machine", "ssh", "h3", "uname", env=store.env())
    assert r.returncode == 255 and "Host key verification failed" in r.stderr, r.stderr


def test_rm_asks_then_removes_the_record_only(store: Store) -> None:
    r = berth("machine", "rm", "h2", input="n\n", env=store.env())
    assert r.returncode == 1 and "Are you sure?" in r.stdout and os.path.isdir(f"{store.path}/machines/h2")
    r = berth("machine", "rm", "h2", input="y\n", env=store.env())
    assert r.returncode == 0 and "Successfully removed h2" in r.stdout
    assert not os.path.exists(f"{store.path}/machines/h2") and os.path.isdir(f"{store.path}/machines/h1")
    r = berth("machine", "rm", "-y", "broken", env=store.env())
    assert r.returncode != 0 and "Driver.IPAddress must be a string" in r.stderr  # unreadable: kept
    assert store.machine("rm", "-f", "-y", "broken").strip() == "Successfully removed broken"
    r = berth("machine", "rm", "-y", "nosuch", env=store.env())
    assert r.returncode != 0 and 'Host does not exist: "nosuch"' in r.stderr
    assert store.machine("ls", "-q").split() == ["h1"]


def test_a_test_host_is_its_own_machine_and_keeps_what_it_writes(store: Store, cleanup) -> None:  # type: ignore[no-untyped-def]
    """The hosts `create` will provision: a namespace of their own reached over a veth, an sshd on
    port 22 of their address, and what they write to /etc, /var, /opt, /usr and /run their own."""
    from tests.lib.machinehost import make_host

    host = make_host(cleanup, "h4")
    mdir = f"{store.path}/machines/h4"
    os.makedirs(mdir)
    cfg = _config("h4", store.path, host.ip, 2376, 22)
    cfg["Driver"]["SSHKeyPath"] = host.key
    with open(f"{mdir}/config.json", "w") as out:
        json.dump(cfg, out)
    probe = f"berth-probe-{os.getpid()}"
    out = store.machine("ssh", "h4", f"ip -o -4 addr show; ip route; mkdir -p /etc/{probe} /opt/{probe}; "
                        f"touch /run/{probe} /usr/{probe}; ls -d /etc/{probe} /usr/{probe}; cat /etc/hostname")
    assert f"{host.ip}/30" in out and "default" not in out  # its own address, and no way out
    assert f"/etc/{probe}" in out and open("/etc/hostname").read() in out  # this machine's /etc, written privately
    assert not any(os.path.exists(f"{d}/{probe}") for d in ("/etc", "/opt", "/run", "/usr"))
    assert host.host_key_pub in open(f"{mdir}/known_hosts").read()
    line = next(row for row in store.machine("ls", "-t", "2").splitlines() if row.startswith("h4 "))
    assert line.split()[3] == "Stopped"  # sshd answers, the engine's port refuses: the engine is stopped
