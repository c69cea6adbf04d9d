"""docker pull from a real registry (Debian's docker-registry on loopback), images put there by
skopeo in Docker's and in OCI's format, driven with the real docker CLI and with docker-py."""

from __future__ import annotations

import json
import os

import pytest

from tests.lib.cleanup import Cleanup
from tests.lib.clis import docker_at
from tests.lib.daemon import Berthd
from tests.lib.images import busybox_rootfs_tar, config_for, docker_archive, layer_tar
from tests.lib.registry import Registry, start_registry


@pytest.fixture
def registry(cleanup: Cleanup) -> Registry:
    return start_registry(cleanup)


def _archive(name: str, extra: bytes = b"v1") -> bytes:
    base = busybox_rootfs_tar()
    top = layer_tar({"etc/version": extra})
    return docker_archive([(config_for([base, top]), [base, top], [name])])


def test_docker_pull_streams_progress_runs_and_records_the_digest(berthd: Berthd, registry: Registry) -> None:
    digest = registry.push_archive(_archive("app:1"), "team/app:1")
    name = f"{registry.host}/team/app:1"
    r = docker_at(berthd, "pull", name, timeout=120)
    assert r.returncode == 0, r.stderr
    for line in ("1: Pulling from team/app", "Pull complete", f"Digest: {digest}",
                 f"Status: Downloaded newer image for {name}"):
        assert line in r.stdout, r.stdout
    r = docker_at(berthd, "run", "--rm", "--network", "none", name, "cat", "/etc/version")
    assert r.returncode == 0 and r.stdout == "v1", r.stderr
    r = docker_at(berthd, "image", "inspect", "--format", "{{json .RepoDigests}}", name)
    assert json.loads(r.stdout) == [f"{registry.host}/team/app@{digest}"]
    again = docker_at(berthd, "pull", name, timeout=120)
    assert again.returncode == 0 and f"Status: Image is up to date for {name}" in again.stdout, again.stdout
    by_digest = docker_at(berthd, "pull", f"{registry.host}/team/app@{digest}", timeout=120)
    assert by_digest.returncode == 0, by_digest.stderr


def test_an_oci_image_and_layers_already_present(berthd: Berthd, registry: Registry) -> None:
    registry.push_archive(_archive("app:1"), "app:1")
    registry.push_archive(_archive("app:2", b"v2"), "app:2", fmt="oci")
    assert docker_at(berthd, "pull", f"{registry.host}/app:1", timeout=120).returncode == 0
    r = docker_at(berthd, "pull", f"{registry.host}/app:2", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Already exists" in r.stdout  # busybox's layer, shared with app:1
    r = docker_at(berthd, "run", "--rm", "--network", "none", f"{registry.host}/app:2", "cat", "/etc/version")
    assert r.stdout == "v2", r.stderr


def test_unknown_tags_and_repositories_say_so(berthd: Berthd, registry: Registry) -> None:
    registry.push_archive(_archive("app:1"), "app:1")
    r = docker_at(berthd, "pull", f"{registry.host}/app:nope")
    assert r.returncode != 0
    # dockerd 20.10's words, checked side by side against this registry
    assert f"Error response from daemon: manifest for {registry.host}/app:nope not found: manifest unknown: " \
           "manifest unknown" in r.stderr, r.stderr
    r = docker_at(berthd, "pull", f"{registry.host}/nosuch:1")
    assert r.returncode != 0 and f"manifest for {registry.host}/nosuch:1 not found: manifest unknown" in r.stderr


def test_a_blob_whose_bytes_do_not_match_its_digest_is_refused_and_nothing_is_kept(
        berthd: Berthd, registry: Registry) -> None:
    registry.push_archive(_archive("app:1"), "app:1")
    manifest = json.loads(skopeo_raw(registry, "app:1"))
    top = manifest["layers"][-1]["digest"]
    path = registry.blob_path(top)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF  # the registry serves it as it is: the digest no longer matches
    with open(path, "wb") as f:
        f.write(bytes(data))
    before = docker_at(berthd, "images", "-q").stdout
    r = docker_at(berthd, "pull", f"{registry.host}/app:1", timeout=120)
    assert r.returncode != 0
    assert f"filesystem layer verification failed for digest {top}" in r.stderr, r.stderr
    assert docker_at(berthd, "images", "-q").stdout == before
    assert _staged_layers(berthd.root) == []


def skopeo_raw(registry: Registry, name: str) -> str:
    from tests.lib.registry import skopeo

    return skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{name}")


def _staged_layers(root: str) -> list[str]:
    """What is in the layer store's staging area (<data-root>/image/tmp), which must exist."""
    for dirpath, dirnames, _ in os.walk(root):
        if dirpath.endswith("/image/tmp"):
            return dirnames
    raise AssertionError(f"no image/tmp under {root}")


def test_a_multi_platform_index_gives_this_hosts_image_or_the_one_asked_for(berthd: Berthd, registry: Registry) -> None:
    from tests.lib.images import config_for

    base = busybox_rootfs_tar()
    images = {}
    for plat, arch in (("linux/amd64", "amd64"), ("linux/arm64/v8", "arm64")):
        top = layer_tar({"etc/arch": arch.encode()})
        images[plat] = (config_for([base, top], architecture=arch), [base, top])
    index_digest = registry.push_index("multi:1", images)
    name = f"{registry.host}/multi:1"
    r = docker_at(berthd, "pull", name, timeout=120)
    assert r.returncode == 0 and f"Digest: {index_digest}" in r.stdout, r.stdout + r.stderr
    r = docker_at(berthd, "run", "--rm", "--network", "none", name, "cat", "/etc/arch")
    assert r.stdout == "amd64", r.stderr
    r = docker_at(berthd, "pull", "--platform", "linux/arm64", f"{registry.host}/multi:1", timeout=120)
    assert r.returncode == 0, r.stderr
    r = docker_at(berthd, "image", "inspect", "--format", "{{.Architecture}}", name)
    assert r.stdout.strip() == "arm64"
    r = docker_at(berthd, "pull", "--platform", "linux/s390x", name, timeout=120)
    assert r.returncode != 0 and "no matching manifest for linux/s390x in the manifest list entries" in r.stderr


def test_docker_py_pulls_with_its_own_api(berthd: Berthd, registry: Registry) -> None:
    import docker

    registry.push_archive(_archive("app:1"), "pyapp:1")
    client = docker.DockerClient(base_url=berthd.url, version="1.41")
    try:
        image = client.images.pull(f"{registry.host}/pyapp", tag="1")
        assert f"{registry.host}/pyapp:1" in image.tags
        lines = list(client.api.pull(f"{registry.host}/pyapp", tag="1", stream=True, decode=True))
        assert lines[-1]["status"] == f"Status: Image is up to date for {registry.host}/pyapp:1"
    finally:
        client.close()


def test_rmi_of_the_pulled_tag_removes_the_image_and_its_digest_reference(berthd: Berthd, registry: Registry) -> None:
    """dockerd's rule: the digest references of the tag's repository go with its last tag."""
    digest = registry.push_archive(_archive("app:1"), "app:1")
    name = f"{registry.host}/app:1"
    assert docker_at(berthd, "pull", name, timeout=120).returncode == 0
    r = docker_at(berthd, "rmi", name)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == [f"Untagged: {name}", f"Untagged: {registry.host}/app@{digest}"]
    assert lines[2].startswith("Deleted: sha256:")
    assert docker_at(berthd, "images", "-aq").stdout == ""


def test_a_registry_that_dies_mid_blob_is_taken_up_where_it_broke(berthd: Berthd, registry: Registry,
                                                                   cleanup: Cleanup) -> None:
    from tests.lib.registry import CuttingProxy

    big = layer_tar({"data/blob": os.urandom(3 << 20)})  # incompressible: 3 MiB on the wire
    base = busybox_rootfs_tar()
    registry.push_archive(docker_archive([(config_for([base, big]), [base, big], ["big:1"])]), "big:1")
    proxy = CuttingProxy(cleanup, registry.host, after=1 << 20)
    r = docker_at(berthd, "pull", f"{proxy.host}/big:1", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert proxy.cut == 1 and "Retrying in 1 second" in r.stdout, r.stdout
    r = docker_at(berthd, "run", "--rm", "--network", "none", f"{proxy.host}/big:1", "wc", "-c", "/data/blob")
    assert r.stdout.split()[0] == str(3 << 20), r.stderr


def test_a_manifest_naming_a_missing_blob_fails_and_keeps_nothing(berthd: Berthd, registry: Registry) -> None:
    registry.push_archive(_archive("app:1"), "app:1")
    manifest = json.loads(skopeo_raw(registry, "app:1"))
    os.unlink(registry.blob_path(manifest["layers"][-1]["digest"]))
    r = docker_at(berthd, "pull", f"{registry.host}/app:1", timeout=120)
    assert r.returncode != 0 and "blob unknown" in r.stderr, r.stderr
    assert docker_at(berthd, "images", "-aq").stdout == ""
    assert _staged_layers(berthd.root) == []
