"""docker login and pulls with credentials against a real registry with htpasswd Basic auth (bcrypt),
the docker CLI keeping the credentials in its own config.json and sending them as X-Registry-Auth."""

from __future__ import annotations

import base64
import json

from tests.lib import rawhttp
from tests.lib.cleanup import Cleanup
from tests.lib.clis import base_env, docker
from tests.lib.daemon import Berthd, public_tmpdir
from tests.lib.registry import Registry, start_registry
from tests.registry.test_pull import _archive


def test_login_then_pull_with_the_clis_stored_credentials(berthd: Berthd, locked: Registry, cleanup: Cleanup) -> None:
    home = cleanup.path(public_tmpdir("berth-dockercfg-"))
    env = base_env(DOCKER_CONFIG=home, DOCKER_HOST=berthd.url)
    name = f"{locked.host}/app:1"
    r = docker("pull", name, env=env, timeout=60)
    assert r.returncode != 0 and "no basic auth credentials" in r.stderr, r.stderr
    r = docker("login", "-u", "alice", "--password-stdin", locked.host, input="wrong\n", env=env)
    assert r.returncode != 0 and "failed with status: 401 Unauthorized" in r.stderr, r.stderr
    r = docker("login", "-u", "alice", "--password-stdin", locked.host, input="s3cret\n", env=env)
    assert r.returncode == 0 and "Login Succeeded" in r.stdout, r.stderr
    assert locked.host in json.load(open(f"{home}/config.json"))["auths"]
    r = docker("pull", name, env=env, timeout=60)
    assert r.returncode == 0 and "Pull complete" in r.stdout, r.stderr
    assert "s3cret" not in berthd.log()  # credentials are never logged


def test_distribution_inspect_names_the_manifest_and_its_platforms(berthd: Berthd, locked: Registry) -> None:
    auth = base64.urlsafe_b64encode(json.dumps({"username": "alice", "password": "s3cret"}).encode()).decode()
    r = rawhttp.request(berthd.sock, "GET", f"/distribution/{locked.host}/app:1/json",
                        headers={"X-Registry-Auth": auth})
    assert r.status == 200, r.body
    body = json.loads(r.body)
    assert body["Descriptor"]["digest"] == locked.digest("app:1")
    assert body["Descriptor"]["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert body["Platforms"] == [{"architecture": "amd64", "os": "linux"}]
    r = rawhttp.request(berthd.sock, "GET", f"/distribution/{locked.host}/app:1/json")
    assert r.status == 500 and b"no basic auth credentials" in r.body  # dockerd 20.10: a 500


def test_bearer_tokens_from_a_token_server(berthd: Berthd, cleanup: Cleanup) -> None:
    from tests.lib.registry import TokenServer

    tokens = TokenServer(cleanup, {"bob": "hunter2"})
    reg = start_registry(cleanup, tokens.registry_config())
    reg.creds = "bob:hunter2"
    reg.push_archive(_archive("app:1"), "public/app:1")
    reg.push_archive(_archive("app:1"), "private/app:1")
    home = cleanup.path(public_tmpdir("berth-dockercfg-"))
    env = base_env(DOCKER_CONFIG=home, DOCKER_HOST=berthd.url)
    issued = tokens.issued
    r = docker("pull", f"{reg.host}/public/app:1", env=env, timeout=60)  # anonymous: a token for pull
    assert r.returncode == 0 and "Pull complete" in r.stdout, r.stderr
    assert tokens.issued == issued + 1  # one token for the whole pull: cached for its scope
    r = docker("pull", f"{reg.host}/private/app:1", env=env, timeout=60)
    assert r.returncode != 0 and "authentication required" in r.stderr, r.stderr
    r = docker("login", "-u", "bob", "--password-stdin", reg.host, input="hunter2\n", env=env)
    assert r.returncode == 0 and "Login Succeeded" in r.stdout, r.stderr
    r = docker("pull", f"{reg.host}/private/app:1", env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "hunter2" not in berthd.log()


def test_a_token_that_expires_mid_pull_is_renewed(berthd: Berthd, cleanup: Cleanup) -> None:
    """The token says 300 s and is good for about 5 (its "exp" is 55 s past, and distribution allows 60):
    the download, cut after 1 MiB and taken up 8 s later, meets a 401 with its cached token and gets
    a new one."""
    import os

    from tests.lib.images import busybox_rootfs_tar, config_for, docker_archive, layer_tar
    from tests.lib.registry import CuttingProxy, TokenServer

    tokens = TokenServer(cleanup, {"bob": "hunter2"}, lifetime=300, jwt_lifetime=-55)
    reg = start_registry(cleanup, tokens.registry_config())
    reg.creds = "bob:hunter2"
    big = layer_tar({"data/blob": os.urandom(3 << 20)})
    base = busybox_rootfs_tar()
    reg.push_archive(docker_archive([(config_for([base, big]), [base, big], ["big:1"])]), "public/big:1")
    proxy = CuttingProxy(cleanup, reg.host, after=1 << 20, delay=8)
    issued = tokens.issued
    r = docker("pull", f"{proxy.host}/public/big:1", env=base_env(DOCKER_HOST=berthd.url), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert proxy.cut == 1 and tokens.issued == issued + 2, (proxy.cut, tokens.issued - issued)
