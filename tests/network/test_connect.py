"""Containers joining and leaving networks: connect and disconnect while running, ``container:``
mode, legacy links' environment, events, prune."""

from __future__ import annotations

import json
import socket
import time

import docker

from tests.network.netenv import HTTPD, addr_of, api, dk, free_port, http_get, ok, start


def test_connect_and_disconnect_a_running_container(netenv):
    d = start(netenv)
    ok(d, "network", "create", "--subnet", "10.0.5.0/24", "n1")
    ok(d, "network", "create", "--subnet", "10.0.6.0/24", "n2")
    ok(d, "run", "-d", "--name", "c1", "--network", "n1", "bb", "sleep", "300")
    ok(d, "run", "-d", "--name", "c2", "--network", "n2", "bb", "sleep", "300")
    r = dk(d, "exec", "c2", "busybox", "ping", "-c", "1", "-W", "1", addr_of(d, "c1", "n1"))
    assert r.returncode != 0  # two networks are isolated
    ok(d, "network", "connect", "--ip", "10.0.6.77", "--alias", "second", "n2", "c1")
    assert "10.0.6.77/24" in ok(d, "exec", "c1", "busybox", "ip", "-o", "addr", "show", "eth1")
    assert "1 packets received" in ok(d, "exec", "c2", "busybox", "ping", "-c", "1", "-W", "3", "second")
    assert set(api(d).inspect_container("c1")["NetworkSettings"]["Networks"]) == {"n1", "n2"}
    ok(d, "network", "disconnect", "n2", "c1")
    assert "eth1" not in ok(d, "exec", "c1", "busybox", "ip", "-o", "link")
    r = dk(d, "network", "rm", "n1")
    assert r.returncode != 0 and "has active endpoints" in r.stderr


def test_network_events_and_docker_py(netenv):
    d = start(netenv)
    c = docker.DockerClient(base_url=d.url, version="1.47", timeout=60)
    since = int(time.time()) - 1
    net = c.networks.create("pynet", driver="bridge", ipam=docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet="10.0.15.0/24", gateway="10.0.15.1")]))
    port = free_port()
    ctr = c.containers.run("bb", HTTPD, detach=True, name="pyweb", network="pynet",
                           ports={"80/tcp": ("127.0.0.1", port)})
    assert http_get(f"http://127.0.0.1:{port}/") == "hello-from-httpd\n"
    ctr.reload()
    assert ctr.ports == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert ctr.attrs["NetworkSettings"]["Networks"]["pynet"]["Gateway"] == "10.0.15.1"
    net.reload()
    assert [x.name for x in net.containers] == ["pyweb"]
    ctr.remove(force=True)
    net.remove()
    until = int(time.time()) + 1
    events = [json.loads(line) for line in ok(d, "events", "--since", str(since), "--until", str(until),
                                              "--filter", "type=network", "--format", "{{json .}}").splitlines()]
    assert [e["Action"] for e in events] == ["create", "connect", "disconnect", "destroy"]


def test_container_network_mode_shares_the_namespace(netenv):
    d = start(netenv)
    ok(d, "network", "create", "--subnet", "10.0.19.0/24", "pod")
    ok(d, "run", "-d", "--name", "podhost", "--network", "pod", "--ip", "10.0.19.9", "bb", "sleep", "300")
    out = ok(d, "run", "--rm", "--network", "container:podhost", "bb", "sh", "-c",
             "busybox ip -o -4 addr show eth0; cat /etc/resolv.conf")
    assert "10.0.19.9/24" in out and "nameserver 127.0.0.11" in out
    r = dk(d, "run", "--rm", "--network", "container:podhost", "-p", "8080:80", "bb", "true")
    assert r.returncode != 0 and "conflicting options" in r.stderr
    ok(d, "create", "--name", "stopped", "bb", "true")
    r = dk(d, "run", "--rm", "--network", "container:stopped", "bb", "true")
    assert r.returncode != 0 and "non running container" in r.stderr


def test_legacy_link_environment_space_in_a_name_mac_before_start_and_stats(netenv):
    d = start(netenv)
    c = api(d)
    child = c.create_container("bb", "cat", stdin_open=True, environment={"FOO": "1", "HOME": "/h"},
                               ports=[80, (53, "udp")], name="child")["Id"]
    c.start(child)
    parent = c.create_container("bb", "env", host_config=c.create_host_config(
        links={"child": "my-link1"}, network_mode="bridge"), name="parent")["Id"]
    c.start(parent)
    assert c.wait(parent)["StatusCode"] == 0
    env = set(c.logs(parent).decode().split())
    ip = addr_of(d, "child", "bridge")
    assert {"MY_LINK1_NAME=/parent/my-link1", "MY_LINK1_ENV_FOO=1", f"MY_LINK1_PORT=udp://{ip}:53",
            f"MY_LINK1_PORT_80_TCP=tcp://{ip}:80", f"MY_LINK1_PORT_80_TCP_ADDR={ip}", "MY_LINK1_PORT_80_TCP_PORT=80",
            "MY_LINK1_PORT_80_TCP_PROTO=tcp", f"MY_LINK1_PORT_53_UDP_ADDR={ip}"} <= env, env
    assert not any(e.startswith(("MY_LINK1_ENV_HOME=", "MY_LINK1_ENV_PATH=")) for e in env)
    # a name with a space, as docker-py quotes it (%20)
    net = c.create_network("test 01")["Id"]
    assert c.inspect_network("test 01")["Id"] == net
    c.remove_network("test 01")
    # the MAC asked for on connect is shown before the container starts
    c.create_network("macnet")
    other = c.create_container("bb", "true")["Id"]
    c.connect_container_to_network(other, "macnet", mac_address="02:42:ac:11:00:02")
    assert c.inspect_container(other)["NetworkSettings"]["Networks"]["macnet"]["MacAddress"] == "02:42:ac:11:00:02"
    # stats read the container's interfaces from its network namespace
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # into the test's own bridge
        for _ in range(3):
            s.sendto(b"x", (ip, 9))
    stats = c.stats(child, stream=False)
    assert set(stats["networks"]) == {"eth0"} and stats["networks"]["eth0"]["rx_packets"] > 0
    assert "io_service_bytes_recursive" in stats["blkio_stats"]


def test_network_prune_until_keeps_newer_networks(netenv):
    d = start(netenv)
    c = api(d)
    c.create_network("fresh", labels={"k": "v"})
    assert c.prune_networks(filters={"until": "1h"})["NetworksDeleted"] is None  # made now: kept
    assert c.prune_networks(filters={"label!": ["k"]})["NetworksDeleted"] is None
    assert c.prune_networks(filters={"until": str(int(time.time()) + 5)})["NetworksDeleted"] == ["fresh"]
