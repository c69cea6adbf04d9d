"""Issue #11, point 2: Docker's AuthZ plugin protocol, with a real plugin process on its unix socket
under /run/docker/plugins, driven by the docker CLI; the requests it receives from berthd compared
with those it receives from dockerd 20.10 for the same commands."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import require_root
from tests.lib import rawhttp
from tests.lib.clis import DOCKER
from tests.lib.clis import docker as docker_cli
from tests.lib.daemon import public_tmpdir
from tests.lib.dockerd import Dockerd
from tests.lib.images import busybox_rootfs_tar
from tests.lib.wait import settles

PLUGIN = os.path.join(os.path.dirname(__file__), "..", "lib", "authz_plugin.py")


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()
    if DOCKER is None:
        pytest.skip("the docker CLI is not installed on this machine")


@dataclass
class RunningPlugin:
    name: str
    sock: str
    record: str
    proc: subprocess.Popen[bytes]

    def requests(self) -> list[dict]:
        with open(self.record) as f:
            return [json.loads(line) for line in f]


@pytest.fixture
def plugin_factory() -> Iterator:  # type: ignore[type-arg]
    made: list[RunningPlugin] = []
    tmp = public_tmpdir("berth-authz-plugin-")
    made_dirs = [d for d in ("/run/docker", "/run/docker/plugins") if not os.path.isdir(d)]

    def make() -> RunningPlugin:
        name = "bt-authz-" + secrets.token_hex(4)
        os.makedirs("/run/docker/plugins", exist_ok=True)
        sock = f"/run/docker/plugins/{name}.sock"
        record = os.path.join(tmp, name + ".jsonl")
        open(record, "w").close()
        proc = subprocess.Popen([sys.executable, PLUGIN, sock, record], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        p = RunningPlugin(name, sock, record, proc)
        made.append(p)
        return p

    yield make
    for p in made:
        p.proc.kill()
        p.proc.wait()
        if os.path.exists(p.sock):
            os.unlink(p.sock)
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    for d in reversed(made_dirs):  # what this fixture made, if nothing else has come to live there
        try:
            os.rmdir(d)
        except OSError:
            pass


def drive(url: str, sock: str) -> dict[str, subprocess.CompletedProcess[str]]:
    """The same commands against either daemon."""
    out = {}
    assert rawhttp.request(sock, "POST", "/images/create?fromSrc=-&repo=bb&tag=latest",
                           body=busybox_rootfs_tar()).status == 200
    for key, args in (("ps", ["ps"]), ("volume ok", ["volume", "create", "hidden-v1"]),
                      ("volume denied", ["volume", "create", "forbidden-v2"]), ("volume ls", ["volume", "ls"]),
                      ("privileged", ["create", "--privileged", "bb", "true"]),
                      ("create", ["create", "--name", "plain", "bb", "true"])):
        out[key] = docker_cli("-H", url, *args)
    return out


def test_a_plugin_allows_and_denies_requests_and_responses_with_dockerds_words(make_berthd, plugin_factory):
    plugin = plugin_factory()
    d = make_berthd(args=["--authorization-plugin", plugin.name])
    d.start()
    assert f"authorization plugin {plugin.name} at {plugin.sock}" in d.log()
    r = drive(d.url, d.sock)
    assert r["ps"].returncode == 0 and r["create"].returncode == 0, (r["ps"].stderr, r["create"].stderr)
    assert r["volume ok"].returncode == 0
    assert f"authorization denied by plugin {plugin.name}: that volume name is not allowed" in r["volume denied"].stderr
    assert f"authorization denied by plugin {plugin.name}: response hidden" in r["volume ls"].stderr
    assert f"authorization denied by plugin {plugin.name}: privileged containers are not allowed" in \
        r["privileged"].stderr
    reqs = plugin.requests()
    assert reqs[0]["path"] == "/Plugin.Activate"
    assert reqs[0]["headers"]["Accept"] == "application/vnd.docker.plugins.v1.2+json"
    creates = [q["body"] for q in reqs if q["path"] == "/AuthZPlugin.AuthZReq"
               and "/containers/create" in q["body"]["RequestUri"]]
    body = json.loads(base64.b64decode(creates[-1]["RequestBody"]))
    assert body["Image"] == "bb" and creates[-1]["RequestMethod"] == "POST"
    assert creates[-1]["User"] == "root" and creates[-1]["UserAuthNMethod"] == "unix"  # berth knows unix callers
    assert "Content-Type" in creates[-1]["RequestHeaders"] and "User-Agent" in creates[-1]["RequestHeaders"]
    res = [q["body"] for q in reqs if q["path"] == "/AuthZPlugin.AuthZRes" and q["body"]["RequestUri"].endswith(
        "/containers/create?name=plain")]
    assert res[0]["ResponseStatusCode"] == 201 and res[0]["ResponseHeaders"]["Content-Type"] == "application/json"
    assert json.loads(base64.b64decode(res[0]["ResponseBody"]))["Id"]
    # credentials never reach a plugin
    rawhttp.request(d.sock, "GET", "/_ping", headers={"X-Registry-Auth": "c2VjcmV0", "Authorization": "Basic eA=="})
    last = [q for q in plugin.requests() if q["path"] == "/AuthZPlugin.AuthZReq"][-1]["body"]
    assert "X-Registry-Auth" not in last["RequestHeaders"] and "Authorization" not in last["RequestHeaders"]


def test_a_plugin_that_is_missing_or_gone_refuses_the_daemon_or_the_request(make_berthd, plugin_factory):
    code, out = make_berthd(args=["--authorization-plugin", "bt-authz-nowhere"]).run_to_exit()
    assert code != 0 and "failed to validate authorization plugin: could not find plugin bt-authz-nowhere" in out
    plugin = plugin_factory()
    d = make_berthd(args=["--authorization-plugin", plugin.name])
    d.start()
    plugin.proc.kill()
    plugin.proc.wait()
    r = rawhttp.request(d.sock, "GET", "/containers/json")
    assert r.status == 500 and f"plugin {plugin.name} failed with error" in r.json()["message"]


def _normal(req: dict) -> dict:
    """A request as the plugin saw it, with what legitimately differs removed: the API version in the
    URI (the CLI negotiates 1.41 with dockerd 20.10, 1.47 with berthd), berth's unix user, and
    headers and bodies whose content depends on the daemon (IDs, versions, lengths)."""
    out = {k: v for k, v in req.items() if k not in ("User", "UserAuthNMethod")}
    out["RequestUri"] = out["RequestUri"].split("/", 2)[-1] if out["RequestUri"].startswith("/v1.") else \
        out["RequestUri"].lstrip("/")
    out["RequestHeaders"] = sorted(k for k in out.get("RequestHeaders", {}) if k != "Content-Length")
    for key in ("RequestBody", "ResponseBody"):
        if key in out:
            out[key] = "present"
    if "ResponseHeaders" in out:  # /_ping's Builder-Version and Swarm: API 1.47's, not 1.41's
        out["ResponseHeaders"] = sorted(set(out["ResponseHeaders"]) - {"Builder-Version", "Swarm"})
    return out


def test_the_plugin_sees_the_same_requests_from_berthd_and_from_dockerd(make_berthd, plugin_factory):
    for_berth, for_docker = plugin_factory(), plugin_factory()
    dockerd = Dockerd()
    try:
        dockerd.start_with(["--authorization-plugin", for_docker.name])
        rd = drive(dockerd.url, dockerd.sock)
        settles(lambda: len(for_docker.requests()), "dockerd's last calls to the plugin")
    finally:
        dockerd.stop()
    d = make_berthd(args=["--authorization-plugin", for_berth.name])
    d.start()
    rb = drive(d.url, d.sock)
    for key in rd:
        assert (rb[key].returncode == 0) == (rd[key].returncode == 0), (key, rb[key].stderr, rd[key].stderr)
        if rd[key].returncode != 0 and "authorization denied by plugin" in rd[key].stderr:
            words = rd[key].stderr.split("authorization denied by plugin ")[1].split(": ", 1)[1].strip()
            assert words in rb[key].stderr, (key, rb[key].stderr)

    def calls(p: RunningPlugin) -> list[tuple[str, str, str]]:
        return [(q["path"], q["body"].get("RequestMethod", ""), _normal(q["body"])["RequestUri"]) for q in
                p.requests() if q["path"] != "/Plugin.Activate"]

    seen_b, seen_d = calls(for_berth), calls(for_docker)
    # every call dockerd made to the plugin for these commands, berthd made too, with the same fields
    for call in seen_d:
        assert call in seen_b, (call, seen_b)
    by_call_b = {(q["path"], q["body"]["RequestMethod"], _normal(q["body"])["RequestUri"]): _normal(q["body"])
                 for q in for_berth.requests() if q["path"] != "/Plugin.Activate"}
    differences = []
    for q in for_docker.requests():
        if q["path"] == "/Plugin.Activate" or "images/create" in q["body"].get("RequestUri", ""):
            continue
        mine = by_call_b[(q["path"], q["body"]["RequestMethod"], _normal(q["body"])["RequestUri"])]
        theirs = _normal(q["body"])
        if mine != theirs:
            differences.append((q["path"], theirs, mine))
    assert differences == [], "\n".join(map(str, differences))
