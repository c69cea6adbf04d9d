"""docker push to a real registry: what berth pushes, skopeo and dockerd read (same digests); a second
push skips every blob; another repository mounts them; a pulled OCI image keeps its manifest byte
for byte; pushes with credentials."""

from __future__ import annotations

import json

import pytest

from tests.lib.cleanup import Cleanup
from tests.lib.clis import base_env, docker, docker_at
from tests.lib.daemon import Berthd, public_tmpdir
from tests.lib.registry import Registry, htpasswd, skopeo, start_registry
from tests.registry.test_pull import _archive


@pytest.fixture
def registry(cleanup: Cleanup) -> Registry:
    return start_registry(cleanup)


def _load(d: Berthd, cleanup: Cleanup, name: str) -> None:
    path = cleanup.path(public_tmpdir("berth-push-")) + "/img.tar"
    with open(path, "wb") as f:
        f.write(_archive(name))
    r = docker_at(d, "load", "-i", path)
    assert r.returncode == 0, r.stderr


def test_push_is_read_by_skopeo_and_dockerd_and_a_second_push_skips_every_blob(
        berthd: Berthd, registry: Registry, cleanup: Cleanup) -> None:
    _load(berthd, cleanup, "app:1")
    name = f"{registry.host}/team/app:1"
    assert docker_at(berthd, "tag", "app:1", name).returncode == 0
    r = docker_at(berthd, "push", name, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"The push refers to repository [{registry.host}/team/app]" in r.stdout and "Pushed" in r.stdout
    digest = registry.digest("team/app:1")
    assert f"1: digest: {digest} size: " in r.stdout
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{name}"))
    assert raw["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    image_id = docker_at(berthd, "image", "inspect", "--format", "{{.Id}}", name).stdout.strip()
    assert raw["config"]["digest"] == image_id
    again = docker_at(berthd, "push", name, timeout=120)
    assert again.returncode == 0 and again.stdout.count("Layer already exists") == 2, again.stdout
    assert f"1: digest: {digest} size: " in again.stdout  # the same gzip bytes, the same digest
    other = f"{registry.host}/other/app:1"
    assert docker_at(berthd, "tag", "app:1", other).returncode == 0
    r = docker_at(berthd, "push", other, timeout=120)
    assert r.returncode == 0 and r.stdout.count("Mounted from team/app") == 2, r.stdout

    from tests.lib.dockerd import DOCKERD, Dockerd

    if DOCKERD is None:
        pytest.skip("dockerd is not installed: the cross-check with dockerd is left out")
    dd = Dockerd()
    try:
        dd.start()
        r = docker_at(dd, "pull", name, timeout=120)
        assert r.returncode == 0 and f"Digest: {digest}" in r.stdout, r.stderr
        assert docker_at(dd, "image", "inspect", "--format", "{{.Id}}", name).stdout.strip() == image_id
        r = docker_at(dd, "run", "--rm", "--network", "none", name, "cat", "/etc/version")
        assert r.stdout == "v1", r.stderr
    finally:
        dd.stop()


def test_a_pulled_oci_image_keeps_its_manifest(berthd: Berthd, registry: Registry) -> None:
    digest = registry.push_archive(_archive("oci:1"), "src/oci:1", fmt="oci")
    assert docker_at(berthd, "pull", f"{registry.host}/src/oci:1", timeout=120).returncode == 0
    assert docker_at(berthd, "tag", f"{registry.host}/src/oci:1", f"{registry.host}/copy/oci:1").returncode == 0
    r = docker_at(berthd, "push", f"{registry.host}/copy/oci:1", timeout=120)
    assert r.returncode == 0, r.stderr
    assert registry.digest("copy/oci:1") == digest  # byte for byte: still OCI, the same digest
    assert f"1: digest: {digest}" in r.stdout


def test_push_errors_and_credentials(berthd: Berthd, cleanup: Cleanup) -> None:
    reg = start_registry(cleanup, htpasswd(cleanup, {"alice": "s3cret"}))
    _load(berthd, cleanup, "app:1")
    name = f"{reg.host}/app:1"
    docker_at(berthd, "tag", "app:1", name)
    r = docker_at(berthd, "push", f"{reg.host}/nothere:1")
    assert r.returncode != 0 and f"An image does not exist locally with the tag: {reg.host}/nothere" in r.stderr
    home = cleanup.path(public_tmpdir("berth-dockercfg-"))
    env = base_env(DOCKER_CONFIG=home, DOCKER_HOST=berthd.url)
    r = docker("push", name, env=env, timeout=60)
    assert r.returncode != 0 and "no basic auth credentials" in r.stderr, r.stdout + r.stderr
    r = docker("login", "-u", "alice", "--password-stdin", reg.host, input="s3cret\n", env=env)
    assert r.returncode == 0, r.stderr
    r = docker("push", name, env=env, timeout=60)
    assert r.returncode == 0 and "Pushed" in r.stdout, r.stderr
    reg.creds = "alice:s3cret"
    assert reg.digest("app:1").startswith("sha256:")


def test_berth_pulls_what_dockerd_pushes(berthd: Berthd, registry: Registry, cleanup: Cleanup) -> None:
    from tests.lib.dockerd import DOCKERD, Dockerd

    if DOCKERD is None:
        pytest.skip("dockerd is not installed (Debian package docker.io)")
    path = cleanup.path(public_tmpdir("berth-dockerd-push-")) + "/img.tar"
    with open(path, "wb") as f:
        f.write(_archive("fromdockerd:1", b"pushed by dockerd"))
    name = f"{registry.host}/fromdockerd:1"
    dd = Dockerd()
    try:
        dd.start()
        assert docker_at(dd, "load", "-i", path).returncode == 0
        assert docker_at(dd, "tag", "fromdockerd:1", name).returncode == 0
        r = docker_at(dd, "push", name, timeout=120)
        assert r.returncode == 0, r.stderr
        image_id = docker_at(dd, "image", "inspect", "--format", "{{.Id}}", name).stdout.strip()
    finally:
        dd.stop()
    digest = registry.digest("fromdockerd:1")
    r = docker_at(berthd, "pull", name, timeout=120)
    assert r.returncode == 0 and f"Digest: {digest}" in r.stdout, r.stdout + r.stderr
    assert docker_at(berthd, "image", "inspect", "--format", "{{.Id}}", name).stdout.strip() == image_id
    r = docker_at(berthd, "run", "--rm", "--network", "none", name, "cat", "/etc/version")
    assert r.stdout == "pushed by dockerd", r.stderr
    # and pushed back by berth to another repository: mounted, with dockerd's manifest byte for byte
    assert docker_at(berthd, "tag", name, f"{registry.host}/again:1").returncode == 0
    r = docker_at(berthd, "push", f"{registry.host}/again:1", timeout=120)
    assert r.returncode == 0 and registry.digest("again:1") == digest, r.stdout
