"""Issue #11, point 3: berthd records every request and its own actions in a hash-chained, signed
audit log; ``berth audit verify`` finds tampering and names the record; tail and search read it."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from tests.conftest import require_root
from tests.lib import rawhttp
from tests.lib.clis import DOCKER, berth
from tests.lib.clis import docker as docker_cli
from tests.lib.images import busybox_rootfs_tar
from tests.lib.wait import until


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()
    if DOCKER is None:
        pytest.skip("the docker CLI is not installed on this machine")


def test_every_request_and_the_daemons_own_actions_are_recorded_and_verify(make_berthd):
    d = make_berthd()
    policy = os.path.join(d.root, "policy.cedar")
    with open(policy, "w") as f:
        f.write('@id("root") permit(principal == UnixUser::"root", action, resource) unless { context.privileged };\n')
    d.config = {"authorization-policy": policy}
    d.start()
    log_path = os.path.join(d.root, "data", "audit", "audit.log")
    assert rawhttp.request(d.sock, "POST", "/images/create?fromSrc=-&repo=bb&tag=latest",
                           body=busybox_rootfs_tar()).status == 200
    r = docker_cli("-H", d.url, "run", "--name", "audited", "bb", "true")
    assert r.returncode == 0, r.stderr
    assert docker_cli("-H", d.url, "run", "--privileged", "bb", "true").returncode != 0
    secret = "c2VjcmV0LXBhc3N3b3JkLXRoYXQtbXVzdC1uZXZlci1iZS1sb2dnZWQ="
    assert rawhttp.request(d.sock, "GET", "/_ping", headers={"X-Registry-Auth": secret}).status == 200
    assert rawhttp.request(d.sock, "GET", "/no/such/route").status == 404
    with open(policy, "a") as f:
        f.write('permit(principal, action == Action::"system.ping", resource);\n')
    d.reload()
    d.stop()

    st = os.stat(log_path)
    assert stat.S_IMODE(st.st_mode) == 0o600 and stat.S_IMODE(os.stat(os.path.dirname(log_path)).st_mode) == 0o700
    with open(log_path) as f:
        text = f.read()
    assert secret not in text
    recs = [json.loads(line) for line in text.splitlines()]
    kinds = [(r["kind"], r.get("action")) for r in recs if r["kind"] != "request"]
    assert kinds[0] == ("daemon", "start") and ("daemon", "policy") in kinds and ("daemon", "reload") in kinds
    assert kinds[-2:] == [("daemon", "stop"), ("checkpoint", None)]
    create = next(r for r in recs if r.get("action") == "container.create" and r["status"] == 201)
    assert create["principal"] == "unix:root(0)" and create["auth"] == "unix" and create["decision"] == "allow"
    assert create["rule"] == "root" and create["listener"] == d.url and len(create["body"]["sha256"]) == 64
    assert create["path"].endswith("/containers/create") and create["query"] == "name=audited"
    denied = next(r for r in recs if r.get("decision") == "deny")
    assert denied["status"] == 403 and denied["action"] == "container.create"
    assert any(r.get("path") == "/no/such/route" and r["status"] == 404 for r in recs)
    start = next(r for r in recs if r.get("action") == "container.start")
    assert start["resource"].startswith("Container:")

    r = berth("audit", "verify", log_path)
    assert r.returncode == 0 and r.stdout.startswith("intact:"), r.stdout + r.stderr
    r = berth("audit", "search", "--decision", "deny", "--json", log_path)
    assert [json.loads(line)["status"] for line in r.stdout.splitlines()] == [403]
    r = berth("audit", "search", "--container", start["resource"].split(":")[1][:12], log_path)
    assert "container" in r.stdout or "/containers/" in r.stdout, r.stdout
    r = berth("audit", "tail", "-n", "2", log_path)
    assert len(r.stdout.splitlines()) == 2 and "checkpoint" in r.stdout.splitlines()[-1]

    # one byte: the record after it says so, and verify exits 1 naming it
    lines = text.splitlines(keepends=True)
    k = next(i for i, line in enumerate(lines) if '"action":"container.create"' in line)
    lines[k] = lines[k].replace('"status":201', '"status":200')
    with open(log_path, "w") as f:
        f.writelines(lines)
    r = berth("audit", "verify", log_path)
    assert r.returncode == 1
    assert f"line {k + 2}: record {k + 2} does not follow record {k + 1}: record {k + 1} was changed" in r.stdout


def test_audit_log_none_records_nothing_and_says_so(make_berthd):
    d = make_berthd(args=["--audit-log", "none"])
    d.start()
    assert "audit log: none" in d.log()
    assert not os.path.exists(os.path.join(d.root, "data", "audit"))


def test_a_second_daemon_life_continues_the_chain(make_berthd):
    d = make_berthd()
    d.start()
    d.stop()
    d.start()
    assert rawhttp.request(d.sock, "GET", "/version").status == 200
    d.stop()
    log_path = os.path.join(d.root, "data", "audit", "audit.log")
    r = subprocess.run([*berth_argv(), "audit", "verify", log_path], capture_output=True, text=True)
    assert r.returncode == 0 and "2 signed checkpoints" in r.stdout, r.stdout + r.stderr


def berth_argv() -> list[str]:
    from tests.lib.clis import BERTH

    return [BERTH]


def test_tail_follows_new_records_as_they_are_written(make_berthd):
    d = make_berthd()
    d.start()
    log_path = os.path.join(d.root, "data", "audit", "audit.log")
    from tests.lib.clis import BERTH

    tail = subprocess.Popen([BERTH, "audit", "tail", "-n", "0", "-f", "--action", "volume.", log_path],
                            stdout=subprocess.PIPE, text=True)
    try:
        until(lambda: _has_open(tail.pid, log_path), "berth audit tail -f to open the log")
        assert docker_cli("-H", d.url, "volume", "create", "followed").returncode == 0
        line = tail.stdout.readline()  # bounded by the test's timeout
        assert "POST" in line and "/volumes/create -> 201" in line, line
    finally:
        tail.kill()
        tail.wait()


def _has_open(pid: int, path: str) -> bool:
    fds = f"/proc/{pid}/fd"
    try:
        return any(os.readlink(os.path.join(fds, fd)) == path for fd in os.listdir(fds))
    except OSError:
        return False
