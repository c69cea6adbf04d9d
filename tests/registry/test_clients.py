"""Registries with other clients and limits: docker-compose 1.29 pulling a project's images, and a
data root too small for a pull (a clear error, nothing registered, nothing staged)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.lib.cleanup import Cleanup
from tests.lib.clis import docker_at
from tests.lib.daemon import public_tmpdir
from tests.lib.images import busybox_rootfs_tar, config_for, docker_archive, layer_tar
from tests.lib.registry import start_registry
from tests.registry.test_pull import _archive, _staged_layers


def test_docker_compose_pulls_a_projects_images(berthd, cleanup: Cleanup, tmp_path) -> None:  # type: ignore[no-untyped-def]
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose)")
    reg = start_registry(cleanup)
    reg.push_archive(_archive("web:1"), "web:1")
    reg.push_archive(_archive("worker:2", b"v2"), "team/worker:2")
    (tmp_path / "docker-compose.yml").write_text(
        f"version: '3'\nservices:\n  web:\n    image: {reg.host}/web:1\n  worker:\n    image: {reg.host}/team/worker:2\n")
    env = {**os.environ, "DOCKER_HOST": berthd.url, "COMPOSE_PROJECT_NAME": "regproj"}
    r = subprocess.run([compose, "pull"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    images = docker_at(berthd, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert sorted(images) == sorted([f"{reg.host}/web:1", f"{reg.host}/team/worker:2"])


def test_a_full_disk_fails_the_pull_and_keeps_nothing(make_berthd, cleanup: Cleanup) -> None:  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("needs root (a small tmpfs as the data root)")
    reg = start_registry(cleanup)
    big = layer_tar({"data/blob": os.urandom(24 << 20)})
    base = busybox_rootfs_tar()
    reg.push_archive(docker_archive([(config_for([base, big]), [base, big], ["big:1"])]), "big:1")
    root = cleanup.path(public_tmpdir("berth-small-"))
    data = os.path.join(root, "data")
    os.makedirs(data)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", data], check=True)
    cleanup.mount(data)
    d = make_berthd(root=root)
    d.start()
    r = docker_at(d, "pull", f"{reg.host}/big:1", timeout=120)
    assert r.returncode != 0 and "no space left" in r.stderr, r.stdout + r.stderr
    assert docker_at(d, "images", "-aq").stdout == ""
    assert _staged_layers(root) == []
