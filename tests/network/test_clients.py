"""The network commands of real clients against berth: berth's own CLI, dockerd's shapes compared
with berth's, docker-compose; and netlink sessions that never fall back to the host's namespace."""

from __future__ import annotations

import json
import os
import subprocess

import docker
import pytest

from tests.lib.images import busybox_rootfs_tar
from tests.network.netenv import HTTPD, addr_of, api, dk, free_port, http_get, key_paths, links, ok, start


def test_berth_cli_networks_and_ports(netenv):
    from tests.lib.clis import berth

    d = start(netenv)

    def b(*args: str) -> str:
        r = berth("-H", d.url, *args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout

    nid = b("network", "create", "--subnet", "10.0.21.0/24", "--ip-range", "10.0.21.64/26", "--gateway",
            "10.0.21.254", "--aux-address", "x=10.0.21.64", "-o", "com.docker.network.bridge.name=btcli0",
            "clinet").strip()
    assert "btcli0" in links()
    assert b("network", "ls", "-q", "--filter", "name=clinet").strip() == nid[:12]
    assert "clinet" in b("network", "ls").split()
    info = json.loads(b("network", "inspect", "clinet"))[0]
    assert info["IPAM"]["Config"] == [{"Subnet": "10.0.21.0/24", "IPRange": "10.0.21.64/26",
                                       "Gateway": "10.0.21.254", "AuxiliaryAddresses": {"x": "10.0.21.64"}}]
    port = free_port()
    b("run", "-d", "--name", "web", "--network", "clinet", "--network-alias", "www", "-p", f"127.0.0.1:{port}:80",
      "bb", *HTTPD)
    assert addr_of(d, "web", "clinet") == "10.0.21.65"  # .64 is the aux address
    assert http_get(f"http://127.0.0.1:{port}/") == "hello-from-httpd\n"
    assert b("port", "web").strip() == f"80/tcp -> 127.0.0.1:{port}"
    assert b("port", "web", "80").strip() == f"127.0.0.1:{port}"
    assert f"127.0.0.1:{port}->80/tcp" in b("ps")
    b("network", "create", "other")
    b("network", "connect", "--alias", "second", "other", "web")
    assert set(api(d).inspect_container("web")["NetworkSettings"]["Networks"]) == {"clinet", "other"}
    b("network", "disconnect", "other", "web")
    b("rm", "-f", "web")
    assert "Deleted Networks:" in b("network", "prune", "-f")
    assert "btcli0" not in links()


def test_network_shapes_match_dockerd(netenv):
    from tests.lib.dockerd import Dockerd

    dockerd = Dockerd().start()
    try:
        d = start(netenv)
        subprocess.run(["docker", "-H", dockerd.url, "import", "-", "bb:latest"], input=busybox_rootfs_tar(),
                       check=True, capture_output=True)
        views = {}
        for daemon, subnet in ((dockerd, "10.0.30"), (d, "10.0.31")):
            ok(daemon, "network", "create", "--subnet", f"{subnet}.0/24", "--ip-range", f"{subnet}.128/25",
               "--gateway", f"{subnet}.1", "--label", "a=b", "shape")
            ok(daemon, "run", "-d", "--name", "s1", "--network", "shape", "--ip", f"{subnet}.5", "--network-alias",
               "al", "bb", "sleep", "300")
            c = docker.APIClient(base_url=daemon.url, version="1.41", timeout=60)
            views[daemon] = (c.inspect_network("shape"), c.inspect_container("s1")["NetworkSettings"],
                             c.networks(names=["shape"])[0])
            r = dk(daemon, "network", "create", "shape")
            views[(daemon, "dup")] = r.stderr.strip()
            r = dk(daemon, "network", "rm", "bridge" if daemon is d else "host")
            views[(daemon, "rm")] = r.stderr.strip()
        (dn, dset, dls), (bn, bset, bls) = views[dockerd], views[d]
        assert key_paths(dn) - key_paths(bn) == set()
        assert key_paths(dset) - key_paths(bset) == set()
        assert key_paths(dls) - key_paths(bls) == set()
        for key in ("Driver", "Scope", "Internal", "Attachable", "Labels", "Name", "EnableIPv6"):
            assert dn[key] == bn[key], key
        assert [dict(p, Subnet="", IPRange="", Gateway="") for p in dn["IPAM"]["Config"]] == \
            [dict(p, Subnet="", IPRange="", Gateway="") for p in bn["IPAM"]["Config"]]
        dnet, bnet = dset["Networks"]["shape"], bset["Networks"]["shape"]
        assert (dnet["IPAddress"], dnet["IPPrefixLen"], dnet["Gateway"]) == ("10.0.30.5", 24, "10.0.30.1")
        assert (bnet["IPAddress"], bnet["IPPrefixLen"], bnet["Gateway"]) == ("10.0.31.5", 24, "10.0.31.1")
        assert dnet["IPAMConfig"] == {"IPv4Address": "10.0.30.5"} and bnet["IPAMConfig"] == {"IPv4Address": "10.0.31.5"}
        assert "al" in dnet["Aliases"] and "al" in bnet["Aliases"]
        assert views[(dockerd, "dup")] == views[(d, "dup")]
        assert "pre-defined network and cannot be removed" in views[(dockerd, "rm")]
        assert "pre-defined network and cannot be removed" in views[(d, "rm")]
    finally:
        subprocess.run(["docker", "-H", dockerd.url, "rm", "-f", "s1"], capture_output=True)
        subprocess.run(["docker", "-H", dockerd.url, "network", "rm", "shape"], capture_output=True)
        dockerd.stop()


def test_netlink_sessions_stay_in_their_namespace(tmp_path, cleanup):
    """A container's eth0 has the host's name: a session must never fall back to the host's namespace."""
    from berth.linux import netlink, netns

    netns.prepare_dir(str(tmp_path))
    cleanup.mount(str(tmp_path))  # prepare_dir makes the directory a shared mount of itself
    path = str(tmp_path / "ns")
    netns.create(path)
    cleanup.add(f"netns {path}", lambda: netns.remove(path))
    assert netlink.link_names(path) == ["lo"]
    with netlink.session(path) as ipr:
        assert netlink.index(ipr, "eth0") is None


COMPOSE = """
version: "3.8"
services:
  web:
    image: bb
    command: ["sh", "-c", "mkdir -p /www && echo hello-compose > /www/index.html && busybox httpd -f -p 80 -h /www"]
    ports:
      - "127.0.0.1:{port}:80"
  client:
    image: bb
    command: ["sleep", "300"]
    depends_on: [web]
"""


def test_docker_compose_project(netenv, tmp_path):
    """docker-compose 1.29 (Debian's; Python, docker-py underneath) drives berth unchanged: a project
    network, service names in the embedded DNS, a published port, exec, logs, down."""
    import shutil

    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose)")
    d = start(netenv)
    port = free_port()
    (tmp_path / "docker-compose.yml").write_text(COMPOSE.format(port=port))
    env = {**os.environ, "DOCKER_HOST": d.url, "COMPOSE_PROJECT_NAME": "proj"}

    def dc(*args: str) -> str:
        r = subprocess.run([compose, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout + r.stderr

    try:
        dc("up", "-d")
        assert http_get(f"http://127.0.0.1:{port}/") == "hello-compose\n"
        out = dc("exec", "-T", "client", "sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 web 80")
        assert "hello-compose" in out
        assert "proj_default" in [n["Name"] for n in api(d).networks()]
        ps = dc("ps")
        assert "proj_web_1" in ps and f"127.0.0.1:{port}->80/tcp" in ps
        dc("down", "-t", "1")  # sh and sleep ignore SIGTERM as PID 1
        assert "proj_default" not in [n["Name"] for n in api(d).networks()]
        assert api(d).containers(all=True) == []
    finally:
        subprocess.run([compose, "down", "-t", "1"], cwd=tmp_path, env=env, capture_output=True, timeout=120)
