"""berth machine create and what changes a provisioned host, against real hosts: each a network
namespace with its own sshd and a private copy of this machine's /etc, /var, /opt and /usr
(tests/lib/machinehost.py), provisioned over SSH from the wheelhouse, running berthd under the
supervisor (the hosts have no systemd of their own), and driven with the real docker CLI over TLS.

The seed article's scenario, in order: two hosts created; `eval $(berth machine env h1)` and a
container run on h1; `ls` shows both Running; `docker --context h2 ps`; regenerate-certs (the old
client certificate refused, the new one accepted); ssh; scp both ways; stop and start; rm --purge.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from berth import __version__
from tests.lib.cleanup import Cleanup
from tests.lib.clis import base_env, berth, docker
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
        for name in ("h1", "h2"):
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
