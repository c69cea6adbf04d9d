"""The real docker CLI against berthd."""

from __future__ import annotations

import time

from tests.lib.clis import base_env, docker
from tests.lib.daemon import free_port


def test_docker_version_shows_api_147(berthd):
    r = docker("-H", berthd.url, "version", "--format", "{{.Server.APIVersion}} {{.Server.MinAPIVersion}} "
                                                        "{{.Client.APIVersion}}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1.47", "1.24", "1.47"]  # the newer CLI negotiated down to 1.47
    r = docker("-H", berthd.url, "version")
    assert "Server: berth" in r.stdout and "API version:      1.47 (minimum version 1.24)" in r.stdout


def test_unix_and_tcp_at_once(make_berthd):
    port = free_port()
    d = make_berthd(hosts=None)
    d.hosts = [f"unix://{d.sock}", f"tcp://127.0.0.1:{port}"]
    d.start(wait_for=[port])
    for host in (d.url, f"tcp://127.0.0.1:{port}"):
        r = docker("-H", host, "info", "--format", "{{.ID}} {{.DockerRootDir}}")
        assert r.returncode == 0, r.stderr
    ids = {docker("-H", h, "info", "--format", "{{.ID}}").stdout for h in (d.url, f"tcp://127.0.0.1:{port}")}
    assert len(ids) == 1
    r = docker("-H", f"tcp://127.0.0.1:{port}", "info")
    assert "without encryption" in r.stderr  # the daemon's warning, shown by the CLI
    assert "without encryption" in d.log()


def test_docker_host_variable(berthd):
    r = docker("version", "--format", "{{.Server.Version}}", env=base_env(DOCKER_HOST=berthd.url))
    assert r.returncode == 0 and r.stdout.strip() == "0.1.0"


def test_pinned_api_version_out_of_range_gets_dockerd_message(berthd):
    r = docker("-H", berthd.url, "version", env=base_env(DOCKER_API_VERSION="1.23"))
    assert r.returncode != 0
    assert "client version 1.23 is too old. Minimum supported API version is 1.24" in r.stderr


def test_docker_events_since_until(make_berthd):
    d = make_berthd().start()
    t0 = int(time.time()) - 1
    d.reload()
    r = docker("-H", d.url, "events", "--since", str(t0), "--until", str(int(time.time()) + 1),
               "--filter", "type=daemon", "--format", "{{.Type}} {{.Action}}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines() == ["daemon reload"]


def test_daemon_not_running(tmp_path):
    r = docker("-H", f"unix://{tmp_path}/none.sock", "version")
    assert r.returncode != 0 and "Cannot connect to the Docker daemon" in r.stderr
