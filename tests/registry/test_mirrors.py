"""registry-mirrors (Docker Hub names pulled from a mirror first, a dead mirror handing over to the
next), changed by SIGHUP; and docker pull --all-tags."""

from __future__ import annotations

import json
import os

from tests.lib import rawhttp
from tests.lib.cleanup import Cleanup
from tests.lib.clis import base_env, berth, docker_at
from tests.lib.registry import start_registry
from tests.registry.test_pull import _archive


def test_docker_hub_names_come_from_the_mirrors_and_sighup_changes_them(make_berthd, cleanup: Cleanup) -> None:  # type: ignore[no-untyped-def]
    mirror = start_registry(cleanup)
    digest = mirror.push_archive(_archive("app:1"), "library/app:1")
    d = make_berthd(config={"registry-mirrors": ["http://127.0.0.1:1", f"http://{mirror.host}"]})
    d.start()
    r = docker_at(d, "pull", "app:1", timeout=120)  # Docker Hub's library/app: here only through the mirror
    assert r.returncode == 0 and f"Digest: {digest}" in r.stdout, r.stdout + r.stderr
    assert "mirror http://127.0.0.1:1" in d.log()  # the dead one was tried first and handed over
    assert docker_at(d, "run", "--rm", "--network", "none", "app:1", "cat", "/etc/version").stdout == "v1"
    # what `docker buildx imagetools` and docker-py's inspect_distribution ask: through the mirrors too
    dist = json.loads(rawhttp.request(d.sock, "GET", "/distribution/app:1/json").body)
    assert dist["Descriptor"]["digest"] == digest, dist
    mirror.push_archive(_archive("app:2", b"v2"), "library/app:2")
    r = docker_at(d, "pull", "--all-tags", "app", timeout=120)  # the tags list comes through the mirror too
    assert r.returncode == 0, r.stderr
    assert sorted(docker_at(d, "images", "--format", "{{.Tag}}", "app").stdout.split()) == ["1", "2"]
    # the mirror goes from daemon.json: a reload, and Docker Hub (refused here) is all that is left
    with open(os.path.join(d.root, "daemon.json"), "w") as f:
        json.dump({"registry-mirrors": []}, f)
    d.reload()
    assert "reloaded the registry settings: 0 insecure, 0 mirrors" in d.log()
    r = docker_at(d, "pull", "app:1", timeout=60)
    assert r.returncode != 0 and "registry-1.docker.io" in r.stderr, r.stderr
    with open(os.path.join(d.root, "daemon.json"), "w") as f:
        json.dump({"registry-mirrors": ["ftp://x"]}, f)
    d.reload()
    assert "registry settings reload failed" in d.log() and "unsupported scheme" in d.log()


def test_pull_all_tags(berthd, registry_for_tags) -> None:  # type: ignore[no-untyped-def]
    host = registry_for_tags
    r = berth("pull", "-a", f"{host}/app", env=base_env(DOCKER_HOST=berthd.url), timeout=120)
    assert r.returncode == 0, r.stderr
    tags = docker_at(berthd, "images", "--format", "{{.Tag}}", f"{host}/app").stdout.split()
    assert sorted(tags) == ["1", "2", "latest"]


def _registry_for_tags(cleanup: Cleanup) -> str:
    reg = start_registry(cleanup)
    for tag, content in (("1", b"v1"), ("2", b"v2"), ("latest", b"v3")):
        reg.push_archive(_archive(f"app:{tag}", content), f"app:{tag}")
    return reg.host


import pytest  # noqa: E402


@pytest.fixture
def registry_for_tags(cleanup: Cleanup) -> str:
    return _registry_for_tags(cleanup)
