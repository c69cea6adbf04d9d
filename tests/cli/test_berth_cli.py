"""The berth CLI: every way of finding the daemon, contexts shared with the docker CLI, errors."""

from __future__ import annotations

import json
import os

from tests.lib.clis import base_env, berth, docker


def test_version_via_flag_and_docker_host(berthd):
    r = berth("-H", berthd.url, "version")
    assert r.returncode == 0, r.stderr
    assert "Server: berth 0.1.0" in r.stdout and "API version:      1.47 (minimum version 1.24)" in r.stdout
    r = berth("version", "--format", "{{.Server.ApiVersion}}", env=base_env(DOCKER_HOST=berthd.url))
    assert r.stdout.strip() == "1.47"


def test_api_version_negotiated_or_pinned(berthd):
    r = berth("-H", berthd.url, "version", "--format", "{{.Client.ApiVersion}}")
    assert r.stdout.strip() == "1.47"
    r = berth("-H", berthd.url, "version", "--format", "{{.Client.ApiVersion}}",
              env=base_env(DOCKER_API_VERSION="1.41"))
    assert r.returncode == 0 and r.stdout.strip() == "1.41"
    r = berth("-H", berthd.url, "info", env=base_env(DOCKER_API_VERSION="1.48"))
    assert r.returncode == 1
    assert "client version 1.48 is too new. Maximum supported API version is 1.47" in r.stderr
    r = berth("-H", berthd.url, "info", env=base_env(DOCKER_API_VERSION="1.12"))
    assert r.returncode == 1 and "DOCKER_API_VERSION=1.12 is too old" in r.stderr


def test_info_and_events(make_berthd):
    d = make_berthd(config={"labels": ["zone=a"]}).start()
    r = berth("-H", d.url, "info")
    assert r.returncode == 0 and " Labels: zone=a" in r.stdout
    assert json.loads(berth("-H", d.url, "system", "info", "--format", "json").stdout)["Labels"] == ["zone=a"]
    d.reload()
    r = berth("-H", d.url, "events", "--since", "1m", "--until", "0s")
    assert r.returncode == 0, r.stderr
    assert " daemon reload " in r.stdout and "labels=[zone=a]" in r.stdout


def test_contexts_shared_with_docker_cli(berthd, isolated_home):
    # made by berth, used by docker
    r = berth("context", "create", "viaberth", "--docker", f"host={berthd.url}", "--description", "made by berth")
    assert r.returncode == 0, r.stderr
    r = docker("--context", "viaberth", "version", "--format", "{{.Server.Version}}")
    assert r.returncode == 0 and r.stdout.strip() == "0.1.0", r.stderr
    # made by docker, used by berth
    r = docker("context", "create", "viadocker", "--docker", f"host={berthd.url}")
    assert r.returncode == 0, r.stderr
    assert berth("--context", "viadocker", "version", "--format", "{{.Server.Version}}").stdout.strip() == "0.1.0"
    # "use" by berth is what docker sees as current, and the reverse
    assert berth("context", "use", "viadocker").returncode == 0
    assert docker("context", "show").stdout.strip() == "viadocker"
    assert berth("version", "--format", "{{.Client.Context}}").stdout.strip() == "viadocker"
    assert docker("context", "use", "viaberth").returncode == 0
    assert berth("context", "show").stdout.strip() == "viaberth"
    ls = berth("context", "ls").stdout
    assert "viaberth *" in ls and "made by berth" in ls and "viadocker" in ls
    ours = json.loads(berth("context", "inspect", "viaberth").stdout)[0]
    theirs = json.loads(docker("context", "inspect", "viaberth").stdout)[0]
    for key in ("Name", "Metadata", "Endpoints"):
        assert ours[key] == theirs[key]
    # DOCKER_CONTEXT selects, DOCKER_HOST overrides the current context
    assert berth("version", "--format", "{{.Client.Context}}", env=base_env(DOCKER_CONTEXT="viadocker")).stdout.strip() \
        == "viadocker"
    r = berth("version", "--format", "{{.Client.Context}}", env=base_env(DOCKER_HOST=berthd.url))
    assert r.stdout.strip() == "default"
    # rm: the current context needs -f; docker no longer lists a removed one
    r = berth("context", "rm", "viaberth")
    assert r.returncode == 1 and "in use" in r.stderr
    assert berth("context", "rm", "-f", "viaberth").returncode == 0
    assert "viaberth" not in docker("context", "ls", "-q").stdout
    assert docker("context", "show").stdout.strip() == "default"


def test_context_with_tls_material_is_readable_by_docker(berthd, tmp_path, isolated_home):
    assert berth("pki", "init", "--dir", str(tmp_path / "ca")).returncode == 0
    assert berth("pki", "client", "--dir", str(tmp_path / "ca"), "--cn", "me", "--out", str(tmp_path / "c")).returncode == 0
    c = tmp_path / "c"
    r = berth("context", "create", "tls", "--docker",
              f"host=tcp://127.0.0.1:1,ca={c}/ca.pem,cert={c}/cert.pem,key={c}/key.pem")
    assert r.returncode == 0, r.stderr
    theirs = json.loads(docker("context", "inspect", "tls").stdout)[0]
    assert theirs["TLSMaterial"]["docker"] == ["ca.pem", "cert.pem", "key.pem"]
    tls_dir = os.path.join(theirs["Storage"]["TLSPath"], "docker")
    assert open(os.path.join(tls_dir, "cert.pem")).read() == open(c / "cert.pem").read()


def test_connection_errors_are_for_humans(tmp_path):
    r = berth("-H", f"unix://{tmp_path}/none.sock", "version")
    assert r.returncode == 1
    assert f"Cannot connect to the berth daemon at unix://{tmp_path}/none.sock: is berthd running?" in r.stderr
    assert "Traceback" not in r.stderr
    r = berth("-H", "unix:///x", "--context", "c", "info")
    assert r.returncode == 1 and "either specify --host or --context" in r.stderr
    r = berth("--context", "nosuch", "info")
    assert r.returncode == 1 and "context 'nosuch' does not exist" in r.stderr
    r = berth("-H", "udp://x", "info")
    assert r.returncode == 1 and "unsupported protocol" in r.stderr


def test_pki_env_prints_exports(tmp_path):
    r = berth("pki", "env", "--host", "tcp://node3:2376", "--cert-path", str(tmp_path))
    assert r.stdout.splitlines()[:3] == ['export DOCKER_TLS_VERIFY="1"', 'export DOCKER_HOST="tcp://node3:2376"',
                                         f'export DOCKER_CERT_PATH="{tmp_path}"']
    r = berth("pki", "server", "--dir", str(tmp_path / "noca"), "--cn", "x", "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "berth pki init" in r.stderr
    assert berth("pki", "init", "--dir", str(tmp_path / "ca")).returncode == 0
    r = berth("pki", "init", "--dir", str(tmp_path / "ca"))
    assert r.returncode == 1 and "refusing to overwrite" in r.stderr
