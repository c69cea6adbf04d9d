"""System endpoints on a real berthd, through docker-py and raw HTTP."""

from __future__ import annotations

import json
import signal
import threading
import time

import docker
import pytest

from tests.lib import rawhttp


def client(d) -> docker.APIClient:  # type: ignore[no-untyped-def]
    c = docker.APIClient(base_url=d.url, version="auto")
    c.trust_env = False
    return c


def test_ping_headers(berthd):
    for method in ("GET", "HEAD"):
        r = rawhttp.request(berthd.sock, method, "/_ping")
        assert r.status == 200
        assert r.headers["api-version"] == "1.47"
        assert r.headers["ostype"] == "linux"
        assert r.headers["docker-experimental"] == "false"
        assert r.headers["builder-version"] == "1"
        assert "no-cache" in r.headers["cache-control"] and r.headers["pragma"] == "no-cache"
        assert r.body == (b"OK" if method == "GET" else b"")
    assert rawhttp.request(berthd.sock, "GET", "/v1.30/_ping").status == 200


@pytest.mark.parametrize("path, status, message", [
    ("/v1.48/version", 400, "client version 1.48 is too new. Maximum supported API version is 1.47"),
    ("/v1.23/version", 400, "client version 1.23 is too old. Minimum supported API version is 1.24, please upgrade "
                            "your client to a newer version"),
    ("/v1.47/nothing/here", 404, "page not found"),
    ("/nothing", 404, "page not found"),
    ("/events?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D", 400, "invalid filter 'bogus'"),
    ("/events?filters=notjson", 400, "invalid filter"),
    ("/events?since=20&until=10", 400, "`since` time cannot be after `until` time"),
    ("/events?since=yesterday", 400, "failed to parse value 'yesterday' as a timestamp"),
])
def test_errors_are_json_with_dockerd_status(berthd, path, status, message):
    r = rawhttp.request(berthd.sock, "GET", path)
    assert r.status == status
    assert r.headers["content-type"] == "application/json"
    assert message in r.json()["message"]


def test_post_to_get_route_is_404(berthd):
    assert rawhttp.request(berthd.sock, "POST", "/version").status == 404


def test_keepalive_and_pipelining_on_one_connection(berthd):
    raw = b"".join(b"GET /v1.4%d/_ping HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5)) + \
        b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n"
    rs = rawhttp.pipelined(berthd.sock, raw, 6)
    assert [r.status for r in rs] == [200] * 6
    assert rs[-1].json()["ApiVersion"] == "1.47"


def test_version_and_info_through_docker_py(berthd):
    c = client(berthd)
    assert c.api_version == "1.47"
    v = c.version()
    assert v["ApiVersion"] == "1.47" and v["MinAPIVersion"] == "1.24" and v["Os"] == "linux"
    assert v["Components"][0]["Name"] == "Engine"
    info = c.info()
    for key in ("ID", "Containers", "Images", "Driver", "DockerRootDir", "KernelVersion", "OperatingSystem",
                "CgroupDriver", "CgroupVersion", "SecurityOptions", "Name", "NCPU", "MemTotal", "Runtimes"):
        assert key in info
    assert info["DockerRootDir"].startswith(berthd.root)
    assert info["Containers"] == 0 and info["Images"] == 0


def test_engine_id_persists_across_restarts(make_berthd):
    d = make_berthd().start()
    first = client(d).info()["ID"]
    d.stop()
    d.start()
    assert client(d).info()["ID"] == first
    assert open(f"{d.root}/data/engine-id").read().strip() == first


def test_events_stream_live_and_replayed(make_berthd):
    d = make_berthd(config={"labels": ["tier=test"]}).start()
    c = client(d)
    t0 = time.time()
    got: list[dict] = []

    def listen() -> None:
        for ev in c.events(decode=True, filters={"type": ["daemon"]}):
            got.append(ev)
            return

    th = threading.Thread(target=listen, daemon=True)
    th.start()
    deadline = time.time() + 5
    while c.info()["NEventsListener"] < 1 and time.time() < deadline:
        time.sleep(0.02)
    d.signal(signal.SIGHUP)  # config reload → a daemon "reload" event
    th.join(5)
    assert got and got[0]["Type"] == "daemon" and got[0]["Action"] == "reload"
    assert got[0]["Actor"]["ID"] == c.info()["ID"]
    assert got[0]["Actor"]["Attributes"]["labels"] == "[tier=test]"
    # the same event again from history, bounded by until: the stream ends by itself
    replay = list(c.events(since=t0, until=time.time(), decode=True))
    assert [e["Action"] for e in replay] == ["reload"]
    assert list(c.events(since=t0, until=time.time(), decode=True, filters={"type": ["image"]})) == []


def test_sighup_applies_new_labels_and_keeps_serving(make_berthd):
    d = make_berthd(config={"labels": ["a=1"]}).start()
    with open(f"{d.root}/daemon.json", "w") as f:
        json.dump({"labels": ["a=2"]}, f)
    d.signal(signal.SIGHUP)
    deadline = time.time() + 5
    while client(d).info()["Labels"] != ["a=2"] and time.time() < deadline:
        time.sleep(0.05)
    assert client(d).info()["Labels"] == ["a=2"]
    with open(f"{d.root}/daemon.json", "w") as f:
        f.write("{broken")
    d.reload()
    assert client(d).info()["Labels"] == ["a=2"]  # a bad reload keeps the running configuration
    assert "reload failed" in d.log()


def test_sigterm_removes_socket_and_pidfile(make_berthd):
    d = make_berthd().start()
    import os

    assert os.path.exists(d.sock) and os.path.exists(d.pidfile)
    assert d.stop() == 0
    assert not os.path.exists(d.sock) and not os.path.exists(d.pidfile)


def test_reload_cannot_override_a_flag(make_berthd):
    d = make_berthd(args=["--label", "from=flag"]).start()
    with open(f"{d.root}/daemon.json", "w") as f:
        json.dump({"labels": ["from=file"]}, f)
    d.reload()
    assert client(d).info()["Labels"] == ["from=flag"]
    assert "specified both as a flag and in the configuration file: labels" in d.log()
